#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Distribution (issue 5): `stellar pull` from a static HTTP tree, against
# casync extract from a casync store on the same web server.
#   setup     a store holding A and B (imported from A.raw, B.raw) publishes
#             both into one tree (`stellar publish`: refs/, manifests/,
#             blobs/); casync makes A.caibx and B.caibx into one chunk store
#             (`casync make --store=castr`, its defaults). nginx (one worker,
#             our own config: 127.0.0.1 on a free port, keep-alive with
#             keepalive_requests 100000, sendfile, gzip on for
#             application/json, an access log of $msec $status
#             $body_bytes_sent $request_uri) serves both trees.
#   ideal     the blobs B really lacks next to A: the chunk hashes named by
#             B's published manifests minus those named by A's, and the sum
#             of the sizes of those blob files (what a perfect client
#             downloads, manifest aside).
#   a (bytes) `stellar pull --json URL B` into a store prepared by importing
#             A.raw (import gives the same chunks as publish/pull, the chunker
#             is deterministic): bytes_fetched (blob bytes, compressed, as
#             downloaded) and manifest_bytes from --json, cross-checked with
#             the bytes nginx logged for /st/ during the pull. Ratios:
#             blobs / ideal, and (blobs + manifest bytes on the wire) / ideal.
#   b (time)  wall time of that pull, and of pull + `stellar export B`
#             (the end state casync produces: B as a file), against
#             `casync extract --store=http://127.0.0.1:PORT/castr
#             --seed=A.raw B.caibx OUT` (B.caibx local, as casync is used);
#             casync's bytes from the access log. Page caches are not
#             dropped: A.raw and the fresh store are read into the page cache
#             before each timed command (cat), for both sides alike.
#             Both outputs are compared with B.raw once (cmp, untimed).
#   c (RTT)   pull B into an EMPTY store at -j 1, 4, 16, 64, 128, 256
#             (PULL_JS overrides the list), straight from nginx and through
#             tests/tools/delay-proxy.c (built here with cc; 20 ms added
#             round-trip time, each new connection one RTT more): MB/s of
#             blob bytes. Each pull is given at most WINDOW seconds (30;
#             --quick 8): one that is not done by then is stopped (SIGTERM)
#             and its rate is the blob bytes nginx served for it / the time
#             it ran (a pull resumes where it stopped, so this is its steady
#             rate); otherwise bytes_fetched / wall time of the process.
#             Ratio = with delay / without, per -j. The CPU seconds of the
#             pull (user + sys), of the nginx worker and of the proxy during
#             each pull (/proc/PID/stat), / its wall time: which of them is
#             the limit (each is one thread; the machine may have few cores).
# RUNS interleaved runs (5; --quick 1; PULL_RUNS overrides), order of the
# sides alternated (a/b) or rotated (c) each run; medians. Goals: blob bytes
# <= 1.02x the ideal; pull >= 3x faster than casync extract; at -j 16, pull
# throughput with 20 ms RTT >= 50% of that without.
#
# Usage: bench/pull.sh [--quick]
# Summary line (stdout): pull: key=value ...
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

ensure_stellar
ensure_images
need_tool casync casync
need_tool nginx nginx-light
need_tool cmp diffutils

n_runs=${PULL_RUNS:-$(runs 5 1)}
window=${PULL_WINDOW:-$(runs 30 8)}
read -ra JS <<<"${PULL_JS:-16 64 256 512}"
DELAY_MS=20
PROXY_SRC=$SRC_DIR/tests/tools/delay-proxy.c
[ -f "$PROXY_SRC" ] || die "no $PROXY_SRC"
need_tool cc gcc

