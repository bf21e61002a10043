"""Issue #12 item 4: a relative bind source is the caller's, never the supervisor's.

``-v ./etc:/x`` used to bind the host's ``/etc`` (resolved against the supervisor's
working directory ``/``) and ``-v ./x:/y`` created ``/x`` on the host.  Now the command
line resolves a ``.``-relative source against its own working directory (docker CLI 23+,
for ``-v`` and ``--mount``), and the engine refuses any relative bind source, whoever
asks.  Names are unique, so "nothing appeared at /<name>" means something.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tuibox.engine import Engine, InvalidArgument, RunOptions, TuiboxError

RUN = ("run", "--rm", "--network", "none")


def tuibox_in(cwd: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command line, started in ``cwd`` (the supervisor's cwd is ``/``)."""
    return subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def caller_dir(tmp_path: Path) -> Path:
    work = tmp_path / "caller"
    (work / "sub").mkdir(parents=True)
    (work / "sub" / "marker").write_text("caller's sub\n")
    return work


def test_dot_sources_are_the_callers(engine: Engine, root: Path, caller_dir: Path) -> None:
    got = tuibox_in(caller_dir, root, *RUN, "-v", "./sub:/x", "busybox", "cat", "/x/marker")
    assert (got.returncode, got.stdout) == (0, "caller's sub\n"), got
    got = tuibox_in(caller_dir, root, *RUN, "--mount", "type=bind,source=./sub,target=/x",
                    "busybox", "cat", "/x/marker")
    assert (got.returncode, got.stdout) == (0, "caller's sub\n"), got
    # The attack: ./etc named the host's /etc.  Now it is the caller's (new, empty) etc.
    got = tuibox_in(caller_dir, root, *RUN, "-v", "./etc:/x:ro", "busybox", "ls", "-A", "/x")
    assert (got.returncode, got.stdout) == (0, ""), got
    assert (caller_dir / "etc").is_dir()


def test_a_missing_dot_source_is_made_in_the_callers_dir(engine: Engine, root: Path,
                                                         caller_dir: Path) -> None:
    name = "tbx-bind-" + secrets.token_hex(6)
    got = tuibox_in(caller_dir, root, *RUN, "-v", f"./{name}:/y", "busybox", "sh", "-c",
                    "echo made > /y/f")
    assert got.returncode == 0, got
    assert (caller_dir / name / "f").read_text() == "made\n"  # -v creates it (Docker's rule)
    assert not Path("/", name).exists()
    # --mount never creates a missing source, and says where it looked.
    other = "tbx-bind-" + secrets.token_hex(6)
    got = tuibox_in(caller_dir, root, *RUN, "--mount", f"type=bind,src=./{other},dst=/y",
                    "busybox", "true")
    assert got.returncode == 125
    assert got.stderr == (f'tuibox: invalid mount config for type "bind": bind source path '
                          f"does not exist: {caller_dir / other}\n")
    assert not (caller_dir / other).exists() and not Path("/", other).exists()


def test_mount_refuses_a_bare_relative_source(engine: Engine, root: Path,
                                              caller_dir: Path) -> None:
    got = tuibox_in(caller_dir, root, *RUN, "--mount", "type=bind,source=sub,target=/x",
                    "busybox", "true")
    assert got.returncode == 125
    assert got.stderr == ('tuibox: invalid mount config for type "bind": invalid mount path: '
                          "'sub' mount path must be absolute\n")
    # A bare name in -v is a named volume, not a path (Docker's rule).
    got = tuibox_in(caller_dir, root, *RUN, "-v", "sub:/x", "busybox", "ls", "-A", "/x")
    assert (got.returncode, got.stdout) == (0, ""), got
    assert "sub" in [v.name for v in engine.volumes.list()]


def test_the_engine_refuses_relative_bind_sources(engine: Engine) -> None:
    """Whoever the client is (the API, the dashboard, an old CLI talking to the
    supervisor): nothing is resolved against the engine's or the supervisor's cwd."""
    name = "tbx-bind-" + secrets.token_hex(6)
    for volumes, mounts in (([f"./{name}:/x"], []), ([f"../{name}:/x"], []),
                            ([], [f"type=bind,source=./{name},target=/x"]),
                            ([], [f"type=bind,source={name},target=/x"])):
        with pytest.raises(InvalidArgument, match="absolute"):
            engine.create(RunOptions(image="busybox", volumes=volumes, mounts=mounts))
        # The supervisor's own create (the CLI's fast path) refuses it the same way.
        options = {"image": "busybox", "network": "none", "volumes": volumes,
                   "mounts": mounts}
        with pytest.raises(TuiboxError, match="absolute"):
            engine.supervisor.request({"op": "create", "start": False, "options": options})
    assert not Path("/", name).exists() and not Path(name).exists()
    assert engine.list(all=True) == []
