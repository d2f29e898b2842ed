/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for pack files: pack_header_decode, pack_record_decode and
 * pack_payload_decode (the input read as one record: 56-byte header, payload),
 * for a frame record also pack_frame_parse, pack_frame_slot and
 * pack_frame_inflate, and pack_walk over the input read as a whole pack,
 * compared with an independent walk. Does not touch a store or the index.
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/chunker.h>

#include "fuzz.h"
#include "store/pack.h"
#include "util/le.h"

/* An independent reading of a frame's table (docs/formats/pack.md): does it
 * parse? The payload holds r->stored_len bytes. */
static bool frame_table_ok(const pack_record *r, const uint8_t *payload) {
        uint32_t n = st_le32_get(payload);
        int32_t level = (int32_t)st_le32_get(payload + 4);
        if (n < 2 || n > PACK_FRAME_MAX_CHUNKS || level < PACK_FRAME_LEVEL_MIN || level > 22)
                return false;
        size_t tlen = PACK_FRAME_HEAD_LEN + (size_t)n * PACK_FRAME_SLOT_LEN;
        if (tlen >= r->stored_len)
                return false;
        st_digest d;
        st_hash(payload, tlen, &d);
        if (memcmp(d.b, r->hash.b, ST_DIGEST_LEN) != 0)
                return false;
        uint64_t sum = 0;
        for (uint32_t k = 0; k < n; k++) {
                uint32_t len = st_le32_get(payload + PACK_FRAME_HEAD_LEN +
                                           (size_t)k * PACK_FRAME_SLOT_LEN + 32);
                if (len == 0)
                        return false;
                sum += len;
        }
        return sum == r->raw_len;
}

/* A frame record's payload: the table parses exactly when the independent
 * reading says so, and what parses meets its contract. Returns whether it
 * parsed; *f gets the frame. */
static bool fuzz_frame(const pack_record *r, const uint8_t *payload, pack_frame *f) {
        int k = pack_frame_parse(r, payload, f);
        FUZZ_ASSERT(k == 0 || k == -EBADMSG);
        FUZZ_ASSERT((k == 0) == frame_table_ok(r, payload));
        if (k < 0)
                return false;
        size_t tlen = pack_frame_table_len(f->n);
        FUZZ_ASSERT(f->n >= 2 && f->n <= PACK_FRAME_MAX_CHUNKS);
        FUZZ_ASSERT(f->level >= PACK_FRAME_LEVEL_MIN && f->level <= 22);
        FUZZ_ASSERT(f->table == payload + PACK_FRAME_HEAD_LEN && f->zstd == payload + tlen);
        FUZZ_ASSERT(tlen < r->stored_len && f->zstd_len == r->stored_len - tlen);
        st_digest d;
        st_hash(payload, tlen, &d);
        FUZZ_ASSERT(memcmp(d.b, r->hash.b, ST_DIGEST_LEN) == 0);
        /* The slots tile the frame's bytes in order. */
        uint64_t next = 0;
        for (uint32_t i = 0; i < f->n; i++) {
                st_digest h;
                uint32_t off, len;
                pack_frame_slot(f, i, &h, &off, &len);
                FUZZ_ASSERT(off == next && len > 0 && (uint64_t)off + len <= r->raw_len);
                FUZZ_ASSERT(memcmp(h.b, f->table + (size_t)i * PACK_FRAME_SLOT_LEN,
                                   ST_DIGEST_LEN) == 0);
                next = (uint64_t)off + len;
        }
        FUZZ_ASSERT(next == r->raw_len);
        return true;
}

/* Whether out (raw_len bytes, decoded) holds the chunks the frame's slots name. */
static bool frame_chunks_ok(const pack_frame *f, const uint8_t *out) {
        for (uint32_t i = 0; i < f->n; i++) {
                st_digest want, got;
                uint32_t off, len;
                pack_frame_slot(f, i, &want, &off, &len);
                st_hash(out + off, len, &got);
                if (memcmp(want.b, got.b, ST_DIGEST_LEN) != 0)
                        return false;
        }
        return true;
}

