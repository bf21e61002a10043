"""The image config blob (OCI ``config.json``) to and from ``ImageRecord``.

The image id is the sha256 of the config bytes exactly as stored, so the bytes are kept
as a blob and this module only reads them; new configs (``import``) are serialised once
and never re-encoded.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..errors import ImageError
from ..models import ZERO_TIME, ImageConfig, ImageRecord
from .digests import chain_ids, check_digest

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


def host_architecture() -> str:
    """The host's architecture in GOARCH spelling, as image configs and indexes use."""
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def parse_created(value: object) -> datetime:
    if not isinstance(value, str) or not value:
        return ZERO_TIME
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return ZERO_TIME
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_created(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """Parse JSON that must be an object; an ``ImageError`` naming ``what`` otherwise."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImageError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    return doc


def record_from_config(raw: bytes, image_id: str) -> ImageRecord:
    """Build the record for config blob ``raw`` (tags and size are the caller's)."""
    doc = json_object(raw, f"image config {image_id}")
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise ImageError(f"image config {image_id} has no rootfs of type 'layers'")
    diff_ids = rootfs.get("diff_ids") or []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise ImageError(f"image config {image_id} has malformed rootfs.diff_ids")
    for d in diff_ids:
        check_digest(d, "diff_id")
    runtime = doc.get("config") or {}
    if not isinstance(runtime, dict):
        raise ImageError(f"image config {image_id} has a malformed 'config' section")
    # Go encodes empty slices and maps as null; our model wants them absent instead.
    runtime = {k: v for k, v in runtime.items() if v is not None}
    try:
        config = ImageConfig.model_validate(runtime)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ImageError(
            f"image config {image_id}: config.{where}: {first.get('msg', 'invalid')}"
        ) from exc
    return ImageRecord(
        id=image_id,
        created=parse_created(doc.get("created")),
        architecture=str(doc.get("architecture") or "amd64"),
        os=str(doc.get("os") or "linux"),
        config=config,
        diff_ids=list(diff_ids),
        chain_ids=chain_ids(list(diff_ids)),
    )


def new_config(*, diff_ids: list[str], config: ImageConfig, created: datetime,
               comment: str) -> bytes:
    """A fresh config blob for ``import``: one history entry per layer, Docker's keys."""
    stamp = format_created(created)
    doc: dict[str, Any] = {
        "architecture": host_architecture(),
        "os": "linux",
        "created": stamp,
        "config": config.model_dump(exclude_none=True),
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": stamp, "created_by": "tuibox import", "comment": comment}],
    }
    return json.dumps(doc, separators=(",", ":")).encode()
