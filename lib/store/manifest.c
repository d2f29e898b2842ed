/* SPDX-License-Identifier: Apache-2.0 */
/* Manifest encoding and validation; see manifest.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stellar/hash.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/le.h"
#include "manifest.h"

manifest *manifest_new(uint64_t size, const st_chunker_params *chunker, const st_digest *parent) {
        manifest *m = calloc(1, sizeof *m);
        if (!m)
                return NULL;
        m->size = size;
        m->chunker = *chunker;
        if (parent)
                m->parent = *parent;
        return m;
}

/* Below this many extents a binary search is a few steps: no guide. */
#define MANIFEST_GUIDE_MIN 64

static void guide_drop(manifest *m) {
        free(m->guide);
        m->guide = NULL;
        m->guide_len = 0;
}

void manifest_guide(manifest *m) {
        guide_drop(m);
        if (m->n < MANIFEST_GUIDE_MIN || m->size == 0)
                return;
        /* The coarsest spacing that is still no wider than about two
         * extents: (size >> shift) < 2n. */
        unsigned shift = 12;
        while (shift < 63 && (m->size >> shift) >= 2 * (uint64_t)m->n)
                shift++;
        size_t len = (size_t)(m->size >> shift) + 1;
        uint32_t *g = malloc(len * sizeof *g);
        if (!g)
                return;
        size_t i = 0;
        for (size_t k = 0; k < len; k++) {
                uint64_t off = (uint64_t)k << shift;
                while (i < m->n && m->ext[i].off + m->ext[i].len <= off)
                        i++;
                g[k] = (uint32_t)i;
        }
        m->guide = g;
        m->guide_len = len;
        m->guide_shift = shift;
}

