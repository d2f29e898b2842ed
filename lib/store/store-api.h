/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What lib/volume and lib/remote may use of the store: functions over an
 * opaque st_store, never its fields or locks (those are in store-internal.h,
 * for lib/store alone).
 *
 *   chunks     one lookup, store_get, with the tiers behind it: the memory
 *              cache, then the local packs, then the remote sources of lazily
 *              pulled images; each tier says "not here" to fall through, and
 *              what any tier returns is verified against its hash
 *   names      refs, manifests and manifest chains
 *   changes    store_change_begin/end around anything that changes the store,
 *              and store_make_visible, the one way a new image or layer
 *              (import, volume commit, pull) becomes visible under a name
 *   volumes    the handle's list of volumes open for writing
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/store.h>

#include "../util/pool.h"
#include "ingest.h"
#include "manifest.h"
#include "ref.h"

/* ---- chunks */

/* A chunk's verified bytes, held until store_release. */
typedef struct store_chunk {
        const uint8_t *data;
        uint32_t len;
        void *entry; /* private: the pinned cache entry, or */
        void *buf;   /* the reading buffer it is in */
} store_chunk;

/* Chunk id's bytes from the first tier that has it (a chunk a remote source
 * supplies is kept in the packs, and in memory if the store has a cache).
 * -ENOENT if no tier has it, -EBADMSG if what the store holds is damaged. */
int store_get(st_store *s, const st_digest *id, store_chunk *ret);
void store_release(st_store *s, store_chunk *c);
/* store_get of n ids at once where the memory tier has them, the lookups
 * overlapped: ret[i] is the chunk on a hit, all zero (len 0, data NULL) on
 * a miss, for which the caller asks store_get. store_release_many puts
 * back n of either kind. */
void store_get_cached(st_store *s, const st_digest *const *ids, size_t n, store_chunk *ret);
void store_release_many(st_store *s, store_chunk *c, size_t n);

enum {
        STORE_WARM_LOCAL = 1u << 0,  /* fetch what the packs lack from the remote tier */
        STORE_WARM_MEMORY = 1u << 1, /* and load each into the memory cache */
};
/* Make chunks present in the tiers asked for, missing ones from remote
 * sources in parallel (a hint: best effort, nothing is returned). */
void store_warm(st_store *s, const st_digest *ids, size_t n, unsigned tiers);
/* Does the store have a remote tier (lazily pulled images)? */
bool store_has_remote(const st_store *s);

/* Is chunk id in the packs? 0 (with its length and reference count if
 * asked), or -ENOENT. */
int store_chunk_lookup(st_store *s, const st_digest *id, uint32_t *ret_len, uint32_t *ret_refs);

/* The remote tier: lib/remote's fetcher of lazily pulled images. */
typedef struct store_remote_ops {
        /* Fetch chunk id into the packs: 0 once it is there. */
        int (*fetch)(void *ctx, st_store *s, const st_digest *id);
        /* The same for several, in parallel; best effort. */
        void (*fetch_many)(void *ctx, st_store *s, const st_digest *ids, size_t n);
        void (*free)(void *ctx);
} store_remote_ops;
/* Replace the remote tier (ops NULL: none); the store frees ctx at close. */
void store_set_remote(st_store *s, const store_remote_ops *ops, void *ctx);
/* The remote tier put n chunks into the packs (st_cache_stats.remote_fetches). */
void store_note_remote(st_store *s, uint64_t n);

/* Buffers for reading chunks, reused across calls by one thread. */
typedef struct store_chunk_buf {
        uint8_t *scratch, *out;
        size_t scratch_cap, out_cap;
        void *dctx; /* ZSTD_DCtx */
        /* The frame last decompressed (pack, record offset, raw length, and
         * its number of chunks, whose table, checked, stays in scratch after
         * the record header), so that reading its neighbours does not
         * decompress it, or check its table, again. */
        uint8_t *frame;
        size_t frame_cap;
        uint32_t frame_pack, frame_off, frame_len, frame_chunks;
        bool frame_new; /* the last read decompressed it */
} store_chunk_buf;
store_chunk_buf *store_chunk_buf_get(st_store *s);
void store_chunk_buf_put(st_store *s, store_chunk_buf *b);

/* A chunk as the packs hold it (publish ships it so). */
typedef struct store_payload {
        const uint8_t *data; /* in the buffer given */
        uint32_t stored_len, raw_len;
        bool zstd; /* data is one zstd frame; else the raw bytes */
        bool compressible; /* raw bytes of a chunk the packs hold compressed (in a frame) */
} store_payload;
/* From the packs only; b->out then holds the verified raw bytes. */
int store_chunk_payload(st_store *s, const st_digest *id, store_chunk_buf *b, store_payload *ret);

