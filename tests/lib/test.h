/* SPDX-License-Identifier: Apache-2.0 */
/* Minimal helpers for the C unit tests: checks that report file:line and
 * fail the binary, a fixed and printed PRNG seed, and temp directories. */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int st_test_failures __attribute__((unused));

#define ST_CHECK(cond)                                                                             \
        do {                                                                                       \
                if (!(cond)) {                                                                     \
                        if (st_test_failures++ < 20)                                               \
                                fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                                        #cond);                                                    \
                }                                                                                  \
        } while (0)

#define ST_CHECK_ERR(expr, err)                                                                    \
        do {                                                                                       \
                long long _r = (long long)(expr);                                                  \
                if (_r != (long long)(err)) {                                                      \
                        fprintf(stderr, "%s:%d: %s returned %lld (%s), expected %lld (%s)\n",     \
                                __FILE__, __LINE__, #expr, _r, _r < 0 ? strerror((int)-_r) : "-",  \
                                (long long)(err), (err) < 0 ? strerror(-(err)) : "-");             \
                        st_test_failures++;                                                        \
                }                                                                                  \
        } while (0)

#define ST_TEST_RESULT() (st_test_failures ? (fprintf(stderr, "%d checks failed\n", st_test_failures), 1) : 0)

/* xorshift64*: deterministic test data. */
static inline uint64_t st_test_rand(uint64_t *s) {
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545F4914F6CDD1Dull;
}

static inline void st_test_fill(uint8_t *buf, size_t len, uint64_t seed) {
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
        if (!s)
                s = 1;
        for (size_t i = 0; i < len; i += 8) {
                uint64_t v = st_test_rand(&s);
                memcpy(buf + i, &v, len - i < 8 ? len - i : 8);
        }
}

/* mkdtemp under $TMPDIR; returns a malloc'd path. */
static inline char *st_test_tmpdir(void) {
        const char *t = getenv("TMPDIR");
        char *p = NULL;
        if (asprintf(&p, "%s/stellar-test-XXXXXX", t && *t ? t : "/tmp") < 0)
                return NULL;
        if (!mkdtemp(p)) {
                free(p);
                return NULL;
        }
        return p;
}

static inline void st_test_rmrf(const char *dir) {
        char *cmd = NULL;
        if (asprintf(&cmd, "rm -rf '%s'", dir) >= 0) {
                if (system(cmd) != 0)
                        fprintf(stderr, "cannot remove %s\n", dir);
        }
        free(cmd);
}
