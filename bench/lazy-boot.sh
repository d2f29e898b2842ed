#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Lazy pull and boot (issue 5): how soon a VM reads its disk, and finishes
# booting, after `stellar pull --lazy` of its image, against a full pull
# first and then the boot.
#   image     a 256 MiB ext4 file system made with `mkfs.ext4 -d` from the
#             Debian 12 minbase tree of bench/make-images.sh (rootfs-a, ~175
#             MB), cached as $STELLAR_BENCH_DATA/boot-256M.raw; imported into
#             a store and published (`stellar publish`) into a tree that
#             nginx serves on 127.0.0.1 (one worker, keep-alive; the same
#             config as bench/pull.sh), straight ("LAN") and through
#             tests/tools/delay-proxy.py with 20 ms added round-trip time
#             ("CDN").
#   guest     the kernel and virtio modules of tests/vm/build-initramfs.sh
#             (Debian's cloud kernel, QEMU/TCG q35, 1 vCPU, 256 MiB, no KVM)
#             with our own busybox initramfs whose /init loads virtio_blk,
#             waits for /dev/vda, mounts it (ext4, ro, noload) and "boots":
#             chroot into it and run what a minimal Debian's start reads -
#             dpkg -l, dpkg -S (every package's file list), apt-config dump
#             (libapt-pkg), perl with POSIX/File::Temp, ls -lR /etc and
#             /usr/share, a sort of dpkg's status - then prints STELLAR_BOOTED
#             and powers off. The disk is attached as in tests/vm/boot.sh
#             (nbd+unix, raw, cache=none, virtio-blk, read-only).
#   modes     lazy: empty store, `stellar pull --lazy`, `stellar serve`, boot
#             (missing chunks fetched by the daemon when read, and kept);
#             full: empty store, `stellar pull` (default -j 16), serve, boot;
#             local: the image imported beforehand (no pull; the boot's floor).
#             lazy and full from the LAN and the CDN URL.
#   times     from the start of `stellar pull` (host clock):
#             first read: when QEMU's NBD client received the reply to its
#               first NBD_CMD_READ (QEMU trace events nbd_send_request and
#               nbd_receive_*_reply*, log backend with -msg timestamp=on: wall
#               clock, µs; the first read is the guest kernel's partition
#               scan when virtio_blk probes). The daemon's --stats file is
#               rewritten once a second, too coarse for this.
#             boot end: when the host read the guest's STELLAR_BOOTED line
#               from the serial console (a pipe, each line stamped as it
#               arrives).
#             Also: pull, daemon ready (socket), QEMU started, and the bytes
#             the daemon fetched during the boot (nginx's access log).
# RUNS interleaved runs (3; --quick 1; LAZYBOOT_RUNS overrides), the order of
# the modes rotated each run; medians.
#
# Usage: bench/lazy-boot.sh [--quick]
# Summary line (stdout): lazyboot: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
need_tool nginx nginx-light
need_tool qemu-system-x86_64 qemu-system-x86
need_tool mkfs.ext4 e2fsprogs

n_runs=${LAZYBOOT_RUNS:-$(runs 3 1)}
DELAY_MS=20
PROXY=$SRC_DIR/tests/tools/delay-proxy.py
VM_DIR=${STELLAR_VM_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/stellar-vm}
"$SRC_DIR/tests/vm/build-initramfs.sh" "$VM_DIR" >&2 || die "cannot build the test guest"

# ---- the image
IMG=$DATA/boot-256M.raw
TREE=$DATA/rootfs-a
if [ ! -f "$IMG" ]; then
    [ -d "$TREE" ] || ensure_images
    [ -d "$TREE" ] || die "no $TREE (bench/make-images.sh makes it)"
    log "making $IMG (mkfs.ext4 -d $TREE)"
    rm -f "$IMG.tmp"
    truncate -s 256M "$IMG.tmp"
    E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -d "$TREE" -U 5e11a71a-0000-4000-8000-0000000000b0 \
        -E "root_owner=0:0,hash_seed=5e11a71a-0000-4000-8000-0000000000f5" "$IMG.tmp" 256M
    mv "$IMG.tmp" "$IMG"
fi

W=$WORK/lazyboot
ngx_pid='' px_pid='' sv_pid=''
stop_pid() {
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop_pid "$sv_pid"
    stop_pid "$px_pid"
    stop_pid "$ngx_pid"
    rm -rf "$W"
}
rm -rf "$W"
mkdir -p "$W/www" "$W/ngx/tmp" "$W/guest/root"
trap cleanup EXIT

# ---- the guest's initramfs: busybox, the virtio modules, our /init
G=$W/guest/root
mkdir -p "$G/bin" "$G/dev" "$G/proc" "$G/sys" "$G/mnt" "$G/lib/modules"
cp /bin/busybox "$G/bin/busybox"
mods=""
for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mmio virtio_blk; do
    if [ -f "$VM_DIR/modules/$m.ko" ]; then cp "$VM_DIR/modules/$m.ko" "$G/lib/modules/"; mods+=" $m"; fi
