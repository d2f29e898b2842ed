#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Guests boot from lazily pulled images. The 64 MiB disk of vm-boot.sh (16
# MiB random, 8 MiB repeating it, 24 MiB of ext4, 16 MiB of zeros) is imported
# on host 1 and published to a directory that nginx serves on 127.0.0.1
# (start_nginx). Each lazy pull (`stellar pull --lazy` into a fresh store)
# must fetch no blob and leave the store's packs under 64 KiB, with the URL
# in sources/base. Then `stellar serve` serves the store over NBD and a Linux
# guest (QEMU/TCG, tests/vm/boot.sh) boots from it; chunks are fetched on
# demand. After each boot, with the daemon stopped by SIGTERM (exit 0):
# nginx's access log shows every blob request answered 200 and no blob
# requested twice, although reads came concurrently, and the store holds
# exactly the chunks fetched; `stellar fsck` exits 0. A full `stellar pull`
# (not lazy) of the same URL then fetches exactly the chunks the boot did not
# fetch (chunks - fetched, and nginx saw none of the boot's blobs again),
# removes sources/base, and base exports byte-identical with a clean fsck.
#   Host 2, as vm-boot.sh's first guest: the read-only image; the guest
#   hashes the whole disk and its sha256 must be the host's, while
#   `qemu-img compare` reads the same export over a second connection and
#   must find it equal to the original. The full pull after it fetches 0.
#   Host 3: a writable clone of the lazy image; the guest writes a marker
#   block at 1 MiB and reads it back, reading a small part of the disk; the
#   full pull fetches the rest, and the volume exports as the image plus the
#   guest's block.
. "$(dirname "$0")/../lib/functions.sh"
requires qemu-system-x86_64 qemu-img mkfs.ext4 sha256sum curl python3
[ -x /usr/sbin/nginx ] || { echo "SKIP: nginx not installed"; exit 77; }
vm_guest
MIB=$((1 << 20))
H1=$TMP/host1 H2=$TMP/host2 H3=$TMP/host3 WWW=$TMP/www
LOG=$TMP/nginx-access.log

# blob_lines FROM_LINE: the /blobs/ lines of nginx's log from line FROM_LINE on
blob_lines() { tail -n +"$1" "$LOG" | awk '$2 ~ /\/blobs\//' || true; }

guest_disk "$TMP/disk.img"
host_sha=$(sha256sum "$TMP/disk.img" | cut -d' ' -f1)

st --store "$H1" import --quiet "$TMP/disk.img" base
st --store "$H1" publish --quiet base "$WWW/tree"
start_nginx "$WWW"
URL=http://127.0.0.1:$NGINX_PORT/tree

