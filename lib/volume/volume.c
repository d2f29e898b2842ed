/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volumes: the read path (delta over a manifest chain), the write path (into
 * the delta), and the operations that make or change refs: create, clone,
 * snapshot, commit.
 *
 * Locking: each volume has a rwlock (reads shared; writes, flushes, commits
 * exclusive). Chunks come from store_get, which locks what it needs.
 * Operations that change the store run between store_change_begin and end.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <stellar/volume.h>

#include "../store/store-api.h"
#include "../util/cleanup.h"
#include "../util/diag.h"
#include "delta.h"
#include "view.h"

#include "volume-internal.h"

struct st_volume {
        st_store *s;
        char name[REF_NAME_MAX + 1];
        store_ref ref;
        store_chain chain;
        delta d;
        bool writable;
        int lock_fd; /* deltas/NAME.lock, flock()ed while open for writing */
        pthread_rwlock_t lock;
        /* One flush at a time; taken before lock. A flush holds lock only
         * to take its batch and to settle it, not while it syncs. */
        pthread_mutex_t flush_lock;
};

#define FLATTEN_DEPTH 32 /* a commit that would make the chain deeper rewrites it whole */

uint64_t st_volume_size(const st_volume *v) {
        return v->ref.size;
}

st_kind st_volume_kind(const st_volume *v) {
        return (st_kind)v->ref.kind;
}

bool st_volume_writable(const st_volume *v) {
        return v->writable;
}

/* One writer per volume across processes (two daemons, or a daemon and a
 * commit): each would hand out delta slots and journal numbers on its own
 * and lose the other's writes. The lock dies with its holder. */
static int lock_volume(st_store *s, const char *name, int *ret_fd, st_diag *reterr) {
        char file[REF_NAME_MAX + 16], path[REF_NAME_MAX + 24];
        snprintf(file, sizeof file, "%s.lock", name);
        snprintf(path, sizeof path, "deltas/%s", file);
        int fd = openat(store_deltas_fd(s), file, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET, "cannot open the volume's lock",
                                    -errno);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                close(fd);
                return st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET,
                                    r == -EBUSY ? "the volume is open for writing by another "
                                                  "process (stellar serve?)"
                                                : "cannot lock the volume",
                                    r);
        }
        *ret_fd = fd;
        return 0;
}

int st_volume_open(st_store *s, const char *name, unsigned flags, st_volume **ret,
                   st_diag *reterr) {
        st_volume *v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        v->s = s;
        v->lock_fd = -1;
        v->d = (delta){ .data_fd = -1, .map_fd = -1 };
        snprintf(v->name, sizeof v->name, "%s", name);
        int r = store_ref_load(s, name, &v->ref, reterr);
        if (r < 0) {
                free(v);
                return r;
        }
        v->writable = v->ref.kind == ST_KIND_VOLUME && !(flags & ST_VOLUME_RDONLY) &&
                      store_writable(s) == 0;
        if (v->writable) {
                r = store_volume_attach(s, name, v);
                if (r < 0) {
                        free(v);
                        return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET,
                                            "volume already open for writing", r);
                }
        }
        if (v->writable) {
                r = lock_volume(s, name, &v->lock_fd, reterr);
                if (r < 0) {
                        store_volume_detach(s, name);
                        free(v);
                        return r;
                }
        }
        r = store_chain_get(s, &v->ref.manifest, &v->chain, reterr);
        if (r == 0 && v->ref.kind == ST_KIND_VOLUME) {
                r = delta_open(store_deltas_fd(s), name, v->ref.ctime_ns,
                               (v->ref.size + DELTA_BLOCK - 1) / DELTA_BLOCK, !v->writable, &v->d,
                               reterr);
                if (r < 0 && (!reterr || !reterr->what))
                        (void)st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET,
                                           "cannot open the volume's delta", r);
        }
        if (r < 0) {
                if (v->writable)
                        store_volume_detach(s, name);
                if (v->lock_fd >= 0)
                        close(v->lock_fd);
                store_chain_put(s, &v->chain);
                free(v);
                return r;
        }
        pthread_rwlock_init(&v->lock, NULL);
        pthread_mutex_init(&v->flush_lock, NULL);
        *ret = v;
        return 0;
}

