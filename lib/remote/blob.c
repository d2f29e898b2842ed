/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <stellar/chunker.h>
#include <stellar/hash.h>

#include "../util/fs.h"
#include "blob.h"

void blob_key(const st_digest *id, char *out, size_t out_len) {
        char hex[ST_DIGEST_HEX_LEN + 1];
        st_digest_to_hex(id, hex);
        snprintf(out, out_len, "blobs/%s", hex);
}

size_t blob_max_len(void) {
        return ZSTD_compressBound(ST_CHUNK_MAX_LIMIT);
}

int64_t blob_verify(const st_digest *id, const uint8_t *blob, size_t len, uint8_t **out,
                    size_t *out_cap, void *dctx, const char **why) {
        unsigned long long n = ZSTD_getFrameContentSize(blob, len);
        if (n == ZSTD_CONTENTSIZE_ERROR) {
                *why = "blob is not a zstd frame";
                return -EBADMSG;
        }
        if (n == ZSTD_CONTENTSIZE_UNKNOWN || n > ST_CHUNK_MAX_LIMIT) {
                *why = "blob's zstd frame has no content size, or one too large";
                return -EBADMSG;
        }
        size_t fl = ZSTD_findFrameCompressedSize(blob, len);
        if (ZSTD_isError(fl) || fl != len) {
                *why = "blob is not exactly one zstd frame (truncated or trailing bytes)";
                return -EBADMSG;
        }
        if (st_buf_grow(out, out_cap, n ? (size_t)n : 1) < 0)
                return -ENOMEM;
        size_t got = dctx ? ZSTD_decompressDCtx(dctx, *out, (size_t)n, blob, len)
                          : ZSTD_decompress(*out, (size_t)n, blob, len);
        if (ZSTD_isError(got) || got != n) {
                *why = "blob does not decompress";
                return -EBADMSG;
        }
        st_digest h;
        st_hash(*out, (size_t)n, &h);
        if (memcmp(h.b, id->b, ST_DIGEST_LEN) != 0) {
                *why = "blob's bytes do not match its name (BLAKE3 mismatch)";
                return -EBADMSG;
        }
        return (int64_t)n;
}

int chunk_batch_add(chunk_batch *b, const st_digest *id, const uint8_t *blob, size_t blob_len,
                    const uint8_t *raw, size_t raw_len) {
        bool z = blob_len < raw_len;
        const uint8_t *src = z ? blob : raw;
        size_t len = z ? blob_len : raw_len;
        if (st_buf_grow(&b->buf, &b->cap, b->len + len) < 0)
                return -ENOMEM;
        if (b->n == b->cap_items) {
                size_t cap = b->cap_items ? b->cap_items * 2 : 256;
                store_put *it = realloc(b->items, cap * sizeof *it);
                if (it)
                        b->items = it;
                size_t *of = realloc(b->offs, cap * sizeof *of);
                if (of)
                        b->offs = of;
                if (!it || !of)
                        return -ENOMEM;
                b->cap_items = cap;
        }
        memcpy(b->buf + b->len, src, len);
        b->offs[b->n] = b->len;
        b->items[b->n++] = (store_put){ .hash = *id, .stored_len = (uint32_t)len,
                                        .raw_len = (uint32_t)raw_len, .zstd = z };
        b->len += len;
        return 0;
}

int chunk_batch_flush(chunk_batch *b, st_store *s, uint64_t *ret_stored) {
        for (size_t i = 0; i < b->n; i++)
                b->items[i].payload = b->buf + b->offs[i];
        int r = b->n ? store_put_chunks(s, b->items, b->n, ret_stored) : 0;
        b->n = 0;
        b->len = 0;
        return r;
}

void chunk_batch_free(chunk_batch *b) {
        free(b->buf);
        free(b->items);
        free(b->offs);
        *b = (chunk_batch){ 0 };
}
