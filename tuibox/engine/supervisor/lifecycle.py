"""One lifecycle operation at a time per container: the supervisor's state machine.

Clients fire ``start``, ``stop``, ``restart``, ``kill``, ``pause``, ``unpause``, ``rm`` at one
container at once.  The supervisor is single-threaded, but a ``stop`` waits (asynchronously)
for the exit, and ``restart`` and ``rm -f`` used to be several requests from the engine,
so they interleaved: a start landed between the stop and the removal of an ``rm -f`` and
left a running container without records.  Now each operation on a container runs to its
end before the next one for that container begins; what arrives meanwhile waits in the
container's queue, in order.  An operation finishes by calling ``done`` (at once, or
when the exit it waits for is recorded: ``after_exit``).

``rm -f`` always wins: it acts when it arrives (the container is marked as being removed
and killed at once, a pending restart is cancelled), then jumps the queue, so it runs as
soon as the operation in flight ends (a ``stop`` in flight is satisfied by the kill; a
``restart`` in flight does not start it again).  Whatever was queued behind it then finds
no container ("No such container").
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .running import Client

Done = Callable[[], None]


@dataclass
class Operation:
    name: str
    client: Client | None  # None for the supervisor's own (a restart policy's start)
    run: Callable[[Done], None]  # does the work, calls done() once it is complete


class Lifecycle:
    """Per-container queues; ``on_error(op, exc)`` answers an operation that raised."""

    def __init__(self, on_error: Callable[[Operation, Exception], None]) -> None:
        self._on_error = on_error
        self._busy: dict[str, Operation] = {}
        self._queues: dict[str, deque[Operation]] = {}
        self._exit_waiters: dict[str, list[Callable[[], None]]] = {}
        self._removing: set[str] = set()
        self._pumping: set[str] = set()

    def busy(self) -> bool:
        return bool(self._busy or self._queues)

    def in_flight(self, cid: str) -> str:
        op = self._busy.get(cid)
        return op.name if op else ""

    def submit(self, cid: str, op: Operation, *, first: bool = False) -> None:
        """Queue ``op`` (at the head with ``first``) and run it when its turn comes."""
        queue = self._queues.setdefault(cid, deque())
        if first:
            queue.appendleft(op)
        else:
            queue.append(op)
        self._pump(cid)

    def removing(self, cid: str) -> bool:
        return cid in self._removing

    def mark_removing(self, cid: str) -> None:
        self._removing.add(cid)

    def removed(self, cid: str) -> None:
        """The container is gone: what is still queued runs and finds nothing."""
        self._removing.discard(cid)
        self._exit_waiters.pop(cid, None)

    def after_exit(self, cid: str, then: Callable[[], None]) -> None:
        """Call ``then`` once the container's exit is recorded (``exited``)."""
        self._exit_waiters.setdefault(cid, []).append(then)

    def exited(self, cid: str) -> None:
        for then in self._exit_waiters.pop(cid, []):
            with contextlib.suppress(Exception):  # each continuation answers its own errors
                then()

    def _pump(self, cid: str) -> None:
        if cid in self._pumping:  # a done() called from inside run(): the loop below goes on
            return
        self._pumping.add(cid)
        try:
            while cid not in self._busy and self._queues.get(cid):
                queue = self._queues[cid]
                op = queue.popleft()
                if not queue:
                    del self._queues[cid]
                self._busy[cid] = op
                try:
                    op.run(lambda cid=cid, op=op: self._done(cid, op))  # type: ignore[misc]
                except Exception as exc:
                    self._on_error(op, exc)
                    self._done(cid, op)
        finally:
            self._pumping.discard(cid)

    def _done(self, cid: str, op: Operation) -> None:
        if self._busy.get(cid) is op:
            del self._busy[cid]
            self._pump(cid)