st_volume *st_volume_close(st_volume *v) {
        if (!v)
                return NULL;
        if (v->writable) {
                store_volume_detach(v->s, v->name); /* waits for a commit or fsck through it */
                pthread_mutex_lock(&v->flush_lock);
                if (delta_flush(&v->d) == 0)
                        (void)delta_seal(&v->d); /* the next open trusts the last flush */
                pthread_mutex_unlock(&v->flush_lock);
        }
        delta_close(&v->d);
        if (v->lock_fd >= 0)
                close(v->lock_fd); /* after the last write is flushed */
        store_chain_put(v->s, &v->chain);
        pthread_rwlock_destroy(&v->lock);
        pthread_mutex_destroy(&v->flush_lock);
        free(v);
        return NULL;
}

/* Lazily pulled images: before reading [off, off + len), fetch the chunks
 * it and the next FETCH_AHEAD bytes need that the store lacks, in
 * parallel, so a read costs about one round trip, not one per chunk. */
#define FETCH_AHEAD (1u << 20)
#define FETCH_MAX 64
static void fetch_ahead(st_volume *v, uint64_t off, size_t len) {
        st_digest ids[FETCH_MAX];
        size_t n = 0;
        uint64_t end = ST_MIN(off + len + ST_MAX((uint64_t)len, (uint64_t)FETCH_AHEAD),
                              v->ref.size);
        while (off < end && n < FETCH_MAX) {
                view_run run;
                view_run_at(&v->chain, off, end, &run);
                if (run.kind == RUN_CHUNK &&
                    (n == 0 || memcmp(&ids[n - 1], &run.ext->hash, sizeof ids[0])))
                        ids[n++] = run.ext->hash;
                off += run.len;
        }
        if (n > 1)
                store_warm(v->s, ids, n, STORE_WARM_LOCAL);
}

void volume_run_at(st_volume *v, uint64_t off, uint64_t limit, volume_run *ret) {
        volume_run_near(v, off, limit, NULL, ret);
}

void volume_run_near(st_volume *v, uint64_t off, uint64_t limit, view_hint *h, volume_run *ret) {
        uint64_t block = off / DELTA_BLOCK, slot;
        int k = delta_lookup(&v->d, block, &slot);
        uint64_t bend = ST_MIN((block + 1) * DELTA_BLOCK, limit);
        if (k == 1) {
                *ret = (volume_run){ .off = off, .len = bend - off, .kind = VRUN_DELTA,
                                     .slot = slot };
                return;
        }
        if (k == 2) {
                *ret = (volume_run){ .off = off, .len = bend - off, .kind = VRUN_ZERO };
                return;
        }
        /* Up to the next block the delta has. */
        uint64_t lb = (limit + DELTA_BLOCK - 1) / DELTA_BLOCK;
        uint64_t end = ST_MIN(delta_next_block(&v->d, block + 1, lb) * DELTA_BLOCK, limit);
        end = ST_MAX(end, bend);
        view_run vr;
        view_run_near(&v->chain, off, end, h, &vr);
        *ret = (volume_run){ .off = off, .len = vr.len,
                             .kind = vr.kind == RUN_ZERO ? VRUN_ZERO : VRUN_CHUNK, .ext = vr.ext };
}

int volume_read_slot(st_volume *v, uint64_t block, uint64_t slot, void *buf) {
        return delta_read_slot(&v->d, block, slot, buf);
}

st_store *volume_store(st_volume *v) {
        return v->s;
}

/* Consecutive extents of one kind, merged, for a caller of st_volume_read_map. */
typedef struct extent_sink {
        st_extent_fn fn;
        void *ctx;
        uint64_t start, len;
        unsigned flags;
} extent_sink;

static int sink_add(extent_sink *x, uint64_t off, uint64_t len, unsigned flags) {
        int r = 0;
        if (x->len > 0 && flags != x->flags) {
                r = x->fn(x->ctx, x->start, x->len, x->flags);
                x->len = 0;
        }
        if (x->len == 0) {
                x->start = off;
                x->flags = flags;
        }
        x->len += len;
        return r;
}

/* Copy run's bytes into buf. A chunk is c (a hit) or, if c has no data,
 * asked of the store now. */
static int read_run(st_volume *v, const volume_run *run, store_chunk *c, uint8_t *buf) {
        size_t n = (size_t)run->len;
        if (run->kind == VRUN_DELTA) {
                uint8_t tmp[DELTA_BLOCK];
                int r = delta_read_slot(&v->d, run->off / DELTA_BLOCK, run->slot, tmp);
                memcpy(buf, tmp + run->off % DELTA_BLOCK, n);
                return r;
        }
        if (run->kind == VRUN_ZERO) {
                memset(buf, 0, n);
                return 0;
        }
        if (!c->data) {
                int r = store_get(v->s, &run->ext->hash, c);
                if (r < 0)
                        return r;
        }
        if (c->len != run->ext->len)
                return -EBADMSG;
        memcpy(buf, c->data + (run->off - run->ext->off), n);
        return 0;
}

