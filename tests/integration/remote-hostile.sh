#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `stellar pull` against hostile servers and hostile trees. A small ext4
# image (32 MiB of /etc) is imported and published to a directory; every pull
# below goes into a fresh store. A pull that must fail must exit 1 with one
# `stellar: pull failed: WHERE: REASON (STRERROR)` line (WHERE: the URL or
# file, with "(HTTP nnn)" for HTTP) that matches the case's pattern, and leave
# the store with no name, a clean `stellar fsck` and no chunk at all (nothing
# partial or wrong is ever stored; only the swapped-blobs case may keep the
# good chunks fetched before the bad one, for a resumed pull).
#
# tests/tools/bad-http.py serves the tree, in each of its modes:
#   ok          pull succeeds (the baseline), export matches; a name that is
#               not there fails with "refs/NOPE (HTTP 404): not found"
#   flaky500    pull succeeds, --json reports retries > 0, export matches
#   reset       pull succeeds, export matches
#   always500   --retries 3: fails with "(HTTP 500)" and "retries exhausted"
#               within 20 s; the same when only the manifest answers 500
#   404blobs    fails at once (under 10 s) with "(HTTP 404): not found"
#   stall       --timeout 2 --retries 2: fails within 10 s ("stalled"): two
#               attempts with no byte for 2 s, plus backoff
#   drip        one byte a second (no stall): --timeout 2 --deadline 3
#               --retries 2 fails within 12 s naming the blob and "deadline"
#               (two attempts of 3 s, plus backoff)
#   wrongbytes  fails: "not what their name says"
#   truncate    fails, naming the blob
#   huge        the manifest is 1 GiB: refused ("larger than allowed" / "too
#               large") in under 20 s and under 200 MB of max RSS
#               (/usr/bin/time -v), without reading it all
#   gzipbomb    the manifest is 2 MB of gzip that inflate to 2 GiB: refused
#               ("inflates") in under 10 s and under 100 MB of max RSS, after
#               reading a small part of it
# Hostile manifests in a plain directory (pulled by file:// URL), each with
# refs/A naming a manifest whose file name IS the b3sum of its bytes (it
# passes the id check) but whose content is bad; the error must name the
# manifest file and the problem (a pattern per case): an extent past the
# end, overlapping extents, extents out of order, a zero-length extent, an
# image size over 2^50, a chunk extent over 16 MiB, a chunk extent whose
# length is not its chunk's length, a negative offset, one million extents in
# a 4 KiB image, a parent chain of 71 layers, version 2 ("unknown version"),
# a hole without a parent, bad hex (upper case, short, not hex), a bad parent
# id, a parent that is not there, not JSON, duplicate keys, no "extents"; a
# manifest whose bytes do not match its name (renamed, and tampered with),
# and a refs/A that is not a manifest id. Last, two blob files of a directory
# tree swapped (each holds the other's bytes): the pull must reject them.
# Every failed check is reported before the test fails.
. "$(dirname "$0")/../lib/functions.sh"
requires mkfs.ext4 b3sum python3 /usr/bin/time

nbad=0
bad() {
        echo "FAIL: $*" >&2
        nbad=$((nbad + 1))
}

make_ext4 "$TMP/A.img" 32M /etc
st --store "$TMP/h1" import --quiet "$TMP/A.img" A
WWW=$TMP/www
st --store "$TMP/h1" publish --quiet A "$WWW/tree"
n_blobs=$(ls "$WWW/tree/blobs" | wc -l)

# try NAME ARGS...: `stellar --store $TMP/s-NAME pull ARGS` (a fresh store)
# under /usr/bin/time -v. Sets RC, OUT (stdout), ERR (stderr, without time's
# report), SECS (wall clock, s), RSS_MB, and ST (the store).
try() {
        local name=$1 t0 t1
        shift
        ST=$TMP/s-$name
        rm -rf "$ST"
        t0=$(date +%s%N)
        RC=0
        /usr/bin/time -v -o "$TMP/time.out" "$STELLAR" --store "$ST" pull "$@" >"$TMP/out" 2>"$TMP/err" || RC=$?
        t1=$(date +%s%N)
        OUT=$(cat "$TMP/out")
        ERR=$(cat "$TMP/err")
        SECS=$(((t1 - t0) / 1000000000))
        RSS_MB=$(($(awk -F: '/Maximum resident set size/ { print $2 }' "$TMP/time.out") / 1024))
}

