"""Layer unpacking: Docker-faithful metadata, overlay whiteouts, and hostile tars."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from tests.imagefixtures import TarEntry, layer_tar, sha256, state_leftovers, write_docker_archive
from tuibox.engine.errors import ImageError, UnsafeLayer
from tuibox.engine.images import ImageStore
from tuibox.engine.images.unpack import UnpackResult, unpack_layer
from tuibox.engine.paths import StatePaths

DIR, SYM, LNK = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
CHR, BLK, FIFO = tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE
# A VFS v2 capability blob granting cap_net_bind_service (bit 10), permitted+effective.
CAP_NET_BIND = b"\x01\x00\x00\x02" + b"\x00\x04\x00\x00" + b"\x00" * 12


def unpack(tmp_path: Path, entries: list[TarEntry]) -> tuple[Path, UnpackResult]:
    data = layer_tar(entries)
    dest = tmp_path / "layer"
    dest.mkdir(mode=0o755)
    result = unpack_layer(io.BytesIO(data), dest)
    assert result.diff_id == sha256(data)
    return dest, result


def is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


# ---------------------------------------------------------------------------------------
# what Docker preserves


def test_modes_owners_times(tmp_path: Path) -> None:
    dest, result = unpack(tmp_path, [
        TarEntry("./", type=DIR, mode=0o750, mtime=1_000),
        TarEntry("bin/", type=DIR, mode=0o2755, uid=5, gid=6, mtime=2_000),
        TarEntry("bin/su", data=b"#!suid", mode=0o4755, uid=0, gid=0, mtime=3_000),
        TarEntry("bin/tool", data=b"abc", mode=0o640, uid=1000, gid=2000, mtime=4_000),
        TarEntry("bin/abs", type=SYM, linkname="/etc/passwd", uid=7, gid=8, mtime=5_000),
        TarEntry("deep/er/file", data=b"no parent entries"),
        TarEntry("precise", data=b"", pax={"mtime": "1700000000.123456789"}),
    ])
    assert stat.S_IMODE(dest.stat().st_mode) == 0o750
    assert dest.stat().st_mtime == 1_000
    b = (dest / "bin").stat()
    assert (stat.S_IMODE(b.st_mode), b.st_uid, b.st_gid, b.st_mtime) == (0o2755, 5, 6, 2_000)
    su = (dest / "bin" / "su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_mtime == 3_000
    tool = (dest / "bin" / "tool").stat()
    assert (stat.S_IMODE(tool.st_mode), tool.st_uid, tool.st_gid) == (0o640, 1000, 2000)
    link = (dest / "bin" / "abs").lstat()
    assert os.readlink(dest / "bin" / "abs") == "/etc/passwd"
    assert (link.st_uid, link.st_gid, link.st_mtime) == (7, 8, 5_000)
    assert stat.S_IMODE((dest / "deep" / "er").stat().st_mode) == 0o755
    assert (dest / "precise").stat().st_mtime_ns == 1_700_000_000_123_456_789
    assert result.size == len(b"#!suid") + 3 + len("/etc/passwd") + len(b"no parent entries")


def test_hard_links(tmp_path: Path) -> None:
    dest, result = unpack(tmp_path, [
        TarEntry("a", data=b"shared", mode=0o755),
        TarEntry("b", type=LNK, linkname="a"),
        TarEntry("sub/c", type=LNK, linkname="/a"),  # absolute: relative to the layer root
        TarEntry("sub/d", type=LNK, linkname="./sub/../a"),
        TarEntry("s", type=SYM, linkname="/nowhere"),
        TarEntry("s2", type=LNK, linkname="s"),  # a link to a symlink links the symlink
    ])
    inode = (dest / "a").stat().st_ino
    for name in ("b", "sub/c", "sub/d"):
        assert (dest / name).stat().st_ino == inode
    assert (dest / "a").stat().st_nlink == 4
    assert os.readlink(dest / "s2") == "/nowhere"
    assert result.size == len(b"shared") + len("/nowhere")


def test_devices_and_fifos(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [
        TarEntry("dev/null", type=CHR, devmajor=1, devminor=3, mode=0o666),
        TarEntry("dev/loop0", type=BLK, devmajor=7, devminor=0, mode=0o660, gid=6),
        TarEntry("run/pipe", type=FIFO, mode=0o620),
    ])
    null = (dest / "dev" / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    loop = (dest / "dev" / "loop0").lstat()
    assert stat.S_ISBLK(loop.st_mode) and loop.st_rdev == os.makedev(7, 0)
    assert (stat.S_IMODE(loop.st_mode), loop.st_gid) == (0o660, 6)
    pipe = (dest / "run" / "pipe").lstat()
    assert stat.S_ISFIFO(pipe.st_mode) and stat.S_IMODE(pipe.st_mode) == 0o620


def test_xattrs(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [
        TarEntry("ping", data=b"elf", mode=0o755, pax={
            "SCHILY.xattr.security.capability": CAP_NET_BIND.decode("utf-8", "surrogateescape"),
            "SCHILY.xattr.user.note": "hello",
            # overlay's own attributes must never come from a layer
            "SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
        }),
        TarEntry("dir/", type=DIR, pax={"SCHILY.xattr.user.d": "x"}),
        # symlinks get theirs without following the link (user.* is not allowed there)
        TarEntry("sym", type=SYM, linkname="/etc/hostname",
                 pax={"SCHILY.xattr.trusted.t": "on link", "SCHILY.xattr.user.u": "dropped"}),
    ])
    ping = str(dest / "ping")
    assert os.getxattr(ping, "security.capability") == CAP_NET_BIND
    assert os.getxattr(ping, "user.note") == b"hello"
    assert "trusted.overlay.redirect" not in os.listxattr(ping)
    assert os.getxattr(dest / "dir", "user.d") == b"x"
    assert os.getxattr(dest / "sym", "trusted.t", follow_symlinks=False) == b"on link"
    assert "trusted.t" not in os.listxattr("/etc/hostname")


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    dest, result = unpack(tmp_path, [
        TarEntry("a/.wh.gone", uid=3, gid=4),
        TarEntry(".wh.top"),
        TarEntry("early/.wh..wh..opq"),  # before its directory entry
        TarEntry("early/", type=DIR, mode=0o711),
        TarEntry("early/kept", data=b"k"),
        TarEntry("late/", type=DIR),
        TarEntry("late/x", data=b"x"),
        TarEntry("late/.wh..wh..opq"),  # after its children
        TarEntry(".wh..wh..opq"),
        TarEntry("a/.wh..wh.plnk"),  # aufs metadata: ignored
    ])
    assert is_whiteout(dest / "a" / "gone")
    assert ((dest / "a" / "gone").lstat().st_uid, (dest / "a" / "gone").lstat().st_gid) == (3, 4)
    assert is_whiteout(dest / "top")
    for d in (dest / "early", dest / "late", dest):
        assert os.getxattr(d, "trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "a")
    assert (dest / "early" / "kept").read_bytes() == b"k"
    assert stat.S_IMODE((dest / "early").stat().st_mode) == 0o711
    assert sorted(os.listdir(dest / "a")) == ["gone"]
    assert result.size == 2


def test_later_entries_replace_earlier(tmp_path: Path) -> None:
    dest, _ = unpack(tmp_path, [
        TarEntry("x", data=b"file"),
        TarEntry("x/", type=DIR),
        TarEntry("y/", type=DIR),
        TarEntry("y/child", data=b"c"),
        TarEntry("y", data=b"now a file"),
        TarEntry("l", type=SYM, linkname="/etc"),
        TarEntry("l/", type=DIR),  # replaces the symlink, never writes through it
        TarEntry("l/inner", data=b"i"),
        TarEntry("f", data=b"old"),
        TarEntry("f", data=b"new"),
    ])
    assert (dest / "x").is_dir()
    assert (dest / "y").read_bytes() == b"now a file"
    assert not (dest / "l").is_symlink() and (dest / "l" / "inner").read_bytes() == b"i"
    assert (dest / "f").read_bytes() == b"new"


def test_broken_tar(tmp_path: Path) -> None:
    data = layer_tar([TarEntry("big", data=b"z" * 5000)])
    dest = tmp_path / "layer"
    dest.mkdir()
    with pytest.raises(ImageError):
        unpack_layer(io.BytesIO(data[:1500]), dest)
    with pytest.raises(ImageError, match="invalid whiteout"):
        unpack_layer(io.BytesIO(layer_tar([TarEntry("d/.wh.")])), dest)


# ---------------------------------------------------------------------------------------
# hostile layers


def _hostile_cases(canary: Path) -> list[tuple[str, list[TarEntry], str]]:
    up = "../" * 30 + str(canary).lstrip("/")
    return [
        ("dotdot", [TarEntry("../escape", data=b"x")], "../escape"),
        ("dotdot-deep", [TarEntry("a/", type=DIR), TarEntry("a/../../escape", data=b"x")],
         "a/../../escape"),
        ("absolute-dotdot", [TarEntry(f"/../..{canary}/abs", data=b"x")],
         f"/../..{canary}/abs"),
        ("symlink-out", [TarEntry("evil", type=SYM, linkname=str(canary)),
                         TarEntry("evil/pwned", data=b"x")], "evil/pwned"),
        ("symlink-relative-out", [TarEntry("up", type=SYM, linkname=up),
                                  TarEntry("up/pwned", data=b"x")], "up/pwned"),
        ("symlink-etc", [TarEntry("link", type=SYM, linkname="/etc"),
                         TarEntry("link/passwd", data=b"root::0:0::/:/bin/sh\n")],
         "link/passwd"),
        ("symlink-dir-entry", [TarEntry("d", type=SYM, linkname=str(canary)),
                               TarEntry("d/sub/", type=DIR)], "d/sub"),
        ("symlink-whiteout", [TarEntry("w", type=SYM, linkname=str(canary)),
                              TarEntry("w/.wh.secret")], "w/.wh.secret"),
        ("symlink-opaque", [TarEntry("w", type=SYM, linkname=str(canary)),
                            TarEntry("w/.wh..wh..opq")], "w/.wh..wh..opq"),
        ("hardlink-host-file", [TarEntry("pw", type=LNK, linkname="/etc/passwd")], "pw"),
        ("hardlink-dotdot", [TarEntry("pw", type=LNK, linkname="../../../../etc/passwd")],
         "pw"),
        ("hardlink-through-symlink", [TarEntry("l", type=SYM, linkname=str(canary)),
                                      TarEntry("x", type=LNK, linkname="l/secret")], "x"),
        ("hardlink-missing", [TarEntry("x", type=LNK, linkname="nothing/here")], "x"),
    ]


CASE_NAMES = [c[0] for c in _hostile_cases(Path("/c"))]


def _canary_state(canary: Path) -> list[tuple[str, int, bytes, list[str]]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(canary):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            out.append((str(p), st.st_mode, p.read_bytes() if p.is_file() else b"",
                        sorted(os.listxattr(p, follow_symlinks=False))))
    out.append((str(canary), canary.stat().st_mode, b"", sorted(os.listxattr(canary))))
    return sorted(out)


@pytest.mark.parametrize("case", CASE_NAMES)
def test_hostile_layer_is_refused(tmp_path: Path, case: str) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret").write_bytes(b"do not touch")
    before = _canary_state(canary)
    passwd = hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest()
    (entries, bad) = next((e, b) for n, e, b in _hostile_cases(canary) if n == case)
    paths = StatePaths(tmp_path / "root")
    paths.ensure()
    store = ImageStore(paths)
    archive = tmp_path / "hostile.tar"
    write_docker_archive(archive, [([layer_tar(entries)], ["hostile:latest"])])

    with pytest.raises(UnsafeLayer) as info:
        store.load(archive)

    assert info.value.entry == bad
    assert bad in str(info.value)
    assert _canary_state(canary) == before
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() == passwd
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary", "hostile.tar", "root"]
    assert state_leftovers(paths.root) == {"tmp": [], "layers": [], "records": [], "blobs": []}
    assert store.list() == []


def test_hostile_entry_direct(tmp_path: Path) -> None:
    """unpack_layer itself refuses, before writing the entry."""
    dest = tmp_path / "layer"
    dest.mkdir()
    data = layer_tar([TarEntry("ok", data=b"1"), TarEntry("../../x", data=b"2")])
    with pytest.raises(UnsafeLayer, match=r"\.\./\.\./x"):
        unpack_layer(io.BytesIO(data), dest)
    assert not (tmp_path / "x").exists() and not Path("/x").exists()
