#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Real filesystem images go in and come out byte-identical and sparse: ext4
# built from this machine's files, a modified copy (which must dedup against
# the first), a FAT image, a partitioned disk, and a file whose size is not a
# multiple of 4 KiB. Also in stream mode.
. "$(dirname "$0")/../lib/functions.sh"
requires mkfs.ext4 b3sum

make_ext4 "$TMP/a.img" 256M /usr/share/doc /etc /usr/lib/x86_64-linux-gnu/gconv
# B: A's files plus more, as a package install would change a root image
mkdir -p "$TMP/root-b"
cp -a /usr/share/doc /etc /usr/lib/x86_64-linux-gnu/gconv "$TMP/root-b/" 2>/dev/null || true
cp -a /usr/share/perl5 "$TMP/root-b/" 2>/dev/null || cp -a /usr/share/zoneinfo "$TMP/root-b/"
mkfs.ext4 -q -F -d "$TMP/root-b" "$TMP/b.img" 256M
rm -rf "$TMP/root-b"
# a partitioned disk with an ext4 partition written at 1 MiB
truncate -s 64M "$TMP/disk.img"
printf 'label: gpt\nstart=2048, size=100000, type=linux\n' | sfdisk -q "$TMP/disk.img" 2>/dev/null || true
dd if="$TMP/a.img" of="$TMP/disk.img" bs=1M seek=1 count=40 conv=notrunc,sparse status=none
# odd size, random tail
head -c 10000001 /dev/urandom >"$TMP/odd.img"
images="a b disk odd"
if command -v mkfs.vfat >/dev/null; then
        truncate -s 64M "$TMP/fat.img"
        mkfs.vfat "$TMP/fat.img" >/dev/null && command -v mcopy >/dev/null &&
                mcopy -s -i "$TMP/fat.img" /etc/ssl ::/ 2>/dev/null || true
        images="$images fat"
fi

for mode in image stream; do
        rm -rf "$STELLAR_STORE"
        st init --mode $mode >/dev/null
        for i in $images; do
                st import --quiet "$TMP/$i.img" "$i"
                st export "$i" "$TMP/$i.out"
                cmp "$TMP/$i.img" "$TMP/$i.out" || fail "$mode: $i differs after export"
                [ "$(b3sum --no-names "$TMP/$i.img")" = "$(b3sum --no-names "$TMP/$i.out")" ] || fail "b3sum"
                # sparse where the source was zero
                used=$(du -k "$TMP/$i.out" | cut -f1)
                src=$(du -k "$TMP/$i.img" | cut -f1)
                [ "$used" -le $((src + 64)) ] || fail "$mode: $i export not sparse ($used KiB vs $src KiB)"
                rm -f "$TMP/$i.out"
        done
        fsck_clean
        # B after A: B's new data is far less than B's data
        sa=$(json_field "$(st info --json b)" data_bytes)
        out=$(st import --json "$TMP/b.img" b-again)
        [ "$(json_field "$out" new_chunks)" = 0 ] || fail "$mode: same image stored twice"
done
# Dedup of the modified copy in image mode, measured against B's data
rm -rf "$STELLAR_STORE"
st init >/dev/null
st import --quiet "$TMP/a.img" a
out=$(st import --json "$TMP/b.img" b)
new=$(json_field "$out" new_bytes)
data=$(json_field "$out" data_bytes)
echo "B after A: $new new bytes of $data"
[ "$new" -lt $((data * 6 / 10)) ] || fail "B did not dedup against A ($new of $data new)"
# a block device, through a loop device, when we may make one
if losetup -f >/dev/null 2>&1 && loop=$(losetup -f --show -r "$TMP/a.img" 2>/dev/null); then
        _cleanup_loop() { losetup -d "$loop" 2>/dev/null || true; }
        st import --quiet "$loop" a-dev || { _cleanup_loop; fail "import from block device"; }
        _cleanup_loop
        st export a-dev "$TMP/a-dev.out"
        cmp "$TMP/a.img" "$TMP/a-dev.out" || fail "block device round trip"
        [ "$(json_field "$(st import --json "$TMP/a.img" a-file)" new_chunks)" = 0 ] ||
                fail "block device and file chunked differently"
fi
fsck_clean
echo ok
