#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A deliberately hostile NBD client for `stellar serve` (python3 stdlib only).

Each scenario breaks the protocol (NetworkBlockDevice/nbd doc/proto.md) in one
way and asserts what the server must do about it: an error reply after which
the connection stays usable and in sync, or a hang-up of that client only,
never a hang, a crash or a giant allocation. After every scenario a fresh,
well-behaved connection must still read both exports correctly, and the
--good-cmd (real clients: qemu-img, nbdinfo, nbdsh) must pass; the idle and
slow scenarios run it while their clients are still connected.

    nbd-hostile.py --addr unix:SOCK --ro base --ro-image base.img \\
        --rw vm1 --rw-image vm1.expect [--pid PID] [--stats F] [--good-cmd CMD] \\
        all | SCENARIO...
    nbd-hostile.py --list

The rw export's content never changes (every write a scenario sends is one
the server must refuse or never see whole; the good client writes back bytes
it already holds), so --rw-image is what it must read as throughout.

Not part of `all`: `hold` connects clients in every state (idle before the
greeting is read, mid-handshake, idle in transmission, half a request, request
pipelines whose replies it never reads), prints "holding", and exits 0 once
the server has closed every one of them: run it in the background, then stop
the daemon. `fd-exhaust` opens 100 idle clients against a daemon started with
a low descriptor limit (prlimit --nofile=64) and checks that it does not spin.
"""
import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPMAGIC = 0x3E889045565A9
REQMAGIC = 0x25609513
SIMPLEMAGIC = 0x67446698
STRUCTMAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS = 1, 2, 3, 5
OPT_INFO, OPT_GO, OPT_STRUCTURED_REPLY = 6, 7, 8
OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 9, 10

REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4


def ERR(n):
    return (1 << 31) + n


ERR_UNSUP, ERR_POLICY, ERR_INVALID, ERR_PLATFORM = ERR(1), ERR(2), ERR(3), ERR(4)
ERR_TLS_REQD, ERR_UNKNOWN, ERR_SHUTDOWN, ERR_TOO_BIG = ERR(5), ERR(6), ERR(7), ERR(9)
REP_NAMES = {REP_ACK: "ACK", REP_SERVER: "SERVER", REP_INFO: "INFO",
             REP_META_CONTEXT: "META_CONTEXT", ERR_UNSUP: "ERR_UNSUP",
             ERR_POLICY: "ERR_POLICY", ERR_INVALID: "ERR_INVALID",
             ERR_PLATFORM: "ERR_PLATFORM", ERR_TLS_REQD: "ERR_TLS_REQD",
             ERR_UNKNOWN: "ERR_UNKNOWN", ERR_SHUTDOWN: "ERR_SHUTDOWN",
             ERR_TOO_BIG: "ERR_TOO_BIG"}

TF_HAS_FLAGS, TF_READ_ONLY, TF_SEND_DF = 1 << 0, 1 << 1, 1 << 7

CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH = 0, 1, 2, 3
CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 4, 5, 6, 7
F_FUA, F_NO_HOLE, F_DF, F_REQ_ONE = 1, 2, 4, 8

REPLY_DONE = 1
RT_NONE, RT_OFFSET_DATA, RT_OFFSET_HOLE, RT_BLOCK_STATUS = 0, 1, 2, 5
RT_ERROR, RT_ERROR_OFFSET = (1 << 15) + 1, (1 << 15) + 2

EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 108
ERRNO_NAMES = {0: "ok", EPERM: "EPERM", EIO: "EIO", ENOMEM: "ENOMEM", EINVAL: "EINVAL",
               ENOSPC: "ENOSPC", EOVERFLOW: "EOVERFLOW", ESHUTDOWN: "ESHUTDOWN"}

REQUEST_MAX = 32 << 20  # the server's largest read or write (NBD_REQUEST_MAX)
TIMEOUT = 5.0           # how long any expected reply or hang-up may take


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def rep_name(t):
    return REP_NAMES.get(t, "0x%x" % t)


def errno_name(e):
    return ERRNO_NAMES.get(e, str(e))


class Closed(Exception):
    """The server hung up on us."""


# ---- a small, strict client ----

class _Reply:
    """What has arrived of the reply to one request."""

    def __init__(self, cmd, offset, length):
        self.cmd, self.offset, self.length = cmd, offset, length
        self.data = None
        self.covered = []
        self.status = {}
        self.err = 0
        self.done = False
        self.result = None

    def finish(self, err, value):
        self.done = True
        self.result = (err, value)


class Client:
    def __init__(self, ctx, timeout=TIMEOUT):
        self.ctx = ctx
        self.sock = ctx.connect(timeout)
        self.structured = False
        self.size = None
        self.tflags = None
        self.export = None
        self.cookie = 0x1000
        self.pending = {}

    def close(self, rst=False):
        if self.sock is None:
            return
        if rst:  # a reset rather than an orderly close (TCP only)
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.sock.close()
        self.sock = None

    def send(self, b):
        try:
            self.sock.sendall(b)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed("send: %s" % e)

    def recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                d = self.sock.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                raise Fail("no reply within %.0f s (wanted %d bytes, got %d): server hangs"
                           % (self.sock.gettimeout(), n, len(buf)))
            except ConnectionResetError as e:
                raise Closed("recv: %s" % e)
            if not d:
                raise Closed("EOF after %d of %d bytes" % (len(buf), n))
            buf += d
        return bytes(buf)

    def expect_closed(self, what, timeout=TIMEOUT, allow_data=False):
        """The server must hang up (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        got = 0
        end = time.monotonic() + timeout
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                got += len(d)
                check(allow_data, "%s: expected a hang-up, got %d bytes of reply" % (what, got))
                check(time.monotonic() < end, "%s: server keeps sending" % what)
        except socket.timeout:
            raise Fail("%s: server did not hang up within %.0f s" % (what, timeout))
        except ConnectionResetError:
            pass
        self.close()

    # -- handshake --
    def greeting(self):
        g = self.recv_exact(18)
        magic, ihaveopt, hflags = struct.unpack(">QQH", g)
        check(magic == NBDMAGIC and ihaveopt == IHAVEOPT, "bad greeting %r" % g)
        check(hflags & FLAG_FIXED_NEWSTYLE, "server lacks fixed newstyle")
        return hflags

    def start(self, cflags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        self.greeting()
        self.send(struct.pack(">I", cflags))
        self.no_zeroes = bool(cflags & FLAG_NO_ZEROES)

    def option(self, opt, payload=b"", length=None, magic=IHAVEOPT):
        self.send(struct.pack(">QII", magic, opt, len(payload) if length is None else length)
                  + payload)

    def opt_reply(self, opt):
        h = self.recv_exact(20)
        magic, ropt, rtype, rlen = struct.unpack(">QIII", h)
        check(magic == REPMAGIC, "option reply magic 0x%x" % magic)
        check(ropt == opt, "option reply for option %d, expected %d" % (ropt, opt))
        check(rlen <= 1 << 20, "option reply of %d bytes" % rlen)
        return rtype, self.recv_exact(rlen)

    def opt_final(self, opt):
        """Every reply up to the final one: (final type, [(type, data)...])."""
        reps = []
        while True:
            t, d = self.opt_reply(opt)
            reps.append((t, d))
            if t == REP_ACK or t & (1 << 31):
                return t, reps
            check(t in (REP_SERVER, REP_INFO, REP_META_CONTEXT), "reply type %d" % t)

    def opt_expect(self, opt, payload, want, what, length=None):
        """Send an option; its final reply must be one of want (a type or a tuple)."""
        want = want if isinstance(want, tuple) else (want,)
        try:
            self.option(opt, payload, length)
            t, reps = self.opt_final(opt)
        except Closed as e:
            raise Fail("%s: server hung up (%s), expected %s" %
                       (what, e, "/".join(rep_name(w) for w in want)))
        check(t in want, "%s: got %s, expected %s" %
              (what, rep_name(t), "/".join(rep_name(w) for w in want)))
        return reps

    def structured_reply(self):
        self.opt_expect(OPT_STRUCTURED_REPLY, b"", REP_ACK, "NBD_OPT_STRUCTURED_REPLY")
        self.structured = True

    @staticmethod
    def meta_payload(export, queries):
        p = struct.pack(">I", len(export)) + export + struct.pack(">I", len(queries))
        for q in queries:
            p += struct.pack(">I", len(q)) + q
        return p

    def set_meta(self, export, queries, opt=OPT_SET_META_CONTEXT):
        reps = self.opt_expect(opt, self.meta_payload(export.encode(), [q.encode() for q in queries]),
                               REP_ACK, "NBD_OPT_SET_META_CONTEXT")
        ctxs = {}
        for t, d in reps[:-1]:
            check(t == REP_META_CONTEXT and len(d) > 4, "meta context reply")
            ctxs[d[4:].decode()] = struct.unpack(">I", d[:4])[0]
        return ctxs

    @staticmethod
    def go_payload(name, infos=()):
        return struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos)) + \
            b"".join(struct.pack(">H", i) for i in infos)

    def go(self, name, infos=(), opt=OPT_GO):
        reps = self.opt_expect(opt, self.go_payload(name.encode(), infos), REP_ACK,
                               "NBD_OPT_GO %r" % name)
        for t, d in reps[:-1]:
            check(t == REP_INFO and len(d) >= 2, "GO reply %s" % rep_name(t))
            if struct.unpack(">H", d[:2])[0] == 0:
                check(len(d) == 12, "NBD_INFO_EXPORT of %d bytes" % len(d))
                self.size, self.tflags = struct.unpack(">QH", d[2:])
        check(self.size is not None, "GO without NBD_INFO_EXPORT")
        if opt == OPT_GO:
            self.export = name

    def export_name(self, name):
        self.option(OPT_EXPORT_NAME, name.encode())
        d = self.recv_exact(10 if self.no_zeroes else 134)
        self.size, self.tflags = struct.unpack(">QH", d[:10])
        check(d[10:] == bytes(len(d) - 10), "reserved bytes not zero")
        self.export = name

    # -- transmission --
    def request(self, cmd, offset=0, length=0, flags=0, payload=None, magic=REQMAGIC):
        self.cookie += 1
        if cmd == CMD_WRITE and payload is None:
            payload = bytes(length)
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, self.cookie, offset, length)
                  + (payload or b""))
        self.pending[self.cookie] = _Reply(cmd, offset, length)
        return self.cookie

    # Replies may come in any order (proto.md: matched by cookie), and the
    # chunks of structured replies to different requests may interleave:
    # whatever arrives is filed under its cookie until it is asked for.
    def reply(self, cookie, cmd, offset, length):
        """(error, data) for READ, (error, {ctx: descriptors}) for BLOCK_STATUS, else (error, None)."""
        st = self.pending.get(cookie)
        if st is None:
            st = self.pending[cookie] = _Reply(cmd, offset, length)
        while not st.done:
            self._read_one()
        del self.pending[cookie]
        return st.result

    def _read_one(self):
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if magic == SIMPLEMAGIC:
            err, ck = struct.unpack(">IQ", self.recv_exact(12))
            st = self.pending.get(ck)
            check(st is not None and not st.done, "reply cookie 0x%x: no such request waits" % ck)
            if st.cmd == CMD_READ:
                check(not self.structured or err, "simple reply with data to a structured read")
                st.finish(err, self.recv_exact(st.length) if err == 0 else None)
            else:
                st.finish(err, None)
            return
        check(magic == STRUCTMAGIC and self.structured, "reply magic 0x%x" % magic)
        flags, typ, ck, clen = struct.unpack(">HHQI", self.recv_exact(16))
        st = self.pending.get(ck)
        check(st is not None and not st.done, "chunk cookie 0x%x: no such request waits" % ck)
        cmd, offset, length = st.cmd, st.offset, st.length
        check(clen <= length + (1 << 16), "chunk of %d bytes for a %d byte request" % (clen, length))
        p = self.recv_exact(clen)
        if typ == RT_NONE:
            check(clen == 0 and flags & REPLY_DONE, "bad NBD_REPLY_TYPE_NONE")
        elif typ in (RT_ERROR, RT_ERROR_OFFSET):
            check(clen >= 6, "short error chunk")
            e, ml = struct.unpack(">IH", p[:6])
            check(e != 0 and 6 + ml <= clen, "bad error chunk")
            st.err = st.err or e
        elif typ in (RT_OFFSET_DATA, RT_OFFSET_HOLE):
            check(cmd == CMD_READ, "read chunk for command %d" % cmd)
            off = struct.unpack(">Q", p[:8])[0]
            n = clen - 8 if typ == RT_OFFSET_DATA else struct.unpack(">I", p[8:12])[0]
            check(n > 0 and off >= offset and off + n <= offset + length,
                  "chunk [%d,+%d) outside the request [%d,+%d)" % (off, n, offset, length))
            for a, b in st.covered:
                check(off + n <= a or off >= b, "overlapping read chunks")
            st.covered.append((off, off + n))
            if typ == RT_OFFSET_DATA:
                if st.data is None:  # at the first data chunk: a refused read may be 4 GiB long
                    st.data = bytearray(length)
                st.data[off - offset:off - offset + n] = p[8:]
        elif typ == RT_BLOCK_STATUS:
            check(cmd == CMD_BLOCK_STATUS and clen >= 12 and (clen - 4) % 8 == 0,
                  "bad block status chunk")
            cid = struct.unpack(">I", p[:4])[0]
            check(cid not in st.status, "two chunks for context %d" % cid)
            st.status[cid] = [struct.unpack(">II", p[i:i + 8]) for i in range(4, clen, 8)]
        else:
            raise Fail("unknown chunk type %d" % typ)
        if not flags & REPLY_DONE:
            return
        if cmd == CMD_READ:
            if st.err:
                st.finish(st.err, None)
                return
            check(sum(b - a for a, b in st.covered) == length, "read chunks do not cover the request")
            st.finish(0, bytes(st.data) if st.data is not None else bytes(length))
            return
        if cmd == CMD_BLOCK_STATUS and not st.err:
            check(st.status, "block status without descriptors")
            for cid, ds in st.status.items():
                check(ds and sum(d[0] for d in ds) <= length and all(d[0] > 0 for d in ds),
                      "block status descriptors %r for a %d byte query" % (ds[:4], length))
            st.finish(0, st.status)
            return
        st.finish(st.err, None)

    def cmd(self, cmd, offset=0, length=0, flags=0, payload=None):
        ck = self.request(cmd, offset, length, flags, payload)
        return self.reply(ck, cmd, offset, length)

    def expect_err(self, want, what, cmd, offset=0, length=0, flags=0, payload=None):
        want = want if isinstance(want, tuple) else (want,)
        try:
            err, _ = self.cmd(cmd, offset, length, flags, payload)
        except Closed as e:
            raise Fail("%s: server hung up (%s), expected %s" %
                       (what, e, "/".join(errno_name(w) for w in want)))
        check(err in want, "%s: got %s, expected %s" %
              (what, errno_name(err), "/".join(errno_name(w) for w in want)))

    def verify(self, offset, length, flags=0):
        """A read that must succeed and match the export's expected bytes."""
        err, data = self.cmd(CMD_READ, offset, length, flags)
        check(err == 0, "read [%d,+%d) failed: %s" % (offset, length, errno_name(err)))
        want = self.ctx.expected(self.export)[offset:offset + length]
        if data != want:
            i = next(i for i in range(length) if data[i] != want[i])
            raise Fail("read [%d,+%d) differs from the export at byte %d" % (offset, length, offset + i))

    def in_sync(self, seed=0):
        """After a refused request the stream must be in sync: reads still come back right."""
        check(self.size == len(self.ctx.expected(self.export)), "export size %d" % self.size)
        rnd = random.Random(seed)
        for _ in range(3):
            n = rnd.choice((1, 511, 4096, 65536 + 3))
            self.verify(rnd.randrange(0, self.size - n), n)
        self.verify(self.size - 4096, 4096)


