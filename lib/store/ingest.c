/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The write path every chunk takes: bytes -> pieces -> BLAKE3 -> index lookup
 * -> zstd (new chunks only) -> pack append -> manifest extents. Import feeds
 * it regions of an image file, a volume commit the changed blocks of a
 * volume. Works a buffer (16 MiB) at a time: split on this thread, hash on
 * every core, look up and reserve new chunks under the store lock (the only
 * serial step), compress on every core, lay the records out, and write them
 * with one pwritev per group on every core.
 *
 * An ingest that fails or is abandoned before its manifest is saved is rolled
 * back: its chunks are forgotten, packs cut back, new packs deleted, and the
 * store is exactly as before. If even that fails the store stays dirty and
 * the next open recovers, as after a crash.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "ingest.h"
#include "store-internal.h"

#define INGEST_BUF (4u << 20)

typedef struct piece {
        uint64_t off;   /* in the image */
        uint32_t len;
        uint32_t at;    /* in the buffer */
        uint32_t entry;
        bool is_new;
        uint32_t stored_len; /* new pieces: compressed length, or len if raw */
        size_t out_at;       /* new pieces: where the compressed bytes are */
        uint64_t rec_off;    /* new pieces: where the record goes in the pack */
        bool hole;           /* zeros: a hole extent (layers only), nothing stored */
        bool incompressible; /* by its byte histogram: stored raw, never in a frame */
        bool deferred;       /* stored raw for gc to compress (ST_ZSTD_DEFER) */
        uint32_t slot;       /* new pieces: k + 1 in a frame, 0 a record of its own */
        st_digest hash;
} piece;

/* A record to write for the new pieces of a batch: a frame of several
 * neighbouring compressible ones, or one piece. */
typedef struct out_rec {
        uint32_t first, n;  /* its pieces: members[first .. first + n) */
        uint32_t raw;       /* their raw bytes */
        size_t out_at;      /* its payload in out */
        uint32_t frame_len; /* a frame's payload length; 0: the pieces are records of their own */
        pack_record frame;  /* a frame's header */
} out_rec;

/* A batch handed to the writer thread: its own buffers, so the next batch
 * can be read, hashed and compressed while this one is written. */
typedef struct batch {
        uint8_t *buf;
        piece *pieces;
        size_t n_pieces, cap_pieces;
        uint8_t *out; /* compressed payloads */
        size_t out_cap;
        out_rec *recs;
        size_t n_recs, cap_recs;
        uint32_t *members;
        size_t cap_members;
} batch;

struct ingest {
        st_store *s;
        st_chunker_params cp;
        manifest *m;
        bool record_holes;
        st_import_result res;
        /* the batch being filled (j->buf etc. alias it) and the spare one */
        uint8_t *buf;
        piece *pieces;
        size_t n_pieces, cap_pieces;
        uint8_t *out;
        size_t out_cap;
        out_rec *recs;
        size_t n_recs, cap_recs;
        uint32_t *members;
        size_t cap_members;
        batch spare;
        ZSTD_CCtx **cctx;
        uint8_t **gather; /* per worker: a frame's pieces end to end */
        unsigned n_cctx;
        /* the writer thread and the batch it writes */
        pthread_t writer;
        bool writer_started, writer_quit, job_pending;
        pthread_mutex_t wlock;
        pthread_cond_t wcond;
        batch job;
        int job_fd;
        uint32_t job_pack;
        uint64_t job_off;
        int write_err;
        bool submitted; /* the last batch went to the writer */
        /* input buffer: [0, split_end) split into pieces, [split_end, have) not yet */
        size_t have, split_end;
        /* read stage */
        ingest_read_fn read_fn;
        void *read_ctx;
        uint64_t read_off;
        size_t read_at, read_len;
        _Atomic int read_err;
        st_progress_fn progress;
        void *progress_ctx;
        uint64_t progress_total;
        /* rollback point */
        uint32_t n_entries;
        size_t n_packs;
        uint64_t last_len;
};

static void diag(st_diag *d, const char *file, uint64_t off, const char *what) {
        (void)st_diag_fail(d, file, off, what, 0);
}

