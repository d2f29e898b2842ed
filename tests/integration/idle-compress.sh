#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The daemon's idle compression finishes what imports left to the cold
# level, in the background, while it serves:
#  1. A deferring import's raw records: compressed while an NBD reader
#     checks every answer and an import, a clone and a snapshot run through
#     the daemon; afterwards the store has shrunk, gc finds nothing left to
#     compress or free, every image exports its bytes, fsck is clean.
#  2. A level-1 import's frames are remade at the cold level.
#  3. kill -9 of the daemon at random moments while it compresses: each
#     time the store is clean after recovery and exports the same; in the
#     end the compression completes.
#  4. A damaged record stops the compression (logged with pack and offset)
#     and nothing else: the pack stays, the daemon goes on serving.
. "$(dirname "$0")/../lib/functions.sh"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }

pack_bytes() { json_field "$(st stats --json)" pack_bytes; }
# counted KEY: the daemon's count of KEY under "compress" in its stats file
# is above 0 (the file is rewritten every second: given 3 s)
counted() {
        for _ in $(seq 30); do
                [ "$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["compress"][sys.argv[2]])' "$TMP/stats.json" "$1")" -gt 0 ] && return 0
                sleep 0.1
        done
        return 1
}
# wait_done: the daemon logged the end of a run of compression, or that it
# found nothing to do (2 min at most)
wait_done() {
        for _ in $(seq 1200); do
                grep -q "idle compression: done\|idle compression: nothing left" "$TMP/serve.log" && return 0
                kill -0 "$SERVE" 2>/dev/null || break
                sleep 0.1
        done
        cat "$TMP/serve.log" >&2
        fail "$1: the idle compression did not finish"
}
stop_serve() {
        kill "$SERVE"
        wait "$SERVE" || fail "the daemon did not stop cleanly"
}

text_image "$TMP/a.raw" 40 1
text_image "$TMP/b.raw" 16 2

# 1. deferred records, compressed while serving
st init --zstd-level defer --zstd-cold 3 >/dev/null
st import -q "$TMP/a.raw" a
before=$(pack_bytes)
start_serve --compress-cpu 25 # (slow enough for the commands below to run beside it)
start_checked_reader a "$TMP/a.raw"
RP=$READER_PID
st import -q "$TMP/b.raw" b || fail "import while the daemon compresses"
st clone a c || fail "clone while the daemon compresses"
st snapshot c c-snap || fail "snapshot while the daemon compresses"
st fsck --quiet || fail "fsck while the daemon compresses"
wait_done "deferred records"
# the commands ran while it compressed: the log has them between its start and end
awk '/idle compression: compressing/ { on = 1 } /control: .*fsck/ && on { f = 1 } /idle compression: done/ { exit !f }' "$TMP/serve.log" ||
        { cat "$TMP/serve.log" >&2; fail "fsck did not run while the daemon compressed"; }
touch "$TMP/stop"
wait "$RP" || { cat "$TMP/reader.err" >&2; fail "the reader saw wrong bytes or an error"; }
echo "reads answered meanwhile: $(wc -l <"$TMP/reads")"
counted records || fail "the stats count no compressed record"
counted packs_dropped || fail "no pack was dropped"
st status | grep -q "^idle compression: [1-9][0-9]* records" || { st status >&2; fail "stellar status does not show the idle compression"; }
after=$(pack_bytes)
echo "pack bytes: $before raw (a), $after compressed (a and b)"
# (b, 16 MiB, came in raw too: half of a and b is 0.7 of a)
[ "$after" -lt $((before * 7 / 10)) ] || fail "the store did not shrink to half ($before of a -> $after of a and b)"
out=$(st gc --json)
[ "$(json_field "$out" frames_recompressed)" = 0 ] && [ "$(json_field "$out" packs_rewritten)" = 0 ] ||
        fail "gc found work the idle compression left: $out"
for x in a b c c-snap; do
        f=$TMP/a.raw
        [ $x = b ] && f=$TMP/b.raw
        st export "$x" "$TMP/out" >/dev/null && cmp -s "$TMP/out" "$f" || fail "$x after the idle compression"
done
stop_serve
fsck_clean

# 2. frames made at level 1, remade at the cold level
export STELLAR_STORE=$TMP/s2
st init --zstd-cold 9 >/dev/null
st import -q "$TMP/a.raw" a
before=$(pack_bytes)
start_serve
wait_done "frames below the cold level"
counted records || fail "no frame remade"
after=$(pack_bytes)
echo "level 1: $before bytes; at the cold level: $after"
[ "$after" -lt "$before" ] || fail "frames at the cold level are no smaller ($before -> $after)"
out=$(st gc --json)
[ "$(json_field "$out" frames_recompressed)" = 0 ] || fail "gc found frames left: $out"
stop_serve
st export a "$TMP/out" >/dev/null && cmp -s "$TMP/out" "$TMP/a.raw" || fail "a after remaking its frames"
fsck_clean

# 3. kill -9 while compressing
export STELLAR_STORE=$TMP/s3
st init --zstd-level defer --zstd-cold 3 >/dev/null
st import -q "$TMP/a.raw" a
st import -q "$TMP/b.raw" b
for round in 1 2 3 4 5 6; do
        start_serve --compress-cpu 100
        sleep "0.$((RANDOM % 9 + 1))"
        kill -9 "$SERVE"
        wait "$SERVE" 2>/dev/null || true
        fsck_clean
        for x in a b; do
                st export "$x" "$TMP/out" >/dev/null && cmp -s "$TMP/out" "$TMP/$x.raw" ||
                        fail "round $round: $x after a kill -9 of the compressing daemon"
        done
done
start_serve --compress-cpu 100
wait_done "after the kills"
out=$(st gc --json)
[ "$(json_field "$out" frames_recompressed)" = 0 ] || fail "gc found work left after the kills: $out"
stop_serve
fsck_clean
st export a "$TMP/out" >/dev/null && cmp -s "$TMP/out" "$TMP/a.raw" || fail "a after the kills"

# 4. a damaged record stops the compression, nothing else
export STELLAR_STORE=$TMP/s4
st init --zstd-level defer --zstd-cold 3 >/dev/null
st import -q "$TMP/a.raw" a
p=("$STELLAR_STORE"/packs/*.pack)
# a byte in the first record's payload (pack header 32, record header 56)
printf 'X' | dd of="${p[0]}" bs=1 seek=200 conv=notrunc status=none
start_serve --compress-cpu 100
for _ in $(seq 600); do grep -q "idle compression stopped" "$TMP/serve.log" && break; sleep 0.1; done
grep -q "idle compression stopped" "$TMP/serve.log" || { cat "$TMP/serve.log" >&2; fail "the damage did not stop the compression"; }
grep -q "at packs/${p[0]##*/} offset 32" "$TMP/serve.log" || { cat "$TMP/serve.log" >&2; fail "the log does not name the damaged record"; }
[ -e "${p[0]}" ] || fail "the pack with the damaged record was dropped"
kill -0 "$SERVE" || fail "the daemon died"
/usr/bin/python3 -c '
import nbd, sys
h = nbd.NBD(); h.connect_uri(sys.argv[1])
want = open(sys.argv[2], "rb"); want.seek(1 << 20)
assert h.pread(65536, 1 << 20) == want.read(65536)' "$(U a)" "$TMP/a.raw" || fail "the daemon no longer serves a"
stop_serve
echo PASS