def connect_export(ctx, name, structured=False, meta=None):
    c = Client(ctx)
    c.start()
    if structured or meta:
        c.structured_reply()
    if meta:
        c.set_meta(name, meta)
    c.go(name)
    return c


# ---- the run: exports, checks between scenarios ----

class Ctx:
    def __init__(self, a):
        self.addr = a.addr
        self.ro, self.rw = a.ro, a.rw
        with open(a.ro_image, "rb") as f:
            self.images = {a.ro: f.read()}
        with open(a.rw_image, "rb") as f:
            self.images[a.rw] = f.read()
        self.size = len(self.images[a.ro])
        self.pid = a.pid
        self.stats = a.stats
        self.good_cmd = a.good_cmd
        self.verbose = a.verbose

    def expected(self, export):
        return self.images[export]

    def connect(self, timeout=TIMEOUT):
        if self.addr.startswith("unix:"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = self.addr[5:]
        elif self.addr.startswith("tcp:"):
            host, port = self.addr[4:].rsplit(":", 1)
            s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            target = (host.strip("[]"), int(port))
        else:
            raise SystemExit("--addr: unix:PATH or tcp:HOST:PORT")
        s.settimeout(timeout)
        s.connect(target)
        return s

    def log(self, msg):
        if self.verbose:
            print("    " + msg, flush=True)

    def alive(self):
        if self.pid:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                raise Fail("the daemon (pid %d) is gone" % self.pid)

    def proc_kb(self, field):
        if not self.pid:
            return 0
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def good_client(self):
        """A well-behaved connection to each export reads right (simple and structured)."""
        self.alive()
        for i, name in enumerate((self.ro, self.rw)):
            c = connect_export(self, name, structured=bool(i))
            check(bool(c.tflags & TF_READ_ONLY) == (name == self.ro), "read-only flag of %s" % name)
            c.in_sync(seed=i)
            c.verify(0, 1 << 20)
            if name == self.rw:  # writes and flushes get through too (the bytes it already holds)
                at = (2 << 20) + 512
                err, _ = c.cmd(CMD_WRITE, at, 8192, payload=self.expected(name)[at:at + 8192])
                check(err == 0, "good write: %s" % errno_name(err))
                err, _ = c.cmd(CMD_FLUSH)
                check(err == 0, "good flush: %s" % errno_name(err))
            c.request(CMD_DISC)
            c.expect_closed("NBD_CMD_DISC")

    def run_good_cmd(self):
        if not self.good_cmd:
            return
        r = subprocess.run(self.good_cmd, shell=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        check(r.returncode == 0, "good client command failed (%d): %s" %
              (r.returncode, r.stdout.decode(errors="replace")[-2000:]))

    def stats_connections(self):
        import json
        try:
            with open(self.stats) as f:
                return json.load(f)["connections"]
        except (OSError, ValueError, KeyError):
            return None


SCENARIOS = []


def scenario(name, doc, in_all=True):
    def reg(fn):
        SCENARIOS.append((name, doc, fn, in_all))
        return fn
    return reg


# ---- handshake ----

@scenario("client-flags", "unknown client flags: hang-up; flags 0 (no fixed newstyle, zeroes) still works")
def s_client_flags(ctx):
    for cf in (0xFFFFFFFF, 1 << 2, 1 << 31, FLAG_FIXED_NEWSTYLE | 1 << 16):
        c = Client(ctx)
        c.greeting()
        c.send(struct.pack(">I", cf))
        c.expect_closed("client flags 0x%x" % cf)
    for cf in (0, FLAG_FIXED_NEWSTYLE):  # legal: EXPORT_NAME must answer with the 124 zeroes
        c = Client(ctx)
        c.start(cf)
        c.export_name(ctx.ro)
        c.in_sync()
        c.close()


@scenario("transmission-flags", "the export flags a client is given match what it negotiated: "
          "read-only, and NBD_FLAG_SEND_DF only with structured replies")
def s_transmission_flags(ctx):
    for name in (ctx.ro, ctx.rw):
        for structured in (False, True):
            c = Client(ctx)
            c.start()
            if structured:
                c.structured_reply()
            c.go(name, opt=OPT_INFO)
            info_flags = c.tflags
            c.go(name)
            f = c.tflags
            check(f == info_flags, "INFO flags 0x%x, GO flags 0x%x" % (info_flags, f))
            check(f & TF_HAS_FLAGS, "no NBD_FLAG_HAS_FLAGS")
            check(bool(f & TF_READ_ONLY) == (name == ctx.ro), "read-only flag of %s: 0x%x" % (name, f))
            # proto.md: the server MUST leave NBD_FLAG_SEND_DF clear if structured
            # replies have not been negotiated
            check(bool(f & TF_SEND_DF) <= structured, "%s: NBD_FLAG_SEND_DF (flags 0x%x) without "
                  "structured replies" % (name, f))
            c.in_sync()
            c = Client(ctx)
            c.start()
            if structured:
                c.structured_reply()
            c.export_name(name)
            check(c.tflags == f, "EXPORT_NAME flags 0x%x, GO flags 0x%x" % (c.tflags, f))
            c.in_sync()


@scenario("vanish-handshake", "clients that vanish before, in and after the greeting and mid-option")
def s_vanish_handshake(ctx):
    tcp = ctx.addr.startswith("tcp:")
    c = Client(ctx)
    c.close(rst=tcp)                                    # before reading the greeting
    c = Client(ctx)
    c.greeting()
    c.close()                                           # no client flags
    c = Client(ctx)
    c.greeting()
    c.send(b"\0\0")                                     # half the client flags
    c.close(rst=tcp)
    c = Client(ctx)
    c.start()
    c.send(struct.pack(">Q", IHAVEOPT)[:5])             # half an option header
    c.close()
    c = Client(ctx)
    c.start()
    c.option(OPT_GO, Client.go_payload(ctx.ro.encode())[:5], length=100)  # 5 of 100 bytes
    c.close(rst=tcp)
    c = Client(ctx)
    c.start()
    c.option(OPT_LIST)
    c.close()                                           # before reading the replies
    c = Client(ctx)
    c.start()
    c.structured_reply()
    c.option(OPT_SET_META_CONTEXT, Client.meta_payload(ctx.rw.encode(), [b"base:allocation"])[:-3])
    c.close(rst=tcp)                                    # mid-payload


@scenario("option-magic", "an option header with a bad magic: hang-up")
def s_option_magic(ctx):
    for magic in (IHAVEOPT ^ 1, NBDMAGIC, 0, REPMAGIC):
        c = Client(ctx)
        c.start()
        try:
            c.option(OPT_GO, Client.go_payload(ctx.ro.encode()), magic=magic)
        except Closed:
            continue
        c.expect_closed("option magic 0x%x" % magic)
    c = Client(ctx)                                     # after a good option too
    c.start()
    c.structured_reply()
    c.send(struct.pack(">QII", IHAVEOPT + (1 << 40), OPT_GO, 0))
    c.expect_closed("bad magic after a good option")


@scenario("option-unknown", "unknown options: NBD_REP_ERR_UNSUP, the connection stays usable")
def s_option_unknown(ctx):
    c = Client(ctx)
    c.start()
    for opt in (0, 4, 11, 12, 13, 0x1234, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF):
        c.opt_expect(opt, b"0123456789", ERR_UNSUP, "unknown option %d" % opt)
        c.opt_expect(opt, b"", ERR_UNSUP, "empty unknown option %d" % opt)
    # no TLS here: STARTTLS must be refused, not accepted
    c.opt_expect(OPT_STARTTLS, b"", (ERR_UNSUP, ERR_POLICY), "NBD_OPT_STARTTLS")
    c.structured_reply()
    c.go(ctx.ro)
    c.in_sync()


@scenario("option-huge", "option lengths up to 2^32-1: ERR_TOO_BIG or a hang-up, promptly")
def s_option_huge(ctx):
    for opt in (OPT_GO, OPT_SET_META_CONTEXT, 0x4242, OPT_EXPORT_NAME):
        for length in (1 << 31, 0xFFFFFFFF, (1 << 20) + 1, 1 << 24):
            c = Client(ctx)
            c.start()
            c.option(opt, b"\0\0\0\4base\0\0", length=length)  # nowhere near that much follows
            try:
                t, _ = c.opt_reply(opt)
            except Closed:
                continue
            # a reply to an option whose payload it did not read leaves the stream out of sync:
            check(t == ERR_TOO_BIG, "option %d of %d bytes: %s" % (opt, length, rep_name(t)))
            c.expect_closed("after ERR_TOO_BIG for a %d byte option it did not read" % length)
    # longer than the server reads but sent whole: ERR_TOO_BIG (or a hang-up), never a crash
    c = Client(ctx)
    c.start()
    for opt in (OPT_GO, 0x4242):
        try:
            c.option(opt, b"x" * (100 << 10))
            t, _ = c.opt_reply(opt)
        except Closed:
            return
        check(t in (ERR_TOO_BIG, ERR_INVALID, ERR_UNSUP), "100 KiB option %d: %s" % (opt, rep_name(t)))
    c.go(ctx.ro)
    c.in_sync()


def lying_go(name):
    n = name.encode()
    L = struct.pack
    return [
        ("empty", b""),
        ("5 bytes", L(">I", 1) + b"b"),
        ("name length 2^32-1", L(">I", 0xFFFFFFFF) + n + L(">H", 0)),
        ("name length 2^32-6", L(">I", 0xFFFFFFFA) + n + L(">H", 0)),
        ("name length 1000", L(">I", 1000) + n + L(">H", 0)),
        ("name length one too long", L(">I", len(n) + 1) + n + L(">H", 0)),
        ("no request count", L(">I", len(n)) + n),
        ("half a request count", L(">I", len(n)) + n + b"\0"),
        ("5 requests, 1 sent", L(">I", len(n)) + n + L(">HH", 5, 3)),
        ("65535 requests, none sent", L(">I", len(n)) + n + L(">H", 0xFFFF)),
        ("trailing bytes", L(">I", len(n)) + n + L(">H", 0) + b"xyz"),
        ("odd request bytes", L(">I", len(n)) + n + L(">H", 1) + b"\0\3\0"),
        ("NUL in the name", L(">I", len(n) + 2) + n + b"\0x" + L(">H", 0)),
        ("name of 5000 bytes", L(">I", 5000) + b"a" * 5000 + L(">H", 0)),
    ]


def lying_meta(name):
    n = name.encode()
    L = struct.pack
    q = b"base:allocation"
    head = L(">I", len(n)) + n
    return [
        ("empty", b"", (ERR_INVALID,)),
        ("7 bytes", L(">I", 0) + b"abc", (ERR_INVALID,)),
        ("name length 2^32-1", L(">I", 0xFFFFFFFF) + n + L(">I", 0), (ERR_INVALID,)),
        ("name length 2^32-8", L(">I", 0xFFFFFFF8) + n + L(">I", 0), (ERR_INVALID,)),
        ("name length 1000", L(">I", 1000) + n + L(">I", 0), (ERR_INVALID,)),
        ("no query count", head, (ERR_INVALID,)),
        ("1 query, none sent", head + L(">I", 1), (ERR_INVALID,)),
        ("1 query, half its length", head + L(">I", 1) + b"\0\0", (ERR_INVALID,)),
        ("query length 2^32-1", head + L(">II", 1, 0xFFFFFFFF) + q, (ERR_INVALID,)),
        ("query length 2^32-4", head + L(">II", 1, 0xFFFFFFFC) + q, (ERR_INVALID,)),
        ("query length one too long", head + L(">II", 1, len(q) + 1) + q, (ERR_INVALID,)),
        ("2 queries, 1 sent", head + L(">II", 2, len(q)) + q, (ERR_INVALID,)),
        ("2^32-1 queries", head + L(">II", 0xFFFFFFFF, len(q)) + q, (ERR_INVALID, ERR_TOO_BIG)),
        ("1000 queries", head + L(">I", 1000) + (L(">I", 1) + b"x") * 1000, (ERR_INVALID, ERR_TOO_BIG)),
        ("trailing bytes", head + L(">II", 1, len(q)) + q + b"zz", (ERR_INVALID,)),
        ("NUL in a query", head + L(">II", 1, 5) + b"base\0", (ERR_INVALID,)),
        ("NUL in the name", L(">I", len(n) + 1) + n + b"\0" + L(">I", 0), (ERR_INVALID,)),
        ("query of 5000 bytes", head + L(">II", 1, 5000) + b"b" * 5000, (ERR_INVALID, ERR_TOO_BIG)),
    ]


@scenario("option-lying", "INFO/GO/LIST and SET_META_CONTEXT payloads whose inner lengths lie: "
          "an error reply, the connection stays usable")
def s_option_lying(ctx):
    c = Client(ctx)
    c.start()
    # meta contexts need structured replies first
    c.opt_expect(OPT_SET_META_CONTEXT, Client.meta_payload(ctx.ro.encode(), [b"base:allocation"]),
                 ERR_INVALID, "SET_META_CONTEXT before STRUCTURED_REPLY")
    for opt in (OPT_INFO, OPT_GO):
        for what, p in lying_go(ctx.ro):
            c.opt_expect(opt, p, ERR_INVALID, "%s: %s" % ("INFO" if opt == OPT_INFO else "GO", what))
    for opt, what in ((OPT_LIST, "LIST"), (OPT_STRUCTURED_REPLY, "STRUCTURED_REPLY"),
                      (OPT_ABORT, "ABORT")):
        c.opt_expect(opt, b"\0\0\0\0", ERR_INVALID, "%s with a payload" % what)
    c.structured_reply()
    for opt in (OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT):
        for what, p, want in lying_meta(ctx.ro):
            c.opt_expect(opt, p, want, "%s: %s" % ("LIST_META" if opt == OPT_LIST_META_CONTEXT
                                                   else "SET_META", what))
    # still usable: a real negotiation, then block status works
    ctxs = c.set_meta(ctx.ro, ["base:allocation"])
    check(list(ctxs) == ["base:allocation"], "contexts %r" % ctxs)
    c.go(ctx.ro, infos=(3,))
    c.in_sync()
    err, st = c.cmd(CMD_BLOCK_STATUS, 0, 1 << 20)
    check(err == 0 and list(st) == [ctxs["base:allocation"]], "block status after negotiation")


@scenario("option-names", "GO/INFO/EXPORT_NAME for missing or odd export names: ERR_UNKNOWN, "
          "EXPORT_NAME hangs up")
def s_option_names(ctx):
    c = Client(ctx)
    c.start()
    c.structured_reply()
    odd = ("../store", ctx.ro + "/../" + ctx.ro, "/" + ctx.ro, ".", "a" * 300, "b" * 4096,
           ctx.ro + "\n", "%s%%n%%s" % ctx.ro)
    for name in ("nope", "") + odd:
        want = ERR_UNKNOWN if name in ("nope", "") else (ERR_UNKNOWN, ERR_INVALID, ERR_POLICY)
        c.opt_expect(OPT_GO, Client.go_payload(name.encode()), want, "GO %r" % name[:40])
        c.opt_expect(OPT_INFO, Client.go_payload(name.encode(), (3,)), want, "INFO %r" % name[:40])
        c.opt_expect(OPT_LIST_META_CONTEXT, Client.meta_payload(name.encode(), []), want,
                     "LIST_META_CONTEXT %r" % name[:40])
    reps = c.opt_expect(OPT_LIST, b"", REP_ACK, "LIST")
    names = [d[4:4 + struct.unpack(">I", d[:4])[0]].decode() for t, d in reps[:-1]]
    check(ctx.ro in names and ctx.rw in names, "LIST: %r" % names)
    c.go(ctx.ro, opt=OPT_INFO)  # INFO does not pick the export
    c.go(ctx.rw)
    c.in_sync()
    for name in ("nope", "", "a" * 300, "x" * 5000, ctx.ro + "\0"):
        c = Client(ctx)
        c.start()
        c.option(OPT_EXPORT_NAME, name.encode())
        c.expect_closed("EXPORT_NAME %r" % name[:40])


@scenario("option-flood", "thousands of options in one handshake: answered, or a hang-up, no hang")
def s_option_flood(ctx):
    c = Client(ctx)
    c.start()
    n = 0
    try:
        for n in range(2000):
            c.opt_expect(0x4242 + n, b"", ERR_UNSUP, "unknown option #%d" % n)
    except Fail as e:
        if "hung up" not in str(e):
            raise
        check(n >= 64, "hung up after only %d options" % n)
        ctx.log("hung up after %d options" % n)
        return
    c.go(ctx.ro)
    c.in_sync()


@scenario("abort", "NBD_OPT_ABORT: acknowledged (optionally), then the server closes")
def s_abort(ctx):
    c = Client(ctx)
    c.start()
    c.option(OPT_ABORT)
    try:
        t, _ = c.opt_reply(OPT_ABORT)
        check(t == REP_ACK, "ABORT reply %s" % rep_name(t))
    except Closed:
        pass
    c.expect_closed("after NBD_OPT_ABORT")


# ---- transmission ----

@scenario("request-magic", "a request with a bad magic: hang-up")
def s_request_magic(ctx):
    for structured in (False, True):
        for magic in (REQMAGIC ^ 1, SIMPLEMAGIC, 0, 0xFFFFFFFF):
            c = connect_export(ctx, ctx.ro, structured)
            c.in_sync()
            try:
                c.request(CMD_READ, 0, 4096, magic=magic)
            except Closed:
                continue
            c.expect_closed("request magic 0x%x" % magic)


@scenario("unknown-command", "unknown request types: EINVAL, the stream stays in sync")
def s_unknown_command(ctx):
    for structured in (False, True):
        for export in (ctx.ro, ctx.rw):
            c = connect_export(ctx, export, structured)
            for t in (8, 9, 0x7F, 0x100, 0xFFFF):
                c.expect_err(EINVAL, "command %d" % t, t, 0, 4096)
                c.expect_err(EINVAL, "command %d, length 2^32-1" % t, t, 0, 0xFFFFFFFF)
            c.in_sync(seed=structured)


@scenario("unknown-flags", "request flags that are unknown or not for that command: EINVAL, "
          "a refused write's payload is consumed")
def s_unknown_flags(ctx):
    for structured in (False, True):
        c = connect_export(ctx, ctx.rw, structured)
        for f in (1 << 15, 1 << 8, 1 << 4, F_REQ_ONE, F_NO_HOLE):
            c.expect_err(EINVAL, "READ flags 0x%x" % f, CMD_READ, 0, 4096, f)
        if not structured:  # DF without structured replies (NBD_FLAG_SEND_DF is not set)
            c.expect_err(EINVAL, "READ with DF, simple replies", CMD_READ, 0, 4096, F_DF)
        else:
            c.verify(4096, 65536, F_DF)
        for f in (1 << 15, 1 << 4, F_DF, F_REQ_ONE, F_NO_HOLE):
            c.expect_err(EINVAL, "WRITE flags 0x%x" % f, CMD_WRITE, 8192, 4096, f,
                         payload=b"\xee" * 4096)  # the payload must be read and dropped
            c.in_sync(seed=f)
        for cmd, name in ((CMD_FLUSH, "FLUSH"), (CMD_TRIM, "TRIM"), (CMD_CACHE, "CACHE"),
                          (CMD_WRITE_ZEROES, "WRITE_ZEROES")):
            c.expect_err(EINVAL, "%s flags 0x8000" % name, cmd, 0, 4096 if cmd != CMD_FLUSH else 0,
                         1 << 15)
        c.in_sync(seed=structured)
        c = connect_export(ctx, ctx.ro, structured)
        c.expect_err((EINVAL, EPERM), "WRITE to read-only, flags 0x8000", CMD_WRITE, 0, 4096,
                     1 << 15, payload=b"\xee" * 4096)
        c.in_sync()


@scenario("out-of-range", "offset/length past the end or overflowing 2^64: EINVAL, ENOSPC for writes")
def s_out_of_range(ctx):
    S = ctx.size
    M = 1 << 64
    spans = [(S, 1), (S - 1, 2), (S - 4096, 8192), (S + 1, 0), (M - 1, 1), (M - 1, 2),
             (M - 4096, 8192), (M - 512, 0xFFFFFFFF), (1 << 63, 4096), (S, 0xFFFFFFFF - 1)]
    for structured in (False, True):
        c = connect_export(ctx, ctx.ro, structured)
        for off, n in spans:
            c.expect_err((EINVAL, EOVERFLOW) if n > REQUEST_MAX else EINVAL,
                         "READ [%d,+%d)" % (off, n), CMD_READ, off, n)
            c.expect_err(EINVAL, "CACHE [%d,+%d)" % (off, n), CMD_CACHE, off, n)
        c.in_sync()
        c = connect_export(ctx, ctx.rw, structured, meta=["base:allocation"] if structured else None)
        for off, n in spans:
            if n <= 64 << 10:
                c.expect_err(ENOSPC, "WRITE [%d,+%d)" % (off, n), CMD_WRITE, off, n,
                             payload=b"\xee" * n)
            c.expect_err(ENOSPC, "WRITE_ZEROES [%d,+%d)" % (off, n), CMD_WRITE_ZEROES, off, n)
            c.expect_err((EINVAL, ENOSPC), "TRIM [%d,+%d)" % (off, n), CMD_TRIM, off, n)
            if structured:
                c.expect_err(EINVAL, "BLOCK_STATUS [%d,+%d)" % (off, n), CMD_BLOCK_STATUS, off, n)
            c.in_sync(seed=off)
        # the edges themselves are fine
        c.verify(S - 1, 1)
        err, _ = c.cmd(CMD_READ, S, 0)
        check(err in (0, EINVAL), "zero-length READ at the end: %s" % errno_name(err))
        c.in_sync()


@scenario("huge-read", "reads of up to 2^32-1 bytes: EOVERFLOW or EINVAL, no giant allocation")
def s_huge_read(ctx):
    hwm0, peak0 = ctx.proc_kb("VmHWM"), ctx.proc_kb("VmPeak")
    for structured in (False, True):
        c = connect_export(ctx, ctx.ro, structured)
        for n in (0xFFFFFFFF, 1 << 31, REQUEST_MAX + 1, 1 << 30):
            for f in (0, F_DF) if structured else (0,):
                c.expect_err((EOVERFLOW, EINVAL), "READ of %d bytes, flags %d" % (n, f), CMD_READ, 0, n, f)
        c.in_sync()
        c.verify(0, ctx.size)  # the whole export at once is fine
    hwm, peak = ctx.proc_kb("VmHWM"), ctx.proc_kb("VmPeak")
    ctx.log("VmHWM %d -> %d kB, VmPeak %d -> %d kB" % (hwm0, hwm, peak0, peak))
    check(hwm - hwm0 < 128 << 10, "the daemon's peak RSS grew by %d MiB" % ((hwm - hwm0) >> 10))


@scenario("huge-write", "writes longer than the server will ever read: hang-up without reading them")
def s_huge_write(ctx):
    for export in (ctx.rw, ctx.ro):
        for n in (0xFFFFFFFF, 1 << 31, REQUEST_MAX + 1):
            c = connect_export(ctx, export)
            c.request(CMD_WRITE, 0, n, payload=b"")  # just the header
            c.expect_closed("WRITE of %d bytes to %s" % (n, export))
        c = connect_export(ctx, export, structured=True)
        try:
            c.request(CMD_WRITE, 1 << 20, REQUEST_MAX + 1, payload=b"\xee" * (1 << 20))
        except Closed:
            continue
        c.expect_closed("WRITE of %d bytes with 1 MiB of it sent" % (REQUEST_MAX + 1))


@scenario("write-readonly", "WRITE/TRIM/WRITE_ZEROES to a read-only export: EPERM, the payload consumed")
def s_write_readonly(ctx):
    for structured in (False, True):
        c = connect_export(ctx, ctx.ro, structured)
        check(c.tflags & TF_READ_ONLY, "%s is not read-only" % ctx.ro)
        for off, n, f in ((0, 4096, 0), (4096, 1 << 20, 0), (12345, 1, F_FUA), (0, 0, 0),
                          (ctx.size - 512, 512, 0)):
            c.expect_err(EPERM, "WRITE [%d,+%d) to read-only" % (off, n), CMD_WRITE, off, n, f,
                         payload=bytes([0xEE]) * n)
            c.in_sync(seed=n)
        c.expect_err(EPERM, "TRIM to read-only", CMD_TRIM, 0, 65536)
        c.expect_err(EPERM, "TRIM+FUA to read-only", CMD_TRIM, 0, 65536, F_FUA)
        c.expect_err(EPERM, "WRITE_ZEROES to read-only", CMD_WRITE_ZEROES, 0, 65536)
        c.expect_err(EPERM, "WRITE_ZEROES+NO_HOLE to read-only", CMD_WRITE_ZEROES, 0, 65536, F_NO_HOLE)
        err, _ = c.cmd(CMD_FLUSH)
        check(err == 0, "FLUSH of a read-only export: %s" % errno_name(err))
        c.in_sync()


@scenario("block-status-no-meta", "BLOCK_STATUS without a negotiated meta context: EINVAL")
def s_block_status(ctx):
    c = connect_export(ctx, ctx.ro)
    c.expect_err(EINVAL, "BLOCK_STATUS, simple replies", CMD_BLOCK_STATUS, 0, 4096)
    c.in_sync()
    c = connect_export(ctx, ctx.ro, structured=True)
    c.expect_err(EINVAL, "BLOCK_STATUS, no context", CMD_BLOCK_STATUS, 0, 4096)
    c.expect_err(EINVAL, "BLOCK_STATUS+REQ_ONE, no context", CMD_BLOCK_STATUS, 0, 4096, F_REQ_ONE)
    c.in_sync()
    # contexts negotiated for another export do not count
    c = Client(ctx)
    c.start()
    c.structured_reply()
    c.set_meta(ctx.rw, ["base:allocation"])
    c.go(ctx.ro)
    c.expect_err(EINVAL, "BLOCK_STATUS, context for another export", CMD_BLOCK_STATUS, 0, 4096)
    c.in_sync()
    # a query that selects nothing negotiates nothing
    c = Client(ctx)
    c.start()
    c.structured_reply()
    ctxs = c.set_meta(ctx.ro, ["nope:x", "base:", "base:allocation2"])
    check(not ctxs, "SET_META_CONTEXT selected %r" % ctxs)
    c.go(ctx.ro)
    c.expect_err(EINVAL, "BLOCK_STATUS, no context selected", CMD_BLOCK_STATUS, 0, 4096)
    c.in_sync()
    # control: with a context it works, REQ_ONE gives one descriptor
    c = connect_export(ctx, ctx.ro, meta=["base:allocation", "stellar:shared"])
    err, st = c.cmd(CMD_BLOCK_STATUS, 0, ctx.size)
    check(err == 0 and len(st) == 2, "BLOCK_STATUS with two contexts: %s %r" % (errno_name(err), st))
    err, st = c.cmd(CMD_BLOCK_STATUS, 4095, 3 << 20, F_REQ_ONE)
    check(err == 0 and all(len(d) == 1 for d in st.values()), "REQ_ONE: %r" % st)
    c.in_sync()
    # every descriptor has a non-zero length (proto.md), so a zero-length query is an error
    c.expect_err(EINVAL, "BLOCK_STATUS of 0 bytes", CMD_BLOCK_STATUS, 4096, 0)
    c.in_sync()


@scenario("vanish-request", "clients that vanish mid-request: half a header, half a write payload, "
          "before reading a reply")
def s_vanish_request(ctx):
    tcp = ctx.addr.startswith("tcp:")
    W = 3 << 20  # a write here must never land
    for structured in (False, True):
        c = connect_export(ctx, ctx.rw, structured)
        c.send(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_READ, 1, 0, 4096)[:14])
        c.close(rst=tcp)
        c = connect_export(ctx, ctx.rw, structured)
        c.send(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_WRITE, 1, W, 65536) + b"\xee" * 30000)
        c.close(rst=tcp)
        c = connect_export(ctx, ctx.rw, structured)
        c.send(struct.pack(">IHHQQI", REQMAGIC, F_FUA, CMD_WRITE, 1, W, 4096) + b"\xee" * 4095)
        c.close()
        c = connect_export(ctx, ctx.rw, structured)
        c.request(CMD_READ, 0, ctx.size)            # 16 MiB the server cannot deliver
        c.close(rst=tcp)
        c = connect_export(ctx, ctx.ro, structured)
        for i in range(64):                          # a pipeline, then gone
            c.request(CMD_READ, i * 65536, 65536)
        c.close(rst=tcp)
    time.sleep(0.2)
    c = connect_export(ctx, ctx.rw)
    c.verify(W - 4096, 65536 + 8192)                 # nothing of the torn writes
    c.in_sync()