/* Read [off, off + len) in one pass over its runs (the delta over the
 * manifest chain, each resolved once), reporting them to x if given. The
 * runs are taken READ_BATCH at a time, and the memory tier asked for all
 * their chunks at once. With the volume lock held (shared or exclusive). */
#define READ_BATCH 128
static int read_locked(st_volume *v, uint8_t *buf, size_t len, uint64_t off, extent_sink *x) {
        if (store_has_remote(v->s))
                fetch_ahead(v, off, len);
        uint64_t end = off + len;
        int r = 0;
        view_hint hint = { 0 };
        while (r == 0 && off < end) {
                volume_run runs[READ_BATCH];
                const st_digest *ids[READ_BATCH];
                store_chunk got[READ_BATCH];
                size_t n = 0, nk = 0; /* runs, and chunk runs among them */
                for (uint64_t o = off; n < READ_BATCH && o < end; o += runs[n++].len) {
                        volume_run_near(v, o, end, &hint, &runs[n]);
                        if (runs[n].kind == VRUN_CHUNK)
                                ids[nk++] = &runs[n].ext->hash;
                }
                store_get_cached(v->s, ids, nk, got);
                size_t k = 0;
                for (size_t i = 0; i < n && r == 0; i++) {
                        store_chunk *c = runs[i].kind == VRUN_CHUNK ? &got[k++] : NULL;
                        if (c && k < nk && got[k].data) /* the next chunk's first lines */
                                __builtin_prefetch(got[k].data);
                        r = read_run(v, &runs[i], c, buf);
                        if (r == 0 && x)
                                r = sink_add(x, runs[i].off, runs[i].len,
                                             runs[i].kind == VRUN_ZERO ? ST_EXTENT_HOLE : 0);
                        buf += runs[i].len;
                        off += runs[i].len;
                }
                store_release_many(v->s, got, nk);
        }
        if (r == 0 && x && x->len > 0)
                r = x->fn(x->ctx, x->start, x->len, x->flags);
        return r;
}

static int check_range(const st_volume *v, uint64_t off, uint64_t len) {
        if (off > v->ref.size || len > v->ref.size - off)
                return -EINVAL;
        return 0;
}

int st_volume_read(st_volume *v, void *buf, size_t len, uint64_t off) {
        int r = check_range(v, off, len);
        if (r < 0)
                return r;
        pthread_rwlock_rdlock(&v->lock);
        r = read_locked(v, buf, len, off, NULL);
        pthread_rwlock_unlock(&v->lock);
        return r;
}

int st_volume_read_map(st_volume *v, void *buf, size_t len, uint64_t off, st_extent_fn fn,
                       void *ctx) {
        int r = check_range(v, off, len);
        if (r < 0)
                return r;
        extent_sink x = { .fn = fn, .ctx = ctx };
        pthread_rwlock_rdlock(&v->lock);
        r = read_locked(v, buf, len, off, &x);
        pthread_rwlock_unlock(&v->lock);
        return r;
}

/* The last block of a volume whose size is not a multiple of 4 KiB is kept
 * whole in the delta; bytes past the end read back as zeros. */
static int write_locked(st_volume *v, const uint8_t *buf, size_t len, uint64_t off) {
        while (len > 0) {
                uint64_t block = off / DELTA_BLOCK;
                size_t in = (size_t)(off % DELTA_BLOCK);
                int r;
                if (in == 0 && len >= DELTA_BLOCK) {
                        size_t n = len / DELTA_BLOCK;
                        r = delta_write(&v->d, block, n, buf);
                        if (r < 0)
                                return r;
                        buf += n * DELTA_BLOCK;
                        off += n * DELTA_BLOCK;
                        len -= n * DELTA_BLOCK;
                        continue;
                }
                /* A partial block: read, modify, write. */
                uint8_t tmp[DELTA_BLOCK];
                uint64_t bstart = block * DELTA_BLOCK;
                size_t have = (size_t)ST_MIN((uint64_t)DELTA_BLOCK, v->ref.size - bstart);
                memset(tmp, 0, sizeof tmp);
                r = read_locked(v, tmp, have, bstart, NULL);
                if (r < 0)
                        return r;
                size_t n = ST_MIN(len, (size_t)DELTA_BLOCK - in);
                memcpy(tmp + in, buf, n);
                r = delta_write(&v->d, block, 1, tmp);
                if (r < 0)
                        return r;
                buf += n;
                off += n;
                len -= n;
        }
        return 0;
}

