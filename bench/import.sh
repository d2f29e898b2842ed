#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Import and export throughput, stellar vs casync, on two inputs:
#   rand  1 GiB pseudo-random data (incompressible, no dedup)
#   a     A.raw, a 2 GiB sparse ext4 Debian root (~180 MiB of data)
# Import: `stellar --store S import --json IMG NAME` into a fresh store
# (`stellar init` at its defaults, image mode; the summary records them as
# st_avg, st_min, st_max, st_zstd; init untimed) vs
# `casync make --store=C C/index.caibx IMG` into a fresh store (casync's
# defaults: blob index, chunk size 16K:64K:256K, SHA512-256, zstd). stellar
# fsyncs its packs before it returns (inside its time); casync does not.
# Export: `stellar export NAME OUT` vs `casync extract --store=C C/index.caibx OUT`
# vs `cp --sparse=always IMG OUT`, from the stores of the last import run.
# Every output is compared with the input (cmp, untimed) once.
# Throughput = apparent image bytes / wall seconds. Inputs are warm in the
# page cache (read before timing); before every timed command the previous
# output is removed and `sync` (untimed) writes back dirty pages, so each
# command starts with no pending writeback. No cache dropping.
# Everything is measured twice, with stores and outputs
#   tmpfs  on /dev/shm: the software alone (fsync is free there), the fair
#          comparison and the one the goals are judged on;
#   disk   on $STELLAR_BENCH_WORK (the VM's disk): includes stellar's fsync.
# Runs are interleaved, alternating who goes first; medians.
# Goals: import >= 10x casync on rand, >= 30x on a.
#
# Usage: bench/import.sh [--quick]    (--quick: 256 MiB random, 1 run; full: 1 GiB, 5 runs)
# Summary line (stdout): `import: runs=N rand_bytes=N a_bytes=N st_avg=N
# st_min=N st_max=N st_zstd=N` then, for
# P = L_D (L in tmpfs, disk; D in rand, a):
#   P_stellar_mb_s P_casync_mb_s P_ratio P_goal P_met P_{stellar,casync}_{s,cpu_s}
#   P_stellar_store_bytes P_stellar_new_stored_bytes P_casync_store_bytes
#   P_casync_chunk_file_bytes P_export_{stellar,casync,cp}_mb_s
#   P_export_vs_casync P_export_vs_cp P_export_{stellar,casync,cp}_cpu_s
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
need_tool casync casync

mib=$( [ "$QUICK" = 1 ] && echo 256 || echo 1024 )
n=$(runs 5 1)
declare -A file=([rand]=$(random_file "$mib") [a]=$IMG_A) goal=([rand]=10 [a]=30)
SHM=${STELLAR_BENCH_SHM:-/dev/shm}
W=
trap 'rm -rf "$SHM/stellar-bench-import" "$WORK/import"' EXIT

declare -A t=()   # key -> "wall wall ..." ; key_cpu -> "cpu cpu ..."
add_time() { t[$1]+="${2%% *} "; t[$1_cpu]+="${2##* } "; }

st_import() {  # D
    local s=$W/st-$1 x
    rm -rf "$s"
    "$STELLAR" --store "$s" init >/dev/null
    sync
    TIMED_OUT=$W/st-$1.json timed x "$STELLAR" --store "$s" import --json "${file[$1]}" img
    add_time "$1_st" "$x"
}
ca_import() {  # D
    local c=$W/ca-$1 x
    rm -rf "$c"
    mkdir -p "$c"
    sync
    timed x casync make --store="$c/store" "$c/index.caibx" "${file[$1]}"
    add_time "$1_ca" "$x"
}
ex_st() { local x; rm -f "$W/out.img"; sync; timed x "$STELLAR" --store "$W/st-$1" export img "$W/out.img"; add_time "$1_xst" "$x"; }
ex_ca() {
    local x; rm -f "$W/out.img"; sync
    timed x casync extract --store="$W/ca-$1/store" "$W/ca-$1/index.caibx" "$W/out.img"
    add_time "$1_xca" "$x"
}
ex_cp() { local x; rm -f "$W/out.img"; sync; timed x cp --sparse=always "${file[$1]}" "$W/out.img"; add_time "$1_xcp" "$x"; }
check() { cmp "${file[$1]}" "$W/out.img" || die "$2 export of $1 differs from the input"; }
mbs() {  # KEY D -> MB/s from the median wall time
    # shellcheck disable=SC2086
    calc "$(fsize "${file[$2]}") / $(median ${t[$1]}) / 1e6"
}