W=$WORK/pull
ngx_pid='' px_pid=''
stop_pid() { # PID: SIGTERM and wait (our children)
    [ -n "$1" ] || return 0
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
cleanup() {
    stop_pid "$px_pid"
    stop_pid "$ngx_pid"
    rm -rf "$W"
}
rm -rf "$W"
mkdir -p "$W/www" "$W/ngx/tmp"
trap cleanup EXIT
# the delay proxy: C, epoll (the Python one tops out near 2,700 requests/s)
PROXY=$W/delay-proxy
cc -O2 -Wall -Wextra -Werror -o "$PROXY" "$PROXY_SRC" || die "cannot build $PROXY_SRC"


# ---- the published trees
log "== pull: publishing A and B (stellar, casync)"
src=$W/src
"$STELLAR" --store "$src" init >/dev/null
"$STELLAR" --store "$src" import --quiet "$IMG_A" A
"$STELLAR" --store "$src" import --quiet "$IMG_B" B
pubA=$("$STELLAR" --store "$src" publish --json A "$W/www/st")
pubB=$("$STELLAR" --store "$src" publish --json B "$W/www/st")
rm -rf "$src"
casync make --store="$W/www/castr" "$W/A.caibx" "$IMG_A" >/dev/null
casync make --store="$W/www/castr" "$W/B.caibx" "$IMG_B" >/dev/null

# ideal: blob bytes of the chunks B names and A does not; also all of B's
ideal=$(python3 - "$W/www/st" <<'EOF'
import json, os, sys
root = sys.argv[1]
def chain(name):
    mid = open(os.path.join(root, "refs", name)).read().strip()
    hashes, mbytes = set(), len(open(os.path.join(root, "refs", name), "rb").read())
    while mid:
        p = os.path.join(root, "manifests", mid + ".json")
        mbytes += os.path.getsize(p)
        m = json.load(open(p))
        hashes.update(e[2] for e in m["extents"] if len(e) > 2)
        mid = m.get("parent")
    return hashes, mbytes
a, _ = chain("A")
b, mb = chain("B")
size = lambda hs: sum(os.path.getsize(os.path.join(root, "blobs", h)) for h in hs)
lack = b - a
print("ideal_chunks=%d ideal_blob_bytes=%d b_chunks=%d b_blob_bytes=%d b_manifest_bytes=%d" %
      (len(lack), size(lack), len(b), size(b), mb))
EOF
)
log "ideal: $ideal"
kv() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }
ideal_bytes=$(kv "$ideal" ideal_blob_bytes)
b_blob_bytes=$(kv "$ideal" b_blob_bytes)

# ---- nginx, and the delay proxy in front of it
start_nginx "$W"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$PROXY" --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --delay-ms "$DELAY_MS" \
        --port-file "$W/proxy.port" 2>"$W/proxy.log" &
px_pid=$!
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$port/st/refs/B" && [ -s "$W/proxy.port" ] && break
    kill -0 "$ngx_pid" 2>/dev/null || die "nginx died: $(cat "$W/ngx/error.log")"
    sleep 0.1
done
pport=$(cat "$W/proxy.port")
curl -fs -o /dev/null "http://127.0.0.1:$pport/st/refs/B" || die "delay proxy does not answer"
URL=http://127.0.0.1:$port/st
ngx_worker=$(pgrep -P "$ngx_pid" | head -n 1)
[ -n "$ngx_worker" ] || die "no nginx worker"
PURL=http://127.0.0.1:$pport/st
ALOG=$W/ngx/access.log

# logmark: the access log's current size; logsum MARK PREFIX: "requests bytes"
# nginx logged for URIs under PREFIX since MARK (read after a short pause:
# nginx logs a request just after its response went out)
logmark() { stat -c %s "$ALOG"; }
logsum() {
    sleep 0.2
    tail -c +$(($1 + 1)) "$ALOG" | awk -v p="$2" 'index($5, p) == 1 { n++; b += $3 }
        $2 != 200 { bad++ } END { printf "%d %d %d\n", n, b, bad }'
}

out=$W/out.raw
warm "$IMG_A" "$IMG_B"
# prep_store DIR [A]: a fresh store (holding A.raw's import if A), in the page cache
prep_store() {
    rm -rf "$1"
    "$STELLAR" --store "$1" init >/dev/null
    [ -z "${2:-}" ] || "$STELLAR" --store "$1" import --quiet "$IMG_A" A
    sync
    warm "$IMG_A"
    find "$1" -type f -exec cat {} + >/dev/null
}

