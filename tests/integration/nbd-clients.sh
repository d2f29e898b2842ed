#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# stellar serve against real NBD clients: qemu-img (info, compare, convert,
# bench), qemu-io (patterns across chunk and block boundaries, unaligned,
# FUA, discard, write-zeroes), nbdinfo (--list, --map), nbdcopy, nbdsh.
# Also: pipelined writes of every size checked against a model, a TCP
# listener, a volume created while the daemon runs, the shared
# cache (a second client of a clone loads nothing new), clean shutdown.
. "$(dirname "$0")/../lib/functions.sh"
requires qemu-img qemu-io nbdinfo nbdcopy nbdsh mkfs.ext4

# (16 MiB of random data besides, so that the image holds enough chunks
# on a machine with a small /etc)
mkdir -p "$TMP/extra"
head -c $((16 << 20)) /dev/urandom >"$TMP/extra/random.bin"
make_ext4 "$TMP/base.img" 96M /etc /usr/share/i18n "$TMP/extra"
rm -rf "$TMP/extra"
st init >/dev/null
st import --quiet "$TMP/base.img" base
st clone base vm1
start_serve

# listing and info
nbdinfo --list "nbd+unix://?socket=$SOCK" >"$TMP/list"
grep -q 'export="base"' "$TMP/list" && grep -q 'export="vm1"' "$TMP/list" || fail "nbdinfo --list"
nbdinfo --json "$(U base)" | python3 -c '
import json, sys
d = json.load(sys.stdin)["exports"][0]
assert d["export-size"] == 96 << 20, d
assert d["is_read_only"] is True and d["can_multi_conn"] is True, d
assert "base:allocation" in d["contexts"] and "stellar:shared" in d["contexts"], d' ||
        fail "nbdinfo on base"
qemu-img info "$(U base)" | grep -q "virtual size: 96 MiB" || fail "qemu-img info"

# the served image is the source image
qemu-img compare -f raw -F raw "$TMP/base.img" "$(U base)" || fail "compare base"
qemu-img compare -f raw -F raw "$TMP/base.img" "nbd://127.0.0.1:$PORT/vm1" || fail "compare over TCP"
# holes show in the map
nbdinfo --map "$(U base)" | grep -q "hole,zero" || fail "no holes in --map"
nbdinfo --map=stellar:shared "$(U vm1)" >/dev/null || fail "stellar:shared map"
# the second reader of the same data loaded nothing new: one cache
stat_loads() { sleep 1.2; python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cache"]["loads"])' "$TMP/stats.json"; }
loads=$(stat_loads)
[ "$loads" -gt 1000 ] || fail "the cache loaded too little: $loads"
qemu-img compare -f raw -F raw "$TMP/base.img" "$(U vm1)" || fail "compare vm1"
loads2=$(stat_loads)
[ "$loads2" = "$loads" ] || fail "a clone's reads decompressed chunks again ($loads -> $loads2)"

# convert out, nbdcopy in both directions
qemu-img convert -f raw -O raw "$(U base)" "$TMP/conv.img"
cmp "$TMP/conv.img" "$TMP/base.img" || fail "qemu-img convert"
nbdcopy "$(U base)" "$TMP/copy.img"
cmp "$TMP/copy.img" "$TMP/base.img" || fail "nbdcopy out"

# write patterns on the volume: across block and chunk boundaries, unaligned, FUA
qemu-io -f raw \
        -c "write -P 0x11 0 4096" \
        -c "write -P 0x22 4095 2" \
        -c "write -P 0x33 12345 100000" \
        -c "write -f -P 0x44 1048575 70001" \
        -c "write -z 3000000 200000" \
        -c "discard 5000000 1048576" \
        -c "flush" \
        -c "read -P 0x11 0 4095" \
        -c "read -P 0x22 4095 2" \
        -c "read -P 0x33 12345 100000" \
        -c "read -P 0x44 1048575 70001" \
        -c "read -P 0 3000000 200000" \
        -c "read -P 0 5000000 1048576" \
        "$(U vm1)" >"$TMP/qio.out" || { cat "$TMP/qio.out"; fail "qemu-io patterns"; }
grep -q "Pattern verification failed" "$TMP/qio.out" && { cat "$TMP/qio.out"; fail "pattern mismatch"; }
# the same bytes through a second client and through nbdsh
PATH=/usr/bin:$PATH nbdsh -u "$(U vm1)" -c '
buf = h.pread(100000, 12345)
assert buf == b"\x33" * 100000
assert h.pread(2, 4095) == b"\x22\x22"
assert h.can_multi_conn()
' || fail "nbdsh read-back"
# read-only exports refuse writes
PATH=/usr/bin:$PATH nbdsh -u "$(U base)" -c '
import nbd
try:
    h.pwrite(b"x" * 512, 0)
    raise SystemExit("write to a read-only export succeeded")
except nbd.Error as e:
    pass
' || fail "read-only export accepted a write"
# nbdcopy into the volume, then compare
head -c $((8 << 20)) /dev/urandom >"$TMP/rand8"
truncate -s 96M "$TMP/rand8"
nbdcopy "$TMP/rand8" "$(U vm1)"
qemu-img compare -f raw -F raw "$TMP/rand8" "$(U vm1)" || fail "nbdcopy in"
qemu-img bench -f raw -c 2000 -d 8 -s 4096 "$(U base)" >/dev/null || fail "qemu-img bench"

# pipelined writes of every size (up to 64 in flight, 1 byte to 100 KiB,
# unaligned): the receive buffer ends inside payloads of every kind
st clone base pipe
/usr/bin/python3 "$ST_TESTS/tools/nbd-pipelined.py" "$(U pipe)" "$TMP/base.img" "$RANDOM" ||
        fail "pipelined writes read back differently"

# a volume created while the daemon runs is served at once
st create fresh --size 64M
qemu-io -f raw -c "write -P 0x5a 0 65536" -c "read -P 0x5a 0 65536" "$(U fresh)" >/dev/null ||
        fail "volume created while serving"

# clean shutdown: volumes flushed, socket and pidfile gone
kill "$SERVE"
wait "$SERVE" || fail "serve exited with an error"
_cleanup_pids=()
[ ! -e "$SOCK" ] && [ ! -e "$TMP/pid" ] || fail "socket or pidfile left behind"
grep -q "stopped" "$TMP/serve.log" || fail "no clean stop in the log"
st export vm1 "$TMP/vm1.img"
cmp "$TMP/vm1.img" "$TMP/rand8" || fail "volume content after shutdown"
fsck_clean
echo ok
