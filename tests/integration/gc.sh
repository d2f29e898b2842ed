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

echo "== frames: gc recompresses those made below the cold level, once; partly dead ones are rebuilt"
# shared libraries, which compress better at level 6 than at 1: their chunks
# go in frames at the fast level
find /usr/lib/x86_64-linux-gnu -maxdepth 1 -name 'lib*.so*' -type f | sort | xargs cat 2>/dev/null |
        head -c $((6 << 20)) >"$TMP/t.img" || true
[ "$(stat -c %s "$TMP/t.img")" = $((6 << 20)) ] || fail "not 6 MiB of shared libraries here"
head -c $((3 << 20)) "$TMP/t.img" >"$TMP/t1.img"
for cold in 0 6; do
        rm -rf "$STELLAR_STORE"
        st init --zstd-cold "$cold" >/dev/null
        st import --quiet "$TMP/t.img" t
        st import --quiet "$TMP/t1.img" t1 # all of it dedups against t
        s0=$(st stats --json)
        before=$(json_field "$s0" pack_bytes)
        out=$(st gc --json)
        s1=$(st stats --json)
        after=$(json_field "$s1" pack_bytes)
        n=$(json_field "$out" frames_recompressed)
        if [ "$cold" = 0 ]; then
                [ "$n" = 0 ] && [ "$after" = "$before" ] || fail "cold 0: gc recompressed ($out)"
        else
                [ "$n" -gt 10 ] || fail "gc recompressed no frame: $out"
                [ "$after" -lt "$before" ] || fail "recompressed frames are not smaller ($before -> $after)"
                # neighbouring frames of up to 128 KiB are remade as one of up to 256 KiB
                f0=$(json_field "$s0" frames) f1=$(json_field "$s1" frames)
                [ "$f1" -le $((f0 * 6 / 10)) ] || fail "gc did not merge neighbouring frames ($f0 -> $f1 frames)"
                [ "$(json_field "$s1" framed_chunks)" = "$(json_field "$s0" framed_chunks)" ] ||
                        fail "chunks left the frames or joined them: $s0 -> $s1"
                out=$(st gc --json)
                [ "$(json_field "$out" frames_recompressed)" = 0 ] && [ "$(json_field "$out" packs_rewritten)" = 0 ] ||
                        fail "a second gc recompressed again: $out"
        fi
        fsck_clean
        st export t "$TMP/out" && cmp "$TMP/out" "$TMP/t.img" || fail "t changed by gc (cold $cold)"
        # t goes: the frames t1 shares lose the chunks past its end, and are rebuilt
        st rm t
        out=$(st gc --json)
        [ "$(json_field "$out" chunks_freed)" -gt 100 ] || fail "gc freed too little: $out"
        fsck_clean
        st export t1 "$TMP/out" && cmp "$TMP/out" "$TMP/t1.img" || fail "t1 changed by gc (cold $cold)"
        s=$(st stats --json)
        [ "$(json_field "$s" pack_bytes)" -lt "$after" ] || fail "the dead half was not reclaimed: $s"
done
# text of random words compresses worse at level 6 than at 1 (zstd's own
# figures): gc keeps the frames as they were, marked, and does not try again
python3 - "$TMP/w.img" <<'PY'
import random, sys
r = random.Random(11)
words = [b"frame", b"chunk", b"stellar", b"record", b"volume", b"index", b"layer", b"pack"]
out = bytearray()
while len(out) < 4 << 20:
    out += b" ".join(r.choice(words) + str(r.randrange(1 << 20)).encode() for _ in range(48)) + b"\n"
open(sys.argv[1], "wb").write(out[:4 << 20])
PY
rm -rf "$STELLAR_STORE"
st init >/dev/null
st import --quiet "$TMP/w.img" w
before=$(json_field "$(st stats --json)" pack_bytes)
out=$(st gc --json)
after=$(json_field "$(st stats --json)" pack_bytes)
[ "$after" -le "$before" ] || fail "gc made frames bigger ($before -> $after)"
out=$(st gc --json)
[ "$(json_field "$out" packs_rewritten)" = 0 ] || fail "gc tried the same frames again: $out"
fsck_clean
st export w "$TMP/out" && cmp "$TMP/out" "$TMP/w.img" || fail "w changed by gc"

echo "== --zstd-level defer: imports store raw, gc compresses in frames, once; random data stays raw"
rm -rf "$STELLAR_STORE"
st init --zstd-level defer >/dev/null
head -c $((2 << 20)) /dev/urandom >"$TMP/r.img"
cat "$TMP/t.img" "$TMP/r.img" >"$TMP/tr.img"
st import --quiet "$TMP/tr.img" tr
before=$(json_field "$(st stats --json)" pack_bytes)
[ "$before" -gt $((8 << 20)) ] || fail "a deferring import compressed ($before bytes)"
out=$(st gc --json)
after=$(json_field "$(st stats --json)" pack_bytes)
[ "$(json_field "$out" frames_recompressed)" -gt 10 ] || fail "gc compressed nothing: $out"
[ "$after" -lt $((before - (3 << 20))) ] || fail "deferred chunks not compressed ($before -> $after)"
fsck_clean
st export tr "$TMP/out" && cmp "$TMP/out" "$TMP/tr.img" || fail "tr changed by gc"
out=$(st gc --json)
[ "$(json_field "$out" packs_rewritten)" = 0 ] || fail "a second gc compressed again: $out"
st --store "$TMP/s2" init --zstd-level defer --zstd-cold 0 >/dev/null 2>&1 && fail "defer without a cold level accepted"
[ ! -e "$TMP/s2/format" ] || fail "a refused init left a store"
echo ok
