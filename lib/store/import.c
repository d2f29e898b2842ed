/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Import: image -> pieces -> BLAKE3 -> index lookup -> zstd (new chunks only)
 * -> pack append -> manifest. Works a buffer (16 MiB) at a time: split it
 * into pieces on this thread, hash them on every core, look them up and
 * reserve new ones here (the only serial step), compress the new ones on
 * every core, then write them with one pwrite. Holes that the filesystem
 * reports (SEEK_HOLE) are never read.
 *
 * Failure midway leaves the store marked dirty and the handle refusing
 * writes: the next open recovers exactly as after a crash, which is the
 * tested path.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "store-internal.h"

#define IMPORT_BUF (16u << 20)

typedef struct piece {
        uint64_t off;   /* in the image */
        uint32_t len;
        uint32_t at;    /* in the buffer */
        uint32_t entry;
        bool is_new;
        uint32_t stored_len; /* new pieces: compressed length, or len if raw */
        size_t out_at;       /* new pieces: where the compressed bytes are */
        uint64_t rec_off;    /* new pieces: where the record goes in the pack */
        st_digest hash;
} piece;

/* A run of new pieces written with one pwritev by one worker. */
typedef struct write_group {
        size_t first, end; /* piece indexes */
} write_group;

typedef struct import_job {
        st_store *s;
        st_chunker_params cp;
        uint8_t *buf;
        piece *pieces;
        size_t n_pieces, cap_pieces;
        uint8_t *out; /* compressed payloads */
        size_t out_cap;
        ZSTD_CCtx **cctx;
        unsigned n_cctx;
        /* write stage */
        int fd_out;
        write_group *groups;
        size_t n_groups, cap_groups;
        _Atomic int write_err;
        /* input buffer: [0, split_end) split into pieces, [split_end, have) not yet */
        size_t have, split_end;
        /* read stage */
        int fd_in;
        uint64_t read_off;
        size_t read_at, read_len;
        _Atomic int read_err;
} import_job;

static void diag(st_diag *d, const char *file, uint64_t off, const char *what) {
        (void)st_diag_fail(d, file, off, what, 0);
}

