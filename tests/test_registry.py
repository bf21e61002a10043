"""Pulling from (and pushing to) a real registry on loopback: Debian's docker-registry.

One plain registry serves the whole module: busybox as Docker schema 2 and as OCI (by
skopeo), a zstd OCI image, a 3-layer image with whiteouts, a two-platform index with an
attestation entry, and an image whose blob is then corrupted in the registry's storage.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.imagefixtures import TarEntry, layer_tar, state_leftovers, write_docker_archive
from tests.registryfixtures import (
    OCI_INDEX,
    Registry,
    digest_of,
    first_layer_of,
    push_oci_image,
    raw_push_manifest,
    skopeo_copy,
    start_registry,
)
from tuibox.engine import Engine, RunOptions
from tuibox.engine.errors import ImageError, ImageNotFound, RegistryError
from tuibox.engine.images.registry.progress import ProgressCallback, ProgressEvent, Status

pytestmark = pytest.mark.skipif(not Path("/usr/bin/docker-registry").exists(),
                                reason="needs Debian's docker-registry")

GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
ZST = "application/vnd.oci.image.layer.v1.tar+zstd"
TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Filled:
    registry: Registry
    corrupt_digest: str

    @property
    def addr(self) -> str:
        return self.registry.addr


def _layered_layers() -> list[bytes]:
    def d(name: str) -> TarEntry:
        return TarEntry(name, type=tarfile.DIRTYPE, mode=0o755)

    base = layer_tar([
        d("a/"), TarEntry("a/keep", data=b"keep"), TarEntry("a/gone", data=b"x"),
        d("o/"), TarEntry("o/old1", data=b"1"), d("o/sub/"),
        TarEntry("o/sub/old2", data=b"2"), TarEntry("basefile", data=b"base"),
        TarEntry("top", data=b"v1"),
    ])
    middle = layer_tar([
        d("a/"), TarEntry("a/.wh.gone"),  # plain whiteout
        d("o/"), TarEntry("o/.wh..wh..opq"), TarEntry("o/new", data=b"new"),
        TarEntry("top", data=b"v2"),
    ])
    upper = layer_tar([TarEntry(".wh.basefile"), TarEntry("added", data=b"3")])
    return [gzip.compress(layer) for layer in (base, middle, upper)]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory,
           busybox_archives: tuple[Path, Path]) -> Iterator[Filled]:
    work = tmp_path_factory.mktemp("registry")
    registry = start_registry(work / "plain")
    try:
        docker_tar, oci_tar = busybox_archives
        addr = registry.addr
        skopeo_copy(f"docker-archive:{docker_tar}", f"docker://{addr}/busybox:latest",
                    fmt="v2s2")
        skopeo_copy(f"oci-archive:{oci_tar}", f"docker://{addr}/busybox-oci:latest",
                    fmt="oci")
        raw = first_layer_of(docker_tar)
        zst = subprocess.run(["zstd", "-q", "-c"], input=raw, check=True,
                             capture_output=True).stdout
        push_oci_image(addr, "busybox-zstd", "latest", [(zst, raw, ZST)])
        push_oci_image(addr, "busybox-plain", "latest", [(raw, raw, TAR)])
        layered = work / "layered.tar"
        write_docker_archive(layered, [(_layered_layers(), ["layered:latest"])])
        skopeo_copy(f"docker-archive:{layered}", f"docker://{addr}/layered:latest", fmt="v2s2")
        # Two platforms behind an index whose first entry is an attestation.
        entries = []
        for arch in ("amd64", "arm64"):
            layer = layer_tar([TarEntry("platform", data=arch.encode())])
            digest, size = push_oci_image(addr, "multi", None,
                                          [(gzip.compress(layer), layer, GZ)], arch=arch)
            entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "digest": digest, "size": size,
                            "platform": {"os": "linux", "architecture": arch}})
        attestation = dict(entries[1], platform={"os": "unknown", "architecture": "unknown"},
                           annotations={"vnd.docker.reference.type": "attestation-manifest"})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                            "manifests": [attestation, *entries]}).encode()
        raw_push_manifest(addr, "multi", "latest", index, OCI_INDEX)
        # An image with a unique layer, whose stored blob is then damaged.
        bad = gzip.compress(layer_tar([TarEntry("corrupt-me", data=os.urandom(4096))]))
        push_oci_image(addr, "corrupt", "latest",
                       [(bad, gzip.decompress(bad), GZ)])
        blob = registry.blob_file(digest_of(bad))
        data = bytearray(blob.read_bytes())
        data[len(data) // 2] ^= 0xFF
        blob.write_bytes(bytes(data))
        yield Filled(registry, digest_of(bad))
    finally:
        registry.stop()


@pytest.fixture
def fresh(root: Path) -> Iterator[Engine]:
    from tests.conftest import _cleanup

    eng = Engine(root)
    yield eng
    _cleanup(eng)


def _events() -> tuple[list[ProgressEvent], ProgressCallback]:
    seen: list[ProgressEvent] = []
    return seen, seen.append


def test_pull_docker_schema2_and_run(fresh: Engine, filled: Filled) -> None:
    from tests.test_container_runtime import run_output

    events, cb = _events()
    record = fresh.pull(f"{filled.addr}/busybox", progress=cb)
    assert record.repo_tags == [f"{filled.addr}/busybox:latest"]
    (repo_digest,) = record.repo_digests
    assert repo_digest.startswith(f"{filled.addr}/busybox@sha256:")
    statuses = [e.status for e in events if e.id]
    assert Status.PULL_COMPLETE in statuses and Status.DOWNLOADING in statuses
    assert os.listdir(fresh.paths.tmp) == []  # no partial downloads left behind
    # found again by its registry digest; runs a real container
    assert fresh.images.resolve(repo_digest).id == record.id
    code, out, _ = run_output(fresh, "echo", "pulled", image=f"{filled.addr}/busybox")
    assert (code, out) == (0, "pulled\n")


def test_second_pull_downloads_nothing(fresh: Engine, filled: Filled) -> None:
    fresh.pull(f"{filled.addr}/busybox")
    events, cb = _events()
    again = fresh.pull(f"{filled.addr}/busybox-oci:latest", progress=cb)
    layer_statuses = {e.status for e in events if e.id}
    assert layer_statuses == {Status.ALREADY_EXISTS}
    assert f"{filled.addr}/busybox-oci:latest" in again.repo_tags


@pytest.mark.parametrize("repo, compression", [("busybox-oci", "gzip"),
                                               ("busybox-zstd", "zstd"),
                                               ("busybox-plain", "none")])
def test_pull_oci_compressions(fresh: Engine, filled: Filled, repo: str,
                               compression: str) -> None:
    record = fresh.pull(f"{filled.addr}/{repo}")
    meta = fresh.images.layer_store.meta(record.chain_ids[0])
    assert meta.compression == compression
    (layer,) = fresh.images.layer_dirs(record)
    assert (layer / "bin" / "busybox").is_file()


def test_pulled_whiteouts_give_exactly_the_right_tree(fresh: Engine, filled: Filled,
                                                      tmp_path: Path) -> None:
    record = fresh.pull(f"{filled.addr}/layered")
    dirs = fresh.images.layer_dirs(record)
    assert len(dirs) == 3
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    lower = ":".join(str(d) for d in reversed(dirs))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower}", str(mnt)],
                   check=True)
    try:
        tree = sorted(str(p.relative_to(mnt)) for p in mnt.rglob("*"))
        contents = {p: (mnt / p).read_bytes() for p in tree if (mnt / p).is_file()}
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert tree == ["a", "a/keep", "added", "o", "o/new", "top"]
    assert contents == {"a/keep": b"keep", "added": b"3", "o/new": b"new", "top": b"v2"}
    # in the layer dirs themselves: overlay whiteouts and the opaque xattr
    gone = os.lstat(dirs[1] / "a" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(dirs[1] / "o", "trusted.overlay.opaque") == b"y"


def test_index_picks_the_host_platform_and_skips_attestations(fresh: Engine,
                                                             filled: Filled) -> None:
    host = fresh.pull(f"{filled.addr}/multi")
    assert host.architecture == "amd64"
    assert (fresh.images.layer_dirs(host)[0] / "platform").read_text() == "amd64"
    arm = fresh.pull(f"{filled.addr}/multi", platform="linux/arm64")
    assert arm.architecture == "arm64"
    assert (fresh.images.layer_dirs(arm)[0] / "platform").read_text() == "arm64"
    with pytest.raises(ImageError, match="no matching manifest for linux/s390x"):
        fresh.pull(f"{filled.addr}/multi", platform="linux/s390x")


def test_pull_by_digest_tags_nothing(fresh: Engine, filled: Filled) -> None:
    by_tag = fresh.pull(f"{filled.addr}/busybox")
    digest = by_tag.repo_digests[0].partition("@")[2]
    fresh.images.remove(f"{filled.addr}/busybox:latest")
    record = fresh.pull(f"{filled.addr}/busybox@{digest}")
    assert record.repo_tags == [] and record.repo_digests == [f"{filled.addr}/busybox@{digest}"]


def test_unknown_repo_and_tag_are_clear_errors(fresh: Engine, filled: Filled) -> None:
    before = state_leftovers(fresh.paths.root)
    with pytest.raises(RegistryError, match=r"not found|unknown"):
        fresh.pull(f"{filled.addr}/nosuchrepo")
    with pytest.raises(RegistryError, match="busybox:nosuchtag not found"):
        fresh.pull(f"{filled.addr}/busybox:nosuchtag")
    assert state_leftovers(fresh.paths.root) == before


def test_corrupt_blob_is_refused_and_leaves_the_store_unchanged(fresh: Engine,
                                                                filled: Filled) -> None:
    before = state_leftovers(fresh.paths.root)
    with pytest.raises(ImageError, match="digest mismatch"):
        fresh.pull(f"{filled.addr}/corrupt")
    assert state_leftovers(fresh.paths.root) == before
    with pytest.raises(ImageNotFound):
        fresh.images.resolve(f"{filled.addr}/corrupt")


def test_run_pull_policies(fresh: Engine, filled: Filled) -> None:
    ref = f"{filled.addr}/busybox"
    with pytest.raises(ImageNotFound):
        fresh.create(RunOptions(image=ref, command=["true"], pull="never"))
    config = fresh.create(RunOptions(image=ref, command=["true"]))  # missing → pulled
    assert config.image_id == fresh.images.resolve(ref).id
    with pytest.raises(ImageNotFound, match="pull failed"):
        fresh.create(RunOptions(image=f"{filled.addr}/nosuchrepo", command=["true"]))


def test_push_then_pull_round_trip_chunked(engine: Engine, filled: Filled,
                                           tmp_path: Path) -> None:
    from tuibox.engine.images.registry.push import push

    target = f"{filled.addr}/pushed:1"
    engine.images.tag("busybox:latest", target)
    events, cb = _events()
    digest = push(engine.images, target, progress=cb,
                  chunk_size=256 << 10)
    assert {e.status for e in events if e.id} >= {Status.PUSHING, Status.PUSHED}
    # a second push finds every layer there already
    events2, cb2 = _events()
    assert engine.push(target, progress=cb2) == digest
    assert {e.status for e in events2 if e.id} == {Status.PREPARING, Status.LAYER_EXISTS}
    other = Engine(tmp_path / "other")
    try:
        record = other.pull(target)
        assert record.id == engine.images.resolve("busybox").id
        assert record.repo_digests == [f"{filled.addr}/pushed@{digest}"]
        # save/load round trip of a pulled image
        archive = tmp_path / "pulled.tar"
        other.images.save([target], archive)
        third = Engine(tmp_path / "third")
        assert third.images.load(archive) == [target]
        assert third.images.resolve(target).id == record.id
    finally:
        other.shutdown(force=True)


def test_cli_pull_progress_and_quiet(root: Path, filled: Filled) -> None:
    def tuibox(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "tuibox", "--root", str(root), *args],
                              capture_output=True, text=True, timeout=60)

    ref = f"{filled.addr}/layered"
    proc = tuibox("pull", ref)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "latest: Pulling from layered"
    assert sum(line.endswith(": Pull complete") for line in lines) == 3
    assert lines[-3].startswith("Digest: sha256:")
    assert lines[-2] == f"Status: Downloaded newer image for {ref}:latest"
    assert lines[-1] == f"{ref}:latest"
    quiet = tuibox("pull", "-q", ref)
    assert (quiet.returncode, quiet.stdout) == (0, f"{ref}:latest\n")
    bad = tuibox("pull", f"{filled.addr}/nosuchrepo")
    assert bad.returncode != 0 and "nosuchrepo" in bad.stderr
    ran = tuibox("run", "--rm", "--pull", "always", f"{filled.addr}/busybox", "echo", "ok")
    try:
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "ok\n" and "Pull complete" in ran.stderr
        # the default policy on a missing image: the CLI's fast path hands over to the
        # ordinary path, which pulls, then runs
        tuibox("rmi", f"{filled.addr}/busybox")
        again = tuibox("run", "--rm", f"{filled.addr}/busybox", "echo", "again")
        assert again.returncode == 0, again.stderr
        assert again.stdout == "again\n" and "Unable to find image" in again.stderr
        never = tuibox("run", "--rm", "--pull", "never", f"{filled.addr}/other", "true")
        assert never.returncode == 125 and "No such image" in never.stderr
    finally:
        Engine(root).shutdown(force=True)
