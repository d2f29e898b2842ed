/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fixed newstyle handshake: greeting, then options (INFO, GO, LIST,
 * STRUCTURED_REPLY, meta contexts, EXPORT_NAME) until the client picks an
 * export or gives up. Options are parsed by proto.c's gate before use.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "wire.h"

static int opt_reply(conn *c, uint32_t opt, uint32_t type, const void *data, uint32_t len) {
        if (type & (1u << 31))
                serve_logf("nbd %s: option %u refused (reply 0x%x)%s%.*s", c->ctx->peer, opt, type,
                           len ? ": " : "", (int)len, len ? (const char *)data : "");
        uint8_t h[20];
        put_be64(h, NBD_REP_MAGIC);
        put_be32(h + 8, opt);
        put_be32(h + 12, type);
        put_be32(h + 16, len);
        struct iovec iov[2] = { { h, sizeof h }, { (void *)data, len } };
        return wire_send_iov(&c->w, iov, len ? 2 : 1);
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

int nbd_handshake(conn *c) {
        uint8_t g[18];
        put_be64(g, NBD_MAGIC);
        put_be64(g + 8, NBD_IHAVEOPT);
        put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        int r = wire_send(&c->w, g, sizeof g);
        uint8_t cf[4];
        if (r == 0)
                r = wire_read(&c->w, cf, 4);
        if (r < 0)
                return r;
        uint32_t cflags = (uint32_t)cf[0] << 24 | (uint32_t)cf[1] << 16 | (uint32_t)cf[2] << 8 | cf[3];
        if (cflags & ~(NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES))
                return -EPROTO;
        bool no_zeroes = cflags & NBD_FLAG_NO_ZEROES;
        for (unsigned n_opts = 0; n_opts < 256; n_opts++) {
                uint8_t h[16];
                r = wire_read(&c->w, h, sizeof h);
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
                        if (len > (1u << 20) || wire_skip(&c->w, len) < 0)
                                return -EPROTO; /* not worth reading: hang up */
                        r = opt_reply(c, opt, NBD_REP_ERR_TOO_BIG, NULL, 0);
                        if (r < 0)
                                return r;
                        continue;
                }
                if ((r = wire_buf_grow(&c->buf, &c->buf_cap, len + 1)) < 0 ||
                    (r = wire_read(&c->w, c->buf, len)) < 0)
                        return r;
                if (opt == NBD_OPT_STARTTLS) {
                        const char *why = len != 0        ? "STARTTLS carries no data"
                                          : !c->ctx->tls ? "TLS is off on this server"
                                          : c->w.tls      ? "TLS is on already"
                                                          : NULL;
                        if (why) {
                                r = opt_reply(c, opt, c->ctx->tls || len ? NBD_REP_ERR_INVALID
                                                                          : NBD_REP_ERR_POLICY,
                                              why, (uint32_t)strlen(why));
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        if ((r = opt_reply(c, opt, NBD_REP_ACK, NULL, 0)) < 0 ||
                            (r = nbd_tls_start(c)) < 0)
                                return r;
                        /* What was negotiated in the clear does not carry over. */
                        c->structured = false;
                        c->meta = 0;
                        c->meta_export[0] = 0;
                        continue;
                }
                if (c->ctx->tls_required && !c->w.tls && opt != NBD_OPT_ABORT) {
                        if (opt == NBD_OPT_EXPORT_NAME) {
                                serve_logf("nbd %s: NBD_OPT_EXPORT_NAME without TLS: disconnected",
                                           c->ctx->peer);
                                return 0;
                        }
                        const char *msg = "TLS is required here (NBD_OPT_STARTTLS first)";
                        r = opt_reply(c, opt, NBD_REP_ERR_TLS_REQD, msg, (uint32_t)strlen(msg));
                        if (r < 0)
                                return r;
                        continue;
                }
                nbd_option o;
                uint32_t err = nbd_option_parse(opt, c->buf, len, &o);
                if (opt == NBD_OPT_EXPORT_NAME) {
                        /* No way to report an error: a bad name ends the connection. */
                        if (err || open_export(c, o.name, o.name_len) < 0)
                                return 0;
                        uint8_t rep[10 + 124] = { 0 };
                        put_be64(rep, c->caps.size);
                        put_be16(rep + 8, export_flags(c));
                        r = wire_send(&c->w, rep, no_zeroes ? 10 : sizeof rep);
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

