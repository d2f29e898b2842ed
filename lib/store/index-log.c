/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 'index.log': what changed in the index since the 'index' file was
 * written, one checked batch per operation, so that an operation costs what
 * it changes (its new chunks and the counts it moved), not the whole index.
 * The log names the index it extends by that file's trailing BLAKE3; a log
 * of another index (a crash between a compaction's two renames) is ignored.
 * Byte layout: docs/formats/index.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stellar/hash.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "store-internal.h"

#define LOG_MAGIC "STIXLOG\0"
#define LOG_VERSION 2u /* 1: entries of index format 1 (no slot) */
#define LOG_HEADER_LEN INDEX_LOG_HEADER_LEN
#define BATCH_MAGIC "STXB"
#define BATCH_HEADER_LEN 32u
#define BATCH_PACK_LEN 16u
#define BATCH_COUNT_LEN 8u
#define BATCH_TRAILER_LEN 32u
/* A log longer than this share of the index (or 4 MiB) is folded into it. */
#define LOG_COMPACT_MIN (4u << 20)

void index_log_note(st_store *s, uint32_t id) {
        if (s->idx_full || id >= s->idx_saved)
                return; /* written whole, or a new entry: written anyway */
        if (s->changed_bits && (s->changed_bits[id / 8] >> (id % 8)) & 1)
                return;
        if (!s->changed_bits) {
                s->changed_bits = calloc((size_t)s->idx_saved / 8 + 1, 1);
                if (!s->changed_bits) {
                        s->idx_full = true;
                        return;
                }
        }
        if (s->n_changed == s->cap_changed) {
                size_t cap = s->cap_changed ? s->cap_changed * 2 : 256;
                uint32_t *v = realloc(s->changed, cap * sizeof *v);
                if (!v) {
                        s->idx_full = true;
                        return;
                }
                s->changed = v;
                s->cap_changed = cap;
        }
        s->changed[s->n_changed++] = id;
        s->changed_bits[id / 8] |= (uint8_t)(1u << (id % 8));
}

void index_log_saved(st_store *s) {
        s->idx_saved = index_count(s->idx);
        s->idx_full = s->index_old;
        free(s->changed_bits);
        s->changed_bits = NULL;
        s->n_changed = 0;
        for (size_t i = 0; i < s->n_packs; i++)
                s->packs[i].logged_len = s->packs[i].len;
        s->logged_packs = s->n_packs;
        s->logged_next_pack = s->next_pack_id;
}

static void log_header(uint8_t hdr[INDEX_LOG_HEADER_LEN], const uint8_t base[32], uint32_t version) {
        memset(hdr, 0, LOG_HEADER_LEN);
        memcpy(hdr, LOG_MAGIC, 8);
        st_le32_put(hdr + 8, version);
        st_le32_put(hdr + 12, LOG_HEADER_LEN);
        memcpy(hdr + 32, base, 32);
}

void index_log_header(uint8_t hdr[INDEX_LOG_HEADER_LEN], const uint8_t base[32]) {
        log_header(hdr, base, LOG_VERSION);
}

int index_log_reset(st_store *s) {
        if (s->log_fd >= 0)
                close(s->log_fd);
        s->log_fd = -1;
        uint8_t hdr[LOG_HEADER_LEN];
        index_log_header(hdr, s->index_sum);
        int r = st_write_atomic(s->dirfd, "index.log", hdr, sizeof hdr);
        if (r < 0)
                return r;
        s->log_fd = openat(s->dirfd, "index.log", O_RDWR | O_CLOEXEC);
        if (s->log_fd < 0)
                return -errno;
        s->log_len = LOG_HEADER_LEN;
        return 0;
}

bool index_log_can_append(const st_store *s, uint64_t index_len) {
        if (s->idx_full || s->log_fd < 0 || index_count(s->idx) < s->idx_saved ||
            s->n_packs < s->logged_packs)
                return false;
        uint64_t limit = ST_MAX((uint64_t)LOG_COMPACT_MIN, index_len / 2);
        return s->log_len <= limit;
}

int index_log_batch(const st_store *s, uint8_t **ret, size_t *ret_len) {
        *ret = NULL;
        *ret_len = 0;
        uint32_t n = index_count(s->idx);
        size_t n_packs = 0;
        for (size_t i = 0; i < s->n_packs; i++)
                if (i >= s->logged_packs || s->packs[i].len != s->packs[i].logged_len)
                        n_packs++;
        size_t n_new = n - s->idx_saved;
        if (n_packs == 0 && n_new == 0 && s->n_changed == 0 &&
            s->next_pack_id == s->logged_next_pack)
                return 0;
        size_t payload = n_packs * BATCH_PACK_LEN + n_new * INDEX_FILE_ENTRY_LEN +
                         s->n_changed * BATCH_COUNT_LEN;
        size_t len = BATCH_HEADER_LEN + payload + BATCH_TRAILER_LEN;
        if (payload > UINT32_MAX)
                return -E2BIG;
        uint8_t *buf = calloc(1, len);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, BATCH_MAGIC, 4);
        st_le32_put(buf + 4, (uint32_t)payload);
        st_le32_put(buf + 8, s->next_pack_id);
        st_le32_put(buf + 12, s->idx_saved);
        st_le32_put(buf + 16, (uint32_t)n_packs);
        st_le32_put(buf + 20, (uint32_t)n_new);
        st_le32_put(buf + 24, (uint32_t)s->n_changed);
        uint8_t *p = buf + BATCH_HEADER_LEN;
        for (size_t i = 0; i < s->n_packs; i++)
                if (i >= s->logged_packs || s->packs[i].len != s->packs[i].logged_len) {
                        st_le32_put(p, s->packs[i].id);
                        st_le64_put(p + 8, s->packs[i].len);
                        p += BATCH_PACK_LEN;
                }
        for (uint32_t id = s->idx_saved; id < n; id++, p += INDEX_FILE_ENTRY_LEN)
                index_file_entry_encode(index_get(s->idx, id), p);
        for (size_t i = 0; i < s->n_changed; i++, p += BATCH_COUNT_LEN) {
                st_le32_put(p, s->changed[i]);
                st_le32_put(p + 4, index_get(s->idx, s->changed[i])->refs);
        }
        st_digest sum;
        st_hash(buf, len - BATCH_TRAILER_LEN, &sum);
        memcpy(p, sum.b, BATCH_TRAILER_LEN);
        *ret = buf;
        *ret_len = len;
        return 0;
}

