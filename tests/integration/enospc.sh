#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A full disk: the store lives on a small tmpfs. An import that does not fit
# fails with a clear ENOSPC error, leaves no image behind, and damages
# nothing: earlier images export byte-identical, fsck is clean once a writer
# has recovered, and after space is freed imports work again. A pull onto
# the full disk reports as kept exactly the chunks the store then has, and
# resumes once there is room.
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

# A pull onto the full disk ("Never lose data" #11): the chunks it says it
# kept are exactly those the store has afterwards, and once there is room a
# resumed pull finds them all and fetches only the rest.
head -c 40000000 /dev/urandom >"$TMP/p.img"
st --store "$TMP/h1" import --quiet "$TMP/p.img" p
st --store "$TMP/h1" publish --quiet p "$TMP/tree"
P=$TMP/mnt/pulled
set +e
st --store "$P" pull "$TMP/tree" p >"$TMP/out" 2>&1
rc=$?
set -e
cat "$TMP/out"
[ $rc = 1 ] || fail "pull onto a full disk exited $rc"
grep -q "No space left on device" "$TMP/out" || fail "pull: no ENOSPC message"
said=$(sed -n 's/^stellar: \([0-9]*\) chunks fetched so far are kept.*/\1/p' "$TMP/out")
[ -n "$said" ] && [ "$said" -gt 0 ] || fail "the failed pull does not say how many chunks it kept"
have=$(json_field "$(st --store "$P" stats --json)" chunks)
[ "$said" = "$have" ] || fail "the failed pull said it kept $said chunks; the store has $have"
rm -rf "$STELLAR_STORE" # room for the rest
out=$(st --store "$P" pull --json "$TMP/tree" p)
[ "$(json_field "$out" present)" = "$said" ] ||
        fail "the resumed pull found $(json_field "$out" present) chunks there, not the $said kept"
st --store "$P" export p "$TMP/p.out"
cmp "$TMP/p.img" "$TMP/p.out" || fail "the image pulled after ENOSPC differs"
STELLAR_STORE=$P fsck_clean
echo ok
