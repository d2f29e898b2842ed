# SPDX-License-Identifier: Apache-2.0
# Shared shell helpers for tests/integration/*.sh. Each test sources this file:
# it gets $STELLAR (the binary), a private $TMP removed on exit, fail/requires.
set -euo pipefail

STELLAR=${STELLAR:?STELLAR must point to the stellar binary}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stellar-it-XXXXXX")
export STELLAR_STORE="$TMP/store"
_TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools" && pwd)
_cleanup_pids=()
_s3_dir=
_cleanup() {
        local rc=$?
        # A failed test shows what its helper servers said: a server that
        # died leaves its reason only there.
        if [ "$rc" != 0 ]; then
                for f in "$TMP"/proxy.log "$TMP"/bad-http.log "$TMP"/serve.log "$TMP"/nginx-*/error.log; do
                        [ -s "$f" ] || continue
                        echo "--- last lines of ${f#"$TMP"/}:" >&2
                        tail -n 15 "$f" >&2
                done
        fi
        if [ -n "$_s3_dir" ]; then "$_TOOLS/s3-server.sh" stop "$_s3_dir" >/dev/null 2>&1 || true; fi
        # A server that dies of the SIGTERM (wait returns 143) must not end
        # the cleanup early under set -e.
        for p in "${_cleanup_pids[@]:-}"; do
                if [ -n "$p" ] && kill "$p" 2>/dev/null; then wait "$p" 2>/dev/null || true; fi
        done
        rm -rf "$TMP"
}
trap _cleanup EXIT
# A command that ends the test under set -e says which one it was (not
# inherited by functions and subshells, where a failure may be expected).
trap 'echo "FAIL: ${BASH_SOURCE[0]##*/}:$LINENO: \`$BASH_COMMAND\` exited $?" >&2' ERR

fail() {
        echo "FAIL: $*" >&2
        exit 1
}

# requires CMD...: skip (exit 77) when a tool is missing.
requires() {
        for c in "$@"; do
                command -v "$c" >/dev/null 2>&1 || { echo "SKIP: $c not installed"; exit 77; }
        done
}

st() { "$STELLAR" "$@"; }

# text_image FILE MIB SEED: MIB MiB of text of random words (it compresses,
# about 2.5x at zstd 3), the same bytes for the same seed.
text_image() {
        /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import random, sys
r = random.Random(int(sys.argv[3]))
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randrange(3, 9))) for _ in range(3000)]
out = bytearray()
n = int(sys.argv[2]) << 20
while len(out) < n:
    out += b" ".join(r.choice(words) for _ in range(r.randrange(8, 20))) + b"\n"
open(sys.argv[1], "wb").write(out[:n])
PY
}

# start_checked_reader NAME FILE: random 4 KiB reads of export NAME, each
# checked against FILE, in the background (READER_PID) until $TMP/stop
# exists; a timestamp per answer in $TMP/reads. Waits for the first answer.
start_checked_reader() {
        /usr/bin/python3 "$_TOOLS/nbd-check-reader.py" "$(U "$1")" "$2" "$TMP/reads" "$TMP/stop" 2>"$TMP/reader.err" &
        READER_PID=$!
        _cleanup_pids+=("$READER_PID")
        for _ in $(seq 200); do [ -s "$TMP/reads" ] && break; sleep 0.05; done
        [ -s "$TMP/reads" ] || { cat "$TMP/reader.err" >&2; fail "the reader did not start"; }
}

# fsck_clean: the store has no errors.
fsck_clean() {
        st fsck --quiet >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out" >&2; fail "fsck found errors"; }
}

