#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A hostile HTTP/1.1 server for `stellar pull` tests (python3 stdlib only).

    bad-http.py --root DIR --mode MODE [--match REGEX] [--listen 127.0.0.1:0]
                [--port-file F] [--drip-secs S]

It serves the files under DIR (a published tree: refs/, manifests/, blobs/)
with keep-alive, one thread per connection, GET and HEAD, single byte ranges,
and misbehaves on the requests whose path matches --match (by default
`/blobs/`, or `/manifests/` for `huge` and `gzipbomb`):

  ok          no misbehaviour
  flaky500    the first request for each matching path answers 500, the
              next ones the real bytes
  always500   every matching request answers 500
  404blobs    every matching request answers 404
  reset       the first request for each matching path gets its headers and
              half its body, then a TCP reset; the next ones are served
  stall       headers and half the body, then nothing, ever (the connection
              stays open until the server stops)
  wrongbytes  the bytes of another file of the same directory (the next one
              in name order; a file alone there gets its first byte flipped)
  truncate    a true Content-Length, half the body, then a clean close; every
              time
  huge        a 1 GiB body made up as it is sent: "{" then spaces
  gzipbomb    "Content-Encoding: gzip", no length, and a gzip stream of "{"
              then 2 GiB of spaces (about 2 MB), compressed as it is sent
  drip        a true Content-Length, then the body one byte every
              --drip-secs seconds (default 1): never a stall, never done

Every request is logged on stderr as one line,
    req METHOD PATH STATUS BYTES_SENT ACTION
(ACTION: served, 500, 404, reset, stall, wrong, truncated, huge, gzipbomb, drip,
missing; a drip is logged when it ends),
and on SIGTERM/SIGINT a summary: connections, requests, and a count per
action. The port it bound goes to --port-file (written whole, then renamed).
"""
import argparse
import collections
import email.utils
import os
import re
import signal
import socket
import struct
import sys
import threading
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ["ok", "flaky500", "always500", "404blobs", "reset", "stall",
         "wrongbytes", "truncate", "huge", "gzipbomb", "drip"]
HUGE = 1 << 30

lock = threading.Lock()
counts = collections.Counter()
seen = set()       # matching paths requested once already (flaky500, reset)
stopping = threading.Event()


def first_time(path):
    with lock:
        if path in seen:
            return False
        seen.add(path)
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "bad-http"

    def setup(self):
        super().setup()
        with lock:
            counts["connections"] += 1

    def log_message(self, fmt, *args):  # the request log is ours (note())
        pass

    def note(self, status, sent, action):
        with lock:  # one write per line, so that threads do not mix them
            counts["requests"] += 1
            counts[action] += 1
            sys.stderr.write(f"req {self.command} {self.path} {status} {sent} {action}\n")
            sys.stderr.flush()

    def do_HEAD(self):
        self.do_GET()

    def head(self, status, length, extra=()):
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        json = self.path.split("?", 1)[0].endswith(".json")
        self.send_header("Content-Type", "application/json" if json else "application/octet-stream")
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()

    def short(self, status, action):
        """An error answer with a small body; the connection stays usable."""
        body = f"{status} from bad-http ({action})\n".encode()
        self.head(status, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)
        self.note(status, len(body), action)

    def do_GET(self):
        args = self.server.args
        url = urllib.parse.unquote(self.path.split("?", 1)[0])
        rel = os.path.normpath(url.lstrip("/"))
        if rel.startswith("..") or os.path.isabs(rel):
            return self.short(400, "bad-path")
        path = os.path.join(args.root, rel)
        hit = args.match.search(url) is not None
        mode = args.mode if hit else "ok"

        if mode == "huge":
            return self.huge()
        if mode == "gzipbomb":
            return self.gzipbomb()
        if mode == "always500" or (mode == "flaky500" and first_time(url)):
            return self.short(500, "500")
        if mode == "404blobs":
            return self.short(404, "404")
        if not os.path.isfile(path):
            return self.short(404, "missing")
        if mode == "wrongbytes":
            path = other_file(path)
        with open(path, "rb") as f:
            data = f.read()
        if mode == "wrongbytes" and path == os.path.join(args.root, rel):
            data = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"x"

        status, extra = 200, [("Last-Modified", email.utils.formatdate(os.path.getmtime(path), usegmt=True)),
                              ("Accept-Ranges", "bytes")]
        rng = parse_range(self.headers.get("Range"), len(data))
        if rng == "bad":
            self.head(416, 0, [("Content-Range", f"bytes */{len(data)}")])
            return self.note(416, 0, "bad-range")
        if rng:
            a, b = rng
            extra.append(("Content-Range", f"bytes {a}-{b - 1}/{len(data)}"))
            data, status = data[a:b], 206
        self.head(status, len(data), extra)
        if self.command == "HEAD":
            return self.note(status, 0, "served")

        half = len(data) // 2
        if mode == "reset" and first_time(url):
            self.wfile.write(data[:half])
            self.wfile.flush()
            # SO_LINGER 0: close() sends a RST instead of a FIN, and
            # Server.shutdown_request skips the shutdown() that sends a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with lock:
                self.server.to_reset.add(self.connection)
            self.close_connection = True
            return self.note(status, half, "reset")
        if mode == "stall":
            self.wfile.write(data[:half])
            self.wfile.flush()
            self.note(status, half, "stall")
            stopping.wait()
            self.close_connection = True
            return
        if mode == "drip":
            sent = 0
            try:
                while sent < len(data) and not stopping.wait(self.server.args.drip_secs):
                    self.wfile.write(data[sent:sent + 1])
                    self.wfile.flush()
                    sent += 1
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return self.note(status, sent, "drip")
        if mode == "truncate":
            self.wfile.write(data[:half])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_WR)
            return self.note(status, half, "truncated")
        self.wfile.write(data)
        self.note(status, len(data), "wrong" if mode == "wrongbytes" else "served")

    def huge(self):
        """1 GiB of near-nothing, made up as it goes: a client must give up
        long before the end."""
        self.head(200, HUGE)
        sent = 0
        if self.command != "HEAD":
            block = b" " * (1 << 16)
            try:
                self.wfile.write(b"{")
                sent = 1
                while sent < HUGE:
                    n = min(len(block), HUGE - sent)
                    self.wfile.write(block[:n])
                    sent += n
            except OSError:
                self.close_connection = True
        self.note(200, sent, "huge")


    def gzipbomb(self):
        """2 MB of gzip that inflate to 2 GiB (deflate's limit is about
        1000:1), made as it goes: a client must give up after a few MB."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Connection", "close")  # the body ends with the connection
        self.end_headers()
        self.close_connection = True
        sent = 0
        if self.command != "HEAD":
            z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip wrapper
            block = b" " * (1 << 20)

            def pieces():
                yield z.compress(b"{")
                for _ in range(2048):
                    yield z.compress(block)
                yield z.flush()
            try:
                for piece in pieces():
                    self.wfile.write(piece)
                    sent += len(piece)
            except OSError:
                pass
        self.note(200, sent, "gzipbomb")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # stalled handlers must not hold up the exit
    request_queue_size = 128

    def __init__(self, addr, args):
        super().__init__(addr, Handler)
        self.args = args
        self.to_reset = set()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError)):  # the client left
            with lock:
                counts["client-gone"] += 1
                sys.stderr.write(f"bad-http: {client_address[0]}:{client_address[1]} went away\n")
            return
        super().handle_error(request, client_address)

    def shutdown_request(self, request):
        with lock:
            rst = request in self.to_reset
            self.to_reset.discard(request)
        if rst:
            self.close_request(request)
        else:
            super().shutdown_request(request)


