/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's private state, shared by the files of lib/store/. Layout of a
 * store directory:
 *   format          store header: version, chunker parameters, zstd level
 *   index           the chunk index as of its last compaction
 *   index.log       what changed since, one checked batch per operation
 *   dirty           present while an operation may have left the index stale
 *   lock            flock()ed: exclusive by writers, shared by readers
 *   packs/NNNNNNNN.pack
 *   manifests/ID    manifests by the BLAKE3 of their bytes (immutable)
 *   refs/NAME       images, snapshots, volumes: what each name points at
 *   deltas/NAME.*   the uncommitted writes of a volume
 */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <stellar/store.h>

#include "../util/pool.h"
#include "index.h"
#include "manifest.h"
#include "pack.h"
#include "ref.h"
#include "store-api.h"

struct cached_manifest;
typedef struct chunk_cache chunk_cache;
typedef struct cache_entry cache_entry;

typedef struct store_pack {
        uint32_t id;
        int fd;
        uint64_t len;     /* bytes of intact records, header included */
        bool unsynced;    /* appended to since the last fsync */
        uint64_t lost;    /* bytes the index listed that the file had lost at open (fsck) */
        uint64_t logged_len; /* len as the index and its log say it (index-log.c) */
        uint64_t cold_clean; /* records below this offset need no compressing (compress.c) */
} store_pack;

struct st_store {
        int dirfd, packs_fd, manifests_fd, refs_fd, deltas_fd, lock_fd;
        int serve_fd; /* serve.lock, held by the daemon (st_store_claim_server) */
        unsigned flags;
        st_store_config cfg;
        chunk_index *idx;
        store_pack *packs; /* sorted by id */
        size_t n_packs;
        uint32_t next_pack_id;
        /* Packs the index listed that were gone at open (fsck reports them). */
        uint32_t *lost_packs;
        size_t n_lost_packs;
        /* Why the index file could not be used as it was, for fsck: damaged
         * (rebuilt from the packs), or not matching the packs with no crash
         * to explain it (a stale copy put back). what is NULL if neither. */
        st_diag index_problem;
        /* What the index file and its log hold (index-log.c): entries below
         * idx_saved, with the counts of those in changed[] since moved;
         * idx_full when only a whole index can say what changed. */
        uint8_t index_sum[32]; /* the index file's trailer, named by its log */
        int log_fd;
        uint64_t log_len;
        uint32_t idx_saved;
        bool idx_full;
        bool index_old;      /* the index or its log is in format 1: rewrite it whole */
        uint32_t format_version; /* of the 'format' file as read */
        uint32_t *changed;
        uint8_t *changed_bits;
        size_t n_changed, cap_changed;
        size_t logged_packs;
        uint32_t logged_next_pack;
        bool dirty_marked; /* the 'dirty' file exists because of us */
        unsigned dirty_holds; /* store_dirty_hold: under the lock */
        bool broken;       /* a write failed midway: refuse further writes */
        uint64_t unique_bytes, stored_bytes;
        st_pool *pool;
        /* Readers of chunks (volume I/O) take it shared; anything that changes
         * the index or the pack table takes it exclusive. */
        pthread_rwlock_t lock;
        /* Serialises operations that change the store (import, commit, rm,
         * gc): store_change_begin/end, which count who waits for it. */
        pthread_mutex_t write_lock;
        atomic_uint change_waiters;
        pthread_mutex_t cache_lock;
        struct cached_manifest *cache;
        chunk_cache *hot; /* decompressed chunks, or NULL */
        pthread_mutex_t bufs_lock;
        store_chunk_buf *bufs[16]; /* idle reading buffers */
        unsigned n_bufs;
        uint32_t own_pack; /* SHARED: the pack this process appends fetched chunks to */
        /* The remote tier (chunks.c): reads of chunks the packs lack ask it. */
        const store_remote_ops *remote;
        void *remote_ctx;
        atomic_uint_least64_t remote_fetches;
        /* Volumes open for writing through this handle (volumes.c). */
        pthread_mutex_t volumes_lock;
        pthread_cond_t volumes_cv;
        struct open_volume *volumes;
        /* The step-wise compression (compress.c), under write_lock; gc_runs
         * counts gc's moves of entries, which make its plan stale. */
        struct cold_work *cold;
        uint64_t gc_runs;
};