int st_volume_write(st_volume *v, const void *buf, size_t len, uint64_t off, unsigned flags) {
        if (!v->writable)
                return -EROFS;
        int r = check_range(v, off, len);
        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&v->lock);
        r = write_locked(v, buf, len, off);
        pthread_rwlock_unlock(&v->lock);
        if (r == 0 && (flags & ST_WRITE_FUA))
                r = st_volume_flush(v);
        return r;
}

/* Whole blocks in [off, off+len) become zeros in the delta; partial blocks at
 * the edges are written with zeros. */
static int zero_locked(st_volume *v, uint64_t off, uint64_t len, bool no_hole) {
        static const uint8_t zero[DELTA_BLOCK];
        while (len > 0) {
                uint64_t block = off / DELTA_BLOCK;
                size_t in = (size_t)(off % DELTA_BLOCK);
                int r;
                if (in == 0 && len >= DELTA_BLOCK && !no_hole) {
                        uint64_t n = len / DELTA_BLOCK;
                        r = delta_zero(&v->d, block, (size_t)n);
                        if (r < 0)
                                return r;
                        off += n * DELTA_BLOCK;
                        len -= n * DELTA_BLOCK;
                        continue;
                }
                size_t n = (size_t)ST_MIN(len, (uint64_t)(DELTA_BLOCK - in));
                r = write_locked(v, zero, n, off);
                if (r < 0)
                        return r;
                off += n;
                len -= n;
        }
        return 0;
}

int st_volume_write_zeroes(st_volume *v, uint64_t off, uint64_t len, unsigned flags) {
        if (!v->writable)
                return -EROFS;
        int r = check_range(v, off, len);
        if (r < 0)
                return r;
        pthread_rwlock_wrlock(&v->lock);
        r = zero_locked(v, off, len, flags & ST_WRITE_NO_HOLE);
        pthread_rwlock_unlock(&v->lock);
        if (r == 0 && (flags & ST_WRITE_FUA))
                r = st_volume_flush(v);
        return r;
}

int st_volume_discard(st_volume *v, uint64_t off, uint64_t len) {
        return st_volume_write_zeroes(v, off, len, 0);
}

int st_volume_flush(st_volume *v) {
        if (!v->writable)
                return 0;
        /* Readers and writers of the volume go on while the batch syncs;
         * flushes queue here, and one that waited finds its writes taken by
         * the batch before it or takes them itself. */
        pthread_mutex_lock(&v->flush_lock);
        delta_flush_batch b;
        pthread_rwlock_wrlock(&v->lock);
        int r = delta_flush_begin(&v->d, &b);
        pthread_rwlock_unlock(&v->lock);
        if (r == 0 && b.active) {
                int k = delta_flush_write(&b);
                pthread_rwlock_wrlock(&v->lock);
                r = delta_flush_end(&v->d, &b, k);
                pthread_rwlock_unlock(&v->lock);
        }
        pthread_mutex_unlock(&v->flush_lock);
        return r;
}

/* Source for ingest during commit: the volume as it reads now. Called from
 * several threads for disjoint ranges while the commit holds the volume lock
 * exclusively, so it must not take that lock. */
static int commit_read(void *ctx, uint64_t off, void *buf, size_t len) {
        return read_locked(ctx, buf, len, off, NULL);
}

