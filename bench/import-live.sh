#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Import while serving (issue "One daemon owns the store"): the same import
# offline (no daemon) and while `stellar serve` owns the store (the import
# goes through its control socket and runs in the daemon) and serves 4 KiB
# random reads at queue depth 16 (fio's nbd engine) of another image of the
# store all along. Imported: the first GiB of bench/lib.sh's dense_image
# (an ext4 of this machine's libraries, nearly all data), from page cache,
# into a store that holds only the image read (512 MiB of random data);
# after each run the new name is removed and gc'd, so every import writes
# all of its chunks. Reported: the import's wall time both ways and their
# ratio (offline / live: the live import's share of the offline
# throughput), and the reads' IOPS alone and during the live import.
# The reads run twice: as fast as fio can drive them (on a machine of few
# cores they and the import then share the CPUs: the ratio says how they
# share them), and paced at PACED_IOPS (10,000: a busy guest's random reads,
# 40 MB/s), where what the import loses is what serving costs it.
# The peer: the same offline import while nbdkit's file plugin serves the
# same reads (full speed and paced) of the other image's raw file: what
# serving those reads costs an import on this machine whoever serves them.
# RUNS interleaved runs (3; --quick 1), rotating which goes first; medians.
#
# Usage: bench/import-live.sh [--quick]
# Summary line (stdout): import-live: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool fio fio
need_tool nbdkit nbdkit
n_runs=$(runs 3 1)
dense=$(dense_image)
src="$DATA/dense-1g.raw"
[ -f "$src" ] || head -c $((1 << 30)) "$dense" >"$src"
readimg=$(random_file 512)
W=$WORK/import-live
S="$W/store"
pid='' kpid=''
cleanup() {
    [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
    [ -z "$kpid" ] || { kill "$kpid" 2>/dev/null || true; wait "$kpid" 2>/dev/null || true; }
    rm -rf "$W"
}
rm -rf "$W"
mkdir -p "$W"
trap cleanup EXIT
st() { "$STELLAR" --store "$S" "$@"; }
st init >/dev/null
st import -q "$readimg" img
warm "$src" "$readimg"

serve_up() {
    "$STELLAR" --store "$S" serve --nbd "unix:$W/n.sock" 2>>"$W/serve.log" &
    pid=$!
    for _ in $(seq 400); do [ -S "$W/n.sock" ] && [ -S "$S/control.sock" ] && return 0; sleep 0.05; done
    die "serve did not start"
}
serve_down() {
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=''
}
# the peer, on the raw file of img
nbdkit -f -U "$W/k.sock" -r file "$readimg" 2>"$W/nbdkit.log" &
kpid=$!
for _ in $(seq 400); do [ -S "$W/k.sock" ] && break; sleep 0.05; done
[ -S "$W/k.sock" ] || die "nbdkit did not start"
# reads SECONDS OUT: fio qd16 random 4 KiB reads of img
reads() {
    fio --name=r --ioengine=nbd --uri="nbd+unix:///img?socket=$W/n.sock" --rw=randread --bs=4k \
        --size=512m --iodepth=16 --time_based --runtime="$1" --output-format=json --output="$2" \
        >/dev/null 2>&1
}
# (fio stopped by SIGINT may put a line before its JSON)
iops() { python3 -c 'import json,sys; t=open(sys.argv[1]).read(); print("%.0f" % json.loads(t[t.index("{"):])["jobs"][0]["read"]["iops"])' "$1"; }
import_once() { # prints wall seconds
    local t
    timed t "$STELLAR" --store "$S" import -q "$src" new
    echo "${t%% *}"
}
reset() { st rm new >/dev/null; st gc --quiet; }
PACED_IOPS=${PACED_IOPS:-10000}

off=() live=() riops=() base=() paced=() piops=() kfull=() kfiops=() kpaced=() kpiops=()
all_sides=(off live paced kfull kpaced)
for r in $(seq "$n_runs"); do
    # each run starts one further along the sides
    order=()
    for i in 0 1 2 3 4; do order+=("${all_sides[$(( (r - 1 + i) % 5 ))]}"); done
    for side in "${order[@]}"; do
        if [ $side = off ]; then
            off+=("$(import_once)")
            reset
            continue
        fi
        uri="nbd+unix:///?socket=$W/k.sock"
        case $side in live | paced) serve_up; uri="nbd+unix:///img?socket=$W/n.sock" ;; esac
        rate=()
        case $side in
        live)
            reads 5 "$W/base.json"
            base+=("$(iops "$W/base.json")")
            ;;
        paced | kpaced) rate=(--rate_iops="$PACED_IOPS") ;;
        esac
        # fio itself in the background (its pid, to stop it with SIGINT: it
        # then writes its results for the time it ran)
        fio --name=r --ioengine=nbd --uri="$uri" --rw=randread \
            --bs=4k --size=512m --iodepth=16 --time_based --runtime=300 --output-format=json \
            "${rate[@]}" --output="$W/during.json" >/dev/null 2>&1 &
        fp=$!
        sleep 1
        t=$(import_once)
        kill -INT $fp 2>/dev/null || true
        wait $fp || true
        n=$(iops "$W/during.json")
        case $side in
        live) live+=("$t") riops+=("$n") ;;
        paced) paced+=("$t") piops+=("$n") ;;
        kfull) kfull+=("$t") kfiops+=("$n") ;;
        kpaced) kpaced+=("$t") kpiops+=("$n") ;;
        esac
        reset
        case $side in live | paced) serve_down ;; esac
    done
done
mb=$(( (1 << 30) / 1000000 ))
o=$(median "${off[@]}") l=$(median "${live[@]}") pc=$(median "${paced[@]}")
kf=$(median "${kfull[@]}") kp=$(median "${kpaced[@]}")
echo "import-live: image_bytes=$((1 << 30)) runs=$n_runs offline_s=$o live_s=$l" \
     "offline_mb_s=$(calc "$mb / $o" ) live_mb_s=$(calc "$mb / $l")" \
     "ratio=$(CALC_FMT=%.3f calc "$o / $l")" \
     "reads_iops_alone=$(median "${base[@]}") reads_iops_during=$(median "${riops[@]}")" \
     "paced_iops=$PACED_IOPS paced_s=$pc paced_mb_s=$(calc "$mb / $pc")" \
     "paced_ratio=$(CALC_FMT=%.3f calc "$o / $pc") paced_reads_iops_during=$(median "${piops[@]}")" \
     "nbdkit_s=$kf nbdkit_ratio=$(CALC_FMT=%.3f calc "$o / $kf") nbdkit_reads_iops_during=$(median "${kfiops[@]}")" \
     "nbdkit_paced_s=$kp nbdkit_paced_ratio=$(CALC_FMT=%.3f calc "$o / $kp")" \
     "nbdkit_paced_reads_iops_during=$(median "${kpiops[@]}")"
