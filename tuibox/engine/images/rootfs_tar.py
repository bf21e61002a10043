"""Turn a root filesystem (a directory or a tarball) into one uncompressed layer tar.

Used by ``import``: the result is what a layer blob holds, so it is written with the
metadata unpacking preserves (owners, modes, times, hard links, devices, and xattrs as
``SCHILY.xattr.*`` PAX records) and in sorted order, so importing the same tree twice
gives the same DiffID.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
from pathlib import Path

from ..errors import ImageError
from .compression import open_uncompressed
from .digests import CHUNK
from .unpack import XATTR_PAX_PREFIX

# overlayfs' private attributes describe a mount, not the files; never ship them.
_SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "security.selinux")


def _xattr_headers(path: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return headers  # filesystems without xattr support
    for name in sorted(names):
        if name.startswith(_SKIPPED_XATTR_PREFIXES):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        headers[XATTR_PAX_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return headers


def _tree_entries(root: Path) -> list[tuple[str, str]]:
    # Depth-first, sorted by name at each level: a stable order independent of readdir.
    result: list[tuple[str, str]] = []

    def visit(path: str, arc: str) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = f"{arc}{entry.name}"
            result.append((entry.path, name))
            if entry.is_dir(follow_symlinks=False):
                visit(entry.path, name + "/")

    visit(str(root), "")
    return result


def write_tree_tar(root: Path, dest: Path) -> None:
    """Write the tree under ``root`` (not following symlinks) as a tar at ``dest``."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT,
                      errors="surrogateescape") as tf:
        for path, name in _tree_entries(root):
            info = tf.gettarinfo(path, arcname=name)
            if info is None:
                continue  # sockets cannot be archived; Docker skips them too
            # Numeric ids are what matter inside a container; names would be re-mapped.
            info.uname = info.gname = ""
            headers = _xattr_headers(path)
            if headers:
                info.pax_headers = {**info.pax_headers, **headers}
            if info.isreg():
                with open(path, "rb") as f:
                    tf.addfile(info, f)
            else:
                tf.addfile(info)


def write_rootfs_tar(source: Path, dest: Path) -> None:
    """``source`` is a directory or a (plain, gzip or zstd) tarball; write a plain tar."""
    try:
        st = source.stat()
    except FileNotFoundError:
        raise ImageError(f"{source}: no such file or directory") from None
    if stat.S_ISDIR(st.st_mode):
        write_tree_tar(source, dest)
        return
    with open_uncompressed(source) as src, dest.open("wb") as out:
        shutil.copyfileobj(src, out, CHUNK)
