/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One NBD client: fixed newstyle handshake, option haggling, then requests
 * until the client disconnects or the daemon stops. Every message passes the
 * decoding gate in nbd-proto.c first. A client that breaks the protocol is
 * disconnected; nothing it sends affects other connections. Buffers are
 * kept per connection and reused: no allocation per request once warm.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "../lib/util/fs.h"
#include "nbd-proto.h"
#include "serve.h"

typedef struct conn {
        const conn_ctx *ctx;
        int fd;
        bool structured;
        uint32_t meta;          /* bitmask of negotiated context ids */
        char meta_export[256];  /* the export those contexts were negotiated for */
        export *ex;
        nbd_export_caps caps;
        uint8_t *buf;
        size_t buf_cap;
        uint8_t *ext;           /* read extents (read_extent) */
        size_t ext_cap, n_ext;
        uint8_t *desc;          /* block status descriptors */
        size_t desc_cap, n_desc;
        uint32_t desc_last;
        unsigned desc_ctx, desc_max;
} conn;

static void put_be16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)(v >> 8);
        p[1] = (uint8_t)v;
}
static void put_be32(uint8_t *p, uint32_t v) {
        for (int i = 0; i < 4; i++)
                p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put_be64(uint8_t *p, uint64_t v) {
        put_be32(p, (uint32_t)(v >> 32));
        put_be32(p + 4, (uint32_t)v);
}

/* During the handshake the whole negotiation has one deadline, so a client
 * that trickles a byte at a time cannot hold its thread forever. */
#define HANDSHAKE_NS 30000000000ull
static __thread uint64_t deadline_ns;

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int read_full(int fd, void *buf, size_t len) {
        uint8_t *p = buf;
        while (len > 0) {
                if (deadline_ns) {
                        uint64_t now = now_ns();
                        if (now >= deadline_ns)
                                return -ETIMEDOUT;
                        uint64_t left = deadline_ns - now;
                        struct timeval tv = { .tv_sec = (time_t)(left / 1000000000ull),
                                              .tv_usec = (suseconds_t)(left % 1000000000ull / 1000) };
                        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                }
                ssize_t n = recv(fd, p, len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

static int discard(int fd, uint64_t len) {
        uint8_t tmp[4096];
        while (len > 0) {
                size_t n = len < sizeof tmp ? (size_t)len : sizeof tmp;
                int r = read_full(fd, tmp, n);
                if (r < 0)
                        return r;
                len -= n;
        }
        return 0;
}

static int send_iov(int fd, struct iovec *iov, int cnt) {
        while (cnt > 0) {
                struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
                ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                while (cnt > 0 && (size_t)n >= iov->iov_len) {
                        n -= (ssize_t)iov->iov_len;
                        iov++;
                        cnt--;
                }
                if (cnt > 0) {
                        iov->iov_base = (uint8_t *)iov->iov_base + n;
                        iov->iov_len -= (size_t)n;
                }
        }
        return 0;
}

static int send_all(int fd, const void *buf, size_t len) {
        struct iovec iov = { (void *)buf, len };
        return send_iov(fd, &iov, 1);
}

/* ---- handshake ---- */

static int opt_reply(conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len) {
        uint8_t h[20];
        put_be64(h, NBD_REP_MAGIC);
        put_be32(h + 8, opt);
        put_be32(h + 12, type);
        put_be32(h + 16, len);
        struct iovec iov[2] = { { h, sizeof h }, { (void *)data, len } };
        return send_iov(c->fd, iov, len ? 2 : 1);
}

static uint16_t export_flags(const conn *c) {
        uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_CAN_MULTI_CONN |
                     NBD_FLAG_SEND_CACHE;
        if (c->structured)
                f |= NBD_FLAG_SEND_DF; /* DF means something only with structured replies */
        if (c->caps.writable)
                f |= NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES;
        else
                f |= NBD_FLAG_READ_ONLY;
        return f;
}

static int open_export(conn *c, const char *name, uint32_t name_len) {
        char n[256];
        if (name_len >= sizeof n)
                return -ENOENT;
        memcpy(n, name, name_len);
        n[name_len] = 0;
        export *e;
        int r = export_get(c->ctx->s, n, &e);
        if (r < 0)
                return r;
        if (c->ex)
                export_put(c->ex);
        c->ex = e;
        st_volume *v = export_volume(e);
        c->caps.size = st_volume_size(v);
        c->caps.writable = st_volume_writable(v);
        c->caps.structured = c->structured;
        if (strlen(c->meta_export) != name_len || memcmp(c->meta_export, name, name_len) != 0)
                c->meta = 0; /* contexts were for another export */
        c->caps.meta = c->meta != 0;
        return 0;
}

static int do_info(conn *c, const nbd_option *o) {
        int r = open_export(c, o->name, o->name_len);
        if (r < 0) {
                const char *msg = "no such export";
                return opt_reply(c, o->opt, NBD_REP_ERR_UNKNOWN, msg, (uint32_t)strlen(msg));
        }
        uint8_t info[12];
        put_be16(info, NBD_INFO_EXPORT);
        put_be64(info + 2, c->caps.size);
        put_be16(info + 10, export_flags(c));
        r = opt_reply(c, o->opt, NBD_REP_INFO, info, 12);
        for (unsigned i = 0; r == 0 && i < o->n_info && i < 16; i++)
                if (o->info[i] == NBD_INFO_BLOCK_SIZE) {
                        uint8_t bs[14];
                        put_be16(bs, NBD_INFO_BLOCK_SIZE);
                        put_be32(bs + 2, 1);
                        put_be32(bs + 6, 4096);
                        put_be32(bs + 10, NBD_REQUEST_MAX);
                        r = opt_reply(c, o->opt, NBD_REP_INFO, bs, 14);
                }
        if (r == 0)
                r = opt_reply(c, o->opt, NBD_REP_ACK, NULL, 0);
        if (r == 0 && o->opt == NBD_OPT_INFO) {
                export_put(c->ex);
                c->ex = NULL;
        }
        return r;
}

static int do_list(conn *c) {
        st_image_info *v;
        size_t n;
        int r = st_store_list(c->ctx->s, &v, &n);
        if (r < 0)
                return opt_reply(c, NBD_OPT_LIST, NBD_REP_ERR(4), NULL, 0); /* ERR_PLATFORM */
        for (size_t i = 0; r == 0 && i < n; i++) {
                if (v[i].error)
                        continue; /* damaged: cannot be served */
                uint8_t d[4 + 256];
                uint32_t l = (uint32_t)strlen(v[i].name);
                put_be32(d, l);
                memcpy(d + 4, v[i].name, l);
                r = opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, d, 4 + l);
        }
        free(v);
        return r == 0 ? opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0) : r;
}

static int do_meta(conn *c, const nbd_option *o) {
        bool list = o->opt == NBD_OPT_LIST_META_CONTEXT;
        if (!c->structured)
                return opt_reply(c, o->opt, NBD_REP_ERR_INVALID, NULL, 0);
        char n[256];
        if (o->name_len >= sizeof n)
                return opt_reply(c, o->opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
        memcpy(n, o->name, o->name_len);
        n[o->name_len] = 0;
        export *e;
        if (export_get(c->ctx->s, n, &e) < 0)
                return opt_reply(c, o->opt, NBD_REP_ERR_UNKNOWN, NULL, 0);
        export_put(e);
        uint32_t chosen = 0;
        for (uint32_t id = NBD_META_BASE_ALLOCATION; id <= NBD_META_STELLAR_SHARED; id++) {
                bool sel = list && o->n_queries == 0;
                for (uint32_t q = 0; q < o->n_queries && !sel; q++)
                        sel = nbd_meta_matches(o->query[q], o->query_len[q], list, id);
                if (sel)
                        chosen |= 1u << id;
        }
        int r = 0;
        for (uint32_t id = NBD_META_BASE_ALLOCATION; r == 0 && id <= NBD_META_STELLAR_SHARED; id++) {
                if (!(chosen & (1u << id)))
                        continue;
                const char *name = nbd_meta_name(id);
                uint8_t d[4 + 64];
                uint32_t l = (uint32_t)strlen(name);
                put_be32(d, id);
                memcpy(d + 4, name, l);
                r = opt_reply(c, o->opt, NBD_REP_META_CONTEXT, d, 4 + l);
        }
        if (!list) {
                c->meta = chosen;
                snprintf(c->meta_export, sizeof c->meta_export, "%s", n);
        }
        return r == 0 ? opt_reply(c, o->opt, NBD_REP_ACK, NULL, 0) : r;
}

/* Returns 1 when transmission may start, 0 to end quietly, <0 on error. */
static int handshake(conn *c) {
        uint8_t g[18];
        put_be64(g, NBD_MAGIC);
        put_be64(g + 8, NBD_IHAVEOPT);
        put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        int r = send_all(c->fd, g, sizeof g);
        uint8_t cf[4];
        if (r == 0)
                r = read_full(c->fd, cf, 4);
        if (r < 0)
                return r;
        uint32_t cflags = (uint32_t)cf[0] << 24 | (uint32_t)cf[1] << 16 | (uint32_t)cf[2] << 8 | cf[3];
        if (cflags & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
                return -EPROTO;
        bool no_zeroes = cflags & NBD_FLAG_NO_ZEROES;
        for (unsigned n_opts = 0; n_opts < 256; n_opts++) {
                uint8_t h[16];
                r = read_full(c->fd, h, sizeof h);
                if (r < 0)
                        return r;
                uint64_t magic = (uint64_t)h[0] << 56 | (uint64_t)h[1] << 48 | (uint64_t)h[2] << 40 |
                                 (uint64_t)h[3] << 32 | (uint64_t)h[4] << 24 | (uint64_t)h[5] << 16 |
                                 (uint64_t)h[6] << 8 | h[7];
                uint32_t opt = (uint32_t)h[8] << 24 | (uint32_t)h[9] << 16 | (uint32_t)h[10] << 8 | h[11];
                uint32_t len = (uint32_t)h[12] << 24 | (uint32_t)h[13] << 16 | (uint32_t)h[14] << 8 | h[15];
                if (magic != NBD_IHAVEOPT)
                        return -EPROTO;
                if (len > NBD_OPTION_MAX) {
                        if (len > (1u << 20) || discard(c->fd, len) < 0)
                                return -EPROTO; /* not worth reading: hang up */
                        r = opt_reply(c, opt, NBD_REP_ERR_TOO_BIG, NULL, 0);
                        if (r < 0)
                                return r;
                        continue;
                }
                if ((r = st_buf_grow(&c->buf, &c->buf_cap, len + 1)) < 0 ||
                    (r = read_full(c->fd, c->buf, len)) < 0)
                        return r;
                nbd_option o;
                uint32_t err = nbd_option_parse(opt, c->buf, len, &o);
                if (opt == NBD_OPT_EXPORT_NAME) {
                        /* No way to report an error: a bad name ends the connection. */
                        if (err || open_export(c, o.name, o.name_len) < 0)
                                return 0;
                        uint8_t rep[10 + 124] = { 0 };
                        put_be64(rep, c->caps.size);
                        put_be16(rep + 8, export_flags(c));
                        r = send_all(c->fd, rep, no_zeroes ? 10 : sizeof rep);
                        return r < 0 ? r : 1;
                }
                if (err) {
                        r = opt_reply(c, opt, err, NULL, 0);
                        if (r < 0)
                                return r;
                        continue;
                }
                switch (opt) {
                case NBD_OPT_ABORT:
                        (void)opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
                        return 0;
                case NBD_OPT_LIST:
                        r = do_list(c);
                        break;
                case NBD_OPT_STRUCTURED_REPLY:
                        c->structured = true;
                        r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
                        break;
                case NBD_OPT_LIST_META_CONTEXT:
                case NBD_OPT_SET_META_CONTEXT:
                        r = do_meta(c, &o);
                        break;
                case NBD_OPT_INFO:
                case NBD_OPT_GO:
                        r = do_info(c, &o);
                        if (r == 0 && opt == NBD_OPT_GO && c->ex)
                                return 1;
                        break;
                default:
                        r = opt_reply(c, opt, NBD_REP_ERR_UNSUP, NULL, 0);
                }
                if (r < 0)
                        return r;
        }
        return -EPROTO; /* an endless stream of options */
}

/* ---- transmission ---- */

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

static int simple_reply(conn *c, uint64_t cookie, uint32_t err, const void *data, size_t len) {
        uint8_t h[16];
        put_be32(h, NBD_SIMPLE_REPLY_MAGIC);
        put_be32(h + 4, err);
        put_be64(h + 8, cookie);
        struct iovec iov[2] = { { h, sizeof h }, { (void *)data, len } };
        return send_iov(c->fd, iov, len ? 2 : 1);
}

static void chunk_header(uint8_t h[20], uint16_t flags, uint16_t type, uint64_t cookie, uint32_t len) {
        put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
        put_be16(h + 4, flags);
        put_be16(h + 6, type);
        put_be64(h + 8, cookie);
        put_be32(h + 16, len);
}

static int error_reply(conn *c, const nbd_request *q, uint32_t err) {
        if (!c->structured)
                return simple_reply(c, q->cookie, err, NULL, 0);
        uint8_t h[20 + 6];
        chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR, q->cookie, 6);
        put_be32(h + 20, err);
        put_be16(h + 24, 0);
        return send_all(c->fd, h, sizeof h);
}

static int ok_reply(conn *c, const nbd_request *q) {
        if (!c->structured)
                return simple_reply(c, q->cookie, 0, NULL, 0);
        uint8_t h[20];
        chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, q->cookie, 0);
        return send_all(c->fd, h, sizeof h);
}

/* Structured read: data chunks for data, hole chunks for zeros. The extents
 * are collected first and sent after st_volume_map returns: sending while
 * it holds the volume's lock would let a client that stops reading stall
 * every writer of that volume. */
typedef struct read_extent {
        uint64_t off, len;
        bool hole;
} read_extent;

static int collect_extent(void *ctx, uint64_t off, uint64_t len, unsigned flags) {
        conn *c = ctx;
        size_t need = (c->n_ext + 1) * sizeof(read_extent);
        if (st_buf_grow(&c->ext, &c->ext_cap, need) < 0)
                return -ENOMEM;
        ((read_extent *)(void *)c->ext)[c->n_ext++] =
                (read_extent){ off, len, (flags & ST_EXTENT_HOLE) != 0 };
        return 0;
}

static int send_extents(conn *c, const nbd_request *q) {
        const read_extent *x = (const read_extent *)(const void *)c->ext;
        for (size_t i = 0; i < c->n_ext; i++) {
                uint16_t f = i + 1 == c->n_ext ? NBD_REPLY_FLAG_DONE : 0;
                uint8_t h[20 + 12];
                int r;
                if (x[i].hole) {
                        chunk_header(h, f, NBD_REPLY_TYPE_OFFSET_HOLE, q->cookie, 12);
                        put_be64(h + 20, x[i].off);
                        put_be32(h + 28, (uint32_t)x[i].len);
                        r = send_all(c->fd, h, 32);
                } else {
                        chunk_header(h, f, NBD_REPLY_TYPE_OFFSET_DATA, q->cookie,
                                     (uint32_t)(8 + x[i].len));
                        put_be64(h + 20, x[i].off);
                        struct iovec iov[2] = { { h, 28 },
                                                { c->buf + (x[i].off - q->offset), (size_t)x[i].len } };
                        r = send_iov(c->fd, iov, 2);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int do_read(conn *c, st_volume *v, const nbd_request *q) {
        int r = st_buf_grow(&c->buf, &c->buf_cap, q->length ? q->length : 1);
        if (r == 0)
                r = st_volume_read(v, c->buf, q->length, q->offset);
        if (r < 0)
                return error_reply(c, q, wire_error(r));
        if (!c->structured)
                return simple_reply(c, q->cookie, 0, c->buf, q->length);
        if (q->length == 0 || (q->flags & NBD_CMD_FLAG_DF)) {
                if (q->length == 0)
                        return ok_reply(c, q);
                uint8_t h[28];
                chunk_header(h, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_OFFSET_DATA, q->cookie,
                             8 + q->length);
                put_be64(h + 20, q->offset);
                struct iovec iov[2] = { { h, 28 }, { c->buf, q->length } };
                return send_iov(c->fd, iov, 2);
        }
        /* The data is read already; map only says which parts are holes. */
        c->n_ext = 0;
        r = st_volume_map(v, q->offset, q->length, ST_EXTENT_HOLE, collect_extent, c);
        if (r < 0)
                return error_reply(c, q, wire_error(r));
        return send_extents(c, q);
}

/* Block status: descriptors per context, merged when equal. */
static int status_extent(void *ctx, uint64_t off, uint64_t len, unsigned flags) {
        (void)off;
        conn *c = ctx;
        uint32_t st = c->desc_ctx == NBD_META_BASE_ALLOCATION
                              ? ((flags & ST_EXTENT_HOLE) ? NBD_STATE_HOLE | NBD_STATE_ZERO : 0)
                              : ((flags & ST_EXTENT_SHARED) ? 1u : 0);
        while (len > 0) {
                uint32_t l = len > 0x80000000u ? 0x80000000u : (uint32_t)len;
                uint8_t *last = c->n_desc ? c->desc + 8 * (c->n_desc - 1) : NULL;
                uint32_t last_len = last ? ((uint32_t)last[0] << 24 | (uint32_t)last[1] << 16 |
                                            (uint32_t)last[2] << 8 | last[3])
                                         : 0;
                if (last && c->desc_last == st && (uint64_t)last_len + l <= 0xffffffffu) {
                        put_be32(last, last_len + l);
                } else {
                        if (c->n_desc == c->desc_max)
                                return 1; /* enough */
                        if (st_buf_grow(&c->desc, &c->desc_cap, 8 * (c->n_desc + 1)) < 0)
                                return -ENOMEM;
                        put_be32(c->desc + 8 * c->n_desc, l);
                        put_be32(c->desc + 8 * c->n_desc + 4, st);
                        c->n_desc++;
                        c->desc_last = st;
                }
                len -= l;
        }
        return 0;
}

static int do_block_status(conn *c, st_volume *v, const nbd_request *q) {
        int r = 0;
        unsigned remaining = __builtin_popcount(c->meta);
        for (uint32_t id = NBD_META_BASE_ALLOCATION; r == 0 && id <= NBD_META_STELLAR_SHARED; id++) {
                if (!(c->meta & (1u << id)))
                        continue;
                c->n_desc = 0;
                c->desc_ctx = id;
                c->desc_max = (q->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : 4096;
                int k = st_volume_map(v, q->offset, q->length,
                                      id == NBD_META_BASE_ALLOCATION ? ST_EXTENT_HOLE
                                                                     : ST_EXTENT_SHARED,
                                      status_extent, c);
                if (k < 0)
                        return error_reply(c, q, wire_error(k));
                if (c->n_desc == 0) { /* a zero-length query still gets one descriptor */
                        if (st_buf_grow(&c->desc, &c->desc_cap, 8) < 0)
                                return -ENOMEM;
                        put_be32(c->desc, q->length);
                        put_be32(c->desc + 4, 0);
                        c->n_desc = 1;
                }
                uint8_t h[24];
                chunk_header(h, --remaining == 0 ? NBD_REPLY_FLAG_DONE : 0,
                             NBD_REPLY_TYPE_BLOCK_STATUS, q->cookie, (uint32_t)(4 + 8 * c->n_desc));
                put_be32(h + 20, id);
                struct iovec iov[2] = { { h, 24 }, { c->desc, 8 * c->n_desc } };
                r = send_iov(c->fd, iov, 2);
        }
        return r;
}

static int transmission(conn *c) {
        st_volume *v = export_volume(c->ex);
        c->caps.structured = c->structured;
        for (;;) {
                if (*c->ctx->stopping)
                        return 0;
                uint8_t hdr[28];
                int r = read_full(c->fd, hdr, sizeof hdr);
                if (r < 0)
                        return r;
                nbd_request q;
                if (!nbd_request_decode(hdr, &q))
                        return -EPROTO;
                bool hangup;
                uint32_t err = nbd_request_validate(&q, &c->caps, &hangup);
                if (hangup)
                        return -EPROTO;
                if (q.type == NBD_CMD_WRITE) {
                        /* The payload follows whatever the verdict. */
                        if ((r = st_buf_grow(&c->buf, &c->buf_cap, q.length ? q.length : 1)) < 0 ||
                            (r = read_full(c->fd, c->buf, q.length)) < 0)
                                return r;
                }
                if (err) {
                        r = error_reply(c, &q, err);
                        if (r < 0)
                                return r;
                        continue;
                }
                unsigned fua = (q.flags & NBD_CMD_FLAG_FUA) ? ST_WRITE_FUA : 0;
                switch (q.type) {
                case NBD_CMD_DISC:
                        return 0;
                case NBD_CMD_READ:
                        r = do_read(c, v, &q);
                        break;
                case NBD_CMD_WRITE:
                        r = st_volume_write(v, c->buf, q.length, q.offset, fua);
                        r = r < 0 ? error_reply(c, &q, wire_error(r)) : ok_reply(c, &q);
                        break;
                case NBD_CMD_FLUSH:
                        r = st_volume_flush(v);
                        r = r < 0 ? error_reply(c, &q, wire_error(r)) : ok_reply(c, &q);
                        break;
                case NBD_CMD_TRIM:
                        r = st_volume_discard(v, q.offset, q.length);
                        if (r == 0 && fua)
                                r = st_volume_flush(v);
                        r = r < 0 ? error_reply(c, &q, wire_error(r)) : ok_reply(c, &q);
                        break;
                case NBD_CMD_WRITE_ZEROES:
                        r = st_volume_write_zeroes(v, q.offset, q.length,
                                                   fua | ((q.flags & NBD_CMD_FLAG_NO_HOLE)
                                                                  ? ST_WRITE_NO_HOLE
                                                                  : 0));
                        r = r < 0 ? error_reply(c, &q, wire_error(r)) : ok_reply(c, &q);
                        break;
                case NBD_CMD_CACHE:
                        (void)st_volume_prefetch(v, q.offset, q.length); /* a hint */
                        r = ok_reply(c, &q);
                        break;
                case NBD_CMD_BLOCK_STATUS:
                        r = do_block_status(c, v, &q);
                        break;
                default:
                        r = error_reply(c, &q, NBD_EINVAL);
                }
                if (r < 0)
                        return r;
        }
}

void nbd_conn_run(const conn_ctx *ctx, int fd) {
        conn c = { .ctx = ctx, .fd = fd };
        /* A client has 30 s for the whole handshake. */
        deadline_ns = now_ns() + HANDSHAKE_NS;
        int r = handshake(&c);
        deadline_ns = 0;
        if (r == 1) {
                struct timeval tv = { 0 };
                (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                (void)transmission(&c);
        }
        if (c.ex)
                export_put(c.ex);
        free(c.buf);
        free(c.ext);
        free(c.desc);
        close(fd);
}
