#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The CLI contract: --help for every command, usage errors exit 2, the
# default store comes from $STELLAR_STORE, JSON output parses, stats add up.
. "$(dirname "$0")/../lib/functions.sh"

st --help | grep -q "Commands:" || fail "no usage"
for c in init import export ls info rm stats gc fsck hash chunk; do
        st "$c" --help | grep -q "Usage: stellar $c" || fail "$c --help"
done
set +e
st bogus >/dev/null 2>&1; [ $? -eq 2 ] || fail "unknown command should exit 2"
st import >/dev/null 2>&1; [ $? -eq 2 ] || fail "import without args should exit 2"
st ls >/dev/null 2>"$TMP/err"; [ $? -eq 1 ] || fail "ls without a store should fail"
set -e
grep -q "no store here" "$TMP/err" || fail "missing store message: $(cat "$TMP/err")"

st init >/dev/null
[ -f "$STELLAR_STORE/format" ] || fail "init did not use \$STELLAR_STORE"
st init 2>/dev/null && fail "second init should fail"
st --store "$TMP/other" init --mode stream --avg 32K | grep -q "avg 32768" || fail "init options"
st --store "$TMP/bad" init --avg 12345 2>/dev/null && fail "bad avg accepted"

head -c 5000000 /dev/urandom >"$TMP/r.img"
st import --quiet "$TMP/r.img" r
out=$(st import --json "$TMP/r.img" r2)
[ "$(json_field "$out" new_chunks)" = 0 ] || fail "re-import of the same bytes wrote chunks: $out"
st ls | grep -q "^r2 " || fail "ls"
n=$(st ls --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 2 ] || fail "ls --json count $n"
info=$(st info --json r)
[ "$(json_field "$info" size)" = 5000000 ] || fail "info size"
stats=$(st stats --json)
for k in chunks logical_bytes unique_bytes stored_bytes dedup_ratio; do
        json_field "$stats" $k >/dev/null || fail "stats lacks $k"
done
[ "$(json_field "$stats" logical_bytes)" = 10000000 ] || fail "logical_bytes"
[ "$(json_field "$stats" unique_bytes)" = 5000000 ] || fail "unique_bytes"
python3 -c "import sys; r=float(sys.argv[1]); sys.exit(0 if abs(r-2.0)<1e-3 else 1)" \
        "$(json_field "$stats" dedup_ratio)" || fail "dedup ratio"
st rm r2
st rm r2 2>/dev/null && fail "rm of a missing image succeeded"
{ st info r2 2>&1 || true; } | grep -q "no such image" || fail "info of removed image"
st hash "$TMP/r.img" | grep -q "$TMP/r.img" || fail "hash output"
st chunk --json "$TMP/r.img" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["chunks"]>0'
fsck_clean
echo "ok"