#define STORE_FORMAT_MAGIC "STSTORE\0"
#define STORE_FORMAT_VERSION 3u /* 3: packs may hold frames of several chunks */
#define STORE_FORMAT_LEN 64u
#define INDEX_FILE_MAGIC "STINDEX\0"
#define INDEX_FILE_VERSION 2u
#define INDEX_FILE_HEADER_LEN 64u
#define INDEX_FILE_PACK_LEN 16u
#define INDEX_FILE_ENTRY_LEN 40u
#define INDEX_FILE_ENTRY_LEN_V1 36u /* version 1: no slot */
#define INDEX_FILE_TRAILER_LEN 32u

/* index-file.c */
void index_file_entry_encode(const index_entry *e, uint8_t *p);
/* The entry length of index (and log) format version v. */
size_t index_file_entry_len(uint32_t version);
/* Decode, check against the pack table and add one entry, counting it in
 * unique_bytes and stored_bytes; -EBADMSG with *why. */
int index_file_entry_load(st_store *s, const uint8_t *p, uint32_t version, const char **why);

/* index-log.c */
#define INDEX_LOG_HEADER_LEN 64u
void index_log_header(uint8_t hdr[INDEX_LOG_HEADER_LEN], const uint8_t base[32]);
/* The batch of what changed since the last (NULL when nothing did). */
int index_log_batch(const st_store *s, uint8_t **ret, size_t *ret_len);
/* The count of entry id moved (a new entry's is written with it). */
void index_log_note(st_store *s, uint32_t id);
/* Everything in memory is now in the index and its log. */
void index_log_saved(st_store *s);
/* A fresh log for the index whose trailer is s->index_sum. */
int index_log_reset(st_store *s);
bool index_log_can_append(const st_store *s, uint64_t index_len);
/* One batch of what changed since the last; made durable. */
int index_log_append(st_store *s);
/* Apply index.log over the loaded index: 0, 1 when it ends in a batch that
 * does not check (recovery needed; *reterr says where), <0 on damage. */
int index_log_load(st_store *s, st_diag *reterr);
/* The same over the log's bytes; *ret_end is where its last batch ends (0
 * for a log of another index). The parser of index_log_load (fuzz-index-log). */
int index_log_apply(st_store *s, const uint8_t *buf, size_t len, size_t *ret_end,
                    st_diag *reterr);

/* compress.c */
void store_cold_free(st_store *s);

/* store.c */
int store_mark_dirty(st_store *s);
/* fsync packs and write the index; then drop 'dirty'. store_commit does both. */
int store_write_index(st_store *s);
int store_clear_dirty(st_store *s);
int store_commit(st_store *s);
/* For an operation whose appends the index lists only at its end (gc's
 * copy, a compression step), though others commit meanwhile (a lazy pull's
 * checkpoint): 'dirty' made, and kept until the last holder releases it.
 * Under the store lock. */
int store_dirty_hold(st_store *s);
int store_dirty_release(st_store *s);
/* May this handle change the store's files beyond its own (truncate torn
 * tails, delete leftovers, write the index)? Only with the store to itself. */
bool store_files_writable(const st_store *s);
/* Recompute unique_bytes and stored_bytes from the index. */
void store_recount_totals(st_store *s);
store_pack *store_pack_find(st_store *s, uint32_t id);
/* The pack to append 'need' bytes to, creating one if needed. */
int store_pack_for_append(st_store *s, uint64_t need, store_pack **ret);
int store_pack_create(st_store *s, store_pack **ret);
/* objects.c: refs, manifests, the chain cache */
int store_ref_save(st_store *s, const char *name, const store_ref *r);
/* Create a new ref: -EEXIST if the name exists, even when another process
 * races for it (rename with RENAME_NOREPLACE). */
