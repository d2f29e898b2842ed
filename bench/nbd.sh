#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# NBD serving (section 7): `stellar serve` against qemu-nbd and nbdkit on the
# same data, all on Unix sockets, driven by fio's nbd engine (libnbd; one
# connection per job, requests pipelined up to the queue depth).
#   servers   stellar serve on a store holding A.raw (image A, read-only) and
#             a clone of it (volume, writable, empty delta); qemu-nbd
#             --persistent --shared=16 -f qcow2 --cache=writeback --aio=threads
#             on a qcow2 overlay of A.raw (qemu-img create -f qcow2 -b A.raw
#             -F raw); nbdkit file A.raw (-r). All four read the same bytes.
#   reads     4 KiB random reads at queue depth 1 and 16 over [0, 256 MiB)
#             (where A's data is: 178 MB of it, the rest zeros); sequential
#             reads of 64 KiB and 1 MiB over the same range (queue depth 1).
#             fio --time_based (RUNTIME s each), the same seeded offsets for
#             every server; IOPS, MB/s and latency (lat_ns p50 and p99:
#             submit to completion, as the client sees it). qd1 again with
#             the server's threads pinned to the last CPU and fio to CPU 0:
#             the VM's cross-vCPU wakeup (~45 µs) then hits every request of
#             every server, where free placement lets the scheduler put a
#             one-thread server (stellar's connection thread) beside fio.
#   writes    4 KiB random writes over [1 GiB, 2 GiB), 64 MiB of them (16,384
#             distinct blocks), a flush (NBD_CMD_FLUSH) after every 64; at
#             queue depth 1 with fio (--fsync=64: IOPS, median write and flush
#             latency) and at depth 16 with qemu-img bench (-d 16
#             --flush-interval=64 -t writeback, offsets a stride permutation
#             of the range's blocks): at depth > 1 fio's fsync=N issues a
#             timing-dependent number of flushes, qemu-img bench drains the
#             queue and flushes after exactly every N. Each measurement on a
#             fresh target: a new clone served by the running stellar daemon,
#             a new overlay under a new qemu-nbd (cache=writeback), a new copy
#             of A.raw (cp --sparse=always, then sync) under a new nbdkit
#             file. Everyone writes through the page cache and fdatasyncs on
#             flush.
#   check     every read export compared with A.raw (qemu-img compare, untimed)
#   caches    before timing: A.raw and the store's packs read into the page
#             cache (cat), then one 1 MiB sequential pass over [0, 256 MiB)
#             through every read export (fills stellar's chunk cache, 256 MiB
#             default, and the page cache behind the peers). The peers get no
#             cache of their own beyond the page cache.
# RUNS interleaved runs (7; --quick 1), rotating which server goes first in
# each test; medians. Ratios = stellar / nbdkit (the issue's goals) and
# stellar / qemu-nbd.
#
# Usage: bench/nbd.sh [--quick]
# Summary line (stdout): nbd: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
need_tool qemu-img qemu-utils
need_tool qemu-nbd qemu-utils
need_tool nbdkit nbdkit
need_tool fio fio
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"

n_runs=$(runs 7 1)
rt=$(runs 5 1)           # seconds per read measurement
wsize=$(runs 64m 16m)    # bytes written per write measurement
nw=$(runs 16384 4096)    # the same, in 4 KiB writes

W=$WORK/nbd
pids=() wq_pid='' wk_pid=''
stop_pid() { # PID: SIGTERM and wait (the servers are our children)
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    for p in "${pids[@]}" $wq_pid $wk_pid; do stop_pid "$p"; done
    rm -rf "$W"
}
rm -rf "$W"
mkdir -p "$W"
trap cleanup EXIT


# ---- servers for the reads
s=$W/store
"$STELLAR" --store "$s" init >/dev/null
"$STELLAR" --store "$s" import "$IMG_A" A >/dev/null
"$STELLAR" --store "$s" clone A vol
qemu-img create -q -f qcow2 -b "$IMG_A" -F raw "$W/ovl.qcow2"
sync

