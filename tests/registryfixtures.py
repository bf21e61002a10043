"""Real registries on loopback for the registry tests: Debian's ``docker-registry``.

Each ``Registry`` is a ``docker-registry serve`` on 127.0.0.1 at a free port with its
storage in a temp dir, configured with plain, htpasswd or token auth.  The helpers also
run the two small servers the tests need: a token server (RS256 JWTs signed with a key
generated here, trusted by the registry through ``rootcertbundle``) and a "CDN" on
127.0.0.2 that serves blob files straight from the registry's storage when the
registry's ``redirect`` middleware sends clients there — it records the headers it
got and can cut a download half-way, like a registry going down mid-pull.
Nothing here reaches beyond 127.0.0.0/8.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REGISTRY_BIN = "/usr/bin/docker-registry"
TOKEN_SERVICE = "tuibox-test-registry"
TOKEN_ISSUER = "tuibox-test-issuer"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    addr: str  # "127.0.0.1:PORT"
    storage: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def blob_file(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def start_registry(work: Path, *, auth: dict[str, Any] | None = None,
                   redirect_to: str | None = None) -> Registry:
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = work / "data"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(storage)},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    if redirect_to:
        config["middleware"] = {"storage": [{"name": "redirect",
                                             "options": {"baseurl": redirect_to}}]}
    path = work / "config.yml"  # YAML is a superset of JSON
    path.write_text(json.dumps(config, indent=2))
    log = (work / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    registry = Registry(f"127.0.0.1:{port}", storage, proc)
    deadline = time.monotonic() + 10
    while True:
        try:
            if httpx.get(f"http://{registry.addr}/v2/", timeout=1).status_code in (200, 401):
                return registry
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            registry.stop()
            raise RuntimeError(f"registry did not start: {(work / 'registry.log').read_text()}")
        time.sleep(0.05)


def skopeo_copy(src: str, dest: str, *, creds: str | None = None, fmt: str | None = None,
                compress: str | None = None) -> None:
    cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
    if creds:
        cmd += ["--dest-creds", creds]
    if fmt:
        cmd += ["--format", fmt]
    if compress:
        cmd += ["--dest-compress-format", compress]
    subprocess.run([*cmd, src, dest], check=True, capture_output=True, timeout=60)


def htpasswd_file(path: Path, user: str, password: str) -> Path:
    subprocess.run(["htpasswd", "-Bbc", str(path), user, password], check=True,
                   capture_output=True)
    return path


# ---------------------------------------------------------------------------------------
# pushing raw content (indexes, hand-made manifests) with plain httpx


def raw_push_blob(addr: str, repo: str, data: bytes, *, auth: str | None = None) -> str:
    digest = digest_of(data)
    headers = {"Authorization": auth} if auth else {}
    base = f"http://{addr}"
    r = httpx.post(f"{base}/v2/{repo}/blobs/uploads/", headers=headers)
    assert r.status_code == 202, r.text
    loc = httpx.URL(base).join(r.headers["location"])
    r = httpx.put(loc.copy_merge_params({"digest": digest}), content=data,
                  headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def raw_push_manifest(addr: str, repo: str, ref: str, body: bytes, media_type: str,
                      *, auth: str | None = None) -> str:
    headers = {"Content-Type": media_type, **({"Authorization": auth} if auth else {})}
    r = httpx.put(f"http://{addr}/v2/{repo}/manifests/{ref}", content=body, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.headers["docker-content-digest"])


# ---------------------------------------------------------------------------------------
# the token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _serve_in_thread(host: str, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """An HTTP server on ``host`` and a free port, answering from a daemon thread."""
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _shut(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


@dataclass
class TokenServer:
    """Docker's token protocol: ``GET /token?service=…&scope=…``, Basic creds optional."""

    users: dict[str, str]
    key_pem: bytes
    cert_der: bytes
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def realm(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        header = {"typ": "JWT", "alg": "RS256",
                  "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = (_b64url(json.dumps(header).encode()) + "."
                         + _b64url(json.dumps(claims).encode()))
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def grant(self, query: dict[str, list[str]], user: str | None) -> dict[str, Any]:
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = [a for a in actions.split(",") if a == "pull" or user is not None]
            access.append({"type": kind, "name": name, "actions": allowed})
        now = int(time.time())
        claims = {"iss": TOKEN_ISSUER, "sub": user or "", "aud": TOKEN_SERVICE,
                  "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        return {"token": self.sign(claims), "expires_in": 300}

    def start(self) -> TokenServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                user = None
                header = self.headers.get("Authorization", "")
                owner.requests.append({"query": query, "authorization": header})
                if header.startswith("Basic "):
                    name, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if owner.users.get(name) != password:
                        self.send_response(401)
                        self.send_header("Content-Type", "application/json")
                        body = b'{"errors":[{"code":"UNAUTHORIZED","message":"bad creds"}]}'
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        return
                    user = name
                body = json.dumps(owner.grant(query, user)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = _serve_in_thread("127.0.0.1", Handler)
        return self

    def stop(self) -> None:
        _shut(self.server)


def token_keypair(work: Path) -> tuple[bytes, bytes, Path]:
    """(private key PEM, certificate DER, certificate PEM path) made with openssl."""
    work.mkdir(parents=True, exist_ok=True)
    key, cert = work / "token.key", work / "token.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=tuibox-test-token", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", str(cert), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return key.read_bytes(), der, cert


# ---------------------------------------------------------------------------------------
# the "CDN" the redirect middleware points at


@dataclass
class BlobCDN:
    """Serves ``<storage>/<path>`` on 127.0.0.2; honours Range; can cut one download."""

    storage: Path
    requests: list[dict[str, str]] = field(default_factory=list)
    cut_after: dict[str, int] = field(default_factory=dict)  # path suffix → bytes, once
    server: ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.2:{self.server.server_address[1]}/"

    def start(self) -> BlobCDN:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _serve(self, head: bool) -> None:
                path = urlsplit(self.path).path
                owner.requests.append({"path": path, **{k.lower(): v for k, v in
                                                        self.headers.items()}})
                file = owner.storage / path.lstrip("/")
                if ".." in path or not file.is_file():
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = file.read_bytes()
                start = 0
                rng = self.headers.get("Range", "")
                if rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if head:
                    return
                cut = next((n for suffix, n in owner.cut_after.items()
                            if path.endswith(suffix)), None)
                if cut is not None:
                    owner.cut_after = {k: v for k, v in owner.cut_after.items()
                                       if not path.endswith(k)}
                    self.wfile.write(data[start:start + cut])
                    self.wfile.flush()
                    # The registry "goes down": the connection closes mid-body.
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

            def do_GET(self) -> None:
                self._serve(head=False)

            def do_HEAD(self) -> None:
                self._serve(head=True)

        self.server = _serve_in_thread("127.0.0.2", Handler)
        return self

    def stop(self) -> None:
        _shut(self.server)



# ---------------------------------------------------------------------------------------
# hand-built images pushed with plain httpx (zstd, platforms, indexes)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def first_layer_of(docker_tar: Path) -> bytes:
    """The uncompressed layer tar of a one-layer ``docker save`` archive."""
    import tarfile

    with tarfile.open(docker_tar) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        member = tf.extractfile(manifest[0]["Layers"][0])
        assert member is not None
        return member.read()


def oci_config(diff_ids: list[str], *, arch: str = "amd64",
               cmd: list[str] | None = None) -> bytes:
    return json.dumps({"architecture": arch, "os": "linux",
                       "created": "2024-01-02T03:04:05Z",
                       "config": {"Cmd": cmd or ["sh"]},
                       "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()


def push_oci_image(addr: str, repo: str, ref: str | None, layers: list[tuple[bytes, bytes, str]],
                   *, arch: str = "amd64", auth: str | None = None) -> tuple[str, int]:
    """Push an OCI image; ``layers`` is [(blob, uncompressed tar, layer media type)].

    Returns (manifest digest, manifest size); ``ref`` None pushes by digest only.
    """
    config = oci_config([digest_of(raw) for _, raw, _ in layers], arch=arch)
    descs = []
    for blob, _, media_type in layers:
        raw_push_blob(addr, repo, blob, auth=auth)
        descs.append({"mediaType": media_type, "digest": digest_of(blob), "size": len(blob)})
    raw_push_blob(addr, repo, config, auth=auth)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": descs}).encode()
    raw_push_manifest(addr, repo, ref or digest_of(manifest), manifest, OCI_MANIFEST, auth=auth)
    return digest_of(manifest), len(manifest)
