"""``run --pull missing|always|never``: the local image, pulled first when the policy says.

Kept apart from ``pull`` so that ``create`` (and the CLI) pay for importing httpx only
when a pull actually happens.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from ...errors import ImageNotFound, InvalidArgument, RegistryError
from ...models import ImageRecord
from .progress import ProgressCallback

if TYPE_CHECKING:
    from ..store import ImageStore

PullPolicy = Literal["missing", "always", "never"]


def _pull(store: ImageStore, reference: str, *, platform: str | None,
          progress: ProgressCallback | None, insecure: Iterable[str]) -> ImageRecord:
    from .pull import pull

    return pull(store, reference, platform=platform, progress=progress, insecure=insecure)


def ensure_image(store: ImageStore, reference: str, *, policy: PullPolicy = "missing",
                 platform: str | None = None, progress: ProgressCallback | None = None,
                 insecure: Iterable[str] = ()) -> ImageRecord:
    """``run --pull``: the local image, pulling it first if the policy says so."""
    if policy not in ("missing", "always", "never"):
        raise InvalidArgument(f"invalid pull policy {policy!r}: use missing, always or never")
    if policy == "always":
        return _pull(store, reference, platform=platform, progress=progress, insecure=insecure)
    try:
        return store.resolve(reference)
    except ImageNotFound:
        if policy == "never" or reference.startswith("sha256:"):
            raise
        try:
            return _pull(store, reference, platform=platform, progress=progress,
                         insecure=insecure)
        except RegistryError as exc:
            # Still "not found" to callers (exit code, dashboard), with the reason.
            raise ImageNotFound(f"No such image: {reference} (not found locally, and the "
                                f"pull failed: {exc})") from exc
