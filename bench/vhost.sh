#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# vhost-user-blk (issue "vhost-user-blk"): bench/vhost-bench.c plays the VMM
# (memfd guest memory, split virtqueues, eventfds) against
#   st     stellar serve --vhost-user-blk, a clone of the dense image
#          (bench/lib.sh dense_image: a 3 GiB ext4 of this machine's shared
#          libraries; the share of the read region that is data is reported),
#          --cache 1G as in nbd-dense.sh
#   qraw   qemu-storage-daemon --export type=vhost-user-blk on the raw image
#   qcow   the same on a qcow2 overlay of it (a clone, as ours is)
# and, for the cost of the socket, the same reads through our NBD path (fio's
# nbd engine on the same daemon). Workloads, over the first GiB:
#   rr1 rr16 rr64   4 KiB random reads at queue depth 1, 16, 64 (one queue)
#   rr16q4          4 KiB random reads, depth 16 on each of 4 queues
#   seq1m           1 MiB sequential reads, depth 4
#   rw64            4 KiB random writes with a flush every 64 (depth 1), over
#                   [2 GiB, 3 GiB): stellar into the clone's delta, qemu into
#                   a fresh overlay (qcow) or a fresh sparse raw file (qraw)
# With STELLAR_OLD set (an older stellar binary), a side "old" serves its
# own copy of the store the same way: before against after.
# Everyone reads through the page cache (qemu cache.direct=off), warmed by a
# pass first. RUNS interleaved runs (3; --quick 1) rotating who goes first;
# medians. Summary line: vhost: key=value ...
#
# Usage: bench/vhost.sh [--quick]
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool qemu-storage-daemon qemu-system-common
need_tool qemu-img qemu-utils
need_tool fio fio
VB=$BUILD/bench/vhost-bench
[ -x "$VB" ] || ninja -C "$BUILD" bench/vhost-bench >&2
OLD=${STELLAR_OLD:-}
n_runs=$(runs 3 1)
secs=$(runs 4 2)
img=$(dense_image)
share=$(data_share "$img" $((1 << 30)))

work_dir vhost

log "vhost: importing $(fsize "$img") bytes (data share of the first GiB: $share)..."
# serve_st BIN NAME [OPTION...]: a store of the image with clones c1 (reads)
# and w1 (writes), served on $W/NAME.sock and $W/NAMEw.sock
serve_st() {
    local bin=$1 n=$2
    shift 2
    "$bin" --store "$W/$n" init >/dev/null
    "$bin" --store "$W/$n" import -q "$img" img
    "$bin" --store "$W/$n" clone img c1
    "$bin" --store "$W/$n" clone img w1
    "$bin" --store "$W/$n" serve --vhost-user-blk "$W/$n.sock=c1" --vhost-user-blk "$W/${n}w.sock=w1" \
        --vhost-queues 4 --cache 1G "$@" 2>"$W/$n.log" &
    pids+=($!)
    wait_sock "$W/${n}w.sock" $!
    wait_settled "$bin" "$W/$n.log" "${pids[-1]}" # (before timing)
}
serve_st "$STELLAR" st --nbd "unix:$W/nbd.sock" --tls=off
sides="st qraw qcow"
if [ -n "$OLD" ]; then
    serve_st "$OLD" old
    sides="st old qraw qcow"
fi

# qsd NAME FILE FORMAT WRITABLE: qemu-storage-daemon exporting FILE on $W/NAME.sock
qsd() {
    local node="file,filename=$2,node-name=f,cache.direct=off,aio=threads"
    qemu-storage-daemon --blockdev "$node" --blockdev "$3,file=f,node-name=d" \
        --export "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=$W/$1.sock,num-queues=4,writable=$4" \
        2>"$W/$1.log" &
    pids+=($!)
    wait_sock "$W/$1.sock" $!
}
qemu-img create -q -f qcow2 -b "$img" -F raw "$W/ov.qcow2"
qsd qraw "$img" raw off
qsd qcow "$W/ov.qcow2" qcow2 off

