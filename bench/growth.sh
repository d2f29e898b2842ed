#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Store growth when image B (A + python3 + openssh-server) is imported into a
# store that already holds image A: how close content-defined chunking gets
# to the ideal, and what each average chunk size costs in index RAM.
#   ideal   bench/ideal-growth.py A B: bytes of distinct non-zero 4 KiB blocks
#           of B found nowhere in A (the floor for any 4K-aligned store).
#   stellar image mode, `init --avg` 4K (if accepted), 8K, 16K, 32K (min 4K,
#           max 4*avg): import A, import B (--json: new_bytes = raw bytes of
#           new chunks, new_stored_bytes = bytes written after zstd), then
#           `stats --json`: chunks, index_ram_bytes; chunks*40 is the
#           steady-state index estimate (36-byte entry + 4-byte slot at 3/4 load).
#   casync  `casync make` of A then of B into the same store, at its defaults
#           (16K:64K:256K, SHA512-256, zstd) and at --chunk-size=16384
#           (4K:16K:64K). Growth = du -sb of the store after minus before
#           (includes new 4 KiB chunk directories). casync has no
#           uncompressed mode (--compression takes zstd, xz or gzip only), so
#           its raw growth is measured by decompressing the chunk files that B
#           added (zstd -dc | wc -c).
# Ratios: raw growth / ideal. Goal for stellar: <= 1.15; casync's reference
# ratio is 1.46. Everything here is deterministic, so each configuration runs
# once (no timing). Stores live in /dev/shm.
# The recommended default is the largest avg (smallest index) meeting the goal.
#
# Usage: bench/growth.sh [--quick]    (--quick: skips the casync 16K variant)
# Summary line (stdout):
#   growth: ideal_new_bytes=N st<K>k_{new_bytes,new_stored_bytes,chunks,index_ram_bytes,
#           index_est_bytes,ratio,met} casync<V>_{growth_bytes,chunk_bytes,raw_bytes,chunks,ratio}
#           best_avg=<K>K|none
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
need_tool casync casync
need_tool zstd zstd

W=${STELLAR_BENCH_SHM:-/dev/shm}/stellar-bench-growth
rm -rf "$W"
mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
warm "$IMG_A" "$IMG_B"

log "ideal growth (ideal-growth.py)..."
ideal_out=$(python3 "$BENCH_DIR/ideal-growth.py" "$IMG_A" "$IMG_B")
ideal=$(sed -n 's/.*ideal_new_bytes=\([0-9]*\).*/\1/p' <<<"$ideal_out")
if [ -z "$ideal" ] || [ "$ideal" -le 0 ]; then die "ideal-growth.py: $ideal_out"; fi
line="growth: ideal_new_bytes=$ideal ideal_new_blocks=$(sed -n 's/.*new_blocks=\([0-9]*\).*/\1/p' <<<"$ideal_out")"

best=none
for k in 4 8 16 32; do
    s=$W/st-$k
    if ! "$STELLAR" --store "$s" init --mode image --avg "${k}K" >/dev/null 2>&1; then
        log "stellar init --avg ${k}K rejected; skipped"
        line+=" st${k}k=rejected"
        continue
    fi
    "$STELLAR" --store "$s" import --json "$IMG_A" A >/dev/null
    jb=$("$STELLAR" --store "$s" import --json "$IMG_B" B)
    js=$("$STELLAR" --store "$s" stats --json)
    nb=$(json_get "$jb" new_bytes)
    ch=$(json_get "$js" chunks)
    r=$(CALC_FMT=%.3f calc "$nb / $ideal")
    met=$(awk -v r="$r" 'BEGIN { print (r <= 1.15) ? "yes" : "no" }')
    [ "$met" = yes ] && best=${k}K
    line+=" st${k}k_new_bytes=$nb st${k}k_new_stored_bytes=$(json_get "$jb" new_stored_bytes)"
    line+=" st${k}k_b_chunks=$(json_get "$jb" chunks) st${k}k_chunks=$ch"
    line+=" st${k}k_stored_bytes=$(json_get "$js" stored_bytes)"
    line+=" st${k}k_index_ram_bytes=$(json_get "$js" index_ram_bytes) st${k}k_index_est_bytes=$((ch * 40))"
    line+=" st${k}k_ratio=$r st${k}k_met=$met"
    log "stellar avg ${k}K: new_bytes $nb (x$r of ideal), $ch chunks"
    rm -rf "$s"
done

variants=(default)
[ "$QUICK" = 1 ] || variants+=(16k)
for v in "${variants[@]}"; do
    c=$W/ca-$v
    mkdir -p "$c"
    opt=()
    [ "$v" = 16k ] && opt=(--chunk-size=16384)
    casync make "${opt[@]}" --store="$c/store" "$c/a.caibx" "$IMG_A" >/dev/null
    before=$(du -sb "$c/store" | cut -f1)
    find "$c/store" -type f -name '*.cacnk' | sort >"$c/before.lst"
    casync make "${opt[@]}" --store="$c/store" "$c/b.caibx" "$IMG_B" >/dev/null
    after=$(du -sb "$c/store" | cut -f1)
    find "$c/store" -type f -name '*.cacnk' | sort >"$c/after.lst"
    comm -13 "$c/before.lst" "$c/after.lst" >"$c/new.lst"
    chunk_bytes=$(xargs -r -d '\n' stat -c %s <"$c/new.lst" | awk '{ s += $1 } END { print s + 0 }')
    raw=$(xargs -r -d '\n' cat <"$c/new.lst" | zstd -dc | wc -c)
    r=$(CALC_FMT=%.3f calc "$raw / $ideal")
    line+=" casync${v}_growth_bytes=$((after - before)) casync${v}_chunk_bytes=$chunk_bytes"
    line+=" casync${v}_raw_bytes=$raw casync${v}_new_chunks=$(wc -l <"$c/new.lst")"
    line+=" casync${v}_chunks=$(wc -l <"$c/after.lst") casync${v}_ratio=$r"
    log "casync $v: growth $((after - before)) (du), raw $raw (x$r of ideal)"
    rm -rf "$c"
done
echo "$line best_avg=$best"
