"""What every benchmark case shares: the run context, result records, timing helpers.

Every tuibox container here runs with ``--network none``, as every peer container does
(BASELINE.md's network rule); bridge networking gets its own case.

A case is a module with ``NAME``, ``TITLE``, ``NEEDS`` (the peer set-up it wants, a subset
of ``PEER_NEEDS``) and ``run(bench) -> CaseResult``; ``cases.py`` lists them.  Cases
measure tuibox and its peers in the same run: command timings go through hyperfine in
rounds (``timed_rounds``), so every contender sees the same drift of this small VM.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from peers import Peers

    from tuibox.engine import Engine

PROJECT = Path(__file__).resolve().parent.parent
PEER_NEEDS = frozenset({"engines", "registry", "cgroup-fix"})
TUIBOX = [sys.executable, "-m", "tuibox"]  # what the tuibox entry point runs, minus the shim


def tuibox_cli() -> str:
    """The installed ``tuibox`` entry point next to this interpreter (the venv's)."""
    exe = Path(sys.executable).with_name("tuibox")
    return str(exe) if exe.exists() else shutil.which("tuibox") or "tuibox"


# ----------------------------------------------------------------------------- results


@dataclass
class Measure:
    """Samples of one contender in one case; all summaries come from ``values``."""

    label: str
    unit: str  # "ms", "s", "MB/s", "kB", "%" …
    values: list[float] = field(default_factory=list)
    command: str = ""
    peer: bool = False
    failed: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def summary(self) -> dict[str, float | int]:
        v = self.values
        if not v:
            return {"n": 0}
        return {"n": len(v), "median": statistics.median(v), "min": min(v), "max": max(v),
                "mean": statistics.fmean(v), "stdev": statistics.stdev(v) if len(v) > 1 else 0.0,
                "p99": percentile(v, 99)}


@dataclass
class Goal:
    """One budget of DESIGN §8: ``value`` against ``limit`` (``<=`` or ``>=``)."""

    text: str
    value: float | None
    limit: float
    op: Literal["<=", ">="] = "<="
    unit: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or math.isnan(self.value):
            return None
        return self.value <= self.limit if self.op == "<=" else self.value >= self.limit


@dataclass
class Table:
    """A ready-made markdown table for results that are not one row per contender."""

    title: str
    headers: list[str]
    rows: list[list[str]]


@dataclass
class CaseResult:
    name: str
    title: str
    measures: list[Measure] = field(default_factory=list)
    ratios: list[tuple[str, float]] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    when: str = ""
    seconds: float = 0.0

    def measure(self, label: str) -> Measure | None:
        return next((m for m in self.measures if m.label == label), None)

    def ratio(self, text: str, num: str, den: str) -> float | None:
        """Record median(num)/median(den) when both were measured."""
        a, b = self.measure(num), self.measure(den)
        if a is None or b is None or not a.ok or not b.ok or b.median == 0:
            return None
        value = a.median / b.median
        self.ratios.append((text, value))
        return value

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for m, raw in zip(self.measures, data["measures"], strict=True):
            raw["summary"] = m.summary()
        for g, raw in zip(self.goals, data["goals"], strict=True):
            raw["met"] = g.met
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaseResult:
        measures = [Measure(**{k: v for k, v in m.items() if k != "summary"})
                    for m in data.get("measures", [])]
        goals = [Goal(**{k: v for k, v in g.items() if k != "met"}) for g in data.get("goals", [])]
        tables = [Table(**t) for t in data.get("tables", [])]
        return cls(name=data["name"], title=data["title"], measures=measures,
                   ratios=[(t, v) for t, v in data.get("ratios", [])], goals=goals,
                   tables=tables, notes=list(data.get("notes", [])),
                   extra=dict(data.get("extra", {})), when=data.get("when", ""),
                   seconds=float(data.get("seconds", 0.0)))


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: a p99 of 20 samples is the maximum)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# ----------------------------------------------------------------------------- context


