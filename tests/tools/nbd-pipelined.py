#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Pipelined writes of every size over NBD, checked against a model.

  nbd-pipelined.py URI BASE SEED

Rounds of up to 64 writes in flight at once (libnbd's aio), each to a region
of its own (requests in flight have no order between them), of sizes from 1
byte to 100 KiB at unaligned offsets: their headers and payloads arrive
back to back, so the server's receive buffer ends inside payloads of every
kind (small ones copied out of it, large ones read straight into place
after a part copied). Then a flush, and every byte of the export is read
back and compared with BASE's bytes overwritten by the model. Exit 0 when
they all agree; otherwise the first offset that differs.
"""
import random
import sys

import nbd

MAX_IN_FLIGHT = 64


def size_of(rng):
    k = rng.randrange(4)
    if k == 0:
        return rng.randrange(1, 64)
    if k == 1:
        return rng.randrange(64, 9000)
    if k == 2:
        return rng.randrange(9000, 40000)
    return rng.randrange(40000, 100 << 10)


def main():
    uri, base_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with open(base_path, "rb") as f:
        model = bytearray(f.read())
    rng = random.Random(seed)
    h = nbd.NBD()
    h.connect_uri(uri)
    size = h.get_size()
    assert size == len(model), (size, len(model))
    region = size // MAX_IN_FLIGHT
    writes = 0
    for _ in range(24):
        n = rng.randrange(1, MAX_IN_FLIGHT + 1)
        cookies = []
        for r in rng.sample(range(MAX_IN_FLIGHT), n):
            length = min(size_of(rng), region)
            off = r * region + rng.randrange(region - length + 1)
            data = rng.randbytes(length)
            model[off:off + length] = data
            cookies.append(h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), off))
            writes += 1
        # (a completed command is retired when it is reported: each asked once)
        pending = set(cookies)
        while pending:
            pending = {c for c in pending if not h.aio_command_completed(c)}
            if pending:
                h.poll(-1)
    h.flush()
    step = 1 << 20
    for off in range(0, size, step):
        got = h.pread(min(step, size - off), off)
        want = bytes(model[off:off + len(got)])
        if got != want:
            bad = next(i for i in range(len(got)) if got[i] != want[i])
            print(f"nbd-pipelined: byte {off + bad} differs after {writes} writes (seed {seed})", file=sys.stderr)
            return 1
    h.shutdown()
    print(f"nbd-pipelined: {writes} pipelined writes (seed {seed}), {size} bytes read back: all agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
