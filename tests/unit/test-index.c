/* SPDX-License-Identifier: Apache-2.0 */
/* The chunk index agrees with a naive sorted array, through growth and
 * filtering, and stays within its RAM budget (52 bytes per chunk). */
#include <stdlib.h>
#include <string.h>

#include "store/index.h"
#include "test.h"

#define N 300000

static int cmp_digest(const void *a, const void *b) {
        return memcmp(a, b, sizeof(st_digest));
}

static bool keep_even_refs(void *ctx, uint32_t id, const index_entry *e) {
        (void)id;
        (void)ctx;
        return e->refs % 2 == 0;
}

int main(void) {
        uint64_t seed = 42;
        printf("seed %llu\n", (unsigned long long)seed);
        st_digest *keys = malloc(N * sizeof *keys);
        chunk_index *x = index_new();
        ST_CHECK(x != NULL);
        for (uint32_t i = 0; i < N; i++) {
                st_test_fill(keys[i].b, sizeof keys[i].b, seed + i);
                index_entry e = { .pack = i / 1000, .off = i, .stored_len = i % 777, .raw_len = i + 1,
                                  .refs = i };
                ST_CHECK(index_find(x, &keys[i]) == INDEX_NONE);
                ST_CHECK(index_add(x, &keys[i], &e) == i);
        }
        ST_CHECK(index_count(x) == N);
        /* The budget: 40-byte entries, slots at load >= 3/8, one partly used
         * segment. (bench/bench-index measures it at 10 million.) */
        double per = (double)index_ram_bytes(x) / (double)index_count(x);
        printf("index RAM: %.1f bytes per chunk at %u chunks\n", per, N);
        ST_CHECK(per <= 52.0);
        for (uint32_t i = 0; i < N; i++) {
                uint32_t id = index_find(x, &keys[i]);
                ST_CHECK(id == i);
                if (id != INDEX_NONE)
                        ST_CHECK(index_get(x, id)->raw_len == i + 1);
        }
        /* misses */
        for (uint32_t i = 0; i < 10000; i++) {
                st_digest k;
                st_test_fill(k.b, sizeof k.b, 0xdead0000ull + i);
                ST_CHECK(index_find(x, &k) == INDEX_NONE);
        }
        /* filter keeps exactly the even refs, findable, with their data */
        ST_CHECK_ERR(index_filter(x, keep_even_refs, NULL), 0);
        ST_CHECK(index_count(x) == N / 2);
        for (uint32_t i = 0; i < N; i++) {
                uint32_t id = index_find(x, &keys[i]);
                if (i % 2 == 0) {
                        ST_CHECK(id != INDEX_NONE);
                        if (id != INDEX_NONE)
                                ST_CHECK(index_get(x, id)->refs == i && index_get(x, id)->off == i);
                } else
                        ST_CHECK(id == INDEX_NONE);
        }
        /* naive cross-check on sorted order: every key appears once */
        qsort(keys, N, sizeof *keys, cmp_digest);
        for (uint32_t i = 1; i < N; i++)
                ST_CHECK(memcmp(&keys[i - 1], &keys[i], sizeof *keys) != 0);
        index_free(x);
        free(keys);
        return ST_TEST_RESULT();
}
