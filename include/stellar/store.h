/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk store: chunks named by BLAKE3, deduplicated inline, compressed
 * with zstd, appended to pack files, found through a persistent index; and the
 * images whose manifests refer to them. See docs/formats/ for the bytes.
 *
 * One process opens a store for writing at a time (an exclusive lock on
 * DIR/lock); readers take a shared lock. All functions return 0 (or a
 * non-negative length) on success and a negative errno on failure. A store
 * handle is not thread-safe except where a function says so.
 */
#pragma once

#include <errno.h>

#include <stellar/chunker.h>
#include <stellar/common.h>

typedef struct st_store st_store;

enum {
        ST_STORE_RDONLY = 1u << 0, /* shared lock; never writes (recovery stays in memory) */
        ST_STORE_CREATE = 1u << 1, /* create the store if DIR has none */
        /* Shared with other processes (the daemon, and CLI commands while it
         * runs): may create refs (volumes, clones) and write volumes, but not
         * change chunks or the index (import, commit, rm, gc give -EBUSY). */
        ST_STORE_SHARED = 1u << 2,
        /* Refs and manifests only (ls, info, create, clone): no index is
         * loaded and nothing is recovered. With RDONLY no lock is taken and
         * it never waits; with SHARED it takes the shared lock. */
        ST_STORE_NOINDEX = 1u << 3,
        /* Fail with -EBUSY instead of waiting for a writer to finish. */
        ST_STORE_NOWAIT = 1u << 4,
};

typedef struct st_store_config {
        st_chunker_params chunker; /* for imports */
        int zstd_level;
        /* For volume commits: what guests write is folded with larger chunks,
         * which keeps a commit's manifest layer and index entries under 1% of
         * its data (bench/RESULTS.md, density). Identical writes in many
         * clones still dedup: they are cut the same way. */
        st_chunker_params commit_chunker;
        /* Imports compress frames at zstd_level, fast; gc and the daemon's
         * idle compression remake the frames made below this level at it,
         * neighbours merged (the store's cold data, smaller for good).
         * 0: never. */
        int zstd_cold_level;
} st_store_config;

/* zstd_level: imports store new chunks raw, the fastest ingest, and gc
 * compresses them, in frames, at the cold level (which must be set). */
#define ST_ZSTD_DEFER (-128)

#define ST_CHUNKER_COMMIT_DEFAULT ((st_chunker_params){ 4096, 4096, 16384, 65536 })
#define ST_STORE_CONFIG_DEFAULT                                                                    \
        ((st_store_config){ ST_CHUNKER_IMAGE_DEFAULT, 1, ST_CHUNKER_COMMIT_DEFAULT, 9 })

/* Create a store in dir (made if missing). -EEXIST if one is there already. */
ST_API int st_store_init(const char *dir, const st_store_config *cfg);

/* Open the store in dir. If the last writer crashed (or the index does not
 * match the packs), recovers: scans pack tails, recounts references from the
 * manifests and writes a clean index. Only a process that holds the store to
 * itself writes anything while recovering; readers and SHARED openers that
 * share the store with others catch up in memory. A writer takes the store
 * to itself (an exclusive lock) and gets -EBUSY at once if another process
 * holds it; readers and SHARED openers wait for a writer to finish (unless
 * NOWAIT), then read the index it left. With CREATE, a directory that holds
 * anything but a store is refused (-ENOTEMPTY). On failure *reterr (if
 * non-NULL) names the file and offset. */
ST_API int st_store_open(const char *dir, unsigned flags, st_store **ret, st_diag *reterr);
/* The pid of the last process that took the store to itself (it may have
 * finished), or 0: for "waiting for pid N" messages. */
ST_API long st_store_writer_pid(const char *dir);
/* Make this process the store's one server (stellar serve): holds
 * DIR/serve.lock until the store is closed. -EBUSY if another process
 * serves it, *ret_holder (if non-NULL) then getting its pid (0 if unknown). */
ST_API int st_store_claim_server(st_store *s, long *ret_holder);
/* The pid of the process serving the store, -1 if one does whose pid is
 * unknown, 0 if none does. */
ST_API long st_store_server_pid(const char *dir);
/* Close; NULL-safe; returns NULL. */
ST_API st_store *st_store_close(st_store *s);

