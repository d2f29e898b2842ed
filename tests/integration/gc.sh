#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# gc frees exactly the chunks no image uses and gives their space back:
# shared chunks survive the removal of one of their images, pack bytes
# shrink to the live data, and reference counts stay exact (fsck).
. "$(dirname "$0")/../lib/functions.sh"

st init --zstd-level 1 >/dev/null
head -c $((4883 * 4096)) /dev/urandom >"$TMP/x"
head -c $((4883 * 4096)) /dev/urandom >"$TMP/y"
# 4 KiB-aligned sizes: image mode dedups at block alignment
cat "$TMP/x" "$TMP/y" >"$TMP/xy.img"     # shares everything with x and y
cp "$TMP/x" "$TMP/x.img"
cp "$TMP/y" "$TMP/y.img"
st import --quiet "$TMP/x.img" x
st import --quiet "$TMP/y.img" y
st import --quiet "$TMP/xy.img" xy
s0=$(st stats --json)
st rm x y
out=$(st gc --json)
# only the few chunks around the x|y seam differ between x, y and xy
[ "$(json_field "$out" chunks_freed)" -le 10 ] || fail "gc freed chunks xy still uses: $out"
st export xy "$TMP/out" && cmp "$TMP/out" "$TMP/xy.img" || fail "xy damaged by gc"
fsck_clean
st rm xy
out=$(st gc --json)
[ "$(json_field "$out" chunks_freed)" -gt 1000 ] || fail "gc freed too little: $out"
s1=$(st stats --json)
[ "$(json_field "$s1" chunks)" = 0 ] || fail "chunks left: $s1"
[ "$(json_field "$s1" pack_bytes)" -lt 100000 ] || fail "pack bytes not reclaimed: $s1"
[ "$(du -sb "$STELLAR_STORE/packs" | cut -f1)" -lt 1000000 ] || fail "pack files not shrunk"
# gc on a clean store is a no-op
out=$(st gc --json)
[ "$(json_field "$out" packs_rewritten)" = 0 ] || fail "gc rewrote packs of a clean store"
fsck_clean
echo ok
