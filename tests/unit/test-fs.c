/* SPDX-License-Identifier: Apache-2.0 */
/* lib/util/fs.c: buffers grow geometrically under their cap, so a body
 * appended in small pieces costs linear copying ("Never lose data" #9). */
#include <stdint.h>
#include <stdlib.h>

#include "test.h"
#include "util/fs.h"

int main(void) {
        uint8_t *p = NULL;
        size_t cap = 0, n_grown = 0;
        /* 4 MiB one byte at a time: about 15 reallocations, not 4 million */
        for (size_t len = 1; len <= (4u << 20); len++) {
                size_t before = cap;
                ST_CHECK_ERR(st_buf_grow(&p, &cap, len), 0);
                ST_CHECK(cap >= len);
                if (cap != before) {
                        n_grown++;
                        ST_CHECK(before == 0 || cap >= 2 * before);
                }
                p[len - 1] = (uint8_t)len;
        }
        ST_CHECK(n_grown <= 20);
        free(p);

        /* the cap: never past it, even when doubling would be; -EFBIG beyond */
        p = NULL;
        cap = 0;
        ST_CHECK_ERR(st_buf_grow_max(&p, &cap, 600, 1000), 0);
        ST_CHECK(cap >= 600 && cap <= 1000);
        ST_CHECK_ERR(st_buf_grow_max(&p, &cap, 1000, 1000), 0);
        ST_CHECK(cap == 1000);
        ST_CHECK_ERR(st_buf_grow_max(&p, &cap, 1001, 1000), -EFBIG);
        ST_CHECK(cap == 1000);
        /* a need beyond twice the capacity gets what it needs */
        ST_CHECK_ERR(st_buf_grow(&p, &cap, 100000), 0);
        ST_CHECK(cap == 100000);
        free(p);
        return ST_TEST_RESULT();
}
