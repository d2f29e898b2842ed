#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# vhost-user-blk: `stellar serve --vhost-user-blk PATH=NAME` gives a VMM a
# virtio-blk disk whose requests the daemon serves from the guest's shared
# memory. Real guests (QEMU/TCG, tests/vm/) boot with it:
#   - q35, one queue: the whole read-only image hashed, sha256 = the host's;
#   - q35, two queues: a marker block written to a volume (with a flush) and
#     read back from the disk, not the guest's cache;
#   - microvm (virtio-mmio): the image hashed again;
#   - a volume attached read-only (:ro): the guest's write fails, the
#     volume is unchanged.
# Then tests/tools/vhost-hostile.py, a front-end of ours, checks a correct
# read and every hostile case (bad messages, memory, rings and chains; a
# second VMM on a busy socket; one that vanishes mid-request), the daemon
# serving correct reads after each. `stellar attach` adds a socket while the
# daemon runs (a guest boots from it), `stellar detach` ends it; both refuse
# what they cannot do, and attach says exit 3 with no daemon. The daemon is
# killed -9 under a guest reading a 256 MiB image and started again: QEMU
# reconnects and the guest's hash is right. The same store is served over NBD at
# the same time (one export table): qemu-img reads the volume's marker
# through it. The daemon stops on SIGTERM with exit 0; the exported volume
# holds the marker and nothing else changed; fsck is clean.
. "$(dirname "$0")/../lib/functions.sh"
requires qemu-system-x86_64 qemu-img mkfs.ext4 sha256sum
vm_guest
MIB=$((1 << 20))

# The 64 MiB guest disk (guest_disk: random, repeated, ext4, zeros).
guest_disk "$TMP/disk.img"
host_sha=$(sha256sum "$TMP/disk.img" | cut -d' ' -f1)

st init >/dev/null
st import --quiet "$TMP/disk.img" base
st clone base vol
st clone base rovol

# a bigger image for the restart under a reading guest
head -c $((256 * MIB)) /dev/urandom >"$TMP/big.img"
st import --quiet "$TMP/big.img" big
big_sha=$(sha256sum "$TMP/big.img" | cut -d' ' -f1)
rm -f "$TMP/big.img"

start_daemon() {
        rm -f "$TMP/hostile.sock"
        "$STELLAR" serve --nbd "unix:$TMP/nbd.sock" --tls=off \
                --vhost-user-blk "$TMP/base.sock=base" --vhost-user-blk "$TMP/vol.sock=vol" \
                --vhost-user-blk "$TMP/ro.sock=rovol:ro" --vhost-user-blk "$TMP/big.sock=big" \
                --vhost-user-blk "$TMP/hostile.sock=base" --vhost-queues 2 2>>"$TMP/serve.err" &
        serve_pid=$!
        _cleanup_pids+=("$serve_pid")
        for _ in $(seq 100); do
                [ -S "$TMP/hostile.sock" ] && [ -S "$TMP/nbd.sock" ] && break
                kill -0 "$serve_pid" 2>/dev/null || daemon_fail "stellar serve exited at start"
                sleep 0.1
        done
        [ -S "$TMP/hostile.sock" ] || daemon_fail "no vhost-user socket after 10 s"
}
start_daemon

# boot SOCK NAME TEST [ENV...]: the guest's marker lines in $TMP/NAME-TEST.out
boot() {
        local sock=$1 name=$2 test=$3
        shift 3
        local out=$TMP/$name-$test.out
        env VM_DISK=vhost-user VM_LOG="$TMP/$name-$test.console" "$@" \
                "$VM/boot.sh" "$sock" "$name" "$test" >"$out"
}
marker() { awk -v m="$2" '$1 == m { print $2; exit }' "$1"; }