def other_file(path):
    """The file after `path` in its directory, in name order (wrapping)."""
    d = os.path.dirname(path)
    names = sorted(n for n in os.listdir(d) if os.path.isfile(os.path.join(d, n)))
    i = names.index(os.path.basename(path))
    return os.path.join(d, names[(i + 1) % len(names)])


def parse_range(h, size):
    """(start, end) for one `bytes=A-B`, `bytes=A-` or `bytes=-N` range, None
    for no (or an unsupported) Range header, "bad" when unsatisfiable."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", h or "")
    if not m or m.group(1) == m.group(2) == "":
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        return (max(size - n, 0), size) if n else "bad"
    a = int(m.group(1))
    b = min(int(m.group(2)) + 1, size) if m.group(2) else size
    return (a, b) if a < size and a < b else "bad"


def main():
    ap = argparse.ArgumentParser(description="a misbehaving static HTTP/1.1 server")
    ap.add_argument("--root", required=True, help="the directory to serve")
    ap.add_argument("--mode", choices=MODES, default="ok")
    ap.add_argument("--match", help="regex on the request path the mode applies to")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    ap.add_argument("--port-file", help="write the bound port here")
    ap.add_argument("--drip-secs", type=float, default=1.0, help="drip: seconds between bytes")
    args = ap.parse_args()
    args.root = os.path.realpath(args.root)
    args.match = re.compile(args.match or ("/manifests/" if args.mode in ("huge", "gzipbomb") else "/blobs/"))

    host, _, port = args.listen.rpartition(":")
    srv = Server((host or "127.0.0.1", int(port)), args)
    port = srv.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"bad-http: 127.0.0.1:{port} serving {args.root}, mode {args.mode} on {args.match.pattern}",
          file=sys.stderr, flush=True)

    def stop(*_):
        stopping.set()
        threading.Thread(target=srv.shutdown).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv.serve_forever()
    srv.server_close()
    with lock:
        summary = " ".join(f"{k}={v}" for k, v in sorted(counts.items()))
    print(f"bad-http: {summary}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
