#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Ideal dedup growth of image B given image A already stored.

Counts the distinct non-zero 4 KiB blocks (at 4 KiB-aligned offsets) of B that
appear nowhere among A's 4 KiB-aligned blocks: the lower bound on new data a
fixed-4K-block content-addressed store must add when ingesting B after A.

Usage: ideal-growth.py A.raw B.raw
Prints: ideal_new_bytes=N new_blocks=N b_nonzero_blocks=N
(b_nonzero_blocks counts all non-zero blocks of B, duplicates included.)
"""
import hashlib
import os
import sys

BLOCK = 4096
BUF = 64 << 20  # 64 MiB reads (multiple of BLOCK)
ZERO = bytes(BLOCK)


def data_extents(fd, size):
    """Yield (start, end) of data regions, skipping holes where supported."""
    if not hasattr(os, "SEEK_DATA"):
        yield 0, size
        return
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no more data
            return
        end = os.lseek(fd, start, os.SEEK_HOLE)
        # align outward to block boundaries
        yield start - start % BLOCK, min(size, -(-end // BLOCK) * BLOCK)
        pos = end


def blocks(path):
    """Yield digests of non-zero 4 KiB aligned blocks of path."""
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        last = 0
        for start, end in data_extents(fd, size):
            start = max(start, last)  # extents already aligned; avoid overlap
            off = start
            while off < end:
                buf = os.pread(fd, min(BUF, end - off), off)
                if not buf:
                    break
                mv = memoryview(buf)
                for i in range(0, len(buf) - len(buf) % BLOCK, BLOCK):
                    blk = mv[i:i + BLOCK]
                    if blk != ZERO:
                        yield hashlib.blake2b(blk, digest_size=16).digest()
                off += len(buf)
            last = end


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: ideal-growth.py A.raw B.raw")
    a = set(blocks(sys.argv[1]))
    b_nonzero = 0
    new = set()
    for d in blocks(sys.argv[2]):
        b_nonzero += 1
        if d not in a:
            new.add(d)
    print(f"ideal_new_bytes={len(new) * BLOCK} new_blocks={len(new)} "
          f"b_nonzero_blocks={b_nonzero}")


if __name__ == "__main__":
    main()
