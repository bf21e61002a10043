"""``login``/``logout``: check credentials against a registry, then store or forget them."""

from __future__ import annotations

from collections.abc import Iterable

from ...paths import StatePaths
from ..reference import DEFAULT_DOMAIN
from .credentials import Credentials, registry_key
from .session import credential_store, open_client


def login(paths: StatePaths, server: str | None, creds: Credentials, *,
          insecure: Iterable[str] = ()) -> str:
    """Verify ``creds`` with the registry (token or Basic) and store them; returns the key."""
    key = registry_key(server or DEFAULT_DOMAIN)
    with open_client(paths, key, insecure=insecure, credentials=creds) as client:
        client.authenticate()
    credential_store(paths).store(key, creds)
    return key


def logout(paths: StatePaths, server: str | None) -> bool:
    """Forget the stored credentials of ``server``; False if there were none."""
    return credential_store(paths).remove(server or DEFAULT_DOMAIN)