# failed_clean WHAT REGEX [kept]: the last try failed (exit 1) with one "pull
# failed" line that matches REGEX, and left the store clean: fsck passes, no
# ref, and no chunk stored (unless "kept": good chunks fetched before the
# failure are kept for a resumed pull).
failed_clean() {
        local what=$1 re=$2 kept=${3:-} chunks
        if [ "$RC" != 1 ]; then
                bad "$what: pull exited $RC, not 1 (stderr: $ERR)"
                return
        fi
        [ "$(grep -c '^stellar: pull failed: ' <<<"$ERR")" = 1 ] ||
                bad "$what: no single 'stellar: pull failed:' line: $ERR"
        grep -Eq -- "$re" <<<"$ERR" || bad "$what: the error does not say /$re/: $ERR"
        if ls -A "$ST/refs" 2>/dev/null | grep -q .; then bad "$what: a failed pull left a name: $(ls "$ST/refs")"; fi
        if [ -d "$ST" ]; then
                "$STELLAR" --store "$ST" fsck --quiet >"$TMP/fsck.out" 2>&1 ||
                        bad "$what: fsck after the failed pull: $(cat "$TMP/fsck.out")"
                chunks=$("$STELLAR" --store "$ST" stats --json 2>/dev/null |
                        python3 -c 'import json,sys; print(json.load(sys.stdin)["chunks"])' 2>/dev/null || echo "?")
                [ "$chunks" = 0 ] || [ "$kept" = kept ] || bad "$what: the store holds $chunks chunks after a failed pull"
        fi
        echo "  $what: exit 1 in ${SECS}s, rss ${RSS_MB}MB: ${ERR#stellar: pull failed: }"
}

# pulled_ok WHAT: the last try succeeded and A exports byte-identical.
pulled_ok() {
        local what=$1
        if [ "$RC" != 0 ]; then
                bad "$what: pull failed (exit $RC): $ERR"
                return 1
        fi
        st --store "$ST" export A "$TMP/A.out" || { bad "$what: export failed"; return 1; }
        cmp -s "$TMP/A.img" "$TMP/A.out" || bad "$what: the pulled image differs from the original"
        rm -f "$TMP/A.out"
        STELLAR_STORE=$ST fsck_clean
        echo "  $what: ok in ${SECS}s, retries $(json_field "$OUT" retries)"
}

# serve MODE [OPTION...]: bad-http.py in MODE over $WWW (the previous one
# stopped first); sets URL.
serve() {
        if [ -n "${BAD_PID:-}" ]; then kill "$BAD_PID" 2>/dev/null && wait "$BAD_PID" 2>/dev/null || true; fi
        start_bad_http "$WWW" "$@"
        URL=http://127.0.0.1:$BAD_PORT/tree
}

echo "bad-http.py modes ($n_blobs blobs):"
serve ok
try ok --json "$URL" A
pulled_ok ok
try no-such-name --json "$URL" NOPE
failed_clean no-such-name '/refs/NOPE \(HTTP 404\): not found'

serve flaky500
try flaky500 --json "$URL" A
if pulled_ok flaky500; then
        [ "$(json_field "$OUT" retries)" -gt 0 ] || bad "flaky500: --json reports no retries: $OUT"
fi

serve reset
try reset --json "$URL" A
pulled_ok reset

serve always500
try always500 --json --retries 3 "$URL" A
failed_clean always500 '\(HTTP 500\).*retries exhausted'
[ "$SECS" -lt 20 ] || bad "always500: took ${SECS}s with --retries 3"
serve always500 --match /manifests/
try always500-manifest --json --retries 3 "$URL" A
failed_clean always500-manifest '/manifests/[0-9a-f]{64}\.json \(HTTP 500\).*retries exhausted'

serve 404blobs
try 404blobs --json "$URL" A
failed_clean 404blobs '/blobs/[0-9a-f]{64} \(HTTP 404\): not found'
[ "$SECS" -lt 10 ] || bad "404blobs: took ${SECS}s (a 404 is not retried)"

serve stall
try stall --json --timeout 2 --retries 2 "$URL" A
failed_clean stall '/blobs/[0-9a-f]{64}.*stalled'
[ "$SECS" -le 10 ] || bad "stall: --timeout 2 --retries 2 took ${SECS}s, not 10 s at most (2 attempts of 2 s)"

