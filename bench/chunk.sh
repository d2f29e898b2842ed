#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Chunking throughput per core: `stellar chunk --json` (file read into memory
# first, then timed chunking on one core; the tool's own mb_per_s) in image
# and stream mode, on 1 GiB pseudo-random data and on image A.raw (2 GiB
# sparse ext4, ~180 MiB of data; the rate counts all 2 GiB, zero blocks
# included, as the tool does: on A it mostly measures zero-block detection).
# Peer: single-thread BLAKE3, `b3sum --no-mmap --num-threads 1` on the same
# file from the page cache, i.e. the pipeline stage that follows chunking;
# ratio = chunk MB/s / hash MB/s (how many times faster than hashing).
# Without --avg, `stellar chunk` uses the store defaults (recorded in the
# summary as img_avg/img_min/img_max, stream_avg/...). Then A.raw in image mode
# at --avg 4K, 8K, 16K, 32K (min 4K, max 4*avg): chunk count, mean chunk size
# (mean / nominal avg is the ratio reported). All inputs warm in page cache.
# Runs interleaved; medians.
#
# Usage: bench/chunk.sh [--quick]      (--quick: 256 MiB random, 3 runs; full: 1 GiB, 7 runs)
# Summary line (stdout), keys <data>_<mode>_{mb_s,vs_b3sum,chunks,avg},
# b3sum_<data>_mb_s, a_avg<N>k_{chunks,avg,avg_vs_nominal,mb_s}:
#   chunk: rand_image_mb_s=X ... a_avg16k_chunks=N a_avg16k_avg=N ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
need_tool b3sum b3sum

mib=$( [ "$QUICK" = 1 ] && echo 256 || echo 1024 )
n=$(runs 7 3)
declare -A file=([rand]=$(random_file "$mib") [a]=$IMG_A)
warm "${file[rand]}" "${file[a]}"

declare -A mbs=() hmbs=() last=()
# one_chunk KEY FILE ARGS...: run stellar chunk once, append to mbs[KEY]
one_chunk() {
    local key=$1 f=$2; shift 2
    local j
    j=$("$STELLAR" chunk "$@" --json "$f")
    last[$key]=$j
    mbs[$key]+="$(json_get "$j" mb_per_s) "
}
one_hash() {
    local key=$1 f=$2 t
    timed t b3sum --no-mmap --num-threads 1 "$f"
    hmbs[$key]+="$(calc "$(fsize "$f") / ${t%% *} / 1e6") "
}

for ((i = 0; i < n; i++)); do
    for d in rand a; do
        if ((i % 2 == 0)); then
            one_chunk "${d}_image" "${file[$d]}" --mode image
            one_chunk "${d}_stream" "${file[$d]}" --mode stream
            one_hash "$d" "${file[$d]}"
        else
            one_hash "$d" "${file[$d]}"
            one_chunk "${d}_stream" "${file[$d]}" --mode stream
            one_chunk "${d}_image" "${file[$d]}" --mode image
        fi
    done
    for k in 4 8 16 32; do
        one_chunk "a_avg${k}k" "$IMG_A" --mode image --avg "${k}K"
    done
    log "chunk run $((i + 1))/$n: rand image $(json_get "${last[rand_image]}" mb_per_s)," \
        "stream $(json_get "${last[rand_stream]}" mb_per_s) MB/s"
done

out="chunk: bytes_rand=$(fsize "${file[rand]}") bytes_a=$(fsize "$IMG_A") runs=$n"
out+=" $(stellar_defaults --mode image | sed 's/\([a-z]*\)=/img_\1=/g')"
out+=" $(stellar_defaults --mode stream | sed 's/\([a-z]*\)=/stream_\1=/g')"
for d in rand a; do
    # shellcheck disable=SC2086
    h=$(median ${hmbs[$d]})
    out+=" b3sum_${d}_mb_s=$h"
    for m in image stream; do
        # shellcheck disable=SC2086
        v=$(median ${mbs[${d}_$m]})
        out+=" ${d}_${m}_mb_s=$v ${d}_${m}_vs_b3sum=$(CALC_FMT=%.3f calc "$v / $h")"
        out+=" ${d}_${m}_chunks=$(json_get "${last[${d}_$m]}" chunks)"
        out+=" ${d}_${m}_avg=$(json_get "${last[${d}_$m]}" avg_chunk)"
    done
done
for k in 4 8 16 32; do
    j=${last[a_avg${k}k]}
    out+=" a_avg${k}k_chunks=$(json_get "$j" chunks) a_avg${k}k_avg=$(json_get "$j" avg_chunk)"
    out+=" a_avg${k}k_avg_vs_nominal=$(CALC_FMT=%.3f calc "$(json_get "$j" avg_chunk) / ($k * 1024)")"
    # shellcheck disable=SC2086
    out+=" a_avg${k}k_mb_s=$(median ${mbs[a_avg${k}k]})"
done
echo "$out"