def slow_send(c, data, delay):
    for i in range(len(data)):
        c.send(data[i:i + 1])
        time.sleep(delay)


@scenario("slow-client", "a client that sends one byte per 50 ms (handshake, requests, a payload) "
          "while good clients are served")
def s_slow_client(ctx):
    result = {}

    def slow():
        try:
            c = Client(ctx, timeout=30)
            c.greeting()
            slow_send(c, struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES), 0.05)
            c.no_zeroes = True
            p = Client.go_payload(ctx.ro.encode())
            slow_send(c, struct.pack(">QII", IHAVEOPT, OPT_GO, len(p)) + p, 0.05)
            t, reps = c.opt_final(OPT_GO)
            check(t == REP_ACK, "slow GO: %s" % rep_name(t))
            c.size, c.tflags = struct.unpack(">QH", reps[0][1][2:])
            c.export = ctx.ro
            slow_send(c, struct.pack(">IHHQQI", REQMAGIC, 0, CMD_READ, 7, 8192, 4096), 0.05)
            err, data = c.reply(7, CMD_READ, 8192, 4096)
            check(err == 0 and data == ctx.expected(ctx.ro)[8192:12288], "slow read")
            # a refused write whose payload trickles in (64 bytes per 50 ms)
            hdr = struct.pack(">IHHQQI", REQMAGIC, 0, CMD_WRITE, 8, 0, 2048)
            c.send(hdr)
            for i in range(0, 2048, 64):
                c.send(b"\xee" * 64)
                time.sleep(0.05)
            err, _ = c.reply(8, CMD_WRITE, 0, 2048)
            check(err == EPERM, "slow write to read-only: %s" % errno_name(err))
            c.in_sync()
            result["ok"] = True
        except Exception as e:  # reported by the main thread
            result["err"] = e

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.3)
    while t.is_alive():
        ctx.good_client()
        ctx.run_good_cmd()
        t.join(0.2)
    if "err" in result:
        raise Fail("slow client: %s" % result["err"])
    check(result.get("ok"), "slow client did not finish")


