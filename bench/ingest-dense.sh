#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Ingest of dense real data against the backup tools a host would otherwise
# use (issue "Ingest at the speed of the machine"). Inputs:
#   A  bench/lib.sh dense_image: a 3 GiB ext4 image of this machine's shared
#      libraries (/usr/lib/x86_64-linux-gnu, ~1.1 GB of binaries: the hard
#      case for compression), laid out from its start;
#   B  dense_image_b: the same tree without the static libraries, plus
#      /usr/share/locale (an update of A).
# Tools, each into a fresh repository on tmpfs ($STELLAR_BENCH_SHM, default
# /dev/shm), import A, then B into the same repository:
#   stellar   `stellar init` (defaults: frames at zstd 1), `stellar import`,
#             then `stellar gc`, which remakes the frames at the cold level
#             (9), neighbours merged (the deferred work, timed apart)
#   stellar_defer  `stellar init --zstd-level defer`: imports store chunks
#             raw, `stellar gc` compresses them at the cold level (9)
#   stellar_c15  the same with `--zstd-cold 15`: the densest store, for more
#             deferred CPU
#   borg      borg 1.2, `borg init -e none`, `borg create` (defaults: lz4, buzhash)
#   borg4k    the same with `--chunker-params fixed,4096 --sparse`
#   restic    restic 0.14 (repository v2, compression auto; it always encrypts)
#   casync    `casync make` (defaults: 16K:64K:256K, zstd)
# Measured per import: wall seconds, CPU seconds (user+sys), peak RSS
# (/usr/bin/time %M); repository bytes (du -sb) after A and after B (for
# stellar both right after the import and after its gc); then
# export of A (stellar export, borg extract --stdout, restic dump, casync
# extract) into a file on tmpfs. Inputs are warm in the page cache. Runs
# interleave the tools, rotating who goes first; medians.
# The same deferred work done by the daemon instead of gc, as on a host: A
# imported, then `stellar serve` (defaults: --compress-cpu 50) until it logs
# that its idle compression is done: wall seconds, the daemon's CPU seconds,
# the store's bytes after (idle_stellar*, for each configuration; cold 15
# once).
# Then, with the store on disk ($STELLAR_BENCH_WORK): stellar's deferring
# import of A (what it writes is what the disk must take) beside
# `dd oflag=direct` writing as many bytes as stellar stored.
# Ideal growth: bench/ideal-growth.py A B (distinct non-zero 4 KiB blocks of
# B absent from A).
#
# Usage: bench/ingest-dense.sh [--quick]   (--quick: 1 run; full: 3)
# Summary line (stdout): ingest-dense: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool borg borgbackup
need_tool restic restic
need_tool casync casync
A=$(dense_image)
B=$(dense_image_b)
n_runs=$(runs 3 1)
SHM=${STELLAR_BENCH_SHM:-/dev/shm}/stellar-bench-ingest
work_dir ingest-dense
trap 'work_dir_cleanup; rm -rf "$SHM"' EXIT
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
export BORG_BASE_DIR=$SHM/borg-home RESTIC_PASSWORD=bench
tools=(stellar stellar_defer stellar_c15 borg borg4k restic casync)

declare -A v=() # key -> "x x x"
add() { v[$1]+="$2 "; }

# run KEY CMD...: time CMD, adding KEY_s, KEY_cpu, KEY_rss_mb.
run() {
    local key=$1 tf t0 t1; shift
    tf=$(mktemp)
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S %M' -o "$tf" "$@" >"$SHM/out.log" 2>&1 || { cat "$SHM/out.log" >&2; die "failed: $*"; }
    t1=$EPOCHREALTIME
    add "${key}_s" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    add "${key}_cpu" "$(awk 'END { printf "%.3f", $1 + $2 }' "$tf")"
    add "${key}_rss_mb" "$(awk 'END { printf "%.1f", $3 / 1024 }' "$tf")"
    rm -f "$tf"
}
size() { du -sb "$1" | cut -f1; }

