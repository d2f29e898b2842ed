#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A guest-like writer over NBD, and the check of what it acknowledged.

  nbd-writer.py write URI SEED NBLOCKS LOG STOPFILE
      Writes 4 KiB blocks without pause: op i goes to block
      block_of(SEED, i, NBLOCKS) and holds i (8 bytes LE) then a fill derived
      from it. Every 8 ops it flushes and appends "ack I" to LOG (ops 0..I are
      durable). Stops when STOPFILE exists, after a last flush.
  nbd-writer.py check IMAGE BASE SEED NBLOCKS ACKED ISSUED
      IMAGE (a snapshot or export) must hold every write acknowledged up to
      op ACKED, and nothing that was not written: each block is the last op
      <= ACKED that wrote it, or a later op (<= ISSUED) that wrote it, or, if
      no op <= ACKED wrote it, BASE's block or such a later op.
"""
import random
import struct
import sys

BLK = 4096


def block_of(seed, i, n):
    return random.Random(seed * 1000003 + i).randrange(n)


def data_of(i):
    head = struct.pack("<Q", i)
    return head + bytes([(i * 7 + k) & 0xFF for k in range(BLK - 8)])


def write(uri, seed, n, log, stop):
    import os
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    i = 0
    with open(log, "a", buffering=1) as f:
        while True:
            h.pwrite(data_of(i), block_of(seed, i, n) * BLK)
            if i % 8 == 7:
                h.flush()
                f.write("ack %d\n" % i)
                if os.path.exists(stop):
                    break
            i += 1
    h.shutdown()


def check(image, base, seed, n, acked, issued):
    last = {}
    later = {}
    for i in range(issued + 1):
        b = block_of(seed, i, n)
        if i <= acked:
            last[b] = i
        else:
            later.setdefault(b, set()).add(i)
    bad = 0
    with open(image, "rb") as f, open(base, "rb") as g:
        for b in range(n):
            f.seek(b * BLK)
            g.seek(b * BLK)
            got, want_base = f.read(BLK), g.read(BLK)
            j = struct.unpack("<Q", got[:8])[0]
            ok = (b in last and j == last[b] and got == data_of(j)) or \
                 (j in later.get(b, ()) and got == data_of(j)) or \
                 (b not in last and got == want_base)
            if not ok:
                bad += 1
                if bad <= 5:
                    print("block %d: holds op %d; last acked write op %s" %
                          (b, j, last.get(b)), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    a = sys.argv
    if a[1] == "write":
        write(a[2], int(a[3]), int(a[4]), a[5], a[6])
    else:
        sys.exit(check(a[2], a[3], int(a[4]), int(a[5]), int(a[6]), int(a[7])))