size_t manifest_find(const manifest *m, uint64_t off) {
        size_t lo = 0, hi = m->n;
        if (m->guide) {
                /* The answer for off lies between those for the guide's
                 * points on either side of it (manifest_find only grows with
                 * off). */
                uint64_t k = off >> m->guide_shift;
                if (k < m->guide_len) {
                        lo = m->guide[k];
                        if (k + 1 < m->guide_len)
                                hi = m->guide[k + 1];
                } else {
                        lo = m->guide[m->guide_len - 1];
                }
        }
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (m->ext[mid].off + m->ext[mid].len <= off)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

size_t manifest_find_near(const manifest *m, uint64_t off, size_t near) {
        for (size_t i = near; i < m->n && i <= near + 1; i++)
                if (m->ext[i].off + m->ext[i].len > off &&
                    (i == 0 || m->ext[i - 1].off + m->ext[i - 1].len <= off))
                        return i;
        return manifest_find(m, off);
}

manifest *manifest_free(manifest *m) {
        if (m) {
                free(m->guide);
                free(m->ext);
                free(m);
        }
        return NULL;
}

int manifest_append(manifest *m, uint64_t off, uint32_t len, const st_digest *hash) {
        if (len == 0 || off + len > m->size || off + len < off)
                return -EINVAL;
        if (manifest_hash_is_hole(hash) && !manifest_has_parent(m))
                return -EINVAL;
        guide_drop(m);
        if (m->n > 0 && m->ext[m->n - 1].off + m->ext[m->n - 1].len > off)
                return -EINVAL;
        if (m->n == m->cap) {
                size_t cap = m->cap ? m->cap * 2 : 256;
                if (cap > MANIFEST_EXTENTS_MAX)
                        return -EFBIG;
                manifest_extent *e = realloc(m->ext, cap * sizeof *e);
                if (!e)
                        return -ENOMEM;
                m->ext = e;
                m->cap = cap;
        }
        m->ext[m->n++] = (manifest_extent){ .off = off, .len = len, .hash = *hash };
        return 0;
}

int manifest_append_hole(manifest *m, uint64_t off, uint64_t len) {
        static const st_digest zero;
        while (len > 0) {
                manifest_extent *last = m->n ? &m->ext[m->n - 1] : NULL;
                if (last && manifest_hash_is_hole(&last->hash) && last->off + last->len == off &&
                    last->len < ST_CHUNK_MAX_LIMIT) {
                        uint32_t add = (uint32_t)ST_MIN(len, (uint64_t)(ST_CHUNK_MAX_LIMIT - last->len));
                        if (off + add > m->size)
                                return -EINVAL;
                        guide_drop(m);
                        last->len += add;
                        off += add;
                        len -= add;
                        continue;
                }
                uint32_t n = (uint32_t)ST_MIN(len, (uint64_t)ST_CHUNK_MAX_LIMIT);
                int r = manifest_append(m, off, n, &zero);
                if (r < 0)
                        return r;
                off += n;
                len -= n;
        }
        return 0;
}

int manifest_parse(const uint8_t *buf, size_t len, manifest **ret, st_diag *reterr) {
        if (len < MANIFEST_HEADER_LEN + MANIFEST_TRAILER_LEN)
                return st_diag_fail(reterr, NULL, len, "manifest truncated", -EBADMSG);
        if (memcmp(buf, MANIFEST_MAGIC, 8) != 0)
                return st_diag_fail(reterr, NULL, 0, "not a manifest (bad magic)", -EBADMSG);
        if (st_le32_get(buf + 8) != MANIFEST_VERSION)
                return st_diag_fail(reterr, NULL, 8, "unknown manifest format version", -EPROTONOSUPPORT);
        if (st_le32_get(buf + 12) != MANIFEST_HEADER_LEN)
                return st_diag_fail(reterr, NULL, 12, "bad manifest header length", -EBADMSG);
        uint64_t n = st_le64_get(buf + 32);
        if (n > MANIFEST_EXTENTS_MAX)
                return st_diag_fail(reterr, NULL, 32, "extent count out of range", -EBADMSG);
        uint64_t want = MANIFEST_HEADER_LEN + n * MANIFEST_EXTENT_LEN + MANIFEST_TRAILER_LEN;
        if (len != want)
                return st_diag_fail(reterr, NULL, ST_MIN(len, want - MANIFEST_TRAILER_LEN),
                                    "manifest length does not match its extent count", -EBADMSG);
        st_digest sum;
        st_hash(buf, len - MANIFEST_TRAILER_LEN, &sum);
        if (memcmp(sum.b, buf + len - MANIFEST_TRAILER_LEN, 32) != 0)
                return st_diag_fail(reterr, NULL, len - MANIFEST_TRAILER_LEN,
                                    "manifest checksum mismatch", -EBADMSG);
        if (st_le32_get(buf + 16) != 0 || st_le32_get(buf + 20) != 0)
                return st_diag_fail(reterr, NULL, 16, "unknown manifest flags", -EBADMSG);
        uint64_t size = st_le64_get(buf + 24);
        if (size > MANIFEST_SIZE_MAX)
                return st_diag_fail(reterr, NULL, 24, "image size out of range", -EBADMSG);
        st_chunker_params cp = {
                .align = st_le32_get(buf + 40),
                .min_size = st_le32_get(buf + 44),
                .avg_size = st_le32_get(buf + 48),
                .max_size = st_le32_get(buf + 52),
        };
        if (st_chunker_params_check(&cp) < 0)
                return st_diag_fail(reterr, NULL, 40, "bad chunker parameters", -EBADMSG);
        st_digest parent;
        memcpy(parent.b, buf + 64, 32);

        manifest *m = manifest_new(size, &cp, &parent);
        if (!m)
                return -ENOMEM;
        m->ctime_ns = st_le64_get(buf + 56);
        if (n > 0) {
                m->ext = malloc((size_t)n * sizeof *m->ext);
                if (!m->ext) {
                        manifest_free(m);
                        return -ENOMEM;
                }
                m->cap = (size_t)n;
        }
        const uint8_t *p = buf + MANIFEST_HEADER_LEN;
        for (uint64_t i = 0; i < n; i++, p += MANIFEST_EXTENT_LEN) {
                uint64_t off = st_le64_get(p);
                uint32_t l = st_le32_get(p + 8);
                uint64_t at = MANIFEST_HEADER_LEN + i * MANIFEST_EXTENT_LEN;
                st_digest h;
                memcpy(h.b, p + 12, 32);
                const char *bad = NULL;
                if (l == 0 || l > ST_CHUNK_MAX_LIMIT)
                        bad = "extent length out of range";
                else if (off > size || l > size - off)
                        bad = "extent past the end of the image";
                else if (i > 0 && m->ext[i - 1].off + m->ext[i - 1].len > off)
                        bad = "extents overlap or are not sorted";
                else if (!manifest_has_parent(m) && manifest_hash_is_hole(&h))
                        bad = "hole extent in a manifest without a parent";
                if (bad) {
                        manifest_free(m);
                        return st_diag_fail(reterr, NULL, at, bad, -EBADMSG);
                }
                m->ext[i].off = off;
                m->ext[i].len = l;
                m->ext[i].hash = h;
        }
        m->n = (size_t)n;
        manifest_guide(m);
        *ret = m;
        return 0;
}

int manifest_encode(const manifest *m, uint8_t **ret, size_t *ret_len) {
        size_t len = MANIFEST_HEADER_LEN + m->n * MANIFEST_EXTENT_LEN + MANIFEST_TRAILER_LEN;
        uint8_t *buf = calloc(1, len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, MANIFEST_MAGIC, 8);
        st_le32_put(buf + 8, MANIFEST_VERSION);
        st_le32_put(buf + 12, MANIFEST_HEADER_LEN);
        st_le64_put(buf + 24, m->size);
        st_le64_put(buf + 32, m->n);
        st_le32_put(buf + 40, m->chunker.align);
        st_le32_put(buf + 44, m->chunker.min_size);
        st_le32_put(buf + 48, m->chunker.avg_size);
        st_le32_put(buf + 52, m->chunker.max_size);
        st_le64_put(buf + 56, m->ctime_ns);
        memcpy(buf + 64, m->parent.b, 32);
        uint8_t *p = buf + MANIFEST_HEADER_LEN;
        for (size_t i = 0; i < m->n; i++, p += MANIFEST_EXTENT_LEN) {
                st_le64_put(p, m->ext[i].off);
                st_le32_put(p + 8, m->ext[i].len);
                memcpy(p + 12, m->ext[i].hash.b, 32);
        }
        st_digest sum;
        st_hash(buf, len - MANIFEST_TRAILER_LEN, &sum);
        memcpy(buf + len - MANIFEST_TRAILER_LEN, sum.b, 32);
        *ret = buf;
        *ret_len = len;
        return 0;
}
