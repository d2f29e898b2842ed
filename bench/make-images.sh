#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Build two Debian 12 (bookworm) benchmark VM images for Stellarium:
#   A.raw  minbase debootstrap tree
#   B.raw  minbase + python3 + openssh-server
# Each is a 2 GiB sparse ext4 raw image made with mkfs.ext4 -d from a cached
# debootstrap tree (rootfs-a/, rootfs-b/). Reruns reuse the trees and skip
# images that are newer than their tree, so a second run is fast and quiet.
#
# Usage: bench/make-images.sh [OUTDIR]
#   OUTDIR defaults to ${STELLAR_BENCH_DATA:-/var/tmp/stellar-bench}.
# Needs root (debootstrap). Installs debootstrap/e2fsprogs if missing.
set -euo pipefail

OUTDIR=${1:-${STELLAR_BENCH_DATA:-/var/tmp/stellar-bench}}
SUITE=bookworm
DEFAULT_MIRROR=http://deb.debian.org/debian
IMG_SIZE=2G

# Fixed identifiers/time so images are as reproducible as mke2fs 1.47 allows.
# (Remaining variation: inode timestamps copied from the tree, incl. atime.)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
export E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH   # superblock/root/lost+found times
UUID_A=5e11a71a-0000-4000-8000-00000000000a
UUID_B=5e11a71a-0000-4000-8000-00000000000b
HASH_SEED=5e11a71a-0000-4000-8000-0000000000f5

log() { printf '%s\n' "$*" >&2; }
die() { log "make-images: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap)"
export PATH="$PATH:/usr/sbin:/sbin"

# Wait for any running apt/dpkg to let go of its locks.
wait_apt_locks() {
    command -v fuser >/dev/null 2>&1 || return 0
    local waited=0
    while fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock \
                /var/lib/apt/lists/lock >/dev/null 2>&1; do
        [ "$waited" -eq 0 ] && log "waiting for apt/dpkg lock..."
        waited=$((waited + 5))
        [ "$waited" -lt 1800 ] || die "apt/dpkg lock still held after 30 min"
        sleep 5
    done
}

apt_install() {
    local apt=(apt-get -y -qq -o DPkg::Lock::Timeout=600)
    wait_apt_locks
    if ! DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >/dev/null; then
        wait_apt_locks
        "${apt[@]}" update >/dev/null
        DEBIAN_FRONTEND=noninteractive "${apt[@]}" install "$@" >/dev/null
    fi
}

need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
{ command -v mkfs.ext4 >/dev/null 2>&1 && command -v e2fsck >/dev/null 2>&1; } \
    || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    apt_install "${need[@]}"
fi

# Use the Debian mirror apt is configured with for $SUITE, if any.
pick_mirror() {
    local m=""
    if command -v apt-get >/dev/null 2>&1; then
        m=$(apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' \
                2>/dev/null | awk -v s="$SUITE" '$1 == "deb" && $2 == s { print $3; exit }')
    fi
    m=${m%/}
    printf '%s\n' "${m:-$DEFAULT_MIRROR}"
}
MIRROR=${STELLAR_BENCH_MIRROR:-$(pick_mirror)}

mkdir -p "$OUTDIR"

# build_tree NAME [debootstrap args...]: cached in $OUTDIR/rootfs-NAME
build_tree() {
    local name=$1; shift
    local root="$OUTDIR/rootfs-$name" tmp="$OUTDIR/rootfs-$name.tmp"
    local logf="$OUTDIR/debootstrap-$name.log"
    [ -d "$root" ] && return 0
    log "debootstrap $name ($SUITE from $MIRROR)..."
    rm -rf "$tmp"
    if ! debootstrap --variant=minbase "$@" "$SUITE" "$tmp" "$MIRROR" \
            >"$logf" 2>&1; then
        tail -n 30 "$logf" >&2
        die "debootstrap $name failed (full log: $logf)"
    fi
    rm -rf "$tmp/var/cache/apt/archives/"*.deb
    mv "$tmp" "$root"
}

# build_image NAME UUID: $OUTDIR/NAME.raw from $OUTDIR/rootfs-<name>
build_image() {
    local name=$1 uuid=$2
    local root="$OUTDIR/rootfs-${name,,}" img="$OUTDIR/$name.raw"
    if [ -f "$img" ] && [ "$img" -nt "$root" ] &&
       [ -z "$(find "$root" -newer "$img" -print -quit)" ]; then
        return 0
    fi
    log "mkfs.ext4 $img..."
    rm -f "$img.tmp"
    truncate -s "$IMG_SIZE" "$img.tmp"
    mkfs.ext4 -q -F -d "$root" -U "$uuid" \
        -E "root_owner=0:0,hash_seed=$HASH_SEED" "$img.tmp" "$IMG_SIZE"
    mv "$img.tmp" "$img"
}

build_tree a
build_tree b --include=python3,openssh-server
build_image A "$UUID_A"
build_image B "$UUID_B"

for name in A B; do
    img="$OUTDIR/$name.raw"
    printf '%s\tapparent=%s\tallocated=%s\n' "$img" \
        "$(du -h --apparent-size "$img" | cut -f1)" "$(du -h "$img" | cut -f1)"
done
