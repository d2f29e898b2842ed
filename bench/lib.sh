#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Helpers sourced by the bench/*.sh scripts (not run on its own).
#
# Environment:
#   STELLAR_BENCH_DATA   images and generated inputs (default /var/tmp/stellar-bench)
#   STELLAR_BENCH_WORK   scratch stores/outputs (default $STELLAR_BENCH_DATA/work)
#   STELLAR_BENCH_BUILD  release build dir (default /tmp/bench-build)
#   STELLAR              the stellar binary (default $STELLAR_BENCH_BUILD/cli/stellar)
# Flags understood by every script: --quick (smaller inputs, fewer runs).
#
# Timing: wall time from bash's $EPOCHREALTIME around the command (microsecond
# resolution), CPU time (user+sys) from /usr/bin/time. Ours and the peer are
# interleaved run by run, alternating which goes first, so slow phases of the
# shared machine hit both sides alike; reported numbers are medians.

# shellcheck disable=SC2034  # variables used by the scripts that source this
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC_DIR=$(dirname "$BENCH_DIR")
DATA=${STELLAR_BENCH_DATA:-/var/tmp/stellar-bench}
WORK=${STELLAR_BENCH_WORK:-$DATA/work}
BUILD=${STELLAR_BENCH_BUILD:-/tmp/bench-build}
STELLAR=${STELLAR:-$BUILD/cli/stellar}
IMG_A=$DATA/A.raw
IMG_B=$DATA/B.raw

QUICK=0
for _arg in "$@"; do
    case $_arg in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '3,/^set -euo/p' "$0" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) echo "unknown argument: $_arg" >&2; exit 2 ;;
    esac
done

log() { printf '%s\n' "$*" >&2; }
die() { log "$(basename "$0"): $*"; exit 1; }

# runs FULL QUICK: the number of runs for the current mode.
runs() { if [ "$QUICK" = 1 ]; then echo "$2"; else echo "$1"; fi; }

# need_tool CMD PACKAGE: install PACKAGE with apt-get if CMD is missing.
need_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    log "installing $2..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    }
    command -v "$1" >/dev/null 2>&1 || die "cannot install $2"
}

# ensure_stellar: configure and build the release binary if it is missing.
ensure_stellar() {
    if [ ! -x "$STELLAR" ]; then
        [ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$SRC_DIR" -Dbuildtype=release >&2
        ninja -C "$BUILD" >&2
    fi
    [ -x "$STELLAR" ] || die "no stellar binary at $STELLAR"
}

ensure_images() {
    [ -f "$IMG_A" ] && [ -f "$IMG_B" ] && return 0
    log "building benchmark images (bench/make-images.sh)..."
    "$BENCH_DIR/make-images.sh" "$DATA" >&2
}

# random_file MIB: path of a cached file of MIB MiB of pseudo-random bytes
# (AES-128-CTR keystream with a fixed key, so every machine gets the same data).
random_file() {
    local mib=$1 f="$DATA/random-${1}M"
    if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -ne $((mib << 20)) ]; then
        log "generating $f..."
        mkdir -p "$DATA"
        openssl enc -aes-128-ctr -K 5e11a71a5e11a71a5e11a71a5e11a71a \
                -iv 00000000000000000000000000000000 -nosalt -in /dev/zero 2>/dev/null |
            head -c $((mib << 20)) >"$f.tmp" || true
        [ "$(stat -c %s "$f.tmp")" -eq $((mib << 20)) ] || die "cannot generate $f"
        mv "$f.tmp" "$f"
    fi
    printf '%s\n' "$f"
}

