/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's private state, shared by the files of lib/store/. Layout of a
 * store directory:
 *   format          store header: version, chunker parameters, zstd level
 *   index           the chunk index as of the last clean operation
 *   dirty           present while an operation may have left the index stale
 *   lock            flock()ed: exclusive by writers, shared by readers
 *   packs/NNNNNNNN.pack
 *   images/NAME     manifests
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/store.h>

#include "../util/pool.h"
#include "index.h"
#include "manifest.h"
#include "pack.h"

typedef struct store_pack {
        uint32_t id;
        int fd;
        uint64_t len;     /* bytes of intact records, header included */
        bool unsynced;    /* appended to since the last fsync */
} store_pack;

struct st_store {
        int dirfd, packs_fd, images_fd, lock_fd;
        unsigned flags;
        st_store_config cfg;
        chunk_index *idx;
        store_pack *packs; /* sorted by id */
        size_t n_packs;
        uint32_t next_pack_id;
        bool dirty_marked; /* the 'dirty' file exists because of us */
        bool broken;       /* a write failed midway: refuse further writes */
        uint64_t unique_bytes, stored_bytes;
        st_pool *pool;
};

#define STORE_FORMAT_MAGIC "STSTORE\0"
#define STORE_FORMAT_VERSION 1u
#define STORE_FORMAT_LEN 64u
#define INDEX_FILE_MAGIC "STINDEX\0"
#define INDEX_FILE_VERSION 1u
#define INDEX_FILE_HEADER_LEN 64u
#define INDEX_FILE_PACK_LEN 16u
#define INDEX_FILE_ENTRY_LEN 36u
#define INDEX_FILE_TRAILER_LEN 32u

/* store.c */
int store_mark_dirty(st_store *s);
/* fsync packs and write the index; then drop 'dirty'. store_commit does both. */
int store_write_index(st_store *s);
int store_clear_dirty(st_store *s);
int store_commit(st_store *s);
int store_writable(const st_store *s);
/* Recompute unique_bytes and stored_bytes from the index. */
void store_recount_totals(st_store *s);
store_pack *store_pack_find(st_store *s, uint32_t id);
/* The pack to append 'need' bytes to, creating one if needed. */
int store_pack_for_append(st_store *s, uint64_t need, store_pack **ret);
int store_pack_create(st_store *s, store_pack **ret);
st_pool *store_pool(st_store *s);
int store_load_manifest(st_store *s, const char *name, manifest **ret, st_diag *reterr);
int store_save_manifest(st_store *s, const char *name, const manifest *m);
/* Names of all images (sorted); caller frees each and the array. */
int store_list_names(st_store *s, char ***ret, size_t *ret_n);
void store_free_names(char **names, size_t n);
/* Read the chunk an entry points to into out (raw_len bytes); scratch must
 * hold PACK_RECORD_HEADER_LEN + stored_len. Verifies the full hash. */
int store_read_entry(st_store *s, const index_entry *e, const st_digest *hash, void *out,
                     uint8_t *scratch, void *dctx);
/* Does the record at e carry exactly this hash? (the full-hash check behind a
 * 16-byte prefix match). 1 yes, 0 no, negative errno. */
int store_entry_matches(st_store *s, const index_entry *e, const st_digest *hash);

/* Decode the 'format' file. -EBADMSG, -EPROTONOSUPPORT. */
int store_format_decode(const uint8_t *p, size_t len, st_store_config *ret, st_diag *reterr);

/* index-file.c */
int index_file_encode(const st_store *s, uint8_t **ret, size_t *ret_len);
int index_file_load(st_store *s, const uint8_t *buf, size_t len, st_diag *reterr);

/* recover.c */
int store_recover(st_store *s, st_diag *reterr);
