/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Transmission: up to NBD_WORKERS threads per connection (twice the CPUs),
 * each in turn taking the read lock, reading one request (and a write's
 * payload) from the connection's receive buffer, letting go, serving it and
 * replying, in any order (proto.md allows it; replies are matched by
 * cookie). A thread is added only when requests queue behind the one just
 * read and it syncs or a recent one took long (see maybe_start): a client at
 * depth 1, or one whose reads come from memory, is served by one thread
 * with no hand-off. A reply's messages go out whole under the send lock;
 * while more requests wait in the receive buffer and no other is being
 * served, they are held back and go out together once it runs dry, so that
 * a client at depth 16 costs one recv and one send per burst, not per
 * request. Each thread keeps its buffers, so a warm connection allocates
 * nothing per request. A flush covers the writes whose replies were sent
 * before it arrived: the delta's flush covers every write it has taken.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "wire.h"

#define NBD_WORKERS 16
/* A request that takes longer than this was not served from memory. */
#define NBD_SLOW_NS 200000
/* Buffers past this are given back after the request that grew them. */
#define NBD_KEEP_BYTES (4u << 20)
/* Requests come in through a buffer: one recv takes every request that has
 * arrived, where a recv per header took one. */
#define NBD_IN_BYTES (64u << 10)
/* Replies held back while more requests wait in that buffer, sent together
 * (one sendmsg, one wakeup of the client) when it runs dry. */
#define NBD_OUT_BYTES (64u << 10)
#define NBD_REQUEST_BYTES 28

typedef struct pool pool;

typedef struct worker {
        pool *p;
        pthread_t thread;
        nbd_request q;
        uint8_t *buf; /* the data of a read or a write */
        size_t buf_cap;
        uint8_t *ext; /* read extents (collect_extent) */
        size_t ext_cap, n_ext;
        uint8_t *desc; /* block status descriptors */
        size_t desc_cap, n_desc;
        uint32_t desc_last;
        unsigned desc_ctx, desc_max;
} worker;

struct pool {
        conn *c;
        st_volume *v;
        pthread_mutex_t lock;      /* n_started, end; quit and failed are set under it */
        pthread_mutex_t read_lock; /* one thread reads from the socket at a time */
        pthread_mutex_t send_lock; /* one message of a reply goes out whole */
        worker w[NBD_WORKERS];
        unsigned n_started, max_workers;
        int end;          /* why the connection ended (<0), or 0 */
        _Atomic bool slow; /* a request took over NBD_SLOW_NS since a thread was last added */
        /* set under lock, read by the reader under read_lock alone */
        _Atomic bool quit, failed;
        /* The receive buffer (under read_lock); in_left is in_len - in_pos,
         * for a look without the lock. */
        uint8_t *in;
        size_t in_pos, in_len;
        _Atomic size_t in_left;
        _Atomic unsigned serving; /* requests taken and not yet answered */
        /* Replies held back (under send_lock). */
        uint8_t *out;
        size_t out_len;
};

static uint32_t wire_error(int r) {
        switch (r) {
        case -EPERM:
        case -EROFS: return NBD_EPERM;
        case -EINVAL: return NBD_EINVAL;
        case -ENOSPC:
        case -EDQUOT:
        case -EFBIG: return NBD_ENOSPC;
        case -ENOMEM: return NBD_ENOMEM;
        default: return NBD_EIO;
        }
}

/* What was held back, sent (with send_lock held). */
static int flush_locked(pool *p, struct iovec *iov, int cnt) {
        struct iovec all[4];
        int n = 0;
        if (p->out_len)
                all[n++] = (struct iovec){ p->out, p->out_len };
        for (int i = 0; i < cnt; i++)
                all[n++] = iov[i];
        p->out_len = 0;
        return n ? wire_send_iov(&p->c->w, all, n) : 0;
}