# dense_image: path of a cached 3 GiB ext4 image holding this machine's
# shared libraries (/usr/lib/x86_64-linux-gnu, about 1.1 GB: binaries, the
# hard case for compression), laid out from its start by mkfs.ext4 -d, so
# its first GiB is nearly all data (data_share says how much).
dense_image() {
    local f="$DATA/dense.raw"
    if [ ! -f "$f" ]; then
        log "building $f (ext4 of /usr/lib/x86_64-linux-gnu)..."
        mkdir -p "$DATA"
        rm -f "$f.tmp"
        truncate -s 3G "$f.tmp"
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -d /usr/lib/x86_64-linux-gnu \
            "$f.tmp" >&2 || die "mkfs.ext4 -d failed"
        mv "$f.tmp" "$f"
    fi
    printf '%s\n' "$f"
}

# dense_image_b: the second dense image, derived from the first the way an
# update changes a root: the same libraries without the static ones (*.a),
# plus /usr/share/locale (message catalogues). Cached beside dense.raw.
dense_image_b() {
    local f="$DATA/dense-b.raw" t="$DATA/dense-b.tree"
    if [ ! -f "$f" ]; then
        log "building $f (dense.raw's tree without *.a, plus /usr/share/locale)..."
        mkdir -p "$DATA"
        rm -rf "$t" "$f.tmp"
        # hard links: the same inodes, nothing copied (same file system)
        cp -al /usr/lib/x86_64-linux-gnu "$t" 2>/dev/null || cp -a /usr/lib/x86_64-linux-gnu "$t"
        find "$t" -name '*.a' -delete
        cp -al /usr/share/locale "$t/locale" 2>/dev/null || cp -a /usr/share/locale "$t/locale"
        truncate -s 3G "$f.tmp"
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -d "$t" "$f.tmp" >&2 ||
            die "mkfs.ext4 -d failed"
        rm -rf "$t"
        mv "$f.tmp" "$f"
    fi
    printf '%s\n' "$f"
}

# data_share FILE LEN: the share of FILE's first LEN bytes that is data
# (allocated, as SEEK_DATA/SEEK_HOLE report it), e.g. 0.982.
data_share() {
    python3 - "$1" "$2" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end, off, data = int(sys.argv[2]), 0, 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    if d >= end:
        break
    h = min(os.lseek(fd, d, os.SEEK_HOLE), end)
    data += h - d
    off = h
print("%.3f" % (data / end))
PY
}

# wait_sock PATH PID: until the server PID listens on PATH (20 s), or dies.
wait_sock() {
    for _ in $(seq 400); do
        [ -S "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || die "server for $1 died"
        sleep 0.05
    done
    die "no socket $1"
}

# warm FILE...: read files into the page cache (their data extents).
# work_dir NAME: a fresh $WORK/NAME as W, and pids=(): the servers a
# benchmark starts (its children), stopped and waited for at exit, when W
# goes too.
work_dir() {
    W=$WORK/$1
    pids=()
    rm -rf "$W"
    mkdir -p "$W"
    trap work_dir_cleanup EXIT
}
work_dir_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$W"
}

warm() { cat "$@" >/dev/null; }

# wait_idle_compressed LOG PID [TIMEOUT_S]: wait until the stellar daemon PID
# (stderr in LOG) says its idle compression is done or found nothing to do.
wait_idle_compressed() {
    local n=$(( ${3:-900} * 10 ))
    for _ in $(seq "$n"); do
        grep -q "idle compression: done\|idle compression: nothing left" "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "the daemon logging to $1 died"
        sleep 0.1
    done
    die "the daemon logging to $1 did not finish its idle compression"
}

# wait_settled BIN LOG PID: the daemon BIN started (pid PID, logging to LOG)
# has done what imports left to the cold level, the store as a host has it;
# binaries from before idle compression have nothing to wait for
wait_settled() {
    local help
    help=$("$1" serve --help 2>&1 || true)
    if [[ $help == *--compress-cpu* ]]; then wait_idle_compressed "$2" "$3"; fi
}

# cpu_s PID: user+system CPU seconds of a live process so far
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }

# apparent size in bytes
fsize() { stat -c %s "$1"; }

