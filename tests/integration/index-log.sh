#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The index is not rewritten per operation: each appends a checked batch to
# index.log, and gc (or a long log) compacts. A torn batch (a crash), a
# damaged one, a log of another index and a store from before logs all open
# to the same content, and fsck says what it found.
. "$(dirname "$0")/../lib/functions.sh"
W=${VOLUME_WRITER:?VOLUME_WRITER must point to tests/tools volume-writer}
S=$STELLAR_STORE

# same_bytes NAME FILE: NAME exports to exactly FILE's bytes.
same_bytes() {
        st export "$1" "$TMP/x.out" >/dev/null 2>"$TMP/x.err" || { cat "$TMP/x.err" >&2; fail "export $1"; }
        cmp -s "$TMP/x.out" "$2" || fail "$1 does not export to its bytes"
        rm -f "$TMP/x.out"
}
all_right() {
        same_bytes a "$TMP/a.raw"
        same_bytes b "$TMP/b.raw"
        same_bytes v "$TMP/v.want"
}

st init >/dev/null
head -c 8000000 /dev/urandom >"$TMP/a.raw"
st import -q "$TMP/a.raw" a
st gc --quiet # a whole index: what follows is appended
index_sum=$(sha256sum <"$S/index")
log0=$(stat -c %s "$S/index.log")

echo "== operations append, the index stays"
st clone a v
"$W" write "$S" v 3 32 >/dev/null
st commit v >/dev/null
head -c 2000000 /dev/urandom >"$TMP/b.raw"
st import -q "$TMP/b.raw" b
st snapshot v v-snap
"$W" write "$S" v 4 16 >/dev/null
st commit v >/dev/null
st export v "$TMP/v.want" >/dev/null
[ "$(sha256sum <"$S/index")" = "$index_sum" ] || fail "an operation rewrote the index"
log1=$(stat -c %s "$S/index.log")
[ "$log1" -gt "$log0" ] || fail "nothing was appended to index.log"
fsck_clean
all_right
cp "$S/index" "$TMP/index.keep"
cp "$S/index.log" "$TMP/log.keep"

echo "== a torn batch after a crash: recovery"
truncate -s $((log1 - 20)) "$S/index.log"
touch "$S/dirty"
all_right
fsck_clean
st ls >/dev/null

echo "== a damaged batch with no crash to explain it: reported, recovered"
cp "$TMP/index.keep" "$S/index"
cp "$TMP/log.keep" "$S/index.log"
fsck_clean
printf '\x55' | dd of="$S/index.log" bs=1 seek=$((log0 + 40)) conv=notrunc status=none
if st fsck >"$TMP/fsck.out" 2>&1; then cat "$TMP/fsck.out" >&2; fail "fsck missed a damaged index.log batch"; fi
grep -q "index.log" "$TMP/fsck.out" || { cat "$TMP/fsck.out" >&2; fail "fsck did not name index.log"; }
all_right
st gc --quiet
fsck_clean
all_right

echo "== a log of another index is ignored"
cp "$TMP/log.keep" "$S/index.log" # (the index is a newer, compacted one)
fsck_clean
all_right

echo "== a store from before logs (no index.log) opens and starts one"
st gc --quiet
rm "$S/index.log"
fsck_clean
all_right
"$W" write "$S" v 5 8 >/dev/null
st commit v >/dev/null
st export v "$TMP/v.want" >/dev/null
[ -e "$S/index.log" ] || fail "no index.log after a commit"
fsck_clean
all_right

echo "== a long log is folded into the index"
for i in $(seq 12); do
        head -c 400000 /dev/urandom >"$TMP/c.raw"
        st import -q "$TMP/c.raw" "c$i"
done
sz_index=$(stat -c %s "$S/index")
sz_log=$(stat -c %s "$S/index.log")
[ "$sz_log" -le $((4 * 1024 * 1024 + sz_index)) ] || fail "index.log grew past its bound ($sz_log bytes)"
fsck_clean
all_right
echo "OK"
