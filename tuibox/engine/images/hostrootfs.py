"""A minimal busybox root filesystem from the host's static busybox (Debian's
``busybox-static``): the demo image and the test suite's image, with no registry needed.

``python -m tuibox.engine.images.hostrootfs DIR`` builds it in DIR; ``tuibox import DIR``
then makes it an image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def busybox_rootfs(dest: Path, busybox: Path = BUSYBOX) -> Path:
    """Build a minimal busybox root filesystem in ``dest`` and return it."""
    if not busybox.exists():
        raise FileNotFoundError(f"{busybox} is missing: install Debian's busybox-static")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("bin", "etc", "root", "home", "var", "proc", "sys", "dev", "tmp"):
        (dest / name).mkdir(exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    os.chmod(dest / "root", 0o700)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True,
                             text=True).stdout.split()
    for applet in applets:
        rel = Path(applet.lstrip("/"))
        if rel == Path("bin/busybox"):
            continue
        link = dest / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            continue
        # Relative links keep the rootfs valid wherever it is mounted or unpacked.
        link.symlink_to(os.path.relpath(dest / "bin" / "busybox", link.parent))
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tuibox.engine.images.hostrootfs DIR")
    busybox_rootfs(Path(sys.argv[1]))
