"""Registry authentication against real registries on loopback.

Basic auth (htpasswd) and token auth, whose realm is a token server run here signing
RS256 JWTs that the registry trusts; that registry also redirects blob downloads to a
"CDN" on 127.0.0.2 — which must never see our Authorization header — and the CDN can
drop a download half-way to prove that the next pull resumes it with a Range request.
"""

from __future__ import annotations

import base64
import gzip
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import _cleanup
from tests.imagefixtures import TarEntry, layer_tar, state_leftovers
from tests.registryfixtures import (
    TOKEN_ISSUER,
    TOKEN_SERVICE,
    BlobCDN,
    Registry,
    TokenServer,
    digest_of,
    htpasswd_file,
    push_oci_image,
    skopeo_copy,
    start_registry,
    token_keypair,
)
from tuibox.engine import Engine
from tuibox.engine.errors import ImageNotFound, RegistryAuthError, RegistryError
from tuibox.engine.images.registry.credentials import Credentials
from tuibox.engine.images.registry.login import login, logout

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                reason="needs Debian's docker-registry")

USER, PASSWORD = "alice", "s3cret-pw"
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory,
                   busybox_archives: tuple[Path, Path]) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("basic")
    htpasswd = htpasswd_file(work / "htpasswd", USER, PASSWORD)
    registry = start_registry(work / "reg", auth={
        "htpasswd": {"realm": "tuibox-test", "path": str(htpasswd)}})
    try:
        skopeo_copy(f"docker-archive:{busybox_archives[0]}",
                    f"docker://{registry.addr}/busybox:latest", creds=f"{USER}:{PASSWORD}")
        yield registry
    finally:
        registry.stop()


@dataclass
class TokenSetup:
    registry: Registry
    tokens: TokenServer
    cdn: BlobCDN
    big_layer: str  # digest of the large layer of "big:latest"


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory,
                   busybox_archives: tuple[Path, Path]) -> Iterator[TokenSetup]:
    work = tmp_path_factory.mktemp("token")
    key, der, cert = token_keypair(work)
    tokens = TokenServer({USER: PASSWORD}, key, der).start()
    cdn = BlobCDN(work / "reg" / "data").start()
    registry = None
    try:
        registry = start_registry(work / "reg", redirect_to=cdn.base, auth={
            "token": {"realm": tokens.realm, "service": TOKEN_SERVICE, "issuer": TOKEN_ISSUER,
                      "rootcertbundle": str(cert)}})
        skopeo_copy(f"docker-archive:{busybox_archives[0]}",
                    f"docker://{registry.addr}/busybox:latest", creds=f"{USER}:{PASSWORD}")
        # A layer big enough to be cut half-way: random bytes do not compress.
        raw = layer_tar([TarEntry("big", data=os.urandom(3 << 20))])
        blob = gzip.compress(raw, compresslevel=1)
        token = tokens.grant({"scope": ["repository:big:pull,push"]}, USER)["token"]
        push_oci_image(registry.addr, "big", "latest", [(blob, raw, GZ)],
                       auth=f"Bearer {token}")
        yield TokenSetup(registry, tokens, cdn, digest_of(blob))
    finally:
        if registry is not None:
            registry.stop()
        cdn.stop()
        tokens.stop()


@pytest.fixture
def fresh(root: Path) -> Iterator[Engine]:
    eng = Engine(root)
    yield eng
    _cleanup(eng)


def test_basic_auth_login_pull_logout(fresh: Engine, basic_registry: Registry) -> None:
    ref = f"{basic_registry.addr}/busybox"
    with pytest.raises(RegistryAuthError):
        fresh.pull(ref)
    with pytest.raises(RegistryAuthError):
        login(fresh.paths, basic_registry.addr, Credentials(USER, "wrong"))
    assert not (fresh.paths.root / "auth.json").exists()
    login(fresh.paths, basic_registry.addr, Credentials(USER, PASSWORD))
    auth = fresh.paths.root / "auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert PASSWORD not in auth.read_text()  # base64, as Docker stores it
    record = fresh.pull(ref)
    assert record.repo_tags == [f"{ref}:latest"]
    assert logout(fresh.paths, basic_registry.addr)
    assert not logout(fresh.paths, basic_registry.addr)


