/* SPDX-License-Identifier: Apache-2.0 */
/* Pack file encoding, decoding and scanning; see pack.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zstd.h>

#include <stellar/chunker.h>
#include <stellar/hash.h>

#include "../util/diag.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "pack.h"

static void diag_set(st_diag *d, uint64_t off, const char *what) {
        (void)st_diag_fail(d, NULL, off, what, 0);
}

void pack_header_encode(uint8_t out[PACK_HEADER_LEN], uint32_t pack_id) {
        memset(out, 0, PACK_HEADER_LEN);
        memcpy(out, PACK_MAGIC, 8);
        st_le32_put(out + 8, PACK_VERSION);
        st_le32_put(out + 12, PACK_HEADER_LEN);
        st_le32_put(out + 16, pack_id);
}

int pack_header_decode(const uint8_t *p, size_t len, uint32_t *ret_pack_id, st_diag *reterr) {
        if (len < PACK_HEADER_LEN) {
                diag_set(reterr, 0, "pack header truncated");
                return -EBADMSG;
        }
        if (memcmp(p, PACK_MAGIC, 8) != 0) {
                diag_set(reterr, 0, "not a pack file (bad magic)");
                return -EBADMSG;
        }
        if (st_le32_get(p + 8) != PACK_VERSION) {
                diag_set(reterr, 8, "unknown pack format version");
                return -EPROTONOSUPPORT;
        }
        if (st_le32_get(p + 12) != PACK_HEADER_LEN) {
                diag_set(reterr, 12, "bad pack header length");
                return -EBADMSG;
        }
        *ret_pack_id = st_le32_get(p + 16);
        return 0;
}

static uint64_t record_check(const uint8_t *p) {
        st_digest d;
        st_hash(p, 48, &d);
        return st_le64_get(d.b);
}

void pack_record_encode(uint8_t out[PACK_RECORD_HEADER_LEN], const pack_record *r) {
        st_le32_put(out, PACK_RECORD_MAGIC);
        st_le32_put(out + 4, r->flags);
        st_le32_put(out + 8, r->raw_len);
        st_le32_put(out + 12, r->stored_len);
        memcpy(out + 16, r->hash.b, 32);
        st_le64_put(out + 48, record_check(out));
}

int pack_record_decode(const uint8_t *p, size_t len, pack_record *ret, st_diag *reterr) {
        if (len < PACK_RECORD_HEADER_LEN) {
                diag_set(reterr, 0, "record header truncated");
                return -EBADMSG;
        }
        if (st_le32_get(p) != PACK_RECORD_MAGIC) {
                diag_set(reterr, 0, "bad record magic");
                return -EBADMSG;
        }
        if (st_le64_get(p + 48) != record_check(p)) {
                diag_set(reterr, 48, "record header checksum mismatch");
                return -EBADMSG;
        }
        pack_record r = {
                .flags = st_le32_get(p + 4),
                .raw_len = st_le32_get(p + 8),
                .stored_len = st_le32_get(p + 12),
        };
        memcpy(r.hash.b, p + 16, 32);
        if ((r.flags & ~(PACK_FLAG_ZSTD | PACK_FLAG_FRAME | PACK_FLAG_DEFERRED)) ||
            r.flags == PACK_FLAG_FRAME ||
            ((r.flags & PACK_FLAG_DEFERRED) && r.flags != PACK_FLAG_DEFERRED)) {
                diag_set(reterr, 4, "unknown record flags");
                return -EBADMSG;
        }
        if ((r.flags & PACK_FLAG_FRAME) &&
            (r.raw_len > PACK_FRAME_MAX_RAW ||
             r.stored_len <= pack_frame_table_len(2) ||
             r.stored_len > pack_frame_table_len(PACK_FRAME_MAX_CHUNKS) +
                                    ZSTD_COMPRESSBOUND(PACK_FRAME_MAX_RAW))) {
                diag_set(reterr, 8, "frame lengths out of range");
                return -EBADMSG;
        }
        if (r.raw_len == 0 || r.raw_len > ST_CHUNK_MAX_LIMIT || r.stored_len == 0 ||
            r.stored_len > ZSTD_COMPRESSBOUND(ST_CHUNK_MAX_LIMIT) ||
            (!(r.flags & PACK_FLAG_ZSTD) && r.stored_len != r.raw_len)) {
                diag_set(reterr, 8, "record lengths out of range");
                return -EBADMSG;
        }
        *ret = r;
        return 0;
}

int pack_walk(int fd, uint64_t from, uint64_t file_len, pack_walk_fn fn, void *ctx,
              uint64_t *ret_end, st_diag *reterr) {
        uint64_t off = from;
        int r = 0;
        while (off < file_len) {
                uint8_t hdr[PACK_RECORD_HEADER_LEN];
                pack_record rec;
                if (file_len - off < PACK_RECORD_HEADER_LEN) {
                        diag_set(reterr, off, "truncated record header");
                        break;
                }
                r = st_pread_full(fd, hdr, sizeof hdr, off);
                if (r < 0)
                        return r;
                st_diag d = { 0 };
                if (pack_record_decode(hdr, sizeof hdr, &rec, &d) < 0) {
                        diag_set(reterr, off + d.offset, d.what);
                        break;
                }
                if (file_len - off - PACK_RECORD_HEADER_LEN < rec.stored_len) {
                        diag_set(reterr, off, "truncated record payload");
                        break;
                }
                r = fn(ctx, off, &rec);
                if (r < 0)
                        return r;
                if (r > 0) {
                        diag_set(reterr, off, "record payload does not match its hash");
                        break;
                }
                off += PACK_RECORD_HEADER_LEN + rec.stored_len;
        }
        *ret_end = off;
        return 0;
}

void pack_name(char out[32], uint32_t pack_id) {
        snprintf(out, 32, "%08x.pack", pack_id);
}

bool pack_name_parse(const char *name, uint32_t *ret_id) {
        uint32_t id = 0;
        for (int i = 0; i < 8; i++) {
                char c = name[i];
                uint32_t v;
                if (c >= '0' && c <= '9')
                        v = (uint32_t)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v = (uint32_t)(c - 'a' + 10);
                else
                        return false;
                id = id << 4 | v;
        }
        if (strcmp(name + 8, ".pack") != 0)
                return false;
        *ret_id = id;
        return true;
}

size_t pack_frame_table_len(uint32_t n) {
        return PACK_FRAME_HEAD_LEN + (size_t)n * PACK_FRAME_SLOT_LEN;
}

void pack_frame_head_encode(uint8_t *table, uint32_t n, int level) {
        st_le32_put(table, n);
        st_le32_put(table + 4, (uint32_t)level);
}

void pack_frame_slot_encode(uint8_t *table, uint32_t k, const st_digest *hash, uint32_t len) {
        uint8_t *p = table + pack_frame_table_len(k);
        memcpy(p, hash->b, ST_DIGEST_LEN);
        st_le32_put(p + 32, len);
}

size_t pack_frame_bound(uint32_t n, size_t raw) {
        return pack_frame_table_len(n) + ZSTD_compressBound(raw);
}

int64_t pack_frame_build(void *cctx, int level, const pack_frame_src *src, uint32_t n,
                         uint8_t *gather, uint8_t *out, pack_record *ret) {
        size_t raw = 0;
        bool contiguous = true;
        pack_frame_head_encode(out, n, level);
        for (uint32_t k = 0; k < n; k++) {
                pack_frame_slot_encode(out, k, &src[k].hash, src[k].len);
                contiguous &= k == 0 || src[k].data == src[k - 1].data + src[k - 1].len;
                raw += src[k].len;
        }
        if (n < 2 || n > PACK_FRAME_MAX_CHUNKS || raw > PACK_FRAME_MAX_RAW)
                return -EINVAL;
        const uint8_t *in = src[0].data;
        if (!contiguous) {
                size_t at = 0;
                for (uint32_t k = 0; k < n; k++) {
                        memcpy(gather + at, src[k].data, src[k].len);
                        at += src[k].len;
                }
                in = gather;
        }
        size_t tlen = pack_frame_table_len(n);
        size_t z = ZSTD_compressCCtx(cctx, out + tlen, ZSTD_compressBound(raw), in, raw, level);
        if (ZSTD_isError(z))
                return -EIO;
        if (z + tlen >= raw)
                return 0;
        *ret = (pack_record){ .flags = PACK_FLAG_ZSTD | PACK_FLAG_FRAME, .raw_len = (uint32_t)raw,
                              .stored_len = (uint32_t)(tlen + z) };
        st_hash(out, tlen, &ret->hash);
        return (int64_t)(tlen + z);
}

int pack_frame_parse(const pack_record *r, const uint8_t *payload, pack_frame *ret) {
        if (!(r->flags & PACK_FLAG_FRAME) || r->stored_len < PACK_FRAME_HEAD_LEN)
                return -EBADMSG;
        uint32_t n = st_le32_get(payload);
        int32_t level = (int32_t)st_le32_get(payload + 4);
        if (n < 2 || n > PACK_FRAME_MAX_CHUNKS || level < PACK_FRAME_LEVEL_MIN || level > 22 ||
            pack_frame_table_len(n) >= r->stored_len)
                return -EBADMSG;
        size_t tlen = pack_frame_table_len(n);
        st_digest d;
        st_hash(payload, tlen, &d);
        if (memcmp(d.b, r->hash.b, ST_DIGEST_LEN) != 0)
                return -EBADMSG;
        uint64_t sum = 0;
        for (uint32_t k = 0; k < n; k++) {
                uint32_t len = st_le32_get(payload + pack_frame_table_len(k) + 32);
                if (len == 0)
                        return -EBADMSG;
                sum += len;
        }
        if (sum != r->raw_len)
                return -EBADMSG;
        *ret = (pack_frame){ .n = n, .level = level, .table = payload + PACK_FRAME_HEAD_LEN,
                             .zstd = payload + tlen, .zstd_len = r->stored_len - tlen };
        return 0;
}

void pack_frame_slot(const pack_frame *f, uint32_t k, st_digest *ret_hash, uint32_t *ret_off,
                     uint32_t *ret_len) {
        uint32_t off = 0;
        for (uint32_t i = 0; i < k; i++)
                off += st_le32_get(f->table + (size_t)i * PACK_FRAME_SLOT_LEN + 32);
        const uint8_t *p = f->table + (size_t)k * PACK_FRAME_SLOT_LEN;
        if (ret_hash)
                memcpy(ret_hash->b, p, ST_DIGEST_LEN);
        if (ret_off)
                *ret_off = off;
        if (ret_len)
                *ret_len = st_le32_get(p + 32);
}

int pack_frame_inflate(const pack_record *r, const pack_frame *f, void *out, void *dctx) {
        size_t n = dctx ? ZSTD_decompressDCtx(dctx, out, r->raw_len, f->zstd, f->zstd_len)
                        : ZSTD_decompress(out, r->raw_len, f->zstd, f->zstd_len);
        return ZSTD_isError(n) || n != r->raw_len ? -EBADMSG : 0;
}

int pack_payload_decode(const pack_record *r, const uint8_t *payload, void *out, void *dctx) {
        if (r->flags & PACK_FLAG_FRAME) {
                pack_frame f;
                if (pack_frame_parse(r, payload, &f) < 0 || pack_frame_inflate(r, &f, out, dctx) < 0)
                        return -EBADMSG;
                const uint8_t *at = out;
                for (uint32_t k = 0; k < f.n; k++) {
                        const uint8_t *slot = f.table + (size_t)k * PACK_FRAME_SLOT_LEN;
                        uint32_t len = st_le32_get(slot + 32);
                        st_digest got;
                        st_hash(at, len, &got);
                        if (memcmp(slot, got.b, ST_DIGEST_LEN) != 0)
                                return -EBADMSG;
                        at += len;
                }
                return 0;
        }
        if (r->flags & PACK_FLAG_ZSTD) {
                size_t n = dctx ? ZSTD_decompressDCtx(dctx, out, r->raw_len, payload, r->stored_len)
                                : ZSTD_decompress(out, r->raw_len, payload, r->stored_len);
                if (ZSTD_isError(n) || n != r->raw_len)
                        return -EBADMSG;
        } else
                memcpy(out, payload, r->raw_len);
        st_digest d;
        st_hash(out, r->raw_len, &d);
        if (memcmp(d.b, r->hash.b, ST_DIGEST_LEN) != 0)
                return -EBADMSG;
        return 0;
}