one() { # TOOL: a fresh repository, A, B, export of A
    local t=$1 R=$SHM/repo-$1
    rm -rf "$R" "$SHM/borg-home" "$SHM/restic-cache" "$SHM/x.out"
    mkdir -p "$SHM"
    sync
    case $t in
    stellar|stellar_defer|stellar_c15)
        local opt=()
        [ "$t" = stellar_defer ] && opt=(--zstd-level defer)
        [ "$t" = stellar_c15 ] && opt=(--zstd-level defer --zstd-cold 15)
        "$STELLAR" --store "$R" init "${opt[@]}" >/dev/null
        run "${t}_a" "$STELLAR" --store "$R" import -q "$A" a
        add "${t}_import_a" "$(size "$R")"
        run "${t}_gca" "$STELLAR" --store "$R" gc -q
        add "${t}_after_a" "$(size "$R")"
        run "${t}_b" "$STELLAR" --store "$R" import --json "$B" b
        add "${t}_new_b" "$(json_get "$(cat "$SHM/out.log")" new_bytes)"
        add "${t}_import_b" "$(size "$R")"
        run "${t}_gcb" "$STELLAR" --store "$R" gc -q
        add "${t}_after_b" "$(size "$R")"
        run "${t}_export" "$STELLAR" --store "$R" export a "$SHM/x.out" ;;
    borg|borg4k)
        local opt=()
        [ "$t" = borg4k ] && opt=(--chunker-params fixed,4096 --sparse)
        borg init -e none "$R" >/dev/null 2>&1
        run "${t}_a" borg create "${opt[@]}" "$R::a" "$A"
        add "${t}_after_a" "$(size "$R")"
        run "${t}_b" borg create "${opt[@]}" "$R::b" "$B"
        add "${t}_after_b" "$(size "$R")"
        run "${t}_export" sh -c 'borg extract --stdout "$1::a" >"$2"' sh "$R" "$SHM/x.out" ;;
    restic)
        restic -r "$R" init >/dev/null 2>&1
        local rc=(--cache-dir "$SHM/restic-cache")
        run "${t}_a" restic -r "$R" "${rc[@]}" backup -q "$A"
        add "${t}_after_a" "$(size "$R")"
        run "${t}_b" restic -r "$R" "${rc[@]}" backup -q "$B"
        add "${t}_after_b" "$(size "$R")"
        local snap
        snap=$(restic -r "$R" "${rc[@]}" snapshots --json --path "$A" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["short_id"])')
        run "${t}_export" sh -c 'restic -r "$1" --cache-dir "$2" dump "$3" "$4" >"$5"' sh \
            "$R" "$SHM/restic-cache" "$snap" "$A" "$SHM/x.out" ;;
    casync)
        mkdir -p "$R"
        run "${t}_a" casync make --store="$R/store" "$R/a.caibx" "$A"
        add "${t}_after_a" "$(size "$R")"
        run "${t}_b" casync make --store="$R/store" "$R/b.caibx" "$B"
        add "${t}_after_b" "$(size "$R")"
        run "${t}_export" casync extract --store="$R/store" "$R/a.caibx" "$SHM/x.out" ;;
    esac
    [ "$(stat -c %s "$SHM/x.out")" = "$(stat -c %s "$A")" ] || die "$t exported A at another size"
    rm -rf "$R" "$SHM/x.out"
}

log "ingest-dense: A=$A ($(fsize "$A") bytes), B=$B; warming..."
mkdir -p "$SHM"
warm "$A" "$B"
data_a=$(python3 - "$A" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); end = os.fstat(fd).st_size; off = data = 0
while off < end:
    try: d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError: break
    h = os.lseek(fd, d, os.SEEK_HOLE); data += h - d; off = h
print(data)
PY
)
# (one stellar import first: the bytes of data its chunks hold, the measure of throughput)
"$STELLAR" --store "$SHM/probe" init >/dev/null
probe=$("$STELLAR" --store "$SHM/probe" import --json "$A" a)
rm -rf "$SHM/probe"
chunk_data=$(json_get "$probe" data_bytes)
log "A: $data_a allocated bytes, $chunk_data bytes of non-zero data"
ideal=$("$BENCH_DIR/ideal-growth.py" "$A" "$B" | sed -n 's/.*ideal_new_bytes=\([0-9]*\).*/\1/p')