int store_ref_create(st_store *s, const char *name, const store_ref *r);
/* Write m as manifests/<id> unless that file exists. */
int store_manifest_save(st_store *s, const manifest *m, st_digest *ret_id, bool *ret_new);
/* Add delta (+1/-1) to the count of every chunk m's extents name. */
void store_manifest_count_refs(st_store *s, const manifest *m, int delta);
/* Mark: the manifests every ref reaches (following parents) into live (from
 * store_live_new); with recount, every chunk's count is set from them. 0 when
 * every ref and manifest could be read; 1 when some could not (*retwhy, if
 * non-NULL and still empty, names the first), the mark then being a lower
 * bound; negative errno if it could not run. */
int store_mark(st_store *s, bool recount, void *live, st_diag *retwhy);
void *store_live_new(void);
void store_live_free(void *live);
/* Delete manifest files no ref reaches, taking their chunk references away;
 * with recount, set every chunk count from the reachable manifests instead.
 * Returns 1 and deletes nothing when the mark is incomplete (see store_mark),
 * and deletes nothing on a read-only or shared handle. */
int store_prune_manifests(st_store *s, bool recount, uint64_t *ret_pruned, st_diag *retwhy);
void store_cache_free(st_store *s);

/* cache.c: the memory tier */
chunk_cache *cache_new(uint64_t budget);
chunk_cache *cache_free(chunk_cache *c);
/* Pin chunk id in memory: 0 on a hit; -ENOENT on a miss, *ret then being a
 * placeholder the caller must cache_fill (the cache takes data, a malloc'd
 * buffer) or cache_abandon. Thread-safe. */
int cache_get(chunk_cache *c, const st_digest *id, cache_entry **ret);
void cache_fill(chunk_cache *c, cache_entry *e, uint8_t *data, uint32_t len);
/* A verified chunk at hand (a frame's neighbour), copied in unless the cache
 * has it or is loading it. Never waits. */
void cache_offer(chunk_cache *c, const st_digest *id, const uint8_t *data, uint32_t len);
void cache_abandon(chunk_cache *c, cache_entry *e);
const uint8_t *cache_data(const cache_entry *e, uint32_t *ret_len);
void cache_put(chunk_cache *c, cache_entry *e);
/* The entries of n ids that the cache holds loaded, each pinned into ret[i]
 * (NULL where it does not: a miss, or another reader's load), the lookups
 * overlapped and one lock taken per shard. */
#define CACHE_BATCH 256
void cache_get_hits(chunk_cache *c, const st_digest *const *ids, size_t n, cache_entry **ret);
/* cache_put of each non-NULL es[i]. */
void cache_put_many(chunk_cache *c, cache_entry *const *es, size_t n);
void cache_stats(chunk_cache *c, st_cache_stats *ret);

/* images.c */
uint64_t store_delta_bytes(st_store *s, const char *name);
int store_remove_delta(st_store *s, const char *name);

/* Read the chunk an entry points to into b->out (raw_len bytes), the record
 * as stored left in b->scratch. Verifies the full hash. */
int store_read_entry(st_store *s, const index_entry *e, const st_digest *hash, store_chunk_buf *b);
/* After a read that decompressed a frame (b->frame_new): offer its other
 * chunks, each verified, to the memory tier. */
void store_offer_frame(st_store *s, store_chunk_buf *b, const st_digest *except);

/* The same, from this store only (no fetch from a lazy pull's source);
 * the record as stored stays in b->scratch, its payload length in
 * *ret_stored_len if wanted. */
int64_t store_read_chunk_local(st_store *s, const st_digest *id, store_chunk_buf *b,
                               uint32_t *ret_stored_len);
void store_chunk_buf_done(store_chunk_buf *b);
/* Does the record at e carry exactly this hash? (the full-hash check behind a
 * 16-byte prefix match). 1 yes, 0 no, negative errno. */
int store_entry_matches(st_store *s, const index_entry *e, const st_digest *hash);


/* Decode the 'format' file. -EBADMSG, -EPROTONOSUPPORT. */
int store_format_decode(const uint8_t *p, size_t len, st_store_config *ret, uint32_t *ret_version,
                        st_diag *reterr);

/* index-file.c */
int index_file_encode(const st_store *s, uint8_t **ret, size_t *ret_len);
int index_file_load(st_store *s, const uint8_t *buf, size_t len, st_diag *reterr);

/* recover.c */
int store_recover(st_store *s, st_diag *reterr);
