/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The memory tier: decompressed, verified chunks held once for every volume
 * and connection of a process, within a byte budget.
 *
 * The cache is split into shards by chunk id, each with its own lock, table
 * and budget, so readers of different chunks rarely meet. The table is open
 * addressing with linear probing and keeps each id's first 8 bytes beside
 * its entry, so a lookup touches the entry it finds and no other (a hit is
 * two cache misses: the slot and the entry). A hit only pins
 * the entry and sets its referenced bit: nothing is reordered. Eviction is
 * CLOCK: a hand sweeps the shard's ring of loaded entries, giving referenced
 * ones a second chance and never taking a pinned one.
 *
 * A miss leaves a placeholder that the caller fills (cache_fill) or abandons
 * (cache_abandon) once the lower tiers answered; concurrent misses on that
 * chunk wait for it, so N readers of N clones cost one read and one
 * decompression per chunk.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/le.h"
#include "store-internal.h"

#define CACHE_SHARDS 16u
_Static_assert(CACHE_SHARDS <= 32, "cache_put_many keeps a shard mask in 32 bits");

struct cache_entry {
        st_digest id;
        uint8_t *data;
        uint32_t len;
        unsigned pins;
        unsigned shard;
        bool loading;
        bool referenced;             /* used since the hand last passed */
        struct cache_entry *prev, *next; /* the clock ring (loaded entries) */
};

typedef struct cache_slot {
        uint64_t tag; /* the id's first 8 bytes */
        struct cache_entry *e; /* NULL: empty */
} cache_slot;

typedef struct cache_shard {
        pthread_mutex_t lock;
        pthread_cond_t loaded;
        cache_slot *table;
        size_t cap; /* power of two; at most half full, unless it could not grow */
        size_t n;
        uint64_t budget, used;
        struct cache_entry *hand; /* next to look at; NULL when the ring is empty */
        size_t n_ring;
        st_cache_stats stats;
} __attribute__((aligned(64))) cache_shard;

struct chunk_cache {
        cache_shard sh[CACHE_SHARDS];
};

/* The table uses the id's first 8 bytes, the shard the next ones. */
static unsigned shard_of(const st_digest *id) {
        return (unsigned)(st_le32_get(id->b + 8) % CACHE_SHARDS);
}

static uint64_t tag_of(const st_digest *id) {
        return st_le64_get(id->b);
}

static struct cache_entry *table_find(const cache_shard *h, const st_digest *id) {
        uint64_t t = tag_of(id);
        for (size_t i = t & (h->cap - 1);; i = (i + 1) & (h->cap - 1)) {
                const cache_slot *sl = &h->table[i];
                if (!sl->e)
                        return NULL;
                if (sl->tag == t && memcmp(&sl->e->id, id, sizeof *id) == 0)
                        return sl->e;
        }
}

static void slot_put(cache_slot *table, size_t cap, struct cache_entry *e) {
        uint64_t t = tag_of(&e->id);
        size_t i = t & (cap - 1);
        while (table[i].e)
                i = (i + 1) & (cap - 1);
        table[i] = (cache_slot){ t, e };
}

/* Room for one more entry: the table doubled at half full. false if it is
 * nearly full and could not grow. */
static bool table_room(cache_shard *h) {
        if (2 * (h->n + 1) <= h->cap)
                return true;
        size_t cap = h->cap * 2;
        cache_slot *t = calloc(cap, sizeof *t);
        if (!t)
                return h->n + 2 <= h->cap; /* fuller, still correct: one empty slot ends every probe */
        for (size_t i = 0; i < h->cap; i++)
                if (h->table[i].e)
                        slot_put(t, cap, h->table[i].e);
        free(h->table);
        /* (atomic: cache_get_hits reads both without the lock, only to
         * prefetch) */
        __atomic_store_n(&h->table, t, __ATOMIC_RELAXED);
        __atomic_store_n(&h->cap, cap, __ATOMIC_RELAXED);
        return true;
}

