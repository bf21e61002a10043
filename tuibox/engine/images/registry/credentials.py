"""Stored registry credentials: ``<root>/auth.json`` in Docker's ``config.json`` shape.

``{"auths": {"registry.example.com": {"auth": base64("user:password")}}}``, mode 0600,
replaced atomically under a lock; the same shape Docker and podman use, so a user can
copy one in.  Docker Hub is stored under ``docker.io`` and also found under Docker's
legacy key ``https://index.docker.io/v1/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import InvalidArgument, RecordError
from ...records import locked, write_atomic
from ..reference import DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST, LEGACY_DEFAULT_DOMAIN

_HUB_KEYS = (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST,
             "https://index.docker.io/v1/")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def basic(self) -> str:
        """The value of an ``Authorization: Basic …`` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def registry_key(server: str) -> str:
    """The key a registry's credentials are stored under: its domain, hub → docker.io."""
    server = server.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    server = server.removesuffix("/v1").removesuffix("/v2")
    if not server or "/" in server:
        raise InvalidArgument(f"invalid registry address {server!r}")
    return DEFAULT_DOMAIN if server in _HUB_KEYS else server


class CredentialStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise RecordError(str(self.path), str(exc)) from exc
        if not isinstance(doc, dict):
            raise RecordError(str(self.path), "not a JSON object")
        return doc

    def get(self, server: str) -> Credentials | None:
        key = registry_key(server)
        auths = self._read().get("auths") or {}
        keys = _HUB_KEYS if key == DEFAULT_DOMAIN else (key,)
        for k in keys:
            entry = auths.get(k)
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (binascii.Error, UnicodeDecodeError) as exc:
                    raise RecordError(str(self.path), f"bad auth entry for {k}") from exc
                return Credentials(user, password)
        return None

    def store(self, server: str, creds: Credentials) -> None:
        key = registry_key(server)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path):
            doc = self._read()
            doc.setdefault("auths", {})[key] = {"auth": creds.basic().removeprefix("Basic ")}
            # 0600 from the first byte: the file holds passwords.
            write_atomic(self.path, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)
            os.chmod(self.path, 0o600)

    def remove(self, server: str) -> bool:
        """Forget a registry's credentials; False if none were stored."""
        key = registry_key(server)
        if not self.path.exists():
            return False
        with locked(self.path):
            doc = self._read()
            auths = doc.get("auths") or {}
            keys = [k for k in (_HUB_KEYS if key == DEFAULT_DOMAIN else (key,)) if k in auths]
            for k in keys:
                del auths[k]
            if keys:
                write_atomic(self.path, json.dumps(doc, indent=2).encode() + b"\n", mode=0o600)
            return bool(keys)
