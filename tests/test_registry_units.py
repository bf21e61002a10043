"""Registry client pieces without a registry: challenges, platforms, hosts, credentials,
and the client's redirect/auth/schema-1 behaviour against an httpx MockTransport."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import pytest

from tuibox.engine.errors import ImageError, InvalidArgument
from tuibox.engine.images.reference import parse_reference
from tuibox.engine.images.registry.challenge import parse_challenges, pick_challenge
from tuibox.engine.images.registry.client import RegistryClient
from tuibox.engine.images.registry.credentials import Credentials, CredentialStore
from tuibox.engine.images.registry.hosts import is_insecure, is_loopback
from tuibox.engine.images.registry.manifests import resolve
from tuibox.engine.images.registry.platforms import Platform, matches, parse_platform


def test_reference_normalisation_for_registries() -> None:
    ref = parse_reference("busybox")
    assert (ref.registry_host, ref.path, ref.tag) == ("registry-1.docker.io",
                                                      "library/busybox", "latest")
    ref = parse_reference("localhost:5000/a/b@sha256:" + "a" * 64)
    assert (ref.registry_host, ref.path, ref.tag) == ("localhost:5000", "a/b", None)


def test_parse_challenges() -> None:
    (c,) = parse_challenges('Bearer realm="https://auth.docker.io/token",'
                            'service="registry.docker.io",scope="repository:a/b:pull,push"')
    assert c.scheme == "bearer" and c.params["scope"] == "repository:a/b:pull,push"
    assert c.realm == "https://auth.docker.io/token"
    picked = pick_challenge(['Negotiate abc', 'Basic realm="Registry \\"x\\""'])
    assert picked is not None and picked.scheme == "basic" and picked.realm == 'Registry "x"'


def test_platforms() -> None:
    assert parse_platform("linux/arm64") == Platform("linux", "arm64", "v8")
    assert parse_platform("arm") == Platform("linux", "arm", "v7")
    with pytest.raises(InvalidArgument):
        parse_platform("a/b/c/d")
    v6 = {"platform": {"os": "linux", "architecture": "arm", "variant": "v6"}}
    assert matches(v6, parse_platform("linux/arm/v7")) == 1
    assert matches(v6, parse_platform("linux/arm/v5")) is None
    assert matches({"platform": {"os": "linux", "architecture": "arm64"}},
                   parse_platform("linux/arm64/v8")) == 0


def test_insecure_hosts() -> None:
    assert is_loopback("127.0.0.2:5000") and is_loopback("localhost") and is_loopback("[::1]:1")
    assert not is_loopback("registry.example.com:5000")
    assert is_insecure("reg.lan:5000", frozenset({"reg.lan:5000"}))
    assert not is_insecure("reg.lan:5000", frozenset())


def test_credentials_file(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "auth.json")
    store.store("https://index.docker.io/v1/", Credentials("u", "p:w"))
    assert store.get("docker.io") == Credentials("u", "p:w")
    assert stat.S_IMODE((tmp_path / "auth.json").stat().st_mode) == 0o600
    assert list(json.loads((tmp_path / "auth.json").read_text())["auths"]) == ["docker.io"]
    assert store.remove("docker.io") and store.get("docker.io") is None


def _client(handler: httpx.MockTransport, creds: Credentials | None = None) -> RegistryClient:
    return RegistryClient("reg.example:5000", credentials=creds, transport=handler)


def test_authorization_never_follows_a_redirect_to_another_host() -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.path == "/v2/":
            return httpx.Response(401, headers={"www-authenticate": 'Basic realm="r"'})
        if request.url.host == "reg.example":
            return httpx.Response(307, headers={"location": "https://cdn.example/blob?sig=1"})
        return httpx.Response(200, content=b"data")

    client = _client(httpx.MockTransport(handler), Credentials("u", "p"))
    resp = client.request("GET", "/v2/a/blobs/sha256:" + "0" * 64, scope="repository:a:pull")
    assert resp.content == b"data"
    assert seen[-2][0] == "reg.example" and seen[-2][1] is not None
    assert seen[-1] == ("cdn.example", None)


def test_bearer_token_is_refreshed_on_401() -> None:
    issued: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        challenge = {"www-authenticate": 'Bearer realm="https://auth.example/token",'
                                         'service="reg"'}
        if request.url.host == "auth.example":
            issued.append(request.url.params["scope"])
            return httpx.Response(200, json={"token": f"t{len(issued)}"})
        if request.url.path == "/v2/":
            return httpx.Response(401, headers=challenge)
        # the first token is "revoked": only t2 is accepted
        if request.headers.get("authorization") != "Bearer t2":
            return httpx.Response(401, headers=challenge)
        return httpx.Response(200, content=b"ok")

    client = _client(httpx.MockTransport(handler))
    resp = client.request("GET", "/v2/a/tags/list", scope="repository:a:pull")
    assert resp.content == b"ok" and issued == ["repository:a:pull"] * 2


def test_schema1_is_refused_clearly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(200, headers={
            "content-type": "application/vnd.docker.distribution.manifest.v1+prettyjws",
            "docker-content-digest": "sha256:" + "1" * 64})

    client = _client(httpx.MockTransport(handler))
    with pytest.raises(ImageError, match="schema 1"):
        resolve(client, "a", tag="old", digest=None, platform=parse_platform("linux/amd64"),
                scope="repository:a:pull")
