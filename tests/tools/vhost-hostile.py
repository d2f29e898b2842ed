#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A vhost-user front-end of our own, well-behaved or hostile, against a
vhost-user-blk back-end on a Unix socket (usage: vhost-hostile.py SOCK IMAGE [NAME]).

It plays the VMM: guest memory in a memfd shared with the back-end, a split
virtqueue laid out in it, eventfds to kick and be called. First a correct
read of the disk's first 4 KiB and of a block in the middle, checked against
IMAGE, so that the rings it builds are known good (and, given NAME, the
device's GET_ID, which must be NAME); then each hostile case on
a fresh connection: bad versions and sizes, wrong descriptor counts, messages
cut short, rings outside guest memory, descriptors outside it, looping and
overlong chains, huge lengths, heads past the queue, a front-end that
vanishes mid-request, memory and inflight buffers smaller than they claim,
an inflight buffer of garbage; and the inflight buffer's purpose: a chain
it marks in flight is served again by a new session, one whose used
element was published is not. After each, the back-end must still answer a fresh
connection with a correct read. Prints one line per case; exit 0 when every
case held.
"""
import mmap
import os
import select
import socket
import struct
import sys
import time

GET_FEATURES, SET_FEATURES, SET_OWNER, SET_MEM_TABLE = 1, 2, 3, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_CONFIG = 15, 16, 24
GET_INFLIGHT_FD, SET_INFLIGHT_FD = 31, 32
P_INFLIGHT = 1 << 12
VERSION = 1
F_VERSION_1 = 1 << 32
F_PROTOCOL = 1 << 30
NEXT, WRITE, INDIRECT = 1, 2, 4

MEM = 4 << 20
BIG = 0x100000  # a 1 MiB read's buffers, from here
UVA = 0x7F0000000000  # where "our" process has the memory (only a label)
QSIZE = 64
DESC, AVAIL, USED = 0x0000, 0x1000, 0x2000
HDR, DATA, STATUS = 0x10000, 0x11000, 0x12000
HDR2, DATA2, STATUS2 = 0x13000, 0x14000, 0x15000
INFLIGHT_REGION = 16 + 16 * QSIZE  # one queue's, 64-byte aligned for QSIZE 64


class Frontend:
    def __init__(self, path):
        # One front-end at a time: the last case's session may still be
        # ending, and then this one is refused at once. Try again until a
        # GET_FEATURES goes round.
        for _ in range(50):
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(5)
            self.s.connect(path)
            try:
                self.s.sendall(struct.pack("<III", GET_FEATURES, VERSION, 0))
                if self.reply()[0] == GET_FEATURES:
                    break
            except (EOFError, BrokenPipeError, ConnectionResetError):
                pass
            self.s.close()
            time.sleep(0.1)
        else:
            raise EOFError("the back-end refuses every connection")
        fd = os.memfd_create("guest")
        os.ftruncate(fd, MEM)
        self.memfd = fd
        self.mem = mmap.mmap(fd, MEM)
        self.kick = os.eventfd(0)
        self.call = os.eventfd(0, os.EFD_NONBLOCK)
        self.err = os.eventfd(0, os.EFD_NONBLOCK)

    def close(self):
        self.s.close()
        for fd in (self.memfd, self.kick, self.call, self.err):
            os.close(fd)
        self.mem.close()

    def send(self, req, payload=b"", fds=(), flags=VERSION, size=None):
        data = struct.pack("<III", req, flags, len(payload) if size is None else size) + payload
        if fds:
            socket.send_fds(self.s, [data], list(fds))
        else:
            self.s.sendall(data)

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            k = self.s.recv(n - len(b))
            if not k:
                raise EOFError("the back-end closed the connection")
            b += k
        return b

    def reply(self):
        req, flags, size = struct.unpack("<III", self.recv_exact(12))
        return req, flags, self.recv_exact(size)

    def get_u64(self, req):
        self.send(req)
        r, flags, p = self.reply()
        assert r == req and flags & 4 and len(p) == 8, (r, flags, p)
        return struct.unpack("<Q", p)[0]

    def closed_by_peer(self, wait=3.0):
        """True once the back-end has closed the connection."""
        self.s.settimeout(wait)
        try:
            while True:
                if not self.s.recv(4096):
                    return True
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True

    def get_inflight(self, nq, qs):
        """GET_INFLIGHT_FD: (fd, mmap size, mmap offset) of the back-end's buffer."""
        self.send(GET_INFLIGHT_FD, struct.pack("<QQHH4x", 0, 0, nq, qs))
        data, fds, _, _ = socket.recv_fds(self.s, 12 + 24, 1)
        data += self.recv_exact(12 + 24 - len(data))
        req, flags, size = struct.unpack_from("<III", data)
        assert req == GET_INFLIGHT_FD and flags & 4 and size == 24 and len(fds) == 1, (req, size, fds)
        msize, moff, rnq, rqs = struct.unpack_from("<QQHH", data, 12)
        assert (rnq, rqs) == (nq, qs), (rnq, rqs)
        return fds[0], msize, moff

    def setup(self, qsize=QSIZE, desc_uva=UVA + DESC, avail_uva=UVA + AVAIL, used_uva=UVA + USED,
              region_size=MEM, base=0, inflight=None):
        """inflight: (fd, size, offset, queues, queue size) for SET_INFLIGHT_FD."""
        self.get_u64(GET_FEATURES)
        self.get_u64(GET_PROTOCOL_FEATURES)
        self.send(SET_PROTOCOL_FEATURES, struct.pack("<Q", P_INFLIGHT if inflight else 0))
        self.send(SET_OWNER)
        self.send(SET_FEATURES, struct.pack("<Q", F_VERSION_1 | F_PROTOCOL))
        self.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) + struct.pack("<QQQQ", 0, region_size, UVA, 0),
                  fds=[self.memfd])
        self.send(SET_VRING_NUM, struct.pack("<II", 0, qsize))
        self.send(SET_VRING_BASE, struct.pack("<II", 0, base))
        if inflight:
            fd, size, off, nq, qs = inflight
            self.send(SET_INFLIGHT_FD, struct.pack("<QQHH4x", size, off, nq, qs), fds=[fd])
        self.send(SET_VRING_ADDR, struct.pack("<IIQQQQ", 0, 0, desc_uva, used_uva, avail_uva, 0))
        self.send(SET_VRING_CALL, struct.pack("<Q", 0), fds=[self.call])
        self.send(SET_VRING_ERR, struct.pack("<Q", 0), fds=[self.err])
        self.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[self.kick])
        self.avail_idx = 0

    def chain(self, first, hdr, data, status, length, rtype=0, sector=0):
        """A virtio-blk request in descriptors first..first+2."""
        struct.pack_into("<IIQ", self.mem, hdr, rtype, 0, sector)
        self.mem[status] = 0xFF
        self.desc(first, hdr, 16, NEXT, first + 1)
        self.desc(first + 1, data, length, NEXT | WRITE, first + 2)
        self.desc(first + 2, status, 1, WRITE)

    def desc(self, i, addr, length, flags, nxt=0, table=DESC):
        struct.pack_into("<QIHH", self.mem, table + 16 * i, addr, length, flags, nxt)

    def offer(self, head):
        struct.pack_into("<H", self.mem, AVAIL + 4 + 2 * (self.avail_idx % QSIZE), head)
        self.avail_idx = (self.avail_idx + 1) & 0xFFFF
        struct.pack_into("<H", self.mem, AVAIL + 2, self.avail_idx)
        os.eventfd_write(self.kick, 1)

    def used_idx(self):
        return struct.unpack_from("<H", self.mem, USED + 2)[0]

    def wait_used(self, want, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            if self.used_idx() == want:
                return True
            select.select([self.call], [], [], 0.05)
            try:
                os.eventfd_read(self.call)
            except BlockingIOError:
                pass
        return self.used_idx() == want

    def read_request(self, sector, length=4096):
        """A virtio-blk IN request in descriptors 0..2; returns (status, data)."""
        self.chain(0, HDR, DATA, STATUS, length, 0, sector)
        before = self.used_idx()
        self.offer(0)
        if not self.wait_used((before + 1) & 0xFFFF):
            return None, None
        return self.mem[STATUS], bytes(self.mem[DATA:DATA + length])


def good_read(path, image):
    """A fresh front-end reads two blocks correctly: the back-end is well.
    (The last case's session may take a moment to end: one VMM at a time, so
    a connection refused at once is tried again.)"""
    for _ in range(40):
        f = Frontend(path)
        try:
            f.setup()
            for sector in (0, len(image) // 512 // 2):
                status, data = f.read_request(sector)
                if status != 0 or data != image[sector * 512:sector * 512 + 4096]:
                    return False
            return True
        except (EOFError, BrokenPipeError, ConnectionResetError):
            time.sleep(0.1)
        finally:
            f.close()
    return False


def err_signalled(f):
    try:
        return os.eventfd_read(f.err) > 0
    except BlockingIOError:
        return False


def main():
    path, image_path = sys.argv[1], sys.argv[2]
    with open(image_path, "rb") as fh:
        image = fh.read()
    failed = []

    def case(name, fn):
        try:
            ok = fn()
        except Exception as e:  # a case that raised did not hold
            ok = False
            name += f" ({type(e).__name__}: {e})"
        time.sleep(0.1)
        well = good_read(path, image)
        print(f"vhost-hostile: {'ok  ' if ok and well else 'FAIL'} {name}"
              + ("" if well else " (the back-end no longer serves a correct read)"))
        if not (ok and well):
            failed.append(name)

    case("a correct read of two blocks", lambda: good_read(path, image))

    def big_read():
        # 1 MiB in three buffers of uneven sizes, none a multiple of the
        # parts a large read is cut into: what each part skips and reads
        # crosses buffer ends
        f = Frontend(path)
        try:
            f.setup()
            sector = len(image) // 512 // 3 // 8 * 8
            sizes = (100 << 10, 700 << 10, 224 << 10)
            struct.pack_into("<IIQ", f.mem, HDR, 0, 0, sector)
            f.mem[STATUS] = 0xFF
            f.desc(0, HDR, 16, NEXT, 1)
            at = BIG
            for i, n in enumerate(sizes):
                f.desc(1 + i, at, n, NEXT | WRITE, 2 + i)
                at += n + 4096  # apart, so that each buffer's end matters
            f.desc(1 + len(sizes), STATUS, 1, WRITE)
            f.offer(0)
            if not f.wait_used(1) or f.mem[STATUS] != 0:
                return False
            got, at = b"", BIG
            for n in sizes:
                got += bytes(f.mem[at:at + n])
                at += n + 4096
            return got == image[sector * 512:sector * 512 + (1 << 20)]
        finally:
            f.close()
    case("a correct 1 MiB read in three uneven buffers", big_read)

    if len(sys.argv) > 3:
        def get_id():
            f = Frontend(path)
            try:
                f.setup()
                f.chain(0, HDR, DATA, STATUS, 20, 8)  # VIRTIO_BLK_T_GET_ID
                f.offer(0)
                if not f.wait_used(1):
                    return False
                want = sys.argv[3].encode()[:20].ljust(20, b"\0")
                return f.mem[STATUS] == 0 and bytes(f.mem[DATA:DATA + 20]) == want
            finally:
                f.close()
        case("GET_ID answers the export's name", get_id)

    def closes(payload_fn):
        def run():
            f = Frontend(path)
            try:
                payload_fn(f)
                return f.closed_by_peer()
            finally:
                f.close()
        return run

    case("protocol version 2: disconnected", closes(lambda f: f.send(GET_FEATURES, flags=2)))
    case("a 1 MiB payload: disconnected",
         closes(lambda f: f.send(GET_FEATURES, b"", size=1 << 20)))
    case("a memory table of 0 regions: disconnected",
         closes(lambda f: f.send(SET_MEM_TABLE, struct.pack("<II", 0, 0))))
    case("a memory table of 1 region and no fd: disconnected",
         closes(lambda f: f.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
                                 struct.pack("<QQQQ", 0, MEM, UVA, 0))))
    case("a region that wraps the address space: disconnected",
         closes(lambda f: f.send(SET_MEM_TABLE, struct.pack("<II", 1, 0) +
                                 struct.pack("<QQQQ", 2**64 - 4096, MEM, UVA, 0), fds=[f.memfd])))
    case("vring index 200: disconnected",
         closes(lambda f: f.send(SET_VRING_NUM, struct.pack("<II", 200, 64))))
    case("a kick fd message with two fds: disconnected",
         closes(lambda f: f.send(SET_VRING_KICK, struct.pack("<Q", 0), fds=[f.kick, f.call])))

    def truncated():
        f = Frontend(path)
        f.s.sendall(struct.pack("<III", SET_FEATURES, VERSION, 8) + b"\x01\x02")
        f.close()  # gone mid-message
        return True
    case("a message cut short, then the front-end gone", truncated)

    def rings_outside():
        f = Frontend(path)
        try:
            f.setup(desc_uva=UVA + 2 * MEM)
            # the ring cannot start: nothing is read or written
            return f.used_idx() == 0
        finally:
            f.close()
    case("a descriptor table outside guest memory", rings_outside)

    def broken_chain(build):
        def run():
            f = Frontend(path)
            try:
                f.setup()
                build(f)
                f.offer(0)
                time.sleep(0.3)
                # no completion for a chain that cannot be trusted, the
                # error eventfd signalled, and the status byte untouched
                return f.used_idx() == 0 and err_signalled(f) and f.mem[STATUS] == 0xAB
            finally:
                f.close()
        return run

    def prep(f):
        struct.pack_into("<IIQ", f.mem, HDR, 0, 0, 0)
        f.mem[STATUS] = 0xAB

    def outside(f):
        prep(f)
        f.desc(0, HDR, 16, NEXT, 1)
        f.desc(1, 0x7FFF_FFFF_0000, 4096, NEXT | WRITE, 2)
        f.desc(2, STATUS, 1, WRITE)
    case("a data buffer outside guest memory", broken_chain(outside))

    def huge(f):
        prep(f)
        f.desc(0, HDR, 16, NEXT, 1)
        f.desc(1, DATA, 0xFFFF_FFFF, NEXT | WRITE, 2)
        f.desc(2, STATUS, 1, WRITE)
    case("a 4 GiB descriptor past the end of guest memory", broken_chain(huge))

    def loop(f):
        prep(f)
        f.desc(0, HDR, 16, NEXT, 1)
        f.desc(1, DATA, 512, NEXT | WRITE, 0)  # back to 0: a loop
    case("a looping chain", broken_chain(loop))

    def next_past(f):
        prep(f)
        f.desc(0, HDR, 16, NEXT, 999)
    case("a next index past the queue", broken_chain(next_past))

    def nested_indirect(f):
        prep(f)
        table = 0x20000
        f.desc(0, table, 32, INDIRECT)
        f.desc(0, table + 16, 16, INDIRECT, 0, table=table)  # an indirect inside one
        f.desc(1, STATUS, 1, WRITE, 0, table=table)
    case("a nested indirect table", broken_chain(nested_indirect))

    def head_past():
        f = Frontend(path)
        try:
            f.setup()
            prep(f)
            f.offer(QSIZE + 5)
            time.sleep(0.3)
            return f.used_idx() == 0 and err_signalled(f)
        finally:
            f.close()
    case("an available head past the queue size", head_past)

    def no_status():
        f = Frontend(path)
        try:
            f.setup()
            prep(f)
            f.desc(0, HDR, 16, 0)  # no writable byte for the status
            f.offer(0)
            time.sleep(0.3)
            return f.used_idx() == 0 and err_signalled(f)
        finally:
            f.close()
    case("a request with no room for its status", no_status)

    def past_end():
        f = Frontend(path)
        try:
            f.setup()
            status, _ = f.read_request(len(image) // 512)  # one block past the end
            return status == 1  # VIRTIO_BLK_S_IOERR, and the device goes on
        finally:
            f.close()
    case("a read past the end of the disk: an I/O error status", past_end)

    def vanish():
        f = Frontend(path)
        f.setup()
        f.chain(0, HDR, DATA, STATUS, 4096)
        f.offer(0)
        f.close()  # gone with the request in flight
        return True
    case("a front-end that vanishes mid-request", vanish)

    def second_vmm():
        a = Frontend(path)
        try:
            a.get_u64(GET_FEATURES)
            b = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            b.settimeout(3)
            b.connect(path)
            try:
                refused = b.recv(1) == b""
            except (ConnectionResetError, BrokenPipeError):
                refused = True
            finally:
                b.close()
            a.get_u64(GET_FEATURES)  # the first still served
            return refused
        finally:
            a.close()
    case("a second front-end while one is attached: refused", second_vmm)

    def region_past_file():
        f = Frontend(path)
        try:
            # a region of 4 MiB whose file holds 1 MiB, and a buffer at 2 MiB:
            # the table is refused, nothing touches what the file lacks
            f.setup(region_size=4 * MEM)
            struct.pack_into("<IIQ", f.mem, HDR, 0, 0, 0)
            f.desc(0, HDR, 16, NEXT, 1)
            f.desc(1, 2 * MEM, 4096, NEXT | WRITE, 2)
            f.desc(2, STATUS, 1, WRITE)
            f.offer(0)
            time.sleep(0.3)
            return f.used_idx() == 0
        finally:
            f.close()
    case("a memory region larger than its file: refused", region_past_file)

    def inflight_short():
        fd = os.memfd_create("inflight")  # 0 bytes, claiming one queue's region
        f = Frontend(path)
        try:
            f.setup(inflight=(fd, 64 * ((INFLIGHT_REGION + 63) // 64), 0, 1, QSIZE))
            status, data = f.read_request(0)  # served, untracked
            return status == 0 and data == image[:4096]
        finally:
            f.close()
            os.close(fd)
    case("an inflight buffer smaller than it says: refused", inflight_short)

    def kept_buffer():
        """A back-end's inflight buffer, as the front-end keeps it across
        back-end sessions: (fd, size, offset)."""
        a = Frontend(path)
        try:
            return a.get_inflight(1, QSIZE)
        finally:
            a.close()

    def inflight_garbage():
        fd, size, off = kept_buffer()
        with mmap.mmap(fd, size) as r:
            r[:] = os.urandom(size)
            struct.pack_into("<HH", r, off + 8, 1, QSIZE)  # version 1, our queue size
        f = Frontend(path)
        try:
            f.setup(inflight=(fd, size, off, 1, QSIZE))
            time.sleep(0.3)  # whatever it marked: served, or the queue stopped
            return True
        finally:
            f.close()
            os.close(fd)
    case("an inflight buffer of garbage", inflight_garbage)

    def inflight_resubmit():
        fd, size, off = kept_buffer()
        f = Frontend(path)
        r = mmap.mmap(fd, size)
        try:
            # What a new session finds after the last one went: it had taken
            # chain 0 (a read of the middle block) and then chain 3 (GET_ID)
            # from the available ring and served them out of order: chain 3's
            # used element was published but its mark not yet cleared (used
            # index 1, the buffer's 0), chain 0 was still being served. The
            # ring alone would say: serve the second chain (3) again.
            sector = len(image) // 512 // 2
            f.chain(0, HDR, DATA, STATUS, 4096, 0, sector)
            f.chain(3, HDR2, DATA2, STATUS2, 20, 8)
            struct.pack_into("<HHH", f.mem, AVAIL + 2, 2, 0, 3)  # idx 2: heads 0, 3
            struct.pack_into("<H", f.mem, USED + 2, 1)  # idx 1: head 3, 21 bytes
            struct.pack_into("<II", f.mem, USED + 4, 3, 21)
            struct.pack_into("<HHHH", r, off + 8, 1, QSIZE, 3, 0)  # last batch: 3; used 0
            struct.pack_into("<B5xHQ", r, off + 16 + 16 * 0, 1, 0, 7)
            struct.pack_into("<B5xHQ", r, off + 16 + 16 * 3, 1, 0, 8)
            f.setup(base=1, inflight=(fd, size, off, 1, QSIZE))
            f.avail_idx = 2
            if not f.wait_used(2):
                return False
            time.sleep(0.3)  # chain 3 must not be served again
            head, _ = struct.unpack_from("<II", f.mem, USED + 4 + 8)
            marks = (r[off + 16], r[off + 16 + 16 * 3])
            used_field = struct.unpack_from("<H", r, off + 14)[0]
            ok = (f.used_idx() == 2 and head == 0 and f.mem[STATUS] == 0 and f.mem[STATUS2] == 0xFF
                  and bytes(f.mem[DATA:DATA + 4096]) == image[sector * 512:sector * 512 + 4096]
                  and marks == (0, 0) and used_field == 2)
            # and the queue goes on: a new chain from the available ring
            f.chain(0, HDR, DATA, STATUS, 4096, 0, 0)
            f.offer(0)
            ok = ok and f.wait_used(3) and f.mem[STATUS] == 0 and bytes(f.mem[DATA:DATA + 4096]) == image[:4096]
            if not ok:
                print(f"vhost-hostile: used {f.used_idx()} head {head} marks {marks} "
                      f"buffer used {used_field}", file=sys.stderr)
            return ok
        finally:
            r.close()
            f.close()
            os.close(fd)
    case("a chain the inflight buffer marks is served again, a published one is not", inflight_resubmit)

    if failed:
        print(f"vhost-hostile: {len(failed)} case(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