static void hash_piece(void *ctx, size_t i, unsigned worker) {
        (void)worker;
        import_job *j = ctx;
        piece *p = &j->pieces[i];
        st_hash(j->buf + p->at, p->len, &p->hash);
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

static void compress_piece(void *ctx, size_t i, unsigned worker) {
        import_job *j = ctx;
        piece *p = &j->pieces[i];
        if (!p->is_new)
                return;
        if (looks_incompressible(j->buf + p->at, p->len)) {
                p->stored_len = p->len;
                return;
        }
        size_t bound = ZSTD_compressBound(p->len);
        size_t n = ZSTD_compressCCtx(j->cctx[worker], j->out + p->out_at, bound, j->buf + p->at,
                                     p->len, j->s->cfg.zstd_level);
        p->stored_len = (!ZSTD_isError(n) && n < p->len) ? (uint32_t)n : p->len;
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

static void write_group_run(void *ctx, size_t g, unsigned worker) {
        (void)worker;
        import_job *j = ctx;
        const write_group *wg = &j->groups[g];
        /* Headers are encoded into a stack array, payloads are written straight
         * from the input buffer or the compressed arena: no copy. */
        enum { BATCH = 256 };
        uint8_t hdrs[BATCH][PACK_RECORD_HEADER_LEN];
        struct iovec iov[2 * BATCH];
        size_t i = wg->first;
        while (i < wg->end) {
                size_t n = 0;
                uint64_t off = 0;
                for (; i < wg->end && n < BATCH; i++) {
                        const piece *p = &j->pieces[i];
                        if (!p->is_new)
                                continue;
                        bool z = p->stored_len < p->len;
                        pack_record rec = { .flags = z ? PACK_FLAG_ZSTD : 0, .raw_len = p->len,
                                            .stored_len = p->stored_len, .hash = p->hash };
                        if (n == 0)
                                off = p->rec_off; /* a group's records are contiguous */
                        pack_record_encode(hdrs[n], &rec);
                        iov[2 * n] = (struct iovec){ hdrs[n], PACK_RECORD_HEADER_LEN };
                        iov[2 * n + 1] = (struct iovec){
                                z ? j->out + p->out_at : j->buf + p->at, p->stored_len
                        };
                        n++;
                }
                if (n == 0)
                        continue;
                /* pwritev until all of it is written (short writes are legal) */
                struct iovec *v = iov;
                int cnt = (int)(2 * n);
                while (cnt > 0) {
                        ssize_t w = pwritev(j->fd_out, v, cnt, (off_t)off);
                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                int expected = 0;
                                atomic_compare_exchange_strong(&j->write_err, &expected, -errno);
                                return;
                        }
                        off += (uint64_t)w;
                        while (cnt > 0 && (size_t)w >= v->iov_len) {
                                w -= (ssize_t)v->iov_len;
                                v++;
                                cnt--;
                        }
                        if (cnt > 0) {
                                v->iov_base = (uint8_t *)v->iov_base + w;
                                v->iov_len -= (size_t)w;
                        }
                }
        }
}

/* Lay the new pieces out in the pack, update their index entries, then
 * encode and write them on every core, one pwritev per group. */
static int write_new(import_job *j, st_import_result *res, st_diag *reterr) {
        st_store *s = j->s;
        uint64_t total = 0;
        size_t n_new = 0;
        for (size_t i = 0; i < j->n_pieces; i++)
                if (j->pieces[i].is_new) {
                        total += PACK_RECORD_HEADER_LEN + (uint64_t)j->pieces[i].stored_len;
                        n_new++;
                }
        store_pack *pk;
        int r = store_pack_for_append(s, total, &pk);
        if (r < 0) {
                diag(reterr, "packs", ST_DIAG_NO_OFFSET, "cannot create a pack file");
                return r;
        }
        unsigned workers = st_pool_size(store_pool(s));
        size_t per = (n_new + 4 * workers - 1) / (4 * workers);
        if (per == 0)
                per = 1;
        j->n_groups = 0;
        uint64_t off = pk->len;
        size_t in_group = 0;
        for (size_t i = 0; i < j->n_pieces; i++) {
                piece *p = &j->pieces[i];
                if (!p->is_new)
                        continue;
                if (in_group == 0) {
                        r = grow((void **)&j->groups, &j->cap_groups, j->n_groups + 1,
                                 sizeof(write_group));
                        if (r < 0)
                                return r;
                        j->groups[j->n_groups++] = (write_group){ .first = i, .end = i + 1 };
                }
                j->groups[j->n_groups - 1].end = i + 1;
                in_group = (in_group + 1) % per;
                p->rec_off = off;
                index_entry *e = index_get(s->idx, p->entry);
                e->pack = pk->id;
                e->off = (uint32_t)off;
                e->stored_len = p->stored_len;
                off += PACK_RECORD_HEADER_LEN + p->stored_len;
                res->n_new++;
                res->new_bytes += p->len;
                s->unique_bytes += p->len;
        }
        j->fd_out = pk->fd;
        atomic_store(&j->write_err, 0);
        st_pool_for(store_pool(s), j->n_groups, write_group_run, j);
        r = atomic_load(&j->write_err);
        if (r < 0) {
                char name[40] = "packs/";
                pack_name(name + 6, pk->id);
                diag(reterr, name, pk->len, "cannot write to pack");
                return r;
        }
        pk->len = off;
        pk->unsynced = true;
        s->stored_bytes += total;
        res->new_stored += total;
        return 0;
}

/* Read [off, off+len) of the input into j->buf + at on every core. */
#define READ_PART (1u << 20)
static void read_part(void *ctx, size_t i, unsigned worker) {
        (void)worker;
        import_job *j = ctx;
        size_t a = i * READ_PART;
        size_t n = ST_MIN((size_t)READ_PART, j->read_len - a);
        int r = st_pread_full(j->fd_in, j->buf + j->read_at + a, n, j->read_off + a);
        if (r < 0) {
                int expected = 0;
                atomic_compare_exchange_strong(&j->read_err, &expected, r);
        }
}

static int read_parallel(import_job *j, int fd, uint64_t off, size_t at, size_t len) {
        j->fd_in = fd;
        j->read_off = off;
        j->read_at = at;
        j->read_len = len;
        atomic_store(&j->read_err, 0);
        st_pool_for(store_pool(j->s), (len + READ_PART - 1) / READ_PART, read_part, j);
        return atomic_load(&j->read_err);
}

/* Everything after splitting: hash, dedup, compress, write, record extents. */
static int process_batch(import_job *j, manifest *m, st_import_result *res, st_diag *reterr) {
        st_store *s = j->s;
        st_pool *pool = store_pool(s);
        if (!pool)
                return -ENOMEM;
        st_pool_for(pool, j->n_pieces, hash_piece, j);

        size_t out_need = 0;
        uint64_t w_need = 0;
        for (size_t i = 0; i < j->n_pieces; i++) {
                piece *p = &j->pieces[i];
                uint32_t id = index_find(s->idx, &p->hash);
                if (id == INDEX_NONE) {
                        index_entry e = { .pack = INDEX_PACK_PENDING, .raw_len = p->len };
                        id = index_add(s->idx, &p->hash, &e);
                        if (id == INDEX_NONE)
                                return -ENOMEM;
                        p->is_new = true;
                        p->out_at = out_need;
                        out_need += ZSTD_compressBound(p->len);
                        w_need += PACK_RECORD_HEADER_LEN + (uint64_t)p->len;
                } else {
                        p->is_new = false;
                        const index_entry *e = index_get(s->idx, id);
                        if (e->pack != INDEX_PACK_PENDING) {
                                int r = store_entry_matches(s, e, &p->hash);
                                if (r < 0) {
                                        diag(reterr, "packs", e->off,
                                             "cannot read the record a dedup hit points to");
                                        return r;
                                }
                                if (r == 0) {
                                        diag(reterr, "index", p->off,
                                             "two chunks share a 128-bit hash prefix");
                                        return -EEXIST;
                                }
                        }
                }
                p->entry = id;
        }
        int r = grow((void **)&j->out, &j->out_cap, out_need ? out_need : 1, 1);
        if (r < 0)
                return r;
        st_pool_for(pool, j->n_pieces, compress_piece, j);

        if (w_need > 0) {
                r = write_new(j, res, reterr);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < j->n_pieces; i++) {
                piece *p = &j->pieces[i];
                r = manifest_append(m, p->off, p->len, &p->hash);
                if (r < 0)
                        return r;
                res->data_bytes += p->len;
        }
        res->n_chunks += j->n_pieces;
        j->n_pieces = 0;
        return 0;
}

/* Read [pos, end) of the image in buffers and feed the pieces to batches. */
/* Process the pieces split so far and move unsplit bytes to the front. */
static int import_flush(import_job *j, manifest *m, st_import_result *res, st_diag *reterr) {
        int r = process_batch(j, m, res, reterr);
        if (r < 0)
                return r;
        memmove(j->buf, j->buf + j->split_end, j->have - j->split_end);
        j->have -= j->split_end;
        j->split_end = 0;
        return 0;
}

/* Read [pos, end) of the image and split it into pieces. The buffer holds
 * the data of several regions at once (an ext4 image is many small ones), and
 * a batch is processed only when the buffer is full or the image ends, so the
 * parallel stages always get enough work. */
static int import_region(import_job *j, int fd, const char *path, uint64_t pos, uint64_t end,
                         manifest *m, st_import_result *res, const st_import_opts *o,
                         uint64_t size, st_diag *reterr) {
        /* j->buf[j->split_end .. j->have) holds unsplit bytes of this region,
         * starting at image offset pos. */
        for (;;) {
                size_t room = IMPORT_BUF - j->have;
                size_t want = (size_t)ST_MIN((uint64_t)room, end - pos - (j->have - j->split_end));
                if (want > 0) {
                        uint64_t at_img = pos + (j->have - j->split_end);
                        int r = read_parallel(j, fd, at_img, j->have, want);
                        if (r < 0) {
                                diag(reterr, path, at_img,
                                     r == -EIO ? "image ended early (truncated while reading?)"
                                               : "cannot read image");
                                return r;
                        }
                        j->have += want;
                }
                bool eof = pos + (j->have - j->split_end) == end;
                for (;;) {
                        st_piece pc;
                        size_t at = j->split_end;
                        int r = st_split_next(&j->cp, pos, j->buf + at, j->have - at, eof, &pc);
                        if (r < 0)
                                break;
                        if (!pc.hole) {
                                r = grow((void **)&j->pieces, &j->cap_pieces, j->n_pieces + 1,
                                         sizeof(piece));
                                if (r < 0)
                                        return r;
                                j->pieces[j->n_pieces++] = (piece){
                                        .off = pos, .len = (uint32_t)pc.len, .at = (uint32_t)at
                                };
                        }
                        j->split_end += (size_t)pc.len;
                        pos += pc.len;
                }
                if (eof && j->split_end == j->have)
                        return 0; /* region done; its pieces wait for the next batch */
                /* The buffer is full: process what is split, keep the rest. */
                int r = import_flush(j, m, res, reterr);
                if (r < 0)
                        return r;
                if (o && o->progress)
                        o->progress(o->userdata, pos, size);
        }
}


static int image_size(int fd, uint64_t *ret, bool *ret_regular) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISREG(st.st_mode)) {
                *ret = (uint64_t)st.st_size;
                *ret_regular = true;
                return 0;
        }
        if (S_ISBLK(st.st_mode)) {
                off_t e = lseek(fd, 0, SEEK_END);
                if (e < 0)
                        return -errno;
                *ret = (uint64_t)e;
                *ret_regular = false;
                return 0;
        }
        return -EINVAL;
}

