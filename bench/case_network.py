"""Case: what bridge networking costs (issue #6).

1. Start→exit of ``run --rm busybox true`` with ``--network bridge`` against
   ``--network none``, interleaved in the same rounds: tuibox's CLI and engine API, and
   podman beside it when its network (netavark) works here.
2. Throughput host → container through a published port: 100 MB sent to
   ``127.0.0.1:<port>`` (DNAT to the container's ``nc -l``), timed from the connect to
   the container's exit once it has read everything; also to the container's own address
   (no DNAT), and through ``podman run -p`` when podman's network works.

Traffic goes only to loopback and to container addresses on bridges made here.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from case_start import api_driver, subprocess_timer
from common import Bench, CaseResult, Contender, Measure, timed_rounds, tuibox_cli

if TYPE_CHECKING:
    from tuibox.engine import Engine

NAME = "network"
TITLE = "bridge networking: start cost and published-port throughput"
NEEDS = frozenset({"engines", "cgroup-fix"})
CHUNK = bytes(1 << 20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send(host: str, port: int, size: int, timeout: float = 20.0) -> float:
    """Connect (retrying until the listener is up), send ``size`` bytes, close; seconds
    from the connect to the close."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port}") from None
            time.sleep(0.02)
    t0 = time.perf_counter()
    with sock:
        sent = 0
        while sent < size:
            sock.sendall(CHUNK)
            sent += len(CHUNK)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the peer closes once it has read everything
    return time.perf_counter() - t0


def tuibox_transfer(engine: Engine, size: int, *, direct: bool) -> Callable[[int], list[float]]:
    from tuibox.engine import RunOptions

    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            port = free_port()
            config = engine.run(RunOptions(
                image="busybox", command=["sh", "-c", "nc -l -p 5000 >/dev/null"],
                publish=[f"127.0.0.1:{port}:5000"], pull="never"))
            try:
                if direct:
                    ip = engine.get(config.id).state.network.networks["bridge"].ip
                    elapsed = send(ip, 5000, size)
                else:
                    elapsed = send("127.0.0.1", port, size)
                engine.wait(config.id)
                times.append(elapsed)
            finally:
                engine.remove(config.id, force=True)
        return times

    return run


def podman_transfer(podman: str, flags: str, size: int) -> Callable[[int], list[float]]:
    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            port = free_port()
            cid = subprocess.run(
                [*shlex.split(podman), "run", "-d", *shlex.split(flags), "-p",
                 f"127.0.0.1:{port}:5000", "busybox", "sh", "-c", "nc -l -p 5000 >/dev/null"],
                capture_output=True, text=True, check=True).stdout.strip()
            try:
                times.append(send("127.0.0.1", port, size))
                subprocess.run([*shlex.split(podman), "wait", cid], capture_output=True,
                               check=True)
            finally:
                subprocess.run([*shlex.split(podman), "rm", "-f", "-t", "0", cid],
                               capture_output=True)
        return times

    return run


def podman_network_works(podman: str, flags: str) -> bool:
    proc = subprocess.run([*shlex.split(podman), "run", "--rm", *shlex.split(flags),
                           "busybox", "true"], capture_output=True, text=True)
    return proc.returncode == 0


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.removeprefix("table ").strip() for line in out.splitlines() if line.strip()}


def drop_netavark_tables(before: set[str]) -> list[str]:
    """podman's netavark leaves iptables(-nft) tables behind after its last container:
    remove the ones that were not there before this case."""
    dropped = []
    for table in sorted(nft_tables() - before):
        if table in ("ip nat", "ip filter", "ip6 nat", "ip6 filter"):
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
            dropped.append(table)
    return dropped


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    tables_before = nft_tables()
    engine = bench.root("network")
    size = (8 if bench.smoke else 100) * len(CHUNK)
    try:
        root = engine.paths.root
        contenders = []
        for mode in ("none", "bridge"):
            cli = (f"{tuibox_cli()} --root {root} run --rm --pull never --network {mode} "
                   "busybox true")
            contenders.append(Contender(f"tuibox CLI --network {mode}", command=cli,
                                        func=subprocess_timer(cli) if bench.smoke else None))
            contenders.append(Contender(f"tuibox API --network {mode}",
                                        func=api_driver(engine, network=mode)))
        peers = bench.peers
        podman_flags = ""
        if peers is not None and peers.podman_ok:
            podman_flags = peers.podman_run_flags().replace("--network none", "").strip()
            if podman_network_works(peers.podman(), podman_flags):
                for mode in ("none", "bridge"):
                    contenders.append(Contender(
                        f"podman --network {mode}", f"{peers.podman()} run --rm "
                        f"{podman_flags} --network {mode} busybox true", peer=True))
            else:
                result.notes.append("podman's bridge network (netavark) does not work here: "
                                    "no podman numbers")
                podman_flags = ""
        result.measures = timed_rounds(bench, contenders, warmup=0 if bench.smoke else 2)
        for tool in ("tuibox CLI", "tuibox API", "podman"):
            result.ratio(f"{tool}: bridge / none", f"{tool} --network bridge",
                         f"{tool} --network none")
        extra = {}
        for tool in ("tuibox CLI", "tuibox API", "podman"):
            a, b = (result.measure(f"{tool} --network {m}") for m in ("bridge", "none"))
            if a is not None and b is not None and a.ok and b.ok:
                extra[tool] = a.median - b.median
        result.extra["bridge_extra_ms"] = extra

        mb = size / 1e6
        transfers = [
            Contender("tuibox -p (127.0.0.1, DNAT)", func=tuibox_transfer(engine, size,
                                                                          direct=False)),
            Contender("tuibox container IP (no DNAT)", func=tuibox_transfer(engine, size,
                                                                            direct=True)),
        ]
        if podman_flags and peers is not None:
            transfers.append(Contender("podman -p (127.0.0.1)",
                                       func=podman_transfer(peers.podman(), podman_flags, size),
                                       peer=True))
        runs = 1 if bench.smoke else max(3, bench.runs // 3)
        timed = timed_rounds(bench, transfers, runs=runs, warmup=0, unit="s")
        for m in timed:
            result.measures.append(Measure(f"{m.label} MB/s", "MB/s",
                                           [mb / t for t in m.values if t > 0],
                                           peer=m.peer, failed=m.failed))
        result.ratio("tuibox -p / podman -p throughput", "tuibox -p (127.0.0.1, DNAT) MB/s",
                     "podman -p (127.0.0.1) MB/s")
        result.notes.append(
            "Start: each contender runs its containers one after another, so on the bridge "
            "the first one builds the bridge and the later ones reuse it (tuibox keeps an "
            "idle bridge for 60 s, as podman keeps podman0).")
        result.notes.append(
            f"Throughput: {mb:.0f} MB in 1 MiB writes from this process to a busybox "
            "`nc -l` in the container, timed from connect to the container's close after "
            "it read everything.")
    finally:
        bench.release(engine)
        dropped = drop_netavark_tables(tables_before)
        if dropped:
            result.notes.append(f"podman's netavark left {', '.join(dropped)} behind; removed")
    return result
