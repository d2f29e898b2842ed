/* SPDX-License-Identifier: Apache-2.0 */
/* A published chunk: one zstd frame with its content size, named by the
 * BLAKE3 of the decompressed bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <stellar/common.h>

/* The largest blob accepted: a frame of the largest chunk. */
size_t blob_max_len(void);

/* Check that blob (len bytes) is exactly one zstd frame whose content is at
 * most ST_CHUNK_MAX_LIMIT bytes and hashes to id. The content goes to *out
 * (grown as needed; dctx: a ZSTD_DCtx or NULL). Returns the content length,
 * or -EBADMSG with *why set. */
int64_t blob_verify(const st_digest *id, const uint8_t *blob, size_t len, uint8_t **out,
                    size_t *out_cap, void *dctx, const char **why);
