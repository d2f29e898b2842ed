/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Chunker tests: golden cut points (a changed boundary is a format break),
 * size limits, alignment, zero-block holes, resynchronisation after an
 * insertion, and that feeding the stream in small pieces cuts the same way
 * as feeding it whole.
 */
#include <stdlib.h>
#include <string.h>

#include <stellar/chunker.h>
#include <stellar/hash.h>

#include "test.h"

#define LEN (8u << 20)

typedef struct cut {
        uint64_t off, len;
        bool hole;
} cut;

static size_t split_all(const st_chunker_params *p, const uint8_t *d, size_t len, cut *out,
                        size_t max) {
        size_t n = 0;
        for (size_t at = 0; at < len && n < max;) {
                st_piece pc;
                if (st_split_next(p, at, d + at, len - at, true, &pc) < 0)
                        break;
                out[n++] = (cut){ at, pc.len, pc.hole };
                at += (size_t)pc.len;
        }
        return n;
}

/* Feed the splitter windows of 'step' bytes, as an importer reading in small
 * buffers would. */
static size_t split_streaming(const st_chunker_params *p, const uint8_t *d, size_t len,
                              size_t step, cut *out, size_t max) {
        size_t n = 0, at = 0, have = 0;
        while (at < len && n < max) {
                if (have < len)
                        have = have + step < len ? have + step : len;
                for (;;) {
                        st_piece pc;
                        if (st_split_next(p, at, d + at, have - at, have == len, &pc) < 0)
                                break;
                        out[n++] = (cut){ at, pc.len, pc.hole };
                        at += (size_t)pc.len;
                        if (at == have)
                                break;
                }
        }
        return n;
}

static void make_input(uint8_t *d) {
        st_test_fill(d, LEN, 0x5eed);
        memset(d + 1000000, 0, 300000);        /* unaligned zero run */
        memset(d + 4096 * 700, 0, 4096 * 9);   /* aligned zero blocks */
        memset(d + LEN - 20000, 0, 20000);     /* zero tail */
        for (size_t i = 5u << 20; i < (6u << 20); i++)
                d[i] = (uint8_t)(i / 7);      /* a compressible, repetitive MiB */
}

static void digest_cuts(const cut *c, size_t n, char hex[65]) {
        st_hasher h;
        st_hasher_init(&h);
        for (size_t i = 0; i < n; i++) {
                uint8_t rec[17];
                for (int k = 0; k < 8; k++) {
                        rec[k] = (uint8_t)(c[i].off >> (8 * k));
                        rec[8 + k] = (uint8_t)(c[i].len >> (8 * k));
                }
                rec[16] = c[i].hole;
                st_hasher_update(&h, rec, sizeof rec);
        }
        st_digest d;
        st_hasher_final(&h, &d);
        st_digest_to_hex(&d, hex);
}

static void check_invariants(const st_chunker_params *p, const uint8_t *d, const cut *c, size_t n,
                             size_t len) {
        uint64_t end = 0;
        for (size_t i = 0; i < n; i++) {
                ST_CHECK(c[i].off == end);
                end += c[i].len;
                if (c[i].hole) {
                        ST_CHECK(st_is_zero(d + c[i].off, c[i].len));
                        continue;
                }
                ST_CHECK(c[i].len <= p->max_size);
                if (c[i].off + c[i].len < len && p->align == 1)
                        ST_CHECK(c[i].len >= p->min_size);
                if (p->align > 1) {
                        ST_CHECK(c[i].off % p->align == 0);
                        /* no all-zero block inside a chunk */
                        for (uint64_t b = 0; b < c[i].len; b += p->align) {
                                uint64_t bl = c[i].len - b < p->align ? c[i].len - b : p->align;
                                ST_CHECK(!st_is_zero(d + c[i].off + b, bl));
                        }
                }
        }
        ST_CHECK(end == len);
}

static const char *golden(const char *name) {
        /* tests/data/chunker-golden.txt: "name count digest" lines */
        static char line[256];
        const char *dir = getenv("ST_TEST_DATA");
        char path[512];
        snprintf(path, sizeof path, "%s/chunker-golden.txt", dir ? dir : "tests/data");
        FILE *f = fopen(path, "r");
        if (!f)
                return NULL;
        while (fgets(line, sizeof line, f))
                if (strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == ' ') {
                        fclose(f);
                        line[strcspn(line, "\n")] = 0;
                        return line + strlen(name) + 1;
                }
        fclose(f);
        return NULL;
}

