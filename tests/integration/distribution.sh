#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Publish and pull through a real web server. Host 1 imports images A and B
# (B is A plus more files) and publishes both to a directory that nginx
# serves on 127.0.0.1. The tree is checked with real tools: each manifest's
# name is the b3sum of its bytes, each blob decompresses (zstd) to bytes
# whose b3sum is its name. Republishing uploads nothing. Host 2 pulls A, then
# B: it must fetch exactly the blobs of the chunks B has and A lacks (counted
# from the two manifests, and in nginx's access log: each once), and export
# both byte-identical. A publish killed -9 mid-upload leaves temp files that
# republishing removes. Host 3 pulls through a delay proxy, is killed -9 in
# the middle, and resumes: nothing it kept is fetched again. Host 4 pulls
# lazily: fsck warns, export fetches, then a full pull completes it; one
# named A.tmp.1 (any valid name) reads the same. Host 5
# pulls over HTTPS from nginx with HTTP/2: the requests share one connection;
# without the CA bundle the self-signed certificate is refused. Host 7 serves
# a lazy image over NBD and is killed -9 mid-read; host 8 serves one with
# --prefetch and ends up with all of it, unread.
. "$(dirname "$0")/../lib/functions.sh"
requires mkfs.ext4 b3sum zstd python3 curl openssl
[ -x /usr/sbin/nginx ] || { echo "SKIP: nginx not installed"; exit 77; }

# A: an ext4 image of some system files; B: A's files plus more.
mkdir -p "$TMP/a" "$TMP/b"
cp -a /etc "$TMP/a/" 2>/dev/null || true
cp -a /usr/sbin "$TMP/a/" 2>/dev/null || true
cp -a "$TMP/a/." "$TMP/b/"
cp -a /usr/lib/x86_64-linux-gnu/perl-base /usr/bin/b3sum "$TMP/b/" 2>/dev/null || true
mkfs.ext4 -q -F -E root_owner=0:0 -U 0f0e0d0c-0b0a-0908-0706-050403020100 -d "$TMP/a" "$TMP/A.img" 64M
mkfs.ext4 -q -F -E root_owner=0:0 -U 0f0e0d0c-0b0a-0908-0706-050403020100 -d "$TMP/b" "$TMP/B.img" 64M
rm -rf "$TMP/a" "$TMP/b"

H1=$TMP/host1 H2=$TMP/host2 H3=$TMP/host3 H4=$TMP/host4 WWW=$TMP/www
st --store "$H1" import --quiet "$TMP/A.img" A
st --store "$H1" import --quiet "$TMP/B.img" B
st --store "$H1" publish --quiet A "$WWW/tree"
out=$(st --store "$H1" publish --json B "$WWW/tree")
[ "$(json_field "$out" uploaded)" -gt 0 ] || fail "publishing B uploaded nothing"

# The tree, checked with b3sum and zstd.
id=$(cat "$WWW/tree/refs/B")
[[ $id =~ ^[0-9a-f]{64}$ ]] || fail "refs/B does not hold a manifest id: $id"
[ "$(b3sum --no-names "$WWW/tree/manifests/$id.json")" = "$id" ] || fail "manifest name is not its b3sum"
n=0
for f in $(ls "$WWW/tree/blobs" | shuf -n 40 --random-source=<(yes)); do
        [ "$(zstd -q -d -c "$WWW/tree/blobs/$f" | b3sum --no-names)" = "$f" ] ||
                fail "blob $f does not decompress to bytes with that b3sum"
        n=$((n + 1))
done
[ $n = 40 ] || fail "fewer than 40 blobs"
out=$(st --store "$H1" publish --json B "$WWW/tree")
[ "$(json_field "$out" uploaded)" = 0 ] || fail "republishing B uploaded blobs again: $out"