serve drip --drip-secs 1
try drip --json --timeout 2 --deadline 3 --retries 2 "$URL" A
failed_clean drip '/blobs/[0-9a-f]{64}.*deadline'
[ "$SECS" -le 12 ] || bad "drip: --deadline 3 --retries 2 took ${SECS}s, not 12 s at most (2 attempts of 3 s)"

serve wrongbytes
try wrongbytes --json --retries 2 "$URL" A
failed_clean wrongbytes '/blobs/[0-9a-f]{64}.*not what their name says'

serve truncate
try truncate --json --retries 2 "$URL" A
failed_clean truncate '/blobs/[0-9a-f]{64}'

serve huge
try huge --json "$URL" A
failed_clean huge '/manifests/[0-9a-f]{64}\.json.*(larger than allowed|too large)'
[ "$SECS" -lt 20 ] || bad "huge: refusing a 1 GiB manifest took ${SECS}s"
[ "$RSS_MB" -lt 200 ] || bad "huge: refusing a 1 GiB manifest took ${RSS_MB} MB of RSS (limit 200 MB)"
kill "$BAD_PID" 2>/dev/null && wait "$BAD_PID" 2>/dev/null || true
sent=$(awk '$1 == "req" && $NF == "huge" { print $5 }' "$TMP/bad-http.log" | sort -n | tail -1)
echo "  huge: the server sent ${sent:-?} bytes of the 1 GiB manifest before the client left"
[ "${sent:-0}" -lt $((1 << 30)) ] || bad "huge: the client read the whole 1 GiB manifest"

serve gzipbomb
try gzipbomb --json "$URL" A
failed_clean gzipbomb '/manifests/[0-9a-f]{64}\.json.*inflates'
[ "$SECS" -lt 10 ] || bad "gzipbomb: refusing a 2 GiB gzip bomb took ${SECS}s"
[ "$RSS_MB" -lt 100 ] || bad "gzipbomb: refusing a 2 GiB gzip bomb took ${RSS_MB} MB of RSS (limit 100 MB)"
kill "$BAD_PID" 2>/dev/null && wait "$BAD_PID" 2>/dev/null || true
sent=$(awk '$1 == "req" && $NF == "gzipbomb" { print $5 }' "$TMP/bad-http.log" | sort -n | tail -1)
echo "  gzipbomb: the server sent ${sent:-?} bytes of gzip before the client left"
[ "${sent:-0}" -lt $((1 << 20)) ] || bad "gzipbomb: the client read ${sent:-?} bytes of the 2 MB gzip bomb"

# Hostile manifests: one tree per case under $TMP/bad/CASE, its blobs a
# symlink to the good tree's. The script prints one "CASE<TAB>REGEX" line each.
python3 - "$WWW/tree" "$TMP/bad" >"$TMP/cases" <<'EOF'
import json, os, sys
from subprocess import run
src, out = sys.argv[1], sys.argv[2]
good_id = open(f"{src}/refs/A").read().strip()
good = json.load(open(f"{src}/manifests/{good_id}.json"))
chunks = [e for e in good["extents"] if len(e) == 3]
h0, l0 = chunks[0][2], chunks[0][1]
S = good["size"]

def b3(b):
    return run(["b3sum", "--no-names"], input=b, capture_output=True, check=True).stdout.decode().strip()

def enc(doc):
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

def tree(case, regex, layers, ref=None):
    """layers: bottom first, each a dict (its parent set to the layer below
    unless it has one) or raw bytes. The file of each is named by its b3sum."""
    d = f"{out}/{case}"
    os.makedirs(f"{d}/refs")
    os.makedirs(f"{d}/manifests")
    os.symlink(os.path.realpath(f"{src}/blobs"), f"{d}/blobs")
    below = None
    for doc in layers:
        if isinstance(doc, dict):
            if below and "parent" not in doc:
                doc = dict(doc, parent=below)
            doc = enc(doc)
        below = b3(doc)
        with open(f"{d}/manifests/{below}.json", "wb") as f:
            f.write(doc)
    with open(f"{d}/refs/A", "w") as f:
        f.write((ref(d, below) if ref else below) + "\n")
    print(f"{case}\t{regex}")

def m(**kw):
    x = {k: good[k] for k in ("version", "size", "ctime_ns", "chunker")}
    x.update(kw)
    return x

