/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store through its public API: import/export round trips with holes,
 * dedup and exact reference counts, rm + gc, fsck, and recovery: a lost
 * index is rebuilt from the packs alone, a torn pack tail is cut, a stale
 * index is completed, and an unknown format version is refused.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "store/store-internal.h"
#include "test.h"
#include "util/fs.h"

static char *dir;

static char *path(const char *name) {
        static char buf[8][600];
        static int k;
        k = (k + 1) % 8;
        snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
        return buf[k];
}

static void write_image(const char *name, size_t len, uint64_t seed, bool holes) {
        uint8_t *b = malloc(len);
        st_test_fill(b, len, seed);
        if (holes) {
                memset(b + len / 3, 0, len / 5); /* zeros written out */
                memset(b + 4096 * 3, 0, 4096 * 2);
        }
        int fd = open(path(name), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ST_CHECK(st_pwrite_full(fd, b, len, 0) == 0);
        if (holes)
                ST_CHECK(ftruncate(fd, (off_t)len + (8 << 20)) == 0); /* a real hole at the end */
        close(fd);
        free(b);
}

static bool same_file(const char *a, const char *b) {
        uint8_t *x, *y;
        size_t lx, ly;
        if (st_read_file(AT_FDCWD, a, 1u << 30, &x, &lx) < 0)
                return false;
        if (st_read_file(AT_FDCWD, b, 1u << 30, &y, &ly) < 0) {
                free(x);
                return false;
        }
        bool same = lx == ly && memcmp(x, y, lx) == 0;
        free(x);
        free(y);
        return same;
}

static uint64_t fsck_errors(st_store *s) {
        st_fsck_result r = { 0 };
        ST_CHECK_ERR(st_store_fsck(s, NULL, NULL, NULL, &r), 0);
        return r.n_errors;
}

static st_store *reopen(st_store *s) {
        st_store_close(s);
        st_store *n = NULL;
        st_diag d = { 0 };
        int r = st_store_open(path("store"), 0, &n, &d);
        ST_CHECK_ERR(r, 0);
        if (r < 0)
                fprintf(stderr, "open: %s at %llu: %s\n", d.file, (unsigned long long)d.offset, d.what);
        return n;
}

static void test_roundtrip_and_refs(void) {
        st_store *s = NULL;
        ST_CHECK_ERR(st_store_init(path("store"), NULL), 0);
        ST_CHECK_ERR(st_store_init(path("store"), NULL), -EEXIST);
        ST_CHECK_ERR(st_store_open(path("store"), 0, &s, NULL), 0);
        write_image("a.img", 3 << 20, 1, true);
        write_image("b.img", 3 << 20, 1, true); /* identical content */
        write_image("c.img", 1 << 20, 2, false);
        st_import_result ra, rb;
        ST_CHECK_ERR(st_store_import(s, path("a.img"), "a", NULL, &ra, NULL), 0);
        ST_CHECK_ERR(st_store_import(s, path("b.img"), "b", NULL, &rb, NULL), 0);
        ST_CHECK(ra.n_new > 0 && rb.n_new == 0 && rb.new_stored == 0); /* inline dedup */
        ST_CHECK(ra.data_bytes < ra.size);                              /* holes not stored */
        ST_CHECK_ERR(st_store_import(s, path("a.img"), "a", NULL, NULL, NULL), -EEXIST);
        ST_CHECK_ERR(st_store_import(s, path("missing"), "m", NULL, NULL, NULL), -ENOENT);
        ST_CHECK_ERR(st_store_import(s, path("a.img"), "../evil", NULL, NULL, NULL), -EINVAL);
        ST_CHECK_ERR(st_store_import(s, path("c.img"), "c", NULL, NULL, NULL), 0);
        ST_CHECK_ERR(st_store_export(s, "a", path("a.out"), NULL, NULL), 0);
        ST_CHECK(same_file(path("a.img"), path("a.out")));
        struct stat st;
        ST_CHECK(stat(path("a.out"), &st) == 0 && (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size);
        ST_CHECK_ERR(st_store_export(s, "nope", path("x.out"), NULL, NULL), -ENOENT);

        /* every chunk of a is referenced twice (a and b), c's once */
        for (uint32_t id = 0; id < index_count(s->idx); id++)
                ST_CHECK(index_get(s->idx, id)->refs >= 1);
        ST_CHECK(fsck_errors(s) == 0);
        st_store_stats stats;
        ST_CHECK_ERR(st_store_stats_get(s, &stats), 0);
        ST_CHECK(stats.n_images == 3 && stats.n_unreferenced == 0);
        ST_CHECK(stats.referenced_bytes == 2 * ra.data_bytes + (1 << 20));

        /* rm a: nothing is freed (b shares everything); rm b: a's chunks go */
        ST_CHECK_ERR(st_store_remove(s, "a", NULL), 0);
        ST_CHECK_ERR(st_store_remove(s, "a", NULL), -ENOENT);
        st_gc_result g;
        ST_CHECK_ERR(st_store_gc(s, NULL, &g, NULL), 0);
        ST_CHECK(g.chunks_freed == 0);
        ST_CHECK_ERR(st_store_remove(s, "b", NULL), 0);
        ST_CHECK_ERR(st_store_gc(s, NULL, &g, NULL), 0);
        ST_CHECK(g.chunks_freed == ra.n_new && g.bytes_freed > 0);
        ST_CHECK(fsck_errors(s) == 0);
        ST_CHECK_ERR(st_store_export(s, "c", path("c.out"), NULL, NULL), 0);
        ST_CHECK(same_file(path("c.img"), path("c.out")));
        s = reopen(s);
        ST_CHECK(s && fsck_errors(s) == 0);
        ST_CHECK_ERR(st_store_export(s, "c", path("c.out"), NULL, NULL), 0);
        ST_CHECK(same_file(path("c.img"), path("c.out")));
        st_store_close(s);
}

static void test_recovery(void) {
        st_store *s = NULL;
        ST_CHECK_ERR(st_store_open(path("store"), 0, &s, NULL), 0);
        ST_CHECK_ERR(st_store_import(s, path("a.img"), "a2", NULL, NULL, NULL), 0);
        uint32_t n_before = index_count(s->idx);
        st_store_close(s);

        /* 1. the index is lost: rebuilt from the packs alone */
        ST_CHECK(unlink(path("store/index")) == 0);
        s = reopen(NULL);
        ST_CHECK(s && index_count(s->idx) == n_before && fsck_errors(s) == 0);
        ST_CHECK_ERR(st_store_export(s, "a2", path("a2.out"), NULL, NULL), 0);
        ST_CHECK(same_file(path("a.img"), path("a2.out")));

        /* 2. a crash left a torn record after the last one, and 'dirty' */
        store_pack *p = &s->packs[s->n_packs - 1];
        uint64_t len = p->len;
        char junk[100];
        memset(junk, 0x5a, sizeof junk);
        ST_CHECK(st_pwrite_full(p->fd, junk, sizeof junk, len) == 0);
        st_store_close(s);
        close(open(path("store/dirty"), O_CREAT | O_WRONLY, 0644));
        s = reopen(NULL);
        ST_CHECK(s && s->packs[s->n_packs - 1].len == len && fsck_errors(s) == 0);
        ST_CHECK(access(path("store/dirty"), F_OK) < 0);

        /* 2b. parallel record writes interrupted: a record whose header landed
         * but whose payload did not, then an intact record after it. Recovery
         * must stop at the damaged one and index neither. */
        s = reopen(s);
        p = &s->packs[s->n_packs - 1];
        len = p->len;
        {
                uint8_t payload[5000], hdr[PACK_RECORD_HEADER_LEN];
                st_test_fill(payload, sizeof payload, 77);
                pack_record rec = { .flags = 0, .raw_len = sizeof payload, .stored_len = sizeof payload };
                st_hash(payload, sizeof payload, &rec.hash);
                pack_record_encode(hdr, &rec);
                ST_CHECK(st_pwrite_full(p->fd, hdr, sizeof hdr, len) == 0); /* payload left as zeros */
                st_digest torn = rec.hash;
                payload[0] ^= 1;
                st_hash(payload, sizeof payload, &rec.hash);
                pack_record_encode(hdr, &rec);
                uint64_t at = len + PACK_RECORD_HEADER_LEN + sizeof payload;
                ST_CHECK(st_pwrite_full(p->fd, hdr, sizeof hdr, at) == 0);
                ST_CHECK(st_pwrite_full(p->fd, payload, sizeof payload, at + sizeof hdr) == 0);
                st_digest later = rec.hash;
                st_store_close(s);
                close(open(path("store/dirty"), O_CREAT | O_WRONLY, 0644));
                s = reopen(NULL);
                ST_CHECK(s && s->packs[s->n_packs - 1].len == len);
                ST_CHECK(s && index_find(s->idx, &torn) == INDEX_NONE);
                ST_CHECK(s && index_find(s->idx, &later) == INDEX_NONE);
                ST_CHECK(s && fsck_errors(s) == 0);
        }

        /* 3. the index is damaged: rebuilt, not trusted */
        st_store_close(s);
        int fd = open(path("store/index"), O_WRONLY);
        ST_CHECK(st_pwrite_full(fd, "XXXX", 4, 100) == 0);
        close(fd);
        s = reopen(NULL);
        ST_CHECK(s && fsck_errors(s) == 0);

        /* 4. a corrupt chunk is found by fsck and refused by export */
        p = &s->packs[0];
        uint8_t b;
        ST_CHECK(st_pread_full(p->fd, &b, 1, PACK_HEADER_LEN + PACK_RECORD_HEADER_LEN + 10) == 0);
        b ^= 0xff;
        ST_CHECK(st_pwrite_full(p->fd, &b, 1, PACK_HEADER_LEN + PACK_RECORD_HEADER_LEN + 10) == 0);
        ST_CHECK(fsck_errors(s) > 0);
        st_diag d = { 0 };
        int r1 = st_store_export(s, "a2", path("bad.out"), NULL, &d);
        int r2 = st_store_export(s, "c", path("bad.out"), NULL, &d);
        ST_CHECK(r1 == -EBADMSG || r2 == -EBADMSG);
        b ^= 0xff;
        ST_CHECK(st_pwrite_full(p->fd, &b, 1, PACK_HEADER_LEN + PACK_RECORD_HEADER_LEN + 10) == 0);
        ST_CHECK(fsck_errors(s) == 0);
        st_store_close(s);

        /* 5. unknown store format version */
        uint8_t *f;
        size_t fl;
        ST_CHECK_ERR(st_read_file(AT_FDCWD, path("store/format"), 4096, &f, &fl), 0);
        f[8] = 9;
        int dfd = open(path("store"), O_RDONLY | O_DIRECTORY);
        ST_CHECK_ERR(st_write_atomic(dfd, "format", f, fl), 0);
        ST_CHECK_ERR(st_store_open(path("store"), 0, &s, &d), -EPROTONOSUPPORT);
        ST_CHECK(strcmp(d.file, "format") == 0 && d.offset == 8);
        f[8] = 1;
        ST_CHECK_ERR(st_write_atomic(dfd, "format", f, fl), 0);
        close(dfd);
        free(f);
}

int main(void) {
        dir = st_test_tmpdir();
        if (!dir)
                return 1;
        test_roundtrip_and_refs();
        test_recovery();
        st_test_rmrf(dir);
        free(dir);
        return ST_TEST_RESULT();
}
