#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# kill -9 during gc at many random moments: afterwards fsck is clean, every
# live image exports byte-identical, and a later gc finishes the job. Twice:
# a store whose imports compress (its gc also remakes their frames at the
# cold level), and one whose imports defer compression to gc.
. "$(dirname "$0")/../lib/functions.sh"
requires b3sum mkfs.ext4
ROUNDS=${CRASH_ROUNDS:-25}
DEFER_ROUNDS=${CRASH_DEFER_ROUNDS:-12}

for i in 1 2 3 4; do
        head -c 40000000 /dev/urandom >"$TMP/r$i.img"
done
make_ext4 "$TMP/fs.img" 64M /etc
sum_r2=$(b3sum --no-names "$TMP/r2.img")
sum_r4=$(b3sum --no-names "$TMP/r4.img")
sum_fs=$(b3sum --no-names "$TMP/fs.img")

check_live() {
        st export r2 "$TMP/out" && [ "$(b3sum --no-names "$TMP/out")" = "$sum_r2" ] || fail "$1: r2 damaged"
        st export r4 "$TMP/out" && [ "$(b3sum --no-names "$TMP/out")" = "$sum_r4" ] || fail "$1: r4 damaged"
        st export fs "$TMP/out" && [ "$(b3sum --no-names "$TMP/out")" = "$sum_fs" ] || fail "$1: fs damaged"
}

# campaign ROUNDS INIT-ARGS...: a store made so, two of its images removed,
# then gc killed at ROUNDS random moments, each on a fresh copy.
campaign() {
        local rounds=$1 k t0 t1 dur_us delay_us pid out
        shift
        rm -rf "$STELLAR_STORE" "$TMP/snapshot"
        st init "$@" >/dev/null
        for i in 1 2 3 4; do
                st import --quiet "$TMP/r$i.img" "r$i"
        done
        st import --quiet "$TMP/fs.img" fs
        st rm r1 r3
        cp -a "$STELLAR_STORE" "$TMP/snapshot"

        t0=$(date +%s%N)
        st gc --quiet
        t1=$(date +%s%N)
        dur_us=$(( (t1 - t0) / 1000 ))
        echo "init $*: full gc takes ${dur_us} us; $rounds kill rounds"
        check_live "uninterrupted ($*)"

        RANDOM=777
        for k in $(seq 1 "$rounds"); do
                rm -rf "$STELLAR_STORE"
                cp -a "$TMP/snapshot" "$STELLAR_STORE"
                delay_us=$(( (RANDOM * 32768 + RANDOM) % (dur_us + 1) ))
                "$STELLAR" gc --quiet &
                pid=$!
                sleep "$(printf '0.%06d' "$delay_us")" 2>/dev/null || true
                kill -9 $pid 2>/dev/null || true
                wait $pid 2>/dev/null || true
                st fsck --quiet >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out"; fail "round $k ($*): fsck after gc killed at ${delay_us}us"; }
                check_live "round $k ($*)"
                st gc --quiet
                fsck_clean
                out=$(st stats --json)
                [ "$(json_field "$out" unreferenced_chunks)" = 0 ] || fail "round $k ($*): gc left garbage"
                check_live "round $k ($*) after gc"
        done
}

campaign "$ROUNDS" --zstd-level 1
campaign "$DEFER_ROUNDS" --zstd-level defer
echo ok
