#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Publish to and pull from a real S3 server: Ceph's radosgw on 127.0.0.1
# (start_s3, tests/tools/s3-server.sh), requests signed with SigV4.
#   Host 1 imports two 32 MiB ext4 images, A (/etc) and B (A's files plus
#   5 MB of perl-base), and publishes A to s3://$S3_BUCKET/images (path
#   style) and to a directory. With curl --aws-sigv4 (not stellar): the
#   bucket's listing under images/ is exactly the directory's files
#   (refs/A, manifests/<id>.json, blobs/<hash>), and refs/A, the manifest it
#   names and one blob GET byte-identical to the directory's; the manifest's
#   name is the b3sum of its bytes, the blob decompresses (zstd) to bytes
#   whose b3sum is its name. Publishing A uploaded every chunk of A;
#   publishing B then uploads exactly the chunks of B that A lacks (counted
#   from the two manifests, fetched with curl), and the bucket then holds
#   exactly the blobs of A and B.
#   Host 2 pulls A and B from s3:// (path style): B fetches exactly what A
#   lacks; both export byte-identical; fsck clean.
#   Host 3 pulls both with STELLAR_S3_STYLE=virtual and
#   AWS_ENDPOINT_URL=http://localhost:PORT (BUCKET.localhost, checked to
#   work with curl first): the same bytes.
#   A wrong secret: pull fails (exit 1) with "access denied" and (HTTP 403),
#   no name is created and fsck is clean; publish fails the same way.
#   Publishing A and B again uploads 0 blobs (the bucket then holds over
#   1000 blobs, so stellar's ListObjectsV2 takes more than one page).
. "$(dirname "$0")/../lib/functions.sh"
requires mkfs.ext4 curl b3sum zstd python3

mkdir -p "$TMP/a" "$TMP/b"
cp -a /etc "$TMP/a/" 2>/dev/null || true
# 8 MiB of random data besides: over 1,000 chunks whatever /etc holds
head -c $((8 << 20)) /dev/urandom >"$TMP/a/random.bin"
cp -a "$TMP/a/." "$TMP/b/"
cp -a /usr/lib/x86_64-linux-gnu/perl-base "$TMP/b/" 2>/dev/null || true
for x in A B; do
        mkfs.ext4 -q -F -E root_owner=0:0 -U 0f0e0d0c-0b0a-0908-0706-050403020100 \
                -d "$TMP/${x,}" "$TMP/$x.img" 32M
done
rm -rf "$TMP/a" "$TMP/b"

H1=$TMP/host1 H2=$TMP/host2 H3=$TMP/host3 H4=$TMP/host4
st --store "$H1" import --quiet "$TMP/A.img" A
st --store "$H1" import --quiet "$TMP/B.img" B
st --store "$H1" publish --quiet A "$TMP/dir"

start_s3
export STELLAR_S3_STYLE=path
S3=s3://$S3_BUCKET/images
S3_PORT=${AWS_ENDPOINT_URL##*:}
echo "S3: $AWS_ENDPOINT_URL bucket $S3_BUCKET"

# s3get KEY OUT: GET $S3_BUCKET/KEY with curl, signed; prints the HTTP status.
s3get() {
        curl -sS -o "$2" -w '%{http_code}' --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
                --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
                -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$AWS_ENDPOINT_URL/$S3_BUCKET/$1"
}
# s3list PREFIX: every key under PREFIX (ListObjectsV2, all pages), sorted.
s3list() {
        python3 - "$1" <<'EOF'
import os, subprocess, sys, urllib.parse, xml.etree.ElementTree as ET
prefix, token, keys = sys.argv[1], None, []
e = os.environ
ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
while True:
    q = {"list-type": "2", "prefix": prefix}
    if token:
        q["continuation-token"] = token
    # SigV4: parameters sorted, values encoded ('/' too)
    qs = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in sorted(q.items()))
    r = subprocess.run(["curl", "-sS", "-f", "--aws-sigv4", f"aws:amz:{e['AWS_REGION']}:s3",
                        "--user", f"{e['AWS_ACCESS_KEY_ID']}:{e['AWS_SECRET_ACCESS_KEY']}",
                        "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
                        f"{e['AWS_ENDPOINT_URL']}/{e['S3_BUCKET']}?{qs}"], capture_output=True, check=True)
    root = ET.fromstring(r.stdout)
    keys += [c.findtext(f"{ns}Key") for c in root.iter(f"{ns}Contents")]
    token = root.findtext(f"{ns}NextContinuationToken")
    if root.findtext(f"{ns}IsTruncated") != "true" or not token:
        break
print("\n".join(sorted(keys)))
EOF
}