# json_field JSON KEY: a number or string field of a flat JSON object.
json_field() {
        python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# vm_guest: what the VM tests need first: busybox-static (skip without it,
# unless root, for whom build-initramfs.sh installs it), VM (tests/vm/),
# STELLAR_VM_DIR (the guest's cache, exported for boot.sh) and the guest,
# built once and then reused (the first build downloads ~27 MB).
vm_guest() {
        if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep "ok installed" >/dev/null &&
                [ "$(id -u)" != 0 ]; then
                echo "SKIP: busybox-static not installed"
                exit 77
        fi
        VM=$(cd "$(dirname "${BASH_SOURCE[0]}")/../vm" && pwd)
        export STELLAR_VM_DIR=${STELLAR_VM_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/stellar-vm}
        "$VM/build-initramfs.sh" "$STELLAR_VM_DIR" || fail "cannot build the test guest"
}

# daemon_fail MSG: fail, with all that the daemon said (its stderr, which
# the test sends to $TMP/serve.err, or start_serve to $TMP/serve.log).
daemon_fail() {
        local f
        for f in "$TMP/serve.err" "$TMP/serve.log"; do
                [ -e "$f" ] || continue
                echo "--- stellar serve stderr:" >&2
                cat "$f" >&2 || true
        done
        fail "$@"
}

# guest_disk FILE: the 64 MiB disk the VM tests boot with: 16 MiB random,
# 8 MiB repeating the first 8 (dedup), a 24 MiB ext4 of /etc, 16 MiB of
# zeros (a hole).
guest_disk() {
        local mib=$((1 << 20))
        head -c $((16 * mib)) /dev/urandom >"$TMP/random.bin"
        make_ext4 "$TMP/fs.img" 24M /etc
        { cat "$TMP/random.bin"; head -c $((8 * mib)) "$TMP/random.bin"; cat "$TMP/fs.img"; } >"$1"
        rm -f "$TMP/random.bin" "$TMP/fs.img"
        truncate -s $((64 * mib)) "$1"
}

# make_ext4 IMG SIZE DIR...: an ext4 image holding copies of DIRs.
make_ext4() {
        local img=$1 size=$2
        shift 2
        local root="$TMP/ext4root.$$"
        rm -rf "$root"
        mkdir -p "$root"
        for d in "$@"; do cp -a "$d" "$root/" 2>/dev/null || true; done
        mkfs.ext4 -q -F -d "$root" "$img" "$size"
        rm -rf "$root"
}

# start_serve: run `stellar serve` on $TMP/nbd.sock and 127.0.0.1:$PORT (a
# random port), with --pidfile $TMP/pid and --stats $TMP/stats.json, logging to
# $TMP/serve.log. Sets SOCK, PORT, SERVE (the daemon's pid; stopped at exit)
# and returns once the socket and pidfile are there. U NAME gives a URI.
start_serve() {
        SOCK="$TMP/nbd.sock"
        rm -f "$SOCK" "$TMP/pid" # a daemon killed -9 before leaves them
        PORT=$(free_port)
        "$STELLAR" serve --nbd "unix:$SOCK" --nbd "tcp:127.0.0.1:$PORT" --tls=off --pidfile "$TMP/pid" \
                --stats "$TMP/stats.json" "$@" 2>"$TMP/serve.log" &
        SERVE=$!
        _cleanup_pids+=("$SERVE")
        for _ in $(seq 100); do [ -S "$SOCK" ] && [ -f "$TMP/pid" ] && break; sleep 0.05; done
        [ -S "$SOCK" ] || { cat "$TMP/serve.log" >&2; fail "stellar serve did not start"; }
        [ "$(cat "$TMP/pid")" = "$SERVE" ] || fail "the pidfile does not hold the daemon's pid"
}
U() { echo "nbd+unix:///$1?socket=$SOCK"; }

# free_port: a TCP port on 127.0.0.1 that nothing uses now, below the
# kernel's ephemeral range (so no outgoing connection takes it meanwhile).
free_port() {
        python3 -c '
import random, socket
while True:
    p = random.randrange(20000, 32000)
    try:
        socket.socket().bind(("127.0.0.1", p))
        print(p)
        break
    except OSError:
        pass'
}

# _wait_port_file FILE PID LOG WHAT: wait until the server PID has written its
# port to FILE, and print it; fail with LOG if it exits first or takes 10 s.
_wait_port_file() {
        for _ in $(seq 100); do
                [ -s "$1" ] && { cat "$1"; return 0; }
                kill -0 "$2" 2>/dev/null || break
                sleep 0.1
        done
        cat "$3" >&2
        fail "$4 did not start"
}

# start_nginx ROOT: serve the files under ROOT over HTTP/1.1 with keep-alive:
# nginx (nginx-light) in the foreground as our child, on 127.0.0.1:$NGINX_PORT
# (a free port), with its config, pid, temp files and error log in
# $TMP/nginx-$NGINX_PORT. Each request is one line of $TMP/nginx-access.log
# (shared if a test starts several):
#     METHOD URI STATUS BODY_BYTES CONNECTION_ID REQUEST_NO_ON_IT SECONDS
# so a test can count requests, bytes and connections. Sets NGINX_PORT and
# NGINX_PID (stopped at exit); returns once it answers.
# With NGINX_TLS=1: HTTPS with HTTP/2 (ALPN) on a self-signed certificate for
# 127.0.0.1, whose PEM is $NGINX_CA; log lines end with the protocol.
start_nginx() {
        [ -x /usr/sbin/nginx ] || { echo "SKIP: nginx not installed"; exit 77; }
        local root dir listen scheme=http proto=""
        root=$(realpath "$1")
        NGINX_PORT=$(free_port)
        dir=$TMP/nginx-$NGINX_PORT
        mkdir -p "$dir/tmp"
        listen="127.0.0.1:$NGINX_PORT"
        if [ "${NGINX_TLS:-0}" = 1 ]; then
                NGINX_CA=$dir/cert.pem
                openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/key.pem" -out "$NGINX_CA" \
                        -days 2 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null ||
                        fail "cannot make a certificate"
                listen="$listen ssl http2; ssl_certificate $NGINX_CA; ssl_certificate_key $dir/key.pem"
                scheme=https
                proto=' $server_protocol'
        fi
        # "user root": as root, nginx's workers would otherwise run as nobody,
        # who cannot read under $TMP (mode 0700).
        cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 1024; }
http {
        types { application/json json; }
        default_type application/octet-stream;
        log_format counts '\$request_method \$uri \$status \$body_bytes_sent \$connection \$connection_requests \$request_time$proto';
        access_log $TMP/nginx-access.log counts;
        sendfile on;
        keepalive_timeout 60s;
        keepalive_requests 100000;
        client_body_temp_path $dir/tmp/body;
        proxy_temp_path $dir/tmp/proxy;
        fastcgi_temp_path $dir/tmp/fastcgi;
        uwsgi_temp_path $dir/tmp/uwsgi;
        scgi_temp_path $dir/tmp/scgi;
        server {
                listen $listen;
                root $root;
                location = /.probe { access_log off; return 204; }
        }
}
EOF
        /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' 2>"$dir/stderr" &
        NGINX_PID=$!
        _cleanup_pids+=("$NGINX_PID")
        # Ready when this nginx answers (not whoever else had the port); the
        # probe is not logged, so the access log holds the test's requests.
        for _ in $(seq 100); do
                curl -s -k -m 1 -o /dev/null -D - "$scheme://127.0.0.1:$NGINX_PORT/.probe" 2>/dev/null |
                        grep -qi '^server: nginx' && return 0
                kill -0 "$NGINX_PID" 2>/dev/null || break
                sleep 0.1
        done
        cat "$dir/stderr" "$dir/error.log" >&2
        fail "nginx did not start"
}