# the image, read whole (q35, one queue)
boot "$TMP/base.sock" base read || { cat "$TMP/base-read.out" >&2; daemon_fail "guest reading base failed"; }
o=$TMP/base-read.out
[ "$(marker "$o" STELLAR_VDA_SIZE)" = $((64 * MIB)) ] || daemon_fail "guest saw a disk of the wrong size"
[ "$(marker "$o" STELLAR_VDA_SHA256)" = "$host_sha" ] ||
        daemon_fail "guest's sha256 $(marker "$o" STELLAR_VDA_SHA256) is not the host's $host_sha"

# a volume written (q35, two queues)
boot "$TMP/vol.sock" vol write VM_QUEUES=2 || { cat "$TMP/vol-write.out" >&2; daemon_fail "guest writing vol failed"; }
o=$TMP/vol-write.out
marker_sha=$(sha256sum "$STELLAR_VM_DIR/marker.bin" | cut -d' ' -f1)
[ "$(marker "$o" STELLAR_WROTE)" = "$marker_sha" ] || daemon_fail "guest wrote an unexpected block"
[ "$(marker "$o" STELLAR_READBACK)" = "$marker_sha" ] || daemon_fail "guest read back something else than it wrote"

# the same export over NBD at once: the block is there
qemu-img convert -f raw -O raw "nbd+unix:///vol?socket=$TMP/nbd.sock" "$TMP/vol-nbd.img" ||
        daemon_fail "qemu-img cannot read vol over NBD"
cmp -s <(dd if="$TMP/vol-nbd.img" bs=4096 skip=$((MIB / 4096)) count=1 status=none) "$STELLAR_VM_DIR/marker.bin" ||
        daemon_fail "the guest's block is not what NBD reads of vol"

# microvm, virtio-mmio
boot "$TMP/base.sock" base read VM_MACHINE=microvm ||
        { cat "$TMP/base-read.out" >&2; daemon_fail "microvm guest reading base failed"; }
[ "$(marker "$TMP/base-read.out" STELLAR_VDA_SHA256)" = "$host_sha" ] || daemon_fail "microvm guest's sha256 differs"

# a volume attached read-only: the write fails in the guest
if boot "$TMP/ro.sock" rovol write; then daemon_fail "a guest wrote to a read-only attached volume"; fi
grep -q "STELLAR_ERROR" "$TMP/rovol-write.console" || daemon_fail "the read-only guest did not report its failed write"

# a hostile front-end
/usr/bin/python3 "$ST_TESTS/tools/vhost-hostile.py" "$TMP/hostile.sock" "$TMP/disk.img" base >"$TMP/hostile.out" 2>&1 ||
        { cat "$TMP/hostile.out" >&2; daemon_fail "vhost-hostile.py found a case that did not hold"; }
cat "$TMP/hostile.out"
kill -0 "$serve_pid" 2>/dev/null || daemon_fail "stellar serve died"

# kill -9 of the daemon under a guest reading its disk: QEMU reconnects to
# the restarted daemon (reconnect=1) and hands back the inflight buffer the
# first daemon made (GET_INFLIGHT_FD at the first start, SET_INFLIGHT_FD at
# each), the requests it marks in flight are served again, and the guest's
# hash is right, with no I/O error
before=$(grep -c "vhost-user-blk big: .* attached" "$TMP/serve.err" || true)
inflight_before=$(grep -c "vhost-user-blk big .*: inflight buffer set" "$TMP/serve.err" || true)
boot "$TMP/big.sock" big read VM_RECONNECT=1 VM_TIMEOUT=200 &
guest=$!
for _ in $(seq 300); do
        [ "$(grep -c "vhost-user-blk big: .* attached" "$TMP/serve.err" || true)" -gt "$before" ] && break
        sleep 0.1
done
sleep 1.5 # the guest is reading
kill -0 "$guest" 2>/dev/null || daemon_fail "the guest finished before the kill: make the image bigger"
kill -9 "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
sleep 0.5
start_daemon
wait "$guest" || { cat "$TMP/big-read.out" >&2; daemon_fail "the guest failed across the daemon's restart"; }
[ "$(marker "$TMP/big-read.out" STELLAR_VDA_SHA256)" = "$big_sha" ] ||
        daemon_fail "the guest's sha256 across the daemon's restart is not the image's"