# A publish killed -9 mid-upload ("Never lose data" #11): stopped while a
# blob's temp file is there, then killed. Republishing removes such temp
# files once stale (aged here with touch), also of the naming before
# ".BASE.tmp.PID.SEQ", but not a young one (a live publisher's) nor a ref
# whose name only looks like one; the tree then pulls byte-identical.
K=$TMP/killed/tree
caught=0
for _ in 1 2 3 4 5; do
        rm -rf "$TMP/killed"
        "$STELLAR" --store "$H1" publish --quiet B "$K" &
        pid=$!
        while kill -0 $pid 2>/dev/null; do
                compgen -G "$K/blobs/.*.tmp.*" >/dev/null || continue
                kill -STOP $pid
                # the stop is asynchronous: look only once it has taken effect
                for _ in $(seq 200); do
                        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != R ] && break
                        sleep 0.005
                done
                grep -q '^State:.*T' "/proc/$pid/status" 2>/dev/null || { kill -CONT $pid 2>/dev/null; continue; }
                if compgen -G "$K/blobs/.*.tmp.*" >/dev/null; then
                        kill -9 $pid
                        caught=1
                        break
                fi
                kill -CONT $pid
        done
        wait $pid 2>/dev/null || true
        [ $caught = 1 ] && break
done
[ $caught = 1 ] || fail "could not kill a publish while it wrote a blob"
[ -e "$K/refs/B" ] && fail "the killed publish wrote its name"
# (any hex base will do: the killed publish may not have finished a blob yet,
# and a pipe into grep -m1 could end in SIGPIPE, which pipefail makes fatal)
old_style=$K/blobs/$(printf '%064x' 48879).tmp.4242.7
: >"$old_style"
mkdir -p "$K/refs"
printf '%064d\n' 0 >"$K/refs/X.tmp.1.2"
touch -d '-1 hour' "$K"/blobs/.*.tmp.* "$old_style" "$K/refs/X.tmp.1.2"
young=$K/blobs/.$(printf '%064d' 0).tmp.4242.8
: >"$young"
st --store "$H1" publish --quiet B "$K"
left=$(find "$K" -name '*.tmp.*' ! -path "$young" ! -path "$K/refs/X.tmp.1.2")
[ -z "$left" ] || fail "republishing after a kill -9 left temp files: $left"
[ -e "$young" ] || fail "republishing removed a young temp file (a live publisher's)"
[ -e "$K/refs/X.tmp.1.2" ] || fail "republishing removed refs/X.tmp.1.2, a valid name"
st --store "$TMP/host9" pull --quiet "$K" B
st --store "$TMP/host9" export B "$TMP/B.out"
cmp "$TMP/B.img" "$TMP/B.out" || fail "B published again after a kill -9 differs"
rm -rf "$TMP/B.out" "$TMP/killed" "$TMP/host9"

# What B lacks after A, from the manifests themselves.
read -r n_lack lack_bytes < <(python3 - "$WWW/tree" <<'EOF'
import json, os, sys
t = sys.argv[1]
def chunks(name):
    m = json.load(open(os.path.join(t, "manifests", open(os.path.join(t, "refs", name)).read().strip() + ".json")))
    return {e[2] for e in m["extents"] if len(e) == 3}
lack = chunks("B") - chunks("A")
print(len(lack), sum(os.path.getsize(os.path.join(t, "blobs", h)) for h in lack))
EOF
)
[ "$n_lack" -gt 0 ] || fail "B has no chunks that A lacks: the test images are wrong"

start_nginx "$WWW"
URL=http://127.0.0.1:$NGINX_PORT/tree
out=$(st --store "$H2" pull --json "$URL" A)
[ "$(json_field "$out" present)" = 0 ] || fail "an empty store had chunks: $out"
: >"$TMP/nginx-access.log.mark"
lines_before=$(wc -l <"$TMP/nginx-access.log")
out=$(st --store "$H2" pull --json "$URL" B)
[ "$(json_field "$out" fetched)" = "$n_lack" ] ||
        fail "pull of B fetched $(json_field "$out" fetched) blobs; B lacks $n_lack after A"
[ "$(json_field "$out" bytes_fetched)" = "$lack_bytes" ] ||
        fail "pull of B fetched $(json_field "$out" bytes_fetched) blob bytes; the lacking blobs are $lack_bytes"
