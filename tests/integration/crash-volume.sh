#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 during a stream of random writes and flushes to a volume: after
# recovery every flushed write reads back and nothing unflushed corrupts
# anything (each block holds a version some write produced); fsck is clean.
# Then kill -9 during commit and during snapshot: the volume reads the same
# before and after, the snapshot exists whole or not at all.
. "$(dirname "$0")/../lib/functions.sh"
requires mkfs.ext4
ROUNDS=${CRASH_ROUNDS:-30}
W=${VOLUME_WRITER:?VOLUME_WRITER must point to tests/tools volume-writer}

make_ext4 "$TMP/base.img" 48M /etc
st init >/dev/null
st import --quiet "$TMP/base.img" base
st clone base vol

RANDOM=31337
total=0
for k in $(seq 1 "$ROUNDS"); do
        "$W" write "$STELLAR_STORE" vol "$k" 400 >"$TMP/w.out" 2>"$TMP/w.err" &
        pid=$!
        sleep "0.$(printf '%03d' $((RANDOM % 400)))"
        kill -9 $pid 2>/dev/null || true
        wait $pid 2>/dev/null || true
        last=$(grep '^F ' "$TMP/w.out" | tail -1 | cut -d' ' -f2 || true)
        last=${last:--1}
        total=$((total + last + 1))
        # read-only first (recovery in memory), then as a writer would
        "$W" verify "$STELLAR_STORE" vol "$k" 400 "$last" "$TMP/base.img" ||
                fail "round $k: verify after kill (flushed through op $last)"
        st fsck --quiet >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out"; fail "round $k: fsck"; }
        # fold what survived into the base for the next round, as a writer
        st commit --quiet vol
        st export vol "$TMP/base.img"
        fsck_clean
done
echo "$ROUNDS rounds, $total flushed ops verified"

# kill during commit: content is what was flushed, whether or not it committed
for k in $(seq 1 10); do
        st export vol "$TMP/before.img"
        "$W" write "$STELLAR_STORE" vol "$((1000 + k))" 200 >"$TMP/w.out" 2>&1 || fail "writer failed"
        st export vol "$TMP/flushed.img"
        st info --json vol >"$TMP/info.before"
        "$STELLAR" commit --quiet vol &
        pid=$!
        sleep "0.0$((RANDOM % 10))"
        kill -9 $pid 2>/dev/null || true
        wait $pid 2>/dev/null || true
        st export vol "$TMP/after.img"
        cmp -s "$TMP/flushed.img" "$TMP/after.img" || fail "commit round $k: content changed by a killed commit"
        fsck_clean
        st commit --quiet vol
        st export vol "$TMP/after.img"
        cmp -s "$TMP/flushed.img" "$TMP/after.img" || fail "commit round $k: content changed by commit"
        cp "$TMP/flushed.img" "$TMP/base.img"
done

# kill during snapshot (which commits first)
for k in $(seq 1 10); do
        "$W" write "$STELLAR_STORE" vol "$((2000 + k))" 100 >/dev/null 2>&1 || fail "writer failed"
        st export vol "$TMP/flushed.img"
        "$STELLAR" snapshot vol "snap$k" &
        pid=$!
        sleep "0.0$((RANDOM % 10))"
        kill -9 $pid 2>/dev/null || true
        wait $pid 2>/dev/null || true
        if st info "snap$k" >/dev/null 2>&1; then
                st export "snap$k" "$TMP/snap.img"
                cmp -s "$TMP/flushed.img" "$TMP/snap.img" || fail "snapshot round $k: partial snapshot"
        fi
        st export vol "$TMP/after.img"
        cmp -s "$TMP/flushed.img" "$TMP/after.img" || fail "snapshot round $k: volume changed"
        fsck_clean
done
echo ok
