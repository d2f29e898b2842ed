/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One chunk lookup with the tiers behind it:
 *
 *   memory   the cache of decompressed chunks (cache.c), if the handle has one
 *   packs    the local pack files, through the index
 *   remote   the sources of lazily pulled images (lib/remote), which bring
 *            the chunk into the packs
 *
 * Each tier answers -ENOENT for "not here" and the next is asked. What the
 * packs return is checked against the chunk's hash there (store_read_entry),
 * so a chunk from any tier is verified once, where it was read; the remote
 * tier's fetcher verifies what arrives before it stores it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../util/cleanup.h"
#include "store-internal.h"

bool store_has_remote(const st_store *s) {
        return s->remote != NULL;
}

void store_set_remote(st_store *s, const store_remote_ops *ops, void *ctx) {
        if (s->remote && s->remote->free)
                s->remote->free(s->remote_ctx);
        s->remote = ops;
        s->remote_ctx = ops ? ctx : NULL;
}

/* The packs tier, then the remote one into the packs. */
static int64_t read_below_memory(st_store *s, const st_digest *id, store_chunk_buf *b) {
        int64_t n = store_read_chunk_local(s, id, b, NULL);
        if (n == -ENOENT && s->remote) {
                int k = s->remote->fetch(s->remote_ctx, s, id);
                n = k < 0 ? k : store_read_chunk_local(s, id, b, NULL);
        }
        return n;
}

int store_get(st_store *s, const st_digest *id, store_chunk *ret) {
        *ret = (store_chunk){ 0 };
        cache_entry *e = NULL;
        if (s->hot) {
                int r = cache_get(s->hot, id, &e);
                if (r == 0) {
                        ret->entry = e;
                        ret->data = cache_data(e, &ret->len);
                        return 0;
                }
                if (r != -ENOENT)
                        return r;
        }
        store_chunk_buf *b = store_chunk_buf_get(s);
        int64_t n = b ? read_below_memory(s, id, b) : -ENOMEM;
        if (n < 0) {
                if (e)
                        cache_abandon(s->hot, e);
                store_chunk_buf_put(s, b);
                return (int)n;
        }
        if (e) { /* the cache keeps the decompressed buffer itself: no copy */
                store_offer_frame(s, b, id); /* (the chunks that came with it in a frame) */
                cache_fill(s->hot, e, b->out, (uint32_t)n);
                b->out = NULL;
                b->out_cap = 0;
                store_chunk_buf_put(s, b);
                ret->entry = e;
                ret->data = cache_data(e, &ret->len);
        } else {
                ret->buf = b;
                ret->data = b->out;
                ret->len = (uint32_t)n;
        }
        return 0;
}

void store_release(st_store *s, store_chunk *c) {
        if (c->entry)
                cache_put(s->hot, c->entry);
        else if (c->buf)
                store_chunk_buf_put(s, c->buf);
        *c = (store_chunk){ 0 };
}

void store_get_cached(st_store *s, const st_digest *const *ids, size_t n, store_chunk *ret) {
        cache_entry *es[CACHE_BATCH];
        for (size_t i = 0; i < n; i += CACHE_BATCH) {
                size_t k = ST_MIN(n - i, (size_t)CACHE_BATCH);
                if (s->hot)
                        cache_get_hits(s->hot, ids + i, k, es);
                for (size_t j = 0; j < k; j++) {
                        store_chunk *c = &ret[i + j];
                        *c = (store_chunk){ 0 };
                        if (s->hot && es[j]) {
                                c->entry = es[j];
                                c->data = cache_data(es[j], &c->len);
                        }
                }
        }
}

void store_release_many(st_store *s, store_chunk *c, size_t n) {
        cache_entry *es[CACHE_BATCH];
        for (size_t i = 0; i < n; i += CACHE_BATCH) {
                size_t k = ST_MIN(n - i, (size_t)CACHE_BATCH), m = 0;
                for (size_t j = 0; j < k; j++) {
                        store_chunk *x = &c[i + j];
                        if (x->entry) {
                                es[m++] = x->entry;
                                *x = (store_chunk){ 0 };
                        } else
                                store_release(s, x);
                }
                if (m > 0)
                        cache_put_many(s->hot, es, m);
        }
}

void store_warm(st_store *s, const st_digest *ids, size_t n, unsigned tiers) {
        if ((tiers & STORE_WARM_LOCAL) && s->remote && s->remote->fetch_many && n > 0) {
                st_digest *missing = malloc(n * sizeof *missing);
                size_t k = 0;
                if (missing) {
                        pthread_rwlock_rdlock(&s->lock);
                        for (size_t i = 0; i < n; i++)
                                if (index_find(s->idx, &ids[i]) == INDEX_NONE &&
                                    (k == 0 || memcmp(&missing[k - 1], &ids[i], sizeof *ids)))
                                        missing[k++] = ids[i];
                        pthread_rwlock_unlock(&s->lock);
                        if (k > 0)
                                s->remote->fetch_many(s->remote_ctx, s, missing, k);
                        free(missing);
                }
        }
        if ((tiers & STORE_WARM_MEMORY) && s->hot)
                for (size_t i = 0; i < n; i++) {
                        store_chunk c;
                        if (store_get(s, &ids[i], &c) == 0)
                                store_release(s, &c);
                }
}

void store_note_remote(st_store *s, uint64_t n) {
        atomic_fetch_add(&s->remote_fetches, n);
}

int store_chunk_lookup(st_store *s, const st_digest *id, uint32_t *ret_len, uint32_t *ret_refs) {
        pthread_rwlock_rdlock(&s->lock);
        uint32_t i = index_find(s->idx, id);
        int r = i == INDEX_NONE ? -ENOENT : 0;
        if (r == 0) {
                const index_entry *e = index_get(s->idx, i);
                if (ret_len)
                        *ret_len = e->raw_len;
                if (ret_refs)
                        *ret_refs = e->refs;
        }
        pthread_rwlock_unlock(&s->lock);
        return r;
}

int store_checkpoint(st_store *s) {
        pthread_rwlock_wrlock(&s->lock);
        int r = store_commit(s);
        pthread_rwlock_unlock(&s->lock);
        return r;
}

int store_deltas_fd(const st_store *s) {
        return s->deltas_fd;
}

int store_dir_fd(const st_store *s) {
        return s->dirfd;
}