@dataclass
class Bench:
    """One benchmark run: where to work, how much to measure, what the peers offer."""

    work: Path
    runs: int = 15
    rounds: int = 3
    smoke: bool = False
    peers: Peers | None = None
    registry: str = ""  # host:port of a loopback registry holding busybox (pull case)
    scale_n: int = 1000
    memory_n: tuple[int, ...] = (50, 100)
    stats_n: tuple[int, ...] = (100, 500, 1000)
    image_source: Path | None = None  # docker-archive to load; None: build from busybox-static
    log: Callable[[str], None] = field(default=lambda text: print(text, flush=True))
    _engines: list[Engine] = field(default_factory=list)
    _population: Population | None = None

    def root(self, name: str) -> Engine:
        """A fresh private tuibox root under ``work`` holding ``busybox:latest``."""
        from tuibox.engine import Engine

        path = self.work / "roots" / name
        shutil.rmtree(path, ignore_errors=True)
        engine = Engine(path)
        self._engines.append(engine)
        if self.image_source is not None:
            engine.images.load(self.image_source)
        else:
            from tuibox.engine.images.hostrootfs import busybox_rootfs

            rootfs = self.work / "busybox-rootfs"
            if not (rootfs / "bin" / "busybox").exists():
                busybox_rootfs(rootfs)
            engine.images.import_image(rootfs, ref="busybox:latest", changes=['CMD ["sh"]'])
        return engine

    def release(self, engine: Engine) -> None:
        """Remove every container of ``engine``'s root and stop its supervisor."""
        clean_engine(engine, self.log)
        with contextlib.suppress(ValueError):
            self._engines.remove(engine)

    def population(self) -> Population:
        """Idle ``sleep`` containers shared by the cases that need many (stats, scale)."""
        if self._population is None:
            self._population = Population(self.root("population"))
        return self._population

    def drop_population(self) -> None:
        if self._population is not None:
            self.release(self._population.engine)
            self._population = None

    def close(self) -> None:
        for engine in list(self._engines):
            self.release(engine)
        self._population = None


def clean_engine(engine: Engine, log: Callable[[str], None]) -> None:
    from tuibox.engine import TuiboxError

    try:
        containers = engine.list(all=True)
    except TuiboxError as exc:
        log(f"cleanup: cannot list {engine.paths.root}: {exc}")
        containers = []
    for c in containers:
        try:
            engine.remove(c.id, force=True)
        except (TuiboxError, OSError) as exc:
            log(f"cleanup: {c.id[:12]}: {exc}")
    try:
        engine.shutdown(force=True)
    except (TuiboxError, OSError) as exc:
        log(f"cleanup: shutdown of {engine.paths.root}: {exc}")


