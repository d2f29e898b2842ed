/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for ref_parse, the files under refs/. The format is canonical,
 * so whatever parses must re-encode with ref_encode to exactly the input
 * bytes, and the encoding must parse back to the same ref. The sealed run
 * recomputes the 8-byte checksum that ends the file (at len - 8).
 */
#include <errno.h>

#include <stellar/store.h>

#include "fuzz.h"
#include "store/ref.h"

static void fuzz_one(const uint8_t *data, size_t len) {
        store_ref r;
        st_diag d = { 0 };

        memset(&r, 0xa5, sizeof r); /* a failed parse must not matter; a good one sets all */
        int rc = ref_parse(data, len, &r, &d);
        if (rc < 0) {
                FUZZ_ASSERT(rc == -EBADMSG || rc == -EPROTONOSUPPORT);
                FUZZ_ASSERT(d.what != NULL);
                FUZZ_ASSERT(d.offset <= len);
                return;
        }
        size_t nl = strnlen(r.parent, sizeof r.parent);
        FUZZ_ASSERT(nl <= REF_NAME_MAX && len == REF_FIXED_LEN + nl);
        FUZZ_ASSERT(r.kind == ST_KIND_IMAGE || r.kind == ST_KIND_SNAPSHOT ||
                    r.kind == ST_KIND_VOLUME);
        FUZZ_ASSERT(r.size <= (1ull << 50));
        FUZZ_ASSERT(nl == 0 || st_name_valid(r.parent));

        uint8_t enc[REF_FIXED_LEN + REF_NAME_MAX];
        size_t n = ref_encode(&r, enc);
        if (n != len || memcmp(enc, data, len) != 0) {
                size_t i = 0;
                while (i < len && i < n && enc[i] == data[i])
                        i++;
                fprintf(stderr, "round trip differs at byte %zu (input %zu, encoded %zu)\n", i,
                        len, n);
                abort();
        }
        store_ref r2;
        FUZZ_ASSERT(ref_parse(enc, n, &r2, NULL) == 0);
        FUZZ_ASSERT(r2.kind == r.kind && r2.size == r.size && r2.ctime_ns == r.ctime_ns);
        FUZZ_ASSERT(memcmp(&r2.manifest, &r.manifest, sizeof r.manifest) == 0);
        FUZZ_ASSERT(strcmp(r2.parent, r.parent) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        if (len >= REF_FIXED_LEN) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                fuzz_seal(sealed, len - 8, len - 8, 8);
                fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
