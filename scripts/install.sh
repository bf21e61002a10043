#!/bin/sh
# Install tuibox and what it needs on a fresh Debian 12 machine (run as root).
# Usage: scripts/install.sh [--test]   (--test also installs what the test suite needs)
set -eu
cd "$(dirname "$0")/.."

packages="busybox-static ca-certificates libseccomp2 nftables iproute2"
if [ "${1:-}" = "--test" ]; then
    # docker-registry + apache2-utils (htpasswd) + openssl: the loopback registries the
    # pull tests start; skopeo fills them; tmux drives the dashboard end to end.
    # qemu-system-x86 + tini: the pure cgroup v2 guest the v2guest tests boot.
    packages="$packages skopeo tmux docker-registry apache2-utils openssl qemu-system-x86 tini"
fi
missing=""
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing="$missing python3-venv python3-pip"
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    # Packages like docker-registry would start a service on *:5000 when installed; a
    # temporary policy-rc.d (exit 101) stops that: the tests start their own, on loopback.
    added_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing
    [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "tuibox needs Python 3.11 or newer" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"
.venv/bin/python -m pip install -q --upgrade pip
# compat: a plain path entry, not an import hook (the hook costs every CLI start ~5 ms)
.venv/bin/python -m pip install -q -e ".$extra" --config-settings editable_mode=compat
ln -sf "$(pwd)/.venv/bin/tuibox" /usr/local/bin/tuibox

# The v2 guest's kernel and initramfs, built once into its cache (skipped when there).
shared=${TUIBOX_SHARED:-../shared}
[ -d "$shared" ] || shared=/work/shared
guest=${TUIBOX_V2GUEST:-$shared/v2guest}
work=${V2GUEST_WORK:-/var/tmp/v2guest}
if [ "${1:-}" = "--test" ] && [ -n "${CI:-}" ] && [ ! -x "$guest/build-initramfs.sh" ]; then
    echo "install.sh: no v2 guest builder at $guest (set TUIBOX_SHARED or TUIBOX_V2GUEST)" >&2
    exit 1
fi
if [ "${1:-}" = "--test" ] && [ -x "$guest/build-initramfs.sh" ] \
        && ! { [ -e "$work/initramfs.cpio" ] && [ -e "$work/kernel/vmlinuz" ]; }; then
    V2GUEST_WORK=$work bash "$guest/build-initramfs.sh" kvm
fi
