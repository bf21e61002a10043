"""The container records on disk: ids, names, config and state, listing and removal.

Shared by the engine (in the CLI or dashboard process) and the supervisor.  Names are
reserved by creating ``names/<name>`` with ``O_EXCL``: atomic across processes with no
global lock, so concurrent ``run -d`` never collide.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from .diskfull import is_disk_full
from .errors import Conflict, ContainerNotFound, InvalidArgument, RecordError
from .liveness import exited_view, stale, supervisor_listening
from .models import Container, ContainerConfig, ContainerState, Event
from .names import random_name
from .paths import StatePaths
from .records import locked, read_record, write_record

NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def new_id() -> str:
    return secrets.token_hex(32)


def now() -> datetime:
    return datetime.now(UTC)


class ContainerStore:
    """Reads and writes ``containers/<id>/{config,state}.json`` and ``names/``.

    With ``live`` (the engine's store) a running record whose process is gone reads as
    exited while no supervisor runs to record it (a reboot, or all of tuibox killed); the
    supervisor itself reads the records as written."""

    def __init__(self, paths: StatePaths, *, live: bool = False) -> None:
        self.paths = paths
        self.live = live
        self._listening, self._listening_at = False, -1.0
        self._cache: dict[str, tuple[tuple[int, int], Container]] = {}

    # ------------------------------------------------------------------ names and ids

    def reserve_name(self, name: str | None, cid: str) -> str:
        """Claim ``name`` (or a random one) for ``cid``; Conflict if it is taken."""
        if name is not None:
            if not NAME_RE.match(name):
                raise InvalidArgument(
                    f'Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed')
            name = name.lstrip("/")
            if self._claim(name, cid):
                return name
            holder = self._name_holder(name)
            raise Conflict(f'Conflict. The container name "/{name}" is already in use by '
                           f'container "{holder}". You have to remove (or rename) that '
                           f"container to be able to reuse that name.")
        for attempt in range(100):
            candidate = random_name(retry=attempt)
            if self._claim(candidate, cid):
                return candidate
        raise Conflict("could not find a free random container name")

    def _claim(self, name: str, cid: str) -> bool:
        try:
            fd = os.open(self.paths.names / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, cid.encode())
        except OSError:  # a full disk: an empty name file would hold the name forever
            os.unlink(self.paths.names / name)
            raise
        finally:
            os.close(fd)
        return True

    def _name_holder(self, name: str) -> str:
        try:
            return (self.paths.names / name).read_text()
        except OSError:
            return "?"

    def release_name(self, name: str, cid: str) -> None:
        if self._name_holder(name) == cid:
            with contextlib.suppress(FileNotFoundError):
                (self.paths.names / name).unlink()

    def resolve(self, ref: str) -> str:
        """Full id for a name, a full id or a unique id prefix (Docker's order)."""
        if not ref:
            raise ContainerNotFound("No such container: (empty name)")
        if HEX64.match(ref) and (self.paths.containers / ref).is_dir():
            return ref
        holder = self._name_holder(ref.lstrip("/"))
        if holder != "?" and (self.paths.containers / holder).is_dir():
            return holder
        if re.fullmatch(r"[0-9a-f]+", ref):
            matches = [d for d in self._ids() if d.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise ContainerNotFound(
                    f"multiple containers found with provided prefix: {ref}")
        raise ContainerNotFound(f"No such container: {ref}")

    def _ids(self) -> list[str]:
        try:
            return [d for d in os.listdir(self.paths.containers) if HEX64.match(d)]
        except FileNotFoundError:
            return []

    # ------------------------------------------------------------------ records

    def dir(self, cid: str) -> Path:
        return self.paths.container_dir(cid)

    def config(self, cid: str) -> ContainerConfig:
        return read_record(self.dir(cid) / "config.json", ContainerConfig)

    def state(self, cid: str) -> ContainerState:
        state = read_record(self.dir(cid) / "state.json", ContainerState)
        return self._view(state, cid) if self.live else state

    def get(self, cid: str) -> Container:
        """Both records; re-read only when a file changed (listing 1000 containers every
        second must not re-parse 2000 JSON files)."""
        d = self.dir(cid)
        try:
            key = (os.stat(d / "config.json").st_mtime_ns, os.stat(d / "state.json").st_mtime_ns)
        except OSError:
            key = None
        cached = self._cache.get(cid)
        if key is not None and cached is not None and cached[0] == key:
            container = cached[1]
        else:
            container = Container(config=self.config(cid),
                                  state=read_record(d / "state.json", ContainerState))
            if key is not None:
                self._cache[cid] = (key, container)
        if self.live and container.state.running:  # checked on every read, never cached
            view = self._view(container.state, cid)
            if view is not container.state:
                return Container(config=container.config, state=view)
        return container

    def _view(self, state: ContainerState, cid: str) -> ContainerState:
        # What the supervisor could not write to a full disk yet is newer (its exit, the
        # output its log lost); one failed open for a running record when there is none.
        state = self.deferred_state(cid) or state
        if not stale(state):
            return state
        # A live supervisor is about to record the real exit (or a restart): trust it.
        # Verbs that enter or signal the process verify it themselves (liveness).
        now_ = time.monotonic()
        if now_ - self._listening_at > 0.5:
            self._listening = supervisor_listening(self.paths.supervisor_socket)
            self._listening_at = now_
        return state if self._listening else exited_view(state)

    def deferred_path(self, cid: str) -> Path:
        """Where the supervisor keeps a state the full disk had no room for (on tmpfs)."""
        return self.paths.run / "deferred" / f"{cid}.json"

    def deferred_state(self, cid: str) -> ContainerState | None:
        """The state not yet written to ``state.json`` (``supervisor/deferred.py``), if any."""
        try:
            return read_record(self.deferred_path(cid), ContainerState)
        except RecordError:
            return None

    def write_config(self, config: ContainerConfig) -> None:
        write_record(self.dir(config.id) / "config.json", config)

    def write_state(self, cid: str, state: ContainerState) -> None:
        path = self.dir(cid) / "state.json"
        with locked(path):
            write_record(path, state)

    def update_state(self, cid: str, change: Callable[[ContainerState], None]) -> ContainerState:
        """Read-modify-write of state.json under its lock."""
        path = self.dir(cid) / "state.json"
        with locked(path):
            state = read_record(path, ContainerState)
            change(state)
            write_record(path, state)
        return state

    def list(self) -> tuple[list[Container], list[RecordError]]:
        """Every container, newest first; unreadable records are returned, not raised."""
        found: list[Container] = []
        errors: list[RecordError] = []
        for cid in self._ids():
            try:
                found.append(self.get(cid))
            except RecordError as exc:
                if (self.dir(cid)).is_dir():  # vanished mid-listing means removed: skip
                    errors.append(exc)
        found.sort(key=lambda c: c.config.created, reverse=True)
        return found, errors

    def iter_running(self) -> Iterator[Container]:
        for c in self.list()[0]:
            if c.state.running:
                yield c

    # ------------------------------------------------------------------ removal

    def remove_files(self, cid: str) -> None:
        """Delete every file of a stopped container and free its name."""
        try:
            name = self.config(cid).name
        except RecordError:
            name = ""
        path = self.dir(cid)
        # Rename first so a half-deleted dir never looks like a container to readers.
        doomed = self.paths.tmp / f"removing-{cid}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        self.remove_spool(cid)
        if name:
            self.release_name(name, cid)

    def remove_spool(self, cid: str) -> None:
        """The log writer's spools and cursor in the runtime dir: a writer deletes them when
        the output ends, but one killed with its keeper (or a lost container) cannot, and
        they must not stay in ``/run`` until the supervisor shuts down."""
        spool = self.paths.run / "spool"
        for suffix in (".cursor", ".stdout.spool", ".stderr.spool"):
            with contextlib.suppress(FileNotFoundError):
                (spool / f"{cid}{suffix}").unlink()

    # ------------------------------------------------------------------ events

    def emit(self, action: str, cid: str, name: str = "", *,
             type_: Literal["container", "image", "network"] = "container",
             **attrs: str) -> None:
        event = Event(time=now(), type=type_, action=action, id=cid, name=name,
                      attributes=attrs)
        line = event.model_dump_json().encode() + b"\n"
        # One O_APPEND write per event: atomic between concurrent writers.
        try:
            fd = os.open(self.paths.events,
                         os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            # A full disk loses the event, never the operation it reports (an `rm -f`
            # that is freeing space, a container's exit being recorded).
            if not is_disk_full(exc):
                raise
