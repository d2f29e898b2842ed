#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# boot.sh SOCK EXPORT read|write [readonly]: boot the test guest of
# build-initramfs.sh under QEMU/TCG (q35, no KVM needed) with one virtio-blk
# disk, the NBD export EXPORT of the server listening on the unix socket SOCK,
# and print the guest's marker lines (STELLAR_...) on stdout.
#   read    the guest prints the size and the sha256 of the whole disk
#   write   the guest writes a marker block at 1 MiB and reads it back
#   readonly  attach the disk read-only (for read-only exports)
# Exit status: 0 when the guest finished its test (STELLAR_DONE), 1 otherwise
# (the tail of the console log is printed on stderr).
# Environment: STELLAR_VM_DIR  kernel + initramfs cache, built on first use
#                              (default ${XDG_CACHE_HOME:-~/.cache}/stellar-vm)
#              VM_LOG          the serial console log (default: a new file in
#                              ${TMPDIR:-/tmp}, kept); QEMU's stderr goes to
#                              VM_LOG.stderr
#              VM_TIMEOUT      seconds before the boot is killed (default 120)
#              VM_DISK         nbd (default): SOCK is an NBD server's socket and
#                              EXPORT its export; vhost-user: SOCK is a
#                              vhost-user-blk back-end's socket (EXPORT names it
#                              in the log only), the guest's memory a shared memfd
#              VM_QUEUES       vhost-user: the device's queues (default 1)
#              VM_RECONNECT    vhost-user: 1 to reconnect to a back-end that went
#                              away (QEMU's chardev reconnect=1)
#              VM_MACHINE      q35 (default) or microvm (virtio-mmio devices)
set -euo pipefail

usage() {
        echo "usage: boot.sh SOCK EXPORT read|write [readonly]" >&2
        exit 2
}
err() {
        echo "boot.sh: $*" >&2
        exit 1
}

if [ $# -lt 3 ] || [ $# -gt 4 ]; then usage; fi
SOCK=$1 EXPORT=$2 TEST=$3 MODE=${4:-}
case $TEST in read | write) ;; *) usage ;; esac
case $MODE in "" | readonly) ;; *) usage ;; esac
# QEMU's option syntax: a comma would split the -drive value
case "$SOCK$EXPORT" in *,*) err "commas in the socket path or export name are not supported" ;; esac
[ -S "$SOCK" ] || err "$SOCK is not a socket (is the server running?)"
command -v qemu-system-x86_64 >/dev/null || err "qemu-system-x86_64 not installed (package qemu-system-x86)"

HERE=$(cd "$(dirname "$0")" && pwd)
VM_DIR=${STELLAR_VM_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/stellar-vm}
"$HERE/build-initramfs.sh" "$VM_DIR" || err "could not build the guest in $VM_DIR"
LOG=${VM_LOG:-$(mktemp "${TMPDIR:-/tmp}/stellar-vm-XXXXXX.log")}
case $LOG in *,*) err "commas in the log path are not supported" ;; esac
: >"$LOG"

ro=
[ "$MODE" = readonly ] && ro=,readonly=on
machine=${VM_MACHINE:-q35}
case $machine in q35 | microvm) ;; *) err "VM_MACHINE is q35 or microvm" ;; esac
bus=pci
append=
if [ "$machine" = microvm ]; then
        bus=device
        # microvm has no PIT calibration: without the TSC's rate a loaded host hangs it
        mhz=$(awk -F: '/^cpu MHz/ { printf "%d", $2; exit }' /proc/cpuinfo)
        append=" tsc_early_khz=$((${mhz:-2000} * 1000))"
fi
case ${VM_DISK:-nbd} in
nbd)
        disk=(-drive "file=nbd+unix:///$EXPORT?socket=$SOCK,format=raw,if=none,id=d0,cache=none$ro"
                -device "virtio-blk-$bus,drive=d0")
        mem=(-m 256)
        ;;
vhost-user)
        # the back-end maps the guest's memory: it must be a shared memfd
        dev=vhost-user-blk-pci
        [ "$bus" = device ] && dev=vhost-user-blk # the virtio-mmio one
        rc_opt=
        [ "${VM_RECONNECT:-0}" = 1 ] && rc_opt=,reconnect=1 # a restarted back-end is reconnected
        disk=(-chardev "socket,id=c0,path=$SOCK$rc_opt" -device "$dev,chardev=c0,num-queues=${VM_QUEUES:-1}")
        mem=(-m 256 -object memory-backend-memfd,id=mem,size=256M,share=on)
        machine="$machine,memory-backend=mem"
        [ "$bus" = device ] && disk+=(-global virtio-mmio.force-legacy=false)
        ;;
*) err "VM_DISK is nbd or vhost-user" ;;
esac

start=$(date +%s%N)
rc=0
timeout "${VM_TIMEOUT:-120}" qemu-system-x86_64 \
        -machine "$machine" -accel tcg -cpu max "${mem[@]}" -smp 1 \
        -nodefaults -no-reboot -display none -monitor none \
        -serial "file:$LOG" \
        -kernel "$VM_DIR/vmlinuz" -initrd "$VM_DIR/initramfs.cpio.gz" \
        -append "console=ttyS0 quiet loglevel=1 panic=-1 stellar.test=$TEST$append" \
        "${disk[@]}" \
        </dev/null >"$LOG.stderr" 2>&1 || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))

# The console has CRLF line ends and SeaBIOS escape codes: grep -a, strip
# what precedes the marker.
grep -a 'STELLAR_[A-Z0-9_]*' "$LOG" | tr -d '\r' | sed 's/^.*\(STELLAR_[A-Z0-9_]*\)/\1/' || true
printf 'boot.sh: %s on %s: qemu exit %d after %d.%03d s (console log %s)\n' \
        "$TEST" "$EXPORT" "$rc" $((ms / 1000)) $((ms % 1000)) "$LOG" >&2

problem=
if [ $rc = 124 ]; then
        problem="the guest did not power off within ${VM_TIMEOUT:-120} s"
elif grep -aq 'STELLAR_ERROR' "$LOG"; then
        problem="the guest reported an error"
elif ! grep -aq "STELLAR_DONE $TEST" "$LOG"; then
        problem="the guest did not finish its test (qemu exit $rc)"
fi
if [ -n "$problem" ]; then
        {
                echo "boot.sh: $problem; last console lines:"
                if [ -s "$LOG" ]; then
                        tail -n 30 "$LOG" | tr -d '\r' | sed 's/^/  | /'
                else
                        echo "  (none: the guest printed nothing)"
                fi
                if [ -s "$LOG.stderr" ]; then
                        echo "boot.sh: qemu stderr:"
                        sed 's/^/  | /' "$LOG.stderr"
                fi
        } >&2
        exit 1
fi
exit 0
