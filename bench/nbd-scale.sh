#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# NBD serving at scale (part of section 7): a store holding image A and N
# clone volumes (1000; --quick 200), one `stellar serve` on a Unix socket;
# bench/nbd-client.py (the NBD handshake on plain sockets, asyncio) then
#   - samples the daemon's RSS (VmRSS) with no client;
#   - opens 100 connections at once, each to its own volume (NBD_OPT_GO and
#     one 4 KiB read of the same data block, checked against A.raw), holds
#     them, samples RSS; opens the other N - 100 the same way, samples RSS:
#     memory per attached volume = (RSS with N - RSS with none) / N;
#   - closes them, then checks data: 100 concurrent connections, each to its
#     own volume, 64 reads at pseudo-random 4 KiB offsets in [0, 256 MiB)
#     compared with A.raw, then a block of its own written at 1.5 GiB,
#     flushed, and read back after all 100 have written.
# The stats file (--stats) confirms the daemon sees the connections and open
# exports the client holds. One run (deterministic up to allocator noise).
#
# Usage: bench/nbd-scale.sh [--quick]
# Summary line (stdout): nbd-scale: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
n=$(runs 1000 200)

W=$WORK/nbd-scale
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$W"
}
rm -rf "$W"
mkdir -p "$W"
trap cleanup EXIT

# a connection is a socket and a thread in the daemon, and a socket here
ulimit -n $((n * 2 + 256))

s=$W/store
"$STELLAR" --store "$s" init >/dev/null
"$STELLAR" --store "$s" import "$IMG_A" A >/dev/null
log "== nbd-scale: $n clones of A"
t0=$EPOCHREALTIME
for ((i = 0; i < n; i++)); do "$STELLAR" --store "$s" clone A "v$i"; done
clone_s=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
sync
warm "$IMG_A"

"$STELLAR" --store "$s" serve --nbd "unix:$W/sock" --stats "$W/stats.json" 2>"$W/serve.log" &
pid=$!
for _ in $(seq 100); do [ -S "$W/sock" ] && [ -f "$W/stats.json" ] && break; sleep 0.1; done
[ -S "$W/sock" ] || die "stellar serve did not start: $(cat "$W/serve.log")"
wait_idle_compressed "$W/serve.log" "$pid" # (the store as a host has it, before timing)

res=$(python3 "$BENCH_DIR/nbd-client.py" --sock "$W/sock" --pid "$pid" --stats "$W/stats.json" \
      --image "$IMG_A" --prefix v --n "$n" --n-mid 100 --n-check 100) ||
    die "nbd-client failed: $res"
kill "$pid"
wait "$pid" || die "stellar serve exited with an error: $(tail -n 5 "$W/serve.log")"
pid=
log "$res"
echo "$res clones=$n clone_s=$clone_s rev=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
