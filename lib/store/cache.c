/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The hot tier: decompressed, verified chunks held in memory once for every
 * volume and connection of a process, within a byte budget, evicted least
 * recently used. Concurrent misses on one chunk load it once (the others
 * wait), so N readers of N clones cost one read and one decompression per
 * chunk. Entries in use are pinned and never evicted under a reader.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <stellar/store.h>

#include "../util/le.h"
#include "store-internal.h"

struct cache_entry {
        st_digest id;
        uint8_t *data;
        uint32_t len;
        unsigned pins;
        bool loading;
        int error; /* a failed load: waiters get it, then the entry goes */
        struct cache_entry *hnext;        /* hash chain */
        struct cache_entry *prev, *next; /* LRU list of unpinned entries, most recent first */
};

struct chunk_cache {
        pthread_mutex_t lock;
        pthread_cond_t loaded;
        struct cache_entry **table;
        size_t cap; /* power of two */
        size_t n;
        uint64_t budget, used;
        struct cache_entry lru; /* sentinel */
        st_cache_stats stats;
};

static size_t bucket(const chunk_cache *c, const st_digest *id) {
        return (size_t)(st_le64_get(id->b) & (c->cap - 1));
}

chunk_cache *cache_new(uint64_t budget) {
        chunk_cache *c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->cap = 4096;
        c->table = calloc(c->cap, sizeof *c->table);
        if (!c->table) {
                free(c);
                return NULL;
        }
        pthread_mutex_init(&c->lock, NULL);
        pthread_cond_init(&c->loaded, NULL);
        c->budget = budget;
        c->lru.prev = c->lru.next = &c->lru;
        return c;
}

static void lru_unlink(struct cache_entry *e) {
        if (e->prev) {
                e->prev->next = e->next;
                e->next->prev = e->prev;
                e->prev = e->next = NULL;
        }
}

static void lru_push(chunk_cache *c, struct cache_entry *e) {
        e->next = c->lru.next;
        e->prev = &c->lru;
        c->lru.next->prev = e;
        c->lru.next = e;
}

static void table_remove(chunk_cache *c, struct cache_entry *e) {
        for (struct cache_entry **p = &c->table[bucket(c, &e->id)]; *p; p = &(*p)->hnext)
                if (*p == e) {
                        *p = e->hnext;
                        break;
                }
        c->n--;
}

static void entry_free(chunk_cache *c, struct cache_entry *e) {
        c->used -= e->len;
        free(e->data);
        free(e);
}

/* Evict unpinned entries, least recent first, until within budget. */
static void evict(chunk_cache *c) {
        while (c->used > c->budget && c->lru.prev != &c->lru) {
                struct cache_entry *e = c->lru.prev;
                lru_unlink(e);
                table_remove(c, e);
                c->stats.evictions++;
                entry_free(c, e);
        }
}

static void grow_table(chunk_cache *c) {
        size_t cap = c->cap * 2;
        struct cache_entry **t = calloc(cap, sizeof *t);
        if (!t)
                return; /* longer chains, still correct */
        for (size_t i = 0; i < c->cap; i++)
                for (struct cache_entry *e = c->table[i], *n; e; e = n) {
                        n = e->hnext;
                        size_t b = (size_t)(st_le64_get(e->id.b) & (cap - 1));
                        e->hnext = t[b];
                        t[b] = e;
                }
        free(c->table);
        c->table = t;
        c->cap = cap;
}

chunk_cache *cache_free(chunk_cache *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < c->cap; i++)
                for (struct cache_entry *e = c->table[i], *n; e; e = n) {
                        n = e->hnext;
                        free(e->data);
                        free(e);
                }
        free(c->table);
        pthread_mutex_destroy(&c->lock);
        pthread_cond_destroy(&c->loaded);
        free(c);
        return NULL;
}

int cache_get(st_store *s, chunk_cache *c, const st_digest *id, cache_entry **ret) {
        pthread_mutex_lock(&c->lock);
        struct cache_entry *e;
        for (;;) {
                for (e = c->table[bucket(c, id)]; e; e = e->hnext)
                        if (memcmp(&e->id, id, sizeof *id) == 0)
                                break;
                if (!e || !e->loading)
                        break;
                c->stats.waits++;
                pthread_cond_wait(&c->loaded, &c->lock); /* someone else is loading it */
        }
        if (e && e->error == 0) {
                if (e->pins++ == 0)
                        lru_unlink(e);
                c->stats.hits++;
                pthread_mutex_unlock(&c->lock);
                *ret = e;
                return 0;
        }
        /* A miss: insert a loading placeholder, load without the lock. */
        c->stats.misses++;
        e = calloc(1, sizeof *e);
        if (!e) {
                pthread_mutex_unlock(&c->lock);
                return -ENOMEM;
        }
        e->id = *id;
        e->loading = true;
        e->pins = 1;
        size_t b = bucket(c, id);
        e->hnext = c->table[b];
        c->table[b] = e;
        if (++c->n > c->cap)
                grow_table(c);
        pthread_mutex_unlock(&c->lock);

        store_chunk_buf *cb = store_chunk_buf_get(s);
        int64_t n = cb ? store_read_chunk(s, id, cb) : -ENOMEM;

        pthread_mutex_lock(&c->lock);
        e->loading = false;
        if (n < 0) {
                e->error = (int)n;
                table_remove(c, e);
                pthread_cond_broadcast(&c->loaded);
                pthread_mutex_unlock(&c->lock);
                free(e);
                store_chunk_buf_put(s, cb);
                return (int)n;
        }
        /* Keep the decompressed buffer itself: no copy. */
        e->data = cb->out;
        e->len = (uint32_t)n;
        cb->out = NULL;
        cb->out_cap = 0;
        c->used += e->len;
        c->stats.loads++;
        c->stats.bytes_loaded += e->len;
        evict(c);
        pthread_cond_broadcast(&c->loaded);
        pthread_mutex_unlock(&c->lock);
        store_chunk_buf_put(s, cb);
        *ret = e;
        return 0;
}

const uint8_t *cache_data(const cache_entry *e, uint32_t *ret_len) {
        *ret_len = e->len;
        return e->data;
}

void cache_put(chunk_cache *c, cache_entry *e) {
        pthread_mutex_lock(&c->lock);
        if (--e->pins == 0) {
                lru_push(c, e);
                evict(c);
        }
        pthread_mutex_unlock(&c->lock);
}

void cache_stats(chunk_cache *c, st_cache_stats *ret) {
        pthread_mutex_lock(&c->lock);
        *ret = c->stats;
        ret->entries = c->n;
        ret->bytes = c->used;
        ret->budget = c->budget;
        pthread_mutex_unlock(&c->lock);
}
