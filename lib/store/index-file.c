/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The 'index' file: the in-RAM index and pack table as of the last clean
 * operation, with a BLAKE3 trailer. Byte layout: docs/formats/index.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stellar/hash.h>

#include "../util/diag.h"
#include "../util/le.h"
#include "store-internal.h"

void index_file_entry_encode(const index_entry *e, uint8_t *p) {
        memcpy(p, e->prefix, INDEX_PREFIX_LEN);
        st_le32_put(p + 16, e->pack);
        st_le32_put(p + 20, e->off);
        st_le32_put(p + 24, e->stored_len);
        st_le32_put(p + 28, e->raw_len);
        st_le32_put(p + 32, e->refs);
        st_le32_put(p + 36, e->slot);
}

size_t index_file_entry_len(uint32_t version) {
        return version == 1 ? INDEX_FILE_ENTRY_LEN_V1 : INDEX_FILE_ENTRY_LEN;
}

int index_file_entry_load(st_store *s, const uint8_t *p, uint32_t version, const char **why) {
        index_entry e;
        memcpy(e.prefix, p, INDEX_PREFIX_LEN);
        e.pack = st_le32_get(p + 16);
        e.off = st_le32_get(p + 20);
        e.stored_len = st_le32_get(p + 24);
        e.raw_len = st_le32_get(p + 28);
        e.refs = st_le32_get(p + 32);
        e.slot = version == 1 ? 0 : st_le32_get(p + 36);
        store_pack *pk = store_pack_find(s, e.pack);
        if (!pk || e.off < PACK_HEADER_LEN ||
            (uint64_t)e.off + PACK_RECORD_HEADER_LEN + e.stored_len > pk->len || e.raw_len == 0 ||
            e.raw_len > ST_CHUNK_MAX_LIMIT || e.slot > PACK_FRAME_MAX_CHUNKS) {
                *why = "index entry out of range";
                return -EBADMSG;
        }
        st_digest h;
        memcpy(h.b, e.prefix, INDEX_PREFIX_LEN);
        memset(h.b + INDEX_PREFIX_LEN, 0, ST_DIGEST_LEN - INDEX_PREFIX_LEN);
        if (index_find(s->idx, &h) != INDEX_NONE) {
                *why = "duplicate index entry";
                return -EBADMSG;
        }
        if (index_add_prefix(s->idx, &e) == INDEX_NONE)
                return -ENOMEM;
        s->unique_bytes += e.raw_len; /* (what store_recount_totals sums) */
        s->stored_bytes += index_entry_stored(&e);
        return 0;
}

int index_file_encode(const st_store *s, uint8_t **ret, size_t *ret_len) {
        uint32_t n = index_count(s->idx);
        size_t len = INDEX_FILE_HEADER_LEN + s->n_packs * INDEX_FILE_PACK_LEN +
                     (size_t)n * INDEX_FILE_ENTRY_LEN + INDEX_FILE_TRAILER_LEN;
        uint8_t *buf = calloc(1, len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, INDEX_FILE_MAGIC, 8);
        st_le32_put(buf + 8, INDEX_FILE_VERSION);
        st_le32_put(buf + 12, INDEX_FILE_HEADER_LEN);
        st_le32_put(buf + 16, (uint32_t)s->n_packs);
        st_le32_put(buf + 20, s->next_pack_id);
        st_le64_put(buf + 24, n);
        uint8_t *p = buf + INDEX_FILE_HEADER_LEN;
        for (size_t i = 0; i < s->n_packs; i++, p += INDEX_FILE_PACK_LEN) {
                st_le32_put(p, s->packs[i].id);
                st_le64_put(p + 8, s->packs[i].len);
        }
        for (uint32_t id = 0; id < n; id++, p += INDEX_FILE_ENTRY_LEN)
                index_file_entry_encode(index_get(s->idx, id), p);
        st_digest sum;
        st_hash(buf, len - INDEX_FILE_TRAILER_LEN, &sum);
        memcpy(buf + len - INDEX_FILE_TRAILER_LEN, sum.b, 32);
        *ret = buf;
        *ret_len = len;
        return 0;
}

