/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for what a pull does with a downloaded blob (blob_verify) and
 * with an S3 listing page (s3_list_parse). The first 32 bytes of the input
 * are the name the blob is fetched under; a blob accepted under a name must
 * hash to it.
 */
#include <errno.h>

#include "fuzz.h"
#include "remote/blob.h"
#include "remote/target.h"

static int count_key(void *ctx, const char *key) {
        FUZZ_ASSERT(key != NULL);
        (*(size_t *)ctx)++;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        if (len < ST_DIGEST_LEN)
                return 0;
        st_digest id;
        memcpy(id.b, data, ST_DIGEST_LEN);
        uint8_t *out = NULL;
        size_t cap = 0;
        const char *why = NULL;
        int64_t n = blob_verify(&id, data + ST_DIGEST_LEN, len - ST_DIGEST_LEN, &out, &cap, NULL,
                                &why);
        if (n >= 0) {
                st_digest h;
                st_hash(out, (size_t)n, &h);
                FUZZ_ASSERT(!memcmp(h.b, id.b, ST_DIGEST_LEN));
        } else
                FUZZ_ASSERT(n == -ENOMEM || (n == -EBADMSG && why));
        free(out);
        /* the same bytes as an S3 listing */
        size_t keys = 0;
        char token[1024];
        int r = s3_list_parse((const char *)data, len, count_key, &keys, token, sizeof token);
        FUZZ_ASSERT(r == 0 || r == -EBADMSG);
        FUZZ_ASSERT(r < 0 || strlen(token) < sizeof token);
        return 0;
}