done
{
    echo '#!/bin/busybox sh'
    echo "MODULES=\"$mods\""
    cat <<'EOF'
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
halt() { sync; poweroff -f; sleep 60; }
die() { echo "STELLAR_ERROR $*"; halt; }
echo "STELLAR_INIT"
for m in $MODULES; do insmod /lib/modules/$m.ko || die "insmod $m"; done
i=0
while [ ! -b /dev/vda ]; do
    [ $i -lt 600 ] || die "no /dev/vda"
    sleep 0.05
    i=$((i + 1))
done
echo "STELLAR_VDA"
mount -t ext4 -o ro,noload /dev/vda /mnt || die "mount /dev/vda"
echo "STELLAR_MOUNTED"
mount -t proc proc /mnt/proc 2>/dev/null
chroot /mnt /bin/bash -c '
    set -e
    dpkg -l >/dev/null
    dpkg -S /bin/ls >/dev/null
    apt-config dump >/dev/null
    perl -MPOSIX -MFile::Temp -MFile::Path -e 1
    ls -lR /etc /usr/share >/dev/null
    sort /var/lib/dpkg/status >/dev/null
    id >/dev/null
    date >/dev/null
' || die "boot workload failed"
echo "STELLAR_BOOTED"
halt
EOF
} >"$G/init"
chmod 755 "$G/init"
(cd "$G" && find . | LC_ALL=C sort | busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 >"$W/guest/initramfs.cpio.gz"

# ---- published tree, nginx, delay proxy
src=$W/src
"$STELLAR" --store "$src" init >/dev/null
"$STELLAR" --store "$src" import --quiet "$IMG" root
pub=$("$STELLAR" --store "$src" publish --json root "$W/www/st")
rm -rf "$src"
start_nginx "$W"
python3 "$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --delay-ms "$DELAY_MS" \
        --port-file "$W/proxy.port" 2>"$W/proxy.log" &
px_pid=$!
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/st/refs/root" && [ -s "$W/proxy.port" ] && break
    kill -0 "$ngx_pid" 2>/dev/null || die "nginx died: $(cat "$W/ngx/error.log")"
    sleep 0.1
done
declare -A URL=([lan]="http://127.0.0.1:$port/st" [cdn]="http://127.0.0.1:$(cat "$W/proxy.port")/st")
ALOG=$W/ngx/access.log

# the console stamper: each line QEMU's serial gives, prefixed by the host's clock
cat >"$W/stamp.py" <<'EOF'
import sys, time
for line in sys.stdin.buffer:
    t = time.time()
    sys.stdout.write("%.6f %s\n" % (t, line.decode("latin-1").rstrip("\r\n")))
    sys.stdout.flush()
EOF
printf '%s\n' nbd_send_request nbd_receive_simple_reply nbd_receive_structured_reply_chunk >"$W/trace-events"

SOCK=$W/nbd.sock
S=$W/store
# boot_one MODE NET: one measurement; appends keys to $line
boot_one() {
    local mode=$1 net=$2 key t0 tp ts tq te m rc=0
    key=${mode}${net:+_$net}
    rm -rf "$S" "$SOCK" "$W/stats.json" "$W/trace.log" "$W/console.txt"
    "$STELLAR" --store "$S" init >/dev/null
    [ "$mode" != local ] || "$STELLAR" --store "$S" import --quiet "$IMG" root
    sync
    m=$(stat -c %s "$ALOG")
    t0=$EPOCHREALTIME
    case $mode in
        lazy | prefetch) "$STELLAR" --store "$S" pull --quiet --lazy "${URL[$net]}" root ;;
        full) "$STELLAR" --store "$S" pull --quiet "${URL[$net]}" root ;;
    esac
    tp=$EPOCHREALTIME
    local pf=()
    [ "$mode" != prefetch ] || pf=(--prefetch)
    "$STELLAR" --store "$S" serve --nbd "unix:$SOCK" --stats "$W/stats.json" "${pf[@]}" 2>"$W/serve.log" &
    sv_pid=$!
    while [ ! -S "$SOCK" ]; do
        kill -0 "$sv_pid" 2>/dev/null || die "stellar serve died: $(cat "$W/serve.log")"
        sleep 0.005
    done
    ts=$EPOCHREALTIME
    timeout 300 qemu-system-x86_64 \
        -machine q35 -accel tcg -cpu max -m 256 -smp 1 \
        -nodefaults -no-reboot -display none -monitor none -serial stdio \
        -kernel "$VM_DIR/vmlinuz" -initrd "$W/guest/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=1 panic=-1" \
        -drive "file=nbd+unix:///root?socket=$SOCK,format=raw,if=none,id=d0,cache=none,readonly=on" \
        -device virtio-blk-pci,drive=d0 \
        -msg timestamp=on -trace "events=$W/trace-events" -D "$W/trace.log" \
        </dev/null 2>"$W/qemu.err" | python3 "$W/stamp.py" >"$W/console.txt" || rc=$?
    te=$EPOCHREALTIME
    stop_pid "$sv_pid"
    sv_pid=''
    [ "$rc" = 0 ] || die "qemu failed ($rc): $(tail -n 5 "$W/qemu.err")"
    grep -q STELLAR_BOOTED "$W/console.txt" ||
        die "the guest did not boot ($key): $(tail -n 20 "$W/console.txt")"
    sleep 0.2
    line+=" $(python3 - "$key" "$t0" "$tp" "$ts" "$te" "$W/trace.log" "$W/console.txt" "$W/stats.json" \
        "$ALOG" "$m" <<'EOF'
