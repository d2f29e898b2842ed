#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# stellar serve against a hostile client (tests/tools/nbd-hostile.py): broken
# greetings and option headers, options whose lengths lie, unknown options and
# commands, requests out of range, huge reads and writes, writes to a
# read-only export, clients that vanish mid-message, a slow client, 50 idle
# ones, a client that never reads its replies. Each scenario asserts the
# server's answer (an error reply, or a hang-up of that client only); after
# each one, and while the idle and slow clients are still connected, real
# clients (nbdsh, qemu-img, nbdinfo) must be served right, and a write they
# had acknowledged (write + flush) must be in the volume after the daemon
# stops. The daemon ends with SIGTERM while clients in every state are still
# connected: it must exit 0 and leave fsck clean.
. "$(dirname "$0")/../lib/functions.sh"
requires python3 nbdinfo qemu-img nbdsh
HOSTILE="$(dirname "$0")/../tools/nbd-hostile.py"

# 16 MiB: random data, holes, a repeat of the first MiB (dedup), compressible text
python3 - "$TMP/base.img" <<'EOF'
import random, sys
r = random.Random(7)
M = 1 << 20
rnd = lambda n: r.getrandbits(8 * n).to_bytes(n, "little")
img = bytearray(16 * M)
img[0:4 * M] = rnd(4 * M)
img[6 * M:7 * M] = img[0:M]
img[7 * M:8 * M] = rnd(M)
text = b"".join(b"line %d of some compressible text\n" % i for i in range(200000))
img[12 * M:15 * M + M // 2] = text[:3 * M + M // 2]
img[16 * M - 4096:16 * M - 1000] = rnd(3096)  # data in the last block
open(sys.argv[1], "wb").write(img)
EOF
st init >/dev/null
st import --quiet "$TMP/base.img" base
st clone base vm1
# what vm1 must hold: base plus the good client's writes (the hostile ones are all refused)
python3 - "$TMP/base.img" "$TMP/vm1.expect" <<'EOF'
import sys
img = bytearray(open(sys.argv[1], "rb").read())
img[5 << 20:(5 << 20) + 65536] = b"\xc5" * 65536
img[(13 << 20) + 123:(13 << 20) + 123 + 4096] = b"good" * 1024
open(sys.argv[2], "wb").write(img)
EOF

start_serve

# The good client: an acknowledged write (the same bytes every time, so vm1.expect
# holds), then both exports read back whole by qemu-img, one of them over TCP.
cat >"$TMP/good.sh" <<EOF
#!/bin/bash
set -e
PATH=/usr/bin:\$PATH nbdsh -u "$(U vm1)" -c '
h.pwrite(b"\xc5" * 65536, 5 << 20)
h.pwrite(b"good" * 1024, (13 << 20) + 123)
h.flush()
assert h.pread(4096, (13 << 20) + 123) == b"good" * 1024
'
[ "\$(nbdinfo --size "$(U base)")" = $((16 << 20)) ]
qemu-img compare -q -f raw -F raw "$TMP/base.img" "$(U base)"
qemu-img compare -q -f raw -F raw "$TMP/vm1.expect" "nbd://127.0.0.1:$PORT/vm1"
EOF
chmod +x "$TMP/good.sh"
"$TMP/good.sh" || fail "the good client before any hostile one"

dump_log() { sed 's/^/  serve: /' "$TMP/serve.log" | tail -30 >&2; }
# A failed check is reported and the run goes on (shutdown, content and fsck are
# checked whatever a scenario found); the test fails at the end.
failed=()
check_fail() {
        echo "FAIL: $*" >&2
        failed+=("$*")
}
hostile() {
        python3 "$HOSTILE" --ro base --ro-image "$TMP/base.img" --rw vm1 \
                --rw-image "$TMP/vm1.expect" --pid "$SERVE" --stats "$TMP/stats.json" "$@"
}
hostile --addr "unix:$SOCK" --good-cmd "$TMP/good.sh" all || check_fail "hostile scenarios (unix)"
# the transport matters for resets and half-closes: the handshake and vanishing ones over TCP too
hostile --addr "tcp:127.0.0.1:$PORT" vanish-handshake vanish-request option-huge huge-write \
        request-magic disconnect || check_fail "hostile scenarios (tcp)"
kill -0 "$SERVE" 2>/dev/null || fail "the daemon died"

# SIGTERM with clients in every state still connected: each is closed, the daemon exits 0
hostile --addr "unix:$SOCK" hold >"$TMP/hold.out" &
HOLD=$!
_cleanup_pids+=("$HOLD")
for _ in $(seq 100); do grep -q holding "$TMP/hold.out" && break; sleep 0.05; done
grep -q holding "$TMP/hold.out" || fail "hold: clients not connected"
kill "$SERVE"
for _ in $(seq 100); do kill -0 "$SERVE" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVE" 2>/dev/null; then
        dump_log
        fail "the daemon did not stop within 10 s of SIGTERM with clients connected"
fi
rc=0
wait "$SERVE" || rc=$?
[ "$rc" = 0 ] || { dump_log; fail "serve exited with $rc"; }
wait "$HOLD" || { cat "$TMP/hold.out"; fail "held clients were not all closed"; }
_cleanup_pids=()
[ ! -e "$SOCK" ] && [ ! -e "$TMP/pid" ] || fail "socket or pidfile left behind"
grep -q "stopped" "$TMP/serve.log" || fail "no clean stop in the log"
if grep -Eq "AddressSanitizer|runtime error|LeakSanitizer" "$TMP/serve.log"; then
        dump_log
        fail "sanitizer report in the daemon's log"
fi

# the acknowledged writes are in the volume, and nothing the hostile clients sent
st export vm1 "$TMP/vm1.img"
cmp "$TMP/vm1.img" "$TMP/vm1.expect" || fail "volume content after shutdown"
st export base "$TMP/base.out"
cmp "$TMP/base.out" "$TMP/base.img" || fail "image content after shutdown"
fsck_clean

# Out of file descriptors (more idle clients than the fd limit allows): the daemon
# must not spin on accept, and serves again once they are gone.
if command -v prlimit >/dev/null; then
        prlimit --nofile=64:64 "$STELLAR" serve --nbd "unix:$SOCK" 2>"$TMP/serve-fd.log" &
        SERVE=$!
        _cleanup_pids+=("$SERVE")
        for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
        hostile --addr "unix:$SOCK" fd-exhaust || check_fail "out of file descriptors"
        kill "$SERVE"
        wait "$SERVE" || check_fail "serve exited with an error after fd exhaustion"
        _cleanup_pids=()
        ! grep -Eq "AddressSanitizer|runtime error|LeakSanitizer" "$TMP/serve-fd.log" ||
                check_fail "sanitizer report in the daemon's log (fd exhaustion)"
fi
[ ${#failed[@]} = 0 ] || { dump_log; fail "${#failed[@]} checks failed: $(printf '%s; ' "${failed[@]}")"; }
echo ok