# side_st RUN: a + b for stellar, appends keys to $line
side_st() {
    local s=$W/st m j t te l
    prep_store "$s" A
    m=$(logmark)
    TIMED_OUT=$W/pull.json timed t "$STELLAR" --store "$s" pull --json "$URL" B
    j=$(cat "$W/pull.json")
    l=$(logsum "$m" /st/)
    rm -f "$out"
    sync
    timed te "$STELLAR" --store "$s" export B "$out"
    if [ "$1" = 0 ]; then
        cmp -s "$out" "$IMG_B" && same_st=yes || { same_st=no; log "pull: stellar's B differs from B.raw"; }
    fi
    rm -f "$out"
    local w=${t%% *} we=${te%% *}
    line+=" st_pull_s=$w st_pull_cpu_s=${t#* } st_export_s=$we st_pull_export_s=$(CALC_FMT=%.6f calc "$w + $we")"
    for k in bytes_fetched manifest_bytes fetched present chunks retries raw_fetched; do
        line+=" st_$k=$(json_get "$j" "$k")"
    done
    line+=" st_log_requests=${l%% *} st_log_bytes=$(awk '{ print $2 }' <<<"$l") st_log_non200=${l##* }"
    log "stellar pull B over A: ${w}s (+ export ${we}s), $(json_get "$j" bytes_fetched) blob bytes, nginx ${l}"
}
side_ca() {
    local m t l
    rm -f "$out"
    sync
    warm "$IMG_A" "$W/B.caibx"
    m=$(logmark)
    timed t casync extract --store="http://127.0.0.1:$port/castr" --seed="$IMG_A" "$W/B.caibx" "$out"
    l=$(logsum "$m" /castr/)
    if [ "$1" = 0 ]; then
        cmp -s "$out" "$IMG_B" && same_ca=yes || { same_ca=no; log "pull: casync's B differs from B.raw"; }
    fi
    rm -f "$out"
    line+=" ca_s=${t%% *} ca_cpu_s=${t#* } ca_log_requests=${l%% *} ca_log_bytes=$(awk '{ print $2 }' <<<"$l") ca_log_non200=${l##* }"
    log "casync extract B --seed A: ${t%% *}s, nginx ${l}"
}
# cpu_ticks PID: its user + system time so far, in clock ticks
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# rtt_one J DELAY: pull B into an empty store at -j J, straight or through the
# proxy; also the CPU the pull, the nginx worker and the proxy used meanwhile
# (% of one core)
rtt_one() {
    local jn=$1 d=$2 s=$W/rt u=$URL k=rtt_d${2}_j${1} m t0 t1 rc=0 secs bytes l n0 p0 n1 p1 c_st c_ngx c_px
    [ "$d" = 0 ] || u=$PURL
    prep_store "$s"
    m=$(logmark)
    n0=$(cpu_ticks "$ngx_worker") p0=$(cpu_ticks "$px_pid")
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$W/rt.time" \
        timeout "$window" "$STELLAR" --store "$s" pull --json -j "$jn" "$u" B >"$W/rt.json" 2>"$W/rt.err" || rc=$?
    t1=$EPOCHREALTIME
    n1=$(cpu_ticks "$ngx_worker") p1=$(cpu_ticks "$px_pid")
    secs=$(CALC_FMT=%.6f calc "$t1 - $t0")
    c_st=$(calc "100 * $(tail -n 1 "$W/rt.time" | awk '{ print $1 + $2 }') / $secs")
    c_ngx=$(calc "100 * ($n1 - $n0) / $hz / $secs")
    c_px=$(calc "100 * ($p1 - $p0) / $hz / $secs")
    l=$(logsum "$m" /st/blobs/)
    if [ "$rc" = 0 ]; then
        bytes=$(json_get "$(cat "$W/rt.json")" bytes_fetched)
        line+=" ${k}_done=1"
    elif [ "$rc" = 124 ]; then
        bytes=$(awk '{ print $2 }' <<<"$l")
        line+=" ${k}_done=0"
    else
        die "pull -j $jn (delay $d) failed: $(cat "$W/rt.err")"
    fi
    line+=" ${k}_s=$secs ${k}_bytes=$bytes ${k}_mb_s=$(calc "$bytes / $secs / 1e6")"
    line+=" ${k}_cpu_st=$c_st ${k}_cpu_ngx=$c_ngx ${k}_cpu_px=$c_px"
    log "pull -j $jn delay ${d}ms: $bytes blob bytes in ${secs}s ($(calc "$bytes / $secs / 1e6") MB/s," \
        "$([ "$rc" = 0 ] && echo 'done' || echo stopped)); CPU % stellar $c_st, nginx $c_ngx, proxy $c_px"
}