int index_log_append(st_store *s) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = index_log_batch(s, &buf, &len);
        if (r < 0 || !buf)
                return r;
        r = st_pwrite_full(s->log_fd, buf, len, s->log_len);
        if (r == 0)
                r = ST_ERRNO(fdatasync(s->log_fd));
        if (r < 0) {
                /* What may be on disk past log_len is no batch anyone trusts
                 * (it is unacknowledged): the next write is a whole index. */
                s->idx_full = true;
                return r;
        }
        s->log_len += len;
        index_log_saved(s);
        return 0;
}

/* One batch at buf (len bytes left in the file), checked and applied.
 * Returns its length, 0 for a torn end (short or not checking), or -EBADMSG
 * with *why for a batch that checks but cannot be applied (damage). */
static int64_t apply_batch(st_store *s, const uint8_t *buf, size_t len, uint32_t version,
                           const char **why) {
        size_t entry_len = index_file_entry_len(version);
        if (len < BATCH_HEADER_LEN + BATCH_TRAILER_LEN || memcmp(buf, BATCH_MAGIC, 4) != 0)
                return 0;
        uint64_t payload = st_le32_get(buf + 4);
        uint64_t total = BATCH_HEADER_LEN + payload + BATCH_TRAILER_LEN;
        if (total > len)
                return 0;
        st_digest sum;
        st_hash(buf, (size_t)(total - BATCH_TRAILER_LEN), &sum);
        if (memcmp(sum.b, buf + total - BATCH_TRAILER_LEN, BATCH_TRAILER_LEN) != 0)
                return 0;
        uint32_t next_pack = st_le32_get(buf + 8);
        uint32_t first = st_le32_get(buf + 12);
        uint64_t n_packs = st_le32_get(buf + 16), n_new = st_le32_get(buf + 20),
                 n_counts = st_le32_get(buf + 24);
        if (n_packs * BATCH_PACK_LEN + n_new * entry_len + n_counts * BATCH_COUNT_LEN != payload ||
            st_le32_get(buf + 28) != 0) {
                *why = "index.log batch lengths do not add up";
                return -EBADMSG;
        }
        if (first != index_count(s->idx)) {
                *why = "index.log batch does not follow the entries before it";
                return -EBADMSG;
        }
        if (next_pack < s->next_pack_id) {
                *why = "index.log batch moves the next pack id back";
                return -EBADMSG;
        }
        s->next_pack_id = next_pack;
        const uint8_t *p = buf + BATCH_HEADER_LEN;
        for (uint64_t i = 0; i < n_packs; i++, p += BATCH_PACK_LEN) {
                uint32_t id = st_le32_get(p);
                uint64_t plen = st_le64_get(p + 8);
                store_pack *pk = store_pack_find(s, id);
                if (st_le32_get(p + 4) != 0 || id >= next_pack || plen < PACK_HEADER_LEN ||
                    plen > PACK_MAX_SIZE || (pk && plen < pk->len) ||
                    (!pk && s->n_packs && id < s->packs[s->n_packs - 1].id)) {
                        *why = "bad pack row in index.log";
                        return -EBADMSG;
                }
                if (pk) {
                        pk->len = plen;
                        continue;
                }
                store_pack *v = realloc(s->packs, (s->n_packs + 1) * sizeof *v);
                if (!v)
                        return -ENOMEM;
                s->packs = v;
                v[s->n_packs++] = (store_pack){ .id = id, .len = plen, .fd = -1 };
        }
        for (uint64_t i = 0; i < n_new; i++, p += entry_len) {
                int r = index_file_entry_load(s, p, version, why);
                if (r < 0)
                        return r;
        }
        uint32_t n = index_count(s->idx);
        for (uint64_t i = 0; i < n_counts; i++, p += BATCH_COUNT_LEN) {
                uint32_t id = st_le32_get(p);
                if (id >= n) {
                        *why = "count row in index.log names no entry";
                        return -EBADMSG;
                }
                index_get(s->idx, id)->refs = st_le32_get(p + 4);
        }
        return (int64_t)total;
}

