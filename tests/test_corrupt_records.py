"""Records broken on purpose (issue #13 item 6): truncated, garbage, wrong types.

Every broken item is listed as broken (the others still are), inspect shows what it can
and reports each failure, ``rm -f`` / ``rmi -f`` / ``network rm`` / ``volume rm`` remove
it with everything it held, and ``system check --repair`` rebuilds the indexes and
records that can be rebuilt from what is on disk.  Only the test's own root is touched.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.imagefixtures import busybox_rootfs
from tuibox.engine import Engine, RunOptions
from tuibox.engine.check import Problem, check

Cli = Callable[..., subprocess.CompletedProcess[str]]


def truncate(path: Path) -> None:
    """A torn write: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xff{{ not json at all")


def wrong_types(path: Path, change: Callable[[Any], None]) -> None:
    """Valid JSON whose fields have the wrong types."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


CORRUPTIONS = ["truncate", "garbage", "wrong_types"]
WRONG: dict[str, Callable[[Any], None]] = {
    "state.json": lambda d: d.update(running="yes please", pid=[1]),
    "config.json": lambda d: d.update(process=5, created="yesterday"),
    "image": lambda d: d.update(created=[1], chain_ids="abc"),
    "repositories.json": lambda d: d.update(refs=["busybox:latest"]),
    "network": lambda d: d.update(endpoints="many", subnet=10),
    "volume.json": lambda d: d.update(name={"a": 1}, created=None),
}


def corrupt(path: Path, how: str, kind: str) -> None:
    if how == "truncate":
        truncate(path)
    elif how == "garbage":
        garbage(path)
    else:
        wrong_types(path, WRONG[kind])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def problems(engine: Engine, kind: str, repair: bool = False) -> list[Problem]:
    return [p for p in check(engine, repair=repair) if p.kind == kind]


# ---------------------------------------------------------------------------- containers


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("record", ["state.json", "config.json"])
def test_broken_container_is_listed_inspected_and_removed(
        cli: Cli, engine: Engine, record: str, how: str) -> None:
    good = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], network="none",
                                 name="good"))
    victim = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], network="none",
                                   name="victim"))
    pid = engine.containers.state(victim.id).pid
    cgroups = list(Path("/sys/fs/cgroup").glob(f"*/tuibox/{victim.id}"))
    assert cgroups and alive(pid)
    path = engine.containers.dir(victim.id) / record
    corrupt(path, how, record)

    ps = cli("ps", "-a")
    lines = {line.split()[0]: line for line in ps.stdout.splitlines()[1:]}
    assert "Up" in lines[good.id[:12]]
    assert "Dead (broken record)" in lines[victim.id[:12]]
    assert lines[victim.id[:12]].endswith("victim")  # from the config, or the names index
    assert f"cannot read {path}" in ps.stderr and f"rm -f {victim.id[:12]}" in ps.stderr
    assert victim.id[:12] in cli("ps", "-aq").stdout.split()

    inspect = cli("inspect", "good", "victim", "nope", check=False)
    assert inspect.returncode == 1
    assert [c["Name"] for c in json.loads(inspect.stdout)] == ["/good"]
    assert "Error: No such object: nope" in inspect.stderr
    assert f"Error: cannot read {path}" in inspect.stderr

    refused = cli("rm", "victim", check=False)  # it still runs: that needs -f
    assert refused.returncode == 1 and "rm -f" in refused.stderr
    assert alive(pid)
    assert cli("rm", "-f", "victim").stdout.strip() == "victim"
    assert wait_gone(pid)
    assert not engine.containers.dir(victim.id).exists()
    assert not [p for p in cgroups if p.exists()]
    assert not list((engine.paths.run / "spool").glob(f"{victim.id}*"))
    assert cli("create", "--network", "none", "--name", "victim", "busybox").returncode == 0
    assert engine.get("good").state.running
    assert "broken" not in cli("ps", "-a").stderr


def test_broken_state_of_a_stopped_container_is_reset_by_repair(engine: Engine) -> None:
    c = engine.run(RunOptions(image="busybox", command=["true"], network="none"))
    engine.wait(c.id)
    garbage(engine.containers.dir(c.id) / "state.json")
    [found] = problems(engine, "container")
    assert "state.json" in found.detail and not found.repaired and "--repair" in found.fix
    [fixed] = problems(engine, "container", repair=True)
    assert fixed.repaired
    state = engine.get(c.id).state
    assert state.status == "dead" and "could not be read" in state.error
    assert problems(engine, "container") == []
    engine.remove(c.id)  # now the usual way


def test_rm_of_a_created_container_without_any_record(engine: Engine) -> None:
    c = engine.create(RunOptions(image="busybox", command=["true"], network="none",
                                 name="bare"))
    for name in ("config.json", "state.json"):
        (engine.containers.dir(c.id) / name).unlink()
    assert engine.remove("bare") == c.id  # found by its name, removed without -f
    assert not (engine.paths.names / "bare").exists()


# -------------------------------------------------------------------------------- images


@pytest.fixture
def images(engine: Engine, tmp_path: Path) -> Engine:
    """busybox:latest (also tagged alias:2) and other:1, an image of its own."""
    engine.images.tag("busybox", "alias:2")
    engine.images.import_image(busybox_rootfs(tmp_path / "rootfs"), ref="other:1",
                               changes=['CMD ["true"]'])
    return engine


def image_path(engine: Engine, ref: str) -> Path:
    return engine.images._record_path(engine.images.resolve(ref).id)


def listed(cli: Cli) -> tuple[set[str], str]:
    out = cli("images")
    return {":".join(line.split()[:2]) for line in out.stdout.splitlines()[1:]}, out.stderr


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_broken_image_record_is_reported_rebuilt_and_removable(
        cli: Cli, images: Engine, how: str) -> None:
    engine = images
    path = image_path(engine, "busybox")
    short = path.stem[:12]
    corrupt(path, how, "image")

    shown, errors = listed(cli)
    assert shown == {"other:1"} and f"cannot read {path}" in errors  # never emptied
    inspect = cli("inspect", "other:1", "busybox", check=False)
    assert inspect.returncode == 1 and len(json.loads(inspect.stdout)) == 1
    assert f"image {short} is damaged" in inspect.stderr
    refused = cli("rmi", "busybox", check=False)
    assert refused.returncode == 1 and f"rmi -f {short}" in refused.stderr

    [found] = problems(engine, "image")
    assert found.item == short and "rebuilds it from its config" in found.fix
    [fixed] = problems(engine, "image", repair=True)
    assert fixed.repaired
    assert listed(cli)[0] == {"other:1", "busybox:latest", "alias:2"}
    assert cli("run", "--rm", "--network", "none", "alias:2", "true").returncode == 0
    assert check(engine) == []

    corrupt(path, how, "image")
    removed = cli("rmi", "-f", "busybox").stdout.splitlines()
    assert {"Untagged: busybox:latest", "Untagged: alias:2",
            f"Deleted: sha256:{path.stem}"} <= set(removed)
    assert not path.exists()
    assert listed(cli) == ({"other:1"}, "")
    assert check(engine) == []


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_broken_tag_index_is_rebuilt(cli: Cli, images: Engine, busybox_archives: tuple[Path, Path],
                                     how: str) -> None:
    engine = images
    index = engine.images.repositories.path
    corrupt(index, how, "repositories.json")
    for args in (("run", "--rm", "--network", "none", "busybox", "true"),
                 ("load", "-i", str(busybox_archives[0])),
                 ("rmi", "other:1")):
        failed = cli(*args, check=False)
        assert failed.returncode != 0
        assert "tag index is damaged" in failed.stderr and "system check --repair" in \
            failed.stderr
        assert "Traceback" not in failed.stderr
    shown, errors = listed(cli)  # the records' own copies of their tags
    assert shown == {"other:1", "busybox:latest", "alias:2"} and "tag index" in errors

    [found] = problems(engine, "tags")
    assert not found.repaired
    [fixed] = problems(engine, "tags", repair=True)
    assert fixed.repaired
    assert engine.images.repositories.read() == {
        "alias:2": engine.images.resolve("busybox").id,
        "busybox:latest": engine.images.resolve("busybox").id,
        "other:1": engine.images.resolve("other:1").id}
    assert cli("run", "--rm", "--network", "none", "busybox", "true").returncode == 0
    assert cli("rmi", "other:1").returncode == 0
    assert check(engine) == []


def test_torn_index_and_record_together_keep_what_can_be_read(images: Engine) -> None:
    """Both copies of busybox's tags damaged: what each still holds is kept."""
    engine = images
    busybox = engine.images.resolve("busybox").id
    record = image_path(engine, "busybox")
    index = engine.images.repositories.path
    index.write_text(json.dumps({"schema_version": 1, "refs": {
        "alias:2": busybox, "busybox:latest": busybox, "other:1": "sha256:" + "0" * 64}})[:-30])
    truncate(record)
    fixed = check(engine, repair=True)
    assert {p.kind for p in fixed} == {"image", "tags"} and all(p.repaired for p in fixed)
    refs = engine.images.repositories.read()
    assert refs["alias:2"] == busybox and refs["busybox:latest"] == busybox
    assert engine.images.resolve("busybox:latest").repo_tags == ["alias:2", "busybox:latest"]
    assert check(engine) == []


def test_index_entries_and_layers_nothing_owns_go_with_repair(images: Engine) -> None:
    engine = images
    with engine.images.repositories.update() as refs:
        refs["ghost:1"] = "sha256:" + "1" * 64
    stray = engine.paths.layers / secrets.token_hex(32)
    (stray / "diff").mkdir(parents=True)
    found = check(engine)
    assert {(p.kind, p.item) for p in found} == {("tags", "ghost:1"), ("layer", stray.name[:12])}
    assert all(p.repaired for p in check(engine, repair=True))
    assert "ghost:1" not in engine.images.repositories.read() and not stray.exists()
    assert check(engine) == []


# ------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_broken_network_record_is_listed_and_removable(
        cli: Cli, engine: Engine, how: str) -> None:
    first = engine.network_create("first")
    engine.network_create("second")
    c = engine.run(RunOptions(image="busybox", command=["true"], network="first"))
    engine.wait(c.id)  # its bridge was built and is kept idle
    path = engine.paths.root / "networks" / "first.json"
    corrupt(path, how, "network")

    ls = cli("network", "ls")
    names = [line.split()[1] for line in ls.stdout.splitlines()[1:]]
    assert "second" in names and "bridge" in names and "first" not in names
    assert f"cannot read {path}" in ls.stderr and "network rm first" in ls.stderr
    inspect = cli("network", "inspect", "first", "second", check=False)
    assert inspect.returncode == 1 and [n["Name"] for n in json.loads(inspect.stdout)] == \
        ["second"]
    [found] = problems(engine, "network")
    assert found.item == "first" and "network rm first" in found.fix

    in_use = cli("network", "rm", "first", check=False)  # a container is configured on it
    assert in_use.returncode == 1 and "in use" in in_use.stderr
    engine.remove(c.id)
    assert cli("network", "rm", "first").stdout.strip() == "first"
    assert not path.exists() and problems(engine, "network") == []
    engine.shutdown()
    assert not (Path("/sys/class/net") / first.bridge).exists()  # its bridge went too
    assert cli("network", "create", "first").returncode == 0


def test_broken_builtin_network_is_made_again_by_repair(cli: Cli, engine: Engine) -> None:
    engine.networks.list()  # the built-in record exists
    path = engine.paths.root / "networks" / "bridge.json"
    garbage(path)
    ls = cli("network", "ls")  # lists, reports, does not crash
    assert "none" in ls.stdout and f"cannot read {path}" in ls.stderr
    failed = cli("run", "--rm", "busybox", "true", check=False)
    assert failed.returncode == 125 and "cannot read" in failed.stderr
    [fixed] = problems(engine, "network", repair=True)
    assert fixed.repaired
    assert cli("run", "--rm", "busybox", "true").returncode == 0


def test_addresses_held_for_gone_containers_are_released(engine: Engine) -> None:
    engine.network_create("held")
    path = engine.paths.root / "networks" / "held.json"
    record = json.loads(path.read_text())
    gone = secrets.token_hex(32)
    record["endpoints"][gone] = {
        "container_id": gone, "container_name": "gone", "hostname": "gone",
        "ip": record["gateway"][:-1] + "7", "prefix_len": 24, "gateway": record["gateway"],
        "mac": "02:42:00:00:00:07", "host_ifname": "vethgone"}
    path.write_text(json.dumps(record))
    [found] = problems(engine, "network")
    assert gone[:12] in found.detail
    assert all(p.repaired for p in problems(engine, "network", repair=True))
    assert engine.networks.get("held").endpoints == {}


# ------------------------------------------------------------------- volumes, names, /run


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_broken_volume_record_is_listed_rebuilt_or_removed(
        cli: Cli, engine: Engine, how: str) -> None:
    for name in ("kept", "fixed", "dropped"):
        engine.volumes.create(name)
    (engine.volumes.data("fixed") / "file").write_text("data")
    for name in ("fixed", "dropped"):
        corrupt(engine.paths.volumes / name / "volume.json", how, "volume.json")
    ls = cli("volume", "ls")
    assert ls.stdout.split()[-1] == "kept" and "fixed" in ls.stderr and "dropped" in ls.stderr
    assert cli("volume", "rm", "dropped").stdout.strip() == "dropped"
    assert {p.item for p in problems(engine, "volume")} == {"fixed"}
    assert all(p.repaired for p in problems(engine, "volume", repair=True))
    assert [v.name for v in engine.volumes.list()] == ["fixed", "kept"]
    assert (engine.volumes.data("fixed") / "file").read_text() == "data"
    rm = cli("volume", "rm", "../containers", check=False)  # never outside volumes/
    assert rm.returncode == 1 and engine.paths.containers.is_dir()


def test_names_index_is_rebuilt_from_the_configs(engine: Engine) -> None:
    c = engine.create(RunOptions(image="busybox", command=["true"], network="none",
                                 name="named"))
    (engine.paths.names / "named").unlink()  # the index lost it: anyone could take it
    stale = engine.paths.names / "ghost"
    stale.write_bytes(b"\xffnot an id")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    found = {p.item: p for p in problems(engine, "name")}
    assert set(found) == {"named", "ghost"} and not any(p.repaired for p in found.values())
    assert all(p.repaired for p in problems(engine, "name", repair=True))
    assert (engine.paths.names / "named").read_text() == c.id
    assert not stale.exists()
    engine.create(RunOptions(image="busybox", command=["true"], network="none", name="ghost"))
    assert problems(engine, "name") == []


def test_spools_of_gone_containers_are_deleted(engine: Engine) -> None:
    c = engine.run(RunOptions(image="busybox", command=["true"], network="none"))
    engine.wait(c.id)  # a supervisor runs: the runtime dir is its (and goes with it)
    spool = engine.paths.run / "spool"
    spool.mkdir(exist_ok=True)
    orphan = spool / f"{secrets.token_hex(32)}.cursor"
    orphan.write_bytes(b"x")
    [found] = problems(engine, "spool")
    assert not found.repaired
    assert all(p.repaired for p in problems(engine, "spool", repair=True))
    assert not orphan.exists()


def test_rm_f_of_a_broken_container_nobody_supervises(engine: Engine) -> None:
    """Keeper and supervisor killed, then the config broken: the cgroup still says what
    runs, and rm -f kills it and removes the cgroup without any supervisor's help."""
    import signal

    from tests.test_supervisor import kill_supervisor

    c = engine.run(RunOptions(image="busybox", command=["sleep", "1d"], network="none"))
    pid = engine.containers.state(c.id).pid
    cgroups = list(Path("/sys/fs/cgroup").glob(f"*/tuibox/{c.id}"))
    os.kill(int(engine.paths.keeper_pidfile.read_text()), signal.SIGKILL)
    kill_supervisor(engine)
    garbage(engine.containers.dir(c.id) / "config.json")
    assert engine.remove(c.id, force=True) == c.id
    assert wait_gone(pid)
    assert cgroups and not [p for p in cgroups if p.exists()]
    assert not engine.containers.dir(c.id).exists()
    engine.supervisor.request({"op": "ping"})  # its shutdown takes the killed one's /run


def test_system_check_command(cli: Cli, images: Engine) -> None:
    engine = images
    truncate(engine.images.repositories.path)
    (engine.paths.volumes / "vol" / "_data").mkdir(parents=True)
    garbage(engine.paths.volumes / "vol" / "volume.json")
    found = cli("system", "check", check=False)
    assert found.returncode == 1
    assert "tags " in found.stdout and "volume vol: cannot read" in found.stdout
    assert "fix: `tuibox system check --repair`" in found.stdout
    assert "2 problem(s), 0 repaired, 2 left" in found.stdout
    repaired = cli("system", "check", "--repair")
    assert "2 problem(s), 2 repaired, 0 left" in repaired.stdout
    assert cli("system", "check").stdout.endswith("no problems found\n")