rot() { local n=$1; shift; local a=("$@") k=$#; for ((q = 0; q < k; q++)); do printf '%s\n' "${a[(q + n) % k]}"; done; }
same_st=unknown same_ca=unknown
: >"$W/runs"
for ((r = 0; r < n_runs; r++)); do
    log "== pull: run $((r + 1))/$n_runs"
    line=""
    if ((r % 2 == 0)); then side_st "$r"; side_ca "$r"; else side_ca "$r"; side_st "$r"; fi
    combos=()
    for jn in "${JS[@]}"; do combos+=("$jn:0" "$jn:$DELAY_MS"); done
    mapfile -t order < <(rot "$r" "${combos[@]}")
    for c in "${order[@]}"; do rtt_one "${c%%:*}" "${c##*:}"; done
    echo "run:$line" >>"$W/runs"
done

line="pull: date=$(date -u +%Y-%m-%dT%H:%MZ) rev=$(git -C "$SRC_DIR" describe --always --dirty 2>/dev/null || echo unknown)"
line+=" build=$(bin_build) runs=$n_runs window_s=$window delay_ms=$DELAY_MS proxy=c js=$(IFS=,; echo "${JS[*]}")"
line+=" pull_default_j=$("$STELLAR" pull --help 2>&1 | sed -n 's/.*requests in flight (default \([0-9]*\)[;,)].*/\1/p')"
line+=" same_st=$same_st same_ca=$same_ca"
line+=" nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//') casync=$(casync --version 2>&1 | awk '{ print $2 }')"
line+=" $ideal a_publish_blob_bytes=$(json_get "$pubA" bytes_uploaded) b_publish_new_blob_bytes=$(json_get "$pubB" bytes_uploaded)"
line+=" castr_bytes=$(du -sb "$W/www/castr" | cut -f1) b_caibx_bytes=$(fsize "$W/B.caibx")"
line+=" $(python3 - "$W/runs" "$ideal_bytes" "$b_blob_bytes" "${JS[@]}" <<'EOF'
import statistics, sys
runs = [dict(kv.split("=", 1) for kv in l.split()[1:]) for l in open(sys.argv[1])]
ideal, ball = int(sys.argv[2]), int(sys.argv[3])
med = {k: statistics.median(float(r[k]) for r in runs) for k in runs[0]}
out = ["%s=%s" % (k, ("%d" % v) if v == int(v) and abs(v) >= 1e6 else "%.6g" % v)
       for k, v in med.items()]  # bytes exact
# ratios from the medians (bytes are the same every run; times are medians)
out.append("blob_ratio=%.4f" % (med["st_bytes_fetched"] / ideal))
out.append("wire_ratio=%.4f" % (med["st_log_bytes"] / ideal))
out.append("with_manifest_ratio=%.4f" % ((med["st_bytes_fetched"] + med["st_manifest_bytes"]) / ideal))
out.append("ca_bytes_ratio=%.4f" % (med["ca_log_bytes"] / ideal))
out.append("speedup_pull=%.3f" % (med["ca_s"] / med["st_pull_s"]))
out.append("speedup_pull_export=%.3f" % (med["ca_s"] / med["st_pull_export_s"]))
for j in map(int, sys.argv[4:]):
    a, b = med.get("rtt_d0_j%d_mb_s" % j), med.get("rtt_d20_j%d_mb_s" % j)
    if a and b:
        out.append("rtt_j%d_ratio=%.4f" % (j, b / a))
out.append("rtt_empty_ok=%s" % ("yes" if all(float(r["rtt_d0_j%s_bytes" % j]) == ball for r in runs
                                             for j in sys.argv[4:]
                                             if r["rtt_d0_j%s_done" % j] == "1") else "no"))
print(" ".join(out))
EOF
)"
echo "$line"
