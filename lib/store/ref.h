/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Refs: the names of the store (refs/NAME). A ref is an image (imported,
 * read-only), a snapshot (read-only point in time of a volume) or a volume
 * (writable: its delta layer lives in deltas/). It points at a manifest, or at
 * none (an empty volume reads as zeros), and remembers the name it was made
 * from, for display. 112 bytes plus the parent's name. Byte layout:
 * docs/formats/ref.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/common.h>

#define REF_MAGIC "STREF\0\0\0"
#define REF_VERSION 2u /* 1: without the name sum; still read, and written back as read */
#define REF_FIXED_LEN 112u
#define REF_NAME_MAX 200u

typedef struct store_ref {
        uint32_t kind; /* ST_KIND_* */
        uint64_t size;
        uint64_t ctime_ns;
        st_digest manifest; /* all zero: none */
        char parent[REF_NAME_MAX + 1];
        /* Version 2: the first 8 bytes of BLAKE3 of the ref's own name, so a
         * ref file moved or swapped under another name is found out; 0 in a
         * version 1 ref (and encodes as version 1). */
        uint64_t name_sum;
} store_ref;

uint64_t ref_name_sum(const char *name);
/* Encode into out (REF_FIXED_LEN + REF_NAME_MAX bytes); returns the length. */
size_t ref_encode(const store_ref *r, uint8_t *out);
int ref_parse(const uint8_t *buf, size_t len, store_ref *ret, st_diag *reterr);
