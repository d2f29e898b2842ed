/* SPDX-License-Identifier: Apache-2.0 */
/* The memory tier's table against a model: placeholders filled or
 * abandoned in a random order (each abandon a removal from the middle of
 * a probe run), through growth, then eviction under a small budget: every
 * filled chunk is found with its own bytes until evicted, no abandoned one
 * is found, and every hit returns the bytes of the id it was asked for.
 * Batched lookups (cache_get_hits, cache_put_many) agree with single ones,
 * with ids repeated in a batch, loads in progress and eviction between.
 * Then threads share one small cache (every path at once: misses filled or
 * abandoned, hits, batches, eviction): every hit has its own id's bytes. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-internal.h"
#include "test.h"

#define N 20000
#define LEN 64u

static uint8_t *bytes_of(uint32_t i) {
        uint8_t *b = malloc(LEN);
        st_test_fill(b, LEN, 1000 + i);
        return b;
}

static bool holds(chunk_cache *c, const st_digest *id, uint32_t i) {
        cache_entry *e;
        int r = cache_get(c, id, &e);
        if (r == -ENOENT) {
                cache_abandon(c, e);
                return false;
        }
        ST_CHECK(r == 0);
        uint32_t len;
        const uint8_t *d = cache_data(e, &len);
        uint8_t *want = bytes_of(i);
        ST_CHECK(len == LEN && memcmp(d, want, LEN) == 0);
        free(want);
        cache_put(c, e);
        return true;
}

/* Random batches (larger than CACHE_BATCH too, ids repeated) return
 * exactly the filled ids, pinned, with their bytes; one id is held as a
 * placeholder meanwhile and must read as a miss; a put_many leaves every
 * entry unpinned (an evicting cache then frees all of them). */
static void batches(chunk_cache *c, const st_digest *ids, const bool *filled, uint64_t *rng) {
        enum { MAXB = CACHE_BATCH * 2 + 7 };
        const st_digest *q[MAXB];
        uint32_t which[MAXB];
        cache_entry *got[MAXB];
        for (int round = 0; round < 200; round++) {
                *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
                size_t n = 1 + (size_t)((*rng >> 33) % MAXB);
                for (size_t k = 0; k < n; k++) {
                        *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
                        which[k] = k > 0 && (*rng >> 60) == 0 ? which[k - 1] /* repeated */
                                                                : (uint32_t)((*rng >> 20) % N);
                        q[k] = &ids[which[k]];
                }
                /* one unfilled id loading meanwhile: a miss even if asked twice */
                uint32_t loading = N;
                cache_entry *ph = NULL;
                for (size_t k = 0; k < n && loading == N; k++)
                        if (!filled[which[k]]) {
                                ST_CHECK(cache_get(c, q[k], &ph) == -ENOENT);
                                loading = which[k];
                        }
                cache_get_hits(c, q, n, got);
                for (size_t k = 0; k < n; k++) {
                        ST_CHECK((got[k] != NULL) == filled[which[k]]);
                        if (!got[k])
                                continue;
                        uint32_t len;
                        const uint8_t *d = cache_data(got[k], &len);
                        uint8_t *want = bytes_of(which[k]);
                        ST_CHECK(len == LEN && memcmp(d, want, LEN) == 0);
                        free(want);
                }
                cache_put_many(c, got, n);
                if (ph)
                        cache_abandon(c, ph);
        }
}

/* Threads on one cache of room for a quarter of POOL ids. */
#define THREADS 4
#define POOL 2000
#define ROUNDS 20000
typedef struct worker_arg {
        chunk_cache *c;
        const st_digest *ids;
        uint64_t seed;
        atomic_uint *bad;
} worker_arg;

static bool right_bytes(const cache_entry *e, uint32_t i) {
        uint32_t len;
        const uint8_t *d = cache_data(e, &len);
        uint8_t *want = bytes_of(i);
        bool ok = len == LEN && memcmp(d, want, LEN) == 0;
        free(want);
        return ok;
}

static void *worker(void *p) {
        worker_arg *a = p;
        uint64_t rng = a->seed;
        for (int k = 0; k < ROUNDS; k++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t i = (uint32_t)((rng >> 33) % POOL);
                if ((rng >> 28) % 4 == 0)
                        i %= 8; /* a hot few: loads met by readers who wait */
                if ((rng >> 20) % 4 == 0) { /* a batch of 16 around i */
                        const st_digest *q[16];
                        cache_entry *got[16];
                        for (unsigned j = 0; j < 16; j++)
                                q[j] = &a->ids[(i + j * 7) % POOL];
                        cache_get_hits(a->c, q, 16, got);
                        for (unsigned j = 0; j < 16; j++)
                                if (got[j] && !right_bytes(got[j], (i + j * 7) % POOL))
                                        atomic_fetch_add(a->bad, 1);
                        cache_put_many(a->c, got, 16);
                        continue;
                }
                cache_entry *e;
                int r = cache_get(a->c, &a->ids[i], &e);
                if (r == -ENOENT) {
                        if ((rng >> 24) % 8 == 0)
                                cache_abandon(a->c, e); /* a failed read */
                        else {
                                cache_fill(a->c, e, bytes_of(i), LEN);
                                cache_put(a->c, e);
                        }
                } else if (r == 0) {
                        if (!right_bytes(e, i))
                                atomic_fetch_add(a->bad, 1);
                        cache_put(a->c, e);
                } else {
                        atomic_fetch_add(a->bad, 1);
                }
        }
        return NULL;
}

