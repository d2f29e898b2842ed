#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
#
# A minimal NBD client for bench/nbd-scale.sh, written on plain sockets (the
# handshake by hand: fixed newstyle, NBD_OPT_GO, simple replies), so that it
# runs on any python3 and can hold a thousand connections in one process
# (asyncio). It drives `stellar serve` through three phases and prints one
# summary line of key=value pairs on stdout:
#
#   memory   RSS of the daemon (VmRSS from /proc/PID/status) with no client,
#            then with N_MID connections held open, each to its own volume
#            (PREFIX0 .. PREFIX{N_MID-1}) after NBD_OPT_GO and one 4 KiB read,
#            then with N connections (PREFIX0 .. PREFIX{N-1}) held the same
#            way; every read is checked against the image file. All N_MID,
#            then the rest, are opened at once. The daemon's stats file is
#            read too (connections, exports_open, cache bytes) to confirm that
#            it sees what the client holds.
#   check    N_CHECK concurrent connections, each to its own volume: READS
#            4 KiB reads at pseudo-random offsets in [0, RANGE), compared with
#            the image file; then each writes a block of its own at WOFF,
#            flushes, and (after all have written) reads it back: every
#            clone must see its own block and nothing of the others'.
#
# Usage: nbd-client.py --sock PATH --pid PID --stats FILE --image FILE
#                      [--prefix v] [--n 1000] [--n-mid 100] [--n-check 100]
#                      [--reads 64] [--range 268435456] [--woff 1610612736]
import argparse
import asyncio
import json
import os
import random
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
OPT_GO = 7
REP_ACK, REP_INFO = 1, 3
REQ_MAGIC, SIMPLE_MAGIC = 0x25609513, 0x67446698
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2
BS = 4096


class Conn:
    def __init__(self, r, w, size):
        self.r, self.w, self.size, self.cookie = r, w, size, 0

    async def request(self, cmd, off, length, data=b""):
        self.cookie += 1
        self.w.write(struct.pack(">IHHQQI", REQ_MAGIC, 0, cmd, self.cookie, off, length) + data)
        await self.w.drain()
        magic, err, cookie = struct.unpack(">IIQ", await self.r.readexactly(16))
        if magic != SIMPLE_MAGIC or cookie != self.cookie:
            raise RuntimeError("bad reply header")
        if err:
            raise RuntimeError(f"NBD error {err}")
        if cmd == CMD_READ:
            return await self.r.readexactly(length)
        return b""

    async def close(self):
        try:
            self.w.write(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 0, 0, 0))
            await self.w.drain()
        except (ConnectionError, OSError):
            pass
        self.w.close()


