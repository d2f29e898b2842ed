/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Export: manifest -> chunks read, decompressed and verified on every core
 * -> pwrite at their offsets. A regular file is truncated to the image size
 * first, so holes stay holes; a block device gets explicit zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "store-internal.h"

#define EXPORT_BATCH 512

typedef struct worker_buf {
        uint8_t *scratch, *out;
        size_t scratch_cap, out_cap;
        ZSTD_DCtx *dctx;
} worker_buf;

typedef struct export_job {
        st_store *s;
        const manifest *m;
        size_t first;
        int fd;
        worker_buf *w;
        pthread_mutex_t lock;
        int err;
        uint64_t err_off;
        const char *err_what;
} export_job;

static int ensure(uint8_t **p, size_t *cap, size_t need) {
        if (need <= *cap)
                return 0;
        uint8_t *t = realloc(*p, need);
        if (!t)
                return -ENOMEM;
        *p = t;
        *cap = need;
        return 0;
}

static void fail(export_job *j, int r, uint64_t off, const char *what) {
        pthread_mutex_lock(&j->lock);
        if (!j->err) {
                j->err = r;
                j->err_off = off;
                j->err_what = what;
        }
        pthread_mutex_unlock(&j->lock);
}

static void export_one(void *ctx, size_t i, unsigned worker) {
        export_job *j = ctx;
        const manifest_extent *x = &j->m->ext[j->first + i];
        worker_buf *w = &j->w[worker];
        uint32_t id = index_find(j->s->idx, &x->hash);
        if (id == INDEX_NONE) {
                fail(j, -ENOENT, x->off, "chunk missing from the store");
                return;
        }
        const index_entry *e = index_get(j->s->idx, id);
        if (e->raw_len != x->len) {
                fail(j, -EBADMSG, x->off, "chunk length differs from the manifest");
                return;
        }
        if (!w->dctx && !(w->dctx = ZSTD_createDCtx())) {
                fail(j, -ENOMEM, x->off, "out of memory");
                return;
        }
        if (ensure(&w->scratch, &w->scratch_cap, PACK_RECORD_HEADER_LEN + (size_t)e->stored_len) < 0 ||
            ensure(&w->out, &w->out_cap, e->raw_len) < 0) {
                fail(j, -ENOMEM, x->off, "out of memory");
                return;
        }
        int r = store_read_entry(j->s, e, &x->hash, w->out, w->scratch, w->dctx);
        if (r < 0) {
                fail(j, r, x->off, "chunk is damaged (fsck will say where)");
                return;
        }
        r = st_pwrite_full(j->fd, w->out, x->len, x->off);
        if (r < 0)
                fail(j, r, x->off, "cannot write output");
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

int st_store_export(st_store *s, const char *name, const char *path, const st_import_opts *o,
                    st_diag *reterr) {
        manifest *m = NULL;
        int r = store_load_manifest(s, name, &m, reterr);
        if (r < 0)
                return r;
        st_pool *pool = store_pool(s);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (!pool || fd < 0) {
                r = pool ? -errno : -ENOMEM;
                (void)st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET, "cannot open output", r);
                manifest_free(m);
                return r;
        }
        struct stat st;
        bool blockdev = fstat(fd, &st) == 0 && S_ISBLK(st.st_mode);
        if (!blockdev && (ftruncate(fd, 0) < 0 || ftruncate(fd, (off_t)m->size) < 0)) {
                r = -errno;
                (void)st_diag_fail(reterr, path, m->size, "cannot size output", r);
                manifest_free(m);
                return r;
        }
        export_job j = { .s = s, .m = m, .fd = fd };
        pthread_mutex_init(&j.lock, NULL);
        j.w = calloc(st_pool_size(pool), sizeof *j.w);
        if (!j.w)
                j.err = -ENOMEM;
        uint64_t zero_from = 0;
        for (size_t i = 0; !j.err && i < m->n; i += EXPORT_BATCH) {
                size_t n = ST_MIN((size_t)EXPORT_BATCH, m->n - i);
                j.first = i;
                if (blockdev) {
                        for (size_t k = i; k < i + n && !j.err; k++) {
                                if (m->ext[k].off > zero_from) {
                                        int zr = write_zeros(fd, zero_from, m->ext[k].off - zero_from);
                                        if (zr < 0)
                                                fail(&j, zr, zero_from, "cannot write output");
                                }
                                zero_from = m->ext[k].off + m->ext[k].len;
                        }
                }
                st_pool_for(pool, n, export_one, &j);
                if (o && o->progress)
                        o->progress(o->userdata, m->ext[i + n - 1].off + m->ext[i + n - 1].len, m->size);
        }
        if (!j.err && blockdev && m->size > zero_from) {
                int zr = write_zeros(fd, zero_from, m->size - zero_from);
                if (zr < 0)
                        fail(&j, zr, zero_from, "cannot write output");
        }
        if (!j.err && o && o->progress)
                o->progress(o->userdata, m->size, m->size);
        r = j.err;
        if (r < 0)
                (void)st_diag_fail(reterr, r == -ENOENT || r == -EBADMSG ? name : path, j.err_off,
                                   j.err_what, r);
        if (j.w) {
                for (unsigned k = 0; k < st_pool_size(pool); k++) {
                        free(j.w[k].scratch);
                        free(j.w[k].out);
                        ZSTD_freeDCtx(j.w[k].dctx);
                }
                free(j.w);
        }
        pthread_mutex_destroy(&j.lock);
        manifest_free(m);
        return r;
}
