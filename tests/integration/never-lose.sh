#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The defects of the issue "Never lose data", each as it was reproduced:
# every case failed on the code before the fix.
#  1  a SHARED opener's recovery deleted the manifest of an import under way
#  2  a daemon (or export) started during an import worked from the index
#     it read before the import finished
#  3  two daemons on one store, two servers on one socket, two writers of
#     one volume
#  4  one flipped byte in a ref made 'rm' of another name delete its
#     manifest, and gc its chunks
#  5  gc trusted stored counts: a stale index put back, or refs and
#     manifests copied in from another store, lost an image
#  6  a damaged delta (a flipped byte, a truncated data file) silently
#     dropped flushed writes; fsck did not look at deltas
#  6b a ref deleted: recovery removed its volume's writes as an rm's leftovers
#  10 ls waited silently behind an import
#  11 clone of a name whose manifest is missing made a second broken name;
#     ls hid broken names; import made a store of a foreign directory
. "$(dirname "$0")/../lib/functions.sh"
requires nbdcopy nbdinfo nbdsh python3
W=${VOLUME_WRITER:?VOLUME_WRITER must point to tests/tools volume-writer}
S=$STELLAR_STORE

# expect_fail MSG CMD...: CMD fails and says MSG.
expect_fail() {
        local msg=$1
        shift
        if "$@" >"$TMP/out" 2>&1; then cat "$TMP/out" >&2; fail "'$*' exited 0, expected a failure"; fi
        grep -qF -- "$msg" "$TMP/out" || { cat "$TMP/out" >&2; fail "'$*' did not say '$msg'"; }
}
# same_bytes NAME FILE: NAME exports to exactly FILE's bytes.
same_bytes() {
        st export "$1" "$TMP/x.out" >/dev/null 2>"$TMP/x.err" || { cat "$TMP/x.err" >&2; fail "export $1"; }
        cmp -s "$TMP/x.out" "$2" || fail "$1 does not export to its bytes"
        rm -f "$TMP/x.out"
}

st init >/dev/null
head -c 3000000 /dev/urandom >"$TMP/a.raw"
st import -q "$TMP/a.raw" a

echo "== 1: shared openers during imports keep every import's manifest"
head -c 200000 /dev/urandom >"$TMP/small.raw"
(for i in $(seq 40); do
        head -c 4096 /dev/urandom >>"$TMP/small.raw"
        cp "$TMP/small.raw" "$TMP/small-$i.raw"
        st import -q "$TMP/small.raw" "i$i" 2>>"$TMP/imports.err" && echo "i$i" >>"$TMP/imported" || true
done) &
IP=$!
k=0
while kill -0 $IP 2>/dev/null; do
        k=$((k + 1))
        st create "c$k" --size 1M 2>/dev/null || true
        st export a "$TMP/a-during.out" 2>/dev/null && { cmp -s "$TMP/a-during.out" "$TMP/a.raw" || fail "export during imports"; }
done
wait $IP || true
[ -s "$TMP/imported" ] || { cat "$TMP/imports.err" >&2; fail "no import succeeded"; }
while read -r n; do
        st info "$n" >/dev/null 2>"$TMP/info.err" || { cat "$TMP/info.err" >&2; fail "$n: imported (exit 0) but gone"; }
        same_bytes "$n" "$TMP/small-${n#i}.raw"
done <"$TMP/imported"
echo "$(wc -l <"$TMP/imported") imports, $k shared opens meanwhile"
fsck_clean

echo "== 2: a daemon and an export started during an import see it"
head -c 400000000 /dev/urandom >"$TMP/big.raw"
st import -q "$TMP/big.raw" big &
IP=$!
for _ in $(seq 200); do [ -e "$S/dirty" ] && break; sleep 0.02; done
[ -e "$S/dirty" ] || fail "the import did not start"
st export big "$TMP/big.out" 2>"$TMP/export.err" &
EP=$!
start_serve
wait $IP
wait $EP || { cat "$TMP/export.err" >&2; fail "export started during the import failed"; }
grep -q "waiting for pid [0-9]*: .*import" "$TMP/export.err" || { cat "$TMP/export.err" >&2; fail "export did not say whom it waited for"; }
cmp -s "$TMP/big.out" "$TMP/big.raw" || fail "export started during the import: wrong bytes"
rm -f "$TMP/big.out"
nbdcopy "$(U big)" "$TMP/big.nbd" || { cat "$TMP/serve.log" >&2; fail "daemon started during the import cannot read it"; }
cmp -s "$TMP/big.nbd" "$TMP/big.raw" || fail "daemon started during the import: wrong bytes"
rm -f "$TMP/big.nbd" "$TMP/big.raw"