def test_cli_login_password_stdin(root: Path, basic_registry: Registry) -> None:
    def tuibox(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), *args],
                              input=stdin, capture_output=True, text=True, timeout=60)

    bad = tuibox("login", "-u", USER, "--password-stdin", basic_registry.addr, stdin="nope\n")
    assert bad.returncode != 0 and "authentication failed" in bad.stderr
    ok = tuibox("login", "-u", USER, "--password-stdin", basic_registry.addr,
                stdin=PASSWORD + "\n")
    assert ok.returncode == 0 and ok.stdout == "Login Succeeded\n", ok.stderr
    pulled = tuibox("pull", "-q", f"{basic_registry.addr}/busybox")
    assert pulled.returncode == 0, pulled.stderr
    out = tuibox("logout", basic_registry.addr)
    assert out.stdout == f"Removing login credentials for {basic_registry.addr}\n"


def test_token_auth_anonymous_pull_and_no_auth_to_the_cdn(fresh: Engine,
                                                          token_registry: TokenSetup) -> None:
    token_registry.cdn.requests.clear()
    token_registry.tokens.requests.clear()
    record = fresh.pull(f"{token_registry.registry.addr}/busybox")
    assert record.repo_tags
    cdn_seen = token_registry.cdn.requests
    assert cdn_seen, "the registry should have redirected the layer download"
    assert all("authorization" not in r for r in cdn_seen)
    # one token for the pull scope, reused for manifest, config and layer
    scopes = [q["query"].get("scope") for q in token_registry.tokens.requests]
    assert scopes == [["repository:busybox:pull"]]
    assert all(q["authorization"] == "" for q in token_registry.tokens.requests)


def test_token_auth_wrong_credentials_and_push(engine: Engine, token_registry: TokenSetup,
                                               tmp_path: Path) -> None:
    addr = token_registry.registry.addr
    with pytest.raises(RegistryAuthError, match="authentication failed"):
        login(engine.paths, addr, Credentials(USER, "wrong"))
    target = f"{addr}/mine:1"
    engine.images.tag("busybox", target)
    with pytest.raises(RegistryAuthError):
        engine.push(target)  # anonymous tokens only grant pull
    login(engine.paths, addr, Credentials(USER, PASSWORD))
    token_registry.tokens.requests.clear()
    digest = engine.push(target)
    assert token_registry.tokens.requests[0]["authorization"] == _basic(USER, PASSWORD)
    other = Engine(tmp_path / "other")  # a store that has never seen the image
    record = other.pull(target)
    assert record.repo_digests == [f"{addr}/mine@{digest}"]
    assert record.id == engine.images.resolve("busybox").id


def test_interrupted_pull_resumes_with_range(fresh: Engine, token_registry: TokenSetup) -> None:
    cdn = token_registry.cdn
    hex_ = token_registry.big_layer.removeprefix("sha256:")
    cdn.cut_after = {f"{hex_}/data": 1 << 20}
    before = state_leftovers(fresh.paths.root)
    ref = f"{token_registry.registry.addr}/big"
    with pytest.raises(RegistryError, match="interrupted"):
        fresh.pull(ref)
    with pytest.raises(ImageNotFound):
        fresh.images.resolve(ref)
    after = state_leftovers(fresh.paths.root)
    assert {k: v for k, v in after.items() if k != "tmp"} == \
        {k: v for k, v in before.items() if k != "tmp"}
    partial = fresh.paths.tmp / f"pull-{hex_}.partial"
    assert partial.stat().st_size == 1 << 20
    cdn.requests.clear()
    record = fresh.pull(ref)
    ranges = [r.get("range") for r in cdn.requests if r["path"].endswith(f"{hex_}/data")]
    assert ranges == [f"bytes={1 << 20}-"]
    assert (fresh.images.layer_dirs(record)[0] / "big").stat().st_size == 3 << 20
    assert not partial.exists()