/* Whether zstd is worth trying: a byte histogram of 512 bytes sampled in
 * 32 runs of 16 across the chunk. For uniformly random bytes (already
 * compressed or encrypted data) the sum of squared counts is about
 * n + n(n-1)/256 = 1534; text, code, tables and zero-rich blocks land far
 * above. Skipping zstd on random-looking chunks saves most of an import's CPU
 * on such data; the cost is a missed gain on data that is random-looking yet
 * repetitive, which disk images rarely hold. */
static bool looks_incompressible(const uint8_t *d, size_t len) {
        enum { RUNS = 32, RUN = 16 };
        if (len < RUNS * RUN * 2)
                return false;
        uint16_t hist[256] = { 0 };
        size_t stride = (len - RUN) / (RUNS - 1);
        for (size_t r = 0; r < RUNS; r++)
                for (size_t k = 0; k < RUN; k++)
                        hist[d[r * stride + k]]++;
        uint32_t sq = 0;
        for (int b = 0; b < 256; b++)
                sq += (uint32_t)hist[b] * hist[b];
        return sq < 1900;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
        if (need <= *cap)
                return 0;
        size_t c = *cap ? *cap : 64;
        while (c < need)
                c *= 2;
        void *t = realloc(*p, c * elem);
        if (!t)
                return -ENOMEM;
        *p = t;
        *cap = c;
        return 0;
}

static void hash_piece(void *ctx, size_t i, unsigned worker) {
        (void)worker;
        ingest *j = ctx;
        piece *p = &j->pieces[i];
        if (!p->hole) {
                st_hash(j->buf + p->at, p->len, &p->hash);
                p->incompressible = looks_incompressible(j->buf + p->at, p->len);
        }
}

/* Frames gather neighbouring new compressible pieces up to this many raw
 * bytes: zstd finds far more to share across 128 KiB than within one 4 KiB
 * chunk (on shared libraries 3.3x against 2.9x at level 1, and faster),
 * while a read of one chunk decompresses no more than a frame. */
#define FRAME_RAW (128u << 10)
#define FRAME_PIECE_MAX (64u << 10) /* larger pieces are records of their own */

static void compress_rec(void *ctx, size_t i, unsigned worker) {
        ingest *j = ctx;
        out_rec *o = &j->recs[i];
        int level = j->s->cfg.zstd_level;
        if (o->n == 1) {
                piece *p = &j->pieces[j->members[o->first]];
                p->out_at = o->out_at;
                p->deferred = level == ST_ZSTD_DEFER && !p->incompressible;
                if (p->incompressible || p->deferred) {
                        p->stored_len = p->len;
                        return;
                }
                size_t bound = ZSTD_compressBound(p->len);
                size_t n = ZSTD_compressCCtx(j->cctx[worker], j->out + p->out_at, bound,
                                             j->buf + p->at, p->len, level);
                p->stored_len = (!ZSTD_isError(n) && n < p->len) ? (uint32_t)n : p->len;
                return;
        }
        pack_frame_src src[PACK_FRAME_MAX_CHUNKS];
        for (uint32_t k = 0; k < o->n; k++) {
                const piece *p = &j->pieces[j->members[o->first + k]];
                src[k] = (pack_frame_src){ .hash = p->hash, .data = j->buf + p->at, .len = p->len };
        }
        int64_t n = pack_frame_build(j->cctx[worker], level, src, o->n, j->gather[worker],
                                     j->out + o->out_at, &o->frame);
        o->frame_len = n > 0 ? (uint32_t)n : 0;
        for (uint32_t k = 0; k < o->n; k++) {
                piece *p = &j->pieces[j->members[o->first + k]];
                p->slot = o->frame_len ? k + 1 : 0;
                p->stored_len = o->frame_len ? o->frame_len : p->len; /* else raw, each its own */
        }
}

/* Group the batch's new pieces into records: runs of compressible ones,
 * in image order, into frames; the rest alone. Returns the bytes of out
 * the compression needs, or -ENOMEM. */