ST_API const st_store_config *st_store_get_config(const st_store *s);

typedef struct st_import_opts {
        st_progress_fn progress;
        void *userdata;
} st_import_opts;

typedef struct st_import_result {
        uint64_t size;        /* image size */
        uint64_t data_bytes;  /* bytes in chunks (not holes) */
        uint64_t new_bytes;   /* raw bytes of chunks the store did not have */
        uint64_t new_stored;  /* bytes appended to packs */
        uint64_t n_chunks;    /* extents in the manifest */
        uint64_t n_new;       /* chunks added */
} st_import_result;

/* Import a raw image file or block device as image 'name'. The image becomes
 * visible only when complete. -EEXIST if the name is taken. */
ST_API int st_store_import(st_store *s, const char *path, const char *name,
                           const st_import_opts *opts, st_import_result *ret, st_diag *reterr);

/* Write image 'name' to path: byte-identical, sparse where the image has holes
 * (a block device gets zeros written). Every chunk is verified. */
ST_API int st_store_export(st_store *s, const char *name, const char *path,
                           const st_import_opts *opts, st_diag *reterr);

/* What a name in the store is. Values are stored on disk. */
typedef enum st_kind {
        ST_KIND_IMAGE = 1,    /* imported; read-only */
        ST_KIND_SNAPSHOT = 2, /* point in time of a volume; read-only */
        ST_KIND_VOLUME = 3,   /* writable, with a delta layer */
        _ST_KIND_MAX,
        _ST_KIND_INVALID = -EINVAL,
} st_kind;

ST_API const char *st_kind_name(st_kind k);

typedef struct st_image_info {
        char name[256];
        st_kind kind;
        char parent[256]; /* the name it was cloned or snapshotted from, or "" */
        uint64_t size;
        uint64_t n_layers;   /* manifests in its chain (0: empty volume) */
        uint64_t n_extents;  /* extents over all layers */
        uint64_t data_bytes; /* bytes covered by chunks over all layers */
        uint64_t delta_bytes; /* volumes: bytes in the uncommitted delta */
        uint64_t ctime_ns;
        st_digest id; /* the top manifest's id (BLAKE3 of its bytes); zero if none */
        /* st_store_list: why the name cannot be described (negative errno,
         * and "FILE: what"), or 0 and "". Such an entry is damaged: the other
         * fields hold what could be read (its name, perhaps kind and size). */
        int error;
        char error_msg[320];
} st_image_info;

/* Everything in the store, sorted by name, damaged names too (with error
 * set). Caller frees *ret with free(). */
ST_API int st_store_list(st_store *s, st_image_info **ret, size_t *ret_n);
ST_API int st_store_info(st_store *s, const char *name, st_image_info *ret, st_diag *reterr);
/* Remove an image, snapshot or volume. Data that clones or snapshots share
 * stays (their manifests hold it); chunks nothing uses lose their last
 * reference and gc frees them. A volume's uncommitted delta is deleted.
 * While any other ref or manifest cannot be read, the manifests the name
 * held are kept (what the unreadable one reaches is unknown): the name is
 * still removed, 0 is returned and *retheld (if non-NULL) names what could
 * not be read; its 'what' stays NULL when nothing was held back. */
ST_API int st_store_remove(st_store *s, const char *name, st_diag *retheld);

typedef struct st_store_stats {
        uint64_t n_images; /* names of every kind */
        uint64_t n_chunks;       /* chunks in the index */
        uint64_t n_unreferenced; /* chunks no manifest uses (gc frees them) */
        uint64_t n_framed;       /* of them, chunks in frames of several */
        uint64_t n_frames;       /* frame records their entries name */
        uint64_t logical_bytes;  /* sum of image sizes */
        uint64_t referenced_bytes; /* sum of extent lengths over all images */
        uint64_t unique_bytes;   /* raw bytes of distinct chunks */
        uint64_t stored_bytes;   /* bytes of chunk records in packs (compressed) */
        uint64_t pack_bytes;     /* size of all pack files */
        uint64_t n_packs;
        uint64_t index_ram_bytes; /* memory the in-RAM index holds */
} st_store_stats;

ST_API int st_store_stats_get(st_store *s, st_store_stats *ret);

