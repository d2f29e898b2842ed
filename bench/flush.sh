#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Flushes (issue "One daemon owns the store": a FLUSH costs one durable write
# where one suffices): 4 KiB random writes over [2 GiB, 3 GiB) with a flush
# after every write (fio's nbd engine, --fsync=1, depth 1: the pattern of
# the NBD project's nbd-tester-client -w -f), on the VM's disk, a fresh
# target each run:
#   st      stellar serve, a new clone of the dense image (bench/lib.sh
#           dense_image) made by the running daemon: writes go to its delta,
#           a flush makes them durable
#   old     with STELLAR_OLD set (an older stellar binary), the same on its
#           own copy of the store: before against after
#   qemu    qemu-nbd (--cache=writeback, fdatasync on flush) on a new qcow2
#           overlay of the raw image
#   nbdkit  nbdkit's file plugin on a new sparse 3 GiB file
# RUNS interleaved runs (5; --quick 1), rotating who goes first; medians of
# write IOPS (flushes included) and of fio's flush latency.
#
# Usage: bench/flush.sh [--quick]
# Summary line (stdout): flush: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool nbdkit nbdkit
need_tool qemu-nbd qemu-utils
need_tool fio fio
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"
OLD=${STELLAR_OLD:-}
n_runs=$(runs 5 1)
rt=$(runs 10 3)
img=$(dense_image)

work_dir flush

# serve_store BIN NAME: a store of the image, served on $W/NAME.sock
serve_store() {
    "$1" --store "$W/$2" init >/dev/null
    "$1" --store "$W/$2" import -q "$img" img
    "$1" --store "$W/$2" serve --nbd "unix:$W/$2.sock" 2>"$W/$2.log" &
    pids+=($!)
    wait_sock "$W/$2.sock" $!
    wait_settled "$1" "$W/$2.log" "${pids[-1]}"
}
log "flush: importing $(fsize "$img") bytes..."
serve_store "$STELLAR" st
sides="st qemu nbdkit"
if [ -n "$OLD" ]; then
    serve_store "$OLD" old
    sides="st old qemu nbdkit"
fi

# target SIDE RUN: make the fresh target, its URI in U (a peer's server is
# started here, not in a subshell, and its PID left in TPID)
TPID= U=
target() {
    case $1 in
    st | old)
        local bin=$STELLAR
        [ "$1" = old ] && bin=$OLD
        "$bin" --store "$W/$1" clone img "w$2" >/dev/null
        U="nbd+unix:///w$2?socket=$W/$1.sock"
        ;;
    qemu)
        rm -f "$W/w.qcow2" "$W/q.sock"
        qemu-img create -q -f qcow2 -b "$img" -F raw "$W/w.qcow2"
        qemu-nbd -k "$W/q.sock" --persistent --shared=4 -f qcow2 --cache=writeback \
            --aio=threads -x w "$W/w.qcow2" </dev/null >/dev/null 2>>"$W/qemu-nbd.log" &
        TPID=$!
        wait_sock "$W/q.sock" $TPID
        U="nbd+unix:///w?socket=$W/q.sock"
        ;;
    nbdkit)
        rm -f "$W/w.raw" "$W/k.sock"
        truncate -s 3G "$W/w.raw"
        nbdkit -f -U "$W/k.sock" file "$W/w.raw" </dev/null >/dev/null 2>>"$W/nbdkit.log" &
        TPID=$!
        wait_sock "$W/k.sock" $TPID
        U="nbd+unix:///?socket=$W/k.sock"
        ;;
    esac
}
untarget() { # SIDE RUN
    case $1 in
    st | old)
        local bin=$STELLAR
        [ "$1" = old ] && bin=$OLD
        "$bin" --store "$W/$1" rm "w$2" >/dev/null
        ;;
    *)
        kill "$TPID"
        wait "$TPID" 2>/dev/null || true
        rm -f "$W/w.qcow2" "$W/w.raw"
        ;;
    esac
}

declare -A R
for r in $(seq "$n_runs"); do
    order=$sides
    [ $((r % 2)) = 0 ] && order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' ')
    for side in $order; do
        sync
        target "$side" "$r"
        fio --name=f --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --offset=2g --size=1g \
            --fsync=1 --time_based --runtime="$rt" --randrepeat=1 --output-format=json \
            --output="$W/o.json" >/dev/null 2>"$W/o.err" || die "fio on $side: $(cat "$W/o.err")"
        read -r iops lat < <(python3 -c 'import json,sys
j = json.load(open(sys.argv[1]))["jobs"][0]
print("%.0f %.1f" % (j["write"]["iops"], j["sync"]["lat_ns"]["percentile"]["50.000000"] / 1000))' "$W/o.json")
        R[$side.iops]+=" $iops"
        R[$side.lat]+=" $lat"
        untarget "$side" "$r"
    done
done

out="flush: image_bytes=$(fsize "$img") runs=$n_runs runtime=$rt"
for side in $sides; do
    # shellcheck disable=SC2086
    out+=" ${side}_iops=$(median ${R[$side.iops]}) ${side}_flush_p50_us=$(median ${R[$side.lat]})"
done
# shellcheck disable=SC2086
out+=" st_vs_nbdkit=$(calc "$(median ${R[st.iops]}) / $(median ${R[nbdkit.iops]})")"
# shellcheck disable=SC2086
out+=" st_vs_qemu=$(calc "$(median ${R[st.iops]}) / $(median ${R[qemu.iops]})")"
echo "$out"