# nginx saw each of those blobs requested once, all answered 200
tail -n +$((lines_before + 1)) "$TMP/nginx-access.log" | grep '/blobs/' >"$TMP/b-blobs.log" || true
[ "$(wc -l <"$TMP/b-blobs.log")" = "$n_lack" ] || fail "nginx served $(wc -l <"$TMP/b-blobs.log") blob requests for $n_lack blobs"
[ "$(awk '{print $NF}' "$TMP/b-blobs.log" | sort -u | wc -l)" -ge 1 ] || true
if grep -v ' 200 ' "$TMP/b-blobs.log" | grep -q .; then fail "blob requests not answered 200"; fi
for x in A B; do
        st --store "$H2" export "$x" "$TMP/$x.out"
        cmp "$TMP/$x.img" "$TMP/$x.out" || fail "pulled $x differs from the original"
        rm -f "$TMP/$x.out"
done
STELLAR_STORE=$H2 fsck_clean
out=$(st --store "$H2" pull --json "$URL" B)
[ "$(json_field "$out" fetched)" = 0 ] || fail "pulling B again fetched blobs"
# a name taken by other content is refused
if st --store "$H2" pull --as A "$URL" B 2>"$TMP/err"; then fail "pull over a different image succeeded"; fi
grep -q "different image" "$TMP/err" || fail "no clear error for a taken name: $(cat "$TMP/err")"

# Resume: pull B through a 20 ms delay proxy with 2 connections, kill -9
# half-way, pull again: what was kept is not fetched again.
start_delay_proxy "$NGINX_PORT" 20
"$STELLAR" --store "$H3" pull --quiet -j 2 "http://127.0.0.1:$PROXY_PORT/tree" B &
pid=$!
total=$(ls "$WWW/tree/blobs" | wc -l)
for _ in $(seq 200); do
        # (no packs yet while the pull starts: du fails, that is 0)
        sz=$(du -sb "$H3/packs" 2>/dev/null | cut -f1) || sz=0
        [ "${sz:-0}" -gt $((4 << 20)) ] && break
        sleep 0.05
done
kill -9 $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
[ -e "$H3/refs/B" ] && fail "the pull finished before it was killed: make the test slower"
out=$(st --store "$H3" pull --json "$URL" B)
kept=$(json_field "$out" present)
[ "$kept" -gt 0 ] || fail "the resumed pull found nothing kept from the first: $out"
[ $(($(json_field "$out" fetched) + kept)) = "$(json_field "$out" chunks)" ] || fail "fetched + kept != chunks: $out"
st --store "$H3" export B "$TMP/B.out"
cmp "$TMP/B.img" "$TMP/B.out" || fail "resumed pull of B differs"
rm -f "$TMP/B.out"
STELLAR_STORE=$H3 fsck_clean

# Lazy: the manifest only; fsck warns; export fetches (and keeps) what it reads.
out=$(st --store "$H4" pull --json --lazy "$URL" A)
[ "$(json_field "$out" fetched)" = 0 ] || fail "a lazy pull fetched blobs"
[ "$(json_field "$out" lazy)" = True ] || fail "not reported lazy: $out"
st --store "$H4" fsck >"$TMP/fsck.out" || { cat "$TMP/fsck.out"; fail "fsck failed on a lazy image"; }
grep -q "not fetched yet" "$TMP/fsck.out" || fail "fsck does not say chunks are not fetched yet"
st --store "$H4" export A "$TMP/A.out"
cmp "$TMP/A.img" "$TMP/A.out" || fail "export of a lazily pulled image differs"
out=$(st --store "$H4" pull --json "$URL" A)
[ "$(json_field "$out" fetched)" = 0 ] || fail "completing the lazy pull fetched again what export kept: $out"
[ -e "$H4/sources/A" ] && fail "a complete image still has a source"
STELLAR_STORE=$H4 fsck_clean
# A lazily pulled image whose name has ".tmp" in it ("Never lose data" #7:
# its sources/ file was taken for a temp file, so no read could fetch).
st --store "$TMP/host4t" pull --quiet --lazy --as A.tmp.1 "$URL" A
st --store "$TMP/host4t" export A.tmp.1 "$TMP/A.out" || fail "a lazy image named A.tmp.1 cannot be read"
cmp "$TMP/A.img" "$TMP/A.out" || fail "export of the lazy image A.tmp.1 differs"
rm -f "$TMP/A.out"
# Publish to a directory leaves no temp file, and none has a name a
# published name could have (they start with '.').
if find "$WWW/tree" -name '*.tmp*' | grep -q .; then fail "temp files left in the tree"; fi
echo "distribution: ok ($n_lack blobs B lacks after A, $total in the tree)"