static int flush_out(pool *p) {
        pthread_mutex_lock(&p->send_lock);
        int r = flush_locked(p, NULL, 0);
        pthread_mutex_unlock(&p->send_lock);
        return r;
}

/* One message of a reply, whole: chunks of other replies go between
 * messages, never inside one. It is held back while another request waits
 * in the receive buffer and no other is being served (whoever next finds
 * the buffer empty sends it, before it waits for the client); otherwise
 * it goes at once, after what was held. cnt <= 3. */
static int send_msg(pool *p, struct iovec *iov, int cnt) {
        size_t len = 0;
        for (int i = 0; i < cnt; i++)
                len += iov[i].iov_len;
        pthread_mutex_lock(&p->send_lock);
        int r = 0;
        bool hold = atomic_load_explicit(&p->in_left, memory_order_relaxed) >= NBD_REQUEST_BYTES &&
                    atomic_load_explicit(&p->serving, memory_order_relaxed) <= 1 &&
                    p->out_len + len <= NBD_OUT_BYTES;
        if (hold && !p->out)
                hold = (p->out = malloc(NBD_OUT_BYTES)) != NULL;
        if (hold) {
                for (int i = 0; i < cnt; i++) {
                        memcpy(p->out + p->out_len, iov[i].iov_base, iov[i].iov_len);
                        p->out_len += iov[i].iov_len;
                }
        } else {
                r = flush_locked(p, iov, cnt);
        }
        pthread_mutex_unlock(&p->send_lock);
        return r;
}

/* len bytes of the request stream (with read_lock held): from the buffer,
 * refilled by one recv of whatever has arrived. Before it waits for the
 * client, the replies held back go out. */
static int pool_read(pool *p, void *dst, size_t len) {
        uint8_t *d = dst;
        int r = 0;
        while (len > 0 && r == 0) {
                if (p->in_pos == p->in_len) {
                        if ((r = flush_out(p)) < 0)
                                break;
                        if (len >= NBD_IN_BYTES / 2) { /* a large payload: straight into place */
                                r = wire_read(&p->c->w, d, len);
                                break;
                        }
                        int n = wire_recv_some(&p->c->w, p->in, NBD_IN_BYTES);
                        if (n < 0) {
                                r = n;
                                break;
                        }
                        p->in_pos = 0;
                        p->in_len = (size_t)n;
                }
                size_t k = p->in_len - p->in_pos < len ? p->in_len - p->in_pos : len;
                memcpy(d, p->in + p->in_pos, k);
                p->in_pos += k;
                d += k;
                len -= k;
        }
        atomic_store_explicit(&p->in_left, p->in_len - p->in_pos, memory_order_relaxed);
        return r;
}

static int simple_reply(pool *p, uint64_t cookie, uint32_t err, const void *data, size_t len) {
        uint8_t h[16];
        put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
        put_be32(h + 4, err);
        put_be64(h + 8, cookie);
        struct iovec iov[2] = { { h, sizeof h }, { (void *)data, len } };
        return send_msg(p, iov, len ? 2 : 1);
}

static void chunk_header(uint8_t h[20], uint16_t flags, uint16_t type, uint64_t cookie, uint32_t len) {
        put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
        put_be16(h + 4, flags);
        put_be16(h + 6, type);
        put_be64(h + 8, cookie);
        put_be32(h + 16, len);
}

static int error_reply(pool *p, const nbd_request *q, uint32_t err) {
        export_account_error(p->c->ex);
        if (!p->c->structured)
                return simple_reply(p, q->cookie, err, NULL, 0);
        uint8_t h[20 + 6];
        chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, q->cookie, 6);
        put_be32(h + 20, err);
        put_be16(h + 24, 0);
        struct iovec iov = { h, sizeof h };
        return send_msg(p, &iov, 1);
}

static int ok_reply(pool *p, const nbd_request *q) {
        if (!p->c->structured)
                return simple_reply(p, q->cookie, 0, NULL, 0);
        uint8_t h[20];
        chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, q->cookie, 0);
        struct iovec iov = { h, sizeof h };
        return send_msg(p, &iov, 1);
}