warm "$img"
warm "$W/st"/packs/*
[ -z "$OLD" ] || warm "$W/old"/packs/*
for s in $sides; do # one sequential pass through each (the cache, the page cache)
    "$VB" "$W/$s.sock" --rw read --bs 1048576 --depth 4 --span $((1 << 30)) --seconds 3 >/dev/null
done

vb() { # SOCK ARGS... -> "iops p50"
    local out
    out=$("$VB" "$@") || die "vhost-bench $*: $out"
    local iops p50
    iops=$(sed -n 's/.*iops=\([0-9.]*\).*/\1/p' <<<"$out")
    p50=$(sed -n 's/.*p50_us=\([0-9.]*\).*/\1/p' <<<"$out")
    echo "$iops $p50"
}
fio_nbd() { # DEPTH -> "iops p50"
    fio --name=n --ioengine=nbd --uri="nbd+unix:///c1?socket=$W/nbd.sock" --rw=randread --bs=4k \
        --size=1g --iodepth="$1" --time_based --runtime="$secs" --randrepeat=1 \
        --output-format=json --output="$W/fio.json" >/dev/null 2>&1 || die "fio failed"
    python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.0f %.1f" % (j["iops"], j["clat_ns"]["percentile"]["50.000000"]/1000))' "$W/fio.json"
}

declare -A R
G=$((1 << 30))
for r in $(seq "$n_runs"); do
    order=$sides
    [ $((r % 2)) = 0 ] && order=$(echo "$sides" | tr ' ' '\n' | tac | tr '\n' ' ')
    for s in $order; do
        sock=$W/$s.sock
        for d in 1 16 64; do
            read -r i l < <(vb "$sock" --depth $d --span $G --seconds "$secs")
            R[$s.rr$d]+=" $i"; R[$s.rr$d.lat]+=" $l"
        done
        read -r i l < <(vb "$sock" --depth 16 --queues 4 --span $G --seconds "$secs")
        R[$s.rr16q4]+=" $i"
        read -r i l < <(vb "$sock" --rw read --bs 1048576 --depth 4 --span $G --seconds "$secs")
        R[$s.seq1m]+=" $(calc "$i * 1.048576")" # MB/s
        # writes: a fresh target each run
        if [ "$s" = st ] || [ "$s" = old ]; then
            wsock=$W/${s}w.sock
        else
            [ -n "${QW:-}" ] && { kill "$QW"; wait "$QW" 2>/dev/null || true; }
            rm -f "$W/w.img" "$W/w.sock"
            if [ "$s" = qcow ]; then
                qemu-img create -q -f qcow2 -b "$img" -F raw "$W/w.img"
                fmt=qcow2
            else
                truncate -s 3G "$W/w.img"
                fmt=raw
            fi
            qemu-storage-daemon --blockdev "file,filename=$W/w.img,node-name=f,cache.direct=off,aio=threads" \
                --blockdev "$fmt,file=f,node-name=d" \
                --export "type=vhost-user-blk,id=e,node-name=d,addr.type=unix,addr.path=$W/w.sock,num-queues=1,writable=on" \
                2>"$W/w.log" &
            QW=$!
            pids+=($QW)
            wait_sock "$W/w.sock" $QW
            wsock=$W/w.sock
        fi
        read -r i l < <("$VB" "$wsock" --rw randwrite --depth 1 --flush-every 64 --seconds "$secs" |
            sed -n 's/.*iops=\([0-9.]*\).*p50_us=\([0-9.]*\).*/\1 \2/p')
        R[$s.rw64]+=" $i"
    done
    for d in 1 16; do
        read -r i l < <(fio_nbd $d)
        R[nbd.rr$d]+=" $i"; R[nbd.rr$d.lat]+=" $l"
    done
done

out="vhost: date=$(date -u +%Y-%m-%dT%H:%MZ) image_bytes=$(fsize "$img") data_share=$share runs=$n_runs seconds=$secs"
out+=" qemu=$(qemu-storage-daemon --version | awk 'NR==1 { print $3 }')"
for s in $sides; do
    # shellcheck disable=SC2086
    for k in rr1 rr16 rr64; do
        out+=" ${s}_${k}_iops=$(median ${R[$s.$k]}) ${s}_${k}_p50_us=$(median ${R[$s.$k.lat]})"
    done
    # shellcheck disable=SC2086
    out+=" ${s}_rr16q4_iops=$(median ${R[$s.rr16q4]}) ${s}_seq1m_mb_s=$(median ${R[$s.seq1m]}) ${s}_rw64_iops=$(median ${R[$s.rw64]})"
done
for d in 1 16; do
    # shellcheck disable=SC2086
    out+=" nbd_rr${d}_iops=$(median ${R[nbd.rr$d]}) nbd_rr${d}_p50_us=$(median ${R[nbd.rr$d.lat]})"
done
echo "$out"
