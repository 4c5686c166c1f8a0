#!/usr/bin/env bash
# The README's quick start on a fresh Debian 13 ("trixie", Python 3.13) machine: a minimal root file
# system from Debian's package registry, this repository's HEAD cloned into it, and `make run` run there
# as a new user would, with pip reaching the public index from inside.
#
#   sudo scripts/fresh_machine.sh [COMMAND]          # COMMAND defaults to `make run`
#
# Needs root (debootstrap, chroot, mounts) and debootstrap (apt-get install debootstrap). The root file
# system is made once and kept as a tarball in FRESH_MACHINE_CACHE (default ~/.cache/posebus/fresh-machine),
# remade when older than a week; every run unpacks a clean copy into a temporary folder and removes it
# afterwards (KEEP=1 keeps it). The root file system has the packages the issue's new user started from
# plus the system libraries the README's quick start asks for. Nothing of the host's Python set-up goes in
# (no pip configuration, cache, wheels or model bundles), only its DNS and CA configuration. Where the
# official model download is not reachable (CI, the team's machines), the default model is built from
# the mediapipe wheel that pip fetches inside.
set -euo pipefail

COMMAND=${1:-make run}
SUITE=trixie
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=python3,python3-venv,python3-pip,make,git,ca-certificates
README_PACKAGES=libegl1,libgles2  # README, Quick start: mediapipe's libmediapipe.so links libEGL and libGLESv2
REPO=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
CACHE=${FRESH_MACHINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/posebus/fresh-machine}
TARBALL=$CACHE/debian-$SUITE-minbase-$(echo "$PACKAGES,$README_PACKAGES" | md5sum | cut -c1-8).tar.gz
VIDEO=$REPO/../shared/media/vid.mp4  # where the README's `make run` looks, relative to the clone

[ "$(id -u)" = 0 ] || { echo "fresh_machine: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "fresh_machine: apt-get install debootstrap" >&2; exit 2; }
started=$SECONDS
say() { printf 'fresh_machine [%3ds] %s\n' $((SECONDS - started)) "$*"; }

mkdir -p "$CACHE"
if [ -z "$(find "$TARBALL" -mtime -7 2>/dev/null)" ]; then
    say "debootstrap --variant=minbase --include=$PACKAGES,$README_PACKAGES $SUITE ($MIRROR)"
    build=$(mktemp -d /var/tmp/posebus-debootstrap.XXXXXX)
    debootstrap --variant=minbase --include="$PACKAGES,$README_PACKAGES" "$SUITE" "$build" "$MIRROR" >"$build.log" 2>&1 \
        || { tail -20 "$build.log" >&2; rm -rf --one-file-system "$build"; exit 1; }
    rm -f "$build"/var/cache/apt/archives/*.deb "$build.log"
    tar -C "$build" -czf "$TARBALL.tmp" . && mv "$TARBALL.tmp" "$TARBALL"
    rm -rf --one-file-system "$build"
fi

work=$(mktemp -d /var/tmp/posebus-fresh.XXXXXX)
root=$work/root
cleanup() {
    for mount in "$root/dev" "$root/sys" "$root/proc"; do
        if mountpoint -q "$mount"; then umount -R "$mount" || umount -lR "$mount"; fi
    done
    # --one-file-system: never reaches into a mount that failed to go away (the host's /dev).
    if [ -z "${KEEP:-}" ]; then rm -rf --one-file-system "$work"; else say "kept $work"; fi
}
trap cleanup EXIT
mkdir "$root"
tar -C "$root" -xzf "$TARBALL"
say "root file system unpacked: $(. "$root/etc/os-release" && echo "$PRETTY_NAME"), $(chroot "$root" python3 --version)"

mount --bind /proc "$root/proc"
for mount in dev sys; do  # sys: what a real machine has (MediaPipe's tcmalloc counts CPUs there)
    mount --rbind "/$mount" "$root/$mount" && mount --make-rslave "$root/$mount"
done
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"

git clone --quiet --no-checkout "$REPO" "$root/root/posebus"
git -C "$root/root/posebus" checkout --quiet "$(git -C "$REPO" rev-parse HEAD)"
say "cloned $(git -C "$REPO" log -1 --format='%h %s' | cut -c1-80)"
if [ -f "$VIDEO" ]; then
    mkdir -p "$root/root/shared/media" && cp "$VIDEO" "$root/root/shared/media/"
fi
say "chroot: cd posebus && $COMMAND"
status=0
# PIP_LOG: pip's full log (every download and its size) beside the console's quiet one.
chroot "$root" /usr/bin/env -i HOME=/root USER=root LANG=C.UTF-8 TERM=dumb PIP_LOG=/root/pip.log \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    bash -c "cd /root/posebus && $COMMAND" 2>&1 | tee "$work/output" || status=${PIPESTATUS[0]}
# A job whose detector failed on every frame still ends with exit status 0: look at what it logged too.
if [ "$status" = 0 ] && grep -q -E 'level=ERROR|^posebus: error|person in 0$' "$work/output"; then
    say "errors logged or nobody found (above)"
    status=1
fi
venv=$(du -sh "$root/root/posebus/.venv" 2>/dev/null | cut -f1)
downloads=$(python3 - "$root/root/pip.log" <<'PYTHON'
import re, sys
units = {"kB": 1e3, "MB": 1e6, "GB": 1e9}
try:
    found = re.findall(r"Downloading \S+ \(([\d.]+) (kB|MB|GB)\)", open(sys.argv[1]).read())
except OSError:
    found = []
print(f"{len(found)} files, {sum(float(n) * units[u] for n, u in found) / 1e6:.0f} MB")
PYTHON
)
say "$COMMAND exited with $status (.venv ${venv:-none}; pip downloaded $downloads)"
exit "$status"