static int64_t plan_records(ingest *j) {
        size_t n_new = 0;
        for (size_t i = 0; i < j->n_pieces; i++)
                n_new += j->pieces[i].is_new;
        if (grow((void **)&j->members, &j->cap_members, n_new ? n_new : 1, sizeof *j->members) < 0 ||
            grow((void **)&j->recs, &j->cap_recs, n_new ? n_new : 1, sizeof *j->recs) < 0)
                return -ENOMEM;
        j->n_recs = 0;
        size_t m = 0, need = 0;
        out_rec *open = NULL; /* the frame being filled */
        for (size_t i = 0; i < j->n_pieces; i++) {
                piece *p = &j->pieces[i];
                if (!p->is_new)
                        continue;
                p->slot = 0;
                bool frameable = !p->incompressible && p->len <= FRAME_PIECE_MAX &&
                                 j->s->cfg.zstd_level != ST_ZSTD_DEFER;
                if (open && (!frameable || open->raw + p->len > FRAME_RAW ||
                             open->n == PACK_FRAME_MAX_CHUNKS))
                        open = NULL;
                if (!open) {
                        out_rec *o = &j->recs[j->n_recs++];
                        *o = (out_rec){ .first = (uint32_t)m };
                        if (frameable)
                                open = o;
                }
                out_rec *o = open ? open : &j->recs[j->n_recs - 1];
                j->members[m++] = (uint32_t)i;
                o->n++;
                o->raw += p->len;
        }
        for (size_t r = 0; r < j->n_recs; r++) {
                out_rec *o = &j->recs[r];
                o->out_at = need;
                need += o->n == 1 ? ZSTD_compressBound(o->raw) : pack_frame_bound(o->n, o->raw);
        }
        return (int64_t)need;
}

/* One pwritev of n records, and the disk asked to start on them now: the
 * fsync at the end of the ingest then waits for the last ones only, and the
 * disk writes while the next batches are hashed and compressed. */