static void table_insert(cache_shard *h, struct cache_entry *e) {
        slot_put(h->table, h->cap, e);
        h->n++;
}

chunk_cache *cache_new(uint64_t budget) {
        chunk_cache *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        for (unsigned i = 0; i < CACHE_SHARDS; i++) {
                cache_shard *h = &c->sh[i];
                h->cap = 1024;
                h->table = calloc(h->cap, sizeof *h->table);
                if (!h->table) {
                        for (unsigned k = 0; k < i; k++)
                                free(c->sh[k].table);
                        free(c);
                        return NULL;
                }
                pthread_mutex_init(&h->lock, NULL);
                pthread_cond_init(&h->loaded, NULL);
                h->budget = budget / CACHE_SHARDS;
        }
        return c;
}

static void ring_add(cache_shard *h, struct cache_entry *e) {
        if (!h->hand) {
                e->prev = e->next = e;
                h->hand = e;
        } else { /* just behind the hand: the last it will reach */
                e->next = h->hand;
                e->prev = h->hand->prev;
                e->prev->next = e;
                h->hand->prev = e;
        }
        h->n_ring++;
}

static void ring_remove(cache_shard *h, struct cache_entry *e) {
        if (e->next == e)
                h->hand = NULL;
        else {
                e->prev->next = e->next;
                e->next->prev = e->prev;
                if (h->hand == e)
                        h->hand = e->next;
        }
        e->prev = e->next = NULL;
        h->n_ring--;
}

/* Remove e, then shift back the entries after it that it kept from their
 * home slots, so that no probe stops short of them. */
static void table_remove(cache_shard *h, struct cache_entry *e) {
        size_t mask = h->cap - 1, i = tag_of(&e->id) & mask;
        while (h->table[i].e != e) {
                if (!h->table[i].e)
                        return; /* (not there) */
                i = (i + 1) & mask;
        }
        for (size_t j = i;;) {
                j = (j + 1) & mask;
                if (!h->table[j].e)
                        break;
                size_t home = h->table[j].tag & mask;
                /* j's entry may move back to i unless its home lies in (i, j] */
                bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
                if (!stays) {
                        h->table[i] = h->table[j];
                        i = j;
                }
        }
        h->table[i] = (cache_slot){ 0 };
        h->n--;
}

/* Sweep until within budget: a referenced entry loses its bit and is
 * passed, a pinned one is passed, any other goes. Two turns of the ring at
 * most (all pinned: over budget until some are put back). */
static void evict(cache_shard *h) {
        for (size_t steps = 2 * h->n_ring; h->used > h->budget && h->hand && steps > 0; steps--) {
                struct cache_entry *e = h->hand;
                if (e->pins > 0 || e->referenced) {
                        e->referenced = false;
                        h->hand = e->next;
                        continue;
                }
                ring_remove(h, e);
                table_remove(h, e);
                h->used -= e->len;
                h->stats.evictions++;
                free(e->data);
                free(e);
        }
}

chunk_cache *cache_free(chunk_cache *c) {
        if (!c)
                return NULL;
        for (unsigned i = 0; i < CACHE_SHARDS; i++) {
                cache_shard *h = &c->sh[i];
                for (size_t k = 0; k < h->cap; k++)
                        if (h->table[k].e) {
                                free(h->table[k].e->data);
                                free(h->table[k].e);
                        }
                free(h->table);
                pthread_mutex_destroy(&h->lock);
                pthread_cond_destroy(&h->loaded);
        }
        free(c);
        return NULL;
}

