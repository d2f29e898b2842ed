/* SPDX-License-Identifier: Apache-2.0 */
/* Bytes on an NBD socket: big-endian fields, whole reads and sends. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

static inline void put_be16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}
static inline void put_be32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static inline void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t)(v >> 32));
        put_be32(p + 4, (uint32_t)v);
}
static inline uint32_t get_be32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A connection's byte stream: the socket, or a TLS session over it. */
typedef struct wire {
        int fd;
        void *tls; /* gnutls_session_t once STARTTLS succeeded, else NULL */
} wire;

uint64_t wire_now_ns(void);
/* A deadline (CLOCK_MONOTONIC ns, 0 for none) for this thread's reads: the
 * handshake has one for the whole negotiation. */
void wire_set_deadline(uint64_t ns);
/* All len bytes, or -ECONNRESET at end of stream, -ETIMEDOUT, -errno. */
int wire_read(const wire *w, void *buf, size_t len);
/* What has arrived, up to cap bytes (at least 1: it waits for one); the
 * count, or <0 as wire_read. More than INT_MAX is taken as INT_MAX. */
int wire_recv_some(const wire *w, void *buf, size_t cap);
/* Read and drop len bytes. */
int wire_skip(const wire *w, uint64_t len);
/* Everything in iov (modified as it goes). One thread may send while
 * another reads, TLS or not. */
int wire_send_iov(const wire *w, struct iovec *iov, int cnt);
int wire_send(const wire *w, const void *buf, size_t len);
/* Bytes that have arrived and are not read yet (decrypted or not). */
size_t wire_pending(const wire *w);

/* Grow *p to hold need bytes, doubling (so a buffer filled piece by piece
 * costs O(n) copying). 0 or -ENOMEM. */
int wire_buf_grow(uint8_t **p, size_t *cap, size_t need);
