#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# gc while the daemon fetches a lazily pulled image: `serve --prefetch`
# fetches its chunks in the background through a slow link (a 100 ms delay
# proxy: its fetches take seconds) while gc compresses a deferring import's chunks. The fetches that
# land during gc's copy are kept (they are not in gc's plan); afterwards
# both images read right, a second daemon on the reopened store reads them
# too, fsck is clean, and a full pull finds nothing left to fetch. Then the
# same with the daemon's idle compression in gc's place.
. "$(dirname "$0")/../lib/functions.sh"
requires nginx
S=$STELLAR_STORE

# the lazily pulled image: published from another store
text_image "$TMP/lazy.img" 24 1
text_image "$TMP/local.img" 32 2
P=$TMP/publisher
st --store "$P" init >/dev/null
st --store "$P" import -q "$TMP/lazy.img" lazy
mkdir -p "$TMP/www"
st --store "$P" publish -q lazy "$TMP/www/tree"
start_nginx "$TMP/www"
start_delay_proxy "$NGINX_PORT" 100
URL=http://127.0.0.1:$PROXY_PORT/tree

st init --zstd-level defer >/dev/null
st import -q "$TMP/local.img" local
st pull --quiet --lazy "$URL" lazy
start_serve --prefetch --compress-cpu 0 # (gc, not the idle compression, compresses here)
# gc while the prefetch runs (it takes seconds through the proxy)
fetched() { st status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["remote_fetches"])'; }
for _ in $(seq 200); do
        [ "$(fetched)" -gt 0 ] && break
        sleep 0.05
done
f0=$(fetched)
out=$(st gc --json) || fail "gc while fetching"
f1=$(fetched)
echo "chunks fetched: $f0 when gc began, $f1 when it ended"
[ "$f1" -gt "$f0" ] || fail "no fetch landed during gc: the test did not test it"
[ "$(json_field "$out" frames_recompressed)" -gt 0 ] || fail "gc compressed nothing: $out"
# check_after WHAT: both images right over NBD, then the daemon stopped and
# the store reopened: both export right, a full pull of the lazy image
# fetches nothing (what landed during WHAT was kept), fsck is clean
check_after() {
        for n in lazy local; do
                nbdcopy "$(U $n)" "$TMP/$n.nbd" && cmp -s "$TMP/$n.nbd" "$TMP/$n.img" ||
                        fail "the $n image over NBD after $1"
        done
        kill "$SERVE"
        wait "$SERVE" || fail "the daemon did not exit cleanly"
        for n in lazy local; do
                st export "$n" "$TMP/$n.out" >/dev/null || fail "export $n"
                cmp -s "$TMP/$n.out" "$TMP/$n.img" || fail "$n after $1 and a restart"
        done
        out=$(st pull --json "$URL" lazy)
        [ "$(json_field "$out" fetched)" = 0 ] ||
                fail "chunks fetched during $1 were lost: a pull fetched again: $out"
        fsck_clean
}
check_after gc
out=$(st gc --json)
fsck_clean
for n in lazy local; do
        st export "$n" "$TMP/$n.out" >/dev/null && cmp -s "$TMP/$n.out" "$TMP/$n.img" || fail "$n after a second gc"
done

# The same with the daemon's idle compression doing the work, beside the
# prefetch: fetches land while it compresses, and are kept.
export STELLAR_STORE=$TMP/store2
st init --zstd-level defer >/dev/null
st import -q "$TMP/local.img" local
st pull --quiet --lazy "$URL" lazy
start_serve --prefetch --compress-cpu 100
logged() { grep -q "$1" "$TMP/serve.log"; }
for _ in $(seq 600); do logged "idle compression: compressing" && break; sleep 0.05; done
f0=$(fetched)
for _ in $(seq 1200); do logged "idle compression: done" && break; sleep 0.1; done
logged "idle compression: done" || { cat "$TMP/serve.log" >&2; fail "the idle compression did not finish"; }
f1=$(fetched)
echo "idle compression: chunks fetched $f0 when it began, $f1 when it ended"
[ "$f1" -gt "$f0" ] || fail "no fetch landed during the idle compression: the test did not test it"
check_after "the idle compression"
echo PASS
