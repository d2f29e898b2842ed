# SPDX-License-Identifier: Apache-2.0
# Shared shell helpers for tests/integration/*.sh. Each test sources this file:
# it gets $STELLAR (the binary), a private $TMP removed on exit, fail/requires.
set -euo pipefail

STELLAR=${STELLAR:?STELLAR must point to the stellar binary}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/stellar-it-XXXXXX")
export STELLAR_STORE="$TMP/store"
_cleanup_pids=()
_cleanup() {
        for p in "${_cleanup_pids[@]:-}"; do
                [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
        done
        rm -rf "$TMP"
}
trap _cleanup EXIT

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

# fsck_clean: the store has no errors.
fsck_clean() {
        st fsck --quiet >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out" >&2; fail "fsck found errors"; }
}

# json_field JSON KEY: a number or string field of a flat JSON object.
json_field() {
        python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
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
        PORT=$((20000 + RANDOM % 20000))
        "$STELLAR" serve --nbd "unix:$SOCK" --nbd "tcp:127.0.0.1:$PORT" --pidfile "$TMP/pid" \
                --stats "$TMP/stats.json" "$@" 2>"$TMP/serve.log" &
        SERVE=$!
        _cleanup_pids+=("$SERVE")
        for _ in $(seq 100); do [ -S "$SOCK" ] && [ -f "$TMP/pid" ] && break; sleep 0.05; done
        [ -S "$SOCK" ] || { cat "$TMP/serve.log" >&2; fail "stellar serve did not start"; }
        [ "$(cat "$TMP/pid")" = "$SERVE" ] || fail "the pidfile does not hold the daemon's pid"
}
U() { echo "nbd+unix:///$1?socket=$SOCK"; }