import json, re, sys
key, t0, tp, ts, te = sys.argv[1], *map(float, sys.argv[2:6])
trace, console, stats, alog, mark = sys.argv[6:11]
# QEMU log backend: PID@SEC.USEC:event args
first_send = first_reply = None
handle = None
nreads = 0
qemu_start = None
for l in open(trace, errors="replace"):
    m = re.match(r"\d+@(\d+\.\d+):(\S+) (.*)", l)
    if not m:
        continue
    t, ev, args = float(m.group(1)), m.group(2), m.group(3)
    if qemu_start is None:
        qemu_start = t
    if ev == "nbd_send_request":
        ty = re.search(r"type = (\d+)", args)
        if ty and ty.group(1) == "0":
            nreads += 1
            if first_send is None:
                first_send = t
                handle = re.search(r"handle = (\d+)", args).group(1)
    elif handle and first_reply is None and re.search(r"handle = %s\b" % handle, args):
        first_reply = t
mk = {}
for l in open(console, errors="replace"):
    p = l.split(" ", 1)
    for name in ("STELLAR_INIT", "STELLAR_VDA", "STELLAR_MOUNTED", "STELLAR_BOOTED"):
        if name in p[1] and name not in mk:
            mk[name] = float(p[0])
st = json.load(open(stats))["cache"]
blobs = nbytes = 0
with open(alog, "rb") as f:
    f.seek(int(mark))
    for l in f.read().decode().splitlines():
        x = l.split()
        if x[4].startswith("/st/blobs/"):
            blobs += 1
            nbytes += int(x[2])
o = {"pull_s": tp - t0, "serve_s": ts - t0, "first_read_send_s": first_send - t0,
     "first_read_s": first_reply - t0, "init_s": mk["STELLAR_INIT"] - t0,
     "vda_s": mk["STELLAR_VDA"] - t0, "mounted_s": mk["STELLAR_MOUNTED"] - t0,
     "booted_s": mk["STELLAR_BOOTED"] - t0, "qemu_exit_s": te - t0,
     "boot_only_s": mk["STELLAR_BOOTED"] - ts, "nbd_reads": nreads,
     "daemon_loads": st["loads"], "daemon_bytes_loaded": st["bytes_loaded"],
     "blobs_fetched": blobs, "blob_bytes_fetched": nbytes}
print(" ".join("%s_%s=%s" % (key, k, ("%.3f" % v) if isinstance(v, float) else v)
               for k, v in o.items()))
EOF
)"
    log "$key: ${line##*"${key}_pull_s="}" | cut -c1-400 >&2
}

rot() { local n=$1; shift; local a=("$@") k=$#; for ((q = 0; q < k; q++)); do printf '%s\n' "${a[(q + n) % k]}"; done; }
MODES=(local: lazy:lan full:lan lazy:cdn full:cdn prefetch:cdn)
warm "$IMG"
: >"$W/runs"
for ((r = 0; r < n_runs; r++)); do
    log "== lazyboot: run $((r + 1))/$n_runs"
    line=""
    mapfile -t order < <(rot "$r" "${MODES[@]}")
    for c in "${order[@]}"; do boot_one "${c%%:*}" "${c##*:}"; done
    echo "run:$line" >>"$W/runs"
done

used=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["bytes_uploaded"])' "$pub")
line="lazyboot: date=$(date -u +%Y-%m-%dT%H:%MZ) rev=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
line+=" build=$(bin_build) runs=$n_runs delay_ms=$DELAY_MS image_bytes=$(fsize "$IMG") image_data_bytes=$(($(du -B1 "$IMG" | cut -f1)))"
line+=" published_blob_bytes=$used published_chunks=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["chunks"])' "$pub")"
line+=" kernel=$(cat "$VM_DIR/kver") qemu=$(qemu-system-x86_64 --version | awk 'NR == 1 { print $4 }')"
line+=" $(python3 - "$W/runs" <<'EOF'
import statistics, sys
runs = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in open(sys.argv[1])]
med = {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}
print(" ".join("%s=%s" % (k, ("%d" % v) if v == int(v) and abs(v) >= 1e6 else "%.6g" % v)
               for k, v in med.items()))  # bytes exact
EOF
)"
echo "$line"