static int commit_locked(st_volume *v, st_commit_result *ret) {
        st_store *s = v->s;
        st_commit_result res = { 0 };
        int r = delta_flush(&v->d);
        if (r < 0)
                return r;
        _cleanup_free_ uint64_t *blocks = NULL;
        size_t n_blocks = 0;
        r = delta_blocks(&v->d, &blocks, &n_blocks);
        if (r < 0)
                return r;
        bool flatten = v->chain.n >= FLATTEN_DEPTH && n_blocks > 0;
        if (n_blocks == 0) {
                if (ret)
                        *ret = res;
                return 0;
        }
        /* A layer over the current top; or, when the chain is deep, one whole
         * manifest of the volume's content (chunks dedup, so only the index
         * and the manifest are new). */
        manifest *m = manifest_new(v->ref.size, &st_store_get_config(s)->commit_chunker,
                                   flatten ? NULL : &v->ref.manifest);
        if (!m)
                return -ENOMEM;
        store_change_begin(s);
        ingest *g = NULL;
        st_import_result ir = { 0 };
        bool saved = false;
        r = ingest_begin(s, m, manifest_has_parent(m), NULL, 0, &g);
        if (r == 0 && flatten)
                r = ingest_region(g, 0, v->ref.size, commit_read, v, NULL);
        for (size_t i = 0; r == 0 && !flatten && i < n_blocks;) {
                size_t k = i + 1;
                while (k < n_blocks && blocks[k] == blocks[k - 1] + 1)
                        k++;
                uint64_t a = blocks[i] * DELTA_BLOCK;
                uint64_t b = ST_MIN((blocks[k - 1] + 1) * DELTA_BLOCK, v->ref.size);
                r = ingest_region(g, a, b, commit_read, v, NULL);
                i = k;
        }
        if (r == 0)
                r = ingest_finish(g, &ir, NULL);
        store_ref nref = v->ref;
        if (r == 0) {
                m->ctime_ns = store_now_ns();
                r = store_make_visible(s, v->name, &m, 1, &nref, flatten ? STORE_VISIBLE_PRUNE : 0,
                                       &saved, NULL);
        }
        ingest_free(g, r < 0 && !saved);
        store_change_end(s);
        manifest_free(m);
        if (r < 0)
                return r;
        /* The ref now names the new manifest: read through it, and empty the
         * delta. A crash before the delta is emptied only replays writes the
         * manifest already holds. */
        store_chain nc;
        r = store_chain_get(s, &nref.manifest, &nc, NULL);
        if (r < 0)
                return r;
        store_chain_put(s, &v->chain);
        v->chain = nc;
        v->ref = nref;
        r = delta_reset(&v->d);
        res.blocks = n_blocks;
        res.new_chunks = ir.n_new;
        res.new_bytes = ir.new_bytes;
        res.new_stored = ir.new_stored;
        res.flattened = flatten;
        if (r == 0 && ret)
                *ret = res;
        return r;
}

int st_volume_commit(st_volume *v, st_commit_result *ret) {
        if (!v->writable)
                return -EROFS;
        int k = store_exclusive(v->s);
        if (k < 0)
                return k;
        pthread_mutex_lock(&v->flush_lock); /* no flush mid-sync while the delta is reset */
        pthread_rwlock_wrlock(&v->lock);
        int r = commit_locked(v, ret);
        pthread_rwlock_unlock(&v->lock);
        pthread_mutex_unlock(&v->flush_lock);
        return r;
}

int st_volume_create(st_store *s, const char *name, uint64_t size) {
        int r = store_writable(s);
        if (r < 0)
                return r;
        if (size == 0 || size > MANIFEST_SIZE_MAX)
                return -EINVAL;
        store_ref ref = { .kind = ST_KIND_VOLUME, .size = size, .ctime_ns = store_now_ns() };
        store_change_begin(s);
        r = store_name_create(s, name, &ref);
        store_change_end(s);
        return r;
}

int volume_verify_open(st_store *s, const char *name, uint64_t *ret_block, uint64_t *ret_slot) {
        st_volume *open = store_volume_pin(s, name);
        if (!open)
                return -ENOENT;
        /* Under the volume's lock, against its sums in memory: the files lag
         * behind what is written but not yet flushed. */
        pthread_rwlock_rdlock(&open->lock);
        int r = delta_verify(&open->d, ret_block, ret_slot);
        pthread_rwlock_unlock(&open->lock);
        store_volume_unpin(s, name);
        return r;
}

int st_volume_commit_name(st_store *s, const char *name, st_commit_result *ret, st_diag *reterr) {
        /* Attached (a daemon's export): through its handle, so the commit
         * holds every write acknowledged before it. */
        st_volume *open = store_volume_pin(s, name);
        if (open) {
                int r = st_volume_commit(open, ret);
                store_volume_unpin(s, name);
                return r;
        }
        st_volume *v;
        int r = st_volume_open(s, name, 0, &v, reterr);
        if (r < 0)
                return r;
        if (!st_volume_writable(v)) {
                st_volume_close(v);
                return -EROFS;
        }
        r = st_volume_commit(v, ret);
        st_volume_close(v);
        return r;
}

/* The manifest that stands for src's content now: a volume's delta is
 * committed first (through its open handle if this process has one). */