"$STELLAR" --store "$s" serve --nbd "unix:$W/st.sock" --stats "$W/stats.json" 2>"$W/serve.log" &
st_pid=$!; pids+=("$st_pid")
qemu-nbd -k "$W/q.sock" --persistent --shared=16 -f qcow2 --cache=writeback --aio=threads \
         -x ovl "$W/ovl.qcow2" 2>"$W/qemu-nbd.log" &
q_pid=$!; pids+=("$q_pid")
nbdkit -f -U "$W/k.sock" -r file "$IMG_A" 2>"$W/nbdkit.log" &
k_pid=$!; pids+=("$k_pid")
wait_sock "$W/st.sock" "$st_pid"
wait_idle_compressed "$W/serve.log" "$st_pid" # (the store as a host has it, before timing)
wait_sock "$W/q.sock" "$q_pid"
wait_sock "$W/k.sock" "$k_pid"

declare -A URI=(
    [st_img]="nbd+unix:///A?socket=$W/st.sock"
    [st_vol]="nbd+unix:///vol?socket=$W/st.sock"
    [qemu]="nbd+unix:///ovl?socket=$W/q.sock"
    [nbdkit]="nbd+unix:///?socket=$W/k.sock"
)
RTARGETS=(st_img st_vol qemu nbdkit)

# fiorun OUT URI fio-options...: one fio job, JSON to OUT
fiorun() {
    local out=$1 uri=$2
    shift 2
    fio --name=j --ioengine=nbd --uri="$uri" --output-format=json --output="$out" \
        --lat_percentiles=1 --randrepeat=1 "$@" >/dev/null 2>"$out.err" ||
        die "fio failed on $uri: $(cat "$out.err")"
}
# fiokeys FILE PREFIX: "PREFIX_iops=N PREFIX_mb_s=N [PREFIX_p50_us=N]" from fio JSON
fiokeys() {
    python3 - "$1" "$2" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
if j["error"]:
    sys.exit("fio job error %d" % j["error"])
d = j["write"] if j["write"]["io_bytes"] else j["read"]
p = sys.argv[2]
out = ["%s_iops=%.0f" % (p, d["iops"]), "%s_mb_s=%.2f" % (p, d["bw_bytes"] / 1e6)]
pc = d.get("lat_ns", {}).get("percentile", {})
if "50.000000" in pc:
    out.append("%s_p50_us=%.1f" % (p, pc["50.000000"] / 1000))
    out.append("%s_p99_us=%.1f" % (p, pc["99.000000"] / 1000))
s = j.get("sync", {})
if s.get("total_ios"):
    out.append("%s_flushes=%d" % (p, s["total_ios"]))
    out.append("%s_flush_p50_us=%.1f" % (p, s["lat_ns"]["percentile"]["50.000000"] / 1000))
print(" ".join(out))
EOF
}

RANGE=(--offset=0 --size=256m)
# read tests: key and fio options
declare -A RTEST=(
    [rr4k_qd1]="--rw=randread --bs=4k --iodepth=1"
    [rr4k_qd16]="--rw=randread --bs=4k --iodepth=16"
    [seq64k]="--rw=read --bs=64k --iodepth=1"
    [seq1m]="--rw=read --bs=1m --iodepth=1"
)
RTESTS=(rr4k_qd1 rr4k_qd16 seq64k seq1m)
# qd1 again with the server pinned to the last CPU and fio to the first: on
# this VM a wakeup across vCPUs costs ~45 µs, so qd1 latency depends on
# whether the scheduler puts client and server thread on one vCPU
ncpu=$(nproc)
if ((ncpu >= 2)); then
    RTEST[rr4k_qd1x]="--rw=randread --bs=4k --iodepth=1"
    RTESTS+=(rr4k_qd1x)
