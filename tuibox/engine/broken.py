"""Containers and networks whose records cannot be read: shown, and removable.

DESIGN §2: a record that cannot be read is reported (with its path) and skipped, never
silently dropped and never crashing a list.  So ``ps -a`` lists such a container as dead
with its error (what is known of it comes from whichever record still reads, and from
the names index), and ``rm -f`` / ``network rm`` remove what is on disk for it: its
directory, its cgroup and whatever still runs in it, its name, its network endpoints and
bridge.  Nothing here trusts the broken record; everything else is read as usual.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import Conflict, RecordError, TuiboxError
from .models import ContainerState

if TYPE_CHECKING:
    from .containers import ContainerStore
    from .engine import Engine
    from .paths import StatePaths

# The supervisor's `forget` refuses while it still holds the container; after a kill it
# lets go as soon as it has reaped the process.
FORGET_TIMEOUT = 15.0
_BRIDGE_RE = re.compile(rb'"bridge"\s*:\s*"(tbx-[0-9a-f]{11})"')
_ID_RE = re.compile(rb'"id"\s*:\s*"([0-9a-f]{64})"')


@dataclass(frozen=True)
class BrokenContainer:
    """What is known of a container one of whose records cannot be read."""

    id: str
    name: str  # from its config, else from the names index, else ""
    image: str  # from its config, else ""
    error: str
    created: datetime  # its config's, else its directory's modification time
    command: str = ""  # from its config

    @property
    def short_id(self) -> str:
        return self.id[:12]


def names_index(paths: StatePaths) -> dict[str, list[str]]:
    """container id → the names ``names/`` reserves for it (normally one)."""
    held: dict[str, list[str]] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(paths.names):
            with (contextlib.suppress(OSError, UnicodeDecodeError),
                  open(entry.path, encoding="ascii") as f):
                held.setdefault(f.read(100).strip(), []).append(entry.name)
    return held


def cid_of(error: RecordError) -> str:
    """The container a record error is about (``containers/<id>/<record>.json``)."""
    return Path(error.path).parent.name


def describe(store: ContainerStore, errors: list[RecordError]) -> list[BrokenContainer]:
    """``ContainerStore.list``'s errors as containers ``ps -a`` can show, newest first."""
    if not errors:
        return []
    index = names_index(store.paths)
    found = []
    for error in errors:
        cid = cid_of(error)
        name, image, command = "", "", ""
        try:
            config = store.config(cid)
            name, image, created = config.name, config.image, config.created
            command = shlex.join(config.process.args)
        except RecordError:
            name = (index.get(cid) or [""])[0]
            try:
                created = datetime.fromtimestamp(os.stat(store.dir(cid)).st_mtime, UTC)
            except OSError:
                continue  # removed meanwhile
        found.append(BrokenContainer(id=cid, name=name, image=image, error=str(error),
                                     created=created, command=command))
    found.sort(key=lambda b: b.created, reverse=True)
    return found


# ---------------------------------------------------------------------------- containers


def remove_container(engine: Engine, cid: str, *, force: bool, volumes: bool = False) -> str:
    """``rm`` of a container with an unreadable record (``Engine.remove`` sends it here).

    What runs in its cgroup needs ``force``.  A container whose config still reads gets
    a fresh state record and is then removed the usual way (its anonymous volumes, the
    supervisor's record of the exit); one whose config is lost is taken apart here."""
    from .cgroups import detect_driver
    from .supervisor.running import cgroup_rel

    store = engine.containers
    rel = cgroup_rel(cid)
    driver = detect_driver()
    running = bool(driver.pids(rel))
    if running and not force:
        raise Conflict(f"container {cid[:12]} has a broken record and processes that still "
                       f"run: use rm -f to kill and remove it")
    try:
        store.config(cid)
        config_ok = True
    except RecordError:
        config_ok = False
    if config_ok:  # only the state is broken: a valid one lets the supervisor record the exit
        store.write_state(cid, reset_state(store, cid, rel))
    if running:
        with contextlib.suppress(TuiboxError, OSError):
            if driver.frozen(rel):  # a frozen task acts on SIGKILL only once thawed
                driver.thaw(rel)
        with contextlib.suppress(TuiboxError, OSError):
            driver.kill_all(rel)
        deadline = time.monotonic() + FORGET_TIMEOUT
        while driver.pids(rel) and time.monotonic() < deadline:  # before its cgroup goes
            time.sleep(0.02)
    _forget(engine, cid)
    if not store.dir(cid).exists():
        return cid  # it had --rm: the supervisor removed it as it exited
    if config_ok:
        return engine.remove(cid, force=force, volumes=volumes)
    driver.remove(rel)
    release_endpoints(engine, cid)
    names = names_index(store.paths).get(cid, [])
    store.remove_files(cid)
    for name in names:
        store.release_name(name, cid)
    store.emit("destroy", cid, names[0] if names else "")
    return cid


def reset_state(store: ContainerStore, cid: str, rel: str) -> ContainerState:
    """A valid state for a container whose state record was lost: dead, saying why."""
    try:
        store.state(cid)
        detail = "it was reset"
    except RecordError as exc:
        detail = f"{exc.detail}; it was reset"
    return ContainerState(dead=True, exit_code=255, cgroup=rel, finished_at=datetime.now(UTC),
                          error=f"its state record could not be read ({detail})")


def _forget(engine: Engine, cid: str) -> None:
    """Make a running supervisor drop the container (once it reaped what was killed)."""
    if not engine.supervisor.running():
        return
    deadline = time.monotonic() + FORGET_TIMEOUT
    while True:
        try:
            engine.supervisor.request({"op": "forget", "id": cid})
            return
        except TuiboxError as exc:
            if "is running" not in exc.message or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def release_endpoints(engine: Engine, cid: str) -> list[str]:
    """Give back the addresses a gone container still holds (its veths went with its
    namespace); the networks' names."""
    released = []
    for record, _ in engine.networks.endpoints_of(cid):
        engine.networks.release(record.name, cid)
        released.append(record.name)
    return released


# ------------------------------------------------------------------------------ networks


def remove_network(engine: Engine, name: str, error: RecordError) -> str:
    """``network rm`` of a network whose record cannot be read: the record goes, and its
    bridge (named in what is left of the record) with the supervisor's sweep, or now if
    no supervisor runs to keep it."""
    from .network.store import BUILTIN

    users = [c.name for c in engine.list(all=True) if name in c.config.networks
             and (name != BUILTIN or c.state.running)]
    if users:
        raise Conflict(f"network {name} is in use by container(s) {', '.join(users)}: "
                       f"remove them or `tuibox network disconnect` first ({error})")
    raw = engine.networks.discard(name)
    bridge, net_id = _BRIDGE_RE.search(raw), _ID_RE.search(raw)
    if bridge:
        drop_orphan_bridge(engine, bridge.group(1).decode())
    engine.containers.emit("destroy", net_id.group(1).decode() if net_id else "", name,
                           type_="network")
    return name


def drop_orphan_bridge(engine: Engine, bridge: str) -> None:
    """Delete a removed network's bridge when no supervisor runs to do it (one killed
    with its keeper left it up); a running supervisor reaps it with its idle bridges."""
    if not os.path.exists(f"/sys/class/net/{bridge}") or engine.supervisor.running():
        return
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr, contextlib.suppress(NetlinkError):
        for index in ipr.link_lookup(ifname=bridge):
            ipr.link("del", index=index)
