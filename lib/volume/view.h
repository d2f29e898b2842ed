/* SPDX-License-Identifier: Apache-2.0 */
/* The committed content of a volume: a manifest chain read as one address
 * space, run by run. */
#pragma once

#include <stdint.h>

#include "../store/store-api.h"
#include "../util/cleanup.h"

typedef enum view_run_kind {
        RUN_ZERO,
        RUN_CHUNK,
} view_run_kind;

typedef struct view_run {
        uint64_t off, len;
        view_run_kind kind;
        const manifest_extent *ext; /* RUN_CHUNK: bytes [off - ext->off, + len) of this chunk */
} view_run;

/* Where the last runs were found in the first VIEW_HINTS layers, so that a
 * reader going forward finds the next at once. Zeroed to start. */
#define VIEW_HINTS 8
typedef struct view_hint {
        size_t at[VIEW_HINTS];
} view_hint;

/* The run that starts at off and ends at the first change of source, or at
 * limit. Top layers win; a hole extent reads as zeros; where no layer has an
 * extent, zeros. O(layers x log extents). */
void view_run_at(const store_chain *c, uint64_t off, uint64_t limit, view_run *ret);
/* view_run_at, with h (or NULL) as a hint, which it updates. */
void view_run_near(const store_chain *c, uint64_t off, uint64_t limit, view_hint *h,
                   view_run *ret);
