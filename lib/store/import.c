/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Import of a raw image file or block device: find its data with
 * SEEK_DATA/SEEK_HOLE (holes are never read), run the data through the
 * ingest path, save the manifest and a ref of kind image. The image becomes
 * visible by one atomic rename of its ref, after its chunks are durable.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "ingest.h"
#include "store-internal.h"

struct file_src {
        int fd;
};

static int file_read(void *ctx, uint64_t off, void *buf, size_t len) {
        int r = st_pread_full(((struct file_src *)ctx)->fd, buf, len, off);
        return r == -EIO ? -ENODATA : r; /* EOF: the file shrank while we read it */
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

static int import_data(ingest *g, int fd, const char *path, uint64_t size, bool regular,
                       const st_chunker_params *cp, st_diag *reterr) {
        struct file_src src = { fd };
        int r;
        /* In aligned mode a hole and zeros split alike (split.c), so the data
         * regions SEEK_DATA finds can be ingested on their own. Byte mode reads
         * everything: its cut points do not restart at holes. */
        if (!regular || cp->align == 1)
                return ingest_region(g, 0, size, file_read, &src, reterr);
        uint64_t pos = 0;
        while (pos < size) {
                off_t d = lseek(fd, (off_t)pos, SEEK_DATA);
                if (d < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        if (errno == EINVAL || errno == EOPNOTSUPP)
                                return ingest_region(g, pos, size, file_read, &src, reterr);
                        r = -errno;
                        return st_diag_fail(reterr, path, pos, "SEEK_DATA failed", r);
                }
                off_t h = lseek(fd, d, SEEK_HOLE);
                if (h < 0) {
                        r = -errno;
                        return st_diag_fail(reterr, path, (uint64_t)d, "SEEK_HOLE failed", r);
                }
                uint64_t a = (uint64_t)d / ST_CHUNK_ALIGN * ST_CHUNK_ALIGN;
                uint64_t b = ((uint64_t)h + ST_CHUNK_ALIGN - 1) / ST_CHUNK_ALIGN * ST_CHUNK_ALIGN;
                a = ST_MAX(a, pos);
                b = ST_MIN(b, size);
                if (b > a) {
                        r = ingest_region(g, a, b, file_read, &src, reterr);
                        if (r < 0)
                                return r;
                }
                pos = b > pos ? b : pos + 1;
        }
        return 0;
}

uint64_t store_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int st_store_import(st_store *s, const char *path, const char *name, const st_import_opts *o,
                    st_import_result *ret, st_diag *reterr) {
        int r = store_exclusive(s);
        if (r < 0)
                return r;
        if (!st_name_valid(name))
                return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET, "invalid image name", -EINVAL);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                return st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET, "cannot open image", r);
        }
        uint64_t size = 0;
        bool regular = false;
        r = image_size(fd, &size, &regular);
        if (r < 0)
                return st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET,
                                    r == -EINVAL ? "not a regular file or block device"
                                                 : "cannot stat image",
                                    r);
        if (size > MANIFEST_SIZE_MAX)
                return st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET, "image too large", -EFBIG);
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

        store_change_begin(s);
        if (store_ref_exists(s, name)) {
                store_change_end(s);
                return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET, "the name is taken", -EEXIST);
        }
        if (store_delta_orphan_writes(s, name)) {
                store_change_end(s);
                return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET, STORE_ORPHAN_WRITES_MSG,
                                    -ENOTEMPTY);
        }
        manifest *m = manifest_new(size, &s->cfg.chunker, NULL);
        ingest *g = NULL;
        st_import_result res = { 0 };
        bool saved = false;
        r = m ? ingest_begin(s, m, false, o, size, &g) : -ENOMEM;
        if (r == 0)
                r = import_data(g, fd, path, size, regular, &s->cfg.chunker, reterr);
        if (r == -ENODATA)
                (void)st_diag_fail(reterr, path, reterr ? reterr->offset : 0,
                                   "image ended early (truncated while reading?)", r = -EIO);
        else if (r < 0 && reterr && !reterr->file[0])
                (void)st_diag_fail(reterr, path, reterr->offset, reterr->what, r);
        if (r == 0)
                r = ingest_finish(g, &res, reterr);
        if (r == 0) {
                m->ctime_ns = store_now_ns();
                store_ref ref = { .kind = ST_KIND_IMAGE, .size = size, .ctime_ns = m->ctime_ns };
                r = store_make_visible(s, name, &m, 1, &ref, STORE_VISIBLE_CREATE, &saved, reterr);
        }
        ingest_free(g, r < 0 && !saved);
        manifest_free(m);
        store_change_end(s);
        if (r == 0 && ret) {
                res.size = size;
                *ret = res;
        }
        return r;
}