typedef struct st_gc_result {
        uint64_t chunks_freed;
        uint64_t bytes_freed; /* pack bytes reclaimed */
        uint64_t packs_rewritten;
        uint64_t counts_corrected; /* stored reference counts the recount found wrong */
        uint64_t frames_recompressed; /* made below the cold level, remade at it */
} st_gc_result;

/* Free chunks no manifest refers to and compact the packs that held them.
 * The references are recounted from the manifests every ref reaches; while
 * any ref or manifest cannot be read gc frees nothing and returns -EBADMSG,
 * *reterr (if non-NULL) naming it. A damaged chunk that is still in use also
 * stops it (-EBADMSG, naming the pack and offset) before any pack is
 * dropped. */
ST_API int st_store_gc(st_store *s, const st_import_opts *opts, st_gc_result *ret,
                       st_diag *reterr);

typedef struct st_compress_result {
        uint64_t records;       /* records read (a frame counts once) and written again */
        uint64_t recompressed;  /* of them, frames made at the cold level */
        uint64_t bytes_in;      /* their stored bytes before */
        uint64_t bytes_out;     /* and after */
        uint64_t packs_dropped; /* packs whose every record moved, deleted */
} st_compress_result;

/* One step of the compression that imports left to the cold level (records
 * stored raw by `--zstd-level defer`, frames made below the cold level):
 * the daemon's idle work, which st_store_gc also completes all at once.
 * Takes about budget_ns of the calling thread's CPU time, holding the write
 * mutex (-EBUSY at once, doing nothing, while another change holds it);
 * readers are held up only while the entries it moved are written back.
 * Nothing is freed: every indexed record of a pack is copied before that
 * pack is deleted. Returns 1 while there may be more to do, 0 when every
 * pack is as the cold level asks (or the store has none), <0 on an error
 * (-EBADMSG naming a damaged record in *reterr, which stays where it is).
 * Adds to *ret. */
ST_API int st_store_compress_step(st_store *s, uint64_t budget_ns, st_compress_result *ret,
                                  st_diag *reterr);

typedef struct st_fsck_result {
        uint64_t n_errors;
        uint64_t n_warnings;
        uint64_t chunks_checked;
        uint64_t bytes_checked;
        uint64_t manifests_checked;
        uint64_t deltas_checked; /* st_volume_fsck */
} st_fsck_result;

/* Called once per problem found; severity 0 = warning, 1 = error. */
typedef void (*st_fsck_report_fn)(void *userdata, int severity, const char *file, uint64_t offset,
                                  const char *msg);

/* Re-hash every chunk, check every manifest, reference and count. Returns 0
 * when it could run (look at ret->n_errors), negative errno when it could not. */
ST_API int st_store_fsck(st_store *s, st_fsck_report_fn report, void *userdata,
                         const st_import_opts *opts, st_fsck_result *ret);

typedef struct st_cache_stats {
        uint64_t hits;         /* reads served from memory */
        uint64_t misses;       /* reads that had to load the chunk */
        uint64_t waits;        /* reads that waited for another reader's load */
        uint64_t loads;        /* chunks read from packs and decompressed */
        uint64_t bytes_loaded;
        uint64_t evictions;
        uint64_t entries, bytes, budget;
        uint64_t remote_fetches; /* chunks the remote tier (lazily pulled images) supplied */
} st_cache_stats;

/* Give the store a cache of decompressed chunks of at most budget bytes,
 * shared by every volume read through this handle (the daemon's hot tier).
 * Call before opening volumes; 0 turns it off (the default). */
ST_API int st_store_set_cache(st_store *s, uint64_t budget);
/* Counters of the cache (all zero without one) and of the remote tier.
 * Thread-safe. */
ST_API void st_store_cache_stats(st_store *s, st_cache_stats *ret);

/* Read chunk 'id' into buf (buf_len >= its length). Returns the length,
 * -ENOENT, -EBADMSG (corrupt or hash mismatch) or -ENOBUFS. Thread-safe
 * against other readers. */
ST_API int64_t st_store_read_chunk(st_store *s, const st_digest *id, void *buf, size_t buf_len);

/* True if name is acceptable for an image: 1-200 chars of [A-Za-z0-9._+@:-],
 * not starting with '.' or '-'. */
ST_API bool st_name_valid(const char *name);
