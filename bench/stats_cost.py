"""CPU cost of one stats pass over N running containers, on its own (no peers needed).

Usage: python bench/stats_cost.py [N ...]   (default 50 200).  The same measurement as the
``stats`` case of ``bench/run.py`` (``case_stats.sample_cost``), with a private state root
under /tmp that is removed afterwards.
"""

from __future__ import annotations

import sys

from case_stats import sample_cost
from common import Bench, private_tmp


def main(counts: list[int]) -> None:
    with private_tmp("tuibox-bench-") as work:
        bench = Bench(work)
        try:
            population = bench.population()
            for n in sorted(counts):
                population.grow(n)
                cpu, wall = sample_cost(population.engine, n)
                c, w = sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2]
                print(f"N={n:5d}  one pass: {c * 1000:7.1f} ms CPU ({w * 1000:7.1f} ms wall)"
                      f"  = {c * 1000 / n:.3f} ms CPU per container per sample;"
                      f" at 1 Hz that is {c * 100:.1f} % of one core")
        finally:
            bench.close()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50, 200])