# start_s3: a throw-away S3 server (tests/tools/s3-server.sh: a one-node Ceph
# cluster with radosgw on 127.0.0.1, state in $TMP/s3, stopped at exit).
# Exports AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
# AWS_REGION and S3_BUCKET (an empty bucket). Skips the test (77) when radosgw
# is not installed. The server runs as our child (`run`, not `start`), so it
# is reaped here and shares our fate if the test is killed.
start_s3() {
        command -v radosgw >/dev/null 2>&1 || { echo "SKIP: radosgw not installed"; exit 77; }
        _s3_dir=$TMP/s3
        "$_TOOLS/s3-server.sh" run "$_s3_dir" >/dev/null 2>"$TMP/s3.log" &
        S3_PID=$!
        _cleanup_pids+=("$S3_PID")
        while [ ! -s "$_s3_dir/env" ]; do
                kill -0 "$S3_PID" 2>/dev/null || { cat "$TMP/s3.log" >&2; fail "the S3 server did not start"; }
                sleep 0.2
        done
        . "$_s3_dir/env"
}

# start_delay_proxy UPSTREAM_PORT DELAY_MS [OPTION...]: a TCP proxy from
# 127.0.0.1:$PROXY_PORT to 127.0.0.1:UPSTREAM_PORT that adds DELAY_MS of round
# trip (the C build of tests/tools/delay-proxy.c when $DELAY_PROXY names it, as
# meson sets it, else tests/tools/delay-proxy.py: same options, same
# behaviour; a new connection costs one RTT more, as its handshake would,
# unless OPTION is --no-handshake-delay). Sets PROXY_PORT and PROXY_PID
# (stopped at exit); it logs to $TMP/proxy.log, and at exit how many
# connections and bytes it carried.
start_delay_proxy() {
        local pf cmd=(python3 "$_TOOLS/delay-proxy.py")
        [ -z "${DELAY_PROXY:-}" ] || cmd=("$DELAY_PROXY")
        pf=$(mktemp -u "$TMP/proxy-port.XXXXXX")
        "${cmd[@]}" --upstream "127.0.0.1:$1" --delay-ms "$2" --port-file "$pf" \
                "${@:3}" 2>>"$TMP/proxy.log" &
        PROXY_PID=$!
        _cleanup_pids+=("$PROXY_PID")
        PROXY_PORT=$(_wait_port_file "$pf" "$PROXY_PID" "$TMP/proxy.log" "the delay proxy")
}

# start_bad_http ROOT MODE [OPTION...]: tests/tools/bad-http.py serving ROOT on
# 127.0.0.1:$BAD_PORT, misbehaving as MODE says (ok, flaky500, always500,
# 404blobs, reset, stall, wrongbytes, truncate, huge, gzipbomb, drip; see the
# tool). Sets BAD_PORT and BAD_PID (stopped at exit); its request log, one
# "req METHOD PATH STATUS BYTES ACTION" line each, is $TMP/bad-http.log.
start_bad_http() {
        local pf
        pf=$(mktemp -u "$TMP/bad-port.XXXXXX")
        python3 "$_TOOLS/bad-http.py" --root "$1" --mode "$2" --port-file "$pf" "${@:3}" 2>>"$TMP/bad-http.log" &
        BAD_PID=$!
        _cleanup_pids+=("$BAD_PID")
        BAD_PORT=$(_wait_port_file "$pf" "$BAD_PID" "$TMP/bad-http.log" "bad-http.py")
}