echo "== 3: one server per store, per socket; one writer per volume"
st create v --size 64M
expect_fail "already served by pid $SERVE" timeout 10 "$STELLAR" serve --nbd "unix:$TMP/other.sock" --pidfile "$TMP/pid2"
[ ! -e "$TMP/pid2" ] || fail "the refused daemon wrote a pidfile"
[ "$(cat "$TMP/pid")" = "$SERVE" ] || fail "the refused daemon touched the first one's pidfile"
mkdir "$TMP/s2"
st --store "$TMP/s2" init >/dev/null
expect_fail "another server is listening on it" timeout 10 "$STELLAR" --store "$TMP/s2" serve --nbd "unix:$SOCK"
list=$(nbdinfo --list "nbd+unix://?socket=$SOCK") || fail "the first daemon is unreachable"
grep -q '"a"' <<<"$list" || fail "the first daemon does not list a: $list"
[ -S "$SOCK" ] || fail "the refused server removed the live socket"
# while a client of the daemon writes v, no other process may
PATH=/usr/bin:$PATH nbdsh -u "$(U v)" -c '
import time
h.pwrite(b"\x5a" * 8192, 4096)
h.flush()
open("'"$TMP/written"'", "w").close()
time.sleep(3)' &
NP=$!
for _ in $(seq 100); do [ -e "$TMP/written" ] && break; sleep 0.05; done
[ -e "$TMP/written" ] || fail "nbdsh did not write"
expect_fail "changing the store" "$W" hold "$S" v # the daemon holds the store itself
wait $NP
kill "$SERVE"
wait "$SERVE" || true
# two writers of one volume without a daemon
coproc HOLD { "$W" hold "$S" v; }
read -r line <&"${HOLD[0]}"
[ "$line" = held ] || fail "volume-writer hold: $line"
expect_fail "open for writing by another process" "$W" hold "$S" v
eval "exec ${HOLD[1]}>&-"
wait "$HOLD_PID"
"$W" hold "$S" v </dev/null >/dev/null || fail "the volume stays locked after its writer closed"

echo "== 4: a flipped byte in a ref destroys nothing else"
st clone a ca
st create c --size 1M
cp "$S/refs/a" "$TMP/ref-a"
printf Z | dd of="$S/refs/a" bs=1 seek=30 conv=notrunc status=none
st rm c 2>"$TMP/rm.err"
grep -q "kept until refs/a" "$TMP/rm.err" || { cat "$TMP/rm.err" >&2; fail "rm did not say what held it back"; }
expect_fail "refs/a" st gc
expect_fail "damaged" st ls
st rm ca 2>/dev/null
cp "$TMP/ref-a" "$S/refs/a"
# a ref moved to another name is damage there, not the other name's content
cp "$S/refs/a" "$TMP/ref-a2"
cp "$S/refs/v" "$S/refs/a"
expect_fail "refs/a at offset 72: the ref is another name's" st info a
cp "$TMP/ref-a2" "$S/refs/a"
same_bytes a "$TMP/a.raw"
st gc --quiet
same_bytes a "$TMP/a.raw"

echo "== 5: gc recounts: a stale index, and refs copied in from another store"
cp "$S/index" "$TMP/index.old"
head -c 2000000 /dev/urandom >"$TMP/b.raw"
st import -q "$TMP/b.raw" b
cp "$TMP/index.old" "$S/index" # stale: knows nothing of b
st gc --quiet
same_bytes b "$TMP/b.raw"
same_bytes a "$TMP/a.raw"
# x's refs and manifests from another store, over chunks this one has but
# no longer counts (its own image of the same bytes was removed)
mkdir "$TMP/s3"
st --store "$TMP/s3" init >/dev/null
st --store "$TMP/s3" import -q "$TMP/b.raw" x
st rm b
cp "$TMP/s3/refs/x" "$S/refs/x"
cp "$TMP/s3/manifests/"* "$S/manifests/"
out=$(st gc --json)
[ "$(json_field "$out" counts_corrected)" -gt 0 ] || fail "gc did not correct the counts: $out"
same_bytes x "$TMP/b.raw"
fsck_clean

# a pack of nothing but copies (an interrupted gc's) is deleted only if the
# copies the index names are intact: else its good copies take their place
mkdir "$TMP/s4"
st --store "$TMP/s4" init >/dev/null
st --store "$TMP/s4" import -q "$TMP/a.raw" a
p1=("$TMP"/s4/packs/*)
p1=${p1[0]##*/}
cp "$TMP/s4/packs/$p1" "$TMP/s4/packs/0000ffff.pack"
printf '\xff\xff\x00\x00' | dd of="$TMP/s4/packs/0000ffff.pack" bs=1 seek=16 conv=notrunc status=none
printf '\x00\x00\x00\x00' | dd of="$TMP/s4/packs/$p1" bs=1 seek=200000 conv=notrunc status=none
st --store "$TMP/s4" gc --quiet 2>/dev/null || true
st --store "$TMP/s4" export a "$TMP/a4.out" || fail "the good copies in an unlisted pack were not used"
cmp -s "$TMP/a4.out" "$TMP/a.raw" || fail "a from the rescued copies: wrong bytes"

