#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# NBD reads of real data (issue "One daemon owns the store"): a dense image
# (bench/lib.sh dense_image: a 3 GiB ext4 of this machine's shared
# libraries; the share of the read region that is data is reported),
# served by `stellar serve` from a store holding it and 4 clones, against
# nbdkit's file plugin on a copy of the raw file (writable: the neighbour
# writes to it too), both on Unix sockets, driven by
# fio's nbd engine (libnbd: one connection per job, requests pipelined up to
# the queue depth). 4 KiB random reads over the first GiB:
#   qd1, qd16   one connection, queue depth 1 and 16
#   4conn       4 connections at depth 16: stellar to 4 clones of the image
#               (the shared cache), nbdkit 4 connections to the one file
#   neighbour   qd16 reads of clone c1 with, in parallel, a second
#               connection to c1 writing 4 KiB and flushing after every
#               write (fio --fsync=1) over [2 GiB, 3 GiB); against the same
#               reads with no neighbour: the ratio is what a flushing
#               neighbour costs the readers. nbdkit gets the same
#               neighbour (on its one file): its ratio is what the
#               machine's flushes cost any server
# Both stellar daemons run with --cache $NBD_DENSE_CACHE (1G): room for the
# read region's chunks decompressed, about the memory nbdkit gets from the
# page cache holding the raw region; the daemon's default is 256M.
# Timing starts once the daemon's idle compression is done (the store as a
# host has it: its frames remade at the cold level).
# With STELLAR_OLD set (an older stellar binary), it serves its own copy of
# the store and runs the same reads: before against after.
# Before timing, the raw file and the packs are read into the page cache and
# one sequential pass goes through every export. RUNS interleaved runs
# (5; --quick 1), rotating who goes first; medians.
#
# Usage: bench/nbd-dense.sh [--quick]
# Summary line (stdout): nbd-dense: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool nbdkit nbdkit
need_tool fio fio
need_tool mkfs.ext4 e2fsprogs
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"
OLD=${STELLAR_OLD:-}
CACHE=${NBD_DENSE_CACHE:-1G}
n_runs=$(runs 5 1)
rt=$(runs 5 2)
img=$(dense_image)
share=$(data_share "$img" $((1 << 30)))

work_dir nbd-dense

# serve_store BIN DIR SOCK: a store of the image and clones c1..c4, served
serve_store() {
    "$1" --store "$2" init >/dev/null
    "$1" --store "$2" import -q "$img" img
    for i in 1 2 3 4; do "$1" --store "$2" clone img "c$i"; done
    "$1" --store "$2" serve --nbd "unix:$3" --cache "$CACHE" 2>"$2.log" &
    pids+=($!)
    wait_sock "$3" $!
    wait_settled "$1" "$2.log" "${pids[-1]}"
}
log "nbd-dense: importing $(fsize "$img") bytes (data share of the first GiB: $share)..."
serve_store "$STELLAR" "$W/new" "$W/new.sock"
[ -z "$OLD" ] || serve_store "$OLD" "$W/old" "$W/old.sock"
cp --sparse=always "$img" "$W/k.raw"
nbdkit -f -U "$W/k.sock" file "$W/k.raw" 2>"$W/nbdkit.log" &
pids+=($!)
wait_sock "$W/k.sock" $!
sides="new nbdkit"
[ -z "$OLD" ] || sides="new old nbdkit"

uri() { # SIDE NAME
    if [ "$1" = nbdkit ]; then echo "nbd+unix:///?socket=$W/k.sock"; else echo "nbd+unix:///$2?socket=$W/$1.sock"; fi
}
warm "$W/k.raw"
for side in $sides; do
    [ "$side" = nbdkit ] || warm "$W/$side"/packs/*
    for n in img c1 c2 c3 c4; do
        [ "$side" != nbdkit ] || [ $n = img ] || continue
        nbdcopy "$(uri "$side" "$n")" - 2>/dev/null | head -c $((1 << 30)) >/dev/null || true
    done
done

# fio_read OUT DEPTH URI... : random 4 KiB reads over [0, 1 GiB), one job per URI
fio_read() {
    local out=$1 depth=$2
    shift 2
    local args=() i=0
    for u in "$@"; do
        args+=(--name="j$i" --uri="$u")
        i=$((i + 1))
    done
    fio --ioengine=nbd --rw=randread --bs=4k --size=1g --iodepth="$depth" --time_based \
        --runtime="$rt" --randrepeat=1 --group_reporting --output-format=json \
        --output="$out" "${args[@]}" >/dev/null 2>"$out.err" || die "fio: $(cat "$out.err")"
}
iops() { python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"])' "$1"; }
p50() { python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["jobs"][0]["read"]["clat_ns"]["percentile"]["50.000000"] / 1000))' "$1"; }

declare -A R
for r in $(seq "$n_runs"); do
    order=$sides
    [ $((r % 2)) = 0 ] && order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' ')
    for side in $order; do
        fio_read "$W/o" 1 "$(uri "$side" c1)"
        R[$side.qd1]+=" $(iops "$W/o")"; R[$side.qd1lat]+=" $(p50 "$W/o")"
        fio_read "$W/o" 16 "$(uri "$side" c1)"
        R[$side.qd16]+=" $(iops "$W/o")"
        fio_read "$W/o" 16 "$(uri "$side" c1)" "$(uri "$side" c2)" "$(uri "$side" c3)" "$(uri "$side" c4)"
        R[$side.conn4]+=" $(iops "$W/o")"
        # the neighbour: writes and a flush after each, on the same volume
        fio --name=nb --ioengine=nbd --uri="$(uri "$side" c1)" --rw=randwrite --bs=4k \
            --offset=2g --size=1g --fsync=1 --time_based --runtime=$((rt + 2)) \
            --output-format=json --output="$W/nb" >/dev/null 2>&1 &
        nb=$!
        sleep 1
        fio_read "$W/o" 16 "$(uri "$side" c1)"
        R[$side.nbr]+=" $(iops "$W/o")"
        wait $nb || die "the neighbour's fio failed"
        R[$side.nbw]+=" $(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["write"]["iops"])' "$W/nb")"
    done
done
for side in $sides; do
    "$( [ "$side" = old ] && echo "$OLD" || echo "$STELLAR")" --store "$W/$side" ls >/dev/null 2>&1 || true
done

out="nbd-dense: image_bytes=$(fsize "$img") data_share=$share runs=$n_runs runtime=$rt cache=$CACHE"
for side in $sides; do
    p=$side; [ "$side" = new ] && p=st
    # shellcheck disable=SC2086
    out+=" ${p}_qd1_iops=$(median ${R[$side.qd1]}) ${p}_qd1_p50_us=$(median ${R[$side.qd1lat]})"
    # shellcheck disable=SC2086
    out+=" ${p}_qd16_iops=$(median ${R[$side.qd16]}) ${p}_4conn_iops=$(median ${R[$side.conn4]})"
    # shellcheck disable=SC2086
    out+=" ${p}_nbr_read_iops=$(median ${R[$side.nbr]}) ${p}_nbr_write_iops=$(median ${R[$side.nbw]})"
done
echo "$out"