static int settle(st_store *s, const char *src, store_ref *ret) {
        int r = store_ref_load(s, src, ret, NULL);
        if (r < 0 || ret->kind != ST_KIND_VOLUME)
                return r;
        if (store_volume_is_open(s, src) || store_delta_pending(s, src))
                r = st_volume_commit_name(s, src, NULL, NULL);
        return r < 0 ? r : store_ref_load(s, src, ret, NULL);
}

static int derive(st_store *s, const char *src, const char *dst, st_kind kind) {
        int r = store_writable(s);
        if (r < 0)
                return r;
        if (!st_name_valid(dst))
                return -EINVAL;
        store_ref from;
        r = settle(s, src, &from);
        if (r < 0)
                return r;
        if (kind == ST_KIND_SNAPSHOT && from.kind != ST_KIND_VOLUME)
                return -EINVAL;
        /* Under the write mutex, against rm and gc of the same process (the
         * daemon runs commands side by side): src's ref read again, its
         * manifests checked, the new ref made, with no prune in between. A
         * name over manifests that cannot be read would be a second broken
         * name. Other processes are kept out by the store lock. */
        store_change_begin(s);
        r = store_ref_load(s, src, &from, NULL); /* (a commit since settle: its newer layer) */
        store_chain c;
        if (r == 0 && store_chain_get(s, &from.manifest, &c, NULL) < 0)
                r = -EBADMSG;
        if (r < 0) {
                store_change_end(s);
                return r;
        }
        store_chain_put(s, &c);
        store_ref ref = { .kind = (uint32_t)kind, .size = from.size, .ctime_ns = store_now_ns(),
                          .manifest = from.manifest };
        snprintf(ref.parent, sizeof ref.parent, "%s", src);
        /* The new ref shares from's manifest; manifests count chunk references
         * once however many refs name them, so nothing else changes. */
        r = store_name_create(s, dst, &ref);
        store_change_end(s);
        return r;
}

int st_volume_clone(st_store *s, const char *src, const char *dst) {
        return derive(s, src, dst, ST_KIND_VOLUME);
}

int st_volume_snapshot(st_store *s, const char *vol, const char *snap) {
        return derive(s, vol, snap, ST_KIND_SNAPSHOT);
}

static unsigned run_flags(st_volume *v, const volume_run *r, unsigned want) {
        if (r->kind == VRUN_ZERO)
                return ST_EXTENT_HOLE & want;
        if (r->kind == VRUN_DELTA)
                return ST_EXTENT_DELTA & want;
        if (!(want & ST_EXTENT_SHARED))
                return 0;
        uint32_t refs = 0;
        return store_chunk_lookup(v->s, &r->ext->hash, NULL, &refs) == 0 && refs > 1
                       ? ST_EXTENT_SHARED
                       : 0;
}

int st_volume_map(st_volume *v, uint64_t off, uint64_t len, unsigned want, st_extent_fn fn,
                  void *ctx) {
        int r = check_range(v, off, len);
        if (r < 0)
                return r;
        pthread_rwlock_rdlock(&v->lock);
        uint64_t end = off + len, start = off;
        unsigned cur = 0;
        bool have = false;
        while (off < end && r == 0) {
                volume_run run;
                volume_run_at(v, off, end, &run);
                unsigned f = run_flags(v, &run, want);
                if (have && f != cur) {
                        r = fn(ctx, start, off - start, cur);
                        start = off;
                }
                cur = f;
                have = true;
                off += run.len;
        }
        if (r == 0 && have)
                r = fn(ctx, start, end - start, cur);
        pthread_rwlock_unlock(&v->lock);
        return r;
}

int st_volume_prefetch(st_volume *v, uint64_t off, uint64_t len) {
        int r = check_range(v, off, len);
        if (r < 0)
                return r;
        /* The ids first (under the volume's lock), then the tiers warmed
         * without it: fetching from a remote source can take a while. */
        enum { BATCH = 64 };
        uint64_t end = off + len;
        while (off < end) {
                st_digest ids[BATCH];
                size_t n = 0;
                pthread_rwlock_rdlock(&v->lock);
                while (off < end && n < BATCH) {
                        volume_run run;
                        volume_run_at(v, off, end, &run);
                        if (run.kind == VRUN_CHUNK &&
                            (n == 0 || memcmp(&ids[n - 1], &run.ext->hash, sizeof ids[0])))
                                ids[n++] = run.ext->hash;
                        off += run.len;
                }
                pthread_rwlock_unlock(&v->lock);
                store_warm(v->s, ids, n, STORE_WARM_LOCAL | STORE_WARM_MEMORY);
        }
        return 0;
}
