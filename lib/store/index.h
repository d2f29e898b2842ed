/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk index in RAM: hash -> (pack, offset, lengths, refcount).
 *
 * 40 bytes per entry in 640 KiB segments, plus a table of 32-bit slots
 * (open addressing, linear probing, load kept between 3/8 and 3/4): at most
 * 40 + 4/0.375 = 50.7 bytes per chunk, 44 on average. Only the first 16
 * bytes of the hash live in RAM; the full hash is in the pack record header,
 * and whoever relies on a match (dedup at import) checks it there.
 * Not thread-safe: the store serialises access.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/common.h>

#include "pack.h"

#define INDEX_PREFIX_LEN 16
#define INDEX_NONE UINT32_MAX
#define INDEX_PACK_PENDING UINT32_MAX /* entry reserved, record not yet written */

typedef struct index_entry {
        uint8_t prefix[INDEX_PREFIX_LEN];
        uint32_t pack;
        uint32_t off; /* of the record header in the pack */
        uint32_t stored_len; /* of the record's payload (a frame's: all of it) */
        uint32_t raw_len;    /* of the chunk */
        uint32_t refs;
        uint32_t slot;       /* 0: the record is this chunk; k + 1: slot k of a frame */
} index_entry;

_Static_assert(sizeof(index_entry) == 40, "index entry must stay 40 bytes");

/* The pack bytes an entry accounts for in the store's totals: a frame's
 * record is counted once, with its first slot. */
static inline uint64_t index_entry_stored(const index_entry *e) {
        return e->slot <= 1 ? PACK_RECORD_HEADER_LEN + (uint64_t)e->stored_len : 0;
}

typedef struct chunk_index chunk_index;

chunk_index *index_new(void);
chunk_index *index_free(chunk_index *x);
uint32_t index_count(const chunk_index *x);
/* Bytes of RAM held (segments and slot table). */
uint64_t index_ram_bytes(const chunk_index *x);

/* The entry id for hash, or INDEX_NONE. */
uint32_t index_find(const chunk_index *x, const st_digest *hash);
/* Add an entry (the hash must be absent). Returns its id, or INDEX_NONE on OOM. */
uint32_t index_add(chunk_index *x, const st_digest *hash, const index_entry *e);
/* Same, from a stored prefix (loading an index file). */
uint32_t index_add_prefix(chunk_index *x, const index_entry *e);
index_entry *index_get(const chunk_index *x, uint32_t id);
/* Drop every entry for which keep() says false, renumbering the rest;
 * rebuilds the slot table. Returns 0 or -ENOMEM. */
int index_filter(chunk_index *x, bool (*keep)(void *ctx, uint32_t id, const index_entry *e),
                 void *ctx);
/* Drop the newest entries so that n remain (undoing a failed import).
 * Returns 0 or -ENOMEM (then the index is unchanged). */
int index_truncate(chunk_index *x, uint32_t n);
