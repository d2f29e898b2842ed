/* SPDX-License-Identifier: Apache-2.0 */
/* Internal helpers shared by chunker.c and split.c. */
#pragma once

#include <stellar/chunker.h>

void chunker_masks(const st_chunker_params *p, unsigned *ret_bits_small, unsigned *ret_bits_large);
uint64_t chunker_fp_window(const uint8_t *end);
/* Whether an aligned chunk starting at 'chunk' may end at length l (l a
 * multiple of align, chunk[l-64..l) readable). */
bool chunker_aligned_cut_at(const st_chunker_params *p, const uint8_t *chunk, size_t l,
                            unsigned bs, unsigned bl);