static int write_run(int fd, struct iovec *iov, size_t n, uint64_t off, uint64_t len) {
        int r = st_pwritev_full(fd, iov, (int)(2 * n), off);
        if (r == 0)
                (void)sync_file_range(fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
        return r;
}

/* Write the new records of a batch, in order, from job_off on: headers
 * encoded into a stack array, payloads straight from the batch's buffers.
 * One thread writes: concurrent writers to one file only queue on its
 * inode lock in the kernel. */
static int write_batch(const batch *b, int fd, uint64_t off) {
        enum { BATCH = 256 };
        uint8_t hdrs[BATCH][PACK_RECORD_HEADER_LEN];
        struct iovec iov[2 * BATCH];
        size_t n = 0;
        uint64_t len = 0;
        for (size_t r = 0; r < b->n_recs; r++) {
                const out_rec *o = &b->recs[r];
                for (uint32_t k = 0; k < o->n; k++) {
                        const piece *p = &b->pieces[b->members[o->first + k]];
                        if (o->frame_len) {
                                if (k > 0)
                                        break;
                                pack_record_encode(hdrs[n], &o->frame);
                                iov[2 * n] = (struct iovec){ hdrs[n], PACK_RECORD_HEADER_LEN };
                                iov[2 * n + 1] = (struct iovec){ b->out + o->out_at, o->frame_len };
                        } else {
                                bool z = p->stored_len < p->len;
                                pack_record rec = { .flags = z ? PACK_FLAG_ZSTD
                                                             : p->deferred ? PACK_FLAG_DEFERRED
                                                                           : 0,
                                                    .raw_len = p->len,
                                                    .stored_len = p->stored_len, .hash = p->hash };
                                pack_record_encode(hdrs[n], &rec);
                                iov[2 * n] = (struct iovec){ hdrs[n], PACK_RECORD_HEADER_LEN };
                                iov[2 * n + 1] = (struct iovec){
                                        z ? b->out + p->out_at : b->buf + p->at, p->stored_len
                                };
                        }
                        len += PACK_RECORD_HEADER_LEN + iov[2 * n + 1].iov_len;
                        if (++n == BATCH) {
                                int e = write_run(fd, iov, n, off, len);
                                if (e < 0)
                                        return e;
                                off += len;
                                n = 0;
                                len = 0;
                        }
                }
        }
        return n ? write_run(fd, iov, n, off, len) : 0;
}

static void *writer_main(void *arg) {
        ingest *j = arg;
        pthread_mutex_lock(&j->wlock);
        for (;;) {
                while (!j->job_pending && !j->writer_quit)
                        pthread_cond_wait(&j->wcond, &j->wlock);
                if (!j->job_pending)
                        break;
                pthread_mutex_unlock(&j->wlock);
                int r = write_batch(&j->job, j->job_fd, j->job_off);
                pthread_mutex_lock(&j->wlock);
                if (r < 0 && !j->write_err)
                        j->write_err = r;
                j->job_pending = false;
                pthread_cond_broadcast(&j->wcond);
        }
        pthread_mutex_unlock(&j->wlock);
        return NULL;
}

/* Wait until the writer has finished its batch; returns its error, if any,
 * naming the pack in *reterr. */
static int writer_wait(ingest *j, st_diag *reterr) {
        if (!j->writer_started)
                return 0;
        pthread_mutex_lock(&j->wlock);
        while (j->job_pending)
                pthread_cond_wait(&j->wcond, &j->wlock);
        int r = j->write_err;
        pthread_mutex_unlock(&j->wlock);
        if (r < 0) {
                char name[40] = "packs/";
                pack_name(name + 6, j->job_pack);
                (void)st_diag_fail(reterr, name, j->job_off, "cannot write to pack", r);
        }
        return r;
}

/* The batch being filled, as one (its buffers are the ingest's fields). */
static batch batch_current(const ingest *j) {
        return (batch){ j->buf, j->pieces, j->n_pieces, j->cap_pieces, j->out, j->out_cap,
                        j->recs, j->n_recs, j->cap_recs, j->members, j->cap_members };
}

/* Continue in b's buffers. */
static void batch_use(ingest *j, const batch *b) {
        j->buf = b->buf;
        j->pieces = b->pieces;
        j->n_pieces = b->n_pieces;
        j->cap_pieces = b->cap_pieces;
        j->out = b->out;
        j->out_cap = b->out_cap;
        j->recs = b->recs;
        j->n_recs = b->n_recs;
        j->cap_recs = b->cap_recs;
        j->members = b->members;
        j->cap_members = b->cap_members;
}

/* Hand the current batch to the writer and take the spare one (which the
 * writer is done with: writer_wait ran before the layout). */
static int writer_submit(ingest *j, int fd, uint32_t pack_id, uint64_t off) {
        if (!j->writer_started) {
                if (pthread_create(&j->writer, NULL, writer_main, j) != 0)
                        return -EAGAIN;
                j->writer_started = true;
        }
        batch cur = batch_current(j);
        pthread_mutex_lock(&j->wlock);
        j->job = cur;
        j->job_fd = fd;
        j->job_pack = pack_id;
        j->job_off = off;
        j->job_pending = true;
        pthread_cond_broadcast(&j->wcond);
        pthread_mutex_unlock(&j->wlock);
        return 0;
}

/* Lay the new pieces out in the pack and update their index entries; the
 * writer thread writes them while the next batch is prepared. The pack's
 * length moves now: nothing reads these records before ingest_finish has
 * waited for the writer (dedup hits wait for it too, see process_batch). */
static int write_new(ingest *j, bool *ret_submitted, st_diag *reterr) {
        st_store *s = j->s;
        st_import_result *res = &j->res;
        uint64_t total = 0;
        for (size_t r = 0; r < j->n_recs; r++) {
                const out_rec *o = &j->recs[r];
                if (o->frame_len)
                        total += PACK_RECORD_HEADER_LEN + (uint64_t)o->frame_len;
                else
                        for (uint32_t k = 0; k < o->n; k++)
                                total += PACK_RECORD_HEADER_LEN +
                                         (uint64_t)j->pieces[j->members[o->first + k]].stored_len;
        }
        pthread_rwlock_wrlock(&s->lock);
        store_pack *pk;
        int r = store_pack_for_append(s, total, &pk);
        if (r < 0) {
                pthread_rwlock_unlock(&s->lock);
                diag(reterr, "packs", ST_DIAG_NO_OFFSET, "cannot create a pack file");
                return r;
        }
        uint64_t base = pk->len, off = base;
        for (size_t q = 0; q < j->n_recs; q++) {
                const out_rec *o = &j->recs[q];
                for (uint32_t k = 0; k < o->n; k++) {
                        piece *p = &j->pieces[j->members[o->first + k]];
                        p->rec_off = off;
                        index_entry *e = index_get(s->idx, p->entry);
                        e->pack = pk->id;
                        e->off = (uint32_t)off;
                        e->stored_len = p->stored_len;
                        e->slot = p->slot;
                        if (!o->frame_len || k == o->n - 1)
                                off += PACK_RECORD_HEADER_LEN + p->stored_len;
                        res->n_new++;
                        res->new_bytes += p->len;
                        s->unique_bytes += p->len;
                }
        }
        pk->len = off;
        pk->unsynced = true;
        s->stored_bytes += total;
        int fd = pk->fd;
        uint32_t pack_id = pk->id;
        pthread_rwlock_unlock(&s->lock);
        res->new_stored += total;
        r = writer_submit(j, fd, pack_id, base);
        *ret_submitted = r == 0;
        return r;
}

/* Read [off, off+len) of the input into j->buf + at on every core. */
#define READ_PART (1u << 20)
static void read_part(void *ctx, size_t i, unsigned worker) {
        (void)worker;
        ingest *j = ctx;
        size_t a = i * READ_PART;
        size_t n = ST_MIN((size_t)READ_PART, j->read_len - a);
        int r = j->read_fn(j->read_ctx, j->read_off + a, j->buf + j->read_at + a, n);
        if (r < 0) {
                int expected = 0;
                atomic_compare_exchange_strong(&j->read_err, &expected, r);
        }
}

static int read_parallel(ingest *j, uint64_t off, size_t at, size_t len) {
        j->read_off = off;
        j->read_at = at;
        j->read_len = len;
        atomic_store(&j->read_err, 0);
        st_pool_for(store_pool(j->s), (len + READ_PART - 1) / READ_PART, read_part, j);
        return atomic_load(&j->read_err);
}

/* Everything after splitting: hash, dedup, compress, write, record extents. */
static int process_batch(ingest *j, st_diag *reterr) {
        st_store *s = j->s;
        st_import_result *res = &j->res;
        st_pool *pool = store_pool(s);
        if (!pool)
                return -ENOMEM;
        st_pool_for(pool, j->n_pieces, hash_piece, j);
        /* The previous batch must be on disk before lookups: a dedup hit on
         * one of its chunks reads that record to compare the full hash. */
        int r = writer_wait(j, reterr);
        if (r < 0)
                return r;

        uint64_t w_need = 0;
        /* The only serial step, and the only one readers must not overlap:
         * index_add can rebuild the slot table. */
        pthread_rwlock_wrlock(&s->lock);
        for (size_t i = 0; r == 0 && i < j->n_pieces; i++) {
                piece *p = &j->pieces[i];
                p->is_new = false;
                if (p->hole)
                        continue;
                uint32_t id = index_find(s->idx, &p->hash);
                if (id == INDEX_NONE) {
                        index_entry e = { .pack = INDEX_PACK_PENDING, .raw_len = p->len };
                        id = index_add(s->idx, &p->hash, &e);
                        if (id == INDEX_NONE) {
                                r = -ENOMEM;
                                break;
                        }
                        p->is_new = true;
                        w_need += PACK_RECORD_HEADER_LEN + (uint64_t)p->len;
                } else {
                        const index_entry *e = index_get(s->idx, id);
                        if (e->pack != INDEX_PACK_PENDING) {
                                int k = store_entry_matches(s, e, &p->hash);
                                if (k < 0) {
                                        diag(reterr, "packs", e->off,
                                             "cannot read the record a dedup hit points to");
                                        r = k;
                                } else if (k == 0) {
                                        diag(reterr, "index", p->off,
                                             "two chunks share a 128-bit hash prefix");
                                        r = -EEXIST;
                                }
                        }
                }
                p->entry = id;
        }
        pthread_rwlock_unlock(&s->lock);
        if (r < 0)
                return r;
        int64_t out_need = plan_records(j);
        if (out_need < 0)
                return (int)out_need;
        r = grow((void **)&j->out, &j->out_cap, out_need ? (size_t)out_need : 1, 1);
        if (r < 0)
                return r;
        st_pool_for(pool, j->n_recs, compress_rec, j);

        j->submitted = false;
        if (w_need > 0) {
                r = write_new(j, &j->submitted, reterr);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < j->n_pieces; i++) {
                piece *p = &j->pieces[i];
                if (p->hole) {
                        r = manifest_append_hole(j->m, p->off, p->len);
                        if (r < 0)
                                return r;
                        continue;
                }
                r = manifest_append(j->m, p->off, p->len, &p->hash);
                if (r < 0)
                        return r;
                res->data_bytes += p->len;
                res->n_chunks++;
        }
        j->n_pieces = 0;
        return 0;
}

/* Read [pos, end) of the image in buffers and feed the pieces to batches. */
/* Process the pieces split so far and move unsplit bytes to the front. */
static int ingest_flush(ingest *j, st_diag *reterr) {
        int r = process_batch(j, reterr);
        if (r < 0)
                return r;
        size_t tail = j->have - j->split_end;
        if (j->submitted) {
                /* The writer owns this batch now: continue in the spare one. */
                batch old = batch_current(j);
                batch_use(j, &j->spare);
                j->spare = old;
                memcpy(j->buf, old.buf + j->split_end, tail);
        } else
                memmove(j->buf, j->buf + j->split_end, tail);
        j->n_pieces = 0;
        j->n_recs = 0;
        j->have = tail;
        j->split_end = 0;
        return 0;
}

/* Read [pos, end) of the source and split it into pieces. The buffer holds
 * the data of several regions at once (an ext4 image is many small ones), and
 * a batch is processed only when the buffer is full or the ingest ends, so
 * the parallel stages always get enough work. */
int ingest_region(ingest *j, uint64_t pos, uint64_t end, ingest_read_fn fn, void *ctx,
                  st_diag *reterr) {
        j->read_fn = fn;
        j->read_ctx = ctx;
        /* j->buf[j->split_end .. j->have) holds unsplit bytes of this region,
         * starting at source offset pos. */
        for (;;) {
                size_t room = INGEST_BUF - j->have;
                size_t want = (size_t)ST_MIN((uint64_t)room, end - pos - (j->have - j->split_end));
                if (want > 0) {
                        uint64_t at = pos + (j->have - j->split_end);
                        int r = read_parallel(j, at, j->have, want);
                        if (r < 0)
                                return st_diag_fail(reterr, NULL, at, "cannot read the source", r);
                        j->have += want;
                }
                bool eof = pos + (j->have - j->split_end) == end;
                for (;;) {
                        st_piece pc;
                        size_t at = j->split_end;
                        int r = st_split_next(&j->cp, pos, j->buf + at, j->have - at, eof, &pc);
                        if (r < 0)
                                break;
                        if (!pc.hole || j->record_holes) {
                                r = grow((void **)&j->pieces, &j->cap_pieces, j->n_pieces + 1,
                                         sizeof(piece));
                                if (r < 0)
                                        return r;
                                j->pieces[j->n_pieces++] = (piece){ .off = pos,
                                                                    .len = (uint32_t)pc.len,
                                                                    .at = (uint32_t)at,
                                                                    .hole = pc.hole };
                        }
                        j->split_end += (size_t)pc.len;
                        pos += pc.len;
                }
                if (eof && j->split_end == j->have)
                        return 0; /* region done; its pieces wait for the next batch */
                /* The buffer is full: process what is split, keep the rest. */
                int r = ingest_flush(j, reterr);
                if (r < 0)
                        return r;
                if (j->progress)
                        j->progress(j->progress_ctx, pos, j->progress_total);
        }
}

static void job_done(ingest *j) {
        if (j->writer_started) {
                pthread_mutex_lock(&j->wlock);
                j->writer_quit = true;
                pthread_cond_broadcast(&j->wcond);
                pthread_mutex_unlock(&j->wlock);
                pthread_join(j->writer, NULL); /* it finishes a pending batch first */
        }
        pthread_mutex_destroy(&j->wlock);
        pthread_cond_destroy(&j->wcond);
        free(j->buf);
        free(j->pieces);
        free(j->out);
        free(j->spare.buf);
        free(j->spare.pieces);
        free(j->spare.out);
        free(j->recs);
        free(j->members);
        free(j->spare.recs);
        free(j->spare.members);
        if (j->cctx)
                for (unsigned i = 0; i < j->n_cctx; i++)
                        ZSTD_freeCCtx(j->cctx[i]);
        free(j->cctx);
        if (j->gather)
                for (unsigned i = 0; i < j->n_cctx; i++)
                        free(j->gather[i]);
        free(j->gather);
}

int ingest_begin(st_store *s, manifest *m, bool record_holes, const st_import_opts *o,
                 uint64_t progress_total, ingest **ret) {
        int r = store_exclusive(s);
        if (r < 0)
                return r;
        st_pool *pool = store_pool(s);
        if (!pool)
                return -ENOMEM;
        ingest *j = calloc(1, sizeof *j);
        if (!j)
                return -ENOMEM;
        *j = (ingest){ .s = s, .cp = m->chunker, .m = m, .record_holes = record_holes,
                       .progress = o ? o->progress : NULL, .progress_ctx = o ? o->userdata : NULL,
                       .progress_total = progress_total };
        pthread_mutex_init(&j->wlock, NULL);
        pthread_cond_init(&j->wcond, NULL);
        j->buf = malloc(INGEST_BUF);
        j->spare.buf = malloc(INGEST_BUF);
        j->n_cctx = st_pool_size(pool);
        j->cctx = calloc(j->n_cctx, sizeof *j->cctx);
        j->gather = calloc(j->n_cctx, sizeof *j->gather);
        r = (j->buf && j->spare.buf && j->cctx && j->gather) ? 0 : -ENOMEM;
        for (unsigned i = 0; r == 0 && i < j->n_cctx; i++)
                if (!(j->cctx[i] = ZSTD_createCCtx()) || !(j->gather[i] = malloc(FRAME_RAW)))
                        r = -ENOMEM;
        if (r == 0) {
                pthread_rwlock_rdlock(&s->lock);
                j->n_entries = index_count(s->idx);
                j->n_packs = s->n_packs;
                j->last_len = s->n_packs ? s->packs[s->n_packs - 1].len : 0;
                pthread_rwlock_unlock(&s->lock);
                r = store_mark_dirty(s);
        }
        if (r < 0) {
                job_done(j);
                free(j);
                return r;
        }
        *ret = j;
        return 0;
}

int ingest_finish(ingest *j, st_import_result *ret, st_diag *reterr) {
        int r = ingest_flush(j, reterr);
        if (r == 0)
                r = writer_wait(j, reterr);
        if (r < 0)
                return r;
        st_store *s = j->s;
        /* Chunks are durable before any manifest names them. */
        for (size_t i = 0; i < s->n_packs; i++)
                if (s->packs[i].unsynced) {
                        if (fsync(s->packs[i].fd) < 0)
                                return -errno;
                        s->packs[i].unsynced = false;
                }
        if (j->progress)
                j->progress(j->progress_ctx, j->progress_total, j->progress_total);
        if (ret)
                *ret = j->res;
        return 0;
}

/* Undo everything the ingest added. The index on disk never saw any of it,
 * so afterwards the store is exactly as before and clean. */
static int ingest_rollback(ingest *j) {
        st_store *s = j->s;
        (void)writer_wait(j, NULL); /* its error is why we roll back, or moot */
        pthread_rwlock_wrlock(&s->lock);
        int r = index_truncate(s->idx, j->n_entries);
        while (r == 0 && s->n_packs > j->n_packs) {
                store_pack *p = &s->packs[--s->n_packs];
                char name[32];
                pack_name(name, p->id);
                (void)close(p->fd);
                if (unlinkat(s->packs_fd, name, 0) < 0)
                        r = -errno;
        }
        if (r == 0 && j->n_packs > 0) {
                store_pack *p = &s->packs[j->n_packs - 1];
                if (p->len != j->last_len) {
                        if (ftruncate(p->fd, (off_t)j->last_len) < 0 || fsync(p->fd) < 0)
                                r = -errno;
                        else
                                p->len = j->last_len;
                }
        }
        if (r == 0)
                store_recount_totals(s);
        pthread_rwlock_unlock(&s->lock);
        if (r == 0)
                r = st_fsync_dir(s->packs_fd);
        return r < 0 ? r : store_clear_dirty(s);
}

ingest *ingest_free(ingest *j, bool rollback) {
        if (!j)
                return NULL;
        if (rollback && ingest_rollback(j) < 0)
                j->s->broken = true;
        job_done(j);
        free(j);
        return NULL;
}
