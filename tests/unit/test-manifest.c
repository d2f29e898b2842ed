/* SPDX-License-Identifier: Apache-2.0 */
/* Manifests round-trip, and every kind of damage is refused with -EBADMSG
 * (or -EPROTONOSUPPORT for an unknown version) and an offset. */
#include <stdlib.h>
#include <string.h>

#include <stellar/hash.h>

#include "store/manifest.h"
#include "util/cleanup.h"
#include "test.h"
#include "util/le.h"

static void reseal(uint8_t *buf, size_t len) {
        st_digest d;
        st_hash(buf, len - MANIFEST_TRAILER_LEN, &d);
        memcpy(buf + len - MANIFEST_TRAILER_LEN, d.b, 32);
}

/* The extent containing off or the first after it, by looking at each. */
static size_t find_slow(const manifest *m, uint64_t off) {
        size_t i = 0;
        while (i < m->n && m->ext[i].off + m->ext[i].len <= off)
                i++;
        return i;
}

/* Lookups through the guide agree with a plain scan at every extent's
 * edges and at random points, in manifests of every density (gaps, runs
 * of small and large extents, a size that is no power of two), and stop
 * using it once the manifest changes. */
static void guide_agrees(uint64_t seed) {
        st_chunker_params cp = ST_CHUNKER_IMAGE_DEFAULT;
        uint64_t size = ((st_test_rand(&seed) % 4000) + 100) * 4096 + st_test_rand(&seed) % 4096;
        manifest *m = manifest_new(size, &cp, NULL);
        ST_CHECK(m != NULL);
        uint64_t off = st_test_rand(&seed) % 3 == 0 ? 0 : (st_test_rand(&seed) % 8) * 4096;
        for (;;) {
                uint32_t len = (uint32_t)(st_test_rand(&seed) % 3 == 0 ? (st_test_rand(&seed) % 64 + 1) * 4096
                                                                      : (st_test_rand(&seed) % 4 + 1) * 4096);
                if (off + len > size)
                        break;
                st_digest h;
                st_test_fill(h.b, 32, off + 1);
                ST_CHECK_ERR(manifest_append(m, off, len, &h), 0);
                off += len;
                if (st_test_rand(&seed) % 5 == 0) /* a gap */
                        off += (st_test_rand(&seed) % 16) * 4096;
        }
        manifest_guide(m);
        ST_CHECK(m->n < 64 || m->guide != NULL);
        ST_CHECK(m->guide_len <= 2 * m->n + 1);
        for (size_t i = 0; i < m->n; i++) {
                uint64_t a = m->ext[i].off, b = a + m->ext[i].len;
                const uint64_t at[] = { a, a + 1, b - 1, b, a ? a - 1 : 0 };
                for (size_t j = 0; j < sizeof at / sizeof at[0]; j++)
                        ST_CHECK(manifest_find(m, at[j]) == find_slow(m, at[j]));
        }
        for (int i = 0; i < 2000; i++) {
                uint64_t o = st_test_rand(&seed) % (size + 8192);
                ST_CHECK(manifest_find(m, o) == find_slow(m, o));
        }
        /* a change (here, the tail grown) stops the guide's use */
        if (m->n > 0 && off < size) {
                st_digest h;
                st_test_fill(h.b, 32, 7);
                ST_CHECK_ERR(manifest_append(m, off, (uint32_t)ST_MIN(size - off, 4096u), &h), 0);
                ST_CHECK(m->guide == NULL);
                ST_CHECK(manifest_find(m, off) == m->n - 1);
        }
        manifest_free(m);
}

int main(void) {
        for (uint64_t seed = 1; seed <= 40; seed++)
                guide_agrees(seed);
        st_chunker_params cp = ST_CHUNKER_IMAGE_DEFAULT;
        manifest *m = manifest_new(1 << 20, &cp, NULL);
        for (int i = 0; i < 10; i++) {
                st_digest h;
                st_test_fill(h.b, 32, (uint64_t)i + 1);
                ST_CHECK_ERR(manifest_append(m, (uint64_t)i * 65536, 16384, &h), 0);
        }
        /* manifest_find_near agrees with manifest_find from any hint */
        for (uint64_t off = 0; off < (1 << 20); off += 4093)
                for (size_t near = 0; near <= 11; near++)
                        ST_CHECK(manifest_find_near(m, off, near) == manifest_find(m, off));
        st_digest h0 = { { 0 } };
        ST_CHECK_ERR(manifest_append(m, 0, 4096, &h0), -EINVAL);        /* overlaps */
        ST_CHECK_ERR(manifest_append(m, (1 << 20) - 100, 4096, &h0), -EINVAL); /* past end */
        m->ctime_ns = 12345;
        uint8_t *buf;
        size_t len;
        ST_CHECK_ERR(manifest_encode(m, &buf, &len), 0);
        ST_CHECK(len == MANIFEST_HEADER_LEN + 10 * MANIFEST_EXTENT_LEN + MANIFEST_TRAILER_LEN);

        manifest *p = NULL;
        st_diag d = { 0 };
        ST_CHECK_ERR(manifest_parse(buf, len, &p, &d), 0);
        ST_CHECK(p && p->n == 10 && p->size == (1 << 20) && p->ctime_ns == 12345);
        for (size_t i = 0; p && i < 10; i++)
                ST_CHECK(memcmp(&p->ext[i], &m->ext[i], sizeof p->ext[i]) == 0);
        manifest_free(p);

        /* every truncation is refused */
        for (size_t l = 0; l < len; l += 7)
                ST_CHECK_ERR(manifest_parse(buf, l, &p, &d), -EBADMSG);
        /* every single bit flip is refused (the trailer covers all bytes) */
        for (size_t i = 0; i < len; i++) {
                buf[i] ^= 0x10;
                int r = manifest_parse(buf, len, &p, &d);
                ST_CHECK(r == -EBADMSG || r == -EPROTONOSUPPORT);
                if (r == 0)
                        manifest_free(p);
                buf[i] ^= 0x10;
        }
        /* unknown version, even correctly sealed */
        uint8_t *v = malloc(len);
        memcpy(v, buf, len);
        st_le32_put(v + 8, 99);
        reseal(v, len);
        ST_CHECK_ERR(manifest_parse(v, len, &p, &d), -EPROTONOSUPPORT);
        ST_CHECK(d.offset == 8);
        /* semantic damage with a valid checksum: overlap, past end, absurd count */
        memcpy(v, buf, len);
        st_le64_put(v + MANIFEST_HEADER_LEN + MANIFEST_EXTENT_LEN, 100); /* extent 1 at 100 */
        reseal(v, len);
        ST_CHECK_ERR(manifest_parse(v, len, &p, &d), -EBADMSG);
        ST_CHECK(d.offset == MANIFEST_HEADER_LEN + MANIFEST_EXTENT_LEN);
        memcpy(v, buf, len);
        st_le64_put(v + 24, 1000); /* size smaller than the extents */
        reseal(v, len);
        ST_CHECK_ERR(manifest_parse(v, len, &p, &d), -EBADMSG);
        memcpy(v, buf, len);
        st_le64_put(v + 32, 1ull << 40);
        reseal(v, len);
        ST_CHECK_ERR(manifest_parse(v, len, &p, &d), -EBADMSG);
        memcpy(v, buf, len);
        st_le32_put(v + 48, 12345); /* chunker avg not a power of two */
        reseal(v, len);
        ST_CHECK_ERR(manifest_parse(v, len, &p, &d), -EBADMSG);
        free(v);
        free(buf);
        manifest_free(m);
        return ST_TEST_RESULT();
}
