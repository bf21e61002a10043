#!/bin/sh
# Install tuibox, make a busybox image from the host's busybox-static, and start the
# sample job of the README.  Run as root.
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh
tuibox=.venv/bin/tuibox

if ! $tuibox images -q busybox:latest | grep -q .; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    .venv/bin/python -c 'import sys; from tests.imagefixtures import busybox_rootfs; from pathlib import Path; busybox_rootfs(Path(sys.argv[1]))' "$rootfs"
    $tuibox import -c 'CMD ["sh"]' "$rootfs" busybox:latest
fi
$tuibox info
$tuibox run --rm busybox /bin/echo Hello Docker
if ! $tuibox ps -q --format '{{.Names}}' | grep -qx sample_job; then
    $tuibox rm -f sample_job >/dev/null 2>&1 || true
    $tuibox run -d --name sample_job busybox /bin/sh -c "while true; do echo Docker; sleep 1; done"
fi
sleep 2
$tuibox ps
$tuibox logs -t --tail 3 sample_job
echo
echo "sample_job keeps running: 'tuibox logs -f -t sample_job' follows it, 'tuibox stop sample_job' stops it."
exec $tuibox
