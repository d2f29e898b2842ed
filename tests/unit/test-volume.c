/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Model-based test of volumes: long random sequences of write, write-zeroes,
 * discard, flush, read, commit, snapshot, clone, reopen of store and volumes,
 * and export, checked against plain in-memory byte arrays. At the end every
 * volume and snapshot must equal its model, and fsck must be clean (so
 * reference counts stayed exact). Seed and op count: argv or
 * ST_TEST_SEED / ST_TEST_OPS; printed.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stellar/store.h>
#include <stellar/volume.h>

#include "test.h"
#include "util/fs.h"

#define SIZE (6u << 20) /* not a multiple of a chunk; a multiple of 4K */
#define MAXVOL 8

typedef struct vmodel {
        char name[32];
        uint8_t *bytes;
        st_volume *v; /* open handle, or NULL */
        bool snapshot;
} vmodel;

static char *dir, store_path[600];
static st_store *s;
static vmodel vols[MAXVOL];
static int n_vols;
static uint64_t rng;
static long ops_done, n_commits, n_flattened;

static uint64_t rnd(uint64_t n) {
        return n ? st_test_rand(&rng) % n : 0;
}

static void fail_at(const char *what) {
        fprintf(stderr, "op %ld: %s\n", ops_done, what);
        st_test_failures++;
}

static st_volume *handle(vmodel *m) {
        if (!m->v) {
                int r = st_volume_open(s, m->name, 0, &m->v, NULL);
                if (r < 0) {
                        fail_at("open");
                        return NULL;
                }
        }
        return m->v;
}

static void verify_range(vmodel *m, uint64_t off, size_t len) {
        st_volume *v = handle(m);
        if (!v)
                return;
        uint8_t *buf = malloc(len);
        int r = st_volume_read(v, buf, len, off);
        if (r < 0 || memcmp(buf, m->bytes + off, len) != 0) {
                char what[200];
                size_t i = 0;
                while (r == 0 && i < len && buf[i] == m->bytes[off + i])
                        i++;
                snprintf(what, sizeof what, "%s: read %zu at %llu differs at +%zu (r=%d)", m->name,
                         len, (unsigned long long)off, i, r);
                fail_at(what);
        }
        free(buf);
}

static void reopen_all(void) {
        for (int i = 0; i < n_vols; i++)
                vols[i].v = st_volume_close(vols[i].v);
        s = st_store_close(s);
        ST_CHECK_ERR(st_store_open(store_path, 0, &s, NULL), 0);
}

static void random_range(uint64_t *off, size_t *len) {
        switch (rnd(4)) {
        case 0: /* aligned blocks */
                *off = rnd(SIZE / 4096) * 4096;
                *len = (size_t)(1 + rnd(16)) * 4096;
                break;
        case 1: /* small, unaligned, often across a block boundary */
                *off = rnd(SIZE - 1);
                *len = 1 + (size_t)rnd(9000);
                break;
        case 2: /* large */
                *off = rnd(SIZE);
                *len = (size_t)rnd(300000) + 1;
                break;
        default: /* the tail of the volume */
                *off = SIZE - 1 - rnd(20000);
                *len = 1 + (size_t)rnd(20000);
        }
        if (*off + *len > SIZE)
                *len = (size_t)(SIZE - *off);
}

