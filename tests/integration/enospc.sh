#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A full disk: the store lives on a small tmpfs. An import that does not fit
# fails with a clear ENOSPC error, leaves no image behind, and damages
# nothing: earlier images export byte-identical, fsck is clean once a writer
# has recovered, and after space is freed imports work again.
. "$(dirname "$0")/../lib/functions.sh"
requires b3sum
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root to mount a tmpfs"; exit 77; }

mkdir -p "$TMP/mnt"
mount -t tmpfs -o size=48M tmpfs "$TMP/mnt" || { echo "SKIP: cannot mount tmpfs"; exit 77; }
_umount() { umount "$TMP/mnt" 2>/dev/null || true; }
trap '_umount; _cleanup' EXIT
export STELLAR_STORE="$TMP/mnt/store"

head -c 20000000 /dev/urandom >"$TMP/a.img"
head -c 60000000 /dev/urandom >"$TMP/big.img"
sum_a=$(b3sum --no-names "$TMP/a.img")
st init >/dev/null
st import --quiet "$TMP/a.img" a

set +e
st import "$TMP/big.img" big >"$TMP/out" 2>&1
rc=$?
set -e
cat "$TMP/out"
[ $rc = 1 ] || fail "import onto a full disk exited $rc"
grep -q "No space left on device" "$TMP/out" || fail "no ENOSPC message"
grep -q "packs/[0-9a-f]*\.pack" "$TMP/out" || fail "the error does not name the pack file"
st info big >/dev/null 2>&1 && fail "half-imported image is visible"

# reads work on the full disk (recovery stays in memory for readers)
st export a "$TMP/a.out"
[ "$(b3sum --no-names "$TMP/a.out")" = "$sum_a" ] || fail "a damaged after ENOSPC"
st fsck --quiet || fail "fsck (read-only) after ENOSPC"

# free space: a writer recovers (cuts the partial pack tail) and gc reclaims
rm -f "$TMP/a.out"
st gc --quiet
fsck_clean
used=$(du -sb "$STELLAR_STORE" | cut -f1)
[ "$used" -lt 30000000 ] || fail "space of the failed import not reclaimed ($used bytes)"
head -c 10000000 /dev/urandom >"$TMP/c.img"
st import --quiet "$TMP/c.img" c
st export c "$TMP/c.out"
cmp "$TMP/c.img" "$TMP/c.out" || fail "import after recovery"
st export a "$TMP/a.out"
[ "$(b3sum --no-names "$TMP/a.out")" = "$sum_a" ] || fail "a damaged"
fsck_clean
echo ok
