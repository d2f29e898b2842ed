#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Damaged stores and bad arguments give a clear error naming the file and
# the offset, never a crash: corrupt and truncated packs, manifests and
# index, unknown format versions, missing and unreadable images. fsck
# reports the damage; gc never frees a referenced chunk because of it.
. "$(dirname "$0")/../lib/functions.sh"
requires b3sum

expect_fail() { # expect_fail PATTERN CMD...: CMD exits 1 (not a crash) and says PATTERN
        local pat=$1
        shift
        set +e
        "$@" >"$TMP/out" 2>&1
        local rc=$?
        set -e
        [ $rc -eq 1 ] || { cat "$TMP/out"; fail "'$*' exited $rc, expected 1"; }
        grep -q -- "$pat" "$TMP/out" || { cat "$TMP/out"; fail "'$*' did not say '$pat'"; }
}

st init >/dev/null
head -c 3000000 /dev/urandom >"$TMP/a.img"
head -c 3000000 /dev/urandom >"$TMP/b.img"
st import --quiet "$TMP/a.img" a
st import --quiet "$TMP/b.img" b
cp -a "$STELLAR_STORE" "$TMP/good"
restore() { rm -rf "$STELLAR_STORE"; cp -a "$TMP/good" "$STELLAR_STORE"; }

# missing and unreadable images, bad names
expect_fail "cannot open image" st import "$TMP/nope.img" x
expect_fail "not a regular file or block device" st import "$TMP" x
expect_fail "invalid image name" st import "$TMP/a.img" "../x"
expect_fail "exists" st import "$TMP/a.img" a
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
        chmod 000 "$TMP/b.img"
        cp -a "$STELLAR_STORE" "$TMP/nobody-store"
        chmod -R a+rwX "$TMP/nobody-store" "$TMP"
        chmod 000 "$TMP/b.img"
        set +e
        setpriv --reuid=65534 --regid=65534 --clear-groups "$STELLAR" --store "$TMP/nobody-store" \
                import "$TMP/b.img" c >"$TMP/out" 2>&1
        rc=$?
        set -e
        [ $rc = 1 ] && grep -q "Permission denied" "$TMP/out" || { cat "$TMP/out"; fail "unreadable image"; }
        chmod 644 "$TMP/b.img"
fi

packs=("$STELLAR_STORE"/packs/*.pack)
pack=${packs[0]}

# a chunk whose bytes do not match its hash: fsck names pack and offset, export refuses
restore
printf '\xff\xff\xff\xff' | dd of="$pack" bs=1 seek=5000 conv=notrunc status=none
expect_fail "packs/.*pack:[0-9]*: chunk does not match its hash" st fsck
set +e; st export a "$TMP/o1" >/dev/null 2>&1; ra=$?; st export b "$TMP/o2" >/dev/null 2>&1; rb=$?; set -e
[ $((ra + rb)) -ge 1 ] || fail "export of a corrupt chunk succeeded"
bad=a; [ $ra -ne 0 ] || bad=b
expect_fail "export failed: $bad at offset [0-9]*: chunk is damaged" st export $bad "$TMP/o1"
st gc --quiet # damage must not make gc free anything referenced
[ "$(json_field "$(st stats --json)" chunks)" = "$(json_field "$(st --store "$TMP/good" stats --json)" chunks)" ] ||
        fail "gc freed chunks of a damaged store"

# a damaged record header in the middle of a pack
restore
printf 'XXXX' | dd of="$pack" bs=1 seek=32 conv=notrunc status=none
expect_fail "bad record magic" st fsck

# a truncated pack
restore
truncate -s 100000 "$pack"
expect_fail "pack is shorter than the index says" st fsck

# a truncated and a bit-flipped manifest; a damaged ref
man_a() { echo "$STELLAR_STORE/manifests/$(json_field "$(st --store "$TMP/good" info --json a)" manifest)"; }
restore
truncate -s 100 "$(man_a)"
expect_fail "manifests/[0-9a-f]*:0: manifest bytes do not match its name (needed by a)" st fsck
expect_fail "manifests/[0-9a-f]*: manifest bytes do not match its name" st info a
expect_fail "manifest" st export a "$TMP/o"
st export b "$TMP/o" && cmp "$TMP/o" "$TMP/b.img" || fail "undamaged image b unreadable"
restore
printf 'Z' | dd of="$(man_a)" bs=1 seek=80 conv=notrunc status=none
expect_fail "do not match its name" st info a
restore
printf 'Z' | dd of="$STELLAR_STORE/refs/a" bs=1 seek=30 conv=notrunc status=none
expect_fail "refs/a at offset 104: ref checksum mismatch" st info a
expect_fail "refs/a:104: ref checksum mismatch" st fsck
restore
truncate -s 50 "$STELLAR_STORE/refs/a"
expect_fail "refs/a at offset 50: ref truncated" st export a "$TMP/o"

# unknown versions: manifest, pack, index, store format
restore
printf '\x07' | dd of="$STELLAR_STORE/refs/a" bs=1 seek=8 conv=notrunc status=none
expect_fail "unknown ref format version" st info a
restore
printf '\x07' | dd of="$pack" bs=1 seek=8 conv=notrunc status=none
expect_fail "unknown pack format version" st fsck
restore
printf '\x07' | dd of="$STELLAR_STORE/index" bs=1 seek=8 conv=notrunc status=none
expect_fail "index at offset 8: unknown index format version" st stats
restore
printf '\x07' | dd of="$STELLAR_STORE/format" bs=1 seek=8 conv=notrunc status=none
expect_fail "format at offset 8: unknown store format version" st ls

# a damaged index is rebuilt from the packs alone
restore
printf 'garbage' | dd of="$STELLAR_STORE/index" bs=1 seek=200 conv=notrunc status=none
st export a "$TMP/o" && cmp "$TMP/o" "$TMP/a.img" || fail "rebuild from packs (read-only)"
st gc --quiet
fsck_clean
rm -f "$STELLAR_STORE/index"
st export b "$TMP/o" && cmp "$TMP/o" "$TMP/b.img" || fail "rebuild after the index was deleted"

# not a store at all
expect_fail "no store here" st --store "$TMP/empty" ls
mkdir -p "$TMP/junk" && echo hi >"$TMP/junk/format"
expect_fail "format at offset 0: not a Stellarium store" st --store "$TMP/junk" ls
echo ok
