/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for store_format_decode, the store's 64-byte 'format' file.
 * Checks that what decodes is a usable configuration and matches the bytes it
 * came from. Does not open a store.
 */
#include <errno.h>

#include <stellar/chunker.h>

#include "fuzz.h"
#include "store/store-internal.h"
#include "util/le.h"

static void fuzz_one(const uint8_t *data, size_t len) {
        st_store_config c;
        st_diag d = { 0 };

        int r = store_format_decode(data, len, &c, NULL, &d);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTONOSUPPORT);
                FUZZ_ASSERT(d.what != NULL);
                return;
        }
        FUZZ_ASSERT(len == STORE_FORMAT_LEN);
        FUZZ_ASSERT(st_chunker_params_check(&c.chunker) == 0);
        FUZZ_ASSERT((c.zstd_level >= -7 && c.zstd_level <= 22) ||
                    (c.zstd_level == ST_ZSTD_DEFER && st_le32_get(data + 8) == 3));
        FUZZ_ASSERT(c.zstd_cold_level >= 0 && c.zstd_cold_level <= 22);
        FUZZ_ASSERT((uint32_t)c.zstd_cold_level == st_le32_get(data + 52));
        FUZZ_ASSERT(c.zstd_level != ST_ZSTD_DEFER || c.zstd_cold_level > 0);
        FUZZ_ASSERT(st_le32_get(data + 8) == 3 || c.zstd_cold_level == 0);
        FUZZ_ASSERT(c.chunker.align == st_le32_get(data + 16));
        FUZZ_ASSERT(c.chunker.min_size == st_le32_get(data + 20));
        FUZZ_ASSERT(c.chunker.avg_size == st_le32_get(data + 24));
        FUZZ_ASSERT(c.chunker.max_size == st_le32_get(data + 28));
        FUZZ_ASSERT((uint32_t)c.zstd_level == st_le32_get(data + 32));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        if (len == STORE_FORMAT_LEN) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                fuzz_seal(sealed, 56, 56, 8);
                fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
