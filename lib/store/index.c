/* SPDX-License-Identifier: Apache-2.0 */
/* In-RAM chunk index; see index.h for the memory budget. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../util/le.h"
#include "index.h"

#define SEG_SHIFT 14
#define SEG_ENTRIES (1u << SEG_SHIFT)

struct chunk_index {
        index_entry **segs;
        size_t n_segs;
        uint32_t n;
        uint32_t *slots; /* entry id + 1; 0 = empty */
        size_t cap;      /* power of two */
};

chunk_index *index_new(void) {
        chunk_index *x = calloc(1, sizeof *x);
        if (!x)
                return NULL;
        x->cap = 1024;
        x->slots = calloc(x->cap, sizeof(uint32_t));
        if (!x->slots) {
                free(x);
                return NULL;
        }
        return x;
}

chunk_index *index_free(chunk_index *x) {
        if (!x)
                return NULL;
        for (size_t i = 0; i < x->n_segs; i++)
                free(x->segs[i]);
        free(x->segs);
        free(x->slots);
        free(x);
        return NULL;
}

uint32_t index_count(const chunk_index *x) {
        return x->n;
}

uint64_t index_ram_bytes(const chunk_index *x) {
        return (uint64_t)x->n_segs * SEG_ENTRIES * sizeof(index_entry) +
               (uint64_t)x->n_segs * sizeof(void *) + (uint64_t)x->cap * sizeof(uint32_t) +
               sizeof *x;
}

index_entry *index_get(const chunk_index *x, uint32_t id) {
        return &x->segs[id >> SEG_SHIFT][id & (SEG_ENTRIES - 1)];
}

static size_t slot_of(const uint8_t *prefix, size_t cap) {
        /* BLAKE3 output is uniform: its first bytes are a fine table hash. */
        return (size_t)(st_le64_get(prefix) & (cap - 1));
}

uint32_t index_find(const chunk_index *x, const st_digest *hash) {
        for (size_t i = slot_of(hash->b, x->cap);; i = (i + 1) & (x->cap - 1)) {
                uint32_t s = x->slots[i];
                if (s == 0)
                        return INDEX_NONE;
                if (memcmp(index_get(x, s - 1)->prefix, hash->b, INDEX_PREFIX_LEN) == 0)
                        return s - 1;
        }
}

static void slots_put(uint32_t *slots, size_t cap, const uint8_t *prefix, uint32_t id) {
        size_t i = slot_of(prefix, cap);
        while (slots[i] != 0)
                i = (i + 1) & (cap - 1);
        slots[i] = id + 1;
}

static int slots_rebuild(chunk_index *x, size_t cap) {
        uint32_t *slots = calloc(cap, sizeof(uint32_t));
        if (!slots)
                return -ENOMEM;
        for (uint32_t id = 0; id < x->n; id++)
                slots_put(slots, cap, index_get(x, id)->prefix, id);
        free(x->slots);
        x->slots = slots;
        x->cap = cap;
        return 0;
}

uint32_t index_add_prefix(chunk_index *x, const index_entry *e) {
        if (x->n == INDEX_NONE - 1)
                return INDEX_NONE;
        if ((uint64_t)(x->n + 1) * 4 > (uint64_t)x->cap * 3 && slots_rebuild(x, x->cap * 2) < 0)
                return INDEX_NONE;
        uint32_t id = x->n;
        if ((id >> SEG_SHIFT) >= x->n_segs) {
                index_entry **segs = realloc(x->segs, (x->n_segs + 1) * sizeof(*segs));
                if (!segs)
                        return INDEX_NONE;
                x->segs = segs;
                segs[x->n_segs] = malloc(SEG_ENTRIES * sizeof(index_entry));
                if (!segs[x->n_segs])
                        return INDEX_NONE;
                x->n_segs++;
        }
        *index_get(x, id) = *e;
        x->n++;
        slots_put(x->slots, x->cap, e->prefix, id);
        return id;
}

uint32_t index_add(chunk_index *x, const st_digest *hash, const index_entry *e) {
        index_entry t = *e;
        memcpy(t.prefix, hash->b, INDEX_PREFIX_LEN);
        return index_add_prefix(x, &t);
}

static size_t cap_for(uint32_t n) {
        size_t cap = 1024;
        while ((uint64_t)n * 4 > (uint64_t)cap * 3)
                cap *= 2;
        return cap;
}

static void segs_trim(chunk_index *x) {
        size_t need = (x->n + SEG_ENTRIES - 1) >> SEG_SHIFT;
        while (x->n_segs > need)
                free(x->segs[--x->n_segs]);
}

int index_filter(chunk_index *x, bool (*keep)(void *ctx, uint32_t id, const index_entry *e),
                 void *ctx) {
        uint32_t w = 0;
        for (uint32_t id = 0; id < x->n; id++) {
                index_entry *e = index_get(x, id);
                if (!keep(ctx, id, e))
                        continue;
                if (w != id)
                        *index_get(x, w) = *e;
                w++;
        }
        x->n = w;
        segs_trim(x);
        return slots_rebuild(x, cap_for(w));
}

int index_truncate(chunk_index *x, uint32_t n) {
        if (n >= x->n)
                return 0;
        uint32_t old = x->n;
        x->n = n;
        int r = slots_rebuild(x, x->cap);
        if (r < 0) {
                x->n = old;
                return r;
        }
        segs_trim(x);
        return 0;
}
