/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for pack files: pack_header_decode, pack_record_decode and
 * pack_payload_decode (the input read as one record: 56-byte header, payload),
 * and pack_walk over the input read as a whole pack, compared with an
 * independent walk. Does not touch a store or the index.
 */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/chunker.h>

#include "fuzz.h"
#include "store/pack.h"

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
        FUZZ_ASSERT((r.flags & ~PACK_FLAG_ZSTD) == 0);
        FUZZ_ASSERT((r.flags & PACK_FLAG_ZSTD) || r.stored_len == r.raw_len);
        if (len - PACK_RECORD_HEADER_LEN < r.stored_len)
                return;

        /* Exactly stored_len bytes of payload, so ASan sees any over-read. */
        uint8_t *payload = fuzz_dup(data + PACK_RECORD_HEADER_LEN, r.stored_len);
        uint8_t *out = malloc(r.raw_len);
        if (!payload || !out)
                abort();
        int k = pack_payload_decode(&r, payload, out, NULL);
        FUZZ_ASSERT(k == 0 || k == -EBADMSG);
        if (k == 0) {
                st_digest h;
                st_hash(out, r.raw_len, &h);
                FUZZ_ASSERT(memcmp(h.b, r.hash.b, ST_DIGEST_LEN) == 0);
        }
        if (r.flags & PACK_FLAG_ZSTD) {
                if (!dctx && !(dctx = ZSTD_createDCtx()))
                        abort();
                FUZZ_ASSERT(pack_payload_decode(&r, payload, out, dctx) == k);
        }
        free(out);
        free(payload);
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
                free(sealed);
        }
        fuzz_walk(data, len);
        return 0;
}
