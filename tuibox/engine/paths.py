"""Where a state root keeps things (DESIGN §2).  One object, no I/O beyond ``ensure``."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from .errors import InvalidArgument

try:  # the builtin module: hashlib would load OpenSSL, ~5 ms of every CLI start
    from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # another Python
    from hashlib import sha256

DEFAULT_ROOT = Path("/var/lib/tuibox")
RUNTIME_BASE = Path("/run/tuibox")


def default_root() -> Path:
    """``--root`` beats ``TUIBOX_ROOT`` beats ``/var/lib/tuibox``; the caller applies --root."""
    env = os.environ.get("TUIBOX_ROOT")
    return Path(env) if env else DEFAULT_ROOT


class StatePaths:
    """The layout of one state root and its runtime directory.  (A plain class, not a
    dataclass: ``dataclasses`` costs ~6 ms of every CLI start, and this is all it is.)"""

    __slots__ = ("root",)

    def __init__(self, root: Path) -> None:
        self.root = root

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatePaths) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def __repr__(self) -> str:
        return f"StatePaths({self.root!r})"

    @property
    def run(self) -> Path:
        """Runtime files (sockets, pid files) live on tmpfs, keyed by the root's path."""
        key = str(sha256(str(self.root.resolve()).encode()).hexdigest())[:12]
        return RUNTIME_BASE / key

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def layers(self) -> Path:
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        return self.root / "containers"

    @property
    def names(self) -> Path:
        return self.root / "names"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def supervisor_socket(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def keeper_pidfile(self) -> Path:
        return self.run / "keeper.pid"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    def container_dir(self, cid: str) -> Path:
        return self.containers / cid

    def ensure(self) -> None:
        """Create the root and its top-level dirs 0700: no other user may reach image
        layers, containers' files or their environments.  An older root's dirs are
        tightened here (a stat each); ``stateperms.tighten`` does the rest."""
        try:
            owner = os.stat(self.root).st_uid
        except FileNotFoundError:
            self.root.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            owner = os.stat(self.root).st_uid
        if owner != os.geteuid():
            # Another user made (and so controls) the directory: nothing in it is safe.
            raise InvalidArgument(f"state root {self.root} is owned by uid {owner}, "
                                  f"not by uid {os.geteuid()} who runs tuibox")
        for d in (self.root, self.images, self.layers, self.containers, self.names, self.tmp,
                  self.volumes):
            private_dir(d)

    def ensure_run(self) -> None:
        """The runtime dir (socket, pid files, log spool): root's only, like the root."""
        RUNTIME_BASE.mkdir(parents=True, exist_ok=True)
        private_dir(RUNTIME_BASE)
        private_dir(self.run)


PRIVATE_DIR = 0o700


def private_dir(path: Path) -> os.stat_result:
    """A directory that is 0700: made so, or made so now (one stat when it already is)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, PRIVATE_DIR)  # the umask can only take bits away from 0700
        st = os.stat(path)
    if stat.S_IMODE(st.st_mode) != PRIVATE_DIR:
        os.chmod(path, PRIVATE_DIR)
    return st
