"""The peers (docker, podman, runc, crun, skopeo, umoci, a registry) through the shared
scripts in ``../shared/peers/``: this module only calls them, in the order and with the
flags they document (BASELINE.md), and always undoes what it started."""

from __future__ import annotations

import contextlib
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from common import PROJECT

SCRIPTS = PROJECT.parent / "shared" / "peers"


def script(name: str) -> Path:
    return SCRIPTS / name


@dataclass
class Peers:
    """What the peer scripts set up in ``work`` and the commands that reach it."""

    work: Path
    log: Callable[[str], None]
    versions: str = ""
    machine: str = ""
    started: set[str] = field(default_factory=set)
    docker_ok: bool = False
    podman_ok: bool = False
    registry: str = ""

    # ------------------------------------------------------------------ set-up

    def run_script(self, name: str, *args: str, check: bool = True) -> str:
        self.log(f"peers: {name} {' '.join(args)}")
        proc = subprocess.run(["bash", str(script(name)), *args], capture_output=True,
                              text=True, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{name} {' '.join(args)} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        return proc.stdout

    def setup(self, needs: set[str]) -> None:
        """Install the peers, build the images and bundles, then start what ``needs``
        asks for: ``cgroup-fix`` (crun/podman), ``engines`` (dockerd, podman storage),
        ``registry`` (127.0.0.1:5000 with busybox pushed)."""
        results = self.work / "results"
        results.mkdir(parents=True, exist_ok=True)
        self.run_script("setup-peers.sh", str(results / "versions.txt"))
        self.versions = (results / "versions.txt").read_text()
        self.machine = self.run_script("machine-facts.sh")
        if not (self.work / "archives" / "busybox.tar").exists():
            self.run_script("make-busybox-image.sh", str(self.work))
        if "cgroup-fix" in needs or "engines" in needs:
            self.started.add("cgroup-fix")
            self.run_script("cgroup-hybrid-fix.sh", "apply")
        if "registry" in needs:
            self.started.add("registry")
            self.run_script("start-registry.sh", str(self.work))
            self.run_script("registry-push.sh", str(self.work))
            self.registry = "127.0.0.1:5000"
        if "engines" in needs:
            self.started.add("engines")
            out = self.run_script("start-engines.sh", str(self.work), check=False)
            self.docker_ok = "docker run OK" in out
            self.podman_ok = "podman run OK" in out
            self.log(f"peers: docker {'ok' if self.docker_ok else 'FAILED'}, "
                     f"podman {'ok' if self.podman_ok else 'FAILED'}")

    def teardown(self) -> None:
        """Stop everything ``setup`` started; each step runs even if an earlier one fails."""
        self.sweep_runtimes("")
        if "engines" in self.started:
            with contextlib.suppress(RuntimeError):
                self.run_script("start-engines.sh", str(self.work), "stop")
        if "registry" in self.started:
            with contextlib.suppress(RuntimeError):
                self.run_script("start-registry.sh", str(self.work), "stop")
        if "cgroup-fix" in self.started:
            with contextlib.suppress(RuntimeError):
                self.log(self.run_script("cgroup-hybrid-fix.sh", "undo").strip())
        self.started.clear()

    def sweep_runtimes(self, prefix: str) -> int:
        """Delete runc/crun containers whose id starts with ``bench-`` + prefix."""
        n = 0
        for rt in ("runc", "crun"):
            proc = subprocess.run([rt, "list", "-q"], capture_output=True, text=True,
                                  check=False)
            for cid in proc.stdout.split():
                if cid.startswith("bench-" + prefix):
                    subprocess.run([rt, "delete", "-f", cid], capture_output=True, check=False)
                    n += 1
        return n

    # ------------------------------------------------------------------ commands

    def lib(self, expr: str) -> str:
        """Evaluate ``expr`` with peers/lib.sh sourced and WORK set (its flag helpers)."""
        code = f'. {shlex.quote(str(script("lib.sh")))}; WORK={shlex.quote(str(self.work))}; {expr}'
        return subprocess.run(["bash", "-c", code], capture_output=True, text=True,
                              check=True).stdout.strip()

    def podman(self) -> str:
        """``podman`` with the global flags of lib.sh's ``pm`` (storage under WORK)."""
        return f"podman {self.lib('pm_global')}"

    def podman_run_flags(self) -> str:
        return self.lib("pm_run_flags")

    def docker(self) -> str:
        return self.lib('echo "$DOCKER_BIN -H unix://$WORK/docker/docker.sock"')

    def docker_run_flags(self) -> str:
        return self.lib('echo "$DK_RUN_FLAGS"')

    def bundle(self, name: str) -> Path:
        return self.work / "bundles" / name

    def restore_images(self) -> None:
        """Load the busybox archives into docker and podman again (after the pulls)."""
        for ok, tool in ((self.docker_ok, "dk"), (self.podman_ok, "pm")):
            if ok:
                self.lib(f'{tool} load -q -i "$WORK/archives/busybox.tar" >/dev/null; '
                         f'{tool} load -q -i "$WORK/archives/busybox-ml.tar" >/dev/null')

    def idle_memory(self, engine: str, n: int) -> dict[str, str]:
        """``peers-idle-memory.sh WORK N ENGINE``: its TSV row for that engine."""
        self.run_script("peers-idle-memory.sh", str(self.work), str(n), engine)
        lines = (self.work / "results" / "idle-memory.tsv").read_text().splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            row = dict(zip(header, line.split("\t"), strict=False))
            if row.get("engine") == engine:
                return row
        raise RuntimeError(f"peers-idle-memory.sh wrote no row for {engine}")
