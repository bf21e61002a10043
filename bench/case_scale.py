"""Case 3: N idle tuibox containers on this VM (N = ``--scale-n``, 1000 by default).

Time to start all of them (``Engine.run``, one after another, from an empty root), the
memory they cost, ``tuibox ps`` with all of them, and the dashboard's key-to-frame latency:
``tuibox --root R`` runs in a tmux pane, a key is sent, and ``tmux capture-pane`` is polled
until the frame shows the key's effect.  tuibox only: the peers' idle numbers are in the
memory case.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from case_start import subprocess_timer
from common import (
    Bench,
    CaseResult,
    Contender,
    Measure,
    Table,
    fmt,
    mem_used_kb,
    pss_kb,
    supervision_pids,
    timed_rounds,
    tuibox_cli,
)

NAME = "scale"
TITLE = "scale: many idle tuibox containers"
NEEDS: frozenset[str] = frozenset()
KEYS = 16  # key presses per kind
FILTER_HINT = "filter: regex on name"


class Pane:
    """The dashboard in a detached tmux session of a fixed size."""

    def __init__(self, root: Path, work: Path, size: tuple[int, int] = (200, 50),
                 env: str = "") -> None:
        self.session = f"tuibox-bench-{os.getpid()}"
        config = work / "dashboard-config.toml"
        config.write_text("")  # defaults only, whatever the user's config says
        env = f"TUIBOX_CONFIG_FILE={config} {env}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.session, "-x", str(size[0]),
                        "-y", str(size[1]), f"env {env} {sys.executable} -m tuibox --root {root}"],
                       check=True)
        self.root = root

    def screen(self, escapes: bool = False) -> str:
        cmd = ["tmux", "capture-pane", "-p", "-t", self.session] + (["-e"] if escapes else [])
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    def send(self, key: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, key], check=True)

    def wait(self, check: Callable[[str], bool], timeout: float, escapes: bool = False) -> float:
        """Seconds until the screen passes ``check`` (polling as fast as tmux answers)."""
        t0 = time.perf_counter()
        while True:
            if check(self.screen(escapes)):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"dashboard: timed out; screen:\n{self.screen()}")
            time.sleep(0.001)

    def key_latency(self, key: str, check: Callable[[str, str], bool], escapes: bool) -> float:
        before = self.screen(escapes)
        t0 = time.perf_counter()
        self.send(key)
        self.wait(lambda s: check(before, s), 30, escapes)
        return time.perf_counter() - t0

    def pid(self) -> int:
        needle = f"-m\0tuibox\0--root\0{self.root}".encode()
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                        if needle in f.read():
                            return int(entry.name)
                except OSError:
                    continue
        return 0

    def close(self) -> None:
        pid = self.pid()
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True,
                       check=False)
        deadline = time.monotonic() + 10
        while pid and time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def dashboard(bench: Bench, result: CaseResult, root: Path, n: int) -> None:
    pane = Pane(root, bench.work)
    try:
        first = pane.wait(lambda s: f"{n} containers, {n} running" in s, 120)
        result.measures.append(Measure(f"dashboard start → first full frame, N={n}", "ms",
                                       [first * 1000]))
        time.sleep(0.5)
        keys = 2 if bench.smoke else KEYS
        filt, move = [], []
        for i in range(keys):
            if i % 2 == 0:  # "/" opens the filter box, enter (empty) closes it again
                filt.append(pane.key_latency("/", lambda _b, s: FILTER_HINT in s, False))
            else:
                filt.append(pane.key_latency("Enter", lambda _b, s: FILTER_HINT not in s, False))
            time.sleep(random.uniform(0.15, 0.35))
        for i in range(keys):  # cursor moves: the row highlight moves
            move.append(pane.key_latency("Down" if i % 2 == 0 else "Up",
                                         lambda b, s: b != s, True))
            time.sleep(random.uniform(0.15, 0.35))
        result.measures.append(Measure(f"dashboard key→frame, `/` and enter, N={n}", "ms",
                                       [t * 1000 for t in filt]))
        result.measures.append(Measure(f"dashboard key→frame, `↓`/`↑`, N={n}", "ms",
                                       [t * 1000 for t in move]))
        pid = pane.pid()
        if pid and not bench.smoke:
            window = 10.0
            c0 = cpu_seconds(pid)
            time.sleep(window)
            result.measures.append(Measure(f"dashboard idle CPU (refresh 1 s), N={n}", "%",
                                           [(cpu_seconds(pid) - c0) / window * 100]))
            result.measures.append(Measure(f"dashboard PSS, N={n}", "MiB", [pss_kb(pid) / 1024]))
    finally:
        pane.close()


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    n = 3 if bench.smoke else bench.scale_n
    population = bench.population()
    fresh = not population.ids
    population.grow(n)
    engine = population.engine
    result.measures.append(Measure(f"start {n} containers (Engine.run, sequential)", "s",
                                   [population.start_seconds]))
    if not fresh:
        result.notes.append("The containers were started in stages by the stats case "
                            "(its sampling pauses are not counted).")
    time.sleep(0.5 if bench.smoke else 3.0)
    sup = supervision_pids(engine)
    inits = [c.state.pid for c in engine.list() if c.state.pid]
    used = mem_used_kb() - population.used_before_kb
    result.measures += [
        Measure(f"supervision PSS total, N={n}", "MiB", [sum(map(pss_kb, sup)) / 1024]),
        Measure(f"container inits PSS total, N={n}", "MiB", [sum(map(pss_kb, inits)) / 1024]),
        Measure(f"system used Δ, N={n}", "MiB", [used / 1024]),
    ]
    t0 = time.perf_counter()
    listed = engine.list(all=True)
    result.measures.append(Measure(f"Engine.list(all=True), N={n}", "ms",
                                   [(time.perf_counter() - t0) * 1000]))
    if len(listed) != n:
        raise RuntimeError(f"{len(listed)} containers listed, {n} expected")
    cli = f"{tuibox_cli()} --root {engine.paths.root}"
    contenders = [Contender(f"tuibox ps, N={n}", f"{cli} ps"),
                  Contender(f"tuibox ps -a, N={n}", f"{cli} ps -a")]
    if bench.smoke:
        for c in contenders:
            c.func = subprocess_timer(c.command)
    result.measures += timed_rounds(bench, contenders, runs=min(bench.runs, 10),
                                    warmup=0 if bench.smoke else 2)
    if shutil.which("tmux"):
        dashboard(bench, result, engine.paths.root, n)
    else:
        result.notes.append("tmux is missing: no dashboard latency")
    rows = [[m.label, m.unit, str(len(m.values)), fmt(m.median),
             f"{fmt(min(m.values))}–{fmt(max(m.values))}" if m.values else "–"]
            for m in result.measures if m.ok]
    result.tables.append(Table(f"{n} idle containers", ["what", "unit", "n", "median",
                                                         "min–max"], rows))
    result.notes.append("Key→frame = `tmux send-keys` until `tmux capture-pane` shows the "
                        "effect (a 200×50 pane; each poll costs a tmux round trip, a few ms). "
                        "`↓`/`↑` compare the frame with colours, so a refresh landing in the "
                        "window also counts; the dashboard refreshes stats every second.")
    bench.drop_population()
    return result
