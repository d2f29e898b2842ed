#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The main job on an embedded default: build two small ext4 root-like images
# from files on this machine (B = A plus more files, as after a package
# install), import both into a fresh local store, and show what dedup saved;
# then export B, check it is byte-identical, and fsck the store; then publish
# both to a static tree and pull them into a second store.
# Usage: scripts/demo.sh [STELLAR_BINARY]   (store and images go to a temp dir;
# set DEMO_DIR to keep them)
set -euo pipefail
STELLAR=${1:-build/cli/stellar}
DIR=${DEMO_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/stellar-demo-XXXXXX")}
[ -n "${DEMO_DIR:-}" ] || trap 'rm -rf "$DIR"' EXIT
export STELLAR_STORE="$DIR/store"
rm -rf "$STELLAR_STORE"

rm -rf "$DIR/root" && mkdir -p "$DIR/root"
for d in /etc /usr/share/i18n /usr/share/zoneinfo /usr/lib/x86_64-linux-gnu/gconv /usr/share/perl5; do
        [ -d "$d" ] && cp -a "$d" "$DIR/root/" 2>/dev/null || true
done
echo "== image A: ext4, 2 GiB sparse, $(du -sh "$DIR/root" | cut -f1) of files from this machine"
mkfs.ext4 -q -F -d "$DIR/root" "$DIR/a.img" 2G
for d in /usr/sbin; do
        [ -d "$d" ] && cp -a "$d" "$DIR/root/" 2>/dev/null || true
done
echo "== image B: A plus /usr/sbin (as a package install would add), $(du -sh "$DIR/root" | cut -f1) in all"
mkfs.ext4 -q -F -d "$DIR/root" "$DIR/b.img" 2G
rm -rf "$DIR/root"

"$STELLAR" init
"$STELLAR" import "$DIR/a.img" debian-a
"$STELLAR" import "$DIR/b.img" debian-b
echo
"$STELLAR" ls
echo
"$STELLAR" stats
echo
disk_a=$(du -B1 "$DIR/a.img" | cut -f1)
disk_b=$(du -B1 "$DIR/b.img" | cut -f1)
store=$(du -sB1 "$STELLAR_STORE" | cut -f1)
python3 - "$disk_a" "$disk_b" "$store" <<'PY'
import sys
a, b, s = map(int, sys.argv[1:])
print(f"raw images on disk (sparse): {(a + b) / 2**20:.1f} MiB; store: {s / 2**20:.1f} MiB "
      f"({(a + b) / max(s, 1):.2f}x smaller)")
PY
"$STELLAR" export debian-b "$DIR/b.out"
if cmp -s "$DIR/b.img" "$DIR/b.out"; then
        echo "export of debian-b is byte-identical to the source image"
else
        echo "export of debian-b DIFFERS from the source image" >&2
        exit 1
fi
"$STELLAR" fsck

# Distribution: publish both images as a static tree (what a web server or
# S3 bucket would serve), then a second host's store pulls A, then B: it
# fetches only the chunks B has and A lacks, each verified.
echo
echo "== publish to a static tree, pull into a second store"
"$STELLAR" publish debian-a "$DIR/cdn"
"$STELLAR" publish debian-b "$DIR/cdn"
"$STELLAR" --store "$DIR/host2" pull "file://$DIR/cdn" debian-a
"$STELLAR" --store "$DIR/host2" pull "file://$DIR/cdn" debian-b
"$STELLAR" --store "$DIR/host2" export debian-b "$DIR/b2.out"
cmp -s "$DIR/b.img" "$DIR/b2.out" || { echo "pulled debian-b DIFFERS from the source image" >&2; exit 1; }
echo "pulled debian-b is byte-identical to the source image"
