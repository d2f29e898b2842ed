/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Drives a volume for the crash tests, and checks it afterwards.
 *
 *   volume-writer write STORE VOLUME SEED N [commit|snapshot]
 *       N deterministic writes (aligned and unaligned, some write-zeroes),
 *       a flush every 8; prints "F i" once ops 0..i are flushed. Then
 *       optionally commits, or snapshots to VOLUME-snap, printing "C".
 *   volume-writer verify STORE VOLUME SEED N LAST BASE
 *       Rebuilds the expected content from BASE (a raw image) and ops
 *       0..LAST (acknowledged by a flush); every 4 KiB block of the volume
 *       must hold that, or a version a later (unacknowledged) op wrote.
 *       Exit 0 if so, 1 with the first bad block otherwise.
 *   volume-writer hold STORE VOLUME
 *       Opens the store SHARED (as the daemon does) and VOLUME for writing,
 *       prints "held", and keeps it until stdin closes. Exit 1 with the
 *       error (EBUSY: another process has the volume) if it cannot.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stellar/hash.h>
#include <stellar/store.h>
#include <stellar/volume.h>

#include "test.h"
#include "util/cleanup.h"
#include "util/fs.h"

#define BLK 4096u

typedef struct wop {
        uint64_t off;
        size_t len;
        bool zero;
        uint64_t seed;
} wop;

static wop gen(uint64_t seed, long i, uint64_t size) {
        uint64_t r = seed * 1000003u + (uint64_t)i * 7919u + 1;
        uint64_t a = st_test_rand(&r), b = st_test_rand(&r), c = st_test_rand(&r);
        wop o = { .seed = c };
        if (a % 3 == 0) { /* aligned run of blocks */
                o.off = (b % (size / BLK)) * BLK;
                o.len = (1 + c % 16) * BLK;
        } else { /* unaligned */
                o.off = b % size;
                o.len = 1 + c % 20000;
        }
        if (o.off + o.len > size)
                o.len = (size_t)(size - o.off);
        o.zero = a % 11 == 0;
        return o;
}

static void apply(uint8_t *img, const wop *o) {
        if (o->zero)
                memset(img + o->off, 0, o->len);
        else
                st_test_fill(img + o->off, o->len, o->seed);
}

static int do_write(st_store *s, const char *vol, uint64_t seed, long n, const char *then) {
        st_volume *v;
        int r = st_volume_open(s, vol, 0, &v, NULL);
        if (r < 0)
                return r;
        uint64_t size = st_volume_size(v);
        uint8_t *buf = malloc(64 * BLK);
        for (long i = 0; i < n && r == 0; i++) {
                wop o = gen(seed, i, size);
                if (o.zero)
                        r = st_volume_write_zeroes(v, o.off, o.len, 0);
                else {
                        st_test_fill(buf, o.len, o.seed);
                        r = st_volume_write(v, buf, o.len, o.off, 0);
                }
                if (r < 0)
                        fprintf(stderr, "op %ld (%s %zu at %llu) failed\n", i,
                                o.zero ? "zero" : "write", o.len, (unsigned long long)o.off);
                if (r == 0 && (i % 8 == 7 || i == n - 1)) {
                        r = st_volume_flush(v);
                        if (r == 0) {
                                printf("F %ld\n", i);
                                fflush(stdout);
                        }
                }
        }
        free(buf);
        if (r == 0 && then && strcmp(then, "commit") == 0)
                r = st_volume_commit(v, NULL);
        st_volume_close(v);
        if (r == 0 && then && strcmp(then, "snapshot") == 0) {
                char snap[300];
                snprintf(snap, sizeof snap, "%s-snap", vol);
                r = st_volume_snapshot(s, vol, snap);
        }
        if (r == 0 && then) {
                printf("C\n");
                fflush(stdout);
        }
        return r;
}

