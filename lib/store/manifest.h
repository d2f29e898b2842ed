/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Manifests: size, chunker parameters, an optional parent manifest, and the
 * extents (offset, length, chunk hash) sorted by offset. A manifest without a
 * parent is a whole image: gaps are holes. A manifest with a parent is a layer:
 * its extents replace the parent's bytes in their ranges, an extent with the
 * all-zero hash replaces them with zeros, and gaps show the parent. Stored
 * content-addressed as manifests/<BLAKE3 of the bytes>, immutable.
 * A 96-byte header, 44 bytes per extent and a BLAKE3 trailer over all of it.
 * Byte layout: docs/formats/manifest.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/chunker.h>
#include <stellar/common.h>

#define MANIFEST_MAGIC "STMANIF\0"
#define MANIFEST_VERSION 2u
#define MANIFEST_HEADER_LEN 96u
#define MANIFEST_EXTENT_LEN 44u
#define MANIFEST_TRAILER_LEN 32u
#define MANIFEST_EXTENTS_MAX (1u << 28)
#define MANIFEST_SIZE_MAX (1ull << 50) /* 1 PiB */
#define MANIFEST_DEPTH_MAX 64 /* layers above a base; commit flattens beyond 32 */

typedef struct manifest_extent {
        uint64_t off;
        uint32_t len;
        st_digest hash;
} manifest_extent;

typedef struct manifest {
        uint64_t size;
        st_digest parent; /* all zero: none */
        uint64_t ctime_ns;
        st_chunker_params chunker;
        manifest_extent *ext;
        size_t n, cap;
        /* A guide into ext for lookups (built when a manifest is parsed;
         * any change after that stops its use): guide[k] is manifest_find of
         * k << guide_shift, for k < guide_len, so a lookup searches only the
         * extents between two neighbouring entries (a few) where a binary
         * search over all of them touches a cache line per step. */
        uint32_t *guide;
        size_t guide_len;
        unsigned guide_shift;
} manifest;

manifest *manifest_new(uint64_t size, const st_chunker_params *chunker, const st_digest *parent);
manifest *manifest_free(manifest *m);
static inline bool manifest_hash_is_hole(const st_digest *h) {
        static const st_digest zero;
        return __builtin_memcmp(h, &zero, sizeof zero) == 0;
}
static inline bool manifest_has_parent(const manifest *m) {
        return !manifest_hash_is_hole(&m->parent);
}

/* Index of the extent containing off, or of the first extent after it (n if
 * none): a binary search, over the extents the guide leaves if it has one. */
size_t manifest_find(const manifest *m, uint64_t off);
/* manifest_find, looking first at near and the extent after it (a reader
 * going forward asks for the next extent): O(1) then. */
size_t manifest_find_near(const manifest *m, uint64_t off, size_t near);

/* Build m's guide: at most 2 entries (8 bytes) per extent; none for a
 * small manifest or without the memory (lookups then search it all). */
void manifest_guide(manifest *m);
/* Append an extent (must follow the last one); an all-zero hash is a hole
 * extent (layers only). -ENOMEM, -EINVAL. */
int manifest_append(manifest *m, uint64_t off, uint32_t len, const st_digest *hash);
/* Append zeros that mask the parent, merged with a hole extent just before. */
int manifest_append_hole(manifest *m, uint64_t off, uint64_t len);
/* Validate and decode. -EBADMSG (damage, with *reterr naming the offset),
 * -EPROTONOSUPPORT (unknown version). */
int manifest_parse(const uint8_t *buf, size_t len, manifest **ret, st_diag *reterr);
/* Encode to a malloc'd buffer. */
int manifest_encode(const manifest *m, uint8_t **ret, size_t *ret_len);
