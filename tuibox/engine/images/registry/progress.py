"""Progress events of a pull or push, for the CLI's bars and the dashboard.

Events are immutable and may arrive from several download threads at once; a consumer
that draws must do so under its own lock (the CLI) or post them to its UI thread (the
dashboard).  The statuses are Docker's, so the output reads like ``docker pull``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


class Status:
    """The status words of ``docker pull``/``push`` (one namespace, plain strings)."""

    PULLING_FROM = "Pulling from"
    PULLING_FS_LAYER = "Pulling fs layer"
    WAITING = "Waiting"
    DOWNLOADING = "Downloading"
    VERIFYING = "Verifying Checksum"
    DOWNLOAD_COMPLETE = "Download complete"
    EXTRACTING = "Extracting"
    PULL_COMPLETE = "Pull complete"
    ALREADY_EXISTS = "Already exists"
    RESUMING = "Resuming"
    PREPARING = "Preparing"
    PUSHING = "Pushing"
    PUSHED = "Pushed"
    LAYER_EXISTS = "Layer already exists"
    DIGEST = "Digest"
    DONE = "Status"


@dataclass(frozen=True)
class ProgressEvent:
    """One step.  ``id`` is a layer's short digest, or "" for a line about the image."""

    id: str
    status: str
    current: int = 0  # bytes so far, for DOWNLOADING / PUSHING / EXTRACTING
    total: int = 0  # bytes expected (0 = unknown)
    detail: str = ""  # the rest of an image line: the repo, the digest, the outcome


ProgressCallback = Callable[[ProgressEvent], None]


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def emit(callback: ProgressCallback | None, event: ProgressEvent) -> None:
    if callback is not None:
        callback(event)
