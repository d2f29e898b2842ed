/* SPDX-License-Identifier: Apache-2.0 */
/* For the targets that load into a bare st_store (fuzz-index, fuzz-index-log). */
#pragma once

#include <stellar/chunker.h>

#include "fuzz.h"
#include "store/store-internal.h"

/* What the rest of the store trusts of a loaded index: packs sorted and in
 * range, every entry inside its pack, found by its own prefix, and naming
 * the record itself (slot 0) or a slot a frame may have. */
static inline void fuzz_check_index(st_store *s) {
        for (size_t i = 0; i < s->n_packs; i++) {
                FUZZ_ASSERT(s->packs[i].id < s->next_pack_id);
                FUZZ_ASSERT(i == 0 || s->packs[i - 1].id < s->packs[i].id);
                FUZZ_ASSERT(s->packs[i].len >= PACK_HEADER_LEN && s->packs[i].len <= PACK_MAX_SIZE);
        }
        uint32_t n = index_count(s->idx);
        for (uint32_t id = 0; id < n; id++) {
                const index_entry *e = index_get(s->idx, id);
                st_digest h = { 0 };
                memcpy(h.b, e->prefix, INDEX_PREFIX_LEN);
                FUZZ_ASSERT(index_find(s->idx, &h) == id);
                const store_pack *p = store_pack_find(s, e->pack);
                FUZZ_ASSERT(p && e->off >= PACK_HEADER_LEN);
                FUZZ_ASSERT((uint64_t)e->off + PACK_RECORD_HEADER_LEN + e->stored_len <= p->len);
                FUZZ_ASSERT(e->raw_len > 0 && e->raw_len <= ST_CHUNK_MAX_LIMIT);
                FUZZ_ASSERT(e->slot <= PACK_FRAME_MAX_CHUNKS);
        }
}