[ "$(grep -c "vhost-user-blk big: .* attached" "$TMP/serve.err")" -ge $((before + 2)) ] ||
        daemon_fail "the guest did not reconnect to the restarted daemon"
[ "$(grep -c "vhost-user-blk big .*: inflight buffer set" "$TMP/serve.err")" -ge $((inflight_before + 2)) ] ||
        daemon_fail "QEMU did not set the inflight buffer at both starts"
if grep -aq "I/O error" "$TMP/big-read.console"; then daemon_fail "the guest saw an I/O error"; fi
fsck_clean_live() { st fsck >"$TMP/fsck.out" || { cat "$TMP/fsck.out"; daemon_fail "fsck after the kill"; }; }
fsck_clean_live

# attach and detach while the daemon runs
cp "$TMP/disk.img" "$TMP/expected.img"
dd if="$STELLAR_VM_DIR/marker.bin" of="$TMP/expected.img" bs=4096 seek=$((MIB / 4096)) conv=notrunc status=none
vol_sha=$(sha256sum "$TMP/expected.img" | cut -d' ' -f1)
st attach vol --vhost-user-blk "$TMP/late.sock" --readonly >"$TMP/attach.out" || daemon_fail "attach failed"
grep -q "late.sock: vol (read-only)" "$TMP/attach.out" || daemon_fail "attach said: $(cat "$TMP/attach.out")"
[ -S "$TMP/late.sock" ] || daemon_fail "attach made no socket"
boot "$TMP/late.sock" vol read || { cat "$TMP/vol-read.out" >&2; daemon_fail "guest on an attached socket failed"; }
[ "$(marker "$TMP/vol-read.out" STELLAR_VDA_SHA256)" = "$vol_sha" ] ||
        daemon_fail "the guest on the attached socket read other bytes than the volume holds"
if st attach base --vhost-user-blk "$TMP/late.sock" 2>"$TMP/err"; then daemon_fail "a second attach on one socket succeeded"; fi
grep -q "already serves vol" "$TMP/err" || daemon_fail "no clear error for a taken socket: $(cat "$TMP/err")"
if st attach nosuch --vhost-user-blk "$TMP/x.sock" 2>"$TMP/err"; then daemon_fail "attach of a missing name succeeded"; fi
[ ! -e "$TMP/x.sock" ] || daemon_fail "attach of a missing name made a socket"
st detach "$TMP/late.sock" >/dev/null || daemon_fail "detach failed"
[ ! -e "$TMP/late.sock" ] || daemon_fail "detach left the socket"
if st detach "$TMP/late.sock" 2>"$TMP/err"; then daemon_fail "detach of a socket that is gone succeeded"; fi

kill "$serve_pid"
rc=0
wait "$serve_pid" || rc=$?
_cleanup_pids=()
[ $rc = 0 ] || daemon_fail "stellar serve exited $rc on SIGTERM"
for s in base vol ro big hostile; do [ ! -e "$TMP/$s.sock" ] || daemon_fail "socket $s.sock left behind"; done

st export vol "$TMP/vol.img"
cmp "$TMP/vol.img" "$TMP/expected.img" || daemon_fail "exported volume differs from the image plus the guest's write"
st export rovol "$TMP/rovol.img"
cmp "$TMP/rovol.img" "$TMP/disk.img" || daemon_fail "the read-only attached volume changed"
st export base "$TMP/base.img"
cmp "$TMP/base.img" "$TMP/disk.img" || daemon_fail "the image changed"
fsck_clean
rc=0
st attach vol --vhost-user-blk "$TMP/late.sock" 2>/dev/null || rc=$?
[ $rc = 3 ] || fail "attach with no daemon: exit $rc, not 3"
echo "vhost-user-blk: ok"
