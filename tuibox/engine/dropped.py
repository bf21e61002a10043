"""cgroup v1-only settings on a cgroup v2 host: dropped with Docker's warning.

Docker keeps such a container (moby's ``verifyPlatformContainerResources``): on v2
``--oom-kill-disable`` has no knob, so the daemon discards it and returns a warning that
the docker CLI prints as ``WARNING: …``.  tuibox does the same: the CLI prints these
(stdlib only: ``run``'s fast path never imports pydantic) and ``limits.py`` drops the
setting, both from the same test.  ``--kernel-memory`` is refused everywhere instead
(Docker 23 removed it), in ``limits.py``.
"""

from __future__ import annotations

import os

OOM_KILL_DISABLE = "Your kernel does not support OomKillDisable. OomKillDisable discarded."


def cgroup2_host() -> bool:
    """Pure cgroup v2: the unified tree is /sys/fs/cgroup itself (a v1 or hybrid host
    has a tmpfs there, with the unified tree, if any, at /sys/fs/cgroup/unified)."""
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def warnings_for(*, oom_kill_disable: bool) -> list[str]:
    """Docker's warnings for the settings this host will drop."""
    if oom_kill_disable and cgroup2_host():
        return [OOM_KILL_DISABLE]
    return []
