#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Random 4 KiB reads of an NBD export, each checked against the file it
must equal, until a stop file appears: one timestamp per answer in LOG.
Exits 1 at the first wrong answer (saying where).

Usage: nbd-check-reader.py URI FILE LOG STOPFILE"""
import os
import random
import sys
import time

import nbd

uri, path, log_path, stop = sys.argv[1:5]
h = nbd.NBD()
h.connect_uri(uri)
want = open(path, "rb")
size = h.get_size()
r = random.Random(9)
with open(log_path, "w") as log:
    while not os.path.exists(stop):
        off = r.randrange(size // 4096) * 4096
        got = h.pread(4096, off)
        want.seek(off)
        if got != want.read(4096):
            print(f"{uri}: wrong bytes at offset {off}", file=sys.stderr)
            sys.exit(1)
        log.write(f"{time.time():.6f}\n")
        log.flush()
