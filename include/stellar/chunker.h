/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FastCDC content-defined chunking (gear rolling hash, normalized chunking).
 *
 * Two modes. Byte-granular (align = 1) cuts anywhere, for file streams and tar
 * layers. Aligned (align = 4096) cuts only at multiples of 4 KiB from the start
 * of the stream, for disk and memory images whose filesystems place data on
 * 4 KiB blocks; in that mode all-zero 4 KiB blocks are always cut out as holes.
 *
 * Cut points are a stable format: changing them destroys dedup against every
 * existing store. tests/unit/test-chunker.c pins them against golden values.
 */
#pragma once

#include <stellar/common.h>

#define ST_CHUNK_ALIGN 4096u
#define ST_CHUNK_MIN_LIMIT 64u
#define ST_CHUNK_MAX_LIMIT (16u << 20) /* no chunk is ever larger than 16 MiB */

typedef struct st_chunker_params {
        uint32_t align; /* 1 (byte-granular) or 4096 */
        uint32_t min_size;
        uint32_t avg_size; /* a power of two */
        uint32_t max_size;
} st_chunker_params;

/* Defaults chosen by measurement (bench/RESULTS.md, "store growth"): on two
 * Debian root images, B after A, avg 4K (realized mean about 6.4 KiB: the
 * normalization point is not the mean) stores 1.10x the ideal of distinct new
 * 4 KiB blocks; avg 8K 1.18x, 16K 1.29x, 32K 1.40x. The goal is 1.15x. */
#define ST_CHUNKER_IMAGE_DEFAULT ((st_chunker_params){ 4096, 4096, 4096, 16384 })
#define ST_CHUNKER_STREAM_DEFAULT ((st_chunker_params){ 1, 16384, 65536, 262144 })

/* Returns 0 if the parameters are usable, -EINVAL otherwise. */
ST_API int st_chunker_params_check(const st_chunker_params *p);

/*
 * Length of the next chunk at data[0..len): a cut point in (0, len], or 0 if
 * more data is needed to decide (len < max_size and !eof). Pure function of
 * its inputs; thread-safe. Does not look for zero blocks (see st_split_next).
 */
ST_API size_t st_chunker_cut(const st_chunker_params *p, const uint8_t *data, size_t len,
                             bool eof);

/* A piece of a stream: a chunk of data, or a hole of zeros. */
typedef struct st_piece {
        uint64_t len;
        bool hole;
} st_piece;

/*
 * Next piece at data[0..len) of a stream at stream offset 'pos' (used only to
 * keep 4 KiB alignment). Aligned mode: a run of all-zero 4 KiB blocks is a
 * hole, and a chunk never contains an all-zero block. Byte mode: a chunk that
 * is all zeros is reported as a hole. Returns 0 and sets *ret, or -EAGAIN if
 * more data is needed (then call again with more data or eof).
 */
ST_API int st_split_next(const st_chunker_params *p, uint64_t pos, const uint8_t *data,
                         size_t len, bool eof, st_piece *ret);

/* True if len bytes at data are all zero. */
ST_API bool st_is_zero(const void *data, size_t len);