# Host 1 publishes A: every chunk uploaded.
out=$(st --store "$H1" publish --json A "$S3") || fail "publish of A to $S3 failed"
[ "$(json_field "$out" uploaded)" = "$(json_field "$out" chunks)" ] ||
        fail "publishing A to an empty bucket did not upload every chunk: $out"
[ "$(json_field "$out" present)" = 0 ] || fail "an empty bucket had blobs: $out"
id_a=$(json_field "$out" manifest)

# The bucket holds the directory's layout, byte for byte.
s3list images/ | sed 's|^images/||' >"$TMP/s3.keys"
(cd "$TMP/dir" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) >"$TMP/dir.keys"
LC_ALL=C sort -o "$TMP/s3.keys" "$TMP/s3.keys"
diff "$TMP/dir.keys" "$TMP/s3.keys" >"$TMP/keys.diff" ||
        { head -20 "$TMP/keys.diff" >&2; fail "the bucket's keys under images/ are not the directory's files"; }
grep -q "^manifests/$id_a.json$" "$TMP/s3.keys" || fail "no manifests/$id_a.json in the bucket"
[ "$(grep -c '^blobs/[0-9a-f]\{64\}$' "$TMP/s3.keys")" = "$(json_field "$out" chunks)" ] ||
        fail "the bucket does not hold one blobs/<hash> per chunk"
[ "$(s3get images/refs/A "$TMP/ref")" = 200 ] || fail "GET images/refs/A failed: $(cat "$TMP/ref")"
cmp -s "$TMP/ref" "$TMP/dir/refs/A" || fail "refs/A in the bucket differs from the directory's"
[ "$(cat "$TMP/ref")" = "$id_a" ] || fail "refs/A does not name A's manifest $id_a"
[ "$(s3get "images/manifests/$id_a.json" "$TMP/m.json")" = 200 ] || fail "GET of A's manifest failed"
cmp -s "$TMP/m.json" "$TMP/dir/manifests/$id_a.json" || fail "A's manifest in the bucket differs from the directory's"
[ "$(b3sum --no-names "$TMP/m.json")" = "$id_a" ] || fail "A's manifest's name is not the b3sum of its bytes"
blob=$(grep '^blobs/' "$TMP/s3.keys" | sed -n 7p)
[ "$(s3get "images/$blob" "$TMP/blob")" = 200 ] || fail "GET images/$blob failed"
cmp -s "$TMP/blob" "$TMP/dir/$blob" || fail "$blob in the bucket differs from the directory's"
[ "$(zstd -q -d -c "$TMP/blob" | b3sum --no-names)" = "${blob#blobs/}" ] ||
        fail "$blob does not decompress to bytes with that b3sum"

# B: exactly the chunks A lacks are uploaded.
out=$(st --store "$H1" publish --json B "$S3") || fail "publish of B to $S3 failed"
id_b=$(json_field "$out" manifest)
[ "$(s3get "images/manifests/$id_b.json" "$TMP/mb.json")" = 200 ] || fail "GET of B's manifest failed"
read -r n_b n_lack < <(python3 - "$TMP/m.json" "$TMP/mb.json" <<'EOF'
import json, sys
a, b = ({e[2] for e in json.load(open(p))["extents"] if len(e) == 3} for p in sys.argv[1:])
print(len(b), len(b - a))
EOF
)
[ "$n_lack" -gt 0 ] || fail "B has no chunks that A lacks: the test images are wrong"
[ "$(json_field "$out" chunks)" = "$n_b" ] || fail "publish of B counts $(json_field "$out" chunks) chunks; its manifest has $n_b"
[ "$(json_field "$out" uploaded)" = "$n_lack" ] ||
        fail "publish of B uploaded $(json_field "$out" uploaded) blobs; B has $n_lack chunks that A lacks"
