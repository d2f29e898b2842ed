/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image manifests: size, chunker parameters, and the extents (offset, length,
 * chunk hash) sorted by offset; gaps are holes. A 64-byte header, 44 bytes per
 * extent, and a BLAKE3 trailer over all of it, so truncation and bit rot are
 * caught. Byte layout: docs/formats/manifest.md.
 */
#pragma once

#include <stdint.h>

#include <stellar/chunker.h>
#include <stellar/common.h>

#define MANIFEST_MAGIC "STMANIF\0"
#define MANIFEST_VERSION 1u
#define MANIFEST_HEADER_LEN 64u
#define MANIFEST_EXTENT_LEN 44u
#define MANIFEST_TRAILER_LEN 32u
#define MANIFEST_EXTENTS_MAX (1u << 28)
#define MANIFEST_SIZE_MAX (1ull << 50) /* 1 PiB */
#define MANIFEST_KIND_IMAGE 1u

typedef struct manifest_extent {
        uint64_t off;
        uint32_t len;
        st_digest hash;
} manifest_extent;

typedef struct manifest {
        uint32_t kind;
        uint64_t size;
        uint64_t ctime_ns;
        st_chunker_params chunker;
        manifest_extent *ext;
        size_t n, cap;
} manifest;

manifest *manifest_new(uint32_t kind, uint64_t size, const st_chunker_params *chunker);
manifest *manifest_free(manifest *m);
/* Append an extent (must follow the last one). -ENOMEM, -EINVAL. */
int manifest_append(manifest *m, uint64_t off, uint32_t len, const st_digest *hash);
/* Validate and decode. -EBADMSG (damage, with *reterr naming the offset),
 * -EPROTONOSUPPORT (unknown version). */
int manifest_parse(const uint8_t *buf, size_t len, manifest **ret, st_diag *reterr);
/* Encode to a malloc'd buffer. */
int manifest_encode(const manifest *m, uint8_t **ret, size_t *ret_len);