/* Input read as a record: whatever decodes must satisfy the header's contract,
 * and the payload must decode (or be rejected) the same with or without a dctx. */
static void fuzz_record(const uint8_t *data, size_t len) {
        static ZSTD_DCtx *dctx;
        pack_record r;
        st_diag d = { 0 };

        if (pack_record_decode(data, len, &r, &d) < 0) {
                FUZZ_ASSERT(d.what != NULL);
                return;
        }
        FUZZ_ASSERT(len >= PACK_RECORD_HEADER_LEN);
        FUZZ_ASSERT(r.raw_len > 0 && r.raw_len <= ST_CHUNK_MAX_LIMIT && r.stored_len > 0);
        FUZZ_ASSERT(r.flags == 0 || r.flags == PACK_FLAG_ZSTD || r.flags == PACK_FLAG_DEFERRED ||
                    r.flags == (PACK_FLAG_ZSTD | PACK_FLAG_FRAME));
        FUZZ_ASSERT((r.flags & PACK_FLAG_ZSTD) || r.stored_len == r.raw_len);
        bool frame = r.flags & PACK_FLAG_FRAME;
        if (frame)
                FUZZ_ASSERT(r.raw_len <= PACK_FRAME_MAX_RAW &&
                            r.stored_len > pack_frame_table_len(2));
        if (len - PACK_RECORD_HEADER_LEN < r.stored_len)
                return;

        /* Exactly stored_len bytes of payload, so ASan sees any over-read. */
        uint8_t *payload = fuzz_dup(data + PACK_RECORD_HEADER_LEN, r.stored_len);
        uint8_t *out = malloc(r.raw_len);
        if (!payload || !out)
                abort();
        pack_frame f;
        bool parsed = frame && fuzz_frame(&r, payload, &f);
        int k = pack_payload_decode(&r, payload, out, NULL);
        FUZZ_ASSERT(k == 0 || k == -EBADMSG);
        if (frame) {
                /* Decoded exactly when the table parses, the frame inflates to
                 * raw_len bytes and every chunk matches its slot's hash. */
                bool ok = false;
                if (parsed) {
                        uint8_t *raw = malloc(r.raw_len);
                        if (!raw)
                                abort();
                        if (pack_frame_inflate(&r, &f, raw, NULL) == 0) {
                                ok = frame_chunks_ok(&f, raw);
                                FUZZ_ASSERT(!ok || memcmp(raw, out, r.raw_len) == 0);
                        }
                        free(raw);
                }
                FUZZ_ASSERT((k == 0) == ok);
        } else if (k == 0) {
                st_digest h;
                st_hash(out, r.raw_len, &h);
                FUZZ_ASSERT(memcmp(h.b, r.hash.b, ST_DIGEST_LEN) == 0);
        }
        if (r.flags & PACK_FLAG_ZSTD) {
                if (!dctx && !(dctx = ZSTD_createDCtx()))
                        abort();
                FUZZ_ASSERT(pack_payload_decode(&r, payload, out, dctx) == k);
                if (parsed) {
                        uint8_t *raw = malloc(r.raw_len);
                        if (!raw)
                                abort();
                        int a = pack_frame_inflate(&r, &f, raw, NULL);
                        FUZZ_ASSERT(a == 0 || a == -EBADMSG);
                        FUZZ_ASSERT(pack_frame_inflate(&r, &f, out, dctx) == a);
                        FUZZ_ASSERT(a < 0 || memcmp(raw, out, r.raw_len) == 0);
                        free(raw);
                }
        }
        free(out);
        free(payload);
}

/* Seal a frame record so that mutations reach the checks behind its hashes:
 * the slots' hashes redone from what the frame inflates to (when it does),
 * then the table's hash into the header, then the header's check. buf holds
 * len bytes from a record header on, its check sealed. Returns whether it
 * sealed a frame. */