for r in $(seq "$n_runs"); do
    k=$(( (r - 1) % ${#tools[@]} ))
    order=("${tools[@]:k}" "${tools[@]:0:k}")
    for t in "${order[@]}"; do
        log "run $r: $t"
        warm "$A" "$B"
        one "$t"
    done
done

# the deferred work done by the daemon at idle
idle() { # TOOL
    local t=$1 R=$SHM/repo-idle opt=()
    [ "$t" = stellar_defer ] && opt=(--zstd-level defer)
    [ "$t" = stellar_c15 ] && opt=(--zstd-level defer --zstd-cold 15)
    rm -rf "$R"
    "$STELLAR" --store "$R" init "${opt[@]}" >/dev/null
    "$STELLAR" --store "$R" import -q "$A" a
    sync
    local t0=$EPOCHREALTIME pid
    "$STELLAR" --store "$R" serve --nbd "unix:$SHM/idle.sock" 2>"$SHM/idle.log" &
    pid=$!
    wait_idle_compressed "$SHM/idle.log" "$pid"
    local t1=$EPOCHREALTIME
    add "idle_${t}_cpu" "$(cpu_s "$pid")"
    kill "$pid"
    wait "$pid" || die "the daemon did not stop cleanly"
    add "idle_${t}_s" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')"
    add "idle_${t}_after_a" "$(size "$R")"
    rm -rf "$R"
}
for r in $(seq "$n_runs"); do
    for t in stellar stellar_defer; do
        log "run $r: $t, its deferred work done by the daemon at idle"
        idle "$t"
    done
done
log "stellar_c15, its deferred work done by the daemon at idle (once: minutes at half a core)"
idle stellar_c15

# the store on disk, beside what the disk can write
D=$W/disk
for r in $(seq "$n_runs"); do
    rm -rf "$D"
    "$STELLAR" --store "$D" init --zstd-level defer >/dev/null
    sync
    run disk_stellar "$STELLAR" --store "$D" import -q "$A" a
    stored=$(size "$D")
    rm -rf "$D"
    sync
    run disk_dd dd if=/dev/zero of="$W/dd.out" bs=4M count=$(( (stored + (4 << 20) - 1) >> 22 )) oflag=direct
    rm -f "$W/dd.out"
done
add disk_stored "$stored"

med() { median ${v[$1]}; }
out="ingest-dense: date=$(date -u +%Y-%m-%dT%H:%MZ) rev=$(git -C "$SRC_DIR" rev-parse --short HEAD) build=$(bin_build) runs=$n_runs"
out+=" a_bytes=$(fsize "$A") a_allocated=$data_a a_data=$chunk_data ideal_growth=$ideal"
for t in "${tools[@]}"; do
    for m in a_s a_cpu a_rss_mb b_s b_cpu b_rss_mb after_a after_b export_s export_cpu; do
        out+=" ${t}_$m=$(med "${t}_$m")"
    done
    case $t in stellar*)
        for m in import_a import_b gca_s gca_cpu gca_rss_mb gcb_s gcb_cpu new_b; do
            out+=" ${t}_$m=$(med "${t}_$m")"
        done
        out+=" ${t}_total_cpu_a=$(calc "$(med "${t}_a_cpu") + $(med "${t}_gca_cpu")")"
        out+=" ${t}_raw_growth_vs_ideal=$(CALC_FMT=%.3f calc "$(med "${t}_new_b") / $ideal")" ;;
    esac
    g=$(( $(med "${t}_after_b" | cut -d. -f1) - $(med "${t}_after_a" | cut -d. -f1) ))
    out+=" ${t}_growth=$g ${t}_a_mb_s=$(calc "$chunk_data / $(med "${t}_a_s") / 1e6")"
done
for s in stellar stellar_defer stellar_c15; do
    st_s=$(med "${s}_a_s")
    for t in borg borg4k restic casync; do
        out+=" ${s}_speed_vs_$t=$(calc "$(med "${t}_a_s") / $st_s")"
        out+=" ${s}_size_vs_$t=$(CALC_FMT=%.3f calc "$(med "${s}_after_a") / $(med "${t}_after_a")")"
        out+=" ${s}_growth_vs_$t=$(CALC_FMT=%.3f calc "($(med "${s}_after_b") - $(med "${s}_after_a")) / ($(med "${t}_after_b") - $(med "${t}_after_a"))")"
    done
done
for t in stellar stellar_defer stellar_c15; do
    out+=" idle_${t}_s=$(med "idle_${t}_s") idle_${t}_cpu=$(med "idle_${t}_cpu") idle_${t}_after_a=$(med "idle_${t}_after_a")"
    out+=" idle_${t}_size_vs_restic=$(CALC_FMT=%.3f calc "$(med "idle_${t}_after_a") / $(med restic_after_a)")"
done
dd_mb_s=$(calc "$(med disk_stored) / $(med disk_dd_s) / 1e6")
out+=" disk_stellar_s=$(med disk_stellar_s) disk_stored=$(med disk_stored) disk_dd_s=$(med disk_dd_s) disk_dd_mb_s=$dd_mb_s"
out+=" disk_stellar_data_mb_s=$(calc "$chunk_data / $(med disk_stellar_s) / 1e6") disk_stellar_write_mb_s=$(calc "$(med disk_stored) / $(med disk_stellar_s) / 1e6")"
out+=" disk_write_vs_dd=$(calc "$(med disk_dd_s) / $(med disk_stellar_s)")"
echo "$out"