class Population:
    """Detached ``sleep 3600`` containers in one root, grown on demand and timed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.ids: list[str] = []
        self.start_seconds = 0.0  # wall time spent starting all of ``ids``, from empty
        self.used_before_kb = mem_used_kb()

    def grow(self, n: int) -> float:
        """Start containers until ``n`` run; the seconds this call spent starting them."""
        from tuibox.engine import RunOptions

        t0 = time.perf_counter()
        while len(self.ids) < n:
            config = self.engine.run(RunOptions(image="busybox", command=["sleep", "3600"],
                                                name=f"idle-{len(self.ids):05d}",
                                                network="none"))
            self.ids.append(config.id)
        spent = time.perf_counter() - t0
        self.start_seconds += spent
        return spent


# ----------------------------------------------------------------------------- timing


@dataclass
class Contender:
    """Something timed per iteration: a shell command (hyperfine) or an in-process call."""

    label: str
    command: str = ""  # shell command for hyperfine
    prepare: str = ""  # hyperfine --prepare for this command
    func: Callable[[int], list[float]] | None = None  # in-process: n iterations -> seconds
    peer: bool = False


def timed_rounds(bench: Bench, contenders: list[Contender], *, runs: int | None = None,
                 warmup: int = 3, unit: str = "ms") -> list[Measure]:
    """Time every contender ``runs`` times, split into ``bench.rounds`` rounds that visit
    the contenders in turn (the order rotates each round), so slow drift of the machine
    hits them all alike.  A failing contender is reported and dropped, the rest go on."""
    runs = runs or bench.runs
    rounds = max(1, min(bench.rounds, runs))
    scale = 1000.0 if unit == "ms" else 1.0
    measures = {c.label: Measure(c.label, unit, command=c.command, peer=c.peer)
                for c in contenders}
    out_dir = bench.work / "hyperfine"
    out_dir.mkdir(parents=True, exist_ok=True)
    for r in range(rounds):
        per_round = runs // rounds + (1 if r < runs % rounds else 0)
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            m = measures[c.label]
            if m.failed:
                continue
            try:
                if c.func is not None:
                    if r == 0 and warmup:
                        c.func(warmup)
                    times = c.func(per_round)
                else:
                    times = hyperfine(c.command, per_round, warmup if r == 0 else 1,
                                      out_dir / f"{slug(c.label)}-{r}.json", prepare=c.prepare)
            except (RuntimeError, OSError) as exc:
                m.failed = str(exc)[-400:]
                bench.log(f"  {c.label}: FAILED: {m.failed}")
                continue
            m.values.extend(t * scale for t in times)
        bench.log(f"  round {r + 1}/{rounds}: " + ", ".join(
            f"{m.label} {m.median:.1f}" for m in measures.values() if m.ok))
    return list(measures.values())


def hyperfine(command: str, runs: int, warmup: int, export: Path, *,
              prepare: str = "") -> list[float]:
    """Per-run wall times (s) of ``command`` from hyperfine's JSON export."""
    cmd = ["hyperfine", "--style", "none", "--runs", str(max(runs, 1)), "--warmup", str(warmup),
           "--export-json", str(export)]
    if prepare:
        cmd += ["--prepare", prepare]
    proc = subprocess.run([*cmd, command], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"hyperfine failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()}")
    return parse_hyperfine(export)


def parse_hyperfine(path: Path) -> list[float]:
    data = json.loads(path.read_text())
    times: list[float] = data["results"][0]["times"]
    return [float(t) for t in times]


def slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


# ----------------------------------------------------------------------------- memory


def pss_kb(pid: int) -> int:
    """Proportional set size (kB) from /proc/PID/smaps_rollup; 0 if it is gone."""
    return _proc_field(f"/proc/{pid}/smaps_rollup", "Pss:")


def rss_kb(pid: int) -> int:
    return _proc_field(f"/proc/{pid}/status", "VmRSS:")


def _proc_field(path: str, key: str) -> int:
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def mem_used_kb() -> int:
    """MemTotal-MemFree-Buffers-Cached-SReclaimable, as ``peers/lib.sh``'s mem_used_kb."""
    info: dict[str, int] = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            info[key] = int(rest.split()[0])
    return (info["MemTotal"] - info["MemFree"] - info["Buffers"] - info["Cached"]
            - info["SReclaimable"])


def supervision_pids(engine: Engine) -> list[int]:
    """The keeper and the supervisor of ``engine``'s root: their pid files, checked against
    /proc cmdline (``tuibox.engine.supervisor`` and the root), plus any other process whose
    cmdline names both (a supervisor is forked from the keeper, so it shares its cmdline)."""
    root = str(engine.paths.root)
    found: set[int] = set()
    for pidfile in (engine.paths.keeper_pidfile, engine.paths.supervisor_pidfile):
        with contextlib.suppress(OSError, ValueError):
            found.add(int(pidfile.read_text().split()[0]))
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                cmdline = f.read().split(b"\0")
        except OSError:
            continue
        if b"tuibox.engine.supervisor" in cmdline and root.encode() in cmdline:
            found.add(int(entry.name))
    return sorted(p for p in found if pss_kb(p) > 0)


# ----------------------------------------------------------------------------- misc


@contextlib.contextmanager
def private_tmp(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fmt(value: float, digits: int = 1) -> str:
    if value is None or math.isnan(value):
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"
