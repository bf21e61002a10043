#!/bin/sh
# Install tuibox, make a busybox image (from the host's busybox-static), start the README's
# sample job and two more demo containers, then open the dashboard.  Run as root.
#   sample_job  while true; do echo Docker; sleep 1; done       (live logs)
#   cpu_capped  a busy loop held to half a core by --cpus 0.5     (CPU plot at its limit)
#   mem_grower  grows by 512 KiB a second toward -m 64m          (memory plot climbing to its
#               limit; the kernel OOM-kills it there and --restart always starts it again)
#   web         busybox httpd published on the host: curl http://127.0.0.1:8080/
# Quitting the dashboard leaves them running:
#   'tuibox rm -f sample_job cpu_capped mem_grower web'.
set -eu
cd "$(dirname "$0")/.."
scripts/install.sh
tuibox=.venv/bin/tuibox

if ! $tuibox images -q busybox:latest | grep -q .; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    .venv/bin/python -m tuibox.engine.images.hostrootfs "$rootfs"
    $tuibox import -c 'CMD ["sh"]' "$rootfs" busybox:latest
fi

# start NAME RUN-ARGS...: (re)create the demo container NAME unless it is already running.
start() {
    name=$1
    shift
    if ! $tuibox ps -q --format '{{.Names}}' | grep -qx "$name"; then
        $tuibox rm -f "$name" >/dev/null 2>&1 || true
        $tuibox run -d --name "$name" "$@" >/dev/null
        echo "started $name"
    fi
}

start sample_job busybox /bin/sh -c "while true; do echo Docker; sleep 1; done"
start cpu_capped --cpus 0.5 busybox /bin/sh -c \
    'echo "spinning under --cpus 0.5"; while :; do :; done'
start mem_grower -m 64m --memory-swap 64m --restart always busybox /bin/sh -c \
    'x=; i=0; while true; do x="$x$(head -c 524288 /dev/zero | tr "\0" x)"; i=$((i+1)); echo "holding $((i/2)) MiB"; sleep 1; done'
start web -p 8080:80 busybox /bin/sh -c \
    'mkdir -p /www && echo "hello from tuibox" > /www/index.html && exec httpd -f -v -p 80 -h /www'

$tuibox ps
echo
echo "Opening the dashboard (q quits; the containers keep running; ? lists every key)."
sleep 1
exec $tuibox