fi
declare -A SPID=([st_img]=$st_pid [st_vol]=$st_pid [qemu]=$q_pid [nbdkit]=$k_pid)
pin() { # TARGET CPUS: all threads of the target's server (new ones inherit)
    taskset -a -p -c "$2" "${SPID[$1]}" >/dev/null
}

# ---- warm caches alike
log "== nbd: warming (page cache, then one pass through every export)"
warm "$IMG_A" "$W/ovl.qcow2"
find "$s/packs" -type f -exec cat {} + >/dev/null
for t in "${RTARGETS[@]}"; do
    fiorun "$W/warm.json" "${URI[$t]}" "${RANGE[@]}" --rw=read --bs=1m --iodepth=1
done

# ---- writes: a fresh target per measurement
wtarget() { # KIND RUN TEST: prepare the target (and its server), set wsock, wexp
    local kind=$1 tag=$2_$3
    case $kind in
        st)
            "$STELLAR" --store "$s" clone A "w$tag"
            sync
            wsock=$W/st.sock wexp=w$tag ;;
        qemu)
            qemu-img create -q -f qcow2 -b "$IMG_A" -F raw "$W/w$tag.qcow2"
            sync
            qemu-nbd -k "$W/qw.sock" --persistent --shared=16 -f qcow2 --cache=writeback \
                     --aio=threads -x w "$W/w$tag.qcow2" 2>>"$W/qemu-nbd.log" &
            wq_pid=$!
            wait_sock "$W/qw.sock" "$wq_pid"
            wsock=$W/qw.sock wexp=w ;;
        nbdkit)
            cp --sparse=always "$IMG_A" "$W/w$tag.raw"
            sync
            nbdkit -f -U "$W/kw.sock" file "$W/w$tag.raw" 2>>"$W/nbdkit.log" &
            wk_pid=$!
            wait_sock "$W/kw.sock" "$wk_pid"
            wsock=$W/kw.sock wexp= ;;
    esac
}
wdone() { # KIND RUN TEST: stop the peer server, delete the target
    local kind=$1 tag=$2_$3
    case $kind in
        st) "$STELLAR" --store "$s" rm "w$tag" >/dev/null 2>&1 || true ;;
        qemu) stop_pid "$wq_pid"; wq_pid=; rm -f "$W/w$tag.qcow2" "$W/qw.sock" ;;
        nbdkit) stop_pid "$wk_pid"; wk_pid=; rm -f "$W/w$tag.raw" "$W/kw.sock" ;;
    esac
}
WTESTS=(rw4k_qd1 rw4k_qd16)
# qemu-img bench offsets: a stride permutation of the range's 4 KiB blocks
wstride=$(( ((1 << 30) / 4096) * 6180339887 / 10000000000 | 1 ))
WTARGETS=(st qemu nbdkit)

