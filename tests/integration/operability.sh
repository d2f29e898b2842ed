#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Operating the daemon: `stellar status` (offline, text, JSON), the
# Prometheus endpoint (serve --metrics) with per-export counters, the
# readiness protocol of a Type=notify unit (READY=1, STOPPING=1 to
# $NOTIFY_SOCKET), and log lines that name the client and export of a
# refused option, a broken handshake and a refused request.
. "$(dirname "$0")/../lib/functions.sh"
requires nbdcopy nbdsh python3

st init >/dev/null
head -c 3000000 /dev/urandom >"$TMP/a.raw"
st import -q "$TMP/a.raw" a
st clone a v

rc=0
st status >"$TMP/out" || rc=$?
[ $rc = 3 ] || fail "status without a daemon: exit $rc, expected 3"
grep -q "no daemon serves" "$TMP/out" || fail "status without a daemon: $(cat "$TMP/out")"

# the service manager's end of NOTIFY_SOCKET
/usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2], "w").close()
with open(sys.argv[3], "a") as out:
    while True:
        m = s.recv(4096).decode()
        out.write(m.replace("\n", " ") + "\n")
        out.flush()
        if "STOPPING=1" in m:
            break
' "$TMP/notify.sock" "$TMP/notify.up" "$TMP/notify.log" &
NP=$!
_cleanup_pids+=("$NP")
for _ in $(seq 100); do [ -e "$TMP/notify.up" ] && break; sleep 0.05; done
MPORT=$(free_port)
NOTIFY_SOCKET="$TMP/notify.sock" start_serve --metrics "tcp:127.0.0.1:$MPORT"
for _ in $(seq 100); do grep -q READY=1 "$TMP/notify.log" 2>/dev/null && break; sleep 0.05; done
grep -q "READY=1 MAINPID=$SERVE" "$TMP/notify.log" || fail "no READY=1 with the daemon's pid: $(cat "$TMP/notify.log" 2>/dev/null)"

# a client holds v open: a write, a flush, reads
PATH=/usr/bin:$PATH nbdsh -u "$(U v)" -c '
import time
h.pwrite(b"\x5a" * 8192, 4096)
h.flush()
for i in range(5):
    h.pread(4096, i * 65536)
time.sleep(3)' &
H=$!
for _ in $(seq 100); do
        st status --json >"$TMP/st.json" 2>/dev/null && grep -q '"name":"v"' "$TMP/st.json" && break
        sleep 0.05
done
/usr/bin/python3 - "$TMP/st.json" "$SERVE" <<'EOF' || fail "status --json: $(cat "$TMP/st.json")"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["pid"] == int(sys.argv[2]), j
assert j["connections"] >= 1 and j["uptime_s"] > 0, j
v = [e for e in j["exports"] if e["name"] == "v"]
assert v and v[0]["clients"] == 1, j
assert v[0]["writes"] == 1 and v[0]["write_bytes"] == 8192 and v[0]["flushes"] == 1, v
assert v[0]["reads"] == 5 and v[0]["read_bytes"] == 5 * 4096 and v[0]["errors"] == 0, v
assert 0 <= j["cache"]["hit_rate"] <= 1, j
EOF
st status >"$TMP/st.txt"
grep -q "^served by pid $SERVE" "$TMP/st.txt" || fail "status: $(cat "$TMP/st.txt")"
grep -Eq '^  v +1 +5 +20480 +1 +8192 +1 +0$' "$TMP/st.txt" || fail "status lists v wrong: $(cat "$TMP/st.txt")"

# the metrics endpoint
/usr/bin/python3 - "$MPORT" <<'EOF' || fail "metrics"
import sys, urllib.request
t = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode()
m = {}
for line in t.splitlines():
    if line and not line.startswith("#"):
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
def need(k, ok):
    if k not in m or not ok(m[k]):
        sys.exit("metric %s = %s" % (k, m.get(k)))
need("stellar_connections", lambda v: v >= 1)
need("stellar_connections_total", lambda v: v >= 1)
need('stellar_export_requests_total{export="v",op="write"}', lambda v: v == 1)
need('stellar_export_bytes_total{export="v",op="read"}', lambda v: v == 20480)
need('stellar_export_requests_total{export="v",op="flush"}', lambda v: v == 1)
need('stellar_request_duration_seconds_count{export="v",op="read"}', lambda v: v == 5)
need('stellar_request_duration_seconds_bucket{export="v",op="read",le="+Inf"}', lambda v: v == 5)
need("stellar_uptime_seconds", lambda v: v > 0)
for k in ("stellar_cache_hits_total", "stellar_cache_misses_total", "stellar_cache_budget_bytes"):
    need(k, lambda v: v >= 0)
EOF
wait $H

# what the log says about clients that misbehave
PATH=/usr/bin:$PATH nbdinfo "$(U nosuch)" >/dev/null 2>&1 || true
/usr/bin/python3 - "$SOCK" <<'EOF'
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(18)
s.send(b"\x00\x00\x00\x03" + b"junk" * 10)  # flags, then no option magic
time.sleep(0.3)
s.close()
# a good handshake to the read-only image, then a write to it
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.recv(18)
s.send(struct.pack(">I", 3))
s.send(struct.pack(">QII", 0x49484156454F5054, 1, 1) + b"a")  # NBD_OPT_EXPORT_NAME "a"
s.recv(10)
s.send(struct.pack(">IHHQQI", 0x25609513, 0, 1, 7, 0, 4096) + bytes(4096))
s.recv(16)
s.send(struct.pack(">IHHQQI", 0x25609513, 0, 2, 8, 0, 0))  # NBD_CMD_DISC
time.sleep(0.3)
EOF
sleep 0.3
grep -Eq "nbd pid [0-9]+ uid [0-9]+: option [0-9]+ refused .*no such export" "$TMP/serve.log" ||
        { cat "$TMP/serve.log" >&2; fail "a refused option left no trace"; }
grep -Eq "nbd pid [0-9]+ uid [0-9]+: handshake ended" "$TMP/serve.log" ||
        { cat "$TMP/serve.log" >&2; fail "a broken handshake left no trace"; }
grep -Eq "nbd pid [0-9]+ uid [0-9]+, export a: request type 1 of 4096 bytes at 0 refused" "$TMP/serve.log" ||
        { cat "$TMP/serve.log" >&2; fail "a refused request left no trace"; }

kill "$SERVE"
wait "$SERVE" || fail "serve exited with an error"
_cleanup_pids=("$NP")
wait "$NP" || true
grep -q "STOPPING=1" "$TMP/notify.log" || fail "no STOPPING=1: $(cat "$TMP/notify.log")"
rc=0
st status >/dev/null || rc=$?
[ $rc = 3 ] || fail "status after the daemon stopped: exit $rc"
fsck_clean
echo OK