int cache_get(chunk_cache *c, const st_digest *id, cache_entry **ret) {
        unsigned si = shard_of(id);
        cache_shard *h = &c->sh[si];
        pthread_mutex_lock(&h->lock);
        struct cache_entry *e;
        for (;;) {
                e = table_find(h, id);
                if (!e || !e->loading)
                        break;
                h->stats.waits++;
                pthread_cond_wait(&h->loaded, &h->lock); /* another reader is loading it */
        }
        if (e) {
                e->pins++;
                e->referenced = true;
                h->stats.hits++;
                pthread_mutex_unlock(&h->lock);
                *ret = e;
                return 0;
        }
        /* A miss: a placeholder the caller fills from the tiers below. */
        h->stats.misses++;
        e = table_room(h) ? calloc(1, sizeof *e) : NULL;
        if (!e) {
                pthread_mutex_unlock(&h->lock);
                return -ENOMEM;
        }
        e->id = *id;
        e->loading = true;
        e->pins = 1;
        e->shard = si;
        table_insert(h, e);
        pthread_mutex_unlock(&h->lock);
        *ret = e;
        return -ENOENT;
}

/* The positions of n ids (or entries) grouped by shard: shard k's are
 * order[count[k]] to order[count[k + 1] - 1]. n <= CACHE_BATCH. */
typedef struct by_shard {
        uint16_t count[CACHE_SHARDS + 1], order[CACHE_BATCH];
} by_shard;

static void group(by_shard *g, const uint8_t *shard, size_t n) {
        memset(g->count, 0, sizeof g->count);
        for (size_t i = 0; i < n; i++)
                g->count[shard[i] + 1]++;
        for (unsigned k = 0; k < CACHE_SHARDS; k++)
                g->count[k + 1] += g->count[k];
        uint16_t at[CACHE_SHARDS];
        memcpy(at, g->count, sizeof at);
        for (size_t i = 0; i < n; i++)
                g->order[at[shard[i]]++] = (uint16_t)i;
}

/* Prefetch the home slot of id: the table and its size are read without
 * the lock, so they may be stale, which only wastes the hint (a prefetch
 * never faults). */
static void slot_prefetch(cache_shard *h, const st_digest *id) {
        const cache_slot *t = __atomic_load_n(&h->table, __ATOMIC_RELAXED);
        size_t cap = __atomic_load_n(&h->cap, __ATOMIC_RELAXED);
        __builtin_prefetch(&t[tag_of(id) & (cap - 1)]);
}

void cache_get_hits(chunk_cache *c, const st_digest *const *ids, size_t n, cache_entry **ret) {
        if (n > CACHE_BATCH) {
                for (size_t i = 0; i < n; i += CACHE_BATCH)
                        cache_get_hits(c, ids + i, ST_MIN(n - i, (size_t)CACHE_BATCH), ret + i);
                return;
        }
        /* The ids by shard, and their slots on the way to the cache. */
        uint8_t shard[CACHE_BATCH];
        for (size_t i = 0; i < n; i++) {
                shard[i] = (uint8_t)shard_of(ids[i]);
                slot_prefetch(&c->sh[shard[i]], ids[i]);
        }
        by_shard g;
        group(&g, shard, n);
        const uint16_t *count = g.count, *order = g.order;
        for (unsigned k = 0; k < CACHE_SHARDS; k++) {
                if (count[k] == count[k + 1])
                        continue;
                cache_shard *h = &c->sh[k];
                pthread_mutex_lock(&h->lock);
                for (unsigned j = count[k]; j < count[k + 1]; j++) { /* the entries on their way */
                        const cache_slot *sl = &h->table[tag_of(ids[order[j]]) & (h->cap - 1)];
                        if (sl->e)
                                __builtin_prefetch(sl->e);
                }
                for (unsigned j = count[k]; j < count[k + 1]; j++) {
                        size_t i = order[j];
                        struct cache_entry *e = table_find(h, ids[i]);
                        if (e && !e->loading) {
                                e->pins++;
                                e->referenced = true;
                                h->stats.hits++;
                                ret[i] = e;
                        } else
                                ret[i] = NULL; /* (counted as a miss by the cache_get that follows) */
                }
                pthread_mutex_unlock(&h->lock);
        }
}

