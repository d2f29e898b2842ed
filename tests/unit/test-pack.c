/* SPDX-License-Identifier: Apache-2.0 */
/* Pack headers and records round-trip; damage in a header, a record or a
 * payload is refused; walking a pack stops at a torn tail. Frames (several
 * chunks in one zstd frame) build, parse and decode, and refuse damage to
 * their table, their lengths or their chunks' bytes. */
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

/* Compressible text that differs from chunk to chunk. */
static void frame_text(uint8_t *p, size_t len, unsigned seed) {
        static const char words[] = "stellarium frames hold neighbouring chunks ";
        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t)words[(i + seed) % (sizeof words - 1)];
                p[i] = (uint8_t)(c ^ (uint8_t)(i / 1021 + seed));
        }
}

#define N_FRAME 4
static const uint32_t frame_lens[N_FRAME] = { 3000, 5000, 1234, 8000 };
#define FRAME_RAW (3000u + 5000u + 1234u + 8000u)

/* The N_FRAME chunks' text end to end at p (FRAME_RAW bytes), chunk k made
 * with seed + k. */
static void frame_texts(uint8_t *p, unsigned seed) {
        size_t at = 0;
        for (uint32_t k = 0; k < N_FRAME; k++) {
                frame_text(p + at, frame_lens[k], seed + k);
                at += frame_lens[k];
        }
}

/* A frame of the N_FRAME chunks of text at base (end to end), built into out
 * (pack_frame_bound bytes) from chunks each in a buffer of its own. Returns
 * the payload length. */
static size_t frame_make(ZSTD_CCtx *cctx, const uint8_t *base, uint8_t *out, pack_record *ret) {
        uint8_t *own[N_FRAME];
        pack_frame_src src[N_FRAME];
        size_t at = 0;
        for (uint32_t k = 0; k < N_FRAME; k++) {
                own[k] = malloc(frame_lens[k]);
                memcpy(own[k], base + at, frame_lens[k]);
                src[k] = (pack_frame_src){ .data = own[k], .len = frame_lens[k] };
                st_hash(own[k], frame_lens[k], &src[k].hash);
                at += frame_lens[k];
        }
        uint8_t *gather = malloc(FRAME_RAW);
        int64_t n = pack_frame_build(cctx, 3, src, N_FRAME, gather, out, ret);
        ST_CHECK(n > 0);
        for (uint32_t k = 0; k < N_FRAME; k++)
                free(own[k]);
        free(gather);
        return n > 0 ? (size_t)n : 0;
}

/* The table's hash into r, as a writer would have made it (so that a test
 * reaches the check behind it). */
static void frame_rehash(pack_record *r, const uint8_t *payload, uint32_t n) {
        st_hash(payload, pack_frame_table_len(n), &r->hash);
}

