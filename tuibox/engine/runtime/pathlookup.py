"""Finding a command in a container's PATH, failing as Docker reports it (126 / 127).

Used inside containers by PID 1's set-up and by the exec helper: the stdlib's ``os`` only,
because the exec helper may import nothing once it has joined a container.
"""

from __future__ import annotations

import errno
import os


class NotRunnable(Exception):
    """The command cannot be run: Docker's message, the errno and the exit code."""

    def __init__(self, message: str, err: int, exit_code: int) -> None:
        super().__init__(message)
        self.err, self.exit_code = err, exit_code


def find_in_path(argv0: str, env: list[str]) -> str:
    if "/" in argv0:
        candidates = [argv0]
    else:
        path = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/bin:/bin")
        candidates = [os.path.join(d or ".", argv0) for d in path.split(":")]
    found_not_exec = ""
    for cand in candidates:
        if os.path.isfile(cand):
            if os.access(cand, os.X_OK):
                return cand
            found_not_exec = cand
    if found_not_exec:
        raise NotRunnable(f'exec: "{argv0}": permission denied', errno.EACCES, 126)
    if os.path.isdir(argv0):
        raise NotRunnable(f'exec: "{argv0}": is a directory', errno.EISDIR, 126)
    where = "no such file or directory" if "/" in argv0 else "executable file not found in $PATH"
    raise NotRunnable(f'exec: "{argv0}": {where}', errno.ENOENT, 127)