[ "$(json_field "$out" present)" = $((n_b - n_lack)) ] || fail "publish of B: present is not chunks - uploaded: $out"
n_bucket=$(s3list images/blobs/ | grep -c '^images/blobs/[0-9a-f]\{64\}$')
n_a=$(grep -c '^blobs/' "$TMP/s3.keys")
[ "$n_bucket" = $((n_a + n_lack)) ] || fail "the bucket holds $n_bucket blobs, not A's $n_a + B's $n_lack"
# over 1000 keys: listing them (publish again, below) takes two pages
[ "$n_bucket" -gt 1000 ] || fail "only $n_bucket blobs: the test images are too small to page the listing"

# Host 2: path style.
out=$(st --store "$H2" pull --json "$S3" A) || fail "pull of A from $S3 failed"
[ "$(json_field "$out" fetched)" = "$(json_field "$out" chunks)" ] || fail "pull of A into an empty store: $out"
out=$(st --store "$H2" pull --json "$S3" B) || fail "pull of B from $S3 failed"
[ "$(json_field "$out" fetched)" = "$n_lack" ] ||
        fail "pull of B after A fetched $(json_field "$out" fetched) blobs; B lacks $n_lack"
for x in A B; do
        st --store "$H2" export "$x" "$TMP/$x.out"
        cmp "$TMP/$x.img" "$TMP/$x.out" || fail "$x pulled from S3 (path style) differs from the original"
done
STELLAR_STORE=$H2 fsck_clean

# Host 3: virtual-host style, BUCKET.localhost (curl first: the server does it).
code=$(curl -sS -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:$AWS_REGION:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
        "http://$S3_BUCKET.localhost:$S3_PORT/images/refs/A")
[ "$code" = 200 ] || fail "the S3 server does not answer virtual-host requests (curl: $code)"
for x in A B; do
        STELLAR_S3_STYLE=virtual AWS_ENDPOINT_URL=http://localhost:$S3_PORT \
                st --store "$H3" pull --quiet "$S3" "$x" || fail "pull of $x from $S3 (virtual-host style) failed"
        st --store "$H3" export "$x" "$TMP/$x.out"
        cmp "$TMP/$x.img" "$TMP/$x.out" || fail "$x pulled from S3 (virtual-host style) differs from the original"
        rm -f "$TMP/$x.out"
done
STELLAR_STORE=$H3 fsck_clean
# radosgw saw them as virtual-host requests: no bucket in the path
rgwlog=$TMP/s3/log/client.rgw.a.log
for _ in $(seq 50); do
        n_virtual=$(grep -c '"GET /images/blobs/[0-9a-f]\{64\} HTTP/1.1" 200 .*"stellar/' "$rgwlog" || true)
        [ "$n_virtual" -gt 0 ] && break
        sleep 0.1
done
[ "$n_virtual" -gt 0 ] || fail "radosgw's log shows no virtual-host blob request from stellar ($rgwlog)"

# A wrong secret: access denied, nothing stored.
rc=0
AWS_SECRET_ACCESS_KEY=wrong-secret st --store "$H4" pull --json "$S3" A >/dev/null 2>"$TMP/err" || rc=$?
[ $rc = 1 ] || fail "pull with a wrong secret exited $rc, not 1: $(cat "$TMP/err")"
grep -q '^stellar: pull failed: .*(HTTP 403).*access denied' "$TMP/err" ||
        fail "pull with a wrong secret does not say access denied (HTTP 403): $(cat "$TMP/err")"
[ ! -e "$H4/refs/A" ] || fail "a pull with a wrong secret created A"
if [ -d "$H4" ]; then STELLAR_STORE=$H4 fsck_clean; fi
rc=0
AWS_SECRET_ACCESS_KEY=wrong-secret st --store "$H1" publish --json A "$S3" >/dev/null 2>"$TMP/err" || rc=$?
[ $rc = 1 ] || fail "publish with a wrong secret exited $rc, not 1: $(cat "$TMP/err")"
grep -q '^stellar: publish failed: .*access denied' "$TMP/err" ||
        fail "publish with a wrong secret does not say access denied: $(cat "$TMP/err")"
echo "wrong secret: $(cat "$TMP/err")"

# Publishing again uploads nothing.
for x in A B; do
        out=$(st --store "$H1" publish --json "$x" "$S3") || fail "publishing $x again failed"
        [ "$(json_field "$out" uploaded)" = 0 ] || fail "publishing $x again uploaded blobs: $out"
done
echo "s3: ok ($n_b chunks in B, $n_lack of them not in A)"
