/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Export of any name (image, snapshot, volume with its uncommitted writes) to
 * a file or block device, byte-identical. The content is walked as runs;
 * chunk runs are read, decompressed, verified and written on every core. A
 * regular file is sized first, so zero runs stay holes; a block device gets
 * zeros written.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stellar/chunker.h>
#include <stellar/store.h>
#include <stellar/volume.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "volume-internal.h"

#define EXPORT_BATCH 1024

typedef struct export_job {
        st_store *s;
        int fd;
        volume_run *runs;
        size_t n_runs;
        bool blockdev;
        pthread_mutex_t lock;
        int err;
        uint64_t err_off;
        const char *err_what;
        bool err_in_delta; /* the failure is in the volume's delta data file */
} export_job;

static void fail(export_job *j, int r, uint64_t off, const char *what) {
        pthread_mutex_lock(&j->lock);
        if (!j->err) {
                j->err = r;
                j->err_off = off;
                j->err_what = what;
        }
        pthread_mutex_unlock(&j->lock);
}

/* Write data at off, leaving 4 KiB blocks (of the file) that are all zeros
 * as holes in a regular file, so an export is sparse wherever the content is
 * zero, not only where whole chunks are. */
static int write_sparse(int fd, const uint8_t *data, size_t len, uint64_t off, bool blockdev) {
        if (blockdev)
                return st_pwrite_full(fd, data, len, off);
        size_t at = 0;
        while (at < len) {
                size_t seg = (size_t)ST_MIN((uint64_t)(len - at),
                                            ST_VOLUME_BLOCK - (off + at) % ST_VOLUME_BLOCK);
                if (st_is_zero(data + at, seg)) {
                        at += seg;
                        continue;
                }
                size_t end = at + seg; /* extend over following non-zero blocks */
                while (end < len) {
                        size_t n = (size_t)ST_MIN((uint64_t)(len - end), (uint64_t)ST_VOLUME_BLOCK);
                        if (st_is_zero(data + end, n))
                                break;
                        end += n;
                }
                int r = st_pwrite_full(fd, data + at, end - at, off + at);
                if (r < 0)
                        return r;
                at = end;
        }
        return 0;
}

static void export_chunk(void *ctx, size_t i, unsigned worker) {
        export_job *j = ctx;
        const volume_run *run = &j->runs[i];
        (void)worker;
        store_chunk c;
        int r = store_get(j->s, &run->ext->hash, &c);
        if (r < 0 || c.len != run->ext->len) {
                if (r == 0)
                        store_release(j->s, &c);
                fail(j, r == -ENOENT ? -ENOENT : -EBADMSG, run->off,
                     r == -ENOENT ? "chunk missing from the store"
                                  : "chunk is damaged (fsck will say where)");
                return;
        }
        r = write_sparse(j->fd, c.data + (run->off - run->ext->off), (size_t)run->len, run->off,
                         j->blockdev);
        store_release(j->s, &c);
        if (r < 0)
                fail(j, r, run->off, "cannot write output");
}

static int write_zeros(int fd, uint64_t off, uint64_t len) {
        static const uint8_t zero[65536];
        while (len > 0) {
                size_t n = (size_t)ST_MIN(len, (uint64_t)sizeof zero);
                int r = st_pwrite_full(fd, zero, n, off);
                if (r < 0)
                        return r;
                off += n;
                len -= n;
        }
        return 0;
}

static void flush_batch(export_job *j, st_pool *pool) {
        st_pool_for(pool, j->n_runs, export_chunk, j);
        j->n_runs = 0;
}

int st_store_export(st_store *s, const char *name, const char *path, const st_import_opts *o,
                    st_diag *reterr) {
        st_volume *v;
        int r = st_volume_open(s, name, ST_VOLUME_RDONLY, &v, reterr);
        if (r < 0)
                return r;
        uint64_t size = st_volume_size(v);
        st_pool *pool = store_pool(s);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (!pool || fd < 0) {
                r = pool ? -errno : -ENOMEM;
                st_volume_close(v);
                return st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET, "cannot open output", r);
        }
        struct stat st;
        bool blockdev = fstat(fd, &st) == 0 && S_ISBLK(st.st_mode);
        if (!blockdev && (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)size) < 0)) {
                r = -errno;
                st_volume_close(v);
                return st_diag_fail(reterr, path, size, "cannot size output", r);
        }
        export_job j = { .s = s, .fd = fd, .blockdev = blockdev };
        pthread_mutex_init(&j.lock, NULL);
        j.runs = malloc(EXPORT_BATCH * sizeof *j.runs);
        if (!j.runs)
                j.err = -ENOMEM;
        uint64_t off = 0, next_progress = 0;
        uint8_t block[ST_VOLUME_BLOCK];
        while (!j.err && off < size) {
                volume_run run;
                volume_run_at(v, off, size, &run);
                if (run.kind == VRUN_CHUNK) {
                        j.runs[j.n_runs++] = run;
                        if (j.n_runs == EXPORT_BATCH)
                                flush_batch(&j, pool);
                } else if (run.kind == VRUN_DELTA) {
                        int k = volume_read_slot(v, run.off / ST_VOLUME_BLOCK, run.slot, block);
                        if (k == -EBADMSG || k == -EIO) {
                                fail(&j, -EBADMSG, run.slot * ST_VOLUME_BLOCK,
                                     "a written block does not match the checksum its journal "
                                     "record keeps (the delta's data is damaged)");
                                j.err_in_delta = true;
                                break;
                        }
                        if (k == 0)
                                k = write_sparse(fd, block + run.off % ST_VOLUME_BLOCK,
                                                 (size_t)run.len, run.off, blockdev);
                        if (k < 0)
                                fail(&j, k, run.off, "cannot copy a delta block");
                } else if (blockdev) {
                        int k = write_zeros(fd, run.off, run.len);
                        if (k < 0)
                                fail(&j, k, run.off, "cannot write output");
                }
                off += run.len;
                if (o && o->progress && off >= next_progress) {
                        o->progress(o->userdata, off, size);
                        next_progress = off + (64u << 20);
                }
        }
        if (!j.err)
                flush_batch(&j, pool);
        if (!j.err && o && o->progress)
                o->progress(o->userdata, size, size);
        r = j.err;
        char delta_file[300];
        snprintf(delta_file, sizeof delta_file, "deltas/%s.data", name);
        if (r < 0)
                (void)st_diag_fail(reterr,
                                   j.err_in_delta                        ? delta_file
                                   : r == -ENOENT || r == -EBADMSG ? name
                                                                   : path,
                                   j.err_off, j.err_what, r);
        free(j.runs);
        pthread_mutex_destroy(&j.lock);
        st_volume_close(v);
        return r;
}
