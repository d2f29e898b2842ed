/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FastCDC cut-point search (Xia et al., USENIX ATC 2016): a gear rolling hash
 * fp = (fp << 1) + gear[byte], a cut where the top bits of fp are zero, a
 * stricter mask below the average size and a looser one above it
 * ("normalized chunking"), and no search before the minimum size.
 *
 * Because fp shifts left by one per byte, after 64 bytes it depends only on the
 * last 64 bytes. The aligned mode uses that: it evaluates fp only at 4 KiB
 * boundaries, from the 64 bytes before each one, which gives exactly the value
 * the rolling hash would have there at a sixty-fourth of the cost.
 *
 * Zero-block and hole handling lives in split.c, not here.
 */
#include <errno.h>

#include <stellar/chunker.h>

#include "chunk-internal.h"
#include "gear.h"

static unsigned log2u(uint32_t v) {
        unsigned r = 0;
        while (v >>= 1)
                r++;
        return r;
}

int st_chunker_params_check(const st_chunker_params *p) {
        if (!p)
                return -EINVAL;
        if (p->align != 1 && p->align != ST_CHUNK_ALIGN)
                return -EINVAL;
        if (p->avg_size == 0 || (p->avg_size & (p->avg_size - 1)) != 0)
                return -EINVAL;
        if (p->min_size < ST_CHUNK_MIN_LIMIT || p->min_size > p->avg_size ||
            p->avg_size > p->max_size || p->max_size > ST_CHUNK_MAX_LIMIT)
                return -EINVAL;
        if (p->align > 1 && (p->min_size % p->align || p->avg_size % p->align ||
                             p->max_size % p->align))
                return -EINVAL;
        return 0;
}

void chunker_masks(const st_chunker_params *p, unsigned *ret_bits_small, unsigned *ret_bits_large) {
        /* Candidates come every 'align' bytes, so a cut needs log2(avg/align) bits
         * to average 'avg'. Byte mode uses normalization level 2 (two bits either
         * side), aligned mode level 1: it has few candidates per chunk, and a
         * wider spread would push too many chunks to min or max. */
        unsigned bits = log2u(p->avg_size / p->align);
        unsigned nc = p->align == 1 ? 2 : 1;
        *ret_bits_small = bits + nc;
        *ret_bits_large = bits > nc ? bits - nc : 0;
}

static inline bool fp_cut(uint64_t fp, unsigned bits) {
        return bits == 0 || (fp >> (64 - bits)) == 0;
}

static size_t cut_bytes(const st_chunker_params *p, const uint8_t *data, size_t len, bool eof) {
        unsigned bs, bl;
        chunker_masks(p, &bs, &bl);

        size_t n = len < p->max_size ? len : p->max_size;
        if (n <= p->min_size)
                return (len >= p->max_size || eof) ? n : 0;

        size_t normal = n < p->avg_size ? n : p->avg_size;
        uint64_t fp = 0;
        size_t i = p->min_size - ST_CHUNK_MIN_LIMIT; /* warm the 64-byte window */
        for (; i < p->min_size; i++)
                fp = (fp << 1) + st_gear_table[data[i]];
        /* Chunk length is i + 1 when byte i completes a cut. */
        for (; i + 1 <= normal; i++) {
                fp = (fp << 1) + st_gear_table[data[i]];
                if (fp_cut(fp, bs) && i + 1 > p->min_size)
                        return i + 1;
        }
        for (; i < n; i++) {
                fp = (fp << 1) + st_gear_table[data[i]];
                if (fp_cut(fp, bl))
                        return i + 1;
        }
        if (n == p->max_size || eof)
                return n;
        return 0;
}

uint64_t chunker_fp_window(const uint8_t *end) {
        uint64_t fp = 0;
        for (const uint8_t *q = end - 64; q < end; q++)
                fp = (fp << 1) + st_gear_table[*q];
        return fp;
}

bool chunker_aligned_cut_at(const st_chunker_params *p, const uint8_t *chunk, size_t l,
                            unsigned bs, unsigned bl) {
        if (l < p->min_size)
                return false;
        if (l >= p->max_size)
                return true;
        return fp_cut(chunker_fp_window(chunk + l), l <= p->avg_size ? bs : bl);
}

static size_t cut_aligned(const st_chunker_params *p, const uint8_t *data, size_t len, bool eof) {
        unsigned bs, bl;
        chunker_masks(p, &bs, &bl);
        size_t n = len < p->max_size ? len : p->max_size;
        for (size_t l = p->align; l <= n; l += p->align)
                if (chunker_aligned_cut_at(p, data, l, bs, bl))
                        return l;
        if (n == p->max_size || eof)
                return n;
        return 0;
}

size_t st_chunker_cut(const st_chunker_params *p, const uint8_t *data, size_t len, bool eof) {
        if (len == 0)
                return 0;
        if (p->align == 1)
                return cut_bytes(p, data, len, eof);
        return cut_aligned(p, data, len, eof);
}
