/* SPDX-License-Identifier: Apache-2.0 */
/* BLAKE3 glue: the published empty-input hash, streaming equals one-shot at
 * every split, hex round trip. (tests/integration/hash-b3sum.sh compares
 * against b3sum on many lengths.) */
#include <stdlib.h>
#include <string.h>

#include <stellar/hash.h>

#include "test.h"

int main(void) {
        st_digest d;
        char hex[65];
        st_hash("", 0, &d);
        st_digest_to_hex(&d, hex);
        ST_CHECK(strcmp(hex, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262") == 0);
        st_digest back;
        ST_CHECK_ERR(st_digest_from_hex(hex, &back), 0);
        ST_CHECK(memcmp(&back, &d, sizeof d) == 0);
        ST_CHECK_ERR(st_digest_from_hex("zz", &back), -EINVAL);
        hex[10] = 'g';
        ST_CHECK_ERR(st_digest_from_hex(hex, &back), -EINVAL);

        size_t len = 70000;
        uint8_t *buf = malloc(len);
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)(i % 251);
        st_digest whole;
        st_hash(buf, len, &whole);
        for (size_t cut = 0; cut <= len; cut += 1023) {
                st_hasher h;
                st_hasher_init(&h);
                st_hasher_update(&h, buf, cut);
                st_hasher_update(&h, buf + cut, len - cut);
                st_hasher_final(&h, &d);
                ST_CHECK(memcmp(&d, &whole, sizeof d) == 0);
        }
        free(buf);
        return ST_TEST_RESULT();
}