static bool seal_frame(uint8_t *buf, size_t len) {
        pack_record r;
        if (pack_record_decode(buf, len, &r, NULL) < 0 || !(r.flags & PACK_FLAG_FRAME) ||
            len - PACK_RECORD_HEADER_LEN < r.stored_len)
                return false;
        uint8_t *payload = buf + PACK_RECORD_HEADER_LEN;
        uint32_t n = st_le32_get(payload);
        if (n > PACK_FRAME_MAX_CHUNKS || pack_frame_table_len(n) >= r.stored_len)
                return false;
        size_t tlen = pack_frame_table_len(n);
        st_digest d;
        st_hash(payload, tlen, &d);
        memcpy(buf + 16, d.b, ST_DIGEST_LEN);
        fuzz_seal(buf, 48, 48, 8);
        r.hash = d;
        pack_frame f;
        if (pack_frame_parse(&r, payload, &f) < 0)
                return true;
        uint8_t *raw = malloc(r.raw_len);
        if (!raw)
                abort();
        if (pack_frame_inflate(&r, &f, raw, NULL) == 0) {
                for (uint32_t k = 0; k < f.n; k++) {
                        uint32_t off, l;
                        pack_frame_slot(&f, k, NULL, &off, &l);
                        st_hash(raw + off, l, &d);
                        memcpy(payload + pack_frame_table_len(k), d.b, ST_DIGEST_LEN);
                }
                st_hash(payload, tlen, &d);
                memcpy(buf + 16, d.b, ST_DIGEST_LEN);
                fuzz_seal(buf, 48, 48, 8);
        }
        free(raw);
        return true;
}

struct walk {
        const uint64_t *offs;
        size_t n, i;
};

static int walk_cb(void *ctx, uint64_t off, const pack_record *r) {
        struct walk *w = ctx;
        (void)r;
        FUZZ_ASSERT(w->i < w->n && w->offs[w->i] == off);
        w->i++;
        return 0;
}

/* Input read as a pack: seal every record header in the chain, then check that
 * pack_walk visits exactly the records a plain loop over the buffer finds. */
static void fuzz_walk(const uint8_t *data, size_t len) {
        static int fd = -1;
        uint32_t id;

        if (pack_header_decode(data, len, &id, NULL) < 0)
                return;
        uint8_t *buf = fuzz_dup(data, len);
        uint64_t *offs = malloc((len / PACK_RECORD_HEADER_LEN + 1) * sizeof *offs);
        if (!buf || !offs)
                abort();
        size_t n = 0, off = PACK_HEADER_LEN;
        while (len - off >= PACK_RECORD_HEADER_LEN) {
                pack_record r;
                fuzz_seal(buf + off, 48, 48, 8);
                if (pack_record_decode(buf + off, len - off, &r, NULL) < 0 ||
                    len - off - PACK_RECORD_HEADER_LEN < r.stored_len)
                        break;
                offs[n++] = off;
                off += PACK_RECORD_HEADER_LEN + r.stored_len;
        }

        if (fd < 0 && (fd = memfd_create("fuzz-pack", MFD_CLOEXEC)) < 0)
                abort();
        if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, len, 0) != (ssize_t)len)
                abort();
        struct walk w = { .offs = offs, .n = n };
        uint64_t end = 0;
        st_diag d = { 0 };
        FUZZ_ASSERT(pack_walk(fd, PACK_HEADER_LEN, len, walk_cb, &w, &end, &d) == 0);
        FUZZ_ASSERT(w.i == n && end == off);
        FUZZ_ASSERT(end == len || d.what != NULL);
        free(offs);
        free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        uint32_t id;
        (void)pack_header_decode(data, len, &id, NULL);

        fuzz_record(data, len);
        if (len >= PACK_RECORD_HEADER_LEN) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                fuzz_seal(sealed, 48, 48, 8);
                fuzz_record(sealed, len);
                if (seal_frame(sealed, len))
                        fuzz_record(sealed, len);
                free(sealed);
        }
        fuzz_walk(data, len);
        return 0;
}
