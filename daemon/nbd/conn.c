/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One NBD client: fixed newstyle handshake, option haggling, then requests
 * until the client disconnects or the daemon stops. Every message passes the
 * decoding gate in proto.c first. A client that breaks the protocol is
 * disconnected; nothing it sends affects other connections.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "conn.h"
#include "wire.h"

/* A client has 30 s for the whole handshake. */
#define HANDSHAKE_NS 30000000000ull

void nbd_conn_run(const conn_ctx *ctx, int fd) {
        conn c = { .ctx = ctx, .w = { .fd = fd } };
        wire_set_deadline(wire_now_ns() + HANDSHAKE_NS);
        int r = nbd_handshake(&c);
        wire_set_deadline(0);
        if (r < 0)
                serve_logf("nbd %s: handshake ended: %s", ctx->peer,
                           r == -EPROTO ? "the client broke the protocol" : strerror(-r));
        if (r == 1) {
                struct timeval tv = { 0 };
                (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                r = nbd_transmission(&c);
                if (r < 0 && r != -ECONNRESET && r != -EPROTO)
                        serve_logf("nbd %s, export %s: connection ended: %s", ctx->peer,
                                   export_name(c.ex), strerror(-r));
        }
        nbd_tls_end(&c);
        if (c.ex)
                export_put(c.ex);
        free(c.buf);
}