int index_log_apply(st_store *s, const uint8_t *buf, size_t len, size_t *ret_end,
                    st_diag *reterr) {
        *ret_end = 0;
        uint8_t hdr[LOG_HEADER_LEN], old[LOG_HEADER_LEN];
        index_log_header(hdr, s->index_sum);
        log_header(old, s->index_sum, 1);
        uint32_t version = LOG_VERSION;
        if (len >= LOG_HEADER_LEN && memcmp(buf, old, LOG_HEADER_LEN) == 0) {
                version = 1;
                s->index_old = true; /* the next write makes it whole in today's format */
        } else if (len < LOG_HEADER_LEN || memcmp(buf, hdr, LOG_HEADER_LEN) != 0) {
                /* Another index's log (or a torn reset): what it held is in
                 * the index already, or in the packs for recovery to find. */
                return 0;
        }
        size_t off = LOG_HEADER_LEN;
        while (off < len) {
                const char *why = NULL;
                int64_t k = apply_batch(s, buf + off, len - off, version, &why);
                if (k < 0)
                        return st_diag_fail(reterr, "index.log", off, why ? why : "out of memory",
                                            (int)k);
                if (k == 0) {
                        /* The torn end of a batch being written at a crash
                         * (the store is dirty then), or damage: either way
                         * recovery reads the packs past what is listed. */
                        (void)st_diag_fail(reterr, "index.log", off,
                                           "a batch that does not check (the torn end of a crash, "
                                           "or damage)",
                                           -EBADMSG);
                        return 1;
                }
                off += (size_t)k;
        }
        *ret_end = off;
        return 0;
}

int index_log_load(st_store *s, st_diag *reterr) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = st_read_file(s->dirfd, "index.log", SIZE_MAX, &buf, &len);
        if (r == -ENOENT)
                return 0; /* nothing since the index (or a store before logs) */
        if (r < 0)
                return st_diag_fail(reterr, "index.log", ST_DIAG_NO_OFFSET, "cannot read", r);
        size_t end;
        r = index_log_apply(s, buf, len, &end, reterr);
        if (r != 0 || end == 0)
                return r; /* (end 0: another index's log, ignored; rewritten on the next write) */
        s->log_len = end;
        if (store_files_writable(s)) {
                s->log_fd = openat(s->dirfd, "index.log", O_RDWR | O_CLOEXEC);
                if (s->log_fd < 0)
                        return st_diag_fail(reterr, "index.log", ST_DIAG_NO_OFFSET, "cannot open",
                                            -errno);
        }
        return 0;
}
