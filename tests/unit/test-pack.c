/* SPDX-License-Identifier: Apache-2.0 */
/* Pack headers and records round-trip; damage in a header, a record or a
 * payload is refused; walking a pack stops at a torn tail. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/hash.h>

#include "store/pack.h"
#include "test.h"
#include "util/fs.h"
#include "util/le.h"

static int count_cb(void *ctx, uint64_t off, const pack_record *r) {
        (void)off;
        (void)r;
        (*(int *)ctx)++;
        return 0;
}

int main(void) {
        uint8_t hdr[PACK_HEADER_LEN];
        uint32_t id = 0;
        st_diag d = { 0 };
        pack_header_encode(hdr, 0x1234);
        ST_CHECK_ERR(pack_header_decode(hdr, sizeof hdr, &id, &d), 0);
        ST_CHECK(id == 0x1234);
        ST_CHECK_ERR(pack_header_decode(hdr, 10, &id, &d), -EBADMSG);
        hdr[8] = 2;
        ST_CHECK_ERR(pack_header_decode(hdr, sizeof hdr, &id, &d), -EPROTONOSUPPORT);
        hdr[0] = 'X';
        ST_CHECK_ERR(pack_header_decode(hdr, sizeof hdr, &id, &d), -EBADMSG);

        /* a compressed record */
        uint8_t raw[20000];
        for (size_t i = 0; i < sizeof raw; i++)
                raw[i] = (uint8_t)(i % 13);
        uint8_t comp[ZSTD_COMPRESSBOUND(20000)];
        size_t cl = ZSTD_compress(comp, sizeof comp, raw, sizeof raw, 3);
        ST_CHECK(!ZSTD_isError(cl) && cl < sizeof raw);
        pack_record r = { .flags = PACK_FLAG_ZSTD, .raw_len = sizeof raw, .stored_len = (uint32_t)cl };
        st_hash(raw, sizeof raw, &r.hash);
        uint8_t rh[PACK_RECORD_HEADER_LEN];
        pack_record_encode(rh, &r);
        pack_record back;
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), 0);
        ST_CHECK(memcmp(&back, &r, sizeof r) == 0);
        uint8_t out[20000];
        ST_CHECK_ERR(pack_payload_decode(&back, comp, out, NULL), 0);
        ST_CHECK(memcmp(out, raw, sizeof raw) == 0);
        comp[cl / 2] ^= 1; /* corrupt payload */
        ST_CHECK_ERR(pack_payload_decode(&back, comp, out, NULL), -EBADMSG);
        comp[cl / 2] ^= 1;
        for (size_t i = 0; i < sizeof rh; i++) { /* any flip in the header */
                rh[i] ^= 4;
                ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), -EBADMSG);
                rh[i] ^= 4;
        }
        /* raw record whose bytes do not match the hash */
        pack_record rr = { .flags = 0, .raw_len = 100, .stored_len = 100 };
        st_hash(raw, 100, &rr.hash);
        uint8_t other[100];
        memcpy(other, raw, 100);
        other[50]++;
        ST_CHECK_ERR(pack_payload_decode(&rr, other, out, NULL), -EBADMSG);

        /* walk: three records, then a torn fourth */
        char *dir = st_test_tmpdir();
        char path[600];
        snprintf(path, sizeof path, "%s/p.pack", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        pack_header_encode(hdr, 1);
        uint64_t off = 0;
        ST_CHECK_ERR(st_pwrite_full(fd, hdr, sizeof hdr, off), 0);
        off += sizeof hdr;
        for (int i = 0; i < 3; i++) {
                pack_record_encode(rh, &r);
                ST_CHECK_ERR(st_pwrite_full(fd, rh, sizeof rh, off), 0);
                ST_CHECK_ERR(st_pwrite_full(fd, comp, cl, off + sizeof rh), 0);
                off += sizeof rh + cl;
        }
        uint64_t good = off;
        ST_CHECK_ERR(st_pwrite_full(fd, rh, 30, off), 0); /* torn header */
        off += 30;
        int n = 0;
        uint64_t end = 0;
        ST_CHECK_ERR(pack_walk(fd, PACK_HEADER_LEN, off, count_cb, &n, &end, &d), 0);
        ST_CHECK(n == 3 && end == good);
        /* a record whose payload is cut short */
        n = 0;
        ST_CHECK_ERR(pack_walk(fd, PACK_HEADER_LEN, good - 10, count_cb, &n, &end, &d), 0);
        ST_CHECK(n == 2 && end == good - (sizeof rh + cl));
        close(fd);
        uint32_t pid;
        ST_CHECK(pack_name_parse("0000abcd.pack", &pid) && pid == 0xabcd);
        ST_CHECK(!pack_name_parse("0000abcd.pac", &pid) && !pack_name_parse("../x.pack", &pid));
        st_test_rmrf(dir);
        free(dir);
        return ST_TEST_RESULT();
}
