#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A store written by the format before frames (store format 2, index and
# index.log format 1: tests/data/store-v2.tar.zst, made by the binary of
# 9bcce84: an image, a committed volume, its snapshot, and a volume with
# writes still in its delta) opens and reads the same with today's binary.
# Reading leaves its files as they are; the first write upgrades the format
# file (so an older binary refuses the store rather than misread a frame) and
# rewrites the index whole; after that, old and new data live side by side
# through commit, rm, gc and fsck.
. "$(dirname "$0")/../lib/functions.sh"
S=$STELLAR_STORE
DATA=$(cd "$(dirname "$0")/../data" && pwd)

zstd -dcq "$DATA/store-v2.tar.zst" | tar -x -C "$TMP"
[ -d "$S" ] || fail "the fixture holds no store"
format_version() { od -An -t u4 -j 8 -N 4 "$S/format" | tr -d ' '; }
index_version() { od -An -t u4 -j 8 -N 4 "$S/index" | tr -d ' '; }
[ "$(format_version)" = 2 ] && [ "$(index_version)" = 1 ] || fail "the fixture is not of format 2"

# same_as_before: every name exports to the bytes the old binary exported.
same_as_before() {
        local n want got
        while read -r want n; do
                n=${n%.out}
                st export "$n" "$TMP/x.out" >/dev/null 2>"$TMP/x.err" || { cat "$TMP/x.err" >&2; fail "export $n"; }
                got=$(sha256sum <"$TMP/x.out" | cut -d' ' -f1)
                [ "$got" = "$want" ] || fail "$n exports to other bytes than the old binary's ($1)"
                rm -f "$TMP/x.out"
        done <"$TMP/expected.sha256"
}

echo "== read: the same names, bytes and a clean fsck; nothing rewritten"
sums_before=$(cd "$S" && find . -type f ! -name lock ! -name '*.lock' -print0 | sort -z | xargs -0 sha256sum)
st ls >"$TMP/ls.out"
for n in base vm vm-snap vm2; do grep -q "^$n " "$TMP/ls.out" || fail "ls lacks $n"; done
grep -q '^vm2 .*volume' "$TMP/ls.out" || fail "vm2 is not listed as a volume"
st info vm2 >/dev/null
fsck_clean
same_as_before "read"
sums_after=$(cd "$S" && find . -type f ! -name lock ! -name '*.lock' -print0 | sort -z | xargs -0 sha256sum)
[ "$sums_before" = "$sums_after" ] || fail "reading the old store changed its files"
[ "$(format_version)" = 2 ] || fail "a read upgraded the format"

echo "== the first write upgrades the format and writes frames beside the old records"
# text that compresses: its chunks go into frames
python3 - "$TMP/new.raw" <<'PY'
import random, sys
r = random.Random(3)
words = [b"frame", b"chunk", b"stellar", b"record", b"volume", b"index", b"layer"]
out = bytearray()
while len(out) < 3 << 20:
    out += b" ".join(r.choice(words) + str(r.randrange(100000)).encode() for _ in range(64)) + b"\n"
open(sys.argv[1], "wb").write(out[:3 << 20])
PY
st import -q "$TMP/new.raw" new
[ "$(format_version)" = 3 ] || fail "the format was not upgraded by a write (version $(format_version))"
[ "$(index_version)" = 2 ] || fail "the index was not rewritten in format 2 (version $(index_version))"
fsck_clean
same_as_before "after an import"
st export new "$TMP/new.out" >/dev/null
cmp -s "$TMP/new.out" "$TMP/new.raw" || fail "the new image does not export to its bytes"
stored=$(st stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["stored_bytes"])')
[ "$stored" -lt $((3 << 20)) ] || fail "the new text was not compressed ($stored bytes stored)"

echo "== an old delta commits, old names go, gc and fsck see both kinds of record"
st export vm2 "$TMP/vm2.want" >/dev/null
st commit vm2 >/dev/null
st export vm2 "$TMP/vm2.out" >/dev/null
cmp -s "$TMP/vm2.out" "$TMP/vm2.want" || fail "vm2 changed in its commit"
st rm vm-snap base >/dev/null
st gc >/dev/null
fsck_clean
for n in vm vm2 new; do st export "$n" "$TMP/$n.after" >/dev/null; done
grep -q " vm.out$" "$TMP/expected.sha256"
[ "$(sha256sum <"$TMP/vm.after" | cut -d' ' -f1)" = "$(grep ' vm.out$' "$TMP/expected.sha256" | cut -d' ' -f1)" ] ||
        fail "vm changed after gc"
cmp -s "$TMP/vm2.after" "$TMP/vm2.want" || fail "vm2 changed after gc"
cmp -s "$TMP/new.after" "$TMP/new.raw" || fail "new changed after gc"

echo "== reopened after all that: the same"
st ls >/dev/null
fsck_clean
echo "PASS"
