"""Case 1: start→exit of ``run --rm busybox true``.

tuibox's CLI and its engine API (in this process: create, start attached, read until the
exit frame, then until ``--rm`` removed the container) against runc and crun (bundle with
/bin/true), podman and docker (``run --rm``), plus two floors: a bare namespace set-up
(unshare) and the interpreter start-up every Python CLI pays.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from common import Bench, CaseResult, Contender, Goal, timed_rounds, tuibox_cli

if TYPE_CHECKING:
    from tuibox.engine import Engine

NAME = "start"
TITLE = "start→exit of `run --rm busybox true`"
NEEDS = frozenset({"engines", "cgroup-fix"})
API_REPEAT = 4  # the in-process driver is cheap to repeat: four samples per hyperfine run

CLI, API = "tuibox CLI", "tuibox engine API (in-process)"


def api_driver(engine: Engine, *, network: str = "none") -> Callable[[int], list[float]]:
    """Times ``run --rm busybox true`` through the Engine, as the CLI does it, in-process."""
    from tuibox.engine import RunOptions
    from tuibox.engine.supervisor import protocol

    opts = RunOptions(image="busybox", command=["true"], auto_remove=True, pull="never",
                      network=network)

    def once() -> float:
        t0 = time.perf_counter()
        config = engine.create(opts)
        conn = engine.start_attached(config.id)
        code = None
        try:
            for kind, payload in conn.frames():
                if kind == protocol.KIND_JSON:
                    message = json.loads(payload)
                    if "exit" in message:
                        code = int(message["exit"])
                        break
        finally:
            conn.close()
        cdir = engine.containers.dir(config.id)
        while cdir.exists():  # the supervisor removes a --rm container right after exit
            time.sleep(0.0002)
        elapsed = time.perf_counter() - t0
        if code != 0:
            raise RuntimeError(f"busybox true exited {code}")
        return elapsed

    def run(n: int) -> list[float]:
        return [once() for _ in range(n * API_REPEAT)]

    return run


def subprocess_timer(command: str) -> Callable[[int], list[float]]:
    """Times a command without hyperfine (smoke mode: pure Python)."""
    argv = shlex.split(command)

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return times

    return run


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    engine = bench.root("start")
    try:
        cli = (f"{tuibox_cli()} --root {engine.paths.root} run --rm --pull never "
               "--network none busybox true")
        contenders = [Contender(API, func=api_driver(engine))]
        if bench.smoke:
            contenders.insert(0, Contender(CLI, command=cli, func=subprocess_timer(cli)))
        else:
            contenders.insert(0, Contender(CLI, command=cli))
        peers = bench.peers
        if peers is not None:
            true_bundle = peers.bundle("true")
            contenders += [
                Contender("runc", f"runc run --bundle {true_bundle} bench-runc-$$", peer=True),
                Contender("crun", f"crun run --bundle {true_bundle} bench-crun-$$", peer=True),
            ]
            if peers.podman_ok:
                contenders.append(Contender(
                    "podman", f"{peers.podman()} run --rm {peers.podman_run_flags()} "
                    "busybox true", peer=True))
            if peers.docker_ok:
                contenders.append(Contender(
                    "docker", f"{peers.docker()} run --rm {peers.docker_run_flags()} "
                    "busybox true", peer=True))
            contenders += [
                Contender("floor: unshare -fpmuin true",
                          "unshare --fork --pid --mount --uts --ipc --net /bin/true", peer=True),
                Contender("floor: python -c pass", f"{sys.executable} -c pass", peer=True),
            ]
        result.measures = timed_rounds(bench, contenders, warmup=0 if bench.smoke else 3)
        if peers is not None:
            left = peers.sweep_runtimes("")
            result.notes.append(f"runc/crun leftovers deleted after the runs: {left}")
    finally:
        bench.release(engine)

    podman = result.ratio("tuibox CLI / podman", CLI, "podman")
    runc = result.ratio("tuibox CLI / runc", CLI, "runc")
    crun = result.ratio("tuibox API / crun", API, "crun")
    result.ratio("tuibox CLI / crun", CLI, "crun")
    result.ratio("tuibox CLI / docker", CLI, "docker")
    result.ratio("tuibox CLI / python -c pass", CLI, "floor: python -c pass")
    result.goals = [
        Goal("CLI ≤ ¼ of podman", podman, 0.25, unit="×"),
        Goal("CLI ≤ 1.5× runc", runc, 1.5, unit="×"),
        Goal("engine API ≤ 2× crun", crun, 2.0, unit="×"),
    ]
    result.notes.append(
        f"The API driver runs {API_REPEAT} iterations per hyperfine run and stops the clock "
        "once the container directory is gone (the CLI returns at the exit frame, before "
        "--rm's removal). Each round visits the contenders in turn, the order rotating.")
    return result