static int do_verify(st_store *s, const char *vol, uint64_t seed, long n, long last,
                     const char *base) {
        st_volume *v;
        int r = st_volume_open(s, vol, ST_VOLUME_RDONLY, &v, NULL);
        if (r < 0)
                return r;
        uint64_t size = st_volume_size(v);
        uint8_t *img;
        size_t len;
        r = st_read_file(AT_FDCWD, base, size, &img, &len);
        if (r < 0 || len != size) {
                fprintf(stderr, "cannot read base image %s\n", base);
                return -EINVAL;
        }
        for (long i = 0; i <= last && i < n; i++) {
                wop o = gen(seed, i, size);
                apply(img, &o);
        }
        size_t nb = (size_t)((size + BLK - 1) / BLK);
        /* Candidates per block: the acknowledged version, then each later one. */
        st_digest **cand = calloc(nb, sizeof *cand);
        size_t *n_cand = calloc(nb, sizeof *n_cand);
        for (size_t b = 0; b < nb; b++) {
                size_t l = (size_t)ST_MIN((uint64_t)BLK, size - b * BLK);
                cand[b] = malloc(sizeof(st_digest));
                st_hash(img + b * BLK, l, &cand[b][0]);
                n_cand[b] = 1;
        }
        for (long i = last + 1; i < n; i++) {
                wop o = gen(seed, i, size);
                apply(img, &o);
                for (uint64_t b = o.off / BLK; b * BLK < o.off + o.len; b++) {
                        size_t l = (size_t)ST_MIN((uint64_t)BLK, size - b * BLK);
                        cand[b] = realloc(cand[b], (n_cand[b] + 1) * sizeof(st_digest));
                        st_hash(img + b * BLK, l, &cand[b][n_cand[b]++]);
                }
        }
        uint8_t blk[BLK];
        int bad = 0;
        for (size_t b = 0; b < nb && !bad; b++) {
                size_t l = (size_t)ST_MIN((uint64_t)BLK, size - b * BLK);
                r = st_volume_read(v, blk, l, b * BLK);
                if (r < 0) {
                        fprintf(stderr, "read of block %zu failed: %s\n", b, strerror(-r));
                        bad = 1;
                        break;
                }
                st_digest h;
                st_hash(blk, l, &h);
                bool ok = false;
                for (size_t k = 0; k < n_cand[b] && !ok; k++)
                        ok = memcmp(&h, &cand[b][k], sizeof h) == 0;
                if (!ok) {
                        fprintf(stderr, "block %zu (offset %zu) holds no version written up to op %ld\n",
                                b, b * BLK, n - 1);
                        bad = 1;
                }
        }
        for (size_t b = 0; b < nb; b++)
                free(cand[b]);
        free(cand);
        free(n_cand);
        free(img);
        st_volume_close(v);
        return bad ? 1 : 0;
}

static int do_hold(const char *store, const char *vol) {
        st_store *s;
        st_diag d = { 0 };
        int r = st_store_open(store, ST_STORE_SHARED | ST_STORE_NOWAIT, &s, &d);
        if (r < 0) {
                fprintf(stderr, "open %s: %s: %s\n", store, d.what ? d.what : "", strerror(-r));
                return 1;
        }
        st_volume *v;
        d = (st_diag){ 0 };
        r = st_volume_open(s, vol, 0, &v, &d);
        if (r < 0) {
                fprintf(stderr, "hold %s: %s: %s (%s)\n", vol, d.file, d.what ? d.what : "",
                        strerror(-r));
                st_store_close(s);
                return 1;
        }
        printf("held\n");
        fflush(stdout);
        char c;
        while (read(0, &c, 1) > 0) {
        }
        st_volume_close(v);
        st_store_close(s);
        return 0;
}

int main(int argc, char **argv) {
        if (argc == 4 && strcmp(argv[1], "hold") == 0)
                return do_hold(argv[2], argv[3]);
        if (argc < 6) {
                fprintf(stderr, "usage: see the comment at the top of volume-writer.c\n");
                return 2;
        }
        bool verify = strcmp(argv[1], "verify") == 0;
        st_store *s;
        st_diag d = { 0 };
        int r = st_store_open(argv[2], verify ? ST_STORE_RDONLY : 0, &s, &d);
        if (r < 0) {
                fprintf(stderr, "open %s: %s: %s\n", argv[2], d.what ? d.what : "", strerror(-r));
                return 1;
        }
        uint64_t seed = strtoull(argv[4], NULL, 0);
        long n = atol(argv[5]);
        if (verify && argc >= 8)
                r = do_verify(s, argv[3], seed, n, atol(argv[6]), argv[7]);
        else if (!verify)
                r = do_write(s, argv[3], seed, n, argc > 6 ? argv[6] : NULL);
        else
                r = -EINVAL;
        st_store_close(s);
        if (r < 0)
                fprintf(stderr, "%s: %s\n", argv[1], strerror(-r));
        return r == 0 ? 0 : 1;
}
