#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Writes acknowledged but not flushed survive a kill -9 of the daemon: a
# client writes 1 MiB of patterns to a volume over NBD (every write
# acknowledged, no flush), rewrites part of it, zeroes a block; the daemon is
# killed -9 and started again (as when a host restarts it under running VMs,
# which then reconnect); every block reads back as last written, fsck is
# clean, and the export after a clean stop is the same. (A write whose data
# never reached the disk is not kept: tests/unit/test-volume.c, and the
# fuzz-delta model.)
. "$(dirname "$0")/../lib/functions.sh"
/usr/bin/python3 -c 'import nbd' 2>/dev/null || { echo "SKIP: python3-libnbd missing"; exit 77; }
st init >/dev/null
head -c $((8 << 20)) /dev/urandom >"$TMP/base.img"
st import --quiet "$TMP/base.img" base
st clone base vol
start_serve

# the writer stays connected (a disconnect would close the export, and
# closing flushes) until the daemon is killed
/usr/bin/python3 - "$(U vol)" "$TMP/expect.img" "$TMP/base.img" <<'PY' &
import nbd, sys
uri, expect, base = sys.argv[1:]
img = bytearray(open(base, "rb").read())
h = nbd.NBD()
h.connect_uri(uri)
def w(off, data):
    h.pwrite(data, off)
    img[off:off + len(data)] = data
for i in range(256):  # 1 MiB of 4 KiB writes at 1 MiB
    w((1 << 20) + i * 4096, bytes([(i * 7 + 1) & 255]) * 4096)
for i in range(0, 256, 16):  # rewrites, unflushed, of blocks written unflushed
    w((1 << 20) + i * 4096, bytes([(i * 3 + 5) & 255]) * 4096)
w(3 << 20, b"\xab" * 12288)  # a run of three
h.zero(4096, 5 << 20)
img[(5 << 20):(5 << 20) + 4096] = bytes(4096)
w((6 << 20) + 100, b"partial block write")  # read-modify-write of one block
open(expect + ".tmp", "wb").write(img)
import os, time
os.rename(expect + ".tmp", expect)
time.sleep(60)
PY
writer=$!
_cleanup_pids+=("$writer")
for _ in $(seq 300); do [ -e "$TMP/expect.img" ] && break; sleep 0.1; done
[ -e "$TMP/expect.img" ] || fail "the writer did not finish"
kill -9 "$SERVE"
wait "$SERVE" 2>/dev/null || true
kill "$writer" 2>/dev/null || true
wait "$writer" 2>/dev/null || true
start_serve
/usr/bin/python3 - "$(U vol)" "$TMP/expect.img" <<'PY' || fail "acknowledged writes lost across a kill -9 of the daemon"
import nbd, sys
uri, expect = sys.argv[1:]
want = open(expect, "rb").read()
h = nbd.NBD()
h.connect_uri(uri)
got = h.pread(len(want), 0)
bad = [i for i in range(0, len(want), 4096) if got[i:i + 4096] != want[i:i + 4096]]
if bad:
    print(f"{len(bad)} blocks differ, first at {bad[0]}", file=sys.stderr)
    sys.exit(1)
PY
kill "$SERVE"
wait "$SERVE" || fail "stellar serve did not stop cleanly"
st export vol "$TMP/vol.out"
cmp "$TMP/vol.out" "$TMP/expect.img" || fail "the exported volume differs from what was written"
fsck_clean
echo "unflushed: ok"
