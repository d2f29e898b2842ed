/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for manifest_parse. The format is canonical, so whatever parses
 * must re-encode with manifest_encode to exactly the input bytes; any
 * difference aborts. Hole extents (all-zero hash) only in a layer (a manifest
 * with a parent). Does not look up the extents' chunks or the parent.
 */
#include <errno.h>

#include <stellar/chunker.h>

#include "fuzz.h"
#include "store/manifest.h"

static void fuzz_one(const uint8_t *data, size_t len) {
        manifest *m = NULL;
        st_diag d = { 0 };

        int r = manifest_parse(data, len, &m, &d);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOMEM);
                FUZZ_ASSERT(r == -ENOMEM || d.what != NULL);
                FUZZ_ASSERT(r == -ENOMEM || d.offset <= len || d.offset == ST_DIAG_NO_OFFSET);
                return;
        }
        FUZZ_ASSERT(m && m->n <= MANIFEST_EXTENTS_MAX && m->size <= MANIFEST_SIZE_MAX);
        FUZZ_ASSERT(st_chunker_params_check(&m->chunker) == 0);
        for (size_t i = 0; i < m->n; i++) {
                FUZZ_ASSERT(m->ext[i].len > 0 && m->ext[i].len <= ST_CHUNK_MAX_LIMIT);
                FUZZ_ASSERT(m->ext[i].off + m->ext[i].len <= m->size);
                FUZZ_ASSERT(i == 0 || m->ext[i - 1].off + m->ext[i - 1].len <= m->ext[i].off);
                FUZZ_ASSERT(manifest_has_parent(m) || !manifest_hash_is_hole(&m->ext[i].hash));
                FUZZ_ASSERT(manifest_find(m, m->ext[i].off) == i);
        }

        uint8_t *enc = NULL;
        size_t enc_len = 0;
        if (manifest_encode(m, &enc, &enc_len) < 0)
                abort();
        if (enc_len != len || memcmp(enc, data, len) != 0) {
                size_t i = 0;
                while (i < len && i < enc_len && enc[i] == data[i])
                        i++;
                fprintf(stderr, "round trip differs at byte %zu (input %zu, encoded %zu)\n",
                        i, len, enc_len);
                abort();
        }
        free(enc);
        manifest_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        if (len >= MANIFEST_HEADER_LEN + MANIFEST_TRAILER_LEN) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                fuzz_seal(sealed, len - MANIFEST_TRAILER_LEN, len - MANIFEST_TRAILER_LEN,
                          MANIFEST_TRAILER_LEN);
                fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