static void job_done(import_job *j) {
        free(j->buf);
        free(j->pieces);
        free(j->out);
        free(j->groups);
        for (unsigned i = 0; i < j->n_cctx; i++)
                ZSTD_freeCCtx(j->cctx[i]);
        free(j->cctx);
}

static int import_all(import_job *j, int fd, const char *path, uint64_t size,
                      bool regular, manifest *m, st_import_result *res, const st_import_opts *o,
                      st_diag *reterr) {
        /* In aligned mode a hole and zeros split alike (split.c), so the data
         * regions SEEK_DATA finds can be imported on their own. Byte mode reads
         * everything: its cut points do not restart at holes. */
        int r;
        if (!regular || j->cp.align == 1) {
                r = import_region(j, fd, path, 0, size, m, res, o, size, reterr);
                return r < 0 ? r : import_flush(j, m, res, reterr);
        }
        uint64_t pos = 0;
        while (pos < size) {
                off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
                if (d < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        if (errno == EINVAL || errno == EOPNOTSUPP) {
                                r = import_region(j, fd, path, pos, size, m, res, o, size, reterr);
                                return r < 0 ? r : import_flush(j, m, res, reterr);
                        }
                        diag(reterr, path, pos, "SEEK_DATA failed");
                        return -errno;
                }
                off_t h = lseek(fd, d, SEEK_HOLE);
                if (h < 0) {
                        diag(reterr, path, (uint64_t)d, "SEEK_HOLE failed");
                        return -errno;
                }
                uint64_t a = (uint64_t)d / ST_CHUNK_ALIGN * ST_CHUNK_ALIGN;
                uint64_t b = ((uint64_t)h + ST_CHUNK_ALIGN - 1) / ST_CHUNK_ALIGN * ST_CHUNK_ALIGN;
                if (a < pos)
                        a = pos;
                if (b > size)
                        b = size;
                if (b > a) {
                        r = import_region(j, fd, path, a, b, m, res, o, size, reterr);
                        if (r < 0)
                                return r;
                }
                pos = b > pos ? b : pos + 1;
        }
        r = import_flush(j, m, res, reterr);
        if (r < 0)
                return r;
        if (o && o->progress)
                o->progress(o->userdata, size, size);
        return 0;
}

