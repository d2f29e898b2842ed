/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Model-based test of volumes: long random sequences of write, write-zeroes,
 * discard, flush, read, commit, snapshot, clone, reopen of store and volumes,
 * and export, checked against plain in-memory byte arrays. At the end every
 * volume and snapshot must equal its model, and fsck must be clean (so
 * reference counts stayed exact). Seed and op count: argv or
 * ST_TEST_SEED / ST_TEST_OPS; printed. Also the delta journal (version 2)
 * directly: damage in an early flush, a flipped bit in the last flush, a torn
 * last flush (cut short, or zero from a sector boundary), a short or missing
 * data file, a flipped byte in the data file (test_delta_journal).
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
#include "volume/delta.h"

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

/* The delta journal through delta_write/delta_flush, then damaged on disk. */
#define DTAG 0x5eed0000beefull
#define DBLOCKS 64u

static void delta_block(uint8_t *buf, uint64_t block) {
        memset(buf, (int)(0x30 + block), DELTA_BLOCK);
        memcpy(buf, &block, sizeof block);
}

static void put_file(int dfd, const char *name, const uint8_t *p, size_t len) {
        int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        ST_CHECK(fd >= 0 && (len == 0 || st_pwrite_full(fd, p, len, 0) == 0));
        if (fd >= 0)
                close(fd);
}

static off_t file_size(int dfd, const char *name) {
        struct stat st;
        return fstatat(dfd, name, &st, 0) < 0 ? -1 : st.st_size;
}

/* Both opens fail with -EBADMSG naming offset off (UINT64_MAX: any) of
 * deltas/v.map, and leave the journal as it was. */
static void delta_damaged(int dfd, uint64_t off, const char *what) {
        off_t before = file_size(dfd, "v.map");
        for (int rdonly = 1; rdonly >= 0; rdonly--) {
                delta d;
                st_diag dg = { .offset = 7 };
                int r = delta_open(dfd, "v", DTAG, DBLOCKS, rdonly, &d, &dg);
                if (r == 0)
                        delta_close(&d);
                if (r != -EBADMSG || strcmp(dg.file, "deltas/v.map") != 0 ||
                    (off != UINT64_MAX && dg.offset != off) || !dg.what) {
                        fprintf(stderr, "%s (rdonly %d): r=%d, %s at %llu: %s\n", what, rdonly, r,
                                dg.file, (unsigned long long)dg.offset, dg.what ? dg.what : "-");
                        st_test_failures++;
                }
        }
        ST_CHECK(file_size(dfd, "v.map") == before); /* damage is never cut */
}

/* Blocks 0..4 as the first two flushes left them: 0, 2, 3, 4 data, 1 zeros
 * (the data read from the slot in NAME.data that delta_lookup names); and of
 * the third flush's writes (blocks 7 and 8), the first 'kept' ones: a write
 * record that landed whole, with its data, is kept even though the flush
 * that would have committed it did not finish. */
static void delta_first_flushes(int dfd, bool rdonly, unsigned kept) {
        int data_fd = openat(dfd, "v.data", O_RDONLY | O_CLOEXEC);
        ST_CHECK(data_fd >= 0);
        delta d;
        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, rdonly, &d, NULL), 0);
        ST_CHECK(d.version == 3);
        uint8_t buf[DELTA_BLOCK], want[DELTA_BLOCK];
        for (uint64_t b = 0; b < 10; b++) {
                uint64_t slot = 0;
                int k = delta_lookup(&d, b, &slot);
                if (b == 1) {
                        ST_CHECK(k == 2);
                } else if (b <= 4 || (b >= 7 && b < 7 + kept)) {
                        ST_CHECK(k == 1);
                        delta_block(want, b);
                        ST_CHECK(k == 1 && slot < d.n_slots &&
                                 st_pread_full(data_fd, buf, DELTA_BLOCK, slot * DELTA_BLOCK) == 0 &&
                                 memcmp(buf, want, DELTA_BLOCK) == 0);
                } else {
                        ST_CHECK(k == 0); /* (7 and 8 were the torn flush's) */
                }
        }
        delta_close(&d);
        if (data_fd >= 0)
                close(data_fd);
}

