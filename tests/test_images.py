"""The image store: import, load (both formats), save, tag, resolve, rmi."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from tests.imagefixtures import (
    TarEntry,
    build_busybox_archives,
    busybox_rootfs,
    image_config,
    layer_tar,
    sha256,
    state_leftovers,
    write_docker_archive,
)
from tuibox.engine.errors import Conflict, ImageError, ImageNotFound, InvalidArgument
from tuibox.engine.images import ImageStore, parse_reference
from tuibox.engine.images import compression as compression_module
from tuibox.engine.paths import StatePaths

SKOPEO = Path("/usr/bin/skopeo")


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_busybox_archives(tmp_path_factory.mktemp("archives"))


@pytest.fixture
def paths(tmp_path: Path) -> StatePaths:
    p = StatePaths(tmp_path / "root")
    p.ensure()
    return p


@pytest.fixture
def store(paths: StatePaths) -> ImageStore:
    return ImageStore(paths)


def small_layer(name: str, data: bytes = b"x") -> bytes:
    return layer_tar([TarEntry(name, data=data)])


# ---------------------------------------------------------------------------------------
# references


@pytest.mark.parametrize(("text", "name", "familiar"), [
    ("busybox", "docker.io/library/busybox", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox", "busybox:1.36"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox", "busybox:latest"),
    ("user/app", "docker.io/user/app", "user/app:latest"),
    ("localhost:5000/x:1", "localhost:5000/x", "localhost:5000/x:1"),
    ("localhost/x", "localhost/x", "localhost/x:latest"),
    ("ghcr.io/a/b@sha256:" + "a" * 64, "ghcr.io/a/b", "ghcr.io/a/b@sha256:" + "a" * 64),
    ("ghcr.io/a/b:v1@sha256:" + "a" * 64, "ghcr.io/a/b", "ghcr.io/a/b:v1@sha256:" + "a" * 64),
    ("a.b-c.io/d__e/f--g.h_i", "a.b-c.io/d__e/f--g.h_i", "a.b-c.io/d__e/f--g.h_i:latest"),
    ("Host/x", "Host/x", "Host/x:latest"),
])
def test_reference_normalisation(text: str, name: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert ref.name == name
    assert ref.familiar() == familiar


@pytest.mark.parametrize("text", [
    "", "Busybox", "busybox:", "busybox:-x", "a" * 64, "ghcr.io/a/b@sha256:abc", "a//b",
    "-a", "busybox@", "x:" + "t" * 129, "a_b.io/x", "a__-b",
])
def test_reference_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_reference(text)


def test_reference_registry_host() -> None:
    assert parse_reference("busybox").registry_host == "registry-1.docker.io"
    assert str(parse_reference("busybox")) == "docker.io/library/busybox:latest"
    assert parse_reference("localhost:5000/x").registry_host == "localhost:5000"


# ---------------------------------------------------------------------------------------
# import


def test_import_directory(store: ImageStore, tmp_path: Path) -> None:
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    record = store.import_image(rootfs, ref="bb", changes=[
        'CMD ["sh", "-c", "echo hi"]', "ENV A=1 B=\"two words\"", "ENV LEGACY some value",
        "WORKDIR /srv", "WORKDIR app", "USER nobody", 'LABEL org.x=y "k 2"=v',
        "STOPSIGNAL SIGQUIT", "EXPOSE 80 53/udp 8000-8001", "entrypoint /bin/run --flag",
    ])
    assert record.repo_tags == ["bb:latest"]
    cfg = record.config
    assert cfg.Cmd == ["sh", "-c", "echo hi"]
    assert cfg.Entrypoint == ["/bin/sh", "-c", "/bin/run --flag"]
    assert cfg.Env == ["A=1", "B=two words", "LEGACY=some value"]
    assert cfg.WorkingDir == "/srv/app"
    assert cfg.User == "nobody"
    assert cfg.Labels == {"org.x": "y", "k 2": "v"}
    assert cfg.StopSignal == "SIGQUIT"
    assert set(cfg.ExposedPorts or {}) == {"80/tcp", "53/udp", "8000/tcp", "8001/tcp"}
    (diff,) = store.layer_dirs(record)
    assert (diff / "bin" / "busybox").is_file()
    assert os.readlink(diff / "bin" / "sh") == "busybox"
    assert os.readlink(diff / "usr" / "bin" / "awk") == "../../bin/busybox"
    assert stat.S_IMODE((diff / "tmp").stat().st_mode) == 0o1777
    assert "nobody:x:65534" in (diff / "etc" / "passwd").read_text()
    assert record.size >= (diff / "bin" / "busybox").stat().st_size
    out = subprocess.run([str(diff / "bin" / "busybox"), "echo", "ok"], capture_output=True,
                         text=True, check=True)
    assert out.stdout == "ok\n"
    assert store.resolve("bb").id == record.id
    assert state_leftovers(store.paths.root)["tmp"] == []


def test_import_gzip_tarball_untagged(store: ImageStore, tmp_path: Path) -> None:
    src = tmp_path / "rootfs.tar.gz"
    src.write_bytes(gzip.compress(layer_tar([
        TarEntry("etc/", type=tarfile.DIRTYPE, mode=0o755),
        TarEntry("etc/hostname", data=b"box\n"),
    ])))
    record = store.import_image(src)
    assert record.repo_tags == []
    assert record.config.Cmd is None
    (diff,) = store.layer_dirs(record)
    assert (diff / "etc" / "hostname").read_text() == "box\n"
    assert [r.id for r in store.list()] == [record.id]


@pytest.mark.parametrize("change", ["FROM busybox", "RUN true", "CMD", "ENV", "EXPOSE x",
                                    "ENV a=1 b", "STOPSIGNAL 9x"])
def test_import_bad_change(store: ImageStore, tmp_path: Path, change: str) -> None:
    with pytest.raises(InvalidArgument):
        store.import_image(tmp_path, changes=[change])


def test_import_missing_source(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file"):
        store.import_image(tmp_path / "nope")
    assert state_leftovers(store.paths.root) == {"tmp": [], "layers": [], "records": [],
                                                 "blobs": []}


# ---------------------------------------------------------------------------------------
# load and save


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_load_busybox(store: ImageStore, archives: tuple[Path, Path], fmt: str) -> None:
    archive = archives[0] if fmt == "docker" else archives[1]
    assert store.load(archive) == ["busybox:latest"]
    image = store.resolve("busybox")
    assert image.repo_tags == ["busybox:latest"]
    assert image.config.Cmd == ["sh"]
    assert image.size > 1_000_000
    (diff,) = store.layer_dirs(image)
    assert (diff / "bin" / "busybox").is_file()
    assert os.readlink(diff / "bin" / "ls") == "busybox"
    # Loading again is idempotent.
    assert store.load(archive) == ["busybox:latest"]
    assert len(store.list()) == 1
    assert state_leftovers(store.paths.root)["tmp"] == []


def test_both_formats_give_the_same_image(tmp_path: Path, archives: tuple[Path, Path]) -> None:
    ids = []
    for n, archive in enumerate(archives):
        p = StatePaths(tmp_path / f"r{n}")
        p.ensure()
        s = ImageStore(p)
        s.load(archive)
        ids.append(s.resolve("busybox:latest").id)
    assert ids[0] == ids[1]


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_save_round_trip(store: ImageStore, archives: tuple[Path, Path], tmp_path: Path,
                         fmt: str) -> None:
    store.load(archives[0])
    store.tag("busybox", "localhost:5000/bb:v1")
    original = store.resolve("busybox")
    out = tmp_path / f"out-{fmt}.tar"
    store.save(["busybox:latest", "localhost:5000/bb:v1"], out, fmt=fmt)  # type: ignore[arg-type]
    with tarfile.open(out) as tf:
        names = set(tf.getnames())
    assert ("manifest.json" in names) == (fmt == "docker")
    assert ("oci-layout" in names) == (fmt == "oci")

    p = StatePaths(tmp_path / "fresh")
    p.ensure()
    fresh = ImageStore(p)
    assert sorted(fresh.load(out)) == ["busybox:latest", "localhost:5000/bb:v1"]
    again = fresh.resolve("localhost:5000/bb:v1")
    assert again.id == original.id
    assert again.repo_tags == ["busybox:latest", "localhost:5000/bb:v1"]
    assert again.diff_ids == original.diff_ids


def test_save_by_id_is_untagged(store: ImageStore, archives: tuple[Path, Path],
                                tmp_path: Path) -> None:
    store.load(archives[0])
    image = store.resolve("busybox")
    out = tmp_path / "byid.tar"
    store.save([image.id[7:19]], out, fmt="oci")
    p = StatePaths(tmp_path / "fresh")
    p.ensure()
    assert ImageStore(p).load(out) == [image.id]


def test_save_unknown_image(store: ImageStore, tmp_path: Path) -> None:
    with pytest.raises(ImageNotFound, match="No such image: nope:latest"):
        store.save(["nope"], tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.skipif(not SKOPEO.exists(), reason="skopeo is not installed")
def test_load_skopeo_oci_archive(store: ImageStore, archives: tuple[Path, Path],
                                 tmp_path: Path) -> None:
    untagged = tmp_path / "sk.tar"
    tagged = tmp_path / "sk-tagged.tar"
    for dest in (f"oci-archive:{untagged}", f"oci-archive:{tagged}:busybox:sk"):
        subprocess.run([str(SKOPEO), "copy", "-q", f"docker-archive:{archives[0]}", dest],
                       check=True, capture_output=True)
    (image_id,) = store.load(untagged)
    assert image_id.startswith("sha256:")
    assert store.resolve(image_id).repo_tags == []
    assert store.load(tagged) == ["busybox:sk"]
    image = store.resolve("busybox:sk")
    assert image.id == image_id
    (diff,) = store.layer_dirs(image)
    assert (diff / "bin" / "busybox").is_file()
    # skopeo reads what we save, too.
    out = tmp_path / "ours.tar"
    store.save(["busybox:sk"], out, fmt="oci")
    result = subprocess.run(
        [str(SKOPEO), "inspect", "--config", f"oci-archive:{out}:busybox:sk"],
        check=True, capture_output=True, text=True)
    assert json.loads(result.stdout)["rootfs"]["diff_ids"] == image.diff_ids


def test_load_gzip_layers_and_shared_blobs(store: ImageStore, tmp_path: Path) -> None:
    base = gzip.compress(small_layer("base"))
    archive = tmp_path / "two.tar"
    id1, id2 = write_docker_archive(archive, [
        ([base, small_layer("one")], ["one:latest"]),
        ([base, gzip.compress(small_layer("two"))], ["two:latest", "two:b"]),
    ])
    assert store.load(archive) == ["one:latest", "two:latest", "two:b"]
    one, two = store.resolve("one"), store.resolve("two:b")
    assert (one.id, two.id) == (id1, id2)
    assert one.chain_ids[0] == two.chain_ids[0]
    assert [d.parent.name for d in store.layer_dirs(one)] == [c[7:] for c in one.chain_ids]
    assert (store.layer_dirs(two)[1] / "two").read_bytes() == b"x"
    assert len(state_leftovers(store.paths.root)["layers"]) == 3


def test_load_zstd_layer(store: ImageStore, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("zstd") is None:
        pytest.skip("zstd command not installed")
    plain = small_layer("z", b"zstd data")
    blob = subprocess.run(["zstd", "-cq"], input=plain, check=True,
                          capture_output=True).stdout
    archive = tmp_path / "z.tar"
    write_docker_archive(archive, [([blob], ["z:latest"])])
    # Without any decompressor the error says what is missing, and nothing is left.
    monkeypatch.setattr(compression_module, "_zstandard_module", lambda: None)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ImageError, match="zstd"):
        store.load(archive)
    assert state_leftovers(store.paths.root) == {"tmp": [], "layers": [], "records": [],
                                                 "blobs": []}
    monkeypatch.undo()
    assert store.load(archive) == ["z:latest"]
    (diff,) = store.layer_dirs(store.resolve("z"))
    assert (diff / "z").read_bytes() == b"zstd data"
    # Saved as OCI the layer keeps its compression and media type.
    out = tmp_path / "z-oci.tar"
    store.save(["z"], out, fmt="oci")
    with tarfile.open(out) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tf.extractfile(  # type: ignore[arg-type]
            "blobs/sha256/" + index["manifests"][0]["digest"][7:]))
    assert manifest["layers"][0]["mediaType"].endswith("+zstd")


def test_load_rejects_bad_diff_id_and_leaves_nothing(store: ImageStore, tmp_path: Path) -> None:
    archive = tmp_path / "bad.tar"
    good, bad = small_layer("good"), small_layer("bad")
    write_docker_archive(archive, [([good], ["good:latest"]), ([bad], ["bad:latest"])],
                         diff_ids=[[sha256(good)], [sha256(good + b"!")]])
    with pytest.raises(ImageError, match="diff_id"):
        store.load(archive)
    assert state_leftovers(store.paths.root) == {"tmp": [], "layers": [], "records": [],
                                                 "blobs": []}
    assert store.list() == []
    with pytest.raises(ImageNotFound):
        store.resolve("good")


def test_failed_load_keeps_existing_layers(store: ImageStore, tmp_path: Path) -> None:
    base, top = small_layer("base"), small_layer("top")
    first, second = tmp_path / "first.tar", tmp_path / "second.tar"
    write_docker_archive(first, [([base], ["keep:latest"])])
    write_docker_archive(second, [([base, top], ["broken:latest"])],
                         diff_ids=[[sha256(base), sha256(b"wrong")]])
    store.load(first)
    before = state_leftovers(store.paths.root)
    with pytest.raises(ImageError):
        store.load(second)
    assert state_leftovers(store.paths.root) == before
    (diff,) = store.layer_dirs(store.resolve("keep"))
    assert (diff / "base").exists()


def test_load_gzipped_archive(store: ImageStore, archives: tuple[Path, Path],
                              tmp_path: Path) -> None:
    packed = tmp_path / "busybox.tar.gz"
    packed.write_bytes(gzip.compress(archives[0].read_bytes(), compresslevel=1))
    assert store.load(packed) == ["busybox:latest"]
    assert state_leftovers(store.paths.root)["tmp"] == []


def test_load_rejects_tampered_oci_blob(store: ImageStore, archives: tuple[Path, Path],
                                        tmp_path: Path) -> None:
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(archives[1]) as src, tarfile.open(tampered, "w") as dst:
        for member in src.getmembers():
            f = src.extractfile(member)
            data = f.read() if f else b""
            if member.name.startswith("blobs/sha256/") and member.size > 100_000:
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(member, io.BytesIO(data))
    with pytest.raises(ImageError, match="digest mismatch"):
        store.load(tampered)
    assert state_leftovers(store.paths.root) == {"tmp": [], "layers": [], "records": [],
                                                 "blobs": []}


def test_load_garbage(store: ImageStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(ImageError):
        store.load(junk)
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(ImageError, match="neither"):
        store.load(empty)
    assert state_leftovers(store.paths.root)["tmp"] == []


def test_load_moves_tag_and_keeps_old_image_dangling(store: ImageStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a.tar", tmp_path / "b.tar"
    (old,) = write_docker_archive(a, [([small_layer("v1")], ["app:latest"])])
    (new,) = write_docker_archive(b, [([small_layer("v2")], ["app:latest"])])
    store.load(a)
    store.load(b)
    assert store.resolve("app").id == new
    assert store.resolve(old).repo_tags == []
    assert {r.id: r.repo_tags for r in store.list()} == {old: [], new: ["app:latest"]}


def test_concurrent_loads_share_layers(store: ImageStore, archives: tuple[Path, Path]) -> None:
    errors: list[BaseException] = []

    def load(archive: Path) -> None:
        try:
            ImageStore(store.paths).load(archive)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(archives[n % 2],)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    left = state_leftovers(store.paths.root)
    assert left["tmp"] == [] and len(left["layers"]) == 1 and len(left["records"]) == 1


# ---------------------------------------------------------------------------------------
# list, resolve, tag


def test_resolve_forms(store: ImageStore, archives: tuple[Path, Path]) -> None:
    store.load(archives[0])
    image = store.resolve("busybox")
    hex_id = image.id[7:]
    for text in ("busybox", "busybox:latest", "docker.io/library/busybox:latest",
                 "index.docker.io/library/busybox", image.id, hex_id, hex_id[:4],
                 hex_id[:12], "sha256:" + hex_id[:8]):
        assert store.resolve(text).id == image.id, text
    with pytest.raises(ImageNotFound, match=r"^No such image: foo:latest$"):
        store.resolve("foo")
    with pytest.raises(ImageNotFound):
        store.resolve("busybox:other")
    with pytest.raises(ImageNotFound):
        store.resolve(hex_id[:3])  # too short to be an id prefix, and not a name here
    with pytest.raises(InvalidArgument):
        store.resolve("Busybox")


def test_resolve_by_repo_digest(store: ImageStore, archives: tuple[Path, Path]) -> None:
    store.load(archives[0])
    image = store.resolve("busybox")
    digest = "sha256:" + "d" * 64
    path = store.paths.images / "images" / f"{image.id[7:]}.json"
    record = json.loads(path.read_text())
    record["repo_digests"] = [f"busybox@{digest}"]
    path.write_text(json.dumps(record))
    assert store.resolve(f"docker.io/library/busybox@{digest}").id == image.id
    with pytest.raises(ImageNotFound, match="No such image: busybox@sha256:eee"):
        store.resolve("busybox@sha256:" + "e" * 64)


def test_tag(store: ImageStore, archives: tuple[Path, Path]) -> None:
    store.load(archives[0])
    store.tag("busybox", "me/bb:1")
    store.tag("me/bb:1", "docker.io/me/bb:2")
    image = store.resolve("docker.io/me/bb:1")
    assert image.repo_tags == ["busybox:latest", "me/bb:1", "me/bb:2"]
    record = json.loads((store.paths.images / "images" / f"{image.id[7:]}.json").read_text())
    assert record["repo_tags"] == image.repo_tags  # the record's copy is kept in step
    repos = json.loads((store.paths.images / "repositories.json").read_text())
    assert repos["refs"]["me/bb:2"] == image.id
    with pytest.raises(InvalidArgument, match="digest"):
        store.tag("busybox", "bb@sha256:" + "a" * 64)
    with pytest.raises(ImageNotFound):
        store.tag("nope", "x")


def test_list_skips_corrupt_record(store: ImageStore, archives: tuple[Path, Path]) -> None:
    store.load(archives[0])
    bad = store.paths.images / "images" / ("f" * 64 + ".json")
    bad.write_text("{not json")
    records, errors = store.list_with_errors()
    assert [r.repo_tags for r in records] == [["busybox:latest"]]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert len(store.list()) == 1


def test_ambiguous_prefix(store: ImageStore, tmp_path: Path) -> None:
    layer = small_layer("f")
    diff_ids = [sha256(layer)]
    # Find two configs whose ids share 4 hex digits (a birthday search: ~300 tries).
    seen: dict[str, list[str]] = {}
    n = 0
    while True:
        cmd = [f"c{n}"]
        prefix = sha256(image_config(diff_ids, cmd=cmd))[7:11]
        if prefix in seen:
            pair = [seen[prefix], cmd]
            break
        seen[prefix] = cmd
        n += 1
    archive = tmp_path / "pair.tar"
    ids = write_docker_archive(archive, [([layer], []), ([layer], [])], cmds=pair)
    store.load(archive)
    with pytest.raises(ImageNotFound, match="ambiguous"):
        store.resolve(prefix)
    for image_id in ids:
        assert store.resolve(image_id[7:19]).id == image_id


# ---------------------------------------------------------------------------------------
# rmi


def test_rmi_untags_then_deletes(store: ImageStore, archives: tuple[Path, Path]) -> None:
    store.load(archives[0])
    image = store.resolve("busybox")
    store.tag("busybox", "bb:2")
    assert store.remove("bb:2") == ["Untagged: bb:2"]
    assert store.resolve("busybox").repo_tags == ["busybox:latest"]
    store.tag("busybox", "bb:3")
    with pytest.raises(Conflict, match="multiple repositories"):
        store.remove(image.id)
    lines = store.remove("busybox")
    assert lines == ["Untagged: busybox:latest"]
    lines = store.remove("bb:3")
    assert lines[0] == "Untagged: bb:3"
    assert lines[1] == f"Deleted: {image.id}"
    assert lines[2:] == [f"Deleted: {c}" for c in reversed(image.chain_ids)]
    assert state_leftovers(store.paths.root) == {"tmp": [], "layers": [], "records": [],
                                                 "blobs": []}
    with pytest.raises(ImageNotFound):
        store.remove("busybox")


def test_rmi_forced_by_id_with_several_tags(store: ImageStore,
                                            archives: tuple[Path, Path]) -> None:
    store.load(archives[1])
    store.tag("busybox", "a")
    image = store.resolve("a")
    lines = store.remove(image.id[7:15], force=True)
    assert lines == ["Untagged: a:latest", "Untagged: busybox:latest",
                     f"Deleted: {image.id}", f"Deleted: {image.chain_ids[0]}"]
    assert store.list() == []


def test_rmi_in_use(store: ImageStore, archives: tuple[Path, Path]) -> None:
    store.load(archives[0])
    image = store.resolve("busybox")
    seen: list[str] = []

    def using(image_id: str) -> list[str]:
        seen.append(image_id)
        return ["web", "db"]

    with pytest.raises(Conflict, match="web, db"):
        store.remove("busybox", containers_using=using)
    with pytest.raises(Conflict, match="web, db"):
        store.remove(image.id, containers_using=using)
    assert seen == [image.id, image.id]
    assert store.resolve("busybox").id == image.id
    # Another tag can go even while containers use the image.
    store.tag("busybox", "extra")
    assert store.remove("extra", containers_using=using) == ["Untagged: extra:latest"]
    # Forced: untagged, but the layers stay for the containers that use them.
    assert store.remove("busybox", force=True, containers_using=using) == [
        "Untagged: busybox:latest"]
    assert store.resolve(image.id).repo_tags == []
    assert all(d.is_dir() for d in store.layer_dirs(image))
    assert store.remove(image.id, containers_using=lambda _: []) == [
        f"Deleted: {image.id}", f"Deleted: {image.chain_ids[0]}"]


def test_rmi_keeps_shared_layers(store: ImageStore, tmp_path: Path) -> None:
    base = small_layer("base")
    archive = tmp_path / "two.tar"
    write_docker_archive(archive, [([base, small_layer("one")], ["one:latest"]),
                                   ([base, small_layer("two")], ["two:latest"])])
    store.load(archive)
    one, two = store.resolve("one"), store.resolve("two")
    lines = store.remove("one")
    assert lines == ["Untagged: one:latest", f"Deleted: {one.id}",
                     f"Deleted: {one.chain_ids[1]}"]
    assert [d.is_dir() for d in store.layer_dirs(two)] == [True, True]
    assert (store.layer_dirs(two)[0] / "base").exists()
    blobs = state_leftovers(store.paths.root)["blobs"]
    assert sha256(base)[7:] in blobs and one.id[7:] not in blobs
    store.remove("two")
    assert state_leftovers(store.paths.root) == {"tmp": [], "layers": [], "records": [],
                                                 "blobs": []}
