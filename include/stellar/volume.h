/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volumes: writable disks over shared, deduplicated data.
 *
 * A volume is a ref whose manifest chain (possibly empty) is its committed
 * content, plus a delta layer that takes guest writes at 4 KiB granularity
 * without hashing anything. A write is durable once st_volume_flush() (or a
 * write with ST_WRITE_FUA) returns. Committing folds the delta into chunks
 * through the same path as import, so identical data written by many clones
 * is stored once. Clones and snapshots copy no extents: a new ref points at
 * an existing manifest.
 *
 * Images and snapshots open read-only; volumes open read-write unless
 * ST_VOLUME_RDONLY is given. Any number of volumes may be open in one process.
 * On one handle, reads may run concurrently with each other; writes,
 * flushes and commits serialise with everything else on that handle. A
 * volume is open at most once per process for writing.
 */
#pragma once

#include <stellar/store.h>

typedef struct st_volume st_volume;

enum {
        ST_VOLUME_RDONLY = 1u << 0,
};

enum {
        ST_WRITE_FUA = 1u << 0,     /* durable when the call returns */
        ST_WRITE_NO_HOLE = 1u << 1, /* write_zeroes: allocate rather than punch a hole */
};

#define ST_VOLUME_BLOCK 4096u

/* Create an empty volume of size bytes (reads as zeros; costs one small ref). */
ST_API int st_volume_create(st_store *s, const char *name, uint64_t size);
/* A writable clone of an image, snapshot or volume (a volume's uncommitted
 * writes are committed first). O(1): no extent is copied. -EBADMSG if src's
 * manifests cannot be read (nothing is created). */
ST_API int st_volume_clone(st_store *s, const char *src, const char *dst);
/* A read-only snapshot of a volume as it is now (its delta is committed
 * first). */
ST_API int st_volume_snapshot(st_store *s, const char *vol, const char *snap);

ST_API int st_volume_open(st_store *s, const char *name, unsigned flags, st_volume **ret,
                          st_diag *reterr);
/* Flushes a writable volume, then closes. NULL-safe; returns NULL. */
ST_API st_volume *st_volume_close(st_volume *v);

ST_API uint64_t st_volume_size(const st_volume *v);
ST_API st_kind st_volume_kind(const st_volume *v);
ST_API bool st_volume_writable(const st_volume *v);

/* Read len bytes at off. Returns 0, -EINVAL past the end, -EBADMSG for a
 * damaged chunk, or another negative errno. */
ST_API int st_volume_read(st_volume *v, void *buf, size_t len, uint64_t off);
ST_API int st_volume_write(st_volume *v, const void *buf, size_t len, uint64_t off,
                           unsigned flags);
/* Zeros: whole 4 KiB blocks become holes (unless ST_WRITE_NO_HOLE). */
ST_API int st_volume_write_zeroes(st_volume *v, uint64_t off, uint64_t len, unsigned flags);
/* Trim: the range reads as zeros afterwards. */
ST_API int st_volume_discard(st_volume *v, uint64_t off, uint64_t len);
ST_API int st_volume_flush(st_volume *v);

/* Extent flags reported by st_volume_map. */
enum {
        ST_EXTENT_HOLE = 1u << 0,   /* reads as zeros; nothing stored */
        ST_EXTENT_SHARED = 1u << 1, /* stored in a chunk more than one extent names (dedup'd) */
        ST_EXTENT_DELTA = 1u << 2,  /* written since the last commit */
};

/* Called for consecutive extents covering [off, off+len) in order; return
 * non-zero to stop (st_volume_map then returns that value). */
typedef int (*st_extent_fn)(void *ctx, uint64_t off, uint64_t len, unsigned flags);
/* Describe [off, off+len) as extents with the same flags, reporting only the
 * flags in 'want' (ST_EXTENT_SHARED costs an index lookup per chunk, so ask
 * for it only when it is used). Thread-safe as a read. */
ST_API int st_volume_map(st_volume *v, uint64_t off, uint64_t len, unsigned want, st_extent_fn fn,
                         void *ctx);
/* Read len bytes at off, as st_volume_read, and describe them in the same
 * pass as consecutive extents whose flags are ST_EXTENT_HOLE or 0 (the NBD
 * server's structured replies). fn is called with the volume's lock held: it
 * must not block. */
ST_API int st_volume_read_map(st_volume *v, void *buf, size_t len, uint64_t off, st_extent_fn fn,
                              void *ctx);
/* Make the chunks behind [off, off+len) present in every tier: fetched from
 * a lazily pulled image's source if the store lacks them, and loaded into
 * the store's cache if it has one (a hint: NBD_CMD_CACHE). */
ST_API int st_volume_prefetch(st_volume *v, uint64_t off, uint64_t len);

typedef struct st_commit_result {
        uint64_t blocks;     /* delta blocks folded */
        uint64_t new_chunks; /* chunks the store did not have */
        uint64_t new_bytes;  /* their raw bytes */
        uint64_t new_stored; /* bytes appended to packs */
        bool flattened;      /* the chain was rewritten as one manifest */
} st_commit_result;

/* Fold the delta into chunks and a new manifest layer; afterwards the delta
 * is empty. Atomic: after a crash the volume is as before or as after. */
ST_API int st_volume_commit(st_volume *v, st_commit_result *ret);
/* Commit volume 'name': through this process's open writable handle of it
 * if there is one (a daemon's attached volume: the commit then holds every
 * write acknowledged before it), else by opening it. -EROFS if it is not a
 * volume; open errors as st_volume_open (*reterr names the file). */
ST_API int st_volume_commit_name(st_store *s, const char *name, st_commit_result *ret,
                                 st_diag *reterr);

/* fsck of every volume's delta: replays each journal read-only and reports
 * damage (with the file and offset) through report, adding to res's counts
 * (res is not zeroed: call after st_store_fsck with the same result). Torn
 * tails of unfinished flushes are not damage. Changes nothing. Returns 0, or
 * negative errno if it could not run. */
ST_API int st_volume_fsck(st_store *s, st_fsck_report_fn report, void *userdata,
                          st_fsck_result *res);
