/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One NBD client connection, shared by its phases: the handshake
 * (handshake.c) and the transmission of requests (requests.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../serve.h"
#include "proto.h"
#include "wire.h"

typedef struct conn {
        const conn_ctx *ctx;
        wire w;
        bool structured;
        uint32_t meta;         /* bitmask of negotiated context ids */
        char meta_export[256]; /* the export those contexts were negotiated for */
        export *ex;
        nbd_export_caps caps;
        uint8_t *buf; /* option payloads */
        size_t buf_cap;
} conn;

/* tls.c: NBD_OPT_STARTTLS's TLS handshake on c->w (GnuTLS, with the
 * daemon's PSK and/or x509 credentials); 0, or <0 when it failed. */
int nbd_tls_start(conn *c);
void nbd_tls_end(conn *c);

/* Returns 1 when transmission may start, 0 to end quietly, <0 on error. */
int nbd_handshake(conn *c);
/* Serve requests until the client disconnects, breaks the protocol or the
 * daemon stops; several at once, replies sent as each completes. */
int nbd_transmission(conn *c);