static void test_golden(const uint8_t *d, cut *c) {
        struct {
                const char *name;
                st_chunker_params p;
        } cases[] = {
                { "image-default", ST_CHUNKER_IMAGE_DEFAULT },
                { "image-16k", { 4096, 4096, 16384, 65536 } },
                { "image-8k", { 4096, 4096, 8192, 32768 } },
                { "image-32k", { 4096, 4096, 32768, 131072 } },
                { "stream-64k", ST_CHUNKER_STREAM_DEFAULT },
                { "stream-8k", { 1, 2048, 8192, 32768 } },
        };
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
                size_t n = split_all(&cases[k].p, d, LEN, c, LEN);
                check_invariants(&cases[k].p, d, c, n, LEN);
                char hex[65], got[128];
                digest_cuts(c, n, hex);
                snprintf(got, sizeof got, "%zu %s", n, hex);
                const char *want = golden(cases[k].name);
                if (getenv("ST_PRINT_GOLDEN"))
                        printf("%s %s\n", cases[k].name, got);
                else if (!want || strcmp(want, got) != 0) {
                        fprintf(stderr,
                                "GOLDEN MISMATCH for %s: got '%s', want '%s'.\n"
                                "Cut points changed: every existing store loses dedup.\n",
                                cases[k].name, got, want ? want : "(missing)");
                        st_test_failures++;
                }
                /* Streaming in odd-sized windows must cut the data identically
                 * (a hole may arrive in several pieces; holes are not stored). */
                cut *c2 = malloc(LEN * sizeof *c2);
                size_t n2 = split_streaming(&cases[k].p, d, LEN, 100003, c2, LEN);
                size_t a = 0, b = 0;
                for (;;) {
                        while (a < n && c[a].hole)
                                a++;
                        while (b < n2 && c2[b].hole)
                                b++;
                        if (a == n || b == n2)
                                break;
                        ST_CHECK(c[a].off == c2[b].off && c[a].len == c2[b].len);
                        a++;
                        b++;
                }
                ST_CHECK(a == n && b == n2);
                free(c2);
        }
}

static void test_resync(const uint8_t *d, cut *c) {
        /* Insert data near the start: the cut points after it must reappear,
         * shifted. Byte mode: 100 bytes; aligned mode: one 4 KiB block. */
        struct {
                st_chunker_params p;
                size_t ins;
        } cases[] = { { ST_CHUNKER_STREAM_DEFAULT, 100 }, { ST_CHUNKER_IMAGE_DEFAULT, 4096 } };
        for (size_t k = 0; k < 2; k++) {
                size_t len2 = LEN + cases[k].ins;
                uint8_t *d2 = malloc(len2);
                memcpy(d2, d, 65536);
                st_test_fill(d2 + 65536, cases[k].ins, 99);
                memcpy(d2 + 65536 + cases[k].ins, d + 65536, LEN - 65536);
                cut *c2 = malloc(len2 * sizeof *c2);
                size_t n = split_all(&cases[k].p, d, LEN, c, LEN);
                size_t n2 = split_all(&cases[k].p, d2, len2, c2, len2);
                /* count original boundaries past 1 MiB found again, shifted */
                size_t total = 0, found = 0, j = 0;
                for (size_t i = 0; i < n; i++) {
                        if (c[i].off < (1u << 20))
                                continue;
                        total++;
                        while (j < n2 && c2[j].off < c[i].off + cases[k].ins)
                                j++;
                        if (j < n2 && c2[j].off == c[i].off + cases[k].ins)
                                found++;
                }
                ST_CHECK(total > 0 && found == total);
                free(d2);
                free(c2);
        }
}

static void test_params(void) {
        st_chunker_params bad[] = {
                { 4096, 4096, 12288, 65536 }, /* avg not a power of two */
                { 4096, 1000, 16384, 65536 }, /* min not aligned */
                { 2, 4096, 16384, 65536 },    /* align not 1 or 4096 */
                { 1, 32, 64, 128 },           /* min below the window */
                { 1, 4096, 1024, 65536 },     /* min > avg */
                { 1, 4096, 16384, 32u << 20 }, /* max above the limit */
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                ST_CHECK_ERR(st_chunker_params_check(&bad[i]), -EINVAL);
        st_chunker_params ok = ST_CHUNKER_IMAGE_DEFAULT;
        ST_CHECK_ERR(st_chunker_params_check(&ok), 0);
        ok = (st_chunker_params)ST_CHUNKER_STREAM_DEFAULT;
        ST_CHECK_ERR(st_chunker_params_check(&ok), 0);
}

static void test_small(void) {
        st_chunker_params p = ST_CHUNKER_IMAGE_DEFAULT;
        uint8_t buf[10000] = { 0 };
        st_piece pc;
        ST_CHECK_ERR(st_split_next(&p, 0, buf, 0, true, &pc), -ENODATA);
        ST_CHECK_ERR(st_split_next(&p, 0, buf, 0, false, &pc), -EAGAIN);
        st_test_fill(buf, sizeof buf, 7);
        ST_CHECK_ERR(st_split_next(&p, 0, buf, 100, false, &pc), -EAGAIN);
        ST_CHECK_ERR(st_split_next(&p, 0, buf, 100, true, &pc), 0);
        ST_CHECK(pc.len == 100 && !pc.hole);
        memset(buf, 0, sizeof buf);
        ST_CHECK_ERR(st_split_next(&p, 0, buf, sizeof buf, true, &pc), 0);
        ST_CHECK(pc.hole && pc.len == sizeof buf);
        ST_CHECK(st_is_zero(buf, 0) && st_is_zero(buf, 17) && st_is_zero(buf, sizeof buf));
        buf[9999] = 1;
        ST_CHECK(!st_is_zero(buf, sizeof buf));
}

int main(void) {
        uint8_t *d = malloc(LEN);
        cut *c = malloc(LEN * sizeof *c);
        if (!d || !c)
                return 1;
        make_input(d);
        test_params();
        test_small();
        test_golden(d, c);
        test_resync(d, c);
        free(d);
        free(c);
        return ST_TEST_RESULT();
}
