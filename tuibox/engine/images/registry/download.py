"""Downloading one blob to ``<root>/tmp/pull-<hex>.partial``, resumable and verified.

The partial file is named by the blob's digest, so a pull that failed half-way (the
registry went down, the user pressed ^C) resumes on the next try with a ``Range``
request instead of starting over.  An ``flock`` on the partial file keeps two threads
or two processes pulling the same blob from writing it at once.  A blob that does not
match its digest is deleted at once: it can never become good.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from ...errors import ImageError, RegistryError
from ..digests import CHUNK, hex_of
from .client import RegistryClient

PARTIAL_PREFIX = "pull-"
PARTIAL_SUFFIX = ".partial"
PARTIAL_MAX_AGE = 7 * 24 * 3600  # an abandoned pull is not worth its disk space forever
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-\d+/(?:\d+|\*)")


class Cancelled(Exception):
    """Another download of the same pull failed; stop early, keep the partial file."""


def partial_path(tmp: Path, digest: str) -> Path:
    return tmp / f"{PARTIAL_PREFIX}{hex_of(digest)}{PARTIAL_SUFFIX}"


def sweep_partials(tmp: Path, max_age: float = PARTIAL_MAX_AGE) -> None:
    cutoff = time.time() - max_age
    for path in tmp.glob(f"{PARTIAL_PREFIX}*{PARTIAL_SUFFIX}"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


@contextlib.contextmanager
def locked_partial(path: Path) -> Iterator[int]:
    """An fd of ``path`` under an exclusive flock (created if missing), still linked."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The previous holder may have renamed or deleted the file meanwhile.
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield fd
    finally:
        os.close(fd)


def _rehash(fd: int, size: int) -> hashlib._Hash:
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(CHUNK, remaining))
        if not chunk:
            break
        h.update(chunk)
        remaining -= len(chunk)
    return h


def fetch_blob(client: RegistryClient, repo: str, digest: str, size: int, path: Path, *,
               scope: str, progress: Callable[[int, int, bool], None],
               stop: threading.Event) -> None:
    """Make ``path`` hold exactly blob ``digest`` (``size`` bytes); resumes what is there.

    ``progress(done, total, resumed)`` is called as bytes arrive.  On a network error
    the bytes received so far are kept; on a digest or size mismatch the file is gone.
    """
    with locked_partial(path) as fd:
        have = os.fstat(fd).st_size
        if have > size:
            os.ftruncate(fd, 0)
            have = 0
        h = _rehash(fd, have)
        if have < size:
            have, h = _download(client, repo, digest, size, fd, have, h, scope=scope,
                                progress=progress, stop=stop)
        if have != size or "sha256:" + h.hexdigest() != digest:
            actual = "sha256:" + h.hexdigest()
            os.unlink(path)
            if have != size:
                raise ImageError(f"blob {digest} has {have} bytes, its descriptor says {size}")
            raise ImageError(f"blob digest mismatch: expected {digest}, got {actual}")


def _download(client: RegistryClient, repo: str, digest: str, size: int, fd: int, have: int,
              h: hashlib._Hash, *, scope: str, progress: Callable[[int, int, bool], None],
              stop: threading.Event) -> tuple[int, hashlib._Hash]:
    headers = {"Range": f"bytes={have}-"} if have else {}
    resumed = bool(have)
    resp = client.request("GET", f"/v2/{repo}/blobs/{digest}", scope=scope, headers=headers,
                          stream=True, expect=(200, 206, 404))
    try:
        if resp.status_code == 404:
            raise RegistryError(f"{repo}: blob {digest} not found: blob unknown")
        m = _CONTENT_RANGE_RE.match(resp.headers.get("content-range", ""))
        if resp.status_code != 206 or m is None or int(m.group(1)) != have:
            # The server (or the CDN it redirected to) ignored the Range: start over.
            have, h, resumed = 0, hashlib.sha256(), False
            os.ftruncate(fd, 0)
        os.lseek(fd, have, os.SEEK_SET)
        progress(have, size, resumed)
        for chunk in resp.iter_bytes(CHUNK):
            if stop.is_set():
                raise Cancelled
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            h.update(chunk)
            have += len(chunk)
            if have > size:
                break  # more than promised: the digest check fails it
            progress(have, size, resumed)
    except httpx.TransportError as exc:
        raise RegistryError(
            f"{client.host}: download of {digest[:19]} interrupted after {have} of {size} "
            f"bytes ({exc}); pull again to resume") from exc
    finally:
        resp.close()
    return have, h
