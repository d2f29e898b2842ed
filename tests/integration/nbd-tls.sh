#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# NBD over TLS (NBD_OPT_STARTTLS): a TCP listener serves TLS only, with
# pre-shared keys and x509 certificates; a Unix socket offers it. Real
# clients: nbdinfo and nbdcopy (libnbd, nbds:// and nbds+unix:// URIs with
# tls-psk-file or tls-certificates), qemu-img (tls-creds-psk, tls-creds-x509).
# A wrong key, a plain client on TCP and a daemon with a TCP listener but no
# credentials (and no --tls=off) are refused.
. "$(dirname "$0")/../lib/functions.sh"
requires nbdinfo nbdcopy qemu-img openssl

st init >/dev/null
head -c 3000000 /dev/urandom >"$TMP/a.raw"
st import -q "$TMP/a.raw" a
st create v --size 4M

# keys: psktool's format, USERNAME:HEXKEY
mkdir "$TMP/psk" "$TMP/bad" "$TMP/certs" "$TMP/client"
echo "alice:$(openssl rand -hex 32)" >"$TMP/psk/keys.psk"
echo "alice:$(openssl rand -hex 32)" >"$TMP/bad/keys.psk"
chmod 600 "$TMP/psk/keys.psk" "$TMP/bad/keys.psk"
# x509: a CA, and a server certificate for 127.0.0.1 signed by it
(
        cd "$TMP/certs"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca-cert.pem -days 2 \
                -subj /CN=stellar-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr \
                -subj /CN=127.0.0.1 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial \
                -out server-cert.pem -days 2 -extfile ext.cnf 2>/dev/null
) || fail "making certificates"
cp "$TMP/certs/ca-cert.pem" "$TMP/client/"

# a TCP listener without credentials is refused unless --tls=off
PORT=$(free_port)
# (exit status 1, a refusal: not a crash on the way out)
rc=0
timeout 60 "$STELLAR" serve --nbd "tcp:127.0.0.1:$PORT" 2>"$TMP/notls.log" || rc=$?
[ $rc = 0 ] && fail "plain TCP without --tls=off started"
[ $rc = 1 ] || { cat "$TMP/notls.log" >&2; fail "the refused serve ended with status $rc, not 1"; }
grep -q "serves TLS only" "$TMP/notls.log" || { cat "$TMP/notls.log" >&2; fail "no clear refusal of plain TCP"; }

SOCK="$TMP/nbd.sock"
PORT=$(free_port)
"$STELLAR" serve --nbd "unix:$SOCK" --nbd "tcp:127.0.0.1:$PORT" --tls-psk "$TMP/psk/keys.psk" \
        --tls-certificates "$TMP/certs" 2>"$TMP/serve.log" &
SERVE=$!
_cleanup_pids+=("$SERVE")
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
grep -q "TLS required" "$TMP/serve.log" || { cat "$TMP/serve.log" >&2; fail "serve did not start with TLS"; }
PSK="tls-psk-file=$TMP/psk/keys.psk"

echo "== PSK over TCP and over a Unix socket"
out=$(nbdinfo --size "nbds://alice@127.0.0.1:$PORT/a?$PSK") || fail "nbdinfo over TLS (PSK)"
[ "$out" = 3000000 ] || fail "nbdinfo size over TLS: $out"
nbdcopy "nbds://alice@127.0.0.1:$PORT/a?$PSK" "$TMP/a.out" || fail "nbdcopy over TLS"
cmp -s "$TMP/a.out" "$TMP/a.raw" || fail "bytes over TLS"
nbdcopy "nbds+unix://alice@/a?socket=$SOCK&$PSK" "$TMP/a2.out" || fail "nbdcopy over TLS on the Unix socket"
cmp -s "$TMP/a2.out" "$TMP/a.raw" || fail "bytes over TLS (Unix)"
# writes, many in flight, then read back
head -c 4194304 /dev/urandom >"$TMP/v.in"
nbdcopy "$TMP/v.in" "nbds://alice@127.0.0.1:$PORT/v?$PSK" || fail "writing over TLS"
nbdcopy "nbds://alice@127.0.0.1:$PORT/v?$PSK" "$TMP/v.out" || fail "reading back over TLS"
cmp -s "$TMP/v.in" "$TMP/v.out" || fail "what was written over TLS"

echo "== x509"
out=$(nbdinfo --size "nbds://127.0.0.1:$PORT/a?tls-certificates=$TMP/client") || fail "nbdinfo over TLS (x509)"
[ "$out" = 3000000 ] || fail "nbdinfo size over x509: $out"

echo "== qemu-img"
mkdir "$TMP/qpsk"
cp "$TMP/psk/keys.psk" "$TMP/qpsk/keys.psk"
qemu-img convert --object "tls-creds-psk,id=t0,endpoint=client,dir=$TMP/qpsk,username=alice" \
        --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=a,tls-creds=t0" \
        -O raw "$TMP/q.out" || fail "qemu-img over TLS (PSK)"
# (qemu's block layer pads an export's size up to 512 bytes, with zeros)
[ "$(stat -c %s "$TMP/q.out")" = 3000320 ] || fail "qemu-img size over TLS: $(stat -c %s "$TMP/q.out")"
cmp -s -n 3000000 "$TMP/q.out" "$TMP/a.raw" || fail "qemu-img bytes over TLS"
qemu-img convert --object "tls-creds-x509,id=t1,endpoint=client,dir=$TMP/client" \
        --image-opts "driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$PORT,export=a,tls-creds=t1" \
        -O raw "$TMP/q2.out" || fail "qemu-img over TLS (x509)"
cmp -s -n 3000000 "$TMP/q2.out" "$TMP/a.raw" || fail "qemu-img bytes over x509"

echo "== refused: a wrong key, a plain client on TCP"
if nbdinfo --size "nbds://alice@127.0.0.1:$PORT/a?tls-psk-file=$TMP/bad/keys.psk" >/dev/null 2>&1; then
        fail "a wrong key was let in"
fi
if nbdinfo --size "nbd://127.0.0.1:$PORT/a" >/dev/null 2>&1; then fail "a plain client on TCP was let in"; fi
sleep 0.2
grep -q "TLS handshake failed" "$TMP/serve.log" || { cat "$TMP/serve.log" >&2; fail "the wrong key left no trace"; }
grep -q "refused (reply 0x80000005)" "$TMP/serve.log" || { cat "$TMP/serve.log" >&2; fail "the plain client left no trace"; }
# the Unix socket offers TLS but does not require it
out=$(nbdinfo --size "nbd+unix:///a?socket=$SOCK") || fail "plain client on the Unix socket"
[ "$out" = 3000000 ] || fail "plain size on the Unix socket: $out"

kill "$SERVE"
wait "$SERVE" || fail "serve exited with an error"
_cleanup_pids=()
if grep -Eq "AddressSanitizer|runtime error|LeakSanitizer" "$TMP/serve.log"; then
        cat "$TMP/serve.log" >&2
        fail "sanitizer report in the daemon's log"
fi
fsck_clean
echo OK