/* Undo a failed import: forget its chunks, cut the packs back, drop packs it
 * created. The index on disk never saw any of it, so the store is then
 * exactly as before and clean. If anything here fails, the store stays
 * dirty and the next open recovers. */
static int import_rollback(st_store *s, uint32_t n_entries, size_t n_packs, uint64_t last_len) {
        int r = index_truncate(s->idx, n_entries);
        if (r < 0)
                return r;
        while (s->n_packs > n_packs) {
                store_pack *p = &s->packs[--s->n_packs];
                char name[32];
                pack_name(name, p->id);
                (void)close(p->fd);
                if (unlinkat(s->packs_fd, name, 0) < 0)
                        return -errno;
        }
        if (n_packs > 0) {
                store_pack *p = &s->packs[n_packs - 1];
                if (p->len != last_len) {
                        if (ftruncate(p->fd, (off_t)last_len) < 0 || fsync(p->fd) < 0)
                                return -errno;
                        p->len = last_len;
                }
        }
        store_recount_totals(s);
        r = st_fsync_dir(s->packs_fd);
        return r < 0 ? r : store_clear_dirty(s);
}

int st_store_import(st_store *s, const char *path, const char *name, const st_import_opts *o,
                    st_import_result *ret, st_diag *reterr) {
        int r = store_writable(s);
        if (r < 0)
                return r;
        if (!st_name_valid(name)) {
                diag(reterr, name, ST_DIAG_NO_OFFSET, "invalid image name");
                return -EINVAL;
        }
        if (faccessat(s->images_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
                diag(reterr, name, ST_DIAG_NO_OFFSET, "an image with this name exists");
                return -EEXIST;
        }
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                diag(reterr, path, ST_DIAG_NO_OFFSET, "cannot open image");
                return r;
        }
        uint64_t size = 0;
        bool regular = false;
        r = image_size(fd, &size, &regular);
        if (r < 0) {
                diag(reterr, path, ST_DIAG_NO_OFFSET, r == -EINVAL ? "not a regular file or block device"
                                                   : "cannot stat image");
                return r;
        }
        if (size > MANIFEST_SIZE_MAX) {
                diag(reterr, path, ST_DIAG_NO_OFFSET, "image too large");
                return -EFBIG;
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

        st_pool *pool = store_pool(s);
        if (!pool)
                return -ENOMEM;
        import_job j = { .s = s, .cp = s->cfg.chunker };
        j.buf = malloc(IMPORT_BUF);
        j.n_cctx = st_pool_size(pool);
        j.cctx = calloc(j.n_cctx, sizeof *j.cctx);
        manifest *m = manifest_new(MANIFEST_KIND_IMAGE, size, &j.cp);
        r = (j.buf && j.cctx && m) ? 0 : -ENOMEM;
        for (unsigned i = 0; r == 0 && i < j.n_cctx; i++)
                if (!(j.cctx[i] = ZSTD_createCCtx()))
                        r = -ENOMEM;
        if (r < 0) {
                job_done(&j);
                manifest_free(m);
                return r;
        }

        st_import_result res = { .size = size };
        uint32_t n_entries = index_count(s->idx);
        size_t n_packs = s->n_packs;
        uint64_t last_len = n_packs ? s->packs[n_packs - 1].len : 0;
        bool saved = false;
        r = store_mark_dirty(s);
        if (r == 0)
                r = import_all(&j, fd, path, size, regular, m, &res, o, reterr);
        job_done(&j);
        if (r == 0) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                m->ctime_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
                /* Chunks first, then the manifest: a crash between leaves only
                 * unreferenced chunks, never an image with missing data. */
                for (size_t i = 0; r == 0 && i < s->n_packs; i++)
                        if (s->packs[i].unsynced)
                                r = ST_ERRNO(fsync(s->packs[i].fd));
                if (r == 0) {
                        r = store_save_manifest(s, name, m);
                        saved = r == 0;
                }
                if (r < 0)
                        diag(reterr, name, ST_DIAG_NO_OFFSET, "cannot write manifest");
        }
        if (r == 0) {
                for (size_t i = 0; i < m->n; i++) {
                        index_entry *e = index_get(s->idx, index_find(s->idx, &m->ext[i].hash));
                        if (e->refs < UINT32_MAX)
                                e->refs++;
                }
                r = store_commit(s);
                if (r < 0)
                        diag(reterr, "index", ST_DIAG_NO_OFFSET, "cannot write index");
        }
        manifest_free(m);
        if (r < 0) {
                /* Before the manifest exists the import can be undone; after, the
                 * image is real and recovery will count its references. */
                if (saved || (s->dirty_marked &&
                              import_rollback(s, n_entries, n_packs, last_len) < 0))
                        s->broken = true;
                return r;
        }
        if (ret)
                *ret = res;
        return 0;
}