/* A byte of block 4's slot in the data file flipped: reading block 4 fails
 * its data sum, the others read, and delta_verify names block 4 and its
 * slot. data is the data file as written. */
static void delta_data_flip(int dfd, uint8_t *data, size_t data_len) {
        delta d;
        uint64_t slot = UINT64_MAX;
        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, true, &d, NULL), 0);
        ST_CHECK(delta_lookup(&d, 4, &slot) == 1 && slot < data_len / DELTA_BLOCK);
        delta_close(&d);
        if (slot >= data_len / DELTA_BLOCK)
                return;
        data[slot * DELTA_BLOCK + 100] ^= 0x20;
        put_file(dfd, "v.data", data, data_len);
        for (int rdonly = 1; rdonly >= 0; rdonly--) {
                ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, rdonly, &d, NULL), 0);
                uint8_t buf[DELTA_BLOCK], want[DELTA_BLOCK];
                ST_CHECK_ERR(delta_read_slot(&d, 4, slot, buf), -EBADMSG);
                uint64_t s0 = UINT64_MAX;
                ST_CHECK(delta_lookup(&d, 0, &s0) == 1);
                delta_block(want, 0);
                ST_CHECK(delta_read_slot(&d, 0, s0, buf) == 0 && memcmp(buf, want, DELTA_BLOCK) == 0);
                uint64_t bad_block = 0, bad_slot = 0;
                ST_CHECK_ERR(delta_verify(&d, &bad_block, &bad_slot), -EBADMSG);
                ST_CHECK(bad_block == 4 && bad_slot == slot);
                delta_close(&d);
        }
        data[slot * DELTA_BLOCK + 100] ^= 0x20;
        put_file(dfd, "v.data", data, data_len);
}

/* A journal whose last flush an append crash cut at a sector boundary
 * inside one of its data records: the sectors from there on did not land
 * (zeros, the file's length kept). A torn tail: the open keeps the first
 * flush, and a read-write open cuts the rest. */
static void delta_torn_at_sector(int dfd) {
        (void)unlinkat(dfd, "v.map", 0);
        (void)unlinkat(dfd, "v.data", 0);
        delta d;
        uint8_t buf[DELTA_BLOCK];
        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, false, &d, NULL), 0);
        for (uint64_t b = 0; b < 24; b++) {
                delta_block(buf, b);
                ST_CHECK_ERR(delta_write(&d, b, 1, buf), 0);
                if (b == 9) {
                        ST_CHECK_ERR(delta_flush(&d), 0);
                }
        }
        uint64_t first = d.map_len;
        ST_CHECK_ERR(delta_flush(&d), 0);
        delta_close(&d);
        uint8_t *map = NULL;
        size_t len = 0;
        ST_CHECK_ERR(st_read_file(dfd, "v.map", 1u << 20, &map, &len), 0);
        if (!map)
                return;
        /* 10 records and a commit in the first flush, 15 in the last */
        uint64_t R = (len - first) / 15, H = first - 11 * R;
        ST_CHECK(R >= 32 && H >= 32 && len - first == 15 * R);
        /* the first sector boundary inside a record of the last flush that
         * the landed sector ends with a nonzero byte (the record's data sum) */
        size_t at = 0;
        for (size_t b = (first / 512 + 1) * 512; !at && b + R < len; b += 512)
                if ((b - H) % R != 0 && map[b - 1] != 0)
                        at = b;
        ST_CHECK(at != 0);
        if (at) {
                memset(map + at, 0, len - at);
                put_file(dfd, "v.map", map, len);
                for (int rdonly = 1; rdonly >= 0; rdonly--) {
                        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, rdonly, &d, NULL), 0);
                        /* (the first flush's commit record trusts only the
                         * header: its records were checked, all held their
                         * data) */
                        ST_CHECK(d.count == 10 && d.map_len == first &&
                                 d.torn_len == len - first);
                        uint64_t slot = 0;
                        ST_CHECK(delta_lookup(&d, 9, &slot) == 1 && delta_lookup(&d, 10, &slot) == 0);
                        delta_close(&d);
                        ST_CHECK(file_size(dfd, "v.map") == (off_t)(rdonly ? len : first));
                }
        }
        free(map);
}

