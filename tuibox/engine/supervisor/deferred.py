"""The supervisor's records when the disk is full: state changes wait, nothing stops.

A full state root made every ``state.json`` write fail, and a failed write in the middle
of recording an exit left waiters unanswered: ``stop`` and ``rm -f`` hung, exactly when the
operator needed them to free space.  ``DeferringStore`` keeps a change the disk has no room
for in memory, in order, shows it to the supervisor's own reads, and writes it as soon as
there is room (retried every second); a container removed meanwhile just drops its changes.
Meanwhile the state as it should be is kept in the runtime dir (tmpfs, another filesystem),
where the engine reads it for a container whose process is gone: ``ps`` shows a container
stopped on a full disk as exited, with its real exit code.  A supervisor killed meanwhile
hands them on that way too: its successor takes them up from there before it adopts.

``LossRecorder`` copies the log writer's count of dropped output (``logs/dropped.py``) into
``state.json`` at most once a second per container, so ``inspect``, ``logs`` and the
dashboard can show it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from datetime import UTC, datetime

from ..containers import ContainerStore
from ..diskfull import is_disk_full
from ..errors import RecordError
from ..logs.dropped import Dropped
from ..models import Container, ContainerState, LogLoss
from ..paths import StatePaths
from ..records import read_record, write_record

Change = Callable[[ContainerState], None]
Schedule = Callable[[float, Callable[[], None]], int]

RETRY_EVERY = 1.0
RECORD_LOSS_EVERY = 1.0


class DeferringStore(ContainerStore):
    """``ContainerStore`` whose state updates survive a full disk (see the module doc)."""

    def __init__(self, paths: StatePaths, call_later: Schedule,
                 log: Callable[[str], None]) -> None:
        super().__init__(paths)
        self._call_later = call_later
        self._log = log
        self._pending: dict[str, list[Change]] = {}
        self._waiting: set[str] = set()  # said so in the log; say again once written
        self._retrying = False
        self._take_over()

    def _take_over(self) -> None:
        """What a killed predecessor kept aside becomes ours to write."""
        for path in sorted((self.paths.run / "deferred").glob("*.json")):
            try:
                kept = read_record(path, ContainerState)
            except RecordError:
                path.unlink(missing_ok=True)
                continue
            self._pending[path.stem] = [functools.partial(_become, kept)]
            self._waiting.add(path.stem)

    def state(self, cid: str) -> ContainerState:
        st = super().state(cid)
        for change in self._pending.get(cid, ()):
            change(st)
        return st

    def get(self, cid: str) -> Container:
        if self._pending and not self._retrying:  # taken over before timers could be set
            self._retry_later()
        found = super().get(cid)
        changes = self._pending.get(cid)
        if not changes:
            return found
        st = found.state.model_copy(deep=True)
        for change in changes:
            change(st)
        return Container(config=found.config, state=st)

    def update_state(self, cid: str, change: Change) -> ContainerState:
        return self._write(cid, [*self._pending.pop(cid, []), change])

    def _write(self, cid: str, changes: list[Change]) -> ContainerState:
        made: list[ContainerState] = []

        def apply(st: ContainerState) -> None:
            for change in changes:
                change(st)
            made.append(st)

        try:
            state = super().update_state(cid, apply)
        except OSError as exc:
            if not is_disk_full(exc) or not made:
                raise
            if cid not in self._waiting:
                self._waiting.add(cid)
                self._log(f"state of {cid[:12]} kept in memory until there is room: {exc}")
            self._pending[cid] = changes
            self._keep_aside(cid, made[0])
            self._retry_later()
            return made[0]
        if cid in self._waiting:
            self._forget(cid)
            self._log(f"state of {cid[:12]} written: the disk has room again")
        return state

    def _keep_aside(self, cid: str, state: ContainerState) -> None:
        path = self.deferred_path(cid)
        try:
            path.parent.mkdir(mode=0o700, exist_ok=True)
            write_record(path, state)
        except OSError as exc:  # only the engine's view of it is late
            self._log(f"state of {cid[:12]} not kept aside either: {exc}")

    def _forget(self, cid: str) -> None:
        self._waiting.discard(cid)
        with contextlib.suppress(FileNotFoundError):
            self.deferred_path(cid).unlink()

    def _retry_later(self) -> None:
        if not self._retrying:
            self._retrying = True
            self._call_later(RETRY_EVERY, self._retry)

    def _retry(self) -> None:
        self._retrying = False
        for cid in list(self._pending):
            changes = self._pending.pop(cid)
            try:
                self._write(cid, changes)
            except (RecordError, OSError):  # removed meanwhile: nothing left to record
                self._forget(cid)


def _become(kept: ContainerState, st: ContainerState) -> None:
    for name in ContainerState.model_fields:
        setattr(st, name, getattr(kept, name))


class LossRecorder:
    """Record each container's dropped-output count, coalesced to one write a second."""

    def __init__(self, store: ContainerStore, call_later: Schedule) -> None:
        self._store = store
        self._call_later = call_later
        self._latest: dict[str, Dropped] = {}

    @staticmethod
    def seed(state: ContainerState) -> Dropped:
        """The count so far, for a new writer to carry on from."""
        loss = state.log_loss
        last_ns = int(loss.last_at.timestamp() * 1e9) if loss.lines or loss.bytes else 0
        return Dropped(lines=loss.lines, size=loss.bytes, error=loss.error, last_ns=last_ns)

    def dropped(self, cid: str, dropped: Dropped) -> None:
        """The writer's ``on_drop``."""
        if cid not in self._latest:
            self._call_later(RECORD_LOSS_EVERY, lambda: self._record(cid))
        self._latest[cid] = dropped

    def _record(self, cid: str) -> None:
        dropped = self._latest.pop(cid, None)
        if dropped is None:
            return
        loss = LogLoss(lines=dropped.lines, bytes=dropped.size, error=dropped.error,
                       last_at=datetime.fromtimestamp(dropped.last_ns / 1e9, UTC))

        def record(st: ContainerState) -> None:
            st.log_loss = loss

        with contextlib.suppress(RecordError):  # removed meanwhile
            self._store.update_state(cid, record)
