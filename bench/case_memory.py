"""Case 2: memory of the supervision per idle container, measured as BASELINE.md measures
conmon and containerd-shim.

N detached ``sleep 3600`` containers are started one after another through each engine's
CLI (timed), then after 3 s: PSS (smaps_rollup) and RSS of the supervision, of the
containers' init processes, and the system's used-memory delta.  tuibox's supervision is
its keeper + supervisor (one pair per state root, whatever N); the peers' numbers come
from ``peers-idle-memory.sh`` run right after tuibox's, for the same N.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping

from common import (
    Bench,
    CaseResult,
    Goal,
    Measure,
    Table,
    fmt,
    mem_used_kb,
    pss_kb,
    rss_kb,
    supervision_pids,
    tuibox_cli,
)

NAME = "memory"
TITLE = "supervision memory per idle container"
NEEDS = frozenset({"engines", "cgroup-fix"})
PEER_ENGINES = ("podman", "docker", "crun-conmon")
SETTLE = 3.0


def measure_tuibox(bench: Bench, n: int) -> dict[str, float]:
    engine = bench.root(f"memory-{n}")
    try:
        engine.supervisor.connect().close()  # supervisor up before the clock starts
        used0 = mem_used_kb()
        cli = tuibox_cli()
        t0 = time.perf_counter()
        for i in range(n):
            subprocess.run([cli, "--root", str(engine.paths.root), "run", "-d", "--pull",
                            "never", "--network", "none", "--name", f"mem-{i}", "busybox",
                            "sleep", "3600"], check=True, capture_output=True)
        start_s = time.perf_counter() - t0
        time.sleep(0.5 if bench.smoke else SETTLE)
        sup = supervision_pids(engine)
        inits = [c.state.pid for c in engine.list() if c.state.pid]
        if len(inits) != n:
            raise RuntimeError(f"{len(inits)} of {n} containers run")
        used1 = mem_used_kb()
        return {
            "N": n, "start_s": start_s, "sup_count": len(sup),
            "sup_pss_kB": sum(map(pss_kb, sup)), "sup_rss_kB": sum(map(rss_kb, sup)),
            "init_pss_kB": sum(map(pss_kb, inits)), "init_rss_kB": sum(map(rss_kb, inits)),
            "used_delta_kB": used1 - used0,
        }
    finally:
        bench.release(engine)


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    counts = (3,) if bench.smoke else bench.memory_n
    rows: list[list[str]] = []
    raw: list[Mapping[str, object]] = []
    tuibox_pss: dict[int, float] = {}
    for n in counts:
        bench.log(f"  tuibox: {n} containers")
        t = measure_tuibox(bench, n)
        per = t["sup_pss_kB"] / n
        tuibox_pss[n] = t["sup_pss_kB"]
        result.measures.append(Measure(f"tuibox supervision PSS/ctr, N={n}", "kB", [per]))
        result.measures.append(Measure(f"tuibox start {n} (CLI)", "s", [t["start_s"]]))
        raw.append({"engine": "tuibox", **t})
        rows.append(["tuibox", str(n), fmt(t["start_s"], 2),
                     f"keeper+supervisor ({t['sup_count']:.0f} for all)", fmt(per),
                     fmt(t["sup_rss_kB"] / n), fmt(t["sup_pss_kB"] / 1024),
                     fmt(t["init_pss_kB"] / n), fmt(t["used_delta_kB"] / n)])
        if bench.peers is None:
            continue
        for name in PEER_ENGINES:
            if name == "podman" and not bench.peers.podman_ok:
                continue
            if name == "docker" and not bench.peers.docker_ok:
                continue
            bench.log(f"  {name}: {n} containers")
            try:
                row = bench.peers.idle_memory(name, n)
            except RuntimeError as exc:
                result.notes.append(f"{name} N={n} failed: {exc}")
                continue
            raw.append(row)
            count = max(int(row["N"]), 1)
            sup_pss = float(row["sup_pss_kB_per_ctr"])
            result.measures.append(Measure(f"{name} supervision PSS/ctr, N={n}", "kB", [sup_pss],
                                           peer=True))
            rows.append([name, row["N"], row["start_all_s"],
                         f"{row['supervisor']} ({row['sup_count']})", fmt(sup_pss),
                         row["sup_rss_kB_per_ctr"],
                         fmt(sup_pss * count / 1024),
                         row["init_pss_kB_per_ctr"], row["sys_used_kB_delta_per_ctr"]])
            if name == "docker":
                daemon = int(row["daemon_rss_kB_delta"]) // count
                rows[-1][3] += f"; dockerd+containerd +{daemon} kB RSS/ctr"
    result.tables.append(Table(
        "Idle `sleep 3600` containers (PSS from smaps_rollup, per container = total / N)",
        ["engine", "N", "start N (s)", "supervision", "sup PSS/ctr kB", "sup RSS/ctr kB",
         "sup PSS total MiB", "init PSS/ctr kB", "system used Δ/ctr kB"], rows))
    result.extra["rows"] = raw
    top = max(counts)
    if len(tuibox_pss) >= 2:
        lo, hi = sorted(tuibox_pss)[0], sorted(tuibox_pss)[-1]
        marginal = (tuibox_pss[hi] - tuibox_pss[lo]) / (hi - lo)
        result.measures.append(Measure(f"tuibox supervision PSS marginal/ctr, N={lo}→{hi}",
                                       "kB", [marginal]))
        result.notes.append(f"tuibox's supervision grows by {marginal:.1f} kB PSS per extra "
                            f"container between N={lo} and N={hi}; the rest is the fixed "
                            "cost of two Python processes shared by all containers.")
    for name in ("podman", "docker", "crun-conmon"):
        result.ratio(f"tuibox / {name} supervision PSS per ctr at N={top}",
                     f"tuibox supervision PSS/ctr, N={top}", f"{name} supervision PSS/ctr, N={top}")
    at_100 = result.measure("tuibox supervision PSS/ctr, N=100")
    result.goals.append(Goal("supervision ≤ 0.1 MB PSS per container at N=100",
                             at_100.median / 1024 if at_100 else None, 0.1, unit="MB"))
    return result
