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
/* With PACK_FLAG_ZSTD: the payload is a frame of several chunks (a table of
 * their hashes and lengths, then one zstd frame of their bytes end to end);
 * the header's raw length is their sum, its hash the BLAKE3 of the table. */
#define PACK_FLAG_FRAME 2u
/* Alone: raw bytes that looked compressible, stored so by an import that
 * defers compression; gc compresses them (in frames) at the cold level. */
#define PACK_FLAG_DEFERRED 4u
#define PACK_FRAME_HEAD_LEN 8u       /* chunk count (4), zstd level it was made at (4) */
#define PACK_FRAME_SLOT_LEN 36u      /* hash (32), raw length (4) */
#define PACK_FRAME_MAX_CHUNKS 256u
#define PACK_FRAME_MAX_RAW (1u << 20) /* raw bytes of all the frame's chunks */
#define PACK_FRAME_LEVEL_MIN (-100)
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

/* Decode a record's payload into out (raw_len bytes) and verify it: the
 * chunk's hash, or for a frame the table's and every chunk's. dctx is a
 * ZSTD_DCtx* or NULL. -EBADMSG on corruption or hash mismatch. */
int pack_payload_decode(const pack_record *r, const uint8_t *payload, void *out, void *dctx);

/* A frame record's payload, parsed (pointers into it). */
typedef struct pack_frame {
        uint32_t n;
        int level; /* the zstd level it was compressed at */
        const uint8_t *table; /* n slots of PACK_FRAME_SLOT_LEN */
        const uint8_t *zstd;
        size_t zstd_len;
} pack_frame;

/* Parse and check a frame's table: the count in range, the table's hash the
 * record's, the lengths summing to the record's raw length. -EBADMSG. */
int pack_frame_parse(const pack_record *r, const uint8_t *payload, pack_frame *ret);
/* Slot k (< f->n): the chunk's hash, its offset in the frame's bytes, its length. */
void pack_frame_slot(const pack_frame *f, uint32_t k, st_digest *ret_hash, uint32_t *ret_off,
                     uint32_t *ret_len);
/* Decompress the frame's bytes into out (r->raw_len) without verifying them. */
int pack_frame_inflate(const pack_record *r, const pack_frame *f, void *out, void *dctx);
/* Encoding: the head for n chunks, slot k, then the table's hash. */
void pack_frame_head_encode(uint8_t *table, uint32_t n, int level);
void pack_frame_slot_encode(uint8_t *table, uint32_t k, const st_digest *hash, uint32_t len);
size_t pack_frame_table_len(uint32_t n);

/* Build a frame record of n (2 .. PACK_FRAME_MAX_CHUNKS) chunks whose raw
 * lengths sum to at most PACK_FRAME_MAX_RAW: the payload into out (at least
 * pack_frame_bound bytes), the header fields into *ret. gather (raw bytes)
 * is used when the chunks are not already end to end in memory. Returns the
 * payload length, 0 when zstd does not make the chunks smaller (store them
 * raw), or -ENOMEM / -EIO. cctx is a ZSTD_CCtx*. */
typedef struct pack_frame_src {
        st_digest hash;
        const uint8_t *data;
        uint32_t len;
} pack_frame_src;
size_t pack_frame_bound(uint32_t n, size_t raw);
int64_t pack_frame_build(void *cctx, int level, const pack_frame_src *src, uint32_t n,
                         uint8_t *gather, uint8_t *out, pack_record *ret);
