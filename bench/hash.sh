#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Hash throughput: `stellar hash FILE` vs `b3sum --no-mmap --num-threads 1 FILE`
# on a 1 GiB pseudo-random file held in the page cache (warm, read twice before
# timing; no cache dropping). Both read() the file and hash on one thread.
# Runs are interleaved (ours/peer, alternating who goes first); the digests are
# checked equal once. Goal: stellar >= 0.95x b3sum.
#
# Usage: bench/hash.sh [--quick]      (--quick: 256 MiB, 3 runs; full: 1 GiB, 9 runs)
# Summary line (stdout):
#   hash: bytes=N runs=N stellar_mb_s=X b3sum_mb_s=X ratio=X goal=0.95 met=yes|no
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool b3sum b3sum

mib=$( [ "$QUICK" = 1 ] && echo 256 || echo 1024 )
n=$(runs 9 3)
f=$(random_file "$mib")
bytes=$(fsize "$f")
warm "$f"; warm "$f"

ours=$("$STELLAR" hash "$f" | cut -d' ' -f1)
peer=$(b3sum --no-mmap --num-threads 1 "$f" | cut -d' ' -f1)
[ "$ours" = "$peer" ] || die "digest mismatch: stellar $ours, b3sum $peer"

s_mbs=() b_mbs=()
for ((i = 0; i < n; i++)); do
    if ((i % 2 == 0)); then
        timed ts "$STELLAR" hash "$f"
        timed tb b3sum --no-mmap --num-threads 1 "$f"
    else
        timed tb b3sum --no-mmap --num-threads 1 "$f"
        timed ts "$STELLAR" hash "$f"
    fi
    s_mbs+=("$(calc "$bytes / ${ts%% *} / 1e6")")
    b_mbs+=("$(calc "$bytes / ${tb%% *} / 1e6")")
    log "hash run $((i + 1))/$n: stellar ${s_mbs[-1]} MB/s, b3sum ${b_mbs[-1]} MB/s"
done
sm=$(median "${s_mbs[@]}")
bm=$(median "${b_mbs[@]}")
ratio=$(CALC_FMT=%.3f calc "$sm / $bm")
met=$(awk -v r="$ratio" 'BEGIN { print (r >= 0.95) ? "yes" : "no" }')
echo "hash: bytes=$bytes runs=$n stellar_mb_s=$sm b3sum_mb_s=$bm ratio=$ratio goal=0.95 met=$met"