echo "== 6: a damaged delta is reported, never dropped"
st create w --size 16M
"$W" write "$S" w 5 64 >/dev/null
st export w "$TMP/w.good"
fsck_clean
cp "$S/deltas/w.map" "$TMP/w.map"
cp "$S/deltas/w.data" "$TMP/w.data"
# one byte of an early record (of the first flush of eight)
printf '\x01' | dd of="$S/deltas/w.map" bs=1 seek=$((40 + 40 * 2 + 8)) conv=notrunc status=none
expect_fail "deltas/w.map at offset 120" st export w "$TMP/w.bad"
expect_fail "deltas/w.map:120" st fsck
expect_fail "deltas/w.map" st commit w
cp "$TMP/w.map" "$S/deltas/w.map"
truncate -s 8192 "$S/deltas/w.data"
expect_fail "slot past the end of the data file" st export w "$TMP/w.bad"
expect_fail "deltas/w.map" st fsck
expect_fail "deltas/w.map" st commit w
cp "$TMP/w.data" "$S/deltas/w.data"
# the data itself: every block carries a sum in its record
printf '\x01' | dd of="$S/deltas/w.data" bs=1 seek=5000 conv=notrunc status=none
expect_fail "deltas/w.data at offset 4096" st export w "$TMP/w.bad"
expect_fail "deltas/w.data:4096" st fsck
cp "$TMP/w.data" "$S/deltas/w.data"
rm "$S/deltas/w.data"
expect_fail "deltas/w.map" st fsck
cp "$TMP/w.data" "$S/deltas/w.data"
st commit w >/dev/null
same_bytes w "$TMP/w.good"
fsck_clean

echo "== 6b: a volume whose ref is lost keeps its writes until an rm of its name"
# (its committed layers are pruned unless a name shares them: a snapshot)
st snapshot w w-base
"$W" write "$S" w 9 16 >/dev/null
st export w "$TMP/w.good"
mv "$S/refs/w" "$TMP/ref-w"
st create junk --size 1M
st rm junk
touch "$S/dirty" # recovery on the next exclusive open
st gc --quiet
[ -s "$S/deltas/w.map" ] && [ -s "$S/deltas/w.data" ] || fail "the writes of a volume whose ref is lost were removed"
expect_fail "whose ref is missing" st create w --size 1M
expect_fail "whose ref is missing" st import "$TMP/a.raw" w
expect_fail "deltas/w.map" st fsck
mv "$TMP/ref-w" "$S/refs/w"
same_bytes w "$TMP/w.good"
fsck_clean
st create w2 --size 1M
"$W" write "$S" w2 3 4 >/dev/null
rm "$S/refs/w2"
st rm w2
[ ! -e "$S/deltas/w2.map" ] && [ ! -e "$S/deltas/w2.data" ] || fail "rm left the writes of a lost ref"
expect_fail "no such" st rm w2
fsck_clean

echo "== 10: ls and info never wait for an import"
head -c 300000000 /dev/urandom >"$TMP/big.raw"
st import -q "$TMP/big.raw" big2 &
IP=$!
for _ in $(seq 200); do [ -e "$S/dirty" ] && break; sleep 0.02; done
timeout 5 "$STELLAR" ls >/dev/null || fail "ls waited behind the import"
timeout 5 "$STELLAR" info a >/dev/null || fail "info waited behind the import"
wait $IP
rm -f "$TMP/big.raw"

echo "== 11: broken names are shown, never multiplied; no foreign store"
id=$(json_field "$(st info --json x)" manifest)
mv "$S/manifests/$id" "$TMP/man-x"
expect_fail "damaged" st clone x x2
[ ! -e "$S/refs/x2" ] || fail "clone of a broken name made a second one"
expect_fail "manifests/$id" st ls
{ st ls --json 2>/dev/null || true; } | grep -q '"error"' || fail "ls --json hides the broken name"
mv "$TMP/man-x" "$S/manifests/$id"
st ls >/dev/null
mkdir "$TMP/foreign"
echo precious >"$TMP/foreign/notes.txt"
expect_fail "not a store, and not empty" st --store "$TMP/foreign" import "$TMP/a.raw" a
[ "$(ls "$TMP/foreign")" = notes.txt ] || fail "import littered a foreign directory"
fsck_clean
echo "OK"
