/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pack files: a 32-byte header, then records of (56-byte header, payload)
 * appended back to back. Each record header carries the chunk's full hash and
 * lengths and a checksum of itself, so the index can be rebuilt from the packs
 * alone and a torn tail is recognised. Byte layout: docs/formats/pack.md.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/common.h>

#define PACK_MAGIC "STPACK\0\0"
#define PACK_VERSION 1u
#define PACK_HEADER_LEN 32u
#define PACK_RECORD_MAGIC 0x43525453u /* "STRC" */
#define PACK_RECORD_HEADER_LEN 56u
#define PACK_FLAG_ZSTD 1u
#define PACK_TARGET_SIZE (256ull << 20) /* start a new pack past this */
#define PACK_MAX_SIZE (UINT32_MAX)      /* offsets are 32-bit */

typedef struct pack_record {
        uint32_t flags;
        uint32_t raw_len;
        uint32_t stored_len;
        st_digest hash;
} pack_record;

void pack_header_encode(uint8_t out[PACK_HEADER_LEN], uint32_t pack_id);
/* -EBADMSG (bad magic), -EPROTONOSUPPORT (version), or 0. */
int pack_header_decode(const uint8_t *p, size_t len, uint32_t *ret_pack_id, st_diag *reterr);

void pack_record_encode(uint8_t out[PACK_RECORD_HEADER_LEN], const pack_record *r);
/* Check magic, checksum, flags and lengths. -EBADMSG on any damage. */
int pack_record_decode(const uint8_t *p, size_t len, pack_record *ret, st_diag *reterr);

/* Walk the records of an open pack from offset 'from' (>= header) to its end.
 * Calls fn for each record whose header is intact; stops at the first damaged
 * or truncated one, or where fn returns > 0 (the caller judged the record
 * bad), and returns that offset in *ret_end (the file length if all were
 * intact). Returns 0, or what fn returned if negative, or -errno. */
typedef int (*pack_walk_fn)(void *ctx, uint64_t off, const pack_record *r);
int pack_walk(int fd, uint64_t from, uint64_t file_len, pack_walk_fn fn, void *ctx,
              uint64_t *ret_end, st_diag *reterr);

void pack_name(char out[32], uint32_t pack_id);
/* Parse "NNNNNNNN.pack" (8 hex digits). */
bool pack_name_parse(const char *name, uint32_t *ret_id);

/* Decode a record's payload into out (raw_len bytes) and verify its hash.
 * dctx is a ZSTD_DCtx* or NULL. -EBADMSG on corruption or hash mismatch. */
int pack_payload_decode(const pack_record *r, const uint8_t *payload, void *out, void *dctx);
