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
/usr/bin/python3 - "$TMP/img.raw" <<'PY'
import random, sys
r = random.Random(5)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randrange(3, 9))) for _ in range(3000)]
out = bytearray()
while len(out) < 48 << 20:
    out += b" ".join(r.choice(words) for _ in range(r.randrange(8, 20))) + b"\n"
open(sys.argv[1], "wb").write(out[:48 << 20])
PY
st import -q "$TMP/img.raw" img
before=$(json_field "$(st stats --json)" pack_bytes)
start_serve --compress-cpu 0 # (gc, not the idle compression, compresses here)

# the reader: random 4 KiB reads, each checked, a timestamp per answer
/usr/bin/python3 - "$(U img)" "$TMP/img.raw" "$TMP/reads" "$TMP/stop" 2>"$TMP/reader.err" <<'PY' &
import nbd, os, random, sys, time
h = nbd.NBD()
h.connect_uri(sys.argv[1])
want = open(sys.argv[2], "rb")
size = h.get_size()
r = random.Random(9)
with open(sys.argv[3], "w") as log:
    while not os.path.exists(sys.argv[4]):
        off = r.randrange(size // 4096) * 4096
        got = h.pread(4096, off)
        want.seek(off)
        if got != want.read(4096):
            print(f"wrong bytes at {off}", file=sys.stderr)
            sys.exit(1)
        log.write(f"{time.time():.6f}\n")
        log.flush()
PY
RP=$!
_cleanup_pids+=("$RP")
for _ in $(seq 200); do [ -s "$TMP/reads" ] && break; sleep 0.05; done
[ -s "$TMP/reads" ] || { cat "$TMP/reader.err" >&2; fail "the reader did not start"; }

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
