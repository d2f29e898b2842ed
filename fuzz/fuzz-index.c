/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for index_file_load, the store's 'index' file, loaded into a
 * bare st_store (no directory, no pack fds). Whatever loads must re-encode
 * with index_file_encode to the same fields and load again. Reserved bytes
 * (header 32..63, pack entry 4..7) are not compared: the encoder zeroes them.
 * An index of format 1 (36-byte entries, no slot) re-encodes in format 2,
 * every entry with slot 0, and is marked to be rewritten whole.
 */
#include <errno.h>

#include "fuzz-store.h"
#include "util/le.h"

static st_store *store_new_bare(void) {
        st_store *s = calloc(1, sizeof *s);
        if (!s || !(s->idx = index_new()))
                abort();
        s->dirfd = s->packs_fd = s->manifests_fd = s->refs_fd = s->deltas_fd = s->lock_fd = -1;
        return s;
}

static void store_free_bare(st_store *s) {
        free(s->packs);
        index_free(s->idx);
        free(s);
}

static void fuzz_one(const uint8_t *data, size_t len) {
        st_store *s = store_new_bare();
        st_diag d = { 0 };

        int r = index_file_load(s, data, len, &d);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOMEM);
                FUZZ_ASSERT(r == -ENOMEM || d.what != NULL);
                FUZZ_ASSERT(r == -ENOMEM || d.offset <= len || d.offset == ST_DIAG_NO_OFFSET);
                store_free_bare(s);
                return;
        }
        uint32_t n = index_count(s->idx);
        fuzz_check_index(s);
        uint32_t version = st_le32_get(data + 8);
        FUZZ_ASSERT(version == 1 || version == INDEX_FILE_VERSION);
        FUZZ_ASSERT(s->index_old == (version == 1));
        size_t entry_len = version == 1 ? INDEX_FILE_ENTRY_LEN_V1 : INDEX_FILE_ENTRY_LEN;

        uint8_t *enc = NULL;
        size_t enc_len = 0;
        if (index_file_encode(s, &enc, &enc_len) < 0)
                abort();
        FUZZ_ASSERT(enc_len == len + (size_t)n * (INDEX_FILE_ENTRY_LEN - entry_len));
        FUZZ_ASSERT(memcmp(enc, data, 8) == 0 && st_le32_get(enc + 8) == INDEX_FILE_VERSION);
        FUZZ_ASSERT(memcmp(enc + 12, data + 12, 20) == 0);
        size_t at = INDEX_FILE_HEADER_LEN;
        for (size_t i = 0; i < s->n_packs; i++, at += INDEX_FILE_PACK_LEN) {
                FUZZ_ASSERT(memcmp(enc + at, data + at, 4) == 0);
                FUZZ_ASSERT(memcmp(enc + at + 8, data + at + 8, 8) == 0);
        }
        for (uint32_t i = 0; i < n; i++) {
                const uint8_t *e = enc + at + (size_t)i * INDEX_FILE_ENTRY_LEN;
                const uint8_t *in = data + at + (size_t)i * entry_len;
                FUZZ_ASSERT(memcmp(e, in, INDEX_FILE_ENTRY_LEN_V1) == 0);
                FUZZ_ASSERT(st_le32_get(e + 36) == (version == 1 ? 0 : st_le32_get(in + 36)));
        }

        st_store *s2 = store_new_bare();
        FUZZ_ASSERT(index_file_load(s2, enc, enc_len, NULL) == 0);
        FUZZ_ASSERT(!s2->index_old);
        FUZZ_ASSERT(index_count(s2->idx) == n && s2->n_packs == s->n_packs);
        FUZZ_ASSERT(s2->unique_bytes == s->unique_bytes && s2->stored_bytes == s->stored_bytes);
        store_free_bare(s2);
        free(enc);
        store_free_bare(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        if (len >= INDEX_FILE_HEADER_LEN + INDEX_FILE_TRAILER_LEN) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                fuzz_seal(sealed, len - INDEX_FILE_TRAILER_LEN, len - INDEX_FILE_TRAILER_LEN,
                          INDEX_FILE_TRAILER_LEN);
                fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
