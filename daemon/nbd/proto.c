/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing and validation of NBD messages; see proto.h. */
#include <string.h>

#include "proto.h"

static uint32_t be32(const uint8_t *p) {
        return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint16_t be16(const uint8_t *p) {
        return (uint16_t)(p[0] << 8 | p[1]);
}
static uint64_t be64(const uint8_t *p) {
        return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static bool name_ok(const char *s, uint32_t len) {
        return len <= NBD_NAME_MAX && memchr(s, 0, len) == NULL;
}

uint32_t nbd_option_parse(uint32_t opt, const uint8_t *data, size_t len, nbd_option *ret) {
        memset(ret, 0, sizeof *ret);
        ret->opt = opt;
        switch (opt) {
        case NBD_OPT_EXPORT_NAME:
                if (!name_ok((const char *)data, (uint32_t)len))
                        return NBD_REP_ERR_INVALID;
                ret->name = (const char *)data;
                ret->name_len = (uint32_t)len;
                return 0;
        case NBD_OPT_ABORT:
        case NBD_OPT_LIST:
        case NBD_OPT_STRUCTURED_REPLY:
                return len == 0 ? 0 : NBD_REP_ERR_INVALID;
        case NBD_OPT_INFO:
        case NBD_OPT_GO: {
                if (len < 6)
                        return NBD_REP_ERR_INVALID;
                uint32_t nl = be32(data);
                if (nl > len - 6 || !name_ok((const char *)data + 4, nl))
                        return NBD_REP_ERR_INVALID;
                uint16_t n = be16(data + 4 + nl);
                if ((size_t)6 + nl + (size_t)n * 2 != len)
                        return NBD_REP_ERR_INVALID;
                ret->name = (const char *)data + 4;
                ret->name_len = nl;
                ret->n_info = n;
                for (uint16_t i = 0; i < n && i < 16; i++)
                        ret->info[i] = be16(data + 6 + nl + 2 * i);
                return 0;
        }
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT: {
                if (len < 8)
                        return NBD_REP_ERR_INVALID;
                uint32_t nl = be32(data);
                if (nl > len - 8 || !name_ok((const char *)data + 4, nl))
                        return NBD_REP_ERR_INVALID;
                ret->name = (const char *)data + 4;
                ret->name_len = nl;
                uint32_t n = be32(data + 4 + nl);
                size_t at = 8 + (size_t)nl;
                if (n > NBD_QUERIES_MAX)
                        return NBD_REP_ERR_TOO_BIG;
                for (uint32_t i = 0; i < n; i++) {
                        if (len - at < 4)
                                return NBD_REP_ERR_INVALID;
                        uint32_t ql = be32(data + at);
                        at += 4;
                        if (ql > len - at || !name_ok((const char *)data + at, ql))
                                return NBD_REP_ERR_INVALID;
                        ret->query[i] = (const char *)data + at;
                        ret->query_len[i] = ql;
                        at += ql;
                }
                if (at != len)
                        return NBD_REP_ERR_INVALID;
                ret->n_queries = n;
                return 0;
        }
        default:
                return NBD_REP_ERR_UNSUP;
        }
}

bool nbd_request_decode(const uint8_t hdr[28], nbd_request *ret) {
        if (be32(hdr) != NBD_REQUEST_MAGIC)
                return false;
        *ret = (nbd_request){
                .flags = be16(hdr + 4),
                .type = be16(hdr + 6),
                .cookie = be64(hdr + 8),
                .offset = be64(hdr + 16),
                .length = be32(hdr + 24),
        };
        return true;
}

uint32_t nbd_request_validate(const nbd_request *q, const nbd_export_caps *caps, bool *ret_hangup) {
        static const uint16_t allowed[] = {
                [NBD_CMD_READ] = NBD_CMD_FLAG_DF,
                [NBD_CMD_WRITE] = NBD_CMD_FLAG_FUA,
                [NBD_CMD_DISC] = 0,
                [NBD_CMD_FLUSH] = 0,
                [NBD_CMD_TRIM] = NBD_CMD_FLAG_FUA,
                [NBD_CMD_CACHE] = 0,
                [NBD_CMD_WRITE_ZEROES] = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
                [NBD_CMD_BLOCK_STATUS] = NBD_CMD_FLAG_REQ_ONE,
        };
        *ret_hangup = false;
        if (q->type == NBD_CMD_WRITE && q->length > NBD_REQUEST_MAX) {
                *ret_hangup = true; /* we will not read that much payload */
                return NBD_EINVAL;
        }
        if (q->type >= sizeof allowed / sizeof allowed[0])
                return NBD_EINVAL;
        if (q->flags & ~allowed[q->type])
                return NBD_EINVAL;
        if (q->type == NBD_CMD_DISC || q->type == NBD_CMD_FLUSH)
                return 0;
        if (q->type == NBD_CMD_READ && q->length > NBD_REQUEST_MAX)
                return NBD_EOVERFLOW;
        if (q->type == NBD_CMD_BLOCK_STATUS && (!caps->meta || q->length == 0))
                return NBD_EINVAL;
        if (q->type == NBD_CMD_READ && (q->flags & NBD_CMD_FLAG_DF) && !caps->structured)
                return NBD_EINVAL;
        if (q->offset > caps->size || q->length > caps->size - q->offset)
                return q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
                                                                                   : NBD_EINVAL;
        if (!caps->writable && (q->type == NBD_CMD_WRITE || q->type == NBD_CMD_TRIM ||
                                q->type == NBD_CMD_WRITE_ZEROES))
                return NBD_EPERM;
        return 0;
}

const char *nbd_meta_name(uint32_t id) {
        return id == NBD_META_BASE_ALLOCATION ? "base:allocation"
               : id == NBD_META_STELLAR_SHARED ? "stellar:shared"
                                               : NULL;
}

bool nbd_meta_matches(const char *q, uint32_t len, bool list, uint32_t id) {
        const char *name = nbd_meta_name(id);
        if (!name)
                return false;
        size_t nl = strlen(name);
        if (len == nl && memcmp(q, name, nl) == 0)
                return true;
        /* LIST may ask for a whole namespace: "base:" or "stellar:" */
        const char *colon = memchr(q, ':', len);
        return list && colon && (size_t)(colon - q) + 1 == len && strncmp(name, q, len) == 0;
}
