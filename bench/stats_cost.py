"""CPU cost of one stats pass over N running containers (issue: resource control).

Usage: python bench/stats_cost.py [N ...]   (default 50 200).  Uses a private state root
under /tmp and removes everything afterwards.  Reports CPU ms per container per sample
(process CPU time, so other load on the machine does not count), sampling at 1 Hz.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from tuibox.engine import Engine, RunOptions


def main(counts: list[int]) -> None:
    root = Path(tempfile.mkdtemp(prefix="tuibox-bench-"))
    engine = Engine(root / "root")
    from tuibox.engine.images.hostrootfs import busybox_rootfs

    rootfs = busybox_rootfs(root / "rootfs")
    engine.images.import_image(rootfs, ref="busybox:latest")
    try:
        running = 0
        for n in sorted(counts):
            while running < n:
                engine.run(RunOptions(image="busybox", command=["sleep", "3600"]))
                running += 1
            engine.stats()
            # At the real cadence (1 Hz), so the few counters read every 3 s cost what
            # they cost in use; only the passes themselves are timed.
            passes, cpu, wall = 9, 0.0, 0.0
            for _ in range(passes):
                time.sleep(1.0)
                cpu0, wall0 = time.process_time(), time.perf_counter()
                samples = engine.stats()
                cpu += time.process_time() - cpu0
                wall += time.perf_counter() - wall0
            cpu, wall = cpu / passes, wall / passes
            assert len(samples) == n
            print(f"N={n:5d}  one pass: {cpu * 1000:7.1f} ms CPU ({wall * 1000:7.1f} ms wall)"
                  f"  = {cpu * 1000 / n:.3f} ms CPU per container per sample;"
                  f" at 1 Hz that is {cpu * 100:.1f} % of one core")
    finally:
        for c in engine.list(all=True):
            engine.remove(c.id, force=True)
        engine.shutdown(force=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [50, 200])
