/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the fuzz targets and replay.c: the libFuzzer entry point's
 * prototype, an assertion that survives NDEBUG, and checksum sealing.
 *
 * Every format here ends in (or embeds) a BLAKE3 checksum that no mutation can
 * forge, so each target runs an input twice: as it is, and "sealed" with its
 * checksums recomputed, so that mutations reach the field checks behind them.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stellar/hash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len);

/* The volume tag (its ref's ctime) under which fuzz-delta replays journals;
 * gen-corpus writes the delta seeds with it. */
#define FUZZ_DELTA_TAG 0x17a5c0ffee000001ull

/* A property every accepted input must have; a failure is a finding. */
#define FUZZ_ASSERT(cond)                                                                   \
        do {                                                                                \
                if (!(cond)) {                                                              \
                        fprintf(stderr, "%s:%d: fuzz assertion failed: %s\n", __FILE__,     \
                                __LINE__, #cond);                                           \
                        abort();                                                            \
                }                                                                           \
        } while (0)

/* Overwrite check_len bytes at buf + at with the BLAKE3 of buf[0..covered). */
static inline void fuzz_seal(uint8_t *buf, size_t covered, size_t at, size_t check_len) {
        st_digest d;
        st_hash(buf, covered, &d);
        memcpy(buf + at, d.b, check_len);
}

/* A delta journal record's check (record_check in lib/volume/delta.c): the
 * first 8 bytes, little-endian, of BLAKE3 over the record's first 24 bytes and
 * the tag (8 bytes, little-endian). */
static inline uint64_t fuzz_delta_check(const uint8_t *rec, uint64_t tag) {
        uint8_t b[32];
        st_digest d;
        uint64_t v = 0;
        memcpy(b, rec, 24);
        for (int i = 0; i < 8; i++)
                b[24 + i] = (uint8_t)(tag >> (8 * i));
        st_hash(b, sizeof b, &d);
        for (int i = 7; i >= 0; i--)
                v = v << 8 | d.b[i];
        return v;
}

/* An exact-size heap copy, so ASan catches reads past the end; NULL on OOM or len 0. */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t len) {
        uint8_t *p = len ? malloc(len) : NULL;
        if (p)
                memcpy(p, data, len);
        return p;
}
