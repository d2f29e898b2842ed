#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 during import, at many random moments: afterwards fsck is clean
# (both with the read-only in-memory recovery and after a writer has
# recovered on disk), every earlier image exports byte-identical, and the
# interrupted image is either absent or complete.
. "$(dirname "$0")/../lib/functions.sh"
requires b3sum mkfs.ext4
ROUNDS=${CRASH_ROUNDS:-30}

make_ext4 "$TMP/base.img" 128M /etc /usr/share/i18n
head -c 150000000 /dev/urandom >"$TMP/rand.part"
make_ext4 "$TMP/big.img" 256M /etc /usr/share/i18n /usr/lib/x86_64-linux-gnu/gconv
dd if="$TMP/rand.part" of="$TMP/big.img" bs=1M seek=100 conv=notrunc status=none
rm -f "$TMP/rand.part"
base_sum=$(b3sum --no-names "$TMP/base.img")
big_sum=$(b3sum --no-names "$TMP/big.img")

st init --zstd-level 1 >/dev/null
st import --quiet "$TMP/base.img" base

# how long a full import takes, to spread the kill points over it
t0=$(date +%s%N)
st import --quiet "$TMP/big.img" probe
t1=$(date +%s%N)
st rm probe
st gc --quiet
dur_us=$(( (t1 - t0) / 1000 ))
echo "full import takes ${dur_us} us; $ROUNDS kill rounds"

RANDOM=4242
complete=0
for k in $(seq 1 "$ROUNDS"); do
        delay_us=$(( (RANDOM * 32768 + RANDOM) % (dur_us + dur_us / 5 + 1) ))
        "$STELLAR" import --quiet "$TMP/big.img" "img$k" &
        pid=$!
        sleep "$(printf '0.%06d' "$delay_us")" 2>/dev/null || sleep 0
        kill -9 $pid 2>/dev/null || true
        wait $pid 2>/dev/null || true
        # read-only check first: recovery happens in memory, the store is untouched
        st fsck --quiet >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out"; fail "round $k: fsck (read-only) after kill at ${delay_us}us"; }
        if st info "img$k" >/dev/null 2>&1; then
                complete=$((complete + 1))
                st export "img$k" "$TMP/out"
                [ "$(b3sum --no-names "$TMP/out")" = "$big_sum" ] || fail "round $k: visible image is not complete"
                st rm "img$k"
        fi
        # a writer recovers on disk; then fsck again
        st gc --quiet
        fsck_clean
        if [ $((k % 5)) -eq 0 ]; then
                st export base "$TMP/out"
                [ "$(b3sum --no-names "$TMP/out")" = "$base_sum" ] || fail "round $k: base image damaged"
        fi
        ls "$STELLAR_STORE/images" | grep -v '^base$' | grep -q . && fail "round $k: stray manifest"
done
echo "$complete of $ROUNDS imports finished before the kill"
st export base "$TMP/out"
[ "$(b3sum --no-names "$TMP/out")" = "$base_sum" ] || fail "base image damaged"
echo ok
