/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench-index: memory and lookup cost of the in-RAM chunk index.
 *
 * Inserts N (default 10 million, env BENCH_INDEX_N or argv[1]) pseudo-random
 * 32-byte digests with index_add, then reports
 *   - index_ram_bytes() / N (what the index says it holds),
 *   - the process RSS delta / N, from /proc/self/statm before the first
 *     insert and after the last (what the allocator really took),
 *   - ns per insert, per lookup hit (present digests, scattered order) and per
 *     lookup miss (fresh random digests), each the median of REPS passes;
 *   - the peer: the cost of raw random memory access in a buffer as large as
 *     the index, both independent reads (throughput, overlapped by the CPU)
 *     and a dependent pointer chase (latency of one cache+TLB miss). A lookup
 *     hit needs at least two dependent misses (slot, then entry), so
 *     hit_ns / chase_ns near 2 means the index is as fast as its layout allows.
 * The digests come from a splitmix64 stream: uniform like BLAKE3 output,
 * without paying for hashing. They are generated on the fly, so the only large
 * allocation is the index itself. Prints human lines, then one summary line
 * starting with "bench-index:" (key=value pairs).
 * Goal: <= 48 bytes per chunk.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/index.h"

#define REPS 5
#define LOOKUPS 2000000u

static uint64_t splitmix64(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

/* Digest number i of stream `seed`: a pure function, so lookups can
 * regenerate any inserted digest without storing them. */
static void digest_of(uint64_t seed, uint64_t i, st_digest *d) {
        uint64_t s = seed ^ (i * 0xd1b54a32d192ed03ull);
        for (int k = 0; k < 4; k++) {
                uint64_t v = splitmix64(&s);
                memcpy(d->b + 8 * k, &v, 8);
        }
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rss_bytes(void) {
        FILE *f = fopen("/proc/self/statm", "re");
        unsigned long long size = 0, res = 0;
        if (!f)
                return 0;
        if (fscanf(f, "%llu %llu", &size, &res) != 2)
                res = 0;
        fclose(f);
        return res * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int cmp_double(const void *a, const void *b) {
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static double median(double *v, int n) {
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#define SEED_IN 0x5e11a71a00000001ull
#define SEED_MISS 0x5e11a71a00000002ull

int main(int argc, char **argv) {
        uint64_t n = 10000000;
        const char *env = getenv("BENCH_INDEX_N");
        if (argc > 1)
                n = strtoull(argv[1], NULL, 10);
        else if (env && *env)
                n = strtoull(env, NULL, 10);
        if (n == 0 || n >= UINT32_MAX - 1) {
                fprintf(stderr, "bench-index: bad N\n");
                return 2;
        }
        uint64_t lookups = n < LOOKUPS ? n : LOOKUPS;

        uint64_t rss0 = rss_bytes();
        chunk_index *x = index_new();
        if (!x) {
                fprintf(stderr, "bench-index: out of memory\n");
                return 1;
        }
        index_entry e = {.pack = 1, .stored_len = 4096, .raw_len = 8192, .refs = 1};
        st_digest d;
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
                digest_of(SEED_IN, i, &d);
                e.off = (uint32_t)i;
                if (index_add(x, &d, &e) == INDEX_NONE) {
                        fprintf(stderr, "bench-index: index_add failed at %" PRIu64 "\n", i);
                        return 1;
                }
        }
        double insert_ns = (double)(now_ns() - t0) / (double)n;
        uint64_t rss1 = rss_bytes();
        if (index_count(x) != n) {
                fprintf(stderr, "bench-index: index_count %u != %" PRIu64 "\n", index_count(x), n);
                return 1;
        }
        uint64_t ram = index_ram_bytes(x);

        /* Cost of generating a digest alone, subtracted from the lookup times. */
        double gen[REPS], hit[REPS], miss[REPS];
        volatile uint8_t sink = 0;
        uint64_t errors = 0, stride = 0x9e3779b1u; /* odd: visits ids in scattered order */
        for (int r = 0; r < REPS; r++) {
                t0 = now_ns();
                for (uint64_t k = 0; k < lookups; k++) {
                        digest_of(SEED_IN, (k * stride + (uint64_t)r) % n, &d);
                        sink ^= d.b[0];
                }
                gen[r] = (double)(now_ns() - t0) / (double)lookups;

                t0 = now_ns();
                for (uint64_t k = 0; k < lookups; k++) {
                        uint64_t i = (k * stride + (uint64_t)r) % n;
                        digest_of(SEED_IN, i, &d);
                        uint32_t id = index_find(x, &d);
                        if (id == INDEX_NONE || index_get(x, id)->off != (uint32_t)i)
                                errors++;
                }
                hit[r] = (double)(now_ns() - t0) / (double)lookups;

                t0 = now_ns();
                for (uint64_t k = 0; k < lookups; k++) {
                        digest_of(SEED_MISS, k + (uint64_t)r * lookups, &d);
                        if (index_find(x, &d) != INDEX_NONE)
                                errors++;
                }
                miss[r] = (double)(now_ns() - t0) / (double)lookups;
        }
        uint64_t words = ram / 8;
        index_free(x);
        x = NULL;

        /* Peer: independent random reads from a buffer of the same size. */
        uint64_t *buf = malloc(words * 8);
        if (!buf) {
                fprintf(stderr, "bench-index: out of memory\n");
                return 1;
        }
        for (uint64_t i = 0; i < words; i++)
                buf[i] = i;
        double rnd[REPS];
        uint64_t acc = 0;
        for (int r = 0; r < REPS; r++) {
                uint64_t s = SEED_MISS + (uint64_t)r;
                t0 = now_ns();
                for (uint64_t k = 0; k < lookups; k++)
                        acc += buf[splitmix64(&s) % words];
                rnd[r] = (double)(now_ns() - t0) / (double)lookups;
        }
        sink ^= (uint8_t)acc;

        /* Dependent chase: one 8-byte cell per 64-byte line, linked in a
         * single random cycle (Sattolo's shuffle). */
        uint64_t lines = words / 8;
        uint64_t st = SEED_IN;
        for (uint64_t i = 0; i < lines; i++)
                buf[i * 8] = i;
        for (uint64_t i = lines - 1; i > 0; i--) {
                uint64_t j = splitmix64(&st) % i;
                uint64_t t = buf[i * 8];
                buf[i * 8] = buf[j * 8];
                buf[j * 8] = t;
        }
        double chase[REPS];
        uint64_t at = 0;
        for (int r = 0; r < REPS; r++) {
                t0 = now_ns();
                for (uint64_t k = 0; k < lookups; k++)
                        at = buf[at * 8];
                chase[r] = (double)(now_ns() - t0) / (double)lookups;
        }
        sink ^= (uint8_t)at;
        free(buf);
        (void)sink;
        double g = median(gen, REPS);
        double h = median(hit, REPS) - g, m = median(miss, REPS) - g;
        double rr = median(rnd, REPS), ch = median(chase, REPS);
        double ram_pc = (double)ram / (double)n;
        double rss_pc = (double)(rss1 > rss0 ? rss1 - rss0 : 0) / (double)n;

        printf("entries:             %" PRIu64 "\n", n);
        printf("index_ram_bytes:     %" PRIu64 " (%.2f bytes/chunk)\n", ram, ram_pc);
        printf("RSS delta:           %" PRIu64 " (%.2f bytes/chunk)\n", rss1 - rss0, rss_pc);
        printf("insert:              %.1f ns\n", insert_ns);
        printf("lookup hit:          %.1f ns (median of %d x %" PRIu64 ", digest generation %.1f ns subtracted)\n",
               h, REPS, lookups, g);
        printf("lookup miss:         %.1f ns\n", m);
        printf("random read (peer):  %.1f ns independent, %.1f ns dependent chase (same-size buffer)\n",
               rr, ch);
        printf("bench-index: n=%" PRIu64 " ram_bytes=%" PRIu64 " ram_per_chunk=%.2f rss_delta=%" PRIu64
               " rss_per_chunk=%.2f insert_ns=%.1f hit_ns=%.1f miss_ns=%.1f rand_read_ns=%.1f"
               " chase_ns=%.1f errors=%" PRIu64 "\n",
               n, ram, ram_pc, rss1 - rss0, rss_pc, insert_ns, h, m, rr, ch, errors);
        return errors ? 1 : 0;
}
