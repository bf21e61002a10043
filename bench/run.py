"""Run the benchmarks of tuibox beside its peers and write docs/benchmarks.{md,json}.

    .venv/bin/python bench/run.py                 # every case, peers set up and torn down
    .venv/bin/python bench/run.py --cases start,pull --runs 30
    .venv/bin/python bench/run.py --smoke --work /tmp/x --out /tmp/x/b.md  # tuibox only, 1 run

Cases not run this time keep their earlier results in the JSON (``--fresh`` drops them),
so a long benchmark can be run in parts.  Everything runs in a private work directory; the
peers' daemons, the registry and the cgroup fix are always undone at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from cases import CASES
from common import PROJECT, Bench, CaseResult
from peers import Peers


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = [c.NAME for c in CASES]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=",".join(names),
                   help=f"comma-separated subset of: {', '.join(names)}")
    p.add_argument("--runs", type=int, default=15, help="timed runs per contender (default 15)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds the runs are split into, contenders in turn (default 3)")
    p.add_argument("--smoke", action="store_true",
                   help="one iteration of each tuibox case, 3 containers, no peers, no hyperfine")
    p.add_argument("--no-peers", action="store_true", help="measure tuibox only")
    p.add_argument("--scale-n", type=int, default=1000, help="containers in the scale case")
    p.add_argument("--memory-n", default="50,100", help="container counts, memory case")
    p.add_argument("--stats-n", default="100,500,1000", help="container counts, stats case")
    p.add_argument("--registry", default="", help="host:port of a registry holding busybox "
                   "and busybox-ml (default: the peers' 127.0.0.1:5000)")
    p.add_argument("--image", type=Path, default=None,
                   help="docker-archive of busybox:latest for tuibox (default: the peers' "
                   "archive, or a rootfs built from busybox-static)")
    p.add_argument("--work", type=Path, default=None,
                   help="work directory (default: a new /tmp/tuibox-bench.*; kept with --keep)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--out", type=Path, default=PROJECT / "docs" / "benchmarks.md",
                   help="markdown report; the JSON goes next to it (.json)")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite the markdown from the JSON (after editing analysis.md)")
    p.add_argument("--fresh", action="store_true",
                   help="drop results of cases not run this time from the JSON")
    args = p.parse_args(argv)
    unknown = set(args.cases.split(",")) - set(names)
    if unknown:
        p.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    return args


def machine_facts() -> str:
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1048576
    return (f"kernel {platform.release()}, {os.cpu_count()} CPUs, {mem:.1f} GiB, "
            f"python {platform.python_version()}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.report_only:
        doc = report.load(args.out.with_suffix(".json"))
        args.out.write_text(report.markdown(doc, doc.get("command", "bench/run.py")))
        return 0
    selected: list[ModuleType] = [c for c in CASES if c.NAME in args.cases.split(",")]
    work = args.work or Path(f"/tmp/tuibox-bench.{os.getpid()}")
    made_work = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    use_peers = not (args.smoke or args.no_peers)
    if use_peers and not shutil.which("hyperfine") and not Path("/usr/bin/hyperfine").exists():
        print("note: hyperfine comes with the peers' set-up", flush=True)
    bench = Bench(work, runs=1 if args.smoke else args.runs,
                  rounds=1 if args.smoke else args.rounds, smoke=args.smoke,
                  registry=args.registry, scale_n=args.scale_n,
                  memory_n=_ints(args.memory_n), stats_n=_ints(args.stats_n),
                  image_source=args.image)
    json_path = args.out.with_suffix(".json")
    doc = {} if args.fresh else report.load(json_path)
    doc.setdefault("cases", {})
    command = "bench/run.py " + " ".join(shlex.quote(a) for a in argv)
    doc["command"] = command
    peers = Peers(work / "peers", log=bench.log) if use_peers else None
    failures = 0
    try:
        if peers is not None:
            needs: set[str] = set().union(*(c.NEEDS for c in selected))
            peers.setup(needs)
            bench.peers = peers
            bench.image_source = args.image or work / "peers" / "archives" / "busybox.tar"
            doc["machine"], doc["versions"] = peers.machine, peers.versions
        else:
            doc.setdefault("machine", machine_facts())
        from tuibox.engine.engine import VERSION

        doc["tuibox"] = f"tuibox {VERSION}, Python {platform.python_version()}"
        for case in selected:
            bench.log(f"== {case.NAME}: {case.TITLE}")
            t0 = time.perf_counter()
            try:
                result: CaseResult = case.run(bench)
            except Exception as exc:  # one broken case must not lose the others
                failures += 1
                bench.log(f"  FAILED: {type(exc).__name__}: {exc}")
                result = CaseResult(case.NAME, case.TITLE,
                                    notes=[f"FAILED: {type(exc).__name__}: {exc}"])
            result.seconds = time.perf_counter() - t0
            result.when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
            result.extra["settings"] = {"runs": bench.runs, "rounds": bench.rounds,
                                        "smoke": bench.smoke, "peers": peers is not None}
            doc["cases"][case.NAME] = result.to_json()
            order = [c.NAME for c in CASES]
            doc["cases"] = dict(sorted(doc["cases"].items(),
                                       key=lambda kv: order.index(kv[0])
                                       if kv[0] in order else len(order)))
            report.save(json_path, doc)
            args.out.write_text(report.markdown(doc, command))
    finally:
        bench.close()
        if peers is not None:
            peers.teardown()
        if made_work and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    bench.log(f"wrote {args.out} and {json_path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
