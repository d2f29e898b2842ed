#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Real guests booted from the store: `stellar serve` exports an image and a
# clone of it over NBD on a unix socket, and a Linux guest (QEMU/TCG, q35,
# virtio-blk; tests/vm/) boots with each as its disk. Guest 1 hashes the whole
# read-only image export: its sha256 must be the host's. Guest 2 writes a
# marker block at 1 MiB of the writable volume and reads it back. The daemon
# is then stopped with SIGTERM: it must exit 0, and `stellar export` of the
# volume must hold the marker and nothing else changed, the image must be
# untouched, and fsck clean. The guest's kernel is Debian's cloud kernel
# (apt-get download, cached in $STELLAR_VM_DIR, see tests/vm/build-initramfs.sh).
. "$(dirname "$0")/../lib/functions.sh"
requires qemu-system-x86_64 mkfs.ext4 sha256sum
vm_guest
SOCK=$TMP/nbd.sock
MIB=$((1 << 20))

# The 64 MiB guest disk (guest_disk: random, repeated, ext4, zeros).
guest_disk "$TMP/disk.img"
host_sha=$(sha256sum "$TMP/disk.img" | cut -d' ' -f1)

st init >/dev/null
st import --quiet "$TMP/disk.img" base
st clone base vol

# "$STELLAR", not st: $! must be the daemon's pid, not a subshell's
"$STELLAR" serve --nbd "unix:$SOCK" --pidfile "$TMP/serve.pid" --stats "$TMP/stats.json" \
        2>"$TMP/serve.err" &
serve_pid=$!
_cleanup_pids+=("$serve_pid")
for _ in $(seq 100); do
        [ -S "$SOCK" ] && break
        kill -0 "$serve_pid" 2>/dev/null || daemon_fail "stellar serve exited at start"
        sleep 0.1
done
[ -S "$SOCK" ] || daemon_fail "no socket after 10 s"
[ "$(cat "$TMP/serve.pid")" = "$serve_pid" ] || daemon_fail "pidfile does not hold the daemon's pid"

# boot NAME TEST [readonly]: the guest's marker lines in $TMP/NAME-TEST.out
boot() {
        local out=$TMP/$1-$2.out
        VM_LOG=$TMP/$1-$2.console "$VM/boot.sh" "$SOCK" "$@" >"$out" ||
                { cat "$out" >&2; daemon_fail "guest ($2 on $1) failed"; }
        cat "$out"
}
# marker OUT NAME: the value of the guest's line "NAME value"
marker() { awk -v m="$2" '$1 == m { print $2; exit }' "$1"; }

# guest 1: reads the whole image
boot base read readonly
o=$TMP/base-read.out
[ "$(marker "$o" STELLAR_VDA_SIZE)" = $((64 * MIB)) ] || daemon_fail "guest saw a disk of the wrong size"
[ "$(marker "$o" STELLAR_VDA_SHA256)" = "$host_sha" ] ||
        daemon_fail "guest's sha256 of the image $(marker "$o" STELLAR_VDA_SHA256) is not the host's $host_sha"
kill -0 "$serve_pid" 2>/dev/null || daemon_fail "stellar serve died after guest 1"

# guest 2: writes the marker block to the volume and reads it back
boot vol write
o=$TMP/vol-write.out
marker_sha=$(sha256sum "$STELLAR_VM_DIR/marker.bin" | cut -d' ' -f1)
[ "$(marker "$o" STELLAR_WROTE)" = "$marker_sha" ] || daemon_fail "guest wrote an unexpected block"
[ "$(marker "$o" STELLAR_READBACK)" = "$marker_sha" ] || daemon_fail "guest read back something else than it wrote"

# the daemon counted both guests (its stats file is rewritten every second)
for _ in $(seq 30); do
        n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["connections_total"])' \
                "$TMP/stats.json" 2>/dev/null || echo 0)
        [ "$n" -ge 2 ] && break
        sleep 0.1
done
[ "$n" -ge 2 ] || daemon_fail "stats count $n connections, expected at least 2"

# stop the daemon cleanly
kill "$serve_pid"
rc=0
wait "$serve_pid" || rc=$?
_cleanup_pids=()
[ $rc = 0 ] || daemon_fail "stellar serve exited $rc on SIGTERM"
[ ! -e "$SOCK" ] || daemon_fail "socket left behind"
[ ! -e "$TMP/serve.pid" ] || daemon_fail "pidfile left behind"

# the volume holds the guest's block and nothing else changed
cp "$TMP/disk.img" "$TMP/expected.img"
dd if="$STELLAR_VM_DIR/marker.bin" of="$TMP/expected.img" bs=4096 seek=$((MIB / 4096)) conv=notrunc status=none
st export vol "$TMP/vol.img"
cmp "$TMP/vol.img" "$TMP/expected.img" || daemon_fail "exported volume differs from the image plus the guest's write"
st export base "$TMP/base.img"
cmp "$TMP/base.img" "$TMP/disk.img" || daemon_fail "the image changed"
fsck_clean
sed 's/^/serve: /' "$TMP/serve.err"
echo ok
