"""``system boot``: what dockerd does for its containers when it starts with the host.

A reboot takes every process, cgroup, bridge and the runtime dir; the records stay.  The
supervisor started here adopts them (those that were running are recorded exited, 255,
and the restart policy is applied to that exit as to any other), and then each stopped
container whose policy says so is started, by moby's rule in ``daemon.restore`` →
``Container.ShouldRestart`` (``restartmanager.ShouldRestart``), for a container that
has been started before:

* ``always``: yes, even one stopped by hand;
* ``unless-stopped``: yes, unless it was stopped by hand;
* ``on-failure[:N]``: yes if its last exit code is not 0 and fewer than N restarts were
  made (N = 0: no limit).  Docker does not ask whether it was stopped by hand here, so
  a ``stop`` (143/137) counts as a failure at boot (moby#35166, moby#47846): so here;
* ``no``: never.

Containers that share another's network (``--network container:X``) start after the
others, so what they join is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import RecordError, TuiboxError
from .models import ZERO_TIME

if TYPE_CHECKING:
    from .engine import Engine
    from .models import ContainerConfig, ContainerState


def starts_at_boot(config: ContainerConfig, state: ContainerState) -> bool:
    """Docker's rule for a container that is not running when its daemon starts."""
    policy = config.restart_policy
    if state.running or state.started_at == ZERO_TIME:  # HasBeenStartedBefore
        return False
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not state.manually_stopped
    if policy.name == "on-failure":
        limit = policy.maximum_retry_count
        return state.exit_code != 0 and (limit == 0 or state.restart_count < limit)
    return False


@dataclass
class BootReport:
    supervisor_pid: int = 0
    started: list[tuple[str, str, str]] = field(default_factory=list)  # id, name, policy
    restarting: list[tuple[str, str]] = field(default_factory=list)  # left to the supervisor
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # id, name, error


def boot(engine: Engine) -> BootReport:
    """Start the root's supervisor (adopting what is there) and the containers whose
    restart policy says they come back; one that cannot start does not stop the rest."""
    report = BootReport()
    report.supervisor_pid = int(engine.supervisor.request({"op": "ping"})["pid"])
    containers = sorted(engine.list(all=True),
                        key=lambda c: c.config.network_mode.startswith("container:"))
    for c in containers:
        try:  # read again: the supervisor may have started or removed it meanwhile
            config, state = engine.containers.config(c.id), engine.containers.state(c.id)
        except RecordError:
            continue
        if state.restarting:
            report.restarting.append((c.id, config.name))
            continue
        if not starts_at_boot(config, state):
            continue
        try:
            engine.start(c.id)
        except TuiboxError as exc:
            if engine.containers.state(c.id).running:  # its restart timer beat us to it
                continue
            report.failed.append((c.id, config.name, str(exc)))
            continue
        report.started.append((c.id, config.name, config.restart_policy.name))
    return report
