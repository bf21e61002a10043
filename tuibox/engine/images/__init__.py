"""The local image store (DESIGN §2, §5): blobs, unpacked layers, records and tags."""

from __future__ import annotations

from .reference import Reference, parse_reference
from .store import ImageStore

__all__ = ["ImageStore", "Reference", "parse_reference"]
