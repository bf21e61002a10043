"""Hostile-input-safe extraction of one layer tar into a directory.

Every path is resolved one component at a time from a directory fd with ``O_NOFOLLOW``,
and every new entry is created with ``*at`` calls on its already-resolved parent, so a
symlink planted earlier in the tar (or a ``..``) can never redirect a write outside the
layer.  Docker's metadata is preserved (modes incl. setuid, owners, mtimes, xattrs,
devices, hard links); whiteouts become overlayfs whiteouts.  The DiffID is the sha256 of
the uncompressed stream, computed while extracting.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ..diskfull import is_disk_full, no_space
from ..errors import ImageError, TuiboxError, UnsafeLayer
from .digests import CHUNK, HashingReader, Readable

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
# A layer must not smuggle in overlay's own metadata (redirects, metacopy, origin):
# overlayfs would act on it.  Opaque dirs are expressed with the whiteout file instead.
_RESERVED_XATTR_PREFIX = "trusted.overlay."

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class UnpackResult:
    diff_id: str  # sha256 of the uncompressed tar stream
    size: int  # bytes of file content, as `docker images` counts it


def _components(name: str, entry: str) -> list[str]:
    """Lexically normalise a tar path to components below the layer root.

    A leading ``/`` is dropped, as Docker does; a ``..`` that climbs above the root is
    refused rather than clamped, because no honest layer contains one.
    """
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise UnsafeLayer(entry, "path escapes the layer root via '..'")
            parts.pop()
        else:
            parts.append(comp)
    return parts


def _timestamp_ns(member: tarfile.TarInfo, key: str) -> int:
    """Nanosecond time from the PAX header when present (exact), else the ustar field."""
    raw = member.pax_headers.get(key)
    if raw is not None:
        try:
            return int(Decimal(raw) * 1_000_000_000)
        except InvalidOperation:
            pass
    return int(member.mtime) * 1_000_000_000


def _xattrs(member: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for key, value in member.pax_headers.items():
        if not key.startswith(XATTR_PAX_PREFIX):
            continue
        name = key[len(XATTR_PAX_PREFIX):]
        if not name or name.startswith(_RESERVED_XATTR_PREFIX):
            continue
        # tarfile decodes binary values (e.g. security.capability) with surrogateescape.
        out.append((name, value.encode("utf-8", "surrogateescape")))
    return out


def _set_xattr(target: int | str, name: str, value: bytes) -> None:
    try:
        if isinstance(target, int):
            os.setxattr(target, name, value)
        else:
            os.setxattr(target, name, value, follow_symlinks=False)
    except OSError as exc:
        # Filesystems without a namespace (e.g. security.selinux, user.* on a symlink)
        # refuse it; Docker drops such attributes too rather than failing the pull.
        if exc.errno not in (errno.ENOTSUP, errno.EPERM):
            raise


@dataclass
class _Extractor:
    rootfd: int
    size: int = 0
    # Directory mtimes are applied at the end: creating children would bump them again.
    dir_times: list[tuple[list[str], int, int]] = field(default_factory=list)

    # -- path resolution --------------------------------------------------------------

    def open_dir(self, parts: list[str], entry: str, *, create: bool, what: str) -> int:
        """An fd for ``parts`` below the root, refusing to traverse any symlink."""
        fd = os.dup(self.rootfd)
        try:
            for i, comp in enumerate(parts):
                try:
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise UnsafeLayer(entry, f"{what} does not exist in the layer") from None
                    # Tars may omit parent entries; Docker creates them 0755 root:root.
                    os.mkdir(comp, 0o755, dir_fd=fd)
                    nfd = os.open(comp, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    here = "/".join(parts[: i + 1])
                    st = os.stat(comp, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        raise UnsafeLayer(
                            entry, f"{what} traverses the symlink {here!r}"
                        ) from None
                    raise ImageError(
                        f"layer entry {entry!r}: {here!r} is not a directory"
                    ) from None
                os.close(fd)
                fd = nfd
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def clear(pfd: int, leaf: str, *, keep_dir: bool) -> bool:
        """Remove whatever is at ``leaf`` (Docker replaces entries); True if a dir was kept."""
        try:
            st = os.stat(leaf, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return True
            shutil.rmtree(leaf, dir_fd=pfd)
        else:
            os.unlink(leaf, dir_fd=pfd)
        return False

    # -- entries ----------------------------------------------------------------------

    def entry(self, tf: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = _components(name, name)
        if not parts:
            if not member.isdir():
                raise ImageError(f"layer entry {name!r}: the layer root must be a directory")
            self.fd_metadata(self.rootfd, member)
            self.dir_times.append(([], _timestamp_ns(member, "atime"),
                                   _timestamp_ns(member, "mtime")))
            return
        parent, leaf = parts[:-1], parts[-1]
        pfd = self.open_dir(parent, name, create=True, what="its parent path")
        try:
            if leaf.startswith(WHITEOUT_PREFIX):
                self.whiteout(pfd, leaf, member)
            elif member.isreg():
                self.regular(tf, pfd, leaf, member)
            elif member.isdir():
                self.directory(pfd, parts, member)
            elif member.issym():
                self.symlink(pfd, leaf, member)
            elif member.islnk():
                self.hardlink(pfd, parts, member)
            elif member.ischr() or member.isblk() or member.isfifo():
                self.special(pfd, leaf, member)
            else:
                raise ImageError(f"layer entry {name!r}: unsupported tar type {member.type!r}")
        finally:
            os.close(pfd)

    def whiteout(self, pfd: int, leaf: str, member: tarfile.TarInfo) -> None:
        if leaf == WHITEOUT_OPAQUE:
            # Opaque applies to the directory whatever its position in the tar.
            os.setxattr(pfd, OPAQUE_XATTR, b"y")
            return
        if leaf.startswith(WHITEOUT_META_PREFIX):
            return  # aufs bookkeeping (.wh..wh.plnk etc.): meaningless to overlay
        target = leaf[len(WHITEOUT_PREFIX):]
        if not target or target in (".", ".."):
            raise ImageError(f"layer entry {member.name!r}: invalid whiteout")
        self.clear(pfd, target, keep_dir=False)
        # overlayfs' whiteout is a 0/0 char device with the hidden name.
        os.mknod(target, stat.S_IFCHR, os.makedev(0, 0), dir_fd=pfd)
        os.chown(target, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)

    def regular(self, tf: tarfile.TarFile, pfd: int, leaf: str, member: tarfile.TarInfo) -> None:
        self.clear(pfd, leaf, keep_dir=False)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(leaf, flags, 0o600, dir_fd=pfd)
        try:
            src = tf.extractfile(member)
            if src is not None:
                while chunk := src.read(CHUNK):
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
            self.fd_metadata(fd, member)
            os.utime(fd, ns=(_timestamp_ns(member, "atime"), _timestamp_ns(member, "mtime")))
        finally:
            os.close(fd)
        self.size += member.size

    def directory(self, pfd: int, parts: list[str], member: tarfile.TarInfo) -> None:
        leaf = parts[-1]
        if not self.clear(pfd, leaf, keep_dir=True):
            os.mkdir(leaf, 0o700, dir_fd=pfd)
        fd = os.open(leaf, _DIR_FLAGS, dir_fd=pfd)
        try:
            self.fd_metadata(fd, member)
        finally:
            os.close(fd)
        self.dir_times.append((parts, _timestamp_ns(member, "atime"),
                               _timestamp_ns(member, "mtime")))

    def symlink(self, pfd: int, leaf: str, member: tarfile.TarInfo) -> None:
        # The target is stored verbatim: it is only ever resolved inside the container.
        self.clear(pfd, leaf, keep_dir=False)
        os.symlink(member.linkname, leaf, dir_fd=pfd)
        self.at_metadata(pfd, leaf, member, chmod=False)
        self.size += len(os.fsencode(member.linkname))

    def hardlink(self, pfd: int, parts: list[str], member: tarfile.TarInfo) -> None:
        name = member.name
        target = _components(member.linkname, name)
        if not target:
            raise UnsafeLayer(name, "hard link to the layer root")
        if target == parts:
            return  # a link to itself: nothing to do
        tpfd = self.open_dir(target[:-1], name, create=False,
                             what=f"hard link target {member.linkname!r}")
        try:
            try:
                st = os.stat(target[-1], dir_fd=tpfd, follow_symlinks=False)
            except FileNotFoundError:
                raise UnsafeLayer(
                    name, f"hard link target {member.linkname!r} does not exist in the layer"
                ) from None
            if stat.S_ISDIR(st.st_mode):
                raise UnsafeLayer(name, f"hard link target {member.linkname!r} is a directory")
            self.clear(pfd, parts[-1], keep_dir=False)
            # follow_symlinks=False: a link to a symlink links the symlink itself.
            os.link(target[-1], parts[-1], src_dir_fd=tpfd, dst_dir_fd=pfd,
                    follow_symlinks=False)
        finally:
            os.close(tpfd)

    def special(self, pfd: int, leaf: str, member: tarfile.TarInfo) -> None:
        self.clear(pfd, leaf, keep_dir=False)
        if member.isfifo():
            os.mkfifo(leaf, 0o600, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(leaf, kind | 0o600, os.makedev(member.devmajor, member.devminor),
                     dir_fd=pfd)
        self.at_metadata(pfd, leaf, member, chmod=True)

    # -- metadata ---------------------------------------------------------------------

    @staticmethod
    def fd_metadata(fd: int, member: tarfile.TarInfo) -> None:
        """Owner, then mode (chown clears setuid), then xattrs; times are the caller's."""
        os.fchown(fd, member.uid, member.gid)
        os.fchmod(fd, member.mode & 0o7777)
        for name, value in _xattrs(member):
            _set_xattr(fd, name, value)

    @staticmethod
    def at_metadata(pfd: int, leaf: str, member: tarfile.TarInfo, *, chmod: bool) -> None:
        """Metadata for entries that cannot be opened (symlinks, devices, fifos)."""
        os.chown(leaf, member.uid, member.gid, dir_fd=pfd, follow_symlinks=False)
        if chmod:
            # The entry was created just now by us and is not a symlink, so following
            # is harmless here (Linux has no lchmod).
            os.chmod(leaf, member.mode & 0o7777, dir_fd=pfd)
        xattrs = _xattrs(member)
        if xattrs:
            # No fd for a symlink: address it through the pinned parent's /proc link.
            path = f"/proc/self/fd/{pfd}/{leaf}"
            for name, value in xattrs:
                _set_xattr(path, name, value)
        os.utime(leaf, ns=(_timestamp_ns(member, "atime"), _timestamp_ns(member, "mtime")),
                 dir_fd=pfd, follow_symlinks=False)

    def finish(self) -> None:
        for parts, atime, mtime in self.dir_times:
            try:
                fd = self.open_dir(parts, "/".join(parts), create=False, what="directory")
            except TuiboxError:
                continue  # replaced later in the tar by a non-directory: nothing to time
            try:
                os.utime(fd, ns=(atime, mtime))
            finally:
                os.close(fd)


def unpack_layer(stream: Readable, dest: Path) -> UnpackResult:
    """Extract the uncompressed layer tar ``stream`` into the existing directory ``dest``.

    Raises ``UnsafeLayer`` for entries that would escape ``dest`` and ``ImageError`` for
    anything else broken; the caller owns ``dest`` and removes it on failure.
    """
    reader = HashingReader(stream)
    rootfd = os.open(dest, _DIR_FLAGS)
    extractor = _Extractor(rootfd)
    current = "<header>"
    try:
        with tarfile.open(fileobj=reader, mode="r|", errors="surrogateescape") as tf:
            for member in tf:
                current = member.name
                extractor.entry(tf, member)
        current = "<end of archive>"
        reader.drain()
        extractor.finish()
    except TuiboxError:
        raise
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        if isinstance(exc, OSError) and is_disk_full(exc):  # not a broken layer: no room
            raise no_space(exc, dest) from exc
        raise ImageError(f"cannot unpack layer at entry {current!r}: {exc}") from exc
    finally:
        os.close(rootfd)
    return UnpackResult(diff_id=reader.digest(), size=extractor.size)
