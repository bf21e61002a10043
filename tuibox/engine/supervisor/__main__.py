"""``python -m tuibox.engine.supervisor --root R``: start the keeper and supervisor.

The caller (the engine's client) holds a start lock and waits for this process to exit;
by then the listening socket is bound, so the first connect succeeds and queues.  Only
the stdlib is imported before the fork, so the long-lived keeper stays small.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..paths import StatePaths


def _run_supervisor(root: str) -> object:
    def run(listen_fd: int, ctl_fd: int) -> None:
        from .server import run as serve

        serve(root, listen_fd, ctl_fd)

    return run


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 4) or argv[0] != "--root" or argv[2:3] not in ([], ["--resume"]):
        print("usage: python -m tuibox.engine.supervisor --root DIR", file=sys.stderr)
        return 2
    root = argv[1]
    from ..paths import StatePaths

    paths = StatePaths(Path(root))
    if len(argv) == 4:  # a supervisor whose keeper was killed becomes the keeper (rekeep.py)
        return _resume(paths, root, int(argv[3]))
    paths.ensure_run()
    sock_path = paths.supervisor_socket
    sock_path.unlink(missing_ok=True)
    listen = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listen.bind(str(sock_path))
    os.chmod(sock_path, 0o600)
    listen.listen(512)
    if os.fork() > 0:
        os._exit(0)  # the caller waits for this; the keeper lives on, orphaned
    os.setsid()
    log_fd = os.open(paths.supervisor_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(null)
    os.close(log_fd)
    os.chdir("/")
    new = paths.keeper_pidfile.with_name("keeper.pid.new")  # readers never see it empty
    new.write_text(f"{os.getpid()}\n")
    new.replace(paths.keeper_pidfile)
    from . import keeper

    keeper.main(listen.fileno(), _run_supervisor(root))  # type: ignore[arg-type]
    return 0


def _resume(paths: StatePaths, root: str, state_fd: int) -> int:
    import json

    with os.fdopen(state_fd, "rb") as f:
        state = json.load(f)
    new = paths.keeper_pidfile.with_name("keeper.pid.new")  # readers never see it empty
    new.write_text(f"{os.getpid()}\n")
    new.replace(paths.keeper_pidfile)
    from . import keeper

    keeper.main(state["listen"], _run_supervisor(root),  # type: ignore[arg-type]
                resumed=state["containers"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
