"""Pilot tests of the dashboard against the real engine and real containers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from tuibox.app import TuiboxApp
from tuibox.engine import Engine, RunOptions
from tuibox.settings import Settings
from tuibox.widgets.container_table import ContainerTable
from tuibox.widgets.log_view import LogView, entry_text

LOOP = "while true; do echo Docker; sleep 0.2; done"

Body = Callable[[TuiboxApp, Pilot[int]], Awaitable[None]]


@pytest.fixture(autouse=True)
def _no_user_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUIBOX_CONFIG_FILE", str(tmp_path / "none.toml"))


def drive(engine: Engine, body: Body, *, size: tuple[int, int] = (160, 45)) -> None:
    """Run the app headless around ``body``; engine actions are finished before it returns."""

    async def main() -> None:
        app = TuiboxApp(engine, settings=Settings(stop_timeout=1))
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: getattr(app.screen, "_listed", False), what="listing")
            await body(app, pilot)
            await settle(app, pilot)

    asyncio.run(main())


async def until(pilot: Pilot[int], predicate: Callable[[], object], timeout: float = 5.0,
                what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            if predicate():
                return
        except Exception:  # the DOM may not be ready yet
            pass
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)


async def settle(app: TuiboxApp, pilot: Pilot[int]) -> None:
    """Wait for every engine call the app started (never leave one running)."""
    await until(pilot, lambda: not [w for w in app.workers
                                    if w.group == "engine-action" and w.is_running],
                timeout=20, what="engine actions")


def table(app: TuiboxApp) -> ContainerTable:
    return app.screen.query_one(ContainerTable)


def status(app: TuiboxApp, cid: str) -> str:
    return str(table(app).get_cell(cid, "status"))


def run(engine: Engine, *cmd: str, name: str | None = None) -> str:
    return engine.run(RunOptions(image="busybox", command=list(cmd) or ["sh", "-c", LOOP],
                                 name=name)).id


def test_table_shows_container_started_outside(engine: Engine) -> None:
    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        cid = run(engine, name="outside")  # after the app started: the file watch must see it
        await until(pilot, lambda: cid in table(app).rows, 2.0, "the new row")
        assert str(table(app).get_cell(cid, "name")) == "outside"
        await until(pilot, lambda: status(app, cid) == "running", 2.0, "running")

    drive(engine, body)


def test_lifecycle_keys(engine: Engine) -> None:
    cid = run(engine, name="life")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).selected_id == cid, what="selection")
        await pilot.press("s")  # stop asks first
        await pilot.press("y")
        await until(pilot, lambda: status(app, cid).startswith("exited"), 8, "stopped")
        await pilot.press("S")
        await until(pilot, lambda: status(app, cid) == "running", 5, "started")
        if hasattr(engine, "pause"):
            await pilot.press("f")
            await until(pilot, lambda: status(app, cid) == "frozen", 5, "frozen")
            await pilot.press("p")
            await until(pilot, lambda: status(app, cid) == "running", 5, "thawed")
        started = engine.get(cid).state.started_at
        await pilot.press("r")
        await until(pilot, lambda: engine.get(cid).state.started_at != started, 8, "restart")
        await until(pilot, lambda: status(app, cid) == "running", 5, "running again")
        await pilot.press("k", "y")
        await until(pilot, lambda: status(app, cid) == "exited (137)", 5, "killed")

    drive(engine, body)


def test_confirm_guards_remove(engine: Engine) -> None:
    cid = run(engine, name="guarded")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).selected_id == cid, what="selection")
        await pilot.press("d")
        await pilot.press("n")  # no: nothing happens
        await pilot.pause(0.3)
        await settle(app, pilot)
        assert engine.get(cid).state.running
        await pilot.press("d", "y")
        await until(pilot, lambda: cid not in table(app).rows, 5, "row removed")
        assert not [c for c in engine.list(all=True) if c.id == cid]

    drive(engine, body)


def test_bulk_stop_with_marks(engine: Engine) -> None:
    a, b = run(engine, name="bulk_a"), run(engine, name="bulk_b")
    run(engine, name="bulk_c")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).row_count == 3, what="rows")
        t = table(app)
        t.move_cursor(row=t.get_row_index(a))
        await pilot.press("space")
        t.move_cursor(row=t.get_row_index(b))
        await pilot.press("space")
        assert t.marked == {a, b}
        await pilot.press("s", "y")
        await until(pilot, lambda: status(app, a).startswith("exited")
                    and status(app, b).startswith("exited"), 8, "both stopped")
        assert [c.state.running for c in engine.list(all=True) if c.name == "bulk_c"] == [True]

    drive(engine, body)


def test_log_lines_arrive_while_following(engine: Engine) -> None:
    cid = run(engine, name="talker")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: view.cid == cid and len(view.index) >= 2, 5, "first lines")
        seen = len(view.index)
        await until(pilot, lambda: len(view.index) > seen + 2, 3, "more lines")
        assert view.follow
        assert entry_text(view.index.entry(len(view.index) - 1)) == "Docker"
        assert view.scroll_y == view.max_scroll_y

    drive(engine, body)


def test_log_search_finds_a_line(engine: Engine) -> None:
    cid = run(engine, "sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done;"
              " echo needle-here >&2; sleep 60", name="searchme")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        view = app.screen.query_one(LogView)
        await until(pilot, lambda: view.cid == cid and len(view.index) == 301, 5, "all lines")
        view.focus()
        await pilot.press("home")
        assert not view.follow  # scrolling up pauses follow
        await pilot.press("slash")
        for ch in "line 150":
            await pilot.press("space" if ch == " " else ch)
        await pilot.press("enter")
        await until(pilot, lambda: view.current_match == 150, 5, "match")
        assert entry_text(view.index.entry(150)) == "line 150"
        await pilot.press("escape")
        view.search("needle")
        await until(pilot, lambda: view.current_match == 300, 5, "stderr match")
        assert view.index.entry(300).stream == "stderr"
        await pilot.press("end")
        assert view.follow
        view.focus()
        await pilot.press("t", "w")  # timestamps and wrap render without losing the end
        await pilot.pause(0.1)
        assert view.timestamps and view.wrap and view.follow
        rows = view._view_rows()
        assert rows[-1][0] == 300 and "needle-here" in rows[-1][1].plain
        assert rows[-1][1].plain.startswith("20")  # a timestamp prefix

    drive(engine, body)


def test_filter_narrows_rows(engine: Engine) -> None:
    run(engine, name="alpha_web")
    run(engine, name="beta_db")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).row_count == 2, what="rows")
        await pilot.press("slash", "b", "e", "t", "a")
        await until(pilot, lambda: table(app).row_count == 1, 2, "filtered")
        assert str(table(app).get_row_at(0)[0]) == "beta_db"
        await pilot.press("escape")
        await until(pilot, lambda: table(app).row_count == 2, 2, "unfiltered")

    drive(engine, body)


def test_sort_by_name_and_reverse(engine: Engine) -> None:
    for name in ("m_two", "a_one", "z_three"):
        run(engine, "sleep", "60", name=name)

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).row_count == 3, what="rows")
        t = table(app)
        t.focus()
        await pilot.press("1")
        assert [str(t.get_row_at(i)[0]) for i in range(3)] == ["a_one", "m_two", "z_three"]
        await pilot.press("1")
        assert [str(t.get_row_at(i)[0]) for i in range(3)] == ["z_three", "m_two", "a_one"]

    drive(engine, body)


@pytest.mark.skipif(not hasattr(Engine, "update"), reason="engine has no update yet")
def test_limits_edit_changes_cgroup(engine: Engine) -> None:
    cid = run(engine, name="limited")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).selected_id == cid, what="selection")
        await pilot.press("u")
        for ch in "64m":
            await pilot.press(ch)
        await pilot.press("tab", "tab")
        for ch in "50":
            await pilot.press(ch)
        await pilot.press("enter")
        await settle(app, pilot)
        cgroup = Path("/sys/fs/cgroup") / engine.get(cid).state.cgroup
        if (cgroup / "memory.max").exists():
            assert (cgroup / "memory.max").read_text().strip() == str(64 * 1024 * 1024)
            assert (cgroup / "pids.max").read_text().strip() == "50"
        assert engine.get(cid).config.resources.memory == 64 * 1024 * 1024  # type: ignore[attr-defined]

    drive(engine, body)


def test_run_dialog_creates_a_working_container(engine: Engine) -> None:
    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await pilot.press("n")
        await pilot.pause()
        for ch in "echo hi-from-dialog; sleep 30":
            await pilot.press({" ": "space", ";": "semicolon", "-": "minus"}.get(ch, ch))
        command = app.screen.query_one("#command")
        assert getattr(command, "value", "") == "echo hi-from-dialog; sleep 30"
        command.value = "sh -c 'echo hi-from-dialog; sleep 30'"  # type: ignore[attr-defined]
        app.screen.query_one("#name").value = "from_dialog"  # type: ignore[attr-defined]
        await pilot.press("enter")
        await settle(app, pilot)
        found = [c for c in engine.list() if c.name == "from_dialog"]
        assert found and found[0].state.running
        cid = found[0].id
        await until(pilot, lambda: cid in table(app).rows, 3, "row")
        lines = [e.data for e in engine.logs(cid)]
        assert b"hi-from-dialog\n" in lines

    drive(engine, body)


def test_help_and_stats_tabs(engine: Engine) -> None:
    cid = run(engine, name="stats_me")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).selected_id == cid, what="selection")
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        app.screen.query_one("#detail").active = "tab-stats"  # type: ignore[attr-defined]
        if hasattr(engine, "stats"):
            screen = app.screen
            await until(pilot, lambda: screen.history.latest(cid) is not None, 4,  # type: ignore[attr-defined]
                        "a stats sample")
            await until(pilot, lambda: str(table(app).get_cell(cid, "pids")) != "-", 3, "pids")
        app.screen.query_one("#detail").active = "tab-inspect"  # type: ignore[attr-defined]
        await until(pilot, lambda: cid in app.screen.query_one("#inspect").shown,
                    3, "inspect")

    drive(engine, body)


def test_config_file_remaps_keys_and_theme(engine: Engine, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('theme = "light"\n[keys]\nstop = "x"\n')
    monkeypatch.setenv("TUIBOX_CONFIG_FILE", str(config))
    monkeypatch.setenv("TUIBOX_REFRESH_INTERVAL", "2.5")
    settings = Settings()
    assert settings.keys.stop == "x" and settings.refresh_interval == 2.5
    cid = run(engine, "sleep", "60", name="remapped")

    async def main() -> None:
        app = TuiboxApp(engine, settings=settings)
        async with app.run_test(size=(160, 45)) as pilot:
            await until(pilot, lambda: table(app).selected_id == cid, what="selection")
            assert app.theme == "textual-light"
            await pilot.press("s")  # no longer bound
            await pilot.pause(0.1)
            assert type(app.screen).__name__ == "DashboardScreen"
            await pilot.press("x")
            await until(pilot, lambda: type(app.screen).__name__ == "ConfirmDialog",
                        what="confirm")
            await pilot.press("n")

    asyncio.run(main())


def test_images_screen_and_unavailable_features_say_so(engine: Engine) -> None:
    cid = run(engine, "sleep", "60", name="img_user")

    async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
        await until(pilot, lambda: table(app).selected_id == cid, what="selection")
        await pilot.press("e")  # exec: headless, the app cannot suspend, so the key says why
        await pilot.pause(0.1)
        assert any("exec" in str(n.message) for n in app._notifications)
        await pilot.press("I")
        await until(pilot, lambda: type(app.screen).__name__ == "ImagesScreen", what="images")
        images = app.screen.query_one("#images-table")
        await until(pilot, lambda: images.row_count == 1, what="image rows")  # type: ignore[attr-defined]
        assert "busybox:latest" in str(images.get_row_at(0)[0])  # type: ignore[attr-defined]
        await pilot.press("P")  # a registry that is not there (a closed loopback port)
        await until(pilot, lambda: type(app.screen).__name__ == "PullDialog", what="dialog")
        await pilot.press(*"127.0.0.1:1/nothing:1", "enter")
        await until(pilot, lambda: any("pull 127.0.0.1:1/nothing:1" in str(n.message)
                                       for n in app._notifications), what="pull error")
        await pilot.press("d", "y")  # in use by a container: the engine refuses, we notify
        await until(pilot, lambda: any("fail" in str(n.message).lower() or "conflict" in
                                       str(n.message).lower() or "used" in str(n.message).lower()
                                       for n in app._notifications), what="refusal")
        await pilot.press("escape")
        await until(pilot, lambda: type(app.screen).__name__ == "DashboardScreen", what="back")

    drive(engine, body)


def test_images_screen_pulls_from_a_registry(engine: Engine, tmp_path: Path,
                                            busybox_archives: tuple[Path, Path]) -> None:
    from tests.registryfixtures import skopeo_copy, start_registry

    registry = start_registry(tmp_path / "registry")
    try:
        skopeo_copy(f"docker-archive:{busybox_archives[0]}",
                    f"docker://{registry.addr}/demo/bb:1")
        ref = f"{registry.addr}/demo/bb:1"

        async def body(app: TuiboxApp, pilot: Pilot[int]) -> None:
            await pilot.press("I")
            await until(pilot, lambda: type(app.screen).__name__ == "ImagesScreen",
                        what="images")
            await pilot.press("P")
            await until(pilot, lambda: type(app.screen).__name__ == "PullDialog",
                        what="dialog")
            await pilot.press(*ref, "enter")
            await until(pilot, lambda: any(f"pulled {ref}" in str(n.message)
                                           for n in app._notifications), timeout=30,
                        what="pulled")
            rows = app.screen.query_one("#images-table")
            # the same config as busybox:latest, so one image with both tags
            await until(pilot, lambda: ref in str(rows.get_row_at(0)[0]),  # type: ignore[attr-defined]
                        what="the pulled tag")

        drive(engine, body)
        assert any(ref in img.repo_tags for img in engine.images.list())
    finally:
        registry.stop()
