"""Which registries may be spoken to without verified TLS.

Docker's rule: a registry on a loopback address is "insecure" without any
configuration (HTTPS without verification, falling back to plain HTTP); anything else
only if the user says so: ``--insecure-registry HOST[:PORT]``, the environment
``TUIBOX_INSECURE_REGISTRIES`` (comma-separated) or ``<root>/registries.json``
(``{"insecure-registries": ["host:port", …]}``, Docker's daemon.json key).
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ...errors import RecordError

ENV_INSECURE = "TUIBOX_INSECURE_REGISTRIES"


def split_host(domain: str) -> str:
    """``host:port`` / ``[v6]:port`` → the bare host name or address."""
    if domain.startswith("["):
        return domain[1:].partition("]")[0]
    return domain.rpartition(":")[0] if domain.count(":") == 1 else domain


def is_loopback(domain: str) -> bool:
    host = split_host(domain)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def configured_insecure(root: Path | None, extra: Iterable[str] = ()) -> frozenset[str]:
    """The registries the user allowed without TLS verification."""
    found = {e.strip() for e in extra if e.strip()}
    found.update(e.strip() for e in os.environ.get(ENV_INSECURE, "").split(",") if e.strip())
    if root is not None:
        path = root / "registries.json"
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            doc = {}
        except (OSError, ValueError) as exc:
            raise RecordError(str(path), str(exc)) from exc
        entries = doc.get("insecure-registries", []) if isinstance(doc, dict) else []
        found.update(e for e in entries if isinstance(e, str))
    return frozenset(found)


def is_insecure(domain: str, allowed: frozenset[str]) -> bool:
    return is_loopback(domain) or domain in allowed or split_host(domain) in allowed
