"""A supervisor whose keeper was killed becomes the keeper, and a fresh supervisor serves.

Without a keeper, killing the supervisor too would leave the containers with nobody
holding their pipes (their output is lost, ``reclaim.py``) and nobody as their parent (their
exit statuses are lost).  A new keeper cannot be started *above* us, and only an ancestor
can be the subreaper the containers fall to.  But we are their parent already: so we
``exec`` the keeper in this very process (the pid, the children, the child-subreaper flag
and the descriptors we keep open all survive ``execve``), handing it the containers'
pipes, pids and anything we reaped but did not record yet.  It then starts a supervisor,
which adopts everything as after a supervisor crash.  Nothing is lost by it: the log
writer's state is on disk, as for a ``kill -9``.

It happens once nothing is in flight (no client connected, no lifecycle operation running,
no exit being drained), so no client loses its answer; until then ``ping`` says the keeper
is missing (``tuibox info``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING

from .running import Client

if TYPE_CHECKING:
    from .server import Supervisor

CHECK_INTERVAL = 0.2


def arm(sup: Supervisor) -> None:
    sup.call_later(CHECK_INTERVAL, lambda: _check(sup))


def _check(sup: Supervisor) -> None:
    if sup.stopping:
        return
    if not _quiet(sup):
        arm(sup)
        return
    try:
        _become_keeper(sup)
    except OSError as exc:  # we stay a supervisor without a keeper: say so, try later
        from .server import log

        log(f"cannot become the keeper: {exc}")
        sup.call_later(30.0, lambda: _check(sup))


def _quiet(sup: Supervisor) -> bool:
    if sup.lifecycle.busy() or any(sup.waiters.values()):
        return False
    if any(run.status is not None for run in sup.running.values()):
        return False  # an exit being drained: let it be recorded first
    return not any(isinstance(key.data, Client) for key in sup.sel.get_map().values())


def _become_keeper(sup: Supervisor) -> None:
    from .server import log

    containers = {}
    inherit = [sup.listen.fileno()]
    for cid, run in sup.running.items():
        sup.pump(cid)  # a TTY's output still in our relay pipe goes to the log now
        containers[cid] = {"streams": list(run.external), "fds": list(run.external.values()),
                           "pid": run.pid, "orphan": run.orphan, "status": None}
        inherit += run.external.values()
    state = os.memfd_create("tuibox-rekeep", 0)
    os.write(state, json.dumps({"listen": sup.listen.fileno(), "containers": containers}).encode())
    os.lseek(state, 0, os.SEEK_SET)
    for fd in [*inherit, state]:
        os.set_inheritable(fd, True)
    log(f"becoming the keeper of {len(containers)} containers (pid {os.getpid()})")
    try:
        os.execv(sys.executable, [sys.executable, "-m", "tuibox.engine.supervisor", "--root",
                                  str(sup.paths.root), "--resume", str(state)])
    finally:  # still here: exec failed
        os.close(state)
        for fd in inherit:
            os.set_inheritable(fd, False)