int index_file_load(st_store *s, const uint8_t *buf, size_t len, st_diag *reterr) {
        if (len < INDEX_FILE_HEADER_LEN + INDEX_FILE_TRAILER_LEN)
                return st_diag_fail(reterr, NULL, len, "index truncated", -EBADMSG);
        if (memcmp(buf, INDEX_FILE_MAGIC, 8) != 0)
                return st_diag_fail(reterr, NULL, 0, "not an index (bad magic)", -EBADMSG);
        uint32_t version = st_le32_get(buf + 8);
        if (version != 1 && version != INDEX_FILE_VERSION)
                return st_diag_fail(reterr, NULL, 8, "unknown index format version", -EPROTONOSUPPORT);
        size_t entry_len = index_file_entry_len(version);
        if (st_le32_get(buf + 12) != INDEX_FILE_HEADER_LEN)
                return st_diag_fail(reterr, NULL, 12, "bad index header length", -EBADMSG);
        for (size_t i = 32; i < INDEX_FILE_HEADER_LEN; i++)
                if (buf[i] != 0)
                        return st_diag_fail(reterr, NULL, i, "reserved index header bytes are not zero",
                                            -EBADMSG);
        uint64_t n_packs = st_le32_get(buf + 16);
        uint32_t next_id = st_le32_get(buf + 20);
        uint64_t n = st_le64_get(buf + 24);
        if (n >= INDEX_NONE - 1)
                return st_diag_fail(reterr, NULL, 24, "entry count out of range", -EBADMSG);
        if ((uint64_t)len != INDEX_FILE_HEADER_LEN + n_packs * INDEX_FILE_PACK_LEN +
                                     n * entry_len + INDEX_FILE_TRAILER_LEN)
                return st_diag_fail(reterr, NULL, 16, "index length does not match its counts", -EBADMSG);
        st_digest sum;
        st_hash(buf, len - INDEX_FILE_TRAILER_LEN, &sum);
        if (memcmp(sum.b, buf + len - INDEX_FILE_TRAILER_LEN, 32) != 0)
                return st_diag_fail(reterr, NULL, len - INDEX_FILE_TRAILER_LEN, "index checksum mismatch",
                              -EBADMSG);

        const uint8_t *p = buf + INDEX_FILE_HEADER_LEN;
        store_pack *packs = n_packs ? calloc((size_t)n_packs, sizeof *packs) : NULL;
        if (n_packs && !packs)
                return -ENOMEM;
        for (uint64_t i = 0; i < n_packs; i++, p += INDEX_FILE_PACK_LEN) {
                packs[i] = (store_pack){ .id = st_le32_get(p), .len = st_le64_get(p + 8), .fd = -1 };
                if (st_le32_get(p + 4) != 0 || (i > 0 && packs[i].id <= packs[i - 1].id) || packs[i].id >= next_id ||
                    packs[i].len < PACK_HEADER_LEN || packs[i].len > PACK_MAX_SIZE) {
                        free(packs);
                        return st_diag_fail(reterr, NULL, (uint64_t)(p - buf), "bad pack table entry", -EBADMSG);
                }
        }
        s->packs = packs;
        s->n_packs = (size_t)n_packs;
        s->next_pack_id = next_id;
        for (uint64_t i = 0; i < n; i++, p += entry_len) {
                const char *why = NULL;
                int r = index_file_entry_load(s, p, version, &why);
                if (r < 0)
                        return r == -ENOMEM ? r
                                            : st_diag_fail(reterr, NULL, (uint64_t)(p - buf), why,
                                                           r);
        }
        memcpy(s->index_sum, buf + len - INDEX_FILE_TRAILER_LEN, 32);
        s->index_old = version != INDEX_FILE_VERSION; /* then the next write makes it whole */
        return 0;
}
