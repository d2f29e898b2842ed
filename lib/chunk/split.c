/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Splits a stream into pieces: chunks to store, and holes of zeros that cost
 * nothing. In aligned mode a chunk never holds an all-zero 4 KiB block: the
 * chunk ends before it, so a region the filesystem reports as a hole
 * (SEEK_HOLE) and the same region written out as zeros split identically.
 */
#include <errno.h>
#include <string.h>

#include <stellar/chunker.h>

#include "chunk-internal.h"

bool st_is_zero(const void *data, size_t len) {
        const uint8_t *p = data;
        /* Check 16 bytes by hand, then compare the buffer with itself shifted:
         * memcmp is vectorised by libc and this needs no zero page. */
        size_t head = len < 16 ? len : 16;
        for (size_t i = 0; i < head; i++)
                if (p[i])
                        return false;
        return len <= 16 || memcmp(p, p + 16, len - 16) == 0;
}

static int split_aligned(const st_chunker_params *p, uint64_t pos, const uint8_t *data,
                         size_t len, bool eof, st_piece *ret) {
        size_t first = p->align - (size_t)(pos % p->align);
        size_t blk = first < len ? first : len;
        if (blk < first && !eof)
                return -EAGAIN;

        if (st_is_zero(data, blk)) {
                size_t l = blk;
                while (l < len) {
                        size_t b = len - l < p->align ? len - l : p->align;
                        if (b < p->align && !eof)
                                break;
                        if (!st_is_zero(data + l, b))
                                break;
                        l += b;
                }
                *ret = (st_piece){ .len = l, .hole = true };
                return 0;
        }

        /* A chunk that does not start on a block boundary (only after a partial
         * tail, which cannot happen before eof) is cut at the next boundary. */
        if (first != p->align) {
                *ret = (st_piece){ .len = blk, .hole = false };
                return 0;
        }

        unsigned bs, bl;
        chunker_masks(p, &bs, &bl);
        size_t n = len < p->max_size ? len : p->max_size;
        size_t l = p->align;
        for (; l + p->align <= n; l += p->align) {
                if (st_is_zero(data + l, p->align))
                        break; /* the next block is zero: end the chunk before it */
                if (chunker_aligned_cut_at(p, data, l, bs, bl))
                        break;
        }
        if (l + p->align > n) {
                /* Ran out of full blocks to look at. */
                if (n == p->max_size)
                        l = n;
                else if (!eof)
                        return -EAGAIN;
                else if (l < n && st_is_zero(data + l, n - l))
                        ; /* a zero partial tail becomes its own hole */
                else if (l < n && chunker_aligned_cut_at(p, data, l, bs, bl))
                        ;
                else
                        l = n;
        }
        *ret = (st_piece){ .len = l, .hole = false };
        return 0;
}

int st_split_next(const st_chunker_params *p, uint64_t pos, const uint8_t *data, size_t len,
                  bool eof, st_piece *ret) {
        if (len == 0)
                return eof ? -ENODATA : -EAGAIN;
        if (p->align > 1)
                return split_aligned(p, pos, data, len, eof, ret);
        size_t l = st_chunker_cut(p, data, len, eof);
        if (l == 0)
                return -EAGAIN;
        *ret = (st_piece){ .len = l, .hole = st_is_zero(data, l) };
        return 0;
}