ext0 = [[0, l0, h0]]
tree("past-end", "past the end", [m(extents=[[0, l0, h0], [S, l0, h0]])])
tree("overlap", "overlap", [m(extents=[[0, l0, h0], [l0 // 2, l0, h0]])])
tree("out-of-order", "out of order", [m(extents=[[2 * l0, l0, h0], [0, l0, h0]])])
tree("zero-length", "length|extent", [m(extents=[[0, 0, h0]])])
tree("size-2^60", "size", [m(size=1 << 60, extents=ext0)])
tree("extent-32MiB", "length", [m(extents=[[0, 32 << 20, h0]])])
tree("extent-not-chunk-length", "length", [m(extents=[[0, 4 * l0, h0]])])
tree("negative-offset", "offset|extent", [m(extents=[[-4096, l0, h0]])])
tree("million-extents", "extent", [b'{"chunker":' + enc(good["chunker"]) + b',"ctime_ns":0,"extents":['
                                   + b",".join([b"[0,0]"] * 1000000) + b'],"size":4096,"version":1}'])
tree("chain-of-71", "too deep", [m(extents=ext0) for _ in range(71)])
tree("version-2", "unknown version", [m(version=2, extents=ext0)])
tree("hole-without-parent", "hole.*without (a )?parent", [m(extents=[[0, 8192]])])
tree("hex-upper", "hash|hex", [m(extents=[[0, l0, h0.upper()]])])
tree("hex-short", "hash|hex", [m(extents=[[0, l0, h0[:-2]]])])
tree("hex-not-hex", "hash|hex", [m(extents=[[0, l0, "zz" + h0[2:]]])])
tree("parent-not-hex", "parent", [m(parent="xyz", extents=ext0)])
tree("parent-missing", "manifests/(ab){32}\\.json.*not found", [m(parent="ab" * 32, extents=ext0)])
tree("not-json", "JSON", [b'{"version":1,"size":'])
tree("duplicate-key", "JSON|duplicate", [enc(m(extents=ext0))[:-1] + b',"version":1}'])
tree("no-extents", "extents", [m()])

def rename(d, top):  # the same bytes under another (wrong) name
    wrong = top[:-1] + ("0" if top[-1] != "0" else "1")
    os.rename(f"{d}/manifests/{top}.json", f"{d}/manifests/{wrong}.json")
    return wrong
tree("name-mismatch", "do not match its name", [m(extents=good["extents"])], ref=rename)

def tamper(d, top):  # one byte changed after naming
    p = f"{d}/manifests/{top}.json"
    b = open(p, "rb").read()
    open(p, "wb").write(b.replace(b'"version":1', b'"version":2'))
    return top
tree("tampered", "do not match its name", [m(extents=good["extents"])], ref=tamper)
tree("ref-not-an-id", "refs/A.*not a name", [m(extents=ext0)], ref=lambda d, top: "not-a-manifest-id")
EOF
echo "hostile manifests:"
while IFS=$'\t' read -r case re; do
        try "$case" --json "file://$TMP/bad/$case" A
        failed_clean "$case" "$re"
        [ "$RC" != 1 ] || [[ $ERR == *"$TMP/bad/$case/"* ]] || bad "$case: the error does not name the file: $ERR"
        [ "$SECS" -lt 20 ] || bad "$case: took ${SECS}s"
done <"$TMP/cases"
[ "$(wc -l <"$TMP/cases")" -ge 20 ] || fail "the hostile manifests were not all made"

# Two blob files swapped in a directory tree: each holds the other's bytes.
echo "swapped blobs:"
cp -a "$WWW/tree" "$TMP/swapped"
b1=$(ls "$TMP/swapped/blobs" | sed -n 10p)
b2=$(ls "$TMP/swapped/blobs" | sed -n 20p)
mv "$TMP/swapped/blobs/$b1" "$TMP/swapped/blobs/x"
mv "$TMP/swapped/blobs/$b2" "$TMP/swapped/blobs/$b1"
mv "$TMP/swapped/blobs/x" "$TMP/swapped/blobs/$b2"
try swapped --json "$TMP/swapped" A
failed_clean swapped "blobs/($b1|$b2)" kept

[ $nbad = 0 ] || fail "$nbad checks failed (see above)"
echo "remote-hostile: ok"