/* Chunks from outside the store, verified by the caller. */
typedef struct store_put {
        st_digest hash;
        const uint8_t *payload; /* as stored: a zstd frame if zstd, else the raw bytes */
        uint32_t stored_len, raw_len;
        bool zstd;
} store_put;
/* Append those the store lacks (no references yet); *ret_stored gets the
 * pack bytes written. Not durable until a checkpoint (or, SHARED, ever:
 * recovery finds them). */
int store_put_chunks(st_store *s, const store_put *items, size_t n, uint64_t *ret_stored);
/* Make what was appended so far durable and indexed (a long pull keeps what
 * it fetched if killed). */
int store_checkpoint(st_store *s);

/* ---- names */

int store_ref_load(st_store *s, const char *name, store_ref *ret, st_diag *reterr);
bool store_ref_exists(st_store *s, const char *name);
/* Names of all refs (sorted); caller frees with store_free_names. */
int store_list_names(st_store *s, char ***ret, size_t *ret_n);
void store_free_names(char **names, size_t n);
int store_manifest_load(st_store *s, const st_digest *id, manifest **ret, st_diag *reterr);

/* A manifest and its ancestors, top first, borrowed from the store's cache. */
typedef struct store_chain {
        manifest **layers;
        size_t n;
} store_chain;
int store_chain_get(st_store *s, const st_digest *top, store_chain *ret, st_diag *reterr);
void store_chain_put(st_store *s, store_chain *c);

uint64_t store_now_ns(void);
/* The handle's worker threads (parallel reads and hashing). */
st_pool *store_pool(st_store *s);
/* The store's directories: deltas/, and the store itself (for sources/). */
int store_deltas_fd(const st_store *s);
int store_dir_fd(const st_store *s);
/* 0, or why this handle may not change the store (-EROFS). */
int store_writable(const st_store *s);
/* For changes to chunks and the index: also -EBUSY on a SHARED handle. */
int store_exclusive(const st_store *s);

/* NAME has no ref but delta files that hold writes (its ref was lost). */
bool store_delta_orphan_writes(st_store *s, const char *name);
#define STORE_ORPHAN_WRITES_MSG                                                             \
        "the writes of a volume of this name whose ref is missing are kept in deltas/ "      \
        "(see 'stellar fsck'; 'stellar rm NAME' removes them)"
/* Does the volume's delta journal hold any record (writes to commit)? */
bool store_delta_pending(st_store *s, const char *name);

/* ---- changes */

/* Serialise a change against the others of this process (import, commit,
 * rm, gc, pull; the daemon runs commands side by side). Other processes are
 * kept out by the store lock. */
void store_change_begin(st_store *s);
void store_change_end(st_store *s);

/* A new ref that shares manifests already counted (create, clone,
 * snapshot): -EEXIST if the name exists (even against another process),
 * -ENOTEMPTY over a lost volume's writes. Within a change. */
int store_name_create(st_store *s, const char *name, const store_ref *r);

enum {
        STORE_VISIBLE_CREATE = 1u << 0,  /* the name is new (else it is replaced) */
        STORE_VISIBLE_KEEP = 1u << 1,    /* the name is there already and stays */
        STORE_VISIBLE_PRUNE = 1u << 2,   /* the layers replace the old ones (a flattened chain) */
        STORE_VISIBLE_RECOUNT = 1u << 3, /* chunks came in under layers already counted */
};
/* Make layers (bottom first, the top last) visible as name: each layer is
 * written unless the store has it, the chunks of the new ones counted, then
 * the ref (ref->manifest is set to the top's id) is written: the commit
 * point; then the index. Within a change. *ret_named says whether the commit
 * point was passed (the caller's ingest can be undone only before). A
 * failure after it leaves the handle broken (no further writes). */
int store_make_visible(st_store *s, const char *name, manifest *const *layers, size_t n,
                       store_ref *ref, unsigned flags, bool *ret_named, st_diag *reterr);

/* ---- volumes open for writing on this handle */

/* Note volume name open for writing by owner: -EBUSY if it is already. */
int store_volume_attach(st_store *s, const char *name, void *owner);
/* Forget it; waits while another thread has it pinned. */
void store_volume_detach(st_store *s, const char *name);
bool store_volume_is_open(st_store *s, const char *name);
/* The owner of an open volume, kept open until store_volume_unpin; NULL if
 * it is not open on this handle. */
void *store_volume_pin(st_store *s, const char *name);
void store_volume_unpin(st_store *s, const char *name);