static void threads(const st_digest *ids) {
        chunk_cache *c = cache_new((uint64_t)POOL / 4 * LEN);
        ST_CHECK(c != NULL);
        atomic_uint bad = 0;
        pthread_t t[THREADS];
        worker_arg a[THREADS];
        for (unsigned k = 0; k < THREADS; k++) {
                a[k] = (worker_arg){ c, ids, 99 + k, &bad };
                ST_CHECK(pthread_create(&t[k], NULL, worker, &a[k]) == 0);
        }
        for (unsigned k = 0; k < THREADS; k++)
                pthread_join(t[k], NULL);
        ST_CHECK(atomic_load(&bad) == 0);
        st_cache_stats st;
        cache_stats(c, &st);
        printf("threads: hits %llu, misses %llu, waits %llu, evictions %llu\n",
               (unsigned long long)st.hits, (unsigned long long)st.misses,
               (unsigned long long)st.waits, (unsigned long long)st.evictions);
        ST_CHECK(st.hits > 0 && st.evictions > 0 && st.bytes <= st.budget);
        cache_free(c);
}

int main(void) {
        st_digest *ids = malloc(N * sizeof *ids);
        bool *filled = calloc(N, 1);
        uint64_t rng = 7;
        for (uint32_t i = 0; i < N; i++) {
                st_test_fill(ids[i].b, sizeof ids[i].b, i);
                /* every 8th id shares its first 8 bytes (the table's tag)
                 * with the one before: equal tags, different ids */
                if (i % 8 == 1)
                        memcpy(ids[i].b, ids[i - 1].b, 8);
        }
        chunk_cache *c = cache_new(1ull << 40); /* no eviction */
        ST_CHECK(c != NULL);
        cache_entry **pending = malloc(N * sizeof *pending);
        for (uint32_t i = 0; i < N; i++)
                ST_CHECK(cache_get(c, &ids[i], &pending[i]) == -ENOENT);
        /* fill or abandon in a shuffled order */
        uint32_t *order = malloc(N * sizeof *order);
        for (uint32_t i = 0; i < N; i++)
                order[i] = i;
        for (uint32_t i = N - 1; i > 0; i--) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t j = (uint32_t)((rng >> 33) % (i + 1)), t = order[i];
                order[i] = order[j];
                order[j] = t;
        }
        for (uint32_t k = 0; k < N; k++) {
                uint32_t i = order[k];
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                if ((rng >> 40) % 3) {
                        cache_fill(c, pending[i], bytes_of(i), LEN);
                        cache_put(c, pending[i]);
                        filled[i] = true;
                } else
                        cache_abandon(c, pending[i]);
        }
        for (uint32_t i = 0; i < N; i++)
                ST_CHECK(holds(c, &ids[i], i) == filled[i]);
        batches(c, ids, filled, &rng);
        cache_free(c);

        /* offered (copied in, as a pull's fetches are), twice each */
        c = cache_new(1ull << 40);
        for (int twice = 0; twice < 2; twice++)
                for (uint32_t i = 0; i < N; i++) {
                        uint8_t *b = bytes_of(i);
                        cache_offer(c, &ids[i], b, LEN);
                        free(b);
                }
        for (uint32_t i = 0; i < N; i++)
                ST_CHECK(holds(c, &ids[i], i));
        cache_free(c);

        /* eviction: room for about a quarter of them */
        c = cache_new((uint64_t)N / 4 * LEN);
        for (int round = 0; round < 3; round++)
                for (uint32_t i = 0; i < N; i++) {
                        if (holds(c, &ids[i], i))
                                continue;
                        cache_entry *e;
                        ST_CHECK(cache_get(c, &ids[i], &e) == -ENOENT);
                        cache_fill(c, e, bytes_of(i), LEN);
                        cache_put(c, e);
                }
        st_cache_stats st;
        cache_stats(c, &st);
        printf("evictions %llu, entries %llu, bytes %llu of %llu\n",
               (unsigned long long)st.evictions, (unsigned long long)st.entries,
               (unsigned long long)st.bytes, (unsigned long long)st.budget);
        ST_CHECK(st.evictions > 0 && st.bytes <= st.budget);
        /* what is still held is found, with its bytes */
        uint32_t found = 0;
        for (uint32_t i = 0; i < N; i++)
                found += holds(c, &ids[i], i);
        printf("found %u\n", found);
        ST_CHECK(found > 0);
        /* batched hits are unpinned again: a cache of no room keeps nothing */
        const st_digest *all[N];
        cache_entry **got = malloc(N * sizeof *got);
        for (uint32_t i = 0; i < N; i++)
                all[i] = &ids[i];
        cache_get_hits(c, all, N, got);
        uint32_t batch_found = 0;
        for (uint32_t i = 0; i < N; i++)
                batch_found += got[i] != NULL;
        ST_CHECK(batch_found == found);
        cache_put_many(c, got, N);
        free(got);
        cache_free(c);
        threads(ids);
        free(order);
        free(pending);
        free(filled);
        free(ids);
        printf("ok\n");
        return ST_TEST_RESULT();
}