static void test_delta_journal(void) {
        char path[700];
        snprintf(path, sizeof path, "%s/deltas", dir);
        ST_CHECK(mkdir(path, 0755) == 0);
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ST_CHECK(dfd >= 0);
        if (dfd < 0)
                return;
        /* Three flushes: 0..3 written; 4 written, 1 zeroed; 7 and 8 written. */
        delta d;
        uint64_t end[3];
        uint8_t buf[4 * DELTA_BLOCK];
        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, false, &d, NULL), 0);
        for (uint64_t b = 0; b < 4; b++)
                delta_block(buf + b * DELTA_BLOCK, b);
        ST_CHECK_ERR(delta_write(&d, 0, 4, buf), 0);
        ST_CHECK_ERR(delta_flush(&d), 0);
        end[0] = d.map_len;
        delta_block(buf, 4);
        ST_CHECK_ERR(delta_write(&d, 4, 1, buf), 0);
        ST_CHECK_ERR(delta_zero(&d, 1, 1), 0);
        ST_CHECK_ERR(delta_flush(&d), 0);
        end[1] = d.map_len;
        delta_block(buf, 7);
        delta_block(buf + DELTA_BLOCK, 8);
        ST_CHECK_ERR(delta_write(&d, 7, 2, buf), 0);
        ST_CHECK_ERR(delta_flush(&d), 0);
        end[2] = d.map_len;
        delta_close(&d);
        /* Records and a commit record per flush: 5, 3 and 3 records of R
         * bytes after a header of H (its length field). */
        uint64_t R = (end[2] - end[1]) / 3, H = end[0] - 5 * R;
        ST_CHECK(R >= 32 && end[1] - end[0] == 3 * R && end[2] - end[1] == 3 * R);
        uint8_t *map = NULL, *data = NULL;
        size_t map_len = 0, data_len = 0;
        ST_CHECK_ERR(st_read_file(dfd, "v.map", 1u << 20, &map, &map_len), 0);
        ST_CHECK_ERR(st_read_file(dfd, "v.data", 1u << 20, &data, &data_len), 0);
        /* slots 0..4, then block 7 in slot 1 (freed by the zero), block 8 in 5 */
        ST_CHECK(map_len == end[2] && data_len == 6 * DELTA_BLOCK);
        if (!map || !data || map_len != end[2] || data_len != 6 * DELTA_BLOCK)
                goto out;
        ST_CHECK(H >= 32 && map[12] == H && map[8] == 3);

        /* One byte of a record of the first flush (block 1's slot): damage,
         * named at that record, as the two flushes after it are whole. */
        map[H + R + 8] ^= 0x01;
        put_file(dfd, "v.map", map, map_len);
        delta_damaged(dfd, H + R, "a record of the first flush");
        map[H + R + 8] ^= 0x01;
        /* ... and the first flush's commit record */
        map[end[0] - 1] ^= 0x80;
        put_file(dfd, "v.map", map, map_len);
        delta_damaged(dfd, end[0] - R, "the first flush's commit record");
        map[end[0] - 1] ^= 0x80;
        /* A flipped bit in the last flush's last record (its commit record)
         * or in its last write record: no whole flush follows, but a torn
         * append leaves zeros or the end of the file after what landed, not
         * a whole bad record followed by more bytes: damage. */
        map[end[2] - 1] ^= 0x04;
        put_file(dfd, "v.map", map, map_len);
        delta_damaged(dfd, end[2] - R, "a flipped bit in the last record");
        map[end[2] - 1] ^= 0x04;
        map[end[2] - 2 * R + 9] ^= 0x10;
        put_file(dfd, "v.map", map, map_len);
        delta_damaged(dfd, end[2] - 2 * R, "a flipped bit in the last flush's last write");
        map[end[2] - 2 * R + 9] ^= 0x10;

        /* The last flush torn mid-way (one record and a half): the first two
         * flushes are kept, and block 7, whose record and data landed; a
         * read-write open cuts the half record and commits block 7's again
         * (one record and a commit record after the second flush). The
         * second flush's commit record trusts the journal only up to where
         * that flush began (end[0]): its records were checked against their
         * data, and as all of them held it, the cut is at its end. */
        put_file(dfd, "v.map", map, end[1] + R + R / 2);
        delta_first_flushes(dfd, true, 1);
        ST_CHECK(file_size(dfd, "v.map") == (off_t)(end[1] + R + R / 2));
        delta_first_flushes(dfd, false, 1);
        ST_CHECK(file_size(dfd, "v.map") == (off_t)(end[1] + 2 * R));
        delta_first_flushes(dfd, true, 1);
        /* the last flush without its commit record: both its writes kept */
        put_file(dfd, "v.map", map, end[2] - R);
        delta_first_flushes(dfd, false, 2);
        ST_CHECK(file_size(dfd, "v.map") == (off_t)end[2]);
        /* ... but not a write whose data never landed (block 8's slot holds
         * something else): block 7 only */
        put_file(dfd, "v.map", map, end[2] - R);
        {
                uint8_t *d2 = malloc(data_len);
                ST_CHECK(d2 != NULL);
                if (d2) {
                        memcpy(d2, data, data_len);
                        memset(d2 + 5 * DELTA_BLOCK, 0, DELTA_BLOCK);
                        put_file(dfd, "v.data", d2, data_len);
                        delta_first_flushes(dfd, false, 1);
                        ST_CHECK(file_size(dfd, "v.map") == (off_t)(end[1] + 2 * R));
                        put_file(dfd, "v.data", data, data_len);
                        free(d2);
                }
        }

        /* The data file lost its last slot (block 8's, written by the last
         * flush, whose commit record is durable): what a crash between the
         * two files' syncs leaves, not damage. Block 8 is not there; the
         * others are. */
        put_file(dfd, "v.map", map, map_len);
        put_file(dfd, "v.data", data, data_len - DELTA_BLOCK);
        delta_first_flushes(dfd, true, 1);
        /* ... but one slot more (block 4's, of the second flush, which the
         * last one's commit record trusts): damage */
        put_file(dfd, "v.data", data, data_len - 2 * DELTA_BLOCK);
        delta_damaged(dfd, end[0], "the data file short by a trusted slot");
        put_file(dfd, "v.data", data, data_len);
        int r = delta_open(dfd, "v", DTAG, DBLOCKS, true, &d, NULL);
        ST_CHECK_ERR(r, 0);
        if (r == 0) {
                ST_CHECK(d.count == 7 && d.map_len == end[2] && d.torn_len == 0);
                uint64_t bad_block = 0, bad_slot = 0;
                ST_CHECK_ERR(delta_verify(&d, &bad_block, &bad_slot), 0);
                delta_close(&d);
        }
        delta_data_flip(dfd, data, data_len);

        /* No data file: the first record names slot 0. */
        ST_CHECK(unlinkat(dfd, "v.data", 0) == 0);
        delta_damaged(dfd, H, "no data file");
        /* ... but a journal naming no slots opens without one */
        ST_CHECK(unlinkat(dfd, "v.map", 0) == 0 && unlinkat(dfd, "v.data", 0) == 0);
        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, false, &d, NULL), 0);
        ST_CHECK_ERR(delta_zero(&d, 3, 2), 0);
        ST_CHECK_ERR(delta_flush(&d), 0);
        delta_close(&d);
        ST_CHECK(unlinkat(dfd, "v.data", 0) == 0);
        ST_CHECK_ERR(delta_open(dfd, "v", DTAG, DBLOCKS, true, &d, NULL), 0);
        uint64_t slot;
        ST_CHECK(d.count == 2 && delta_lookup(&d, 3, &slot) == 2 && delta_lookup(&d, 4, &slot) == 2);
        delta_close(&d);

        delta_torn_at_sector(dfd);
out:
        free(map);
        free(data);
        (void)unlinkat(dfd, "v.map", 0);
        (void)unlinkat(dfd, "v.data", 0);
        close(dfd);
        (void)rmdir(path);
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

        test_delta_journal();
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
