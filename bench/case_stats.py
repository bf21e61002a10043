"""Case 4: CPU cost of one stats pass over N running containers (``Engine.stats()``).

Sampled at the real cadence (1 Hz), so counters read only every few passes cost what they
cost in use; only the passes themselves are timed, as process CPU time (other load on the
machine does not count) and wall time.  The containers are the shared idle population,
grown to each N in turn (the scale case reuses it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from common import Bench, CaseResult, Goal, Measure, Table, fmt

if TYPE_CHECKING:
    from tuibox.engine import Engine

NAME = "stats"
TITLE = "stats: CPU cost of one sample of N running containers"
NEEDS: frozenset[str] = frozenset()
PASSES = 9


def sample_cost(engine: Engine, n: int, *, passes: int = PASSES,
                interval: float = 1.0) -> tuple[list[float], list[float]]:
    """(CPU seconds, wall seconds) of each of ``passes`` stats passes, ``interval`` apart."""
    engine.stats()  # the first pass only primes the CPU % baseline
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(passes):
        time.sleep(interval)
        c0, w0 = time.process_time(), time.perf_counter()
        samples = engine.stats()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        if len(samples) != n:
            raise RuntimeError(f"stats sampled {len(samples)} containers, {n} run")
    return cpu, wall


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    counts = (3,) if bench.smoke else bench.stats_n
    population = bench.population()
    rows = []
    for n in sorted(counts):
        spent = population.grow(n)
        bench.log(f"  {n} running (+{spent:.1f} s to start); sampling")
        cpu, wall = sample_cost(population.engine, n, passes=1 if bench.smoke else PASSES,
                                interval=0.1 if bench.smoke else 1.0)
        m_cpu = Measure(f"CPU per pass, N={n}", "ms", [c * 1000 for c in cpu])
        m_wall = Measure(f"wall per pass, N={n}", "ms", [w * 1000 for w in wall])
        core = Measure(f"% of one core at 1 Hz, N={n}", "%", [c * 100 for c in cpu])
        result.measures += [m_cpu, m_wall, core]
        rows.append([str(n), fmt(m_cpu.median), f"{fmt(min(m_cpu.values))}–"
                     f"{fmt(max(m_cpu.values))}", fmt(m_wall.median),
                     f"{m_cpu.median / n * 1000:.1f}", fmt(core.median, 2)])
    result.tables.append(Table(
        f"One `Engine.stats()` pass ({1 if bench.smoke else PASSES} passes at 1 Hz per N)",
        ["N", "CPU ms (median)", "CPU ms min–max", "wall ms (median)", "CPU µs per container",
         "% of one core at 1 Hz"], rows))
    at = result.measure("% of one core at 1 Hz, N=500")
    result.goals.append(Goal("stats ≤ 5 % of one core at N=500, 1 Hz",
                             at.median if at else None, 5.0, unit="%"))
    return result