void cache_put_many(chunk_cache *c, cache_entry *const *es, size_t n) {
        if (n > CACHE_BATCH) {
                for (size_t i = 0; i < n; i += CACHE_BATCH)
                        cache_put_many(c, es + i, ST_MIN(n - i, (size_t)CACHE_BATCH));
                return;
        }
        /* A lock per shard, not per entry: a read's chunks fall in every shard. */
        uint8_t shard[CACHE_BATCH];
        for (size_t i = 0; i < n; i++)
                shard[i] = es[i] ? (uint8_t)es[i]->shard : CACHE_SHARDS - 1;
        by_shard g;
        group(&g, shard, n);
        for (unsigned k = 0; k < CACHE_SHARDS; k++) {
                cache_shard *h = &c->sh[k];
                bool locked = false;
                for (unsigned j = g.count[k]; j < g.count[k + 1]; j++) {
                        cache_entry *e = es[g.order[j]];
                        if (!e)
                                continue;
                        if (!locked)
                                pthread_mutex_lock(&h->lock);
                        locked = true;
                        e->pins--;
                }
                if (locked) {
                        if (h->used > h->budget)
                                evict(h);
                        pthread_mutex_unlock(&h->lock);
                }
        }
}

void cache_fill(chunk_cache *c, cache_entry *e, uint8_t *data, uint32_t len) {
        cache_shard *h = &c->sh[e->shard];
        pthread_mutex_lock(&h->lock);
        e->data = data;
        e->len = len;
        e->loading = false;
        e->referenced = true;
        ring_add(h, e);
        h->used += len;
        h->stats.loads++;
        h->stats.bytes_loaded += len;
        evict(h);
        pthread_cond_broadcast(&h->loaded);
        pthread_mutex_unlock(&h->lock);
}

void cache_offer(chunk_cache *c, const st_digest *id, const uint8_t *data, uint32_t len) {
        unsigned si = shard_of(id);
        cache_shard *h = &c->sh[si];
        pthread_mutex_lock(&h->lock);
        struct cache_entry *e = table_find(h, id);
        uint8_t *copy = e || !table_room(h) ? NULL : malloc(len ? len : 1);
        if (e || !copy || !(e = calloc(1, sizeof *e))) {
                pthread_mutex_unlock(&h->lock); /* there (or loading) already, or no memory */
                free(copy);
                return;
        }
        memcpy(copy, data, len);
        *e = (struct cache_entry){ .id = *id, .data = copy, .len = len, .shard = si };
        table_insert(h, e);
        ring_add(h, e); /* not referenced: the first to go unless read */
        h->used += len;
        h->stats.loads++;
        h->stats.bytes_loaded += len;
        evict(h);
        pthread_mutex_unlock(&h->lock);
}

void cache_abandon(chunk_cache *c, cache_entry *e) {
        cache_shard *h = &c->sh[e->shard];
        pthread_mutex_lock(&h->lock);
        table_remove(h, e); /* the waiters look again, miss, and load it themselves */
        pthread_cond_broadcast(&h->loaded);
        pthread_mutex_unlock(&h->lock);
        free(e);
}

const uint8_t *cache_data(const cache_entry *e, uint32_t *ret_len) {
        *ret_len = e->len;
        return e->data;
}

void cache_put(chunk_cache *c, cache_entry *e) {
        cache_shard *h = &c->sh[e->shard];
        pthread_mutex_lock(&h->lock);
        if (--e->pins == 0 && h->used > h->budget)
                evict(h);
        pthread_mutex_unlock(&h->lock);
}

void cache_stats(chunk_cache *c, st_cache_stats *ret) {
        *ret = (st_cache_stats){ 0 };
        for (unsigned i = 0; i < CACHE_SHARDS; i++) {
                cache_shard *h = &c->sh[i];
                pthread_mutex_lock(&h->lock);
                ret->hits += h->stats.hits;
                ret->misses += h->stats.misses;
                ret->waits += h->stats.waits;
                ret->loads += h->stats.loads;
                ret->bytes_loaded += h->stats.bytes_loaded;
                ret->evictions += h->stats.evictions;
                ret->entries += h->n_ring;
                ret->bytes += h->used;
                ret->budget += h->budget;
                pthread_mutex_unlock(&h->lock);
        }
}