line="import: runs=$n rand_bytes=$(fsize "${file[rand]}") a_bytes=$(fsize "$IMG_A")"
line+=" $(stellar_defaults --mode image | sed 's/\([a-z]*\)=/st_\1=/g')"
for loc in tmpfs disk; do
    case $loc in
        tmpfs) W=$SHM/stellar-bench-import ;;
        disk) W=$WORK/import ;;
    esac
    rm -rf "$W"
    mkdir -p "$W"
    t=()
    for ((i = 0; i < n; i++)); do
        for d in rand a; do
            warm "${file[$d]}"
            if ((i % 2 == 0)); then st_import "$d"; ca_import "$d"; else ca_import "$d"; st_import "$d"; fi
            log "[$loc] import $d run $((i + 1))/$n: stellar $(echo "${t[${d}_st]}" | awk '{ print $NF }') s," \
                "casync $(echo "${t[${d}_ca]}" | awk '{ print $NF }') s"
        done
    done

    # Export from the stores left by the last import run.
    for d in rand a; do
        warm "${file[$d]}"
        ex_st "$d"; check "$d" stellar
        ex_ca "$d"; check "$d" casync
        ex_cp "$d"; check "$d" cp
        for ((i = 1; i < n; i++)); do
            case $((i % 3)) in
                0) ex_st "$d"; ex_ca "$d"; ex_cp "$d" ;;
                1) ex_ca "$d"; ex_cp "$d"; ex_st "$d" ;;
                2) ex_cp "$d"; ex_st "$d"; ex_ca "$d" ;;
            esac
        done
        log "[$loc] export $d: stellar ${t[${d}_xst]}s, casync ${t[${d}_xca]}s, cp ${t[${d}_xcp]}s"
    done
    rm -f "$W/out.img"

    for d in rand a; do
        p=${loc}_$d
        sm=$(mbs "${d}_st" "$d"); cm=$(mbs "${d}_ca" "$d")
        r=$(calc "$sm / $cm")
        j=$(cat "$W/st-$d.json")
        line+=" ${p}_stellar_mb_s=$sm ${p}_casync_mb_s=$cm ${p}_ratio=$r ${p}_goal=${goal[$d]}"
        line+=" ${p}_met=$(awk -v r="$r" -v g="${goal[$d]}" 'BEGIN { print (r >= g) ? "yes" : "no" }')"
        # shellcheck disable=SC2086
        line+=" ${p}_stellar_cpu_s=$(median ${t[${d}_st_cpu]}) ${p}_casync_cpu_s=$(median ${t[${d}_ca_cpu]})"
        # shellcheck disable=SC2086
        line+=" ${p}_stellar_s=$(median ${t[${d}_st]}) ${p}_casync_s=$(median ${t[${d}_ca]})"
        line+=" ${p}_stellar_store_bytes=$(du -sb "$W/st-$d" | cut -f1)"
        line+=" ${p}_stellar_new_stored_bytes=$(json_get "$j" new_stored_bytes)"
        line+=" ${p}_casync_store_bytes=$(du -sb "$W/ca-$d" | cut -f1)"
        line+=" ${p}_casync_chunk_file_bytes=$(find "$W/ca-$d/store" -type f -name '*.cacnk' -printf '%s\n' |
                                              awk '{ s += $1 } END { print s + 0 }')"
        xs=$(mbs "${d}_xst" "$d"); xc=$(mbs "${d}_xca" "$d"); xp=$(mbs "${d}_xcp" "$d")
        line+=" ${p}_export_stellar_mb_s=$xs ${p}_export_casync_mb_s=$xc ${p}_export_cp_mb_s=$xp"
        line+=" ${p}_export_vs_casync=$(calc "$xs / $xc") ${p}_export_vs_cp=$(calc "$xs / $xp")"
        # shellcheck disable=SC2086
        line+=" ${p}_export_stellar_cpu_s=$(median ${t[${d}_xst_cpu]})"
        # shellcheck disable=SC2086
        line+=" ${p}_export_casync_cpu_s=$(median ${t[${d}_xca_cpu]}) ${p}_export_cp_cpu_s=$(median ${t[${d}_xcp_cpu]})"
    done
    rm -rf "$W"
done
echo "$line"
