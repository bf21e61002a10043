"""The device escapes on a pure cgroup v2 kernel: the BPF device program on the full
container path (issue #19).

The tests are tests/test_escape_devices.py's own (imported: the very code this host runs
against v1), each attack made from a container; on v2 they check the attached program
instead of devices.list, and the v2-only ones run instead of being skipped.  Left to
this host, where they run too: what does not depend on the cgroup version (a ``--device``
node gone at start, the user namespace case; the guest's tmpfs state root cannot be
idmapped anyway), the v1 transitions, and tests/test_bpf_devices.py (the program, its
loader and its replace logic, tried there on the kernel's unified cgroup2 tree).

One state root and one supervisor serve every test here (starting a supervisor costs
~5 s of emulated CPU); after each test its containers are removed and their cgroups,
programs and mounts must be gone, and at the end the supervisor and its run dir.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _mounts_under, _owned_cgroups
from tests.test_escape_devices import (  # noqa: F401 (collected here; a fixture)
    loop_device,
    test_any_device_can_be_made_but_none_opened,
    test_default_devices_still_work,
    test_device_cgroup_rule,
    test_device_nodes_in_an_image_layer,
    test_loop_device_over_a_host_file,
    test_privileged_sees_and_opens_host_devices,
    test_tty_container_uses_its_pts,
    test_update_and_restart_keep_the_device_rules,
    test_v2_program_goes_with_the_container,
    test_v2_program_refused_means_no_container,
)
from tests.v2 import busybox_archive, guest_only, processes_mentioning, wait_until
from tuibox.engine import Engine
from tuibox.engine.paths import StatePaths

pytestmark = guest_only


@pytest.fixture(scope="module")
def shared_root(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("devices") / "root"
    engine = Engine(root)
    engine.images.load(busybox_archive(request))
    yield root
    engine.shutdown(force=True)
    run = StatePaths(root).run
    wait_until(lambda: not processes_mentioning(str(root)), "the supervisor to go")
    assert not run.exists(), f"runtime dir left: {run}"
    assert not _mounts_under((str(root), str(run))), "mounts left"


@pytest.fixture
def root(shared_root: Path) -> Path:
    """conftest's ``root`` (the ``cli`` fixture's too), shared by this module's tests."""
    return shared_root


@pytest.fixture
def engine(root: Path) -> Iterator[Engine]:
    """conftest's ``engine`` on the shared root; the test's containers go afterwards,
    with their cgroups (and so their programs) and mounts."""
    eng = Engine(root)
    run = str(StatePaths(root).run)
    mounts = _mounts_under((str(root), run))
    yield eng
    for c in eng.list(all=True):
        eng.remove(c.id, force=True)
    wait_until(lambda: not _owned_cgroups(root), "the test's cgroups to go")
    wait_until(lambda: _mounts_under((str(root), run)) <= mounts, "the test's mounts to go")
