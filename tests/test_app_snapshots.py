"""Snapshots of the dashboard with deterministic data (a stand-in engine, fixed records).

Update after reading the report: ``pytest tests/test_app_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from tuibox.app import TuiboxApp
from tuibox.engine.models import (
    Container,
    ContainerConfig,
    ContainerState,
    ImageRecord,
    PortBinding,
    ProcessInfo,
    ProcessSpec,
    StatsSample,
)
from tuibox.engine.paths import StatePaths
from tuibox.settings import Settings

snapshot_plugin = pytest.importorskip("pytest_textual_snapshot")

ROOT = Path("/tmp/tuibox-snapshot-root")
SIZE = (160, 45)
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _snapshot_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the SVGs in tests/snapshots/<module>/ (the project's layout)."""

    def dirname(cls: type, *, test_location: Any) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / test_location.basename)

    monkeypatch.setattr(snapshot_plugin.SVGImageExtension, "dirname", classmethod(dirname))
    monkeypatch.setenv("TUIBOX_CONFIG_FILE", "/nonexistent/tuibox.toml")


def _started(n: int, now: datetime) -> datetime:
    # 30 s into the minute: the UP column reads "nh00m" even if a loaded machine renders late.
    return now - timedelta(seconds=3600 * n + 30)


def _container(n: int, name: str, status: str, cmd: str) -> Container:
    cid = f"{n:x}" * 64
    now = datetime.now(UTC)
    state = ContainerState(cgroup=f"tuibox/{cid}")
    if status in ("running", "paused"):
        state.running, state.pid = True, 1000 + n
        state.paused = status == "paused"
        state.started_at = _started(n, now)
        if n == 1:  # one with a published port, for the PORTS column
            state.network.ports = [PortBinding(container_port=80, host_port=8080)]
    elif status == "exited":
        state.started_at, state.finished_at, state.exit_code = CREATED, CREATED, 137
    config = ContainerConfig(
        id=cid, name=name, created=CREATED + timedelta(minutes=n), image="busybox:latest",
        image_id="sha256:" + "b" * 64, process=ProcessSpec(args=["/bin/sh", "-c", cmd], env=[]),
        hostname=cid[:12])
    return Container(config=config, state=state)


CONTAINERS = [
    _container(1, "sample_job", "running", "while true; do echo Docker; sleep 1; done"),
    _container(2, "cpu_burner", "running", "while :; do :; done"),
    _container(3, "mem_grower", "paused", "grow"),
    _container(4, "old_job", "exited", "true"),
]


def _sample(c: Container, k: int) -> StatsSample:
    return StatsSample(id=c.id, name=c.name, time_ns=k * 1_000_000_000,
                       cpu_percent=(k * 7) % 60 + 1.5, memory_usage=(8 + k % 20) * 1024 * 1024,
                       memory_limit=64 * 1024 * 1024, memory_percent=12.5, pids=2 + k % 3,
                       pids_limit=64, net_rx=k * 2048, net_tx=k * 1024, block_read=k * 4096,
                       block_write=k * 512, psi_cpu=0.5, psi_memory=0.0, psi_io=0.1,
                       oom_kills=1, cpu_throttled_periods=12, cpu_throttled_ns=340_000_000)


class _Containers:
    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths

    def dir(self, cid: str) -> Path:
        return self.paths.container_dir(cid)


class _Images:
    def list(self) -> list[ImageRecord]:
        return [ImageRecord(id="sha256:" + "b" * 64, repo_tags=["busybox:latest"],
                            created=CREATED, size=2_170_000)]


class FakeEngine:
    """Just what the dashboard reads, with fixed answers."""

    def __init__(self) -> None:
        self.paths = StatePaths(ROOT)
        self.paths.ensure()
        self.containers = _Containers(self.paths)
        self.images = _Images()
        log = self.paths.container_dir(CONTAINERS[0].id)
        log.mkdir(parents=True, exist_ok=True)
        with open(log / f"{CONTAINERS[0].id}-json.log", "w") as f:
            for i in range(60):
                stream = "stderr" if i % 10 == 9 else "stdout"
                text = f"Docker {i}" if stream == "stdout" else f"warning {i}: disk almost full"
                f.write(json.dumps({"log": text + "\n", "stream": stream,
                                    "time": f"2026-01-02T03:{i // 60:02d}:{i % 60:02d}.5Z"}) + "\n")

    def list_with_errors(self) -> tuple[list[Container], list[Any]]:
        return CONTAINERS, []

    def get(self, ref: str) -> Container:
        return next(c for c in CONTAINERS if c.id == ref)

    def inspect(self, ref: str) -> dict[str, Any]:
        c = self.get(ref)
        return {"Id": c.id, "Name": "/" + c.name, "Created": CREATED.isoformat(),
                "State": {"Status": c.state.status, "Pid": c.state.pid},
                "Config": {"Image": c.config.image, "Cmd": c.config.process.args}}

    def top(self, ref: str) -> list[ProcessInfo]:
        return [ProcessInfo(pid=1001, ppid=900, user="root", state="S", cpu_seconds=0.25,
                            rss=1_200_000, started=1.0, command="/bin/sh -c while true"),
                ProcessInfo(pid=1050, ppid=1001, user="root", state="S", cpu_seconds=0.0,
                            rss=300_000, started=2.0, command="sleep 1")]


def make_app() -> TuiboxApp:
    # Uptimes count from when each app starts, not from collection (minutes earlier in a full run).
    now = datetime.now(UTC)
    for n, c in enumerate(CONTAINERS, 1):
        if c.state.running:
            c.state.started_at = _started(n, now)
    return TuiboxApp(FakeEngine(), settings=Settings())  # type: ignore[arg-type]


async def _loaded(pilot: Pilot[Any]) -> None:
    for _ in range(100):
        if getattr(pilot.app.screen, "_listed", False):
            break
        await pilot.pause(0.02)
    screen: Any = pilot.app.screen
    for k in range(1, 90):
        samples = {c.id: _sample(c, k) for c in CONTAINERS if c.state.running}
        screen.history.add(samples)
    screen.table.set_samples(samples)
    for _ in range(100):
        if len(screen.query_one("LogView").index) == 60:
            break
        await pilot.pause(0.02)
    await pilot.pause()


def _tab(tab: str) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        screen: Any = pilot.app.screen
        screen.query_one("StatsPanel").note = ""
        screen.query_one("#detail").active = tab
        await pilot.pause(0.3)
        screen._update_stats()
        await pilot.pause(0.1)

    return run_before


def test_main_screen_logs(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_loaded)


def test_stats_tab(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_tab("tab-stats"))


def test_inspect_tab(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_tab("tab-inspect"))


def test_processes_tab(snap_compare: Any) -> None:
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=_tab("tab-processes"))


def test_confirm_dialog(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("d")
        await pilot.pause(0.2)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_run_dialog(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("n")
        await pilot.pause(0.2)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_help_screen(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await _loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause(0.2)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)