# The daemon fetching a lazy image on demand is killed -9 mid-read: what it
# kept survives (recovery indexes it), fsck is clean, and a full pull
# fetches exactly the rest.
if command -v nbdcopy >/dev/null; then
        H7=$TMP/host7
        st --store "$H7" pull --quiet --lazy "http://127.0.0.1:$PROXY_PORT/tree" B
        STELLAR_STORE=$H7 start_serve
        nbdcopy "$(U B)" "$TMP/B.nbd" 2>/dev/null &
        copy=$!
        for _ in $(seq 100); do
                sz=$(du -sb "$H7/packs" | cut -f1)
                [ "$sz" -gt $((2 << 20)) ] && break
                sleep 0.05
        done
        kill -9 "$SERVE"
        wait "$SERVE" 2>/dev/null || true
        wait "$copy" 2>/dev/null || true
        st --store "$H7" fsck >"$TMP/fsck.out" || { cat "$TMP/fsck.out"; fail "fsck after killing the daemon"; }
        out=$(st --store "$H7" pull --json "$URL" B)
        kept=$(json_field "$out" present)
        [ "$kept" -gt 0 ] || fail "nothing the killed daemon fetched was kept: $out"
        [ $(($(json_field "$out" fetched) + kept)) = "$(json_field "$out" chunks)" ] || fail "fetched + kept != chunks: $out"
        st --store "$H7" export B "$TMP/B.out"
        cmp "$TMP/B.img" "$TMP/B.out" || fail "B differs after the daemon was killed"
        STELLAR_STORE=$H7 fsck_clean
fi

# serve --prefetch: the daemon fetches all of a lazy image in the
# background, unread; a full pull afterwards has nothing left to fetch.
H8=$TMP/host8
st --store "$H8" pull --quiet --lazy "$URL" B
STELLAR_STORE=$H8 start_serve --prefetch
last=-1 still=0
for _ in $(seq 300); do # until the packs stop growing for a second
        sz=$(du -sb "$H8/packs" | cut -f1)
        if [ "$sz" = "$last" ] && [ "$sz" -gt 4096 ]; then
                still=$((still + 1))
                [ $still -ge 10 ] && break
        else
                still=0
        fi
        last=$sz
        sleep 0.1
done
# the chunks came through the remote tier, and status counts them
rf=$(st --store "$H8" status --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["remote_fetches"])')
[ "$rf" -gt 0 ] || fail "status counts no remote fetches after serve --prefetch: $rf"
kill "$SERVE"
wait "$SERVE" || fail "stellar serve --prefetch did not exit cleanly"
out=$(st --store "$H8" pull --json "$URL" B)
[ "$(json_field "$out" fetched)" = 0 ] || fail "after serve --prefetch a pull still fetched: $out"
STELLAR_STORE=$H8 fsck_clean

# HTTPS with HTTP/2: one connection carries the parallel requests.
mkdir -p "$TMP/www2" && cp -a "$WWW/tree" "$TMP/www2/"
: >"$TMP/nginx-access.log"
NGINX_TLS=1 start_nginx "$TMP/www2"
out=$(STELLAR_CA_BUNDLE=$NGINX_CA st --store "$TMP/host5" pull --json -j 64 "https://127.0.0.1:$NGINX_PORT/tree" B)
[ "$(json_field "$out" fetched)" = "$(json_field "$out" chunks)" ] || fail "https pull did not fetch everything: $out"
grep -q 'HTTP/2.0$' "$TMP/nginx-access.log" || fail "no request over HTTP/2"
conns=$(awk '{print $5}' "$TMP/nginx-access.log" | sort -u | wc -l)
[ "$conns" -le 4 ] || fail "HTTP/2 pull used $conns connections for 64 requests in flight"
st --store "$TMP/host5" export B "$TMP/B.out"
cmp "$TMP/B.img" "$TMP/B.out" || fail "https pull of B differs"
if st --store "$TMP/host6" pull "https://127.0.0.1:$NGINX_PORT/tree" B 2>"$TMP/err"; then
        fail "a pull trusted a self-signed certificate"
fi
echo "https: HTTP/2 over $conns connection(s)"
