#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A TCP proxy on loopback that adds round-trip time (python3 stdlib only).

    delay-proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:PORT \\
        --delay-ms 20 [--port-file F] [--no-handshake-delay]

Every byte is held DELAY/2 in each direction, so a request and its answer
take DELAY longer, as over a real link with that RTT. Bytes are stamped when
they arrive and released in order once their time has come; reading goes on
meanwhile, so a large transfer keeps its bandwidth and only starts DELAY/2
later (the kernel has no netem here; this stands in for it). A new
connection costs one RTT more, as its TCP handshake would: the client's
connect() succeeds at once, but its first bytes are held one RTT longer
(--no-handshake-delay turns that off). Connections are independent, any
number at once, each with its own upstream connection; a half-close (EOF)
is passed on with the same delay.

The bound port goes to --port-file (written whole, then renamed into place).
SIGTERM or SIGINT ends it; it then prints how many connections and bytes it
carried on stderr.
"""
import argparse
import asyncio
import os
import signal
import socket
import struct
import sys

CHUNK = 256 * 1024
QUEUED = 256  # chunks in flight per direction before reading pauses

stats = {"connections": 0, "up_bytes": 0, "down_bytes": 0}


def addr(s):
    host, _, port = s.rpartition(":")
    return host or "127.0.0.1", int(port)


async def pump(reader, writer, delay, key, kill, not_before=0.0):
    """Copy reader to writer, each chunk released `delay` seconds after it
    was read (and not before `not_before`); reading and writing run
    concurrently. On an error on either side, kill() tears the whole
    connection down."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue(QUEUED)

    async def take_in():
        try:
            while True:
                data = await reader.read(CHUNK)
                await queue.put((max(loop.time(), not_before) + delay, data))
                if not data:
                    return
        except OSError:
            await queue.put((loop.time(), None))

    producer = asyncio.create_task(take_in())
    try:
        while True:
            due, data = await queue.get()
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
            if data is None:  # a reset on the reading side: pass it on,
                await writer.drain()  # after the bytes that came before it
                kill()
                return
            if not data:  # EOF: half-close the other side, later
                if not writer.is_closing() and writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            stats[key] += len(data)
            await writer.drain()
    except OSError:
        kill()
    finally:
        producer.cancel()


async def handle(creader, cwriter, upstream, delay, handshake):
    stats["connections"] += 1
    # The client's connect() returned at once; over a real link it would
    # have taken a round trip, so its first bytes leave one RTT later.
    not_before = asyncio.get_running_loop().time() + (2 * delay if handshake else 0)
    try:
        ureader, uwriter = await asyncio.open_connection(*upstream)
    except OSError as e:
        print(f"delay-proxy: upstream {upstream[0]}:{upstream[1]}: {e}", file=sys.stderr)
        cwriter.transport.abort()
        return

    def kill():
        """Reset both connections (SO_LINGER 0: RST, not FIN)."""
        for w in (cwriter, uwriter):
            sock = w.transport.get_extra_info("socket")
            if sock is not None and sock.fileno() >= 0:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()

    for w in (cwriter, uwriter):
        w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        await asyncio.gather(pump(creader, uwriter, delay, "up_bytes", kill, not_before),
                             pump(ureader, cwriter, delay, "down_bytes", kill))
    except asyncio.CancelledError:  # the proxy is stopping
        kill()
    finally:
        cwriter.close()
        uwriter.close()


async def main():
    ap = argparse.ArgumentParser(description="TCP proxy adding round-trip time")
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    ap.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--delay-ms", type=float, required=True, help="added round-trip time")
    ap.add_argument("--port-file", help="write the bound port here")
    ap.add_argument("--no-handshake-delay", action="store_true",
                    help="do not charge a new connection one RTT for its TCP handshake")
    args = ap.parse_args()
    upstream = addr(args.upstream)
    delay = args.delay_ms / 2000.0

    handshake = not args.no_handshake_delay
    server = await asyncio.start_server(lambda r, w: handle(r, w, upstream, delay, handshake),
                                        *addr(args.listen), reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{port}\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    print(f"delay-proxy: 127.0.0.1:{port} -> {upstream[0]}:{upstream[1]}, "
          f"+{args.delay_ms:g} ms round trip", file=sys.stderr, flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print("delay-proxy: {connections} connections, {up_bytes} bytes up, "
          "{down_bytes} bytes down".format(**stats), file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
