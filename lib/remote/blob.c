/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <zstd.h>

#include <stellar/chunker.h>
#include <stellar/hash.h>

#include "../util/fs.h"
#include "blob.h"

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
