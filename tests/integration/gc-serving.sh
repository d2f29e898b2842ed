#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# gc's long part (copying and compressing records into new packs) holds no
# lock that readers wait on: while the daemon runs a gc that compresses a
# deferring import's chunks, an NBD reader of that image keeps getting
# answers, and every answer is the image's bytes. Before and after, the
# image reads the same; fsck is clean; the store has shrunk.
. "$(dirname "$0")/../lib/functions.sh"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }

st init --zstd-level defer >/dev/null
# 48 MiB that compresses (so gc has work: about a second, more under ASan)
text_image "$TMP/img.raw" 48 5
st import -q "$TMP/img.raw" img
before=$(json_field "$(st stats --json)" pack_bytes)
start_serve --compress-cpu 0 # (gc, not the idle compression, compresses here)

# the reader: random 4 KiB reads, each checked, a timestamp per answer
start_checked_reader img "$TMP/img.raw"
RP=$READER_PID

t0=$(date +%s.%N)
out=$(st gc --json) || fail "gc while serving"
t1=$(date +%s.%N)
touch "$TMP/stop"
wait "$RP" || { cat "$TMP/reader.err" >&2; fail "the reader saw wrong bytes or an error"; }

[ "$(json_field "$out" frames_recompressed)" -gt 0 ] || fail "gc compressed nothing: $out"
# answers in the middle of the gc (its first and last fifth may hold the lock)
mid=$(awk -v a="$t0" -v b="$t1" '{ if ($1 > a + (b - a) * 0.2 && $1 < b - (b - a) * 0.2) n++ } END { print n + 0 }' "$TMP/reads")
echo "gc took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s; $mid reads answered in its middle three fifths"
[ "$mid" -gt 0 ] || fail "no read was answered while gc ran: readers waited for it"

after=$(json_field "$(st stats --json)" pack_bytes)
[ "$after" -lt $((before / 2)) ] || fail "the store did not shrink ($before -> $after)"
st export img "$TMP/out" >/dev/null && cmp -s "$TMP/out" "$TMP/img.raw" || fail "the image after gc"
fsck_clean
echo PASS