static void test_frame_build(void) {
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        ZSTD_DCtx *dctx = ZSTD_createDCtx();
        uint8_t *text = malloc(FRAME_RAW), *out = malloc(FRAME_RAW);
        size_t bound = pack_frame_bound(N_FRAME, FRAME_RAW);
        uint8_t *payload = malloc(bound), *payload2 = malloc(bound);
        frame_texts(text, 0);

        /* Chunks apart in memory (gathered) and end to end (no gather
         * buffer needed) make the same frame. */
        pack_record r, r2;
        size_t n = frame_make(cctx, text, payload, &r);
        pack_frame_src src[N_FRAME];
        size_t at = 0;
        for (uint32_t k = 0; k < N_FRAME; k++) {
                src[k] = (pack_frame_src){ .data = text + at, .len = frame_lens[k] };
                st_hash(text + at, frame_lens[k], &src[k].hash);
                at += frame_lens[k];
        }
        ST_CHECK_ERR(pack_frame_build(cctx, 3, src, N_FRAME, NULL, payload2, &r2), (int64_t)n);
        ST_CHECK(memcmp(payload, payload2, n) == 0 && memcmp(&r, &r2, sizeof r) == 0);
        ST_CHECK(r.flags == (PACK_FLAG_ZSTD | PACK_FLAG_FRAME) && r.raw_len == FRAME_RAW &&
                 r.stored_len == n && n < FRAME_RAW);
        st_digest th;
        st_hash(payload, pack_frame_table_len(N_FRAME), &th);
        ST_CHECK(memcmp(th.b, r.hash.b, ST_DIGEST_LEN) == 0);

        /* The header round-trips. */
        uint8_t rh[PACK_RECORD_HEADER_LEN];
        pack_record back;
        st_diag d = { 0 };
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), 0);
        ST_CHECK(memcmp(&back, &r, sizeof r) == 0);

        /* The table: count, level, each slot's hash, offset and length. */
        pack_frame f;
        ST_CHECK_ERR(pack_frame_parse(&back, payload, &f), 0);
        ST_CHECK(f.n == N_FRAME && f.level == 3 && f.table == payload + PACK_FRAME_HEAD_LEN);
        ST_CHECK(f.zstd == payload + pack_frame_table_len(N_FRAME) &&
                 f.zstd_len == n - pack_frame_table_len(N_FRAME));
        at = 0;
        for (uint32_t k = 0; k < N_FRAME; k++) {
                st_digest h;
                uint32_t off = UINT32_MAX, len = 0;
                pack_frame_slot(&f, k, &h, &off, &len);
                ST_CHECK(off == at && len == frame_lens[k]);
                ST_CHECK(memcmp(h.b, src[k].hash.b, ST_DIGEST_LEN) == 0);
                at += len;
        }
        pack_frame_slot(&f, 2, NULL, NULL, NULL); /* every output is optional */

        /* Inflate alone, then decode with its checks, with and without a dctx. */
        ST_CHECK_ERR(pack_frame_inflate(&back, &f, out, dctx), 0);
        ST_CHECK(memcmp(out, text, FRAME_RAW) == 0);
        memset(out, 0, FRAME_RAW);
        ST_CHECK_ERR(pack_payload_decode(&back, payload, out, NULL), 0);
        ST_CHECK(memcmp(out, text, FRAME_RAW) == 0);
        ST_CHECK_ERR(pack_payload_decode(&back, payload, out, dctx), 0);

        /* Incompressible chunks make no frame: store them raw. */
        uint8_t *noise = malloc(3 * 4096);
        st_test_fill(noise, 3 * 4096, 7);
        pack_frame_src rs[3];
        for (uint32_t k = 0; k < 3; k++) {
                rs[k] = (pack_frame_src){ .data = noise + k * 4096, .len = 4096 };
                st_hash(rs[k].data, 4096, &rs[k].hash);
        }
        uint8_t *rout = malloc(pack_frame_bound(3, 3 * 4096));
        ST_CHECK_ERR(pack_frame_build(cctx, 3, rs, 3, NULL, rout, &r2), 0);
        /* Out of range: one chunk, more than PACK_FRAME_MAX_RAW bytes. */
        ST_CHECK_ERR(pack_frame_build(cctx, 3, rs, 1, NULL, rout, &r2), -EINVAL);
        pack_frame_src big[2] = { { .data = noise, .len = PACK_FRAME_MAX_RAW },
                                  { .data = noise, .len = 1 } };
        ST_CHECK_ERR(pack_frame_build(cctx, 3, big, 2, NULL, rout, &r2), -EINVAL);
        free(rout);
        free(noise);

        free(payload2);
        free(payload);
        free(out);
        free(text);
        ZSTD_freeDCtx(dctx);
        ZSTD_freeCCtx(cctx);
}