static void op(void) {
        vmodel *m = &vols[rnd(n_vols)];
        uint64_t off;
        size_t len;
        random_range(&off, &len);
        unsigned k = (unsigned)rnd(100);
        if (m->snapshot || k < 30) { /* read */
                verify_range(m, off, len);
                return;
        }
        st_volume *v = handle(m);
        if (!v)
                return;
        if (k < 60) {
                uint8_t *buf = malloc(len);
                /* Some writes repeat content (dedup must still be exact). */
                st_test_fill(buf, len, rnd(3) == 0 ? 7 : st_test_rand(&rng));
                if (rnd(5) == 0)
                        memset(buf, 0, len);
                ST_CHECK_ERR(st_volume_write(v, buf, len, off, rnd(10) == 0 ? ST_WRITE_FUA : 0), 0);
                memcpy(m->bytes + off, buf, len);
                free(buf);
        } else if (k < 66) {
                ST_CHECK_ERR(st_volume_write_zeroes(v, off, len, rnd(2) ? ST_WRITE_NO_HOLE : 0), 0);
                memset(m->bytes + off, 0, len);
        } else if (k < 70) {
                ST_CHECK_ERR(st_volume_discard(v, off, len), 0);
                memset(m->bytes + off, 0, len);
        } else if (k < 78) {
                ST_CHECK_ERR(st_volume_flush(v), 0);
        } else if (k < 84) {
                st_commit_result cr;
                ST_CHECK_ERR(st_volume_commit(v, &cr), 0);
                n_commits++;
                n_flattened += cr.flattened;
                verify_range(m, off, len);
        } else if (k < 88 && n_vols < MAXVOL) {
                vmodel *n = &vols[n_vols];
                bool snap = rnd(2);
                snprintf(n->name, sizeof n->name, "%s%d", snap ? "snap" : "clone", n_vols);
                int r = snap ? st_volume_snapshot(s, m->name, n->name)
                             : st_volume_clone(s, m->name, n->name);
                ST_CHECK_ERR(r, 0);
                if (r == 0) {
                        n->bytes = malloc(SIZE);
                        memcpy(n->bytes, m->bytes, SIZE);
                        n->snapshot = snap;
                        n_vols++;
                }
        } else if (k < 91) {
                reopen_all();
        } else if (k < 93) {
                m->v = st_volume_close(m->v);
        } else {
                verify_range(m, off, len);
        }
}

static void verify_all(const char *when) {
        for (int i = 0; i < n_vols; i++)
                verify_range(&vols[i], 0, SIZE);
        /* export of one, compared byte for byte */
        vmodel *m = &vols[rnd(n_vols)];
        if (m->v)
                ST_CHECK_ERR(st_volume_flush(m->v), 0);
        char out[700];
        snprintf(out, sizeof out, "%s/export.img", dir);
        int r = st_store_export(s, m->name, out, NULL, NULL);
        if (m->v && r == -EBUSY)
                r = 0;
        ST_CHECK_ERR(r, 0);
        uint8_t *b;
        size_t l;
        if (r == 0 && st_read_file(AT_FDCWD, out, SIZE + 1, &b, &l) == 0) {
                if (l != SIZE || memcmp(b, m->bytes, SIZE) != 0)
                        fail_at("export differs from the model");
                free(b);
        }
        st_fsck_result fr;
        for (int i = 0; i < n_vols; i++)
                vols[i].v = st_volume_close(vols[i].v);
        ST_CHECK_ERR(st_store_fsck(s, NULL, NULL, NULL, &fr), 0);
        if (fr.n_errors)
                fail_at(when);
}

/* 40 commits of small writes: the chain passes the flatten depth, and the
 * flattened volume still reads as its model. */
static void test_deep_chain(void) {
        vmodel m = { .name = "deep", .bytes = calloc(1, SIZE) };
        ST_CHECK_ERR(st_volume_create(s, "deep", SIZE), 0);
        st_volume *v = handle(&m);
        int flattened = 0;
        for (int i = 0; v && i < 40; i++) {
                uint8_t buf[5000];
                uint64_t off = rnd(SIZE - sizeof buf);
                st_test_fill(buf, sizeof buf, (uint64_t)i);
                ST_CHECK_ERR(st_volume_write(v, buf, sizeof buf, off, 0), 0);
                memcpy(m.bytes + off, buf, sizeof buf);
                st_commit_result cr;
                ST_CHECK_ERR(st_volume_commit(v, &cr), 0);
                flattened += cr.flattened;
        }
        ST_CHECK(flattened >= 1);
        verify_range(&m, 0, SIZE);
        st_volume_close(m.v);
        ST_CHECK_ERR(st_store_remove(s, "deep", NULL), 0);
        free(m.bytes);
}