# timed OUTVAR CMD...: run CMD (stdout to $TIMED_OUT if set, else /dev/null),
# set OUTVAR to "WALL CPU" seconds. Fails if CMD fails.
timed() {
    local __var=$1; shift
    local tf t0 t1 out=${TIMED_OUT:-/dev/null}
    tf=$(mktemp)
    t0=$EPOCHREALTIME
    if ! /usr/bin/time -f '%U %S' -o "$tf" "$@" >"$out"; then
        rm -f "$tf"
        die "command failed: $*"
    fi
    t1=$EPOCHREALTIME
    local cpu
    cpu=$(awk 'END { printf "%.3f", $1 + $2 }' "$tf")
    rm -f "$tf"
    printf -v "$__var" '%s %s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')" "$cpu"
}

# median N...: the median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# calc EXPR: floating-point arithmetic with awk ("%.Nf" via CALC_FMT, default %.2f).
calc() { awk "BEGIN { printf \"${CALC_FMT:-%.2f}\", $1 }"; }

# json_get JSON KEY: a numeric field of a flat JSON object.
json_get() {
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

# stellar_defaults [--mode M]: the parameters `stellar init` picks, as
# "avg=N min=N max=N zstd=N" (from its message; a throwaway store).
stellar_defaults() {
    local d msg
    d=$(mktemp -d)
    msg=$("$STELLAR" --store "$d/s" init "$@")
    rm -rf "$d"
    sed -n 's/.*avg \([0-9]*\), min \([0-9]*\), max \([0-9]*\), zstd \(-\{0,1\}[0-9]*\).*/avg=\1 min=\2 max=\3 zstd=\4/p' <<<"$msg"
}

# bin_build: the binary measured, as BUILDTYPE@HH:MM:SS (its build type from
# meson, and its time, UTC: others may rebuild it while a benchmark runs)
bin_build() {
    local d bt=unknown
    d=$(dirname "$(dirname "$STELLAR")")
    if [ -f "$d/meson-info/intro-buildoptions.json" ]; then
        bt=$(python3 -c 'import json, sys; print(next(o["value"] for o in json.load(open(sys.argv[1])) if o["name"] == "buildtype"))' \
             "$d/meson-info/intro-buildoptions.json" 2>/dev/null || echo unknown)
    fi
    echo "$bt@$(date -u -r "$STELLAR" +%H:%M:%S)"
}

# free_port: a TCP port on 127.0.0.1 nobody listens on now
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_nginx DIR: nginx (one worker) serving DIR/www on a free 127.0.0.1
# port, its config, pid, temp files and logs under DIR/ngx (access log
# DIR/ngx/access.log: "$msec $status $body_bytes_sent $connection
# $request_uri"), keep-alive, gzip for JSON. Runs in the foreground as our
# child; sets port and ngx_pid (the caller stops it).
start_nginx() {
    local d=$1
    port=$(free_port)
    mkdir -p "$d/ngx/tmp"
    cat >"$d/ngx/nginx.conf" <<NGINX
user root;
worker_processes 1;
pid $d/ngx/nginx.pid;
error_log $d/ngx/error.log;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format bench '\$msec \$status \$body_bytes_sent \$connection \$request_uri';
    access_log $d/ngx/access.log bench;
    client_body_temp_path $d/ngx/tmp/body;
    proxy_temp_path $d/ngx/tmp/proxy;
    fastcgi_temp_path $d/ngx/tmp/fastcgi;
    uwsgi_temp_path $d/ngx/tmp/uwsgi;
    scgi_temp_path $d/ngx/tmp/scgi;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 100000;
    gzip on;
    gzip_types application/json;
    server {
        listen 127.0.0.1:$port;
        root $d/www;
    }
}
NGINX
    nginx -p "$d/ngx" -c "$d/ngx/nginx.conf" -e "$d/ngx/error.log" -g 'daemon off;' &
    ngx_pid=$!
}