# lazy_pull STORE: `pull --lazy` of base into the fresh STORE: the manifests
# and the name, no blob fetched, no chunk data. Sets N_CHUNKS.
lazy_pull() {
        local out packs
        out=$(st --store "$1" pull --json --lazy "$URL" base)
        [ "$(json_field "$out" lazy)" = True ] || fail "not reported lazy: $out"
        [ "$(json_field "$out" fetched)" = 0 ] || fail "a lazy pull fetched blobs: $out"
        N_CHUNKS=$(json_field "$out" chunks)
        packs=$(find "$1/packs" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
        [ "$packs" -lt 65536 ] || fail "after a lazy pull the store's packs hold $packs bytes"
        [ -s "$1/sources/base" ] || fail "no sources/base after a lazy pull"
        echo "lazy pull into $(basename "$1"): $N_CHUNKS chunks, packs $packs bytes"
}

# boot EXPORT TEST [readonly]: serve $STELLAR_STORE, boot the guest on EXPORT
# (tests/vm/boot.sh), stop the daemon (it must exit 0 on SIGTERM). The
# guest's marker lines go to $TMP/guest.out; nginx's blob lines of the
# boot to $TMP/boot-blobs.log.
boot() {
        local from rc=0
        start_serve
        from=$(($(wc -l <"$LOG") + 1))
        if [ "$2" = read ]; then
                # a second reader on another connection, at the same time
                qemu-img compare -f raw -F raw "$TMP/disk.img" "$(U "$1")" >"$TMP/compare.out" 2>&1 &
                cmp_pid=$!
        fi
        VM_LOG=$TMP/guest-$2.console "$VM/boot.sh" "$SOCK" "$@" >"$TMP/guest.out" ||
                { cat "$TMP/guest.out" >&2; daemon_fail "the guest ($2 on $1) failed on the lazily pulled image"; }
        if [ "$2" = read ]; then
                wait "$cmp_pid" ||
                        { cat "$TMP/compare.out" >&2; daemon_fail "qemu-img compare of the export, read with the guest, differs"; }
        fi
        kill -0 "$SERVE" 2>/dev/null || daemon_fail "stellar serve died during the boot"
        kill "$SERVE"
        wait "$SERVE" || rc=$?
        [ $rc = 0 ] || daemon_fail "stellar serve exited $rc on SIGTERM"
        blob_lines "$from" >"$TMP/boot-blobs.log"
}
marker() { awk -v m="$1" '$1 == m { print $2; exit }' "$TMP/guest.out"; }

# fetched_once: what the boot fetched: each blob once, all answered 200,
# all kept in $STELLAR_STORE; fsck passes. Sets N_REQ.
fetched_once() {
        N_REQ=$(wc -l <"$TMP/boot-blobs.log")
        [ "$N_REQ" -gt 0 ] || daemon_fail "the guest read its disk, but nginx served no blob"
        awk '$3 != 200' "$TMP/boot-blobs.log" >"$TMP/non200"
        [ ! -s "$TMP/non200" ] || { head "$TMP/non200" >&2; daemon_fail "blob requests not answered 200 during the boot"; }
        awk '{ print $2 }' "$TMP/boot-blobs.log" | sort | uniq -d >"$TMP/dups"
        if [ -s "$TMP/dups" ]; then
                awk '{ print $2 }' "$TMP/boot-blobs.log" | sort | uniq -c | sort -rn | head -5 >&2
                daemon_fail "$(wc -l <"$TMP/dups") blobs were fetched more than once during the boot ($N_REQ requests)"
        fi
        held=$(json_field "$(st stats --json)" chunks)
        [ "$held" = "$N_REQ" ] || fail "the boot fetched $N_REQ blobs, but the store holds $held chunks"
        st fsck >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out" >&2; fail "fsck after the boot found errors"; }
}

# full_pull: `stellar pull` (not lazy) into $STELLAR_STORE fetches exactly
# the N_CHUNKS - N_REQ chunks the boot did not fetch, and none of the blobs
# the boot fetched; the source is gone; base exports byte-identical.
full_pull() {
        local from out again
        from=$(($(wc -l <"$LOG") + 1))
        out=$(st pull --json "$URL" base)
        FETCHED=$(json_field "$out" fetched)
        [ "$FETCHED" = $((N_CHUNKS - N_REQ)) ] ||
                fail "the full pull fetched $FETCHED blobs; $((N_CHUNKS - N_REQ)) were not read by the boot"
        [ "$(json_field "$out" present)" = "$N_REQ" ] ||
                fail "the full pull found $(json_field "$out" present) chunks present, not $N_REQ"
        [ "$(blob_lines "$from" | wc -l)" = "$FETCHED" ] || fail "nginx served $(blob_lines "$from" | wc -l) blobs to a pull of $FETCHED"
        blob_lines "$from" | awk '{ print $2 }' | sort >"$TMP/pull.uris"
        awk '{ print $2 }' "$TMP/boot-blobs.log" | sort >"$TMP/boot.uris"
        again=$(comm -12 "$TMP/pull.uris" "$TMP/boot.uris" | wc -l)
        [ "$again" = 0 ] || fail "the full pull requested $again blobs the boot had fetched"
        [ ! -e "$STELLAR_STORE/sources/base" ] || fail "the complete image still has a source"
        st export base "$TMP/out.img"
        cmp "$TMP/disk.img" "$TMP/out.img" || fail "the image exported after the boot and the pull differs"
        rm -f "$TMP/out.img"
        fsck_clean
}

# Host 2: the read-only image; the guest hashes all of it.
blobs_before=$(blob_lines 1 | wc -l)
lazy_pull "$H2"
[ "$(blob_lines 1 | wc -l)" = "$blobs_before" ] || fail "nginx served blobs during a lazy pull"
export STELLAR_STORE=$H2
boot base read readonly
[ "$(marker STELLAR_VDA_SIZE)" = $((64 * MIB)) ] || daemon_fail "guest saw a disk of the wrong size"
[ "$(marker STELLAR_VDA_SHA256)" = "$host_sha" ] ||
        daemon_fail "guest's sha256 of the disk $(marker STELLAR_VDA_SHA256) is not the host's $host_sha"
fetched_once
echo "read-only boot: $N_REQ of $N_CHUNKS blobs fetched, each once; fsck exit 0"
full_pull
echo "full pull after it: $FETCHED blobs"

# Host 3: a writable clone of the lazy image; the guest writes one block and
# reads it back, so it reads a small part of the disk, and the full pull
# fetches the rest.
lazy_pull "$H3"
export STELLAR_STORE=$H3
st clone base vol
boot vol write
marker_sha=$(sha256sum "$STELLAR_VM_DIR/marker.bin" | cut -d' ' -f1)
[ "$(marker STELLAR_READBACK)" = "$marker_sha" ] || daemon_fail "guest read back something else than it wrote"
fetched_once
[ "$N_REQ" -lt "$N_CHUNKS" ] || fail "the write guest read every chunk: the test cannot tell what the pull skips"
echo "write boot on a clone: $N_REQ of $N_CHUNKS blobs fetched, each once; fsck exit 0"
full_pull
echo "full pull after it: $FETCHED blobs"
cp "$TMP/disk.img" "$TMP/expected.img"
dd if="$STELLAR_VM_DIR/marker.bin" of="$TMP/expected.img" bs=4096 seek=$((MIB / 4096)) conv=notrunc status=none
st export vol "$TMP/vol.img"
cmp "$TMP/vol.img" "$TMP/expected.img" || fail "the volume is not the image plus the guest's block"
fsck_clean
echo "vm-boot-lazy: ok"