async def connect(sock, name):
    r, w = await asyncio.open_unix_connection(sock)
    magic, opt, hflags = struct.unpack(">QQH", await r.readexactly(18))
    if magic != NBDMAGIC or opt != IHAVEOPT or not hflags & FLAG_FIXED_NEWSTYLE:
        raise RuntimeError("not a fixed newstyle server")
    w.write(struct.pack(">I", FLAG_FIXED_NEWSTYLE | (hflags & FLAG_NO_ZEROES)))
    n = name.encode()
    data = struct.pack(">I", len(n)) + n + struct.pack(">H", 0)
    w.write(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    await w.drain()
    size = None
    while True:
        magic, o, typ, length = struct.unpack(">QIII", await r.readexactly(20))
        payload = await r.readexactly(length)
        if magic != REPLY_MAGIC or o != OPT_GO:
            raise RuntimeError("bad option reply")
        if typ & 0x80000000:
            raise RuntimeError(f"export {name}: option error {typ & 0x7fffffff}: {payload!r}")
        if typ == REP_INFO and struct.unpack(">H", payload[:2])[0] == 0:
            size = struct.unpack(">Q", payload[2:10])[0]
        if typ == REP_ACK:
            break
    if size is None:
        raise RuntimeError("no NBD_INFO_EXPORT")
    return Conn(r, w, size)


def image_block(img, off, length=BS):
    return os.pread(img, length, off)


def vm_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


async def stats_after(path, t):
    """The stats file as rewritten after time t (the daemon writes it every second)."""
    for _ in range(100):
        try:
            if os.stat(path).st_mtime > t + 0.05:
                with open(path) as f:
                    return json.load(f)
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("stats file not rewritten")


async def settle(a, held):
    """Wait until the daemon's stats show `held` connections, then sample RSS."""
    for _ in range(50):
        st = await stats_after(a.stats, time.time())
        if st["connections"] == held:
            break
    await asyncio.sleep(0.2)
    return vm_rss_kb(a.pid), st


async def attach(a, img, names, off, expect):
    async def one(name):
        c = await connect(a.sock, name)
        data = await c.request(CMD_READ, off, BS)
        if data != expect:
            raise RuntimeError(f"{name}: wrong data at {off}")
        return c
    return await asyncio.gather(*(one(n) for n in names))


async def check(a, img):
    bad = 0
    reads = 0
    barrier_count = 0
    all_written = asyncio.Event()
    nblk = a.range // BS

    async def one(i):
        nonlocal bad, reads, barrier_count
        c = await connect(a.sock, f"{a.prefix}{i}")
        rng = random.Random(i)
        for _ in range(a.reads):
            off = rng.randrange(nblk) * BS
            if await c.request(CMD_READ, off, BS) != image_block(img, off):
                bad += 1
            reads += 1
        mine = struct.pack(">QQ", 0x5E11A71A, i) * (BS // 16)
        await c.request(CMD_WRITE, a.woff, BS, mine)
        await c.request(CMD_FLUSH, 0, 0)
        barrier_count += 1
        if barrier_count == a.n_check:
            all_written.set()
        await all_written.wait()
        if await c.request(CMD_READ, a.woff, BS) != mine:
            bad += 1
        reads += 1
        await c.close()

    t0 = time.time()
    await asyncio.gather(*(one(i) for i in range(a.n_check)))
    return bad, reads, time.time() - t0


async def main(a):
    img = os.open(a.image, os.O_RDONLY)
    out = {}
    # a block that holds data, the same for every connection: the chunk cache
    # then holds it once, so the memory phases measure connections and volumes
    off = 1 << 20
    expect = image_block(img, off)
    assert expect != bytes(BS), "block at 1 MiB is zeros"

    rss0, st0 = await settle(a, 0)
    out.update(rss0_kb=rss0, threads0=threads(a.pid), cache0_bytes=st0["cache"]["bytes"])

    t = time.time()
    held = await attach(a, img, [f"{a.prefix}{i}" for i in range(a.n_mid)], off, expect)
    out["attach_mid_s"] = "%.3f" % (time.time() - t)
    rss1, st1 = await settle(a, a.n_mid)
    out.update(rss_mid_kb=rss1, threads_mid=threads(a.pid), conns_mid=st1["connections"],
               exports_mid=st1["exports_open"])

    t = time.time()
    held += await attach(a, img, [f"{a.prefix}{i}" for i in range(a.n_mid, a.n)], off, expect)
    out["attach_rest_s"] = "%.3f" % (time.time() - t)
    rss2, st2 = await settle(a, a.n)
    out.update(rss_n_kb=rss2, threads_n=threads(a.pid), conns_n=st2["connections"],
               exports_n=st2["exports_open"], cache_n_bytes=st2["cache"]["bytes"],
               rejected=st2["connections_rejected"])
    out["per_volume_bytes"] = round((rss2 - rss0) * 1024 / a.n)
    out["per_volume_mid_bytes"] = round((rss1 - rss0) * 1024 / a.n_mid)
    out["per_volume_marginal_bytes"] = round((rss2 - rss1) * 1024 / (a.n - a.n_mid))

    await asyncio.gather(*(c.close() for c in held))
    held = None
    rss3, st3 = await settle(a, 0)
    out.update(rss_closed_kb=rss3, exports_closed=st3["exports_open"])

    bad, reads, secs = await check(a, img)
    out.update(check_conns=a.n_check, check_reads=reads, check_errors=bad,
               check_s="%.3f" % secs)
    print("nbd-scale: " + " ".join(f"{k}={v}" for k, v in out.items()))
    return 1 if bad else 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--sock", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--prefix", default="v")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--n-mid", type=int, default=100)
    p.add_argument("--n-check", type=int, default=100)
    p.add_argument("--reads", type=int, default=64)
    p.add_argument("--range", type=int, default=256 << 20)
    p.add_argument("--woff", type=int, default=3 << 29)
    sys.exit(asyncio.run(main(p.parse_args())))