def wait_stats(ctx, pred, what, timeout=4.0):
    if not ctx.stats:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        n = ctx.stats_connections()
        if n is not None and pred(n):
            return
        time.sleep(0.1)
    raise Fail("stats: %s (connections %r)" % (what, ctx.stats_connections()))


@scenario("idle-clients", "50 clients that connect and do nothing (and 10 idle after GO) "
          "while good clients are served")
def s_idle_clients(ctx):
    idle = [Client(ctx) for _ in range(50)]
    after_go = [connect_export(ctx, ctx.rw if i % 2 else ctx.ro, structured=bool(i % 3)) for i in range(10)]
    wait_stats(ctx, lambda n: n >= 60, "60 clients connected")
    ctx.good_client()
    ctx.run_good_cmd()
    for c in after_go:          # still served after all that
        c.in_sync()
    for c in idle:
        c.close()
    for c in after_go:
        c.close()
    wait_stats(ctx, lambda n: n == 0, "every idle client gone")


def fill_pipeline(c, n=4000, length=65536, flags=0):
    """Send reads without reading replies until the server stops taking them."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sock.settimeout(0.5)
    sent = 0
    try:
        for i in range(n):
            c.request(CMD_READ, (i * length) % (c.size - length), length, flags)
            sent += 1
    except (Fail, socket.timeout, BlockingIOError):
        pass  # the server stopped reading requests: its replies fill our buffers
    return sent


@scenario("no-reader", "clients that pipeline reads and never read the replies (their server "
          "threads block in send) while good clients read, write and flush both exports")
def s_no_reader(ctx):
    cs = []
    for export in (ctx.ro, ctx.rw):
        for structured, flags in ((False, 0), (True, 0), (True, F_DF)):
            c = connect_export(ctx, export, structured)
            n = fill_pipeline(c, flags=flags)
            ctx.log("%s, structured %s, flags %d: %d requests sent before the server stopped "
                    "reading" % (export, structured, flags, n))
            cs.append(c)
            ctx.good_client()
    ctx.run_good_cmd()
    for c in cs:
        c.close(rst=True)


@scenario("disconnect", "NBD_CMD_DISC: requests before it answered, then the server closes; "
          "junk after it is ignored; a half-close instead of DISC")
def s_disconnect(ctx):
    for structured in (False, True):
        c = connect_export(ctx, ctx.rw, structured)
        ck = c.request(CMD_READ, 0, 4096)
        c.send(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_DISC, 99, 0, 0))
        err, data = c.reply(ck, CMD_READ, 0, 4096)
        check(err == 0 and data == ctx.expected(ctx.rw)[:4096], "the read before NBD_CMD_DISC")
        c.expect_closed("after NBD_CMD_DISC")
        c = connect_export(ctx, ctx.ro, structured)
        c.send(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_DISC, 99, 0, 0) + b"junk after DISC" * 100)
        c.expect_closed("after NBD_CMD_DISC and junk")
        # a half-close instead of DISC: what was asked is still answered, then the server closes
        c = connect_export(ctx, ctx.ro, structured)
        cks = [c.request(CMD_READ, i * 65536, 65536) for i in range(8)]
        c.sock.shutdown(socket.SHUT_WR)
        for i, ck in enumerate(cks):
            err, data = c.reply(ck, CMD_READ, i * 65536, 65536)
            check(err == 0 and data == ctx.expected(ctx.ro)[i * 65536:(i + 1) * 65536],
                  "a read before the half-close")
        c.expect_closed("after the client's half-close")


@scenario("garbage-storm", "8 clients for 2 s: valid handshakes, then random options and requests "
          "(read-only export only), while good clients are served")
def s_garbage_storm(ctx):
    stop = time.monotonic() + 2.0
    errors = []

    def storm(seed):
        rnd = random.Random(seed)
        while time.monotonic() < stop:
            try:
                c = Client(ctx, timeout=2)
                c.start()
                for _ in range(rnd.randrange(0, 4)):
                    opt = rnd.choice((OPT_INFO, OPT_GO, OPT_SET_META_CONTEXT, OPT_LIST_META_CONTEXT,
                                      OPT_STRUCTURED_REPLY, OPT_LIST, 99))
                    p = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))
                    c.option(opt, p)
                    t, _ = c.opt_final(opt)
                    if t == REP_ACK and opt == OPT_STRUCTURED_REPLY:
                        c.structured = True
                    if t == REP_ACK and opt == OPT_GO:
                        return errors.append("GO with random bytes %r succeeded" % p)
                if rnd.random() < 0.3:
                    c.send(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 200))))
                    c.close(rst=True)
                    continue
                if not c.structured and rnd.random() < 0.5:
                    c.structured_reply()
                c.go(ctx.ro)
                for _ in range(rnd.randrange(1, 30)):
                    cmd = rnd.choice((0, 0, 1, 3, 4, 5, 6, 7, 9))
                    off = rnd.choice((0, rnd.randrange(ctx.size), ctx.size, 1 << 63, (1 << 64) - 1))
                    n = rnd.choice((0, 1, 4096, rnd.randrange(1 << 20), 0xFFFFFFFF))
                    fl = rnd.choice((0, 0, 1, 2, 4, 8, 0x8000))
                    if cmd == CMD_WRITE and n > 1 << 20:
                        n = 4096
                    ck = c.request(cmd, off, n, fl, bytes(n) if cmd == CMD_WRITE else None)
                    err, data = c.reply(ck, cmd, off, n)
                    if cmd in (CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES) and err == 0:
                        return errors.append("a %d to the read-only export succeeded" % cmd)
                    if cmd == CMD_READ and err == 0 and data != ctx.expected(ctx.ro)[off:off + n]:
                        return errors.append("a read [%d,+%d) returned wrong data" % (off, n))
                c.close(rst=rnd.random() < 0.5)
            except (Closed, OSError):
                pass
            except Fail as e:
                return errors.append(str(e))

    ts = [threading.Thread(target=storm, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    ctx.good_client()
    for t in ts:
        t.join()
    check(not errors, "; ".join(errors))


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@scenario("fd-exhaust", "more idle clients than the daemon has file descriptors (run it under "
          "prlimit --nofile=64): it must not spin, and serves again once they are gone", in_all=False)
def s_fd_exhaust(ctx):
    check(ctx.pid, "fd-exhaust needs --pid")
    cs = [Client(ctx) for _ in range(100)]
    time.sleep(0.5)
    t0, c0 = time.monotonic(), cpu_seconds(ctx.pid)
    time.sleep(1.5)
    busy = (cpu_seconds(ctx.pid) - c0) / (time.monotonic() - t0)
    ctx.log("daemon CPU while out of descriptors: %.0f%%" % (100 * busy))
    for c in cs:
        c.close()
    check(busy < 0.3, "the daemon spins at %.0f%% CPU while it is out of file descriptors"
          % (100 * busy))


@scenario("hold", "connect clients in every state and wait for the server to close them all "
          "(run in the background, then stop the daemon)", in_all=False)
def s_hold(ctx):
    cs = [Client(ctx, timeout=None) for _ in range(8)]          # greeting unread
    for _ in range(4):                                           # mid-handshake
        c = Client(ctx, timeout=None)
        c.start()
        cs.append(c)
    for i in range(8):                                           # idle in transmission
        c = connect_export(ctx, ctx.rw if i % 2 else ctx.ro, structured=bool(i % 3))
        c.sock.settimeout(None)
        cs.append(c)
    c = connect_export(ctx, ctx.rw)                              # half a request
    c.send(struct.pack(">IHHQQI", REQMAGIC, 0, CMD_WRITE, 1, 0, 65536) + b"\xee" * 1000)
    cs.append(c)
    for export in (ctx.ro, ctx.rw):                              # blocked server threads
        c = connect_export(ctx, export, structured=True)
        fill_pipeline(c)
        cs.append(c)
    print("holding %d clients" % len(cs), flush=True)
    for c in cs:
        c.expect_closed("held client", timeout=40, allow_data=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", help="unix:PATH or tcp:HOST:PORT")
    ap.add_argument("--ro", default="base", help="a read-only export")
    ap.add_argument("--ro-image", help="the bytes the read-only export holds")
    ap.add_argument("--rw", default="vm1", help="a writable export")
    ap.add_argument("--rw-image", help="the bytes the writable export holds")
    ap.add_argument("--pid", type=int, help="the daemon's pid (liveness, memory checks)")
    ap.add_argument("--stats", help="the daemon's --stats file (connection counts)")
    ap.add_argument("--good-cmd", help="a shell command (real NBD clients) that must pass "
                    "after every scenario")
    ap.add_argument("--list", action="store_true", help="list the scenarios")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("scenarios", nargs="*")
    a = ap.parse_args()
    if a.list:
        for name, doc, _, in_all in SCENARIOS:
            print("%-22s %s%s" % (name, doc, "" if in_all else " [not in all]"))
        return 0
    if not (a.addr and a.ro_image and a.rw_image and a.scenarios):
        ap.error("--addr, --ro-image, --rw-image and scenarios are needed")
    known = {s[0]: s for s in SCENARIOS}
    names = []
    for n in a.scenarios:
        if n == "all":
            names += [s[0] for s in SCENARIOS if s[3]]
        elif n in known:
            names.append(n)
        else:
            ap.error("unknown scenario %r (see --list)" % n)
    ctx = Ctx(a)
    check(len(ctx.images[a.rw]) == ctx.size, "the images differ in size")
    failed = []
    for name in names:
        t0 = time.monotonic()
        try:
            known[name][2](ctx)
            if name != "hold":
                ctx.good_client()
                ctx.run_good_cmd()
            print("ok   %-22s %.1fs" % (name, time.monotonic() - t0), flush=True)
        except (Fail, Closed, OSError) as e:
            print("FAIL %-22s %s: %s" % (name, type(e).__name__, e), flush=True)
            if a.verbose:
                import traceback
                traceback.print_exc()
            failed.append(name)
            try:
                ctx.alive()
            except Fail as e2:
                print("FAIL %s" % e2, flush=True)
                break
    if failed:
        print("%d of %d scenarios failed: %s" % (len(failed), len(names), " ".join(failed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
