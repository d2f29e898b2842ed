/* SPDX-License-Identifier: Apache-2.0 */
/* A published chunk: one zstd frame with its content size, named by the
 * BLAKE3 of the decompressed bytes. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <stellar/common.h>

#include "../store/store-api.h"

/* "blobs/<hex>": where chunk id lives in a tree. */
void blob_key(const st_digest *id, char *out, size_t out_len);

/* The largest blob accepted: a frame of the largest chunk. */
size_t blob_max_len(void);

/* Check that blob (len bytes) is exactly one zstd frame whose content is at
 * most ST_CHUNK_MAX_LIMIT bytes and hashes to id. The content goes to *out
 * (grown as needed; dctx: a ZSTD_DCtx or NULL). Returns the content length,
 * or -EBADMSG with *why set. */
int64_t blob_verify(const st_digest *id, const uint8_t *blob, size_t len, uint8_t **out,
                    size_t *out_cap, void *dctx, const char **why);

/* Verified chunks waiting to be appended to the store in one go. */
typedef struct chunk_batch {
        uint8_t *buf; /* payloads, back to back */
        size_t len, cap;
        store_put *items;
        size_t *offs; /* each item's payload in buf (buf moves as it grows) */
        size_t n, cap_items;
} chunk_batch;

/* Add a verified chunk: its blob (a zstd frame) if that saves space, else
 * its raw bytes. */
int chunk_batch_add(chunk_batch *b, const st_digest *id, const uint8_t *blob, size_t blob_len,
                    const uint8_t *raw, size_t raw_len);
/* Append the batch to the store (store_put_chunks) and empty it. */
int chunk_batch_flush(chunk_batch *b, st_store *s, uint64_t *ret_stored);
void chunk_batch_free(chunk_batch *b);
