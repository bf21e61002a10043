"""Opening a ``RegistryClient`` for a reference: its credentials and its TLS policy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ...paths import StatePaths
from ..reference import Reference
from .client import RegistryClient
from .credentials import Credentials, CredentialStore
from .hosts import configured_insecure, is_insecure


def credential_store(paths: StatePaths) -> CredentialStore:
    return CredentialStore(paths.root / "auth.json")


def open_client(paths: StatePaths, domain: str, *, insecure: Iterable[str] = (),
                credentials: Credentials | None = None) -> RegistryClient:
    """A client for ``domain`` with the stored login (unless ``credentials`` is given)."""
    allowed = configured_insecure(Path(paths.root), insecure)
    creds = credentials if credentials is not None else credential_store(paths).get(domain)
    return RegistryClient(domain, credentials=creds, insecure=is_insecure(domain, allowed))


def repo_scope(ref: Reference, *actions: str) -> str:
    return f"repository:{ref.path}:{','.join(actions or ('pull',))}"