/* Damage to a frame is -EBADMSG, from the header, the table or the chunks. */
static void test_frame_damage(void) {
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        uint8_t *text = malloc(FRAME_RAW), *out = malloc(FRAME_RAW);
        size_t bound = pack_frame_bound(N_FRAME, FRAME_RAW);
        uint8_t *good = malloc(bound), *p = malloc(bound);
        frame_texts(text, 10);
        pack_record g, r, back;
        pack_frame f;
        st_diag d = { 0 };
        uint8_t rh[PACK_RECORD_HEADER_LEN];
        size_t n = frame_make(cctx, text, good, &g);
        size_t tlen = pack_frame_table_len(N_FRAME);

        /* Any byte of the table flipped: its hash no longer matches. */
        for (size_t i = 0; i < tlen; i += 7) {
                memcpy(p, good, n);
                p[i] ^= 0x10;
                ST_CHECK_ERR(pack_frame_parse(&g, p, &f), -EBADMSG);
                ST_CHECK_ERR(pack_payload_decode(&g, p, out, NULL), -EBADMSG);
        }

        /* A byte of the zstd frame flipped: it fails to inflate, or a chunk's
         * bytes no longer match their hash. */
        for (size_t i = tlen; i < n; i += 11) {
                memcpy(p, good, n);
                p[i] ^= 0x01;
                ST_CHECK_ERR(pack_frame_parse(&g, p, &f), 0);
                ST_CHECK_ERR(pack_payload_decode(&g, p, out, NULL), -EBADMSG);
        }

        /* A frame that inflates cleanly, but one chunk's bytes are not the
         * ones its slot names: only the per-chunk check sees it. */
        pack_frame_src src[N_FRAME];
        size_t at = 0;
        for (uint32_t k = 0; k < N_FRAME; k++) {
                src[k] = (pack_frame_src){ .data = text + at, .len = frame_lens[k] };
                st_hash(text + at, frame_lens[k], &src[k].hash);
                at += frame_lens[k];
        }
        text[frame_lens[0] + 100] ^= 0x20; /* in chunk 1, after its hash was taken */
        int64_t k = pack_frame_build(cctx, 3, src, N_FRAME, NULL, p, &r);
        ST_CHECK(k > 0);
        ST_CHECK_ERR(pack_frame_parse(&r, p, &f), 0);
        ST_CHECK_ERR(pack_frame_inflate(&r, &f, out, NULL), 0);
        ST_CHECK_ERR(pack_payload_decode(&r, p, out, NULL), -EBADMSG);
        text[frame_lens[0] + 100] ^= 0x20;

        /* Counts of 0, 1 and 257, each with the table's hash redone. */
        static const uint32_t counts[] = { 0, 1, PACK_FRAME_MAX_CHUNKS + 1 };
        for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
                memcpy(p, good, n);
                r = g;
                st_le32_put(p, counts[i]);
                frame_rehash(&r, p, counts[i] < N_FRAME ? counts[i] : N_FRAME);
                ST_CHECK_ERR(pack_frame_parse(&r, p, &f), -EBADMSG);
                ST_CHECK_ERR(pack_payload_decode(&r, p, out, NULL), -EBADMSG);
        }
        /* A count whose table does not fit in the payload. */
        memcpy(p, good, n);
        r = g;
        r.stored_len = (uint32_t)tlen;
        ST_CHECK_ERR(pack_frame_parse(&r, p, &f), -EBADMSG);

        /* The level: -100 .. 22 parse, one past either end does not. */
        static const struct {
                int32_t level;
                int err;
        } levels[] = { { -100, 0 }, { 22, 0 }, { -101, -EBADMSG }, { 23, -EBADMSG },
                       { INT32_MIN, -EBADMSG } };
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
                memcpy(p, good, n);
                r = g;
                st_le32_put(p + 4, (uint32_t)levels[i].level);
                frame_rehash(&r, p, N_FRAME);
                ST_CHECK_ERR(pack_frame_parse(&r, p, &f), levels[i].err);
                ST_CHECK_ERR(pack_payload_decode(&r, p, out, NULL), levels[i].err);
        }

        /* Lengths that do not sum to the header's raw length: the header
         * says one more or one less, or a slot does (table hash redone). */
        r = g;
        r.raw_len++;
        ST_CHECK_ERR(pack_frame_parse(&r, good, &f), -EBADMSG);
        ST_CHECK_ERR(pack_payload_decode(&r, good, out, NULL), -EBADMSG);
        r.raw_len -= 2;
        ST_CHECK_ERR(pack_frame_parse(&r, good, &f), -EBADMSG);
        memcpy(p, good, n);
        r = g;
        uint8_t *len2 = p + pack_frame_table_len(2) + 32;
        st_le32_put(len2, st_le32_get(len2) + 1);
        frame_rehash(&r, p, N_FRAME);
        ST_CHECK_ERR(pack_frame_parse(&r, p, &f), -EBADMSG);
        ST_CHECK_ERR(pack_payload_decode(&r, p, out, NULL), -EBADMSG);
        /* A zero length, the sum kept (chunk 2's length moved to chunk 3). */
        memcpy(p, good, n);
        r = g;
        uint8_t *len3 = p + pack_frame_table_len(3) + 32;
        st_le32_put(len3, st_le32_get(len3) + st_le32_get(len2));
        st_le32_put(len2, 0);
        frame_rehash(&r, p, N_FRAME);
        ST_CHECK_ERR(pack_frame_parse(&r, p, &f), -EBADMSG);
        /* Slots moved (lengths still summing): the chunks' hashes fail. */
        memcpy(p, good, n);
        r = g;
        st_le32_put(len3, frame_lens[3] + 1);
        st_le32_put(len2, frame_lens[2] - 1);
        frame_rehash(&r, p, N_FRAME);
        ST_CHECK_ERR(pack_frame_parse(&r, p, &f), 0);
        ST_CHECK_ERR(pack_payload_decode(&r, p, out, NULL), -EBADMSG);

        /* A record without the frame flag is not parsed as a frame. */
        r = g;
        r.flags = PACK_FLAG_ZSTD;
        ST_CHECK_ERR(pack_frame_parse(&r, good, &f), -EBADMSG);

        /* The header: FRAME without ZSTD, a frame's raw length past
         * PACK_FRAME_MAX_RAW, a payload no longer than a 2-chunk table. */
        r = g;
        r.flags = PACK_FLAG_FRAME;
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), -EBADMSG);
        ST_CHECK(d.offset == 4);
        r.flags = PACK_FLAG_ZSTD | PACK_FLAG_FRAME | 4;
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), -EBADMSG);
        r = g;
        r.raw_len = PACK_FRAME_MAX_RAW;
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), 0);
        r.raw_len = PACK_FRAME_MAX_RAW + 1;
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), -EBADMSG);
        r.flags = PACK_FLAG_ZSTD; /* a single chunk may be that long */
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), 0);
        r = g;
        r.stored_len = (uint32_t)pack_frame_table_len(2);
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), -EBADMSG);
        r.stored_len++;
        pack_record_encode(rh, &r);
        ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &back, &d), 0);

        free(p);
        free(good);
        free(out);
        free(text);
        ZSTD_freeCCtx(cctx);
}

