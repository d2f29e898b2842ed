/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the NBD daemon's parsing gate (daemon/nbd/proto.c): every
 * option payload a client sends passes nbd_option_parse, every request
 * header nbd_request_decode and nbd_request_validate, before any handler
 * sees it. The bytes come straight off the network, with no checksum, so
 * there is no sealed run.
 *
 * An input is a sequence of records, each a tag byte and then:
 *   tag % 3 == 0  an option: a code byte (0xff: a 4-byte big-endian code
 *                 follows), a 2-byte little-endian payload length (cut to
 *                 what is left), the payload;
 *   tag % 3 == 1  a 28-byte request header, as sent (tag & 4: the magic is
 *                 made right);
 *   tag % 3 == 2  a 28-byte request header, magic made right, whose offset is
 *                 read as a signed distance from each export's size, so that
 *                 the range checks meet their boundaries.
 * Each request is validated against a table of export capabilities (sizes
 * from 0 to 2^64-1, read-only or writable, with or without structured
 * replies and a meta context).
 *
 * Checks: option parsing accepts exactly what an independent reading of
 * proto.md accepts, and a parsed name, query or info list lies within the
 * payload and holds no NUL; the request decode is the big-endian reading of
 * the header; validation accepts exactly the well-formed requests (a known
 * command, documented flags, DF only with structured replies, the range
 * within the export, reads and writes no longer than NBD_REQUEST_MAX, block
 * status only with a context and a non-zero length, writes only to a
 * writable export), hangs up exactly on a write longer than NBD_REQUEST_MAX,
 * and returns only the errors proto.md names for each case.
 */
#include "fuzz.h"
#include "nbd/proto.h"