int main(int argc, char **argv) {
        uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0)
                        : getenv("ST_TEST_SEED") ? strtoull(getenv("ST_TEST_SEED"), NULL, 0)
                                                 : 20261127;
        long n_ops = argc > 2 ? atol(argv[2]) : getenv("ST_TEST_OPS") ? atol(getenv("ST_TEST_OPS")) : 4000;
        printf("seed %llu, %ld operations\n", (unsigned long long)seed, n_ops);
        rng = seed | 1;
        dir = st_test_tmpdir();
        snprintf(store_path, sizeof store_path, "%s/store", dir);
        ST_CHECK_ERR(st_store_init(store_path, NULL), 0);
        ST_CHECK_ERR(st_store_open(store_path, 0, &s, NULL), 0);

        /* A base image with data, zeros and a hole, imported and cloned. */
        uint8_t *base = malloc(SIZE);
        st_test_fill(base, SIZE, seed);
        memset(base + SIZE / 3, 0, SIZE / 6);
        char img[700];
        snprintf(img, sizeof img, "%s/base.img", dir);
        int fd = open(img, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        ST_CHECK(st_pwrite_full(fd, base, SIZE - (1u << 20), 0) == 0);
        ST_CHECK(ftruncate(fd, SIZE) == 0);
        close(fd);
        memset(base + SIZE - (1u << 20), 0, 1u << 20);
        ST_CHECK_ERR(st_store_import(s, img, "base", NULL, NULL, NULL), 0);
        ST_CHECK_ERR(st_volume_clone(s, "base", "vol"), 0);
        ST_CHECK_ERR(st_volume_clone(s, "base", "base"), -EEXIST);
        ST_CHECK_ERR(st_volume_snapshot(s, "base", "nope"), -EINVAL); /* images are not volumes */
        vols[0] = (vmodel){ .name = "base", .bytes = base, .snapshot = true };
        vols[1] = (vmodel){ .name = "vol", .bytes = malloc(SIZE) };
        memcpy(vols[1].bytes, base, SIZE);
        ST_CHECK_ERR(st_volume_create(s, "blank", SIZE), 0);
        vols[2] = (vmodel){ .name = "blank", .bytes = calloc(1, SIZE) };
        n_vols = 3;
        /* images refuse writes */
        st_volume *ro;
        ST_CHECK_ERR(st_volume_open(s, "base", 0, &ro, NULL), 0);
        ST_CHECK_ERR(st_volume_write(ro, "x", 1, 0, 0), -EROFS);
        ST_CHECK_ERR(st_volume_read(ro, base, 10, SIZE - 5), -EINVAL);
        st_volume_close(ro);

        test_deep_chain();
        for (ops_done = 0; ops_done < n_ops && st_test_failures < 5; ops_done++) {
                op();
                if (ops_done % 1000 == 999)
                        verify_all("fsck during the run");
        }
        verify_all("fsck at the end");
        /* Removing a volume others were cloned or snapshotted from keeps
         * their data; gc then frees only what nothing uses. */
        ST_CHECK_ERR(st_store_remove(s, "vol", NULL), 0);
        st_gc_result g;
        ST_CHECK_ERR(st_store_gc(s, NULL, &g, NULL), 0);
        for (int i = 0; i < n_vols; i++)
                if (strcmp(vols[i].name, "vol") != 0)
                        verify_range(&vols[i], 0, SIZE);
        for (int i = 0; i < n_vols; i++)
                vols[i].v = st_volume_close(vols[i].v);
        st_fsck_result fr;
        ST_CHECK_ERR(st_store_fsck(s, NULL, NULL, NULL, &fr), 0);
        ST_CHECK(fr.n_errors == 0);
        printf("%ld operations, %d names, %ld commits (%ld flattened the chain)\n", ops_done,
               n_vols, n_commits, n_flattened);

        st_store_close(s);
        for (int i = 0; i < n_vols; i++)
                free(vols[i].bytes);
        st_test_rmrf(dir);
        free(dir);
        return ST_TEST_RESULT();
}
