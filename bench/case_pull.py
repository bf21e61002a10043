"""Case 6: pull + unpack from the loopback registry.

Every contender starts from nothing in each run (hyperfine ``--prepare``): tuibox pulls
into a fresh state root; podman and docker first drop every image holding these layers
(the loaded ones too, restored afterwards), as ``peers-pull.sh`` does; skopeo copies into
a fresh OCI layout and umoci unpacks it into a fresh bundle.  Two images: ``busybox`` (one
1 MB layer) and ``busybox-ml`` (three layers, 5 MB, whiteouts).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common import Bench, CaseResult, Contender, Goal, timed_rounds, tuibox_cli

NAME = "pull"
TITLE = "pull + unpack from the loopback registry"
NEEDS = frozenset({"engines", "registry", "cgroup-fix"})
IMAGES = ("busybox", "busybox-ml")
REGISTRY_BIN = Path("/usr/bin/docker-registry")


def contenders(bench: Bench, registry: str, image: str) -> list[Contender]:
    pull = bench.work / "pull" / image
    pull.mkdir(parents=True, exist_ok=True)
    ref = f"{registry}/{image}:latest"
    tuibox = Contender(f"tuibox pull {image}",
                       f"{tuibox_cli()} --root {pull}/tuibox-root pull -q {ref}",
                       prepare=f"rm -rf {pull}/tuibox-root && sync")
    if bench.smoke:
        tuibox.func = _smoke_timer(tuibox.command, pull / "tuibox-root")
        return [tuibox]
    out = [tuibox]
    peers = bench.peers
    assert peers is not None
    drop = " ".join(f"{name}:latest {registry}/{name}:latest" for name in IMAGES)
    if peers.podman_ok:
        pm = peers.podman()
        out.append(Contender(f"podman pull {image}", f"{pm} pull -q --tls-verify=false {ref}",
                             prepare=f"{pm} rmi -f {drop} >/dev/null 2>&1; sync", peer=True))
    if peers.docker_ok:
        dk = peers.docker()
        out.append(Contender(f"docker pull {image}", f"{dk} pull -q {ref}",
                             prepare=f"{dk} rmi -f {drop} >/dev/null 2>&1; sync", peer=True))
    out.append(Contender(
        f"skopeo copy + umoci unpack {image}",
        f"skopeo copy -q --src-tls-verify=false docker://{ref} oci:{pull}/oci:{image} && "
        f"umoci unpack --image {pull}/oci:{image} {pull}/bundle >/dev/null",
        prepare=f"rm -rf {pull}/oci {pull}/bundle && sync", peer=True))
    return out


def _smoke_timer(command: str, root: Path) -> Callable[[int], list[float]]:
    def run(n: int) -> list[float]:
        times = []
        for _ in range(n):
            shutil.rmtree(root, ignore_errors=True)
            t0 = time.perf_counter()
            subprocess.run(command.split(), check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        shutil.rmtree(root, ignore_errors=True)
        return times

    return run


@contextmanager
def private_registry(bench: Bench) -> Iterator[str]:
    """Smoke mode: a docker-registry on a free loopback port, holding tuibox's busybox."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    work = bench.work / "registry"
    work.mkdir(parents=True, exist_ok=True)
    config = {"version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
              "storage": {"filesystem": {"rootdirectory": str(work / "data")}},
              "http": {"addr": addr}}
    (work / "config.yml").write_text(json.dumps(config))  # YAML is a superset of JSON
    proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(work / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://{addr}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the smoke registry did not start")
            time.sleep(0.05)
        engine = bench.root("pull-source")
        try:
            for image in IMAGES:
                engine.images.tag("busybox:latest", f"{addr}/{image}:latest")
                engine.push(f"{addr}/{image}:latest")
        finally:
            bench.release(engine)
        yield addr
    finally:
        proc.terminate()
        proc.wait(10)


def run(bench: Bench) -> CaseResult:
    result = CaseResult(NAME, TITLE)
    if bench.smoke and not bench.registry:
        if not REGISTRY_BIN.exists():
            result.notes.append("docker-registry is missing: nothing measured")
            return result
        with private_registry(bench) as addr:
            bench.registry = addr
            try:
                return run(bench)
            finally:
                bench.registry = ""
    registry = bench.registry or (bench.peers.registry if bench.peers else "")
    if not registry:
        raise RuntimeError("the pull case needs a registry (peers set-up or --registry)")
    try:
        for image in IMAGES:
            bench.log(f"  {image}")
            result.measures += timed_rounds(bench, contenders(bench, registry, image),
                                            warmup=0 if bench.smoke else 3)
    finally:
        if bench.peers is not None:
            bench.peers.restore_images()
        shutil.rmtree(bench.work / "pull", ignore_errors=True)
    for image in IMAGES:
        tuibox = f"tuibox pull {image}"
        for peer in ("podman", "docker"):
            result.ratio(f"tuibox / {peer}, {image}", tuibox, f"{peer} pull {image}")
        result.ratio(f"tuibox / skopeo+umoci, {image}", tuibox,
                     f"skopeo copy + umoci unpack {image}")
    result.goals = [Goal(f"pull ≤ ½ of podman ({image})",
                         dict(result.ratios).get(f"tuibox / podman, {image}"), 0.5, unit="×")
                    for image in IMAGES]
    return result
