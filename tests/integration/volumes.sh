#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Volumes through the CLI: create, clone, snapshot, commit, ls with parents,
# info, export of every kind, rm of a volume others were made from, and the
# costs the issue sets: an empty 10 GiB volume <= 128 bytes, a clone O(1)
# (no extent list copied), identical writes in many clones stored once.
. "$(dirname "$0")/../lib/functions.sh"
requires mkfs.ext4
W=${VOLUME_WRITER:?VOLUME_WRITER must point to tests/tools volume-writer}

make_ext4 "$TMP/base.img" 64M /etc
st init >/dev/null
st import --quiet "$TMP/base.img" base

# an empty 10 GiB volume costs one small file
st create blank --size 10G
[ "$(stat -c %s "$STELLAR_STORE/refs/blank")" -le 128 ] || fail "empty volume ref too large"
[ -z "$(ls "$STELLAR_STORE/deltas")" ] || fail "empty volume has a delta"
[ "$(json_field "$(st info --json blank)" size)" = 10737418240 ] || fail "size"
st export blank "$TMP/blank.img"
[ "$(stat -c %s "$TMP/blank.img")" = 10737418240 ] && [ "$(du -k "$TMP/blank.img" | cut -f1)" = 0 ] ||
        fail "empty volume exports as a 10 GiB hole"
rm -f "$TMP/blank.img"

# clone: no manifest written, the clone shares base's
n_man=$(ls "$STELLAR_STORE/manifests" | wc -l)
st clone base vm1
[ "$(ls "$STELLAR_STORE/manifests" | wc -l)" = "$n_man" ] || fail "clone wrote a manifest"
[ "$(json_field "$(st info --json vm1)" manifest)" = "$(json_field "$(st info --json base)" manifest)" ] ||
        fail "clone does not share its parent's manifest"
st ls | grep -Eq '^vm1 +volume +base ' || fail "ls does not show vm1's parent: $(st ls)"
st export vm1 "$TMP/vm1.img" && cmp "$TMP/vm1.img" "$TMP/base.img" || fail "fresh clone differs"

# writes land in the delta; export sees them before and after commit
"$W" write "$STELLAR_STORE" vm1 7 64 >/dev/null
st export vm1 "$TMP/vm1-written.img"
cmp -s "$TMP/vm1-written.img" "$TMP/base.img" && fail "writes not visible"
[ "$(json_field "$(st info --json vm1)" delta_bytes)" -gt 0 ] || fail "no delta after writes"
st snapshot vm1 snap1
st ls | grep -Eq '^snap1 +snapshot +vm1 ' || fail "ls does not show snap1's parent"
[ "$(json_field "$(st info --json vm1)" delta_bytes)" = 0 ] || fail "snapshot did not commit the delta"
st export snap1 "$TMP/snap1.img" && cmp "$TMP/snap1.img" "$TMP/vm1-written.img" || fail "snapshot content"
"$W" write "$STELLAR_STORE" vm1 8 64 >/dev/null
st export snap1 "$TMP/snap1.img" && cmp "$TMP/snap1.img" "$TMP/vm1-written.img" ||
        fail "snapshot changed when its volume was written"
out=$(st commit --json vm1)
[ "$(json_field "$out" blocks)" -gt 0 ] || fail "commit folded nothing: $out"
[ "$(json_field "$(st info --json vm1)" layers)" = 3 ] || fail "expected 3 manifest layers"
st export vm1 "$TMP/vm1-2.img"
st clone snap1 vm2
st export vm2 "$TMP/vm2.img" && cmp "$TMP/vm2.img" "$TMP/vm1-written.img" || fail "clone of a snapshot"
st clone vm1 vm3
st export vm3 "$TMP/vm3.img" && cmp "$TMP/vm3.img" "$TMP/vm1-2.img" || fail "clone of a volume"
fsck_clean

# images and snapshots are read-only
{ st commit base 2>&1 || true; } | grep -q "not a volume" || fail "commit of an image"
{ st snapshot base s 2>&1 || true; } | grep -q "only a volume" || fail "snapshot of an image"
st clone base vm1 2>/dev/null && fail "clone onto an existing name"

# identical writes in many clones are stored once
for i in 1 2 3 4 5; do
        st clone base "c$i"
        "$W" write "$STELLAR_STORE" "c$i" 99 200 >/dev/null
done
st commit --quiet c1
for i in 2 3 4 5; do
        out=$(st commit --json "c$i")
        [ "$(json_field "$out" new_chunks)" = 0 ] || fail "clone c$i stored identical data again: $out"
done

# rm of a volume others came from keeps their data; gc keeps what they use
st rm vm1
st export snap1 "$TMP/snap1.img" && cmp "$TMP/snap1.img" "$TMP/vm1-written.img" || fail "snap1 after rm vm1"
st export vm3 "$TMP/vm3.img" && cmp "$TMP/vm3.img" "$TMP/vm1-2.img" || fail "vm3 after rm vm1"
st gc --quiet
st export vm3 "$TMP/vm3.img" && cmp "$TMP/vm3.img" "$TMP/vm1-2.img" || fail "vm3 after gc"
fsck_clean
# removing everything leaves nothing behind after gc
for n in $(st ls --json | python3 -c 'import json,sys; print(" ".join(x["name"] for x in json.load(sys.stdin)))'); do
        st rm "$n"
done
st gc --quiet
[ "$(json_field "$(st stats --json)" chunks)" = 0 ] || fail "chunks left after removing everything"
[ -z "$(ls "$STELLAR_STORE/manifests")" ] || fail "manifests left after removing everything"
[ -z "$(ls "$STELLAR_STORE/deltas")" ] || fail "deltas left after removing everything"
fsck_clean
echo ok