static int status_reply(pool *p, const nbd_request *q, int r) {
        return r < 0 ? error_reply(p, q, wire_error(r)) : ok_reply(p, q);
}

/* Structured read: data chunks for data, hole chunks for zeros. The extents
 * are collected during the read and sent after it returns: sending while it
 * holds the volume's lock would let a client that stops reading stall every
 * writer of that volume. */
typedef struct read_extent {
        uint64_t off, len;
        bool hole;
} read_extent;

static int collect_extent(void *ctx, uint64_t off, uint64_t len, unsigned flags) {
        worker *w = ctx;
        size_t need = (w->n_ext + 1) * sizeof(read_extent);
        if (wire_buf_grow(&w->ext, &w->ext_cap, need) < 0)
                return -ENOMEM;
        ((read_extent *)(void *)w->ext)[w->n_ext++] =
                (read_extent){ off, len, (flags & ST_EXTENT_HOLE) != 0 };
        return 0;
}

static int send_extents(worker *w, const nbd_request *q) {
        const read_extent *x = (const read_extent *)(const void *)w->ext;
        for (size_t i = 0; i < w->n_ext; i++) {
                uint16_t f = i + 1 == w->n_ext ? NBD_REPLY_FLAG_DONE : 0;
                uint8_t h[20 + 12];
                int r;
                if (x[i].hole) {
                        chunk_header(h, f, NBD_REPLY_TYPE_OFFSET_HOLE, q->cookie, 12);
                        put_be64(h + 20, x[i].off);
                        put_be32(h + 28, (uint32_t)x[i].len);
                        struct iovec iov = { h, 32 };
                        r = send_msg(w->p, &iov, 1);
                } else {
                        chunk_header(h, f, NBD_REPLY_TYPE_OFFSET_DATA, q->cookie,
                                     (uint32_t)(8 + x[i].len));
                        put_be64(h + 20, x[i].off);
                        struct iovec iov[2] = { { h, 28 },
                                                { w->buf + (x[i].off - q->offset), (size_t)x[i].len } };
                        r = send_msg(w->p, iov, 2);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int do_read(worker *w, const nbd_request *q) {
        pool *p = w->p;
        int r = wire_buf_grow(&w->buf, &w->buf_cap, q->length ? q->length : 1);
        /* A structured reply needs the hole map: the read's one pass over
         * its extents gives it. */
        bool extents = p->c->structured && q->length > 0 && !(q->flags & NBD_CMD_FLAG_DF);
        w->n_ext = 0;
        if (r == 0)
                r = extents ? st_volume_read_map(p->v, w->buf, q->length, q->offset, collect_extent, w)
                            : st_volume_read(p->v, w->buf, q->length, q->offset);
        if (r < 0)
                return error_reply(p, q, wire_error(r));
        if (!p->c->structured)
                return simple_reply(p, q->cookie, 0, w->buf, q->length);
        if (!extents) {
                if (q->length == 0)
                        return ok_reply(p, q);
                uint8_t h[28];
                chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, q->cookie,
                             8 + q->length);
                put_be64(h + 20, q->offset);
                struct iovec iov[2] = { { h, 28 }, { w->buf, q->length } };
                return send_msg(p, iov, 2);
        }
        return send_extents(w, q);
}

/* Block status: descriptors per context, merged when equal. */
static int status_extent(void *ctx, uint64_t off, uint64_t len, unsigned flags) {
        (void)off;
        worker *w = ctx;
        uint32_t st = w->desc_ctx == NBD_META_BASE_ALLOCATION
                              ? ((flags & ST_EXTENT_HOLE) ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0)
                              : ((flags & ST_EXTENT_SHARED) ? 1u : 0);
        while (len > 0) {
                uint32_t l = len > 0x80000000u ? 0x80000000u : (uint32_t)len;
                uint8_t *last = w->n_desc ? w->desc + 8 * (w->n_desc - 1) : NULL;
                uint32_t last_len = last ? get_be32(last) : 0;
                if (last && w->desc_last == st && (uint64_t)last_len + l <= 0xffffffffu) {
                        put_be32(last, last_len + l);
                } else {
                        if (w->n_desc == w->desc_max)
                                return 1; /* enough */
                        if (wire_buf_grow(&w->desc, &w->desc_cap, 8 * (w->n_desc + 1)) < 0)
                                return -ENOMEM;
                        put_be32(w->desc + 8 * w->n_desc, l);
                        put_be32(w->desc + 8 * w->n_desc + 4, st);
                        w->n_desc++;
                        w->desc_last = st;
                }
                len -= l;
        }
        return 0;
}

static int do_block_status(worker *w, const nbd_request *q) {
        pool *p = w->p;
        uint32_t meta = p->c->meta;
        int r = 0;
        unsigned remaining = __builtin_popcount(meta);
        for (uint32_t id = NBD_META_BASE_ALLOCATION; r == 0 && id <= NBD_META_STELLAR_SHARED; id++) {
                if (!(meta & (1u << id)))
                        continue;
                w->n_desc = 0;
                w->desc_ctx = id;
                w->desc_max = (q->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : 4096;
                int k = st_volume_map(p->v, q->offset, q->length,
                                      id == NBD_META_BASE_ALLOCATION ? ST_EXTENT_HOLE
                                                                     : ST_EXTENT_SHARED,
                                      status_extent, w);
                if (k < 0)
                        return error_reply(p, q, wire_error(k));
                if (w->n_desc == 0) { /* a zero-length query still gets one descriptor */
                        if (wire_buf_grow(&w->desc, &w->desc_cap, 8) < 0)
                                return -ENOMEM;
                        put_be32(w->desc, q->length);
                        put_be32(w->desc + 4, 0);
                        w->n_desc = 1;
                }
                uint8_t h[24];
                chunk_header(h, --remaining == 0 ? NBD_REPLY_FLAG_DONE : 0,
                             NBD_REPLY_TYPE_BLOCK_STATUS, q->cookie, (uint32_t)(4 + 8 * w->n_desc));
                put_be32(h + 20, id);
                struct iovec iov[2] = { { h, 24 }, { w->desc, 8 * w->n_desc } };
                r = send_msg(p, iov, 2);
        }
        return r;
}

/* Serve one validated request and send its reply. <0: the connection is
 * done for (the reply could not be sent). */
static int serve_op(worker *w);

static unsigned op_kind(uint16_t type) {
        switch (type) {
        case NBD_CMD_READ: return EXPORT_OP_READ;
        case NBD_CMD_WRITE: return EXPORT_OP_WRITE;
        case NBD_CMD_FLUSH: return EXPORT_OP_FLUSH;
        case NBD_CMD_TRIM:
        case NBD_CMD_WRITE_ZEROES: return EXPORT_OP_TRIM;
        default: return EXPORT_OP_OTHER;
        }
}

static int serve_one(worker *w) {
        uint64_t t0 = wire_now_ns();
        int r = serve_op(w);
        uint64_t ns = wire_now_ns() - t0;
        if (ns > NBD_SLOW_NS)
                atomic_store_explicit(&w->p->slow, true, memory_order_relaxed);
        unsigned k = op_kind(w->q.type);
        export_account(w->p->c->ex, k,
                       k == EXPORT_OP_READ || k == EXPORT_OP_WRITE ? w->q.length : 0,
                       ns);
        return r;
}

static int serve_op(worker *w) {
        pool *p = w->p;
        const nbd_request *q = &w->q;
        unsigned fua = (q->flags & NBD_CMD_FLAG_FUA) ? ST_WRITE_FUA : 0;
        int r;
        switch (q->type) {
        case NBD_CMD_READ:
                return do_read(w, q);
        case NBD_CMD_WRITE:
                return status_reply(p, q, st_volume_write(p->v, w->buf, q->length, q->offset, fua));
        case NBD_CMD_FLUSH:
                return status_reply(p, q, st_volume_flush(p->v));
        case NBD_CMD_TRIM:
                r = st_volume_discard(p->v, q->offset, q->length);
                if (r == 0 && fua)
                        r = st_volume_flush(p->v);
                return status_reply(p, q, r);
        case NBD_CMD_WRITE_ZEROES:
                return status_reply(p, q,
                                    st_volume_write_zeroes(p->v, q->offset, q->length,
                                                           fua | ((q->flags & NBD_CMD_FLAG_NO_HOLE)
                                                                          ? ST_WRITE_NO_HOLE
                                                                          : 0)));
        case NBD_CMD_CACHE:
                (void)st_volume_prefetch(p->v, q->offset, q->length); /* a hint */
                return ok_reply(p, q);
        case NBD_CMD_BLOCK_STATUS:
                return do_block_status(w, q);
        default:
                return error_reply(p, q, NBD_EINVAL);
        }
}


/* The connection cannot go on: wake the thread blocked in recv. */
static void pool_fail(pool *p) {
        pthread_mutex_lock(&p->lock);
        if (!p->failed) {
                p->failed = true;
                (void)shutdown(p->c->w.fd, SHUT_RDWR);
        }
        pthread_mutex_unlock(&p->lock);
}

static void shrink(uint8_t **b, size_t *cap) {
        if (*cap > NBD_KEEP_BYTES) {
                free(*b);
                *b = NULL;
                *cap = 0;
        }
}

static void *worker_main(void *arg);

/* With the read lock held: another thread, if requests are queued behind
 * the one just read and there is room for one. */
static void maybe_start(pool *p, const nbd_request *q) {
        /* Requests queued behind this one, and a reason to think one thread
         * would make them wait: this one syncs, or one lately took long (a
         * disk read, a remote fetch). Requests served from memory gain
         * nothing from more threads on a few CPUs, only lock traffic. */
        bool syncs = q->type == NBD_CMD_FLUSH || (q->flags & NBD_CMD_FLAG_FUA);
        if (!syncs && !atomic_exchange_explicit(&p->slow, false, memory_order_relaxed))
                return;
        if (p->in_pos == p->in_len && wire_pending(&p->c->w) == 0)
                return;
        pthread_mutex_lock(&p->lock);
        if (p->n_started < p->max_workers && !p->quit) {
                worker *w = &p->w[p->n_started];
                *w = (worker){ .p = p };
                pthread_attr_t attr;
                pthread_attr_init(&attr);
                pthread_attr_setstacksize(&attr, 256 << 10);
                if (pthread_create(&w->thread, &attr, worker_main, w) == 0)
                        p->n_started++;
                pthread_attr_destroy(&attr);
        }
        pthread_mutex_unlock(&p->lock);
}

/* One request read and checked under the read lock: 1 when w->q is to be
 * served, 0 after an answered refusal, <0 (or 2 for a disconnect) to end. */
static int next_request(worker *w) {
        pool *p = w->p;
        conn *c = p->c;
        if (p->quit || p->failed || *c->ctx->stopping)
                return 2;
        uint8_t hdr[NBD_REQUEST_BYTES];
        int r = pool_read(p, hdr, sizeof hdr);
        if (r < 0)
                return r;
        nbd_request q;
        if (!nbd_request_decode(hdr, &q)) {
                serve_logf("nbd %s, export %s: bad request magic: disconnected", c->ctx->peer,
                           export_name(c->ex));
                return -EPROTO;
        }
        bool hangup;
        uint32_t err = nbd_request_validate(&q, &c->caps, &hangup);
        if (hangup) {
                serve_logf("nbd %s, export %s: request type %u of %u bytes at %llu breaks the "
                           "protocol: disconnected",
                           c->ctx->peer, export_name(c->ex), q.type, q.length,
                           (unsigned long long)q.offset);
                return -EPROTO;
        }
        if (q.type == NBD_CMD_DISC && !err)
                return 2;
        if (q.type == NBD_CMD_WRITE) {
                /* The payload follows whatever the verdict. */
                if ((r = wire_buf_grow(&w->buf, &w->buf_cap, q.length ? q.length : 1)) < 0 ||
                    (r = pool_read(p, w->buf, q.length)) < 0)
                        return r;
        }
        if (err) {
                serve_logf("nbd %s, export %s: request type %u of %u bytes at %llu refused "
                           "(error %u)",
                           c->ctx->peer, export_name(c->ex), q.type, q.length,
                           (unsigned long long)q.offset, err);
                r = error_reply(p, &q, err);
                return r < 0 ? r : 0;
        }
        maybe_start(p, &q);
        w->q = q;
        atomic_fetch_add_explicit(&p->serving, 1, memory_order_relaxed);
        return 1;
}

/* Every thread of the connection, its own first among them: take the read
 * lock, read a request, let go, serve it, reply; until the end. */
static void *worker_main(void *arg) {
        worker *w = arg;
        pool *p = w->p;
        for (;;) {
                pthread_mutex_lock(&p->read_lock);
                int r = next_request(w);
                if (r < 0 || r == 2) {
                        pthread_mutex_lock(&p->lock);
                        if (r < 0 && !p->end)
                                p->end = r;
                        p->quit = true;
                        pthread_mutex_unlock(&p->lock);
                        (void)shutdown(p->c->w.fd, SHUT_RD); /* the others see the end too */
                }
                pthread_mutex_unlock(&p->read_lock);
                if (r < 0 || r == 2)
                        break;
                if (r == 1) {
                        if (serve_one(w) < 0)
                                pool_fail(p);
                        atomic_fetch_sub_explicit(&p->serving, 1, memory_order_relaxed);
                }
                shrink(&w->buf, &w->buf_cap);
                shrink(&w->ext, &w->ext_cap);
                shrink(&w->desc, &w->desc_cap);
        }
        return NULL;
}

int nbd_transmission(conn *c) {
        pool p = { .c = c, .v = export_volume(c->ex) };
        c->caps.structured = c->structured;
        p.in = malloc(NBD_IN_BYTES);
        if (!p.in)
                return -ENOMEM;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        p.max_workers = cpus < 1 ? 1 : cpus * 2 > NBD_WORKERS ? NBD_WORKERS : (unsigned)cpus * 2;
        pthread_mutex_init(&p.lock, NULL);
        pthread_mutex_init(&p.read_lock, NULL);
        pthread_mutex_init(&p.send_lock, NULL);
        /* This thread is the first worker; others start as requests queue. */
        p.w[0] = (worker){ .p = &p };
        p.n_started = 1;
        (void)worker_main(&p.w[0]);
        /* Requests taken are served (and their replies sent, if the client
         * still reads) before the connection ends: a disconnect after a
         * write does not drop it. */
        pthread_mutex_lock(&p.lock);
        unsigned n = p.n_started;
        p.quit = true; /* no more threads start */
        pthread_mutex_unlock(&p.lock);
        for (unsigned i = 0; i < n; i++) {
                worker *w = &p.w[i];
                if (i > 0)
                        pthread_join(w->thread, NULL);
                free(w->buf);
                free(w->ext);
                free(w->desc);
        }
        if (!p.failed)
                (void)flush_out(&p); /* replies held back when the client said goodbye */
        free(p.out);
        free(p.in);
        pthread_mutex_destroy(&p.send_lock);
        pthread_mutex_destroy(&p.read_lock);
        pthread_mutex_destroy(&p.lock);
        return p.end;
}
