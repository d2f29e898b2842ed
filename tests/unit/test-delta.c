/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A flush writes its journal records, then syncs the data and the journal at
 * once: a crash can leave the last flush's commit record durable and some of
 * its data not. Made here by hand (the data of the last flush's slots undone
 * or cut off the file): the delta opens, each block of that flush reads what
 * the flush before gave it or its new data, never an error; the same damage
 * in an earlier flush, whose data was promised, is reported.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"
#include "util/fs.h"
#include "volume/delta.h"

#define TAG 77
#define BLOCKS 64

static uint8_t blk[DELTA_BLOCK];

static const uint8_t *data_of(uint64_t block, int version) {
        st_test_fill(blk, sizeof blk, block * 1000 + (uint64_t)version);
        return blk;
}

static void write_block(delta *d, uint64_t block, int version) {
        ST_CHECK_ERR(delta_write(d, block, 1, data_of(block, version)), 0);
}

/* block reads version's data (0: not in the delta) */
static void expect(const delta *d, uint64_t block, int version) {
        uint64_t slot;
        int k = delta_lookup(d, block, &slot);
        if (version == 0) {
                ST_CHECK(k == 0);
                return;
        }
        ST_CHECK(k == 1);
        if (k != 1)
                return;
        uint8_t got[DELTA_BLOCK];
        ST_CHECK_ERR(delta_read_slot(d, block, slot, got), 0);
        ST_CHECK(memcmp(got, data_of(block, version), DELTA_BLOCK) == 0);
}

static uint64_t slot_of(const delta *d, uint64_t block) {
        uint64_t slot = UINT64_MAX;
        ST_CHECK(delta_lookup(d, block, &slot) == 1);
        return slot;
}

static int open_delta(int dirfd, bool rdonly, delta *d, st_diag *why) {
        *why = (st_diag){ 0 };
        return delta_open(dirfd, "v", TAG, BLOCKS, rdonly, d, why);
}

int main(void) {
        char *dir = st_test_tmpdir();
        ST_CHECK(dir != NULL);
        int dirfd = open(dir, O_RDONLY | O_DIRECTORY);
        delta d;
        st_diag why;
        ST_CHECK_ERR(open_delta(dirfd, false, &d, &why), 0);
        /* flush 1: blocks 1, 2, 3; flush 2: 1 and 2 again, 4 new */
        write_block(&d, 1, 1);
        write_block(&d, 2, 1);
        write_block(&d, 3, 1);
        ST_CHECK_ERR(delta_flush(&d), 0);
        ST_CHECK(d.version == 3);
        write_block(&d, 1, 2);
        write_block(&d, 2, 2);
        write_block(&d, 4, 2);
        ST_CHECK_ERR(delta_flush(&d), 0);
        uint64_t s1 = slot_of(&d, 1), s4 = slot_of(&d, 4);
        delta_close(&d);

        /* The crash: block 1's new data never landed (its slot still holds
         * zeros), and the data file lost its last slot (block 4's). */
        int fd = openat(dirfd, "v.data", O_RDWR);
        ST_CHECK(fd >= 0);
        uint8_t zero[DELTA_BLOCK] = { 0 };
        ST_CHECK(pwrite(fd, zero, sizeof zero, (off_t)(s1 * DELTA_BLOCK)) == (ssize_t)sizeof zero);
        struct stat st;
        ST_CHECK(fstat(fd, &st) == 0);
        ST_CHECK((uint64_t)st.st_size == (s4 + 1) * DELTA_BLOCK);
        ST_CHECK(ftruncate(fd, (off_t)(s4 * DELTA_BLOCK)) == 0);
        close(fd);

        /* read-only first: nothing changes on disk */
        ST_CHECK_ERR(open_delta(dirfd, true, &d, &why), 0);
        expect(&d, 1, 1);
        expect(&d, 2, 2);
        expect(&d, 3, 1);
        expect(&d, 4, 0);
        ST_CHECK(d.torn_len > 0);
        delta_close(&d);
        ST_CHECK_ERR(open_delta(dirfd, false, &d, &why), 0);
        expect(&d, 1, 1);
        expect(&d, 2, 2);
        expect(&d, 3, 1);
        expect(&d, 4, 0);
        uint64_t bad_block, bad_slot;
        ST_CHECK_ERR(delta_verify(&d, &bad_block, &bad_slot), 0);
        /* and it goes on: a third flush, then a clean reopen */
        write_block(&d, 1, 3);
        write_block(&d, 5, 3);
        ST_CHECK_ERR(delta_flush(&d), 0);
        uint64_t s3 = slot_of(&d, 3);
        delta_close(&d);
        ST_CHECK_ERR(open_delta(dirfd, false, &d, &why), 0);
        ST_CHECK(d.torn_len == 0);
        expect(&d, 1, 3);
        expect(&d, 2, 2);
        expect(&d, 3, 1);
        expect(&d, 4, 0);
        expect(&d, 5, 3);
        /* one more flush, so that the third is complete and trusted */
        write_block(&d, 6, 4);
        ST_CHECK_ERR(delta_flush(&d), 0);
        delta_close(&d);
        /* A writable open of a whole journal rewrites nothing: the last
         * flush's records are checked, not cut and written again (a crash
         * in between would lose flushed writes). */
        uint8_t *before = NULL, *after = NULL;
        size_t before_len = 0, after_len = 0;
        ST_CHECK_ERR(st_read_file(dirfd, "v.map", 1u << 20, &before, &before_len), 0);
        ST_CHECK_ERR(open_delta(dirfd, false, &d, &why), 0);
        ST_CHECK(d.torn_len == 0 && d.map_len == before_len);
        delta_close(&d);
        ST_CHECK_ERR(st_read_file(dirfd, "v.map", 1u << 20, &after, &after_len), 0);
        ST_CHECK(before && after && before_len == after_len && memcmp(before, after, after_len) == 0);
        free(before);
        free(after);

        /* Damage where a complete flush promised the data (block 3, flush 1)
         * is no torn flush: the read fails and verify names the block. */
        fd = openat(dirfd, "v.data", O_RDWR);
        ST_CHECK(pwrite(fd, zero, sizeof zero, (off_t)(s3 * DELTA_BLOCK)) == (ssize_t)sizeof zero);
        close(fd);
        ST_CHECK_ERR(open_delta(dirfd, true, &d, &why), 0);
        uint8_t got[DELTA_BLOCK];
        ST_CHECK_ERR(delta_read_slot(&d, 3, s3, got), -EBADMSG);
        ST_CHECK_ERR(delta_verify(&d, &bad_block, &bad_slot), -EBADMSG);
        ST_CHECK(bad_block == 3 && bad_slot == s3);
        expect(&d, 1, 3);
        expect(&d, 6, 4);
        delta_close(&d);
        /* and a data file cut short under trusted records is damage at open */
        fd = openat(dirfd, "v.data", O_RDWR);
        ST_CHECK(ftruncate(fd, 0) == 0);
        close(fd);
        ST_CHECK_ERR(open_delta(dirfd, true, &d, &why), -EBADMSG);
        ST_CHECK(why.what && strstr(why.what, "slot past the end") != NULL);

        close(dirfd);
        st_test_rmrf(dir);
        free(dir);
        return ST_TEST_RESULT();
}
