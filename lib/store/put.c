/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Chunks that arrive whole from outside the store (a pull, a lazy fetch):
 * already verified by the caller, appended as pack records, indexed with no
 * references (the manifest that names them adds those). A writer appends to
 * the store's current pack; a SHARED process (the daemon fetching on
 * demand) appends only to a pack it created itself, and leaves 'dirty' so
 * the next writer's recovery indexes those records for good.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "store-internal.h"

static int own_pack(st_store *s, uint64_t need, store_pack **ret) {
        if (!(s->flags & ST_STORE_SHARED))
                return store_pack_for_append(s, need, ret);
        store_pack *p = s->own_pack ? store_pack_find(s, s->own_pack) : NULL;
        if (p && p->len + need <= PACK_TARGET_SIZE) {
                *ret = p;
                return 0;
        }
        int r = store_pack_create(s, &p);
        if (r < 0)
                return r;
        s->own_pack = p->id;
        *ret = p;
        return 0;
}

int store_put_chunks(st_store *s, const store_put *items, size_t n, uint64_t *ret_stored) {
        int r = store_writable(s);
        if (r < 0)
                return r;
        if (!(s->flags & ST_STORE_SHARED) && (r = store_exclusive(s)) < 0)
                return r;
        r = store_mark_dirty(s);
        if (r < 0)
                return r;
        enum { MAX = 64 };
        uint8_t hdrs[MAX][PACK_RECORD_HEADER_LEN];
        struct iovec iov[2 * MAX];
        uint64_t stored = 0;
        for (size_t at = 0; at < n;) {
                size_t k = ST_MIN(n - at, (size_t)MAX), m = 0;
                const store_put *take[MAX];
                pthread_rwlock_wrlock(&s->lock);
                uint64_t total = 0;
                for (size_t i = 0; i < k; i++) {
                        const store_put *it = &items[at + i];
                        if (index_find(s->idx, &it->hash) != INDEX_NONE)
                                continue; /* already there (another fetch won) */
                        bool dup = false;
                        for (size_t j = 0; j < m; j++)
                                dup |= !memcmp(take[j]->hash.b, it->hash.b, ST_DIGEST_LEN);
                        if (dup)
                                continue;
                        take[m++] = it;
                        total += PACK_RECORD_HEADER_LEN + (uint64_t)it->stored_len;
                }
                store_pack *pk = NULL;
                if (m > 0 && (r = own_pack(s, total, &pk)) < 0) {
                        pthread_rwlock_unlock(&s->lock);
                        return r;
                }
                uint64_t base = pk ? pk->len : 0;
                if (pk) {
                        pk->len += total; /* reserved: nothing points there yet */
                        pk->unsynced = true;
                }
                int fd = pk ? pk->fd : -1;
                uint32_t pack_id = pk ? pk->id : 0;
                pthread_rwlock_unlock(&s->lock);
                for (size_t j = 0; j < m; j++) {
                        pack_record rec = { .flags = take[j]->zstd ? PACK_FLAG_ZSTD : 0,
                                            .raw_len = take[j]->raw_len,
                                            .stored_len = take[j]->stored_len,
                                            .hash = take[j]->hash };
                        pack_record_encode(hdrs[j], &rec);
                        iov[2 * j] = (struct iovec){ hdrs[j], PACK_RECORD_HEADER_LEN };
                        iov[2 * j + 1] = (struct iovec){ (void *)take[j]->payload, take[j]->stored_len };
                }
                r = m ? st_pwritev_full(fd, iov, (int)(2 * m), base) : 0;
                if (r < 0) {
                        /* Cut what this group wrote (a full disk takes part of
                         * it), so the pack ends where the index does: what the
                         * caller counts as stored is then exactly what a later
                         * open finds. Not if another thread reserved after it. */
                        pthread_rwlock_wrlock(&s->lock);
                        pk = store_pack_find(s, pack_id);
                        if (pk && pk->len == base + total && ftruncate(fd, (off_t)base) == 0)
                                pk->len = base;
                        s->broken = !(s->flags & ST_STORE_SHARED);
                        pthread_rwlock_unlock(&s->lock);
                        return r;
                }
                uint64_t off;
                pthread_rwlock_wrlock(&s->lock);
                off = base;
                for (size_t j = 0; j < m; j++) {
                        index_entry e = { .pack = pack_id, .off = (uint32_t)off,
                                          .stored_len = take[j]->stored_len,
                                          .raw_len = take[j]->raw_len };
                        if (index_find(s->idx, &take[j]->hash) == INDEX_NONE &&
                            index_add(s->idx, &take[j]->hash, &e) == INDEX_NONE) {
                                pthread_rwlock_unlock(&s->lock);
                                return -ENOMEM;
                        }
                        s->unique_bytes += take[j]->raw_len;
                        s->stored_bytes += index_entry_stored(&e);
                        off += PACK_RECORD_HEADER_LEN + take[j]->stored_len;
                }
                pthread_rwlock_unlock(&s->lock);
                stored += total;
                at += k;
        }
        if (ret_stored)
                *ret_stored = stored;
        return 0;
}

int store_chunk_payload(st_store *s, const st_digest *id, store_chunk_buf *b, store_payload *ret) {
        int64_t n = store_read_chunk_local(s, id, b, NULL);
        if (n < 0)
                return (int)n;
        pack_record rec;
        int r = pack_record_decode(b->scratch, PACK_RECORD_HEADER_LEN, &rec, NULL);
        if (r < 0)
                return r;
        if (rec.flags & PACK_FLAG_FRAME) { /* in a frame: the raw bytes, for the caller to frame */
                *ret = (store_payload){ .data = b->out, .stored_len = (uint32_t)n,
                                        .raw_len = (uint32_t)n, .compressible = true };
                return 0;
        }
        *ret = (store_payload){ .data = b->scratch + PACK_RECORD_HEADER_LEN,
                                .stored_len = rec.stored_len, .raw_len = rec.raw_len,
                                .zstd = (rec.flags & PACK_FLAG_ZSTD) != 0,
                                .compressible = (rec.flags & PACK_FLAG_DEFERRED) != 0 };
        return 0;
}