static uint32_t rd32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t rd16(const uint8_t *p) {
        return (uint16_t)(p[0] << 8 | p[1]);
}
static uint64_t rd64(const uint8_t *p) {
        return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

/* An NBD string: at most 4096 bytes, no NUL. */
static bool str_ok(const uint8_t *s, uint64_t len) {
        if (len > 4096)
                return false;
        for (uint64_t i = 0; i < len; i++)
                if (s[i] == 0)
                        return false;
        return true;
}

static bool within(const void *p, uint64_t n, const uint8_t *data, size_t len) {
        const uint8_t *q = p;
        return q >= data && q <= data + len && n <= (uint64_t)(data + len - q);
}

/* The model: 1 accept, 0 reject, -1 reject and ERR_TOO_BIG is allowed too. */
static int option_model(uint32_t opt, const uint8_t *d, size_t len) {
        switch (opt) {
        case NBD_OPT_EXPORT_NAME:
                return str_ok(d, len);
        case NBD_OPT_ABORT:
        case NBD_OPT_LIST:
        case NBD_OPT_STRUCTURED_REPLY:
                return len == 0;
        case NBD_OPT_INFO:
        case NBD_OPT_GO: {
                if (len < 4)
                        return 0;
                uint64_t nl = rd32(d);
                if (4 + nl + 2 > len || !str_ok(d + 4, nl))
                        return 0;
                uint64_t n = rd16(d + 4 + nl);
                return 4 + nl + 2 + 2 * n == len;
        }
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT: {
                if (len < 4)
                        return 0;
                uint64_t nl = rd32(d);
                if (4 + nl + 4 > len || !str_ok(d + 4, nl))
                        return 0;
                uint64_t n = rd32(d + 4 + nl), at = 8 + nl;
                if (n > NBD_QUERIES_MAX)
                        return -1;
                for (uint64_t i = 0; i < n; i++) {
                        if (at + 4 > len)
                                return 0;
                        uint64_t ql = rd32(d + at);
                        at += 4;
                        if (at + ql > len || !str_ok(d + at, ql))
                                return 0;
                        at += ql;
                }
                return at == len;
        }
        default:
                return 0;
        }
}

static bool option_known(uint32_t opt) {
        switch (opt) {
        case NBD_OPT_EXPORT_NAME:
        case NBD_OPT_ABORT:
        case NBD_OPT_LIST:
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
        case NBD_OPT_STRUCTURED_REPLY:
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
                return true;
        default:
                return false; /* NBD_OPT_STARTTLS too: no TLS here */
        }
}

/* nbd_meta_matches against the rule: the exact name, or for LIST a
 * namespace prefix ending in its first colon ("base:"). */
static void check_meta_match(const char *q, uint32_t ql) {
        for (uint32_t id = 0; id < 4; id++) {
                const char *name = nbd_meta_name(id);
                FUZZ_ASSERT((name != NULL) == (id == NBD_META_BASE_ALLOCATION ||
                                               id == NBD_META_STELLAR_SHARED));
                for (int list = 0; list < 2; list++) {
                        bool m = nbd_meta_matches(q, ql, list, id);
                        if (!name) {
                                FUZZ_ASSERT(!m);
                                continue;
                        }
                        size_t nl = strlen(name);
                        bool exact = ql == nl && memcmp(q, name, nl) == 0;
                        const char *colon = memchr(name, ':', nl);
                        bool ns = list && ql == (size_t)(colon - name) + 1 &&
                                  memcmp(q, name, ql) == 0;
                        FUZZ_ASSERT(m == (exact || ns));
                }
        }
}

static void fuzz_option(uint32_t opt, const uint8_t *src, size_t len) {
        /* an exact-size copy, so ASan sees any read past the payload */
        uint8_t *d = malloc(len ? len : 1);
        if (!d)
                abort();
        memcpy(d, src, len);
        nbd_option o;
        uint32_t rc = nbd_option_parse(opt, d, len, &o);
        int model = option_model(opt, d, len);

        FUZZ_ASSERT(rc == 0 || rc == NBD_REP_ERR_INVALID || rc == NBD_REP_ERR_UNSUP ||
                    rc == NBD_REP_ERR_TOO_BIG);
        FUZZ_ASSERT(o.opt == opt);
        FUZZ_ASSERT((rc == NBD_REP_ERR_UNSUP) == !option_known(opt));
        if (rc == NBD_REP_ERR_TOO_BIG)
                FUZZ_ASSERT(model == -1);
        if (model == -1)
                FUZZ_ASSERT(rc == NBD_REP_ERR_TOO_BIG || rc == NBD_REP_ERR_INVALID);
        else
                FUZZ_ASSERT((rc == 0) == (model == 1));
        if (rc != 0) {
                free(d);
                return;
        }
        switch (opt) {
        case NBD_OPT_EXPORT_NAME:
                FUZZ_ASSERT((const uint8_t *)o.name == d && o.name_len == len);
                break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
                FUZZ_ASSERT((const uint8_t *)o.name == d + 4 && o.name_len == rd32(d));
                FUZZ_ASSERT(within(o.name, o.name_len, d, len));
                FUZZ_ASSERT(o.n_info == rd16(d + 4 + o.name_len));
                for (unsigned i = 0; i < o.n_info && i < 16; i++)
                        FUZZ_ASSERT(o.info[i] == rd16(d + 6 + o.name_len + 2 * i));
                break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT: {
                FUZZ_ASSERT((const uint8_t *)o.name == d + 4 && o.name_len == rd32(d));
                FUZZ_ASSERT(within(o.name, o.name_len, d, len));
                FUZZ_ASSERT(o.n_queries == rd32(d + 4 + o.name_len) &&
                            o.n_queries <= NBD_QUERIES_MAX);
                /* the queries tile the rest of the payload, each after its length */
                const uint8_t *at = d + 8 + o.name_len;
                for (uint32_t i = 0; i < o.n_queries; i++) {
                        FUZZ_ASSERT((const uint8_t *)o.query[i] == at + 4);
                        FUZZ_ASSERT(o.query_len[i] == rd32(at));
                        FUZZ_ASSERT(within(o.query[i], o.query_len[i], d, len));
                        FUZZ_ASSERT(str_ok((const uint8_t *)o.query[i], o.query_len[i]));
                        check_meta_match(o.query[i], o.query_len[i]);
                        at += 4 + o.query_len[i];
                }
                FUZZ_ASSERT(at == d + len);
                break;
        }
        default:
                FUZZ_ASSERT(len == 0);
                return free(d);
        }
        FUZZ_ASSERT(o.name_len <= NBD_NAME_MAX && str_ok((const uint8_t *)o.name, o.name_len));
        free(d);
}

/* ---- requests ---- */

static const uint64_t sizes[] = {
        0, 1, 512, 4096, 16u << 20, (32u << 20) + 1, 1ull << 40, UINT64_MAX - 4095, UINT64_MAX,
};

/* Flags proto.md documents for each command we serve. */
static uint16_t documented(uint16_t type) {
        switch (type) {
        case NBD_CMD_READ: return NBD_CMD_FLAG_DF;
        case NBD_CMD_WRITE: return NBD_CMD_FLAG_FUA;
        case NBD_CMD_TRIM: return NBD_CMD_FLAG_FUA;
        case NBD_CMD_WRITE_ZEROES: return NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
        case NBD_CMD_BLOCK_STATUS: return NBD_CMD_FLAG_REQ_ONE;
        default: return 0;
        }
}

static bool is_write(uint16_t type) {
        return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

static void check_validate(const nbd_request *q, const nbd_export_caps *caps) {
        bool hang = !!(q->cookie & 1); /* must be set either way */
        uint32_t err = nbd_request_validate(q, caps, &hang);
        bool known = q->type <= NBD_CMD_BLOCK_STATUS;
        bool in_range = q->offset <= caps->size && q->length <= caps->size - q->offset;
        bool ranged = q->type != NBD_CMD_DISC && q->type != NBD_CMD_FLUSH;
        bool too_long = (q->type == NBD_CMD_READ || q->type == NBD_CMD_WRITE) &&
                        q->length > NBD_REQUEST_MAX;
        /* block status needs a context, and a length (every descriptor has one);
         * DF only once structured replies are negotiated (NBD_FLAG_SEND_DF) */
        bool status_ok = q->type != NBD_CMD_BLOCK_STATUS || (caps->meta && q->length > 0);
        bool df_ok = !(q->type == NBD_CMD_READ && (q->flags & NBD_CMD_FLAG_DF)) || caps->structured;
        bool valid = known && !(q->flags & ~documented(q->type)) && (!ranged || in_range) &&
                     !too_long && status_ok && df_ok && (!is_write(q->type) || caps->writable);

        FUZZ_ASSERT(err == 0 || err == NBD_EINVAL || err == NBD_EPERM || err == NBD_ENOSPC ||
                    err == NBD_EOVERFLOW);
        FUZZ_ASSERT((err == 0) == valid);
        /* hang up exactly when a write's payload is more than we will read */
        FUZZ_ASSERT(hang == (q->type == NBD_CMD_WRITE && q->length > NBD_REQUEST_MAX));
        FUZZ_ASSERT(!hang || err != 0);
        if (!known)
                FUZZ_ASSERT(err == NBD_EINVAL || hang);
        if (err == NBD_EPERM)
                FUZZ_ASSERT(is_write(q->type) && !caps->writable);
        if (err == NBD_ENOSPC)
                FUZZ_ASSERT((q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES) &&
                            !in_range);
        if (err == NBD_EOVERFLOW)
                FUZZ_ASSERT(q->type == NBD_CMD_READ && q->length > NBD_REQUEST_MAX);
        if (err == 0 && ranged) /* no wrap-around: the end is representable and inside */
                FUZZ_ASSERT(q->offset + q->length >= q->offset &&
                            q->offset + q->length <= caps->size);
}

static void fuzz_request(const uint8_t hdr[28], bool relative) {
        nbd_request q;
        memset(&q, 0x5a, sizeof q);
        bool ok = nbd_request_decode(hdr, &q);
        FUZZ_ASSERT(ok == (rd32(hdr) == NBD_REQUEST_MAGIC));
        if (!ok)
                return;
        FUZZ_ASSERT(q.flags == rd16(hdr + 4) && q.type == rd16(hdr + 6) &&
                    q.cookie == rd64(hdr + 8) && q.offset == rd64(hdr + 16) &&
                    q.length == rd32(hdr + 24));
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
                for (unsigned m = 0; m < 6; m++) {
                        /* meta contexts need structured replies: no meta without them */
                        nbd_export_caps caps = {
                                .size = sizes[i],
                                .writable = m & 1,
                                .structured = m >= 2,
                                .meta = m >= 4,
                        };
                        nbd_request r = q;
                        if (relative)
                                r.offset = caps.size + q.offset; /* wraps: a signed distance */
                        check_validate(&r, &caps);
                }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        size_t at = 0;
        while (at < len) {
                uint8_t tag = data[at++];
                if (tag % 3 == 0) {
                        if (len - at < 1)
                                break;
                        uint32_t opt = data[at++];
                        if (opt == 0xff) {
                                if (len - at < 4)
                                        break;
                                opt = rd32(data + at);
                                at += 4;
                        }
                        size_t n = 0;
                        if (len - at >= 2) {
                                n = (size_t)data[at] | (size_t)data[at + 1] << 8;
                                at += 2;
                        }
                        if (n > len - at)
                                n = len - at;
                        fuzz_option(opt, data + at, n);
                        at += n;
                } else {
                        uint8_t hdr[28] = { 0 };
                        size_t n = len - at < 28 ? len - at : 28;
                        memcpy(hdr, data + at, n);
                        at += n;
                        if (tag % 3 == 2 || (tag & 4)) {
                                hdr[0] = (uint8_t)(NBD_REQUEST_MAGIC >> 24);
                                hdr[1] = (uint8_t)(NBD_REQUEST_MAGIC >> 16);
                                hdr[2] = (uint8_t)(NBD_REQUEST_MAGIC >> 8);
                                hdr[3] = (uint8_t)NBD_REQUEST_MAGIC;
                        }
                        fuzz_request(hdr, tag % 3 == 2);
                }
        }
        return 0;
}
