"""Case 5: logs through the supervisor — throughput, and tail latency to a follower.

Throughput: a container writes ``BYTES`` of output as fast as it can (``cat`` of a 1 MiB
chunk of lines, over and over), once with 100-byte lines (a chatty service) and once with
16 KiB lines (a bulk dump); the clock runs from ``Engine.run`` returning until the json
log stops growing, and the log is checked to hold every line.  The container's own write
rate (busybox ``time`` around the writer) is compared with the same writer into a pipe
that ``cat`` drains to /dev/null: if the supervisor held the container back, the first is
lower.

Tail latency: the container runs ``cat`` on a FIFO bind-mounted from the host; the bench
writes a numbered line into it and times until an ``Engine.logs(follow=True)``
follower (a thread here) and a ``tuibox logs -f`` process each see it.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from common import Bench, CaseResult, Goal, Measure, Table, fmt, percentile, tuibox_cli

if TYPE_CHECKING:
    from tuibox.engine import Engine

NAME = "logs"
TITLE = "logs: throughput through the supervisor and tail latency"
NEEDS: frozenset[str] = frozenset()
MB = 1_000_000
BYTES = 512 << 20
LINES = {"100-byte lines": 100, "16 KiB lines": 16 << 10}


def _producer(line_len: int, size: int, sink: str = "") -> tuple[list[str], int, int]:
    """(command, bytes it writes, lines) for about ``size`` bytes of ``line_len``-byte lines:
    a chunk of whole lines near 1 MiB is made first (untimed), then written over and over
    with ``cat`` under busybox ``time``, whose report lands on stderr (in the log)."""
    text = "x" * (line_len - 1)  # yes adds the "\n"
    chunk = (1 << 20) // line_len * line_len
    loops = max(size // chunk, 1)
    argv = ["sh", "-c", f"yes {text} | head -c {chunk} > /tmp/chunk; "
            f"time sh -c 'for i in $(seq {loops}); do cat /tmp/chunk; done{sink}'"]
    return argv, chunk * loops, chunk // line_len * loops


def _write_seconds(engine: Engine, cid: str) -> float:
    """The producer's own wall time, from busybox ``time``'s "real" line (10 ms steps)."""
    engine.wait(cid)
    for entry in engine.logs(cid, tail=5):
        line = entry.data.decode(errors="replace").strip()
        if entry.stream == "stderr" and line.startswith("real"):
            minutes, _, seconds = line.split(None, 1)[1].partition("m")
            return int(minutes) * 60 + float(seconds.strip().rstrip("s"))
    raise RuntimeError("the producer's time report is missing from the log")


def throughput(engine: Engine, line_len: int, size: int) -> tuple[float, float]:
    """(MB/s landed in the json log, MB/s the container wrote) for one run."""
    from tuibox.engine import RunOptions

    argv, total, lines = _producer(line_len, size)
    config = engine.run(RunOptions(image="busybox", command=argv, network="none",
                                   log_opts={"max-size": "4g", "max-file": "1"}))
    t0 = time.perf_counter()
    log = engine.containers.dir(config.id) / f"{config.id}-json.log"
    last_size, last_change, stable = -1, t0, 0
    while stable < 20:  # 20 polls (≥ 0.1 s) without growth after the exit: all landed
        size_now = log.stat().st_size if log.exists() else 0
        now = time.perf_counter()
        if size_now != last_size:
            last_size, last_change, stable = size_now, now, 0
        elif not engine.containers.state(config.id).running:
            stable += 1
        time.sleep(0.005)
        if now - t0 > 300:
            raise RuntimeError("the log did not settle in 300 s")
    landed = last_change - t0
    wrote = _write_seconds(engine, config.id)
    with open(log, "rb") as f:
        entries = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b""))
    if entries < lines:  # at least one entry per line (a long one may be split)
        raise RuntimeError(f"the log holds {entries} entries, {lines} lines were written")
    engine.remove(config.id, force=True)
    return total / MB / landed, total / MB / max(wrote, 0.01)


def producer_only(engine: Engine, line_len: int, size: int) -> float:
    """MB/s of the same producer writing into a pipe that ``cat`` drains to /dev/null
    inside the container: what it manages when nothing downstream is slow."""
    from tuibox.engine import RunOptions

    argv, total, _ = _producer(line_len, size, " | cat > /dev/null")
    config = engine.run(RunOptions(image="busybox", command=argv, network="none"))
    seconds = _write_seconds(engine, config.id)
    engine.remove(config.id, force=True)
    return total / MB / max(seconds, 0.01)


def tail_latency(bench: Bench, engine: Engine, samples: int) -> tuple[list[float], list[float]]:
    """Write→visible (ms) to an in-process follower and to a ``tuibox logs -f`` process."""
    from tuibox.engine import RunOptions

    fifo_dir = bench.work / "logs-fifo"
    fifo_dir.mkdir(parents=True, exist_ok=True)
    fifo = fifo_dir / "in"
    with contextlib.suppress(FileNotFoundError):
        fifo.unlink()
    os.mkfifo(fifo)
    wfd = os.open(fifo, os.O_RDWR)  # never blocks; the container's cat reads the other end
    config = engine.run(RunOptions(image="busybox", command=["cat", "/in/in"],
                                   volumes=[f"{fifo_dir}:/in"], network="none"))
    sent: dict[int, int] = {}
    seen_api: dict[int, int] = {}
    seen_cli: dict[int, int] = {}

    def follow_api() -> None:
        for entry in engine.logs(config.id, follow=True):
            now = time.time_ns()
            with contextlib.suppress(ValueError):
                seen_api.setdefault(int(entry.data), now)

    cli = subprocess.Popen([tuibox_cli(), "--root", str(engine.paths.root), "logs", "-f",
                            config.id], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def follow_cli() -> None:
        assert cli.stdout is not None
        for line in cli.stdout:
            now = time.time_ns()
            with contextlib.suppress(ValueError):
                seen_cli.setdefault(int(line), now)

    threads = [threading.Thread(target=follow_api, daemon=True),
               threading.Thread(target=follow_cli, daemon=True)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)  # both followers are reading before the first line
        for seq in range(samples):
            sent[seq] = time.time_ns()
            os.write(wfd, f"{seq}\n".encode())
            time.sleep(random.uniform(0.02, 0.04))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(seen_api) < samples
                                               or len(seen_cli) < samples):
            time.sleep(0.01)
    finally:
        os.close(wfd)  # EOF: cat exits, the followers end with the container
        engine.wait(config.id)
        for t in threads:
            t.join(10)
        cli.wait(10)
        engine.remove(config.id, force=True)
        fifo.unlink()
    if len(seen_api) < samples or len(seen_cli) < samples:
        raise RuntimeError(f"followers saw {len(seen_api)}/{len(seen_cli)} of {samples} lines")
    api = [(seen_api[s] - sent[s]) / 1e6 for s in range(samples)]
    cli_ms = [(seen_cli[s] - sent[s]) / 1e6 for s in range(samples)]
    return api, cli_ms


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    engine = bench.root("logs")
    size = 8 << 20 if bench.smoke else BYTES
    repeats = 1 if bench.smoke else 3
    rows = []
    try:
        for label, line_len in LINES.items():
            landed, wrote, alone = [], [], []
            for _ in range(repeats):
                into_log, by_container = throughput(engine, line_len, size)
                landed.append(into_log)
                wrote.append(by_container)
                alone.append(producer_only(engine, line_len, size))
            m = Measure(f"log throughput, {label}", "MB/s", landed)
            w = Measure(f"container write rate while logged, {label}", "MB/s", wrote)
            p = Measure(f"same producer into a pipe drained by cat, {label}", "MB/s", alone)
            result.measures += [m, w, p]
            rows.append([label, fmt(m.median), f"{fmt(min(landed))}–{fmt(max(landed))}",
                         fmt(w.median), fmt(p.median), f"{w.median / p.median:.2f}"])
            bench.log(f"  {label}: {m.median:.0f} MB/s landed, container {w.median:.0f} MB/s, "
                      f"alone {p.median:.0f} MB/s")
        result.tables.append(Table(
            f"{size >> 20} MiB per run, {repeats} runs each (MB = 10⁶ bytes of payload)",
            ["output", "landed in json log MB/s (median)", "min–max",
             "container write rate MB/s", "same writer, pipe drained by `cat` MB/s",
             "write rate / drained"], rows))
        api, cli = tail_latency(bench, engine, 10 if bench.smoke else 200)
    finally:
        bench.release(engine)
    a = Measure("tail latency, Engine.logs(follow=True)", "ms", api)
    c = Measure("tail latency, `tuibox logs -f`", "ms", cli)
    result.measures += [a, c]
    result.tables.append(Table(
        f"Write into the container → visible to a follower ({len(api)} lines, 20–40 ms apart)",
        ["follower", "median ms", "p99 ms", "min–max ms"],
        [["Engine.logs(follow=True)", fmt(a.median, 2), fmt(percentile(api, 99), 2),
          f"{fmt(min(api), 2)}–{fmt(max(api), 2)}"],
         ["`tuibox logs -f`", fmt(c.median, 2), fmt(percentile(cli, 99), 2),
          f"{fmt(min(cli), 2)}–{fmt(max(cli), 2)}"]]))
    short = result.measure("log throughput, 100-byte lines")
    bulk = result.measure("log throughput, 16 KiB lines")
    result.goals += [
        Goal("log throughput ≥ 100 MB/s (100-byte lines)", short.median if short else None,
             100.0, ">=", "MB/s"),
        Goal("log throughput ≥ 100 MB/s (16 KiB lines)", bulk.median if bulk else None,
             100.0, ">=", "MB/s"),
    ]
    return result
