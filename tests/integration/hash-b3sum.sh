#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# BLAKE3 agrees with b3sum on many input lengths, including every boundary
# of BLAKE3's 1 KiB chunks and 64-byte blocks and the SIMD batch sizes.
. "$(dirname "$0")/../lib/functions.sh"
requires b3sum

head -c $((2 * 1024 * 1024 + 7)) /dev/urandom >"$TMP/src"
for n in 0 1 2 63 64 65 127 128 1023 1024 1025 2047 2048 2049 3072 4096 8191 8192 16384 \
        31744 65536 102400 1048575 1048576 1048577 2097152 2097159; do
        head -c $n "$TMP/src" >"$TMP/in"
        want=$(b3sum --no-names "$TMP/in")
        got=$(st hash "$TMP/in" | cut -d' ' -f1)
        [ "$want" = "$got" ] || fail "length $n: b3sum $want, stellar $got"
done
# Chunk names in a store are the BLAKE3 of the chunk bytes: a file smaller
# than the minimum chunk is one chunk, named by its b3sum.
head -c 3000 "$TMP/src" >"$TMP/small"
st init --mode stream >/dev/null
st import --quiet "$TMP/small" small
want=$(b3sum --no-names "$TMP/small")
ls "$STELLAR_STORE/packs" | grep -q pack || fail "no pack"
python3 - "$STELLAR_STORE" "$want" <<'PY' || fail "chunk hash in the pack is not b3sum's"
import sys, glob
store, want = sys.argv[1], sys.argv[2]
data = open(glob.glob(store + "/packs/*.pack")[0], "rb").read()
assert data[32 + 16:32 + 48].hex() == want, data[32 + 16:32 + 48].hex()
PY
echo ok