/* What pack_walk saw: each record's offset and flags. */
struct seen {
        int n;
        uint64_t off[8];
        uint32_t flags[8];
};

static int seen_cb(void *ctx, uint64_t off, const pack_record *r) {
        struct seen *s = ctx;
        if (s->n < 8) {
                s->off[s->n] = off;
                s->flags[s->n] = r->flags;
        }
        s->n++;
        return 0;
}

/* A pack of single records and frames, walked, and each record read back. */
static void test_walk_mixed(const char *dir) {
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        uint8_t *text = malloc(FRAME_RAW), *frame = malloc(pack_frame_bound(N_FRAME, FRAME_RAW));
        uint8_t single[600], comp[ZSTD_COMPRESSBOUND(4096)], textc[4096];
        frame_texts(text, 20);
        st_test_fill(single, sizeof single, 3);
        frame_text(textc, sizeof textc, 99);
        size_t cl = ZSTD_compress(comp, sizeof comp, textc, sizeof textc, 3);
        ST_CHECK(!ZSTD_isError(cl));
        pack_record fr, raw = { .raw_len = sizeof single, .stored_len = sizeof single },
                        zr = { .flags = PACK_FLAG_ZSTD, .raw_len = sizeof textc,
                               .stored_len = (uint32_t)cl };
        st_hash(single, sizeof single, &raw.hash);
        st_hash(textc, sizeof textc, &zr.hash);
        size_t fl = frame_make(cctx, text, frame, &fr);

        char path[600];
        snprintf(path, sizeof path, "%s/mixed.pack", dir);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        ST_CHECK(fd >= 0);
        uint8_t hdr[PACK_HEADER_LEN], rh[PACK_RECORD_HEADER_LEN];
        pack_header_encode(hdr, 2);
        ST_CHECK_ERR(st_pwrite_full(fd, hdr, sizeof hdr, 0), 0);
        /* raw, frame, zstd, frame, raw */
        const pack_record *recs[] = { &raw, &fr, &zr, &fr, &raw };
        const uint8_t *payloads[] = { single, frame, comp, frame, single };
        uint64_t off = PACK_HEADER_LEN, offs[5];
        for (int i = 0; i < 5; i++) {
                offs[i] = off;
                pack_record_encode(rh, recs[i]);
                ST_CHECK_ERR(st_pwrite_full(fd, rh, sizeof rh, off), 0);
                ST_CHECK_ERR(st_pwrite_full(fd, payloads[i], recs[i]->stored_len, off + sizeof rh),
                             0);
                off += sizeof rh + recs[i]->stored_len;
        }
        struct seen s = { 0 };
        uint64_t end = 0;
        st_diag d = { 0 };
        ST_CHECK_ERR(pack_walk(fd, PACK_HEADER_LEN, off, seen_cb, &s, &end, &d), 0);
        ST_CHECK(s.n == 5 && end == off);
        for (int i = 0; i < 5 && i < s.n; i++)
                ST_CHECK(s.off[i] == offs[i] && s.flags[i] == recs[i]->flags);

        /* Each record as a reader finds it: header from the file, payload decoded. */
        uint8_t *buf = malloc(pack_frame_bound(N_FRAME, FRAME_RAW)), *out = malloc(FRAME_RAW);
        for (int i = 0; i < 5; i++) {
                pack_record r;
                ST_CHECK_ERR(st_pread_full(fd, rh, sizeof rh, offs[i]), 0);
                ST_CHECK_ERR(pack_record_decode(rh, sizeof rh, &r, &d), 0);
                ST_CHECK_ERR(st_pread_full(fd, buf, r.stored_len, offs[i] + sizeof rh), 0);
                ST_CHECK_ERR(pack_payload_decode(&r, buf, out, NULL), 0);
        }

        /* A frame torn in its payload ends the walk at its header. */
        s = (struct seen){ 0 };
        ST_CHECK_ERR(pack_walk(fd, PACK_HEADER_LEN, offs[3] + sizeof rh + fl - 1, seen_cb, &s,
                               &end, &d),
                     0);
        ST_CHECK(s.n == 3 && end == offs[3]);
        close(fd);
        free(out);
        free(buf);
        free(frame);
        free(text);
        ZSTD_freeCCtx(cctx);
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

        test_frame_build();
        test_frame_damage();

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
        test_walk_mixed(dir);
        uint32_t pid;
        ST_CHECK(pack_name_parse("0000abcd.pack", &pid) && pid == 0xabcd);
        ST_CHECK(!pack_name_parse("0000abcd.pac", &pid) && !pack_name_parse("../x.pack", &pid));
        st_test_rmrf(dir);
        free(dir);
        return ST_TEST_RESULT();
}
