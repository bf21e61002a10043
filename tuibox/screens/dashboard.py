"""``DashboardScreen``: the container table above a detail pane (Logs, Stats, Inspect, Processes).

Data flow: a watchfiles worker on the state records posts ``ContainersChanged``; a
non-overlapping stats loop posts ``StatsSampled``; lifecycle keys run engine calls in thread
workers that post ``ActionDone``.  Only the handlers here touch widgets.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, get_current_worker

from tuibox.messages import ActionDone, ContainersChanged, StatsSampled
from tuibox.widgets.container_table import ContainerTable
from tuibox.widgets.detail import InspectView, ProcessTable
from tuibox.widgets.format import human_bytes
from tuibox.widgets.log_panel import LogPanel
from tuibox.widgets.log_view import LogView
from tuibox.widgets.stats_history import StatsHistory
from tuibox.widgets.stats_panel import StatsPanel

from . import actions
from .confirm import ConfirmDialog
from .help import HelpScreen
from .images import ImagesScreen
from .limits import Limits, LimitsDialog
from .run import RunDialog, RunRequest

if TYPE_CHECKING:
    from tuibox.engine import Container, Engine
    from tuibox.settings import Settings

# (binding id, action, footer label, help text); default keys come from Settings.keys.
KEYED_ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("start", "start", "start", "start the container(s)"),
    ("stop", "stop", "stop", "stop (asks first)"),
    ("restart", "restart", "restart", "restart"),
    ("freeze", "freeze", "freeze/thaw", "freeze or thaw (cgroup freezer)"),
    ("kill", "kill", "kill", "SIGKILL (asks first)"),
    ("remove", "remove", "rm", "remove (asks first; running ones are force-removed)"),
    ("exec", "exec", "shell", "shell into the container"),
    ("update", "update", "limits", "edit memory / cpus / pids limits live"),
    ("new", "new", "run", "run a new container"),
    ("images", "images", "images", "images screen (list, pull, remove)"),
    ("filter", "filter", "filter", "filter rows (regex on name, image, status)"),
    ("toggle_all", "toggle_all", "all/running", "show or hide stopped containers"),
    ("mark", "mark", "mark", "mark the row for bulk stop / remove / …"),
    ("next_tab", "next_tab", "next tab", "next detail tab (Logs, Stats, Inspect, Processes)"),
    ("previous_tab", "previous_tab", "prev tab", "previous detail tab"),
    ("help", "help", "help", "this help"),
    ("quit", "app.quit", "quit", "quit (containers keep running)"),
)
SHOWN_IN_FOOTER = {"start", "stop", "restart", "freeze", "remove", "new", "help", "quit"}


def cpu_limit_percent(c: Container) -> float | None:
    """The CPU quota in ``docker stats`` percent (100 = one core), if the engine records one."""
    res = getattr(c.config, "resources", None)
    quota, period = getattr(res, "cpu_quota", None), getattr(res, "cpu_period", None)
    if quota and quota > 0:
        return float(100.0 * quota / (period or 100_000))
    return None


def limits_text(c: Container) -> str:
    res = getattr(c.config, "resources", None)
    if res is None:
        return ""
    mem = getattr(res, "memory", None)
    cpu = cpu_limit_percent(c)
    pids = getattr(res, "pids_limit", None)
    cpus = f"{cpu / 100:.2f}" if cpu else "unlimited"
    return (f"now: memory {human_bytes(mem) if mem else 'unlimited'}, cpus {cpus}, "
            f"pids {pids if pids and pids > 0 else 'unlimited'}")


def _bindings() -> list[Binding]:
    from tuibox.settings import Keys

    defaults = Keys()
    return [Binding(getattr(defaults, bid), action, label, id=bid, show=bid in SHOWN_IN_FOOTER)
            for bid, action, label, _ in KEYED_ACTIONS]


class DashboardScreen(Screen[None]):
    """The main screen."""

    BINDINGS = _bindings()  # type: ignore[assignment]

    def __init__(self, engine: Engine, settings: Settings) -> None:
        super().__init__()
        self.engine = engine
        self.settings = settings
        self.history = StatsHistory()
        self._stop = threading.Event()
        self._listed = False

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="top"):
            yield Input(placeholder="filter: regex on name, image, status (esc: clear)",
                        id="filter")
            yield ContainerTable(self.settings.visible_columns(), show_all=self.settings.show_all,
                                 id="containers")
            yield Static(id="table-status")
        with TabbedContent(id="detail"):
            with TabPane("Logs", id="tab-logs"):
                yield LogPanel(id="logs")
            with TabPane("Stats", id="tab-stats"):
                yield StatsPanel(id="stats")
            with TabPane("Inspect", id="tab-inspect"):
                yield InspectView(id="inspect")
            with TabPane("Processes", id="tab-processes"):
                yield ProcessTable(id="processes")
        yield Footer()

    @property
    def table(self) -> ContainerTable:
        return self.query_one(ContainerTable)

    def on_mount(self) -> None:
        self.table.focus()
        self._watch_containers()
        if hasattr(self.engine, "stats"):
            self._poll_stats()
        else:
            self.query_one(StatsPanel).note = "stats are not available in this engine yet"
        self.set_interval(1.0, self._tick)
        self.set_interval(2.0, self._refresh_processes)

    def on_unmount(self) -> None:
        self._stop.set()

    # ------------------------------------------------------------------ workers

    @work(thread=True, exclusive=True, group="containers-watch", exit_on_error=False)
    def _watch_containers(self) -> None:
        """List now, then again whenever a state or config record changes (watchfiles)."""
        from watchfiles import Change, watch

        worker = get_current_worker()
        base = self.engine.paths.containers

        def interesting(change: Change, path: str) -> bool:
            return path.endswith(("/state.json", "/config.json")) or path.rsplit("/", 1)[0] == str(
                base)

        while not worker.is_cancelled and not self._stop.is_set():
            self._post_listing()
            if not base.is_dir():
                self._stop.wait(1.0)
                continue
            # Not recursive: a running container's rootfs is mounted inside its directory.
            dirs = [base, *(p for p in base.iterdir() if p.is_dir())]
            restart = False
            for changes in watch(*dirs, watch_filter=interesting, debounce=60, step=30,
                                 stop_event=self._stop, rust_timeout=2000, yield_on_timeout=True,
                                 recursive=False, raise_interrupt=False):
                if worker.is_cancelled:
                    return
                if not changes:
                    continue  # a timeout: look at the cancel flag again
                self._post_listing()
                if any(p.rsplit("/", 1)[0] == str(base) for _, p in changes):
                    restart = True  # a container directory came or went: rewatch
                    break
            if not restart:
                time.sleep(0.5)

    def _post_listing(self) -> None:
        try:
            found, errors = self.engine.list_with_errors()
        except Exception as exc:
            self.post_message(ContainersChanged((), (str(exc),)))
            return
        self.post_message(ContainersChanged(tuple(found), tuple(str(e) for e in errors)))

    @work(thread=True, exclusive=True, group="stats-poll", exit_on_error=False)
    def _poll_stats(self) -> None:
        """One stats pass per interval; the next starts only after the last one is posted."""
        worker = get_current_worker()
        stats = getattr(self.engine, "stats")  # noqa: B009 (the engine gains stats() soon)
        while not worker.is_cancelled and not self._stop.is_set():
            began = time.monotonic()
            try:
                samples = stats()
            except Exception as exc:
                self.post_message(ActionDone("stats", (), str(exc)))
                samples = {}
            self.post_message(StatsSampled(samples))
            self._stop.wait(max(0.05, self.settings.refresh_interval - (time.monotonic() - began)))

    @work(thread=True, group="engine-action", exit_on_error=False)
    def engine_action(self, action: str, refs: tuple[str, ...], kwargs: dict[str, Any]) -> None:
        errors = actions.perform(self.engine, action, refs, kwargs)
        self.post_message(ActionDone(action, refs, "\n".join(errors)))

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _load_inspect(self, cid: str) -> None:
        try:
            self.post_message(InspectView.Loaded(cid, self.engine.inspect(cid)))
        except Exception as exc:
            self.post_message(InspectView.Loaded(cid, None, str(exc)))

    @work(thread=True, exclusive=True, group="top", exit_on_error=False)
    def _load_top(self, cid: str) -> None:
        top = getattr(self.engine, "top", None)
        if top is None:
            self.post_message(ProcessTable.Loaded(cid, (), "processes are not available yet"))
            return
        try:
            self.post_message(ProcessTable.Loaded(cid, tuple(top(cid))))
        except Exception as exc:
            self.post_message(ProcessTable.Loaded(cid, (), str(exc)))

    # ------------------------------------------------------------------ handlers

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.app.on_worker_state_changed(event)  # type: ignore[attr-defined]

    def on_containers_changed(self, message: ContainersChanged) -> None:
        for error in message.errors:
            self.notify(error, title="unreadable record", severity="warning")
        self.table.set_containers(message.containers)
        self.history.forget({c.id for c in message.containers})
        self._listed = True
        self._update_status()
        self._refresh_detail(tabs_only=True)

    def on_stats_sampled(self, message: StatsSampled) -> None:
        self.history.add(message.samples)
        self.table.set_samples(message.samples)
        if self.query_one(TabbedContent).active == "tab-stats":
            self._update_stats()

    def on_action_done(self, message: ActionDone) -> None:
        if message.error:
            self.notify(message.error, title=f"{message.action} failed", severity="error",
                        timeout=8)
        elif message.action in actions.VERBS:
            verb = actions.VERBS[message.action]
            what = (f"{len(message.refs)} containers" if len(message.refs) > 1 else
                    self._cname(message.refs[0]) if message.refs else "a new container")
            self.notify(f"{verb} {what}", timeout=3)

    def on_container_table_selected(self, message: ContainerTable.Selected) -> None:
        self._refresh_detail()

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self._refresh_detail(tabs_only=True)

    def on_inspect_view_loaded(self, message: InspectView.Loaded) -> None:
        if message.cid == self.table.selected_id:
            self.query_one(InspectView).show(message.data, message.error)

    def on_process_table_loaded(self, message: ProcessTable.Loaded) -> None:
        if message.cid != self.table.selected_id:
            return
        if message.error:
            self.query_one(ProcessTable).border_title = message.error
        else:
            self.query_one(ProcessTable).border_title = f"{len(message.processes)} processes"
        self.query_one(ProcessTable).show(message.processes)

    def _refresh_detail(self, *, tabs_only: bool = False) -> None:
        cid = self.table.selected_id
        if not tabs_only:
            self.query_one(LogView).show(cid, self.engine.containers.dir(cid) if cid else None)
            self.query_one(ProcessTable).clear()
        active = self.query_one(TabbedContent).active
        if cid is None:
            self.query_one(InspectView).show(None)
        elif active == "tab-inspect":
            self._load_inspect(cid)
        elif active == "tab-processes":
            self._load_top(cid)
        if active == "tab-stats":
            self._update_stats()

    def _update_stats(self) -> None:
        cid = self.table.selected_id
        c = self.table.container(cid) if cid else None
        self.query_one(StatsPanel).update_from(self.history, cid, bool(c and c.state.running),
                                               cpu_limit_percent(c) if c else None)

    def _refresh_processes(self) -> None:
        cid = self.table.selected_id
        if cid and self.query_one(TabbedContent).active == "tab-processes":
            self._load_top(cid)

    def _tick(self) -> None:
        if not hasattr(self.engine, "stats"):
            self.table.sync()  # uptimes move even without stats

    def _update_status(self) -> None:
        t = self.table
        rows = list(t._rows.values())
        running = sum(r.container.state.running for r in rows)
        parts = [f"{len(rows)} containers, {running} running",
                 "showing all" if t.show_all else "running only"]
        if t.pattern is not None:
            parts.append(f"filter /{t.pattern.pattern}/: {t.row_count} shown")
        if t.sort_column:
            parts.append(f"sort {t.sort_column} {'↓' if t.sort_reverse else '↑'}")
        if t.marked:
            parts.append(f"{len(t.marked)} marked")
        parts.append("1–9 sort · / filter · space mark · ? help")
        self.query_one("#table-status", Static).update(" · ".join(parts))

    def _cname(self, cid: str) -> str:
        c = self.table.container(cid)
        return c.name if c else cid[:12]

    # ------------------------------------------------------------------ actions

    def run_action_by_name(self, action: str) -> None:
        """For the command palette: run ``action_<action>``."""
        method = getattr(self, f"action_{action}", None)
        if method is not None:
            method()

    def _targets(self) -> tuple[str, ...]:
        targets = tuple(self.table.targets())
        if not targets:
            self.notify("no container selected", severity="warning", timeout=2)
        return targets

    def _confirmed(self, verb: str, refs: tuple[str, ...], action: str,
                   kwargs: dict[str, Any] | None = None) -> None:
        names = ", ".join(self._cname(r) for r in refs[:5]) + (" …" if len(refs) > 5 else "")

        def answered(yes: bool | None) -> None:
            if yes:
                self.engine_action(action, refs, kwargs or {})
                self.table.marked.clear()
                self.table.sync()
                self._update_status()

        self.app.push_screen(ConfirmDialog(f"{verb} {names}?"), answered)

    def action_start(self) -> None:
        if refs := self._targets():
            self.engine_action("start", refs, {})

    def action_stop(self) -> None:
        if refs := self._targets():
            self._confirmed("Stop", refs, "stop", {"timeout": self.settings.stop_timeout})

    def action_restart(self) -> None:
        if refs := self._targets():
            self.engine_action("restart", refs, {"timeout": self.settings.stop_timeout})

    def action_kill(self) -> None:
        if refs := self._targets():
            self._confirmed("Kill (SIGKILL)", refs, "kill")

    def action_remove(self) -> None:
        if refs := self._targets():
            self._confirmed("Remove", refs, "remove", {"force": True})

    def action_freeze(self) -> None:
        if not hasattr(self.engine, "pause"):
            self.notify("freeze is not available in this engine yet", severity="warning")
            return
        if refs := self._targets():
            self.engine_action("freeze", refs, {})

    def action_exec(self) -> None:
        cid = self.table.selected_id
        if cid is None:
            return
        command = actions.exec_command(self.engine, cid)
        if command is None:
            self.notify("exec is not available yet: shells into containers need the exec "
                        "feature of the engine", severity="warning")
            return
        import subprocess

        from textual.app import SuspendNotSupported

        c = self.table.container(cid)
        if c is None or not c.state.running:
            self.notify("the container is not running", severity="warning")
            return
        try:
            with self.app.suspend():
                print(f"tuibox: shell in {c.name}; exit it to return to the dashboard")
                subprocess.run(command, check=False)
        except SuspendNotSupported:
            self.notify("exec needs a real terminal (the app cannot suspend here)",
                        severity="warning")

    def action_update(self) -> None:
        if not hasattr(self.engine, "update"):
            self.notify("live limits are not available in this engine yet", severity="warning")
            return
        refs = self._targets()
        if not refs:
            return
        c = self.table.container(refs[0])
        current = limits_text(c) if c else ""

        def done(limits: Limits | None) -> None:
            if limits is not None and any(v is not None for v in (
                    limits.memory, limits.cpus, limits.pids_limit)):
                self.engine_action("update", refs, {"memory": limits.memory, "cpus": limits.cpus,
                                                 "pids_limit": limits.pids_limit})

        names = ", ".join(self._cname(r) for r in refs[:3])
        self.app.push_screen(LimitsDialog(names, current), done)

    def action_new(self) -> None:
        try:
            images = [t for img in self.engine.images.list() for t in img.repo_tags]
        except Exception as exc:
            self.notify(str(exc), severity="error")
            images = []

        def done(request: RunRequest | None) -> None:
            if request is not None:
                self.engine_action("run", (), {"request": request})

        self.app.push_screen(RunDialog(images), done)

    def action_images(self) -> None:
        self.app.push_screen(ImagesScreen(self.engine))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-open")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        error = self.table.set_filter(event.value)
        event.input.set_class(error is not None, "-invalid")
        self._update_status()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value:
            box.remove_class("-open")
        self.table.focus()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#filter", Input)
        if getattr(event, "key", "") == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            box.remove_class("-open")
            self.table.focus()

    TABS = ("tab-logs", "tab-stats", "tab-inspect", "tab-processes")

    def action_next_tab(self, step: int = 1) -> None:
        tabs = self.query_one(TabbedContent)
        index = self.TABS.index(tabs.active) if tabs.active in self.TABS else 0
        tabs.active = self.TABS[(index + step) % len(self.TABS)]

    def action_previous_tab(self) -> None:
        self.action_next_tab(-1)

    def action_toggle_all(self) -> None:
        self.table.show_all = not self.table.show_all
        self.table.sync()
        self._update_status()

    def action_mark(self) -> None:
        self.table.toggle_mark()
        self._update_status()

    def action_help(self) -> None:
        keymap = {bid: getattr(self.settings.keys, bid) for bid, *_ in KEYED_ACTIONS}
        pretty = {"question_mark": "?", "slash": "/", "right_square_bracket": "]",
                  "left_square_bracket": "["}
        rows = [(",".join(pretty.get(k, k) for k in keymap[bid].split(",")), text)
                for bid, _, _, text in KEYED_ACTIONS]
        rows.insert(0, ("1 … 9", "sort by that column (again: reverse)"))
        self.app.push_screen(HelpScreen(rows))