# rot N ARRAY...: the array rotated left by N
rot() { local n=$1; shift; local a=("$@") k=$#; for ((j = 0; j < k; j++)); do printf '%s\n' "${a[(j + n) % k]}"; done; }

# every read export serves A's bytes (untimed; qemu-img compare over NBD)
same=yes
for t in "${RTARGETS[@]}"; do
    qemu-img compare -q -f raw -F raw "$IMG_A" "${URI[$t]}" || { same=no; log "nbd: $t differs from A.raw"; }
done

for ((r = 0; r < n_runs; r++)); do
    log "== nbd: run $((r + 1))/$n_runs"
    line=""
    for test in "${RTESTS[@]}"; do
        mapfile -t order < <(rot "$r" "${RTARGETS[@]}")
        for t in "${order[@]}"; do
            if [ "$test" = rr4k_qd1x ]; then
                pin "$t" $((ncpu - 1))
                # shellcheck disable=SC2086
                taskset -c 0 fio --name=j --ioengine=nbd --uri="${URI[$t]}" --output-format=json \
                    --output="$W/f.json" --lat_percentiles=1 --randrepeat=1 "${RANGE[@]}" \
                    ${RTEST[$test]} --time_based --runtime="$rt" >/dev/null 2>"$W/f.err" ||
                    die "fio failed on ${URI[$t]}: $(cat "$W/f.err")"
                pin "$t" "0-$((ncpu - 1))"
            else
                # shellcheck disable=SC2086
                fiorun "$W/f.json" "${URI[$t]}" "${RANGE[@]}" ${RTEST[$test]} --time_based --runtime="$rt"
            fi
            line+=" $(fiokeys "$W/f.json" "${t}_$test")"
        done
    done
    for test in "${WTESTS[@]}"; do
        mapfile -t order < <(rot "$r" "${WTARGETS[@]}")
        for t in "${order[@]}"; do
            wtarget "$t" "$r" "$test"
            if [ "$test" = rw4k_qd1 ]; then
                fiorun "$W/f.json" "nbd+unix:///$wexp?socket=$wsock" --offset=1g --size=1g \
                       --io_size="$wsize" --rw=randwrite --bs=4k --fsync=64 --iodepth=1
                line+=" $(fiokeys "$W/f.json" "${t}_$test")"
            else
                # fio's fsync=N at depth > 1 issues a timing-dependent number of
                # flushes; qemu-img bench drains, then flushes every N exactly
                out=$(qemu-img bench --image-opts -w -c "$nw" -d 16 -s 4096 -S $((wstride * 4096)) \
                      -t writeback --flush-interval=64 \
                      "driver=raw,offset=1073741824,size=1073741824,file.driver=nbd,file.path=$wsock${wexp:+,file.export=$wexp}" 2>&1) ||
                    die "qemu-img bench failed: $out"
                secs=$(sed -n 's/^Run completed in \([0-9.]*\) seconds.*/\1/p' <<<"$out")
                [ -n "$secs" ] || die "qemu-img bench: no time in: $out"
                line+=" ${t}_${test}_iops=$(calc "$nw / $secs")"
            fi
            wdone "$t" "$r" "$test"
        done
    done
    echo "run:$line" >>"$W/runs"
    log "$line"
done

# the daemon's own view: its cache after the runs
st_stats=$(cat "$W/stats.json")

medians() {
    python3 - "$1" <<'EOF'
import statistics, sys
runs = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in open(sys.argv[1])]
print(" ".join("%s=%.6g" % (k, statistics.median(float(r[k]) for r in runs)) for k in runs[0]))
EOF
}
line="nbd: date=$(date -u +%Y-%m-%dT%H:%MZ) rev=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
line+=" runs=$n_runs runtime_s=$rt write_bytes=$wsize same=$same"
line+=" qemu=$(qemu-nbd --version | awk 'NR == 1 { print $2 }') nbdkit=$(nbdkit --version | awk '{ print $2 }')"
line+=" fio=$(fio --version | sed 's/^fio-//')"
line+=" $(medians "$W/runs")"
# how many runs had stellar's qd1 median latency above nbdkit's (the shared
# machine has slow phases that the medians hide)
line+=" $(python3 - "$W/runs" <<'EOF'
import sys
runs = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in open(sys.argv[1])]
worse = [sum(float(r[f"{t}_rr4k_qd1_p50_us"]) > float(r["nbdkit_rr4k_qd1_p50_us"]) for r in runs)
         for t in ("st_img", "st_vol")]
print("qd1_p50_runs_worse_img=%d qd1_p50_runs_worse_vol=%d" % tuple(worse))
EOF
)"
line+=" $(python3 -c 'import json, sys; c = json.loads(sys.argv[1])["cache"]; print("st_cache_hits=%d st_cache_misses=%d st_cache_bytes=%d" % (c["hits"], c["misses"], c["bytes"]))' "$st_stats")"
echo "$line"
