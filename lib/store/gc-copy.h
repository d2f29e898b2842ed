/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gc's copy of the live records of the packs it drops (gc-copy.c): byte for
 * byte where nothing changes, frames rebuilt where some of their chunks died
 * or were made below the cold level, deferred records compressed. It runs
 * without the store's lock, on a copy of the entries that gc applies at the
 * end, so readers are served from the old packs all along; it takes the lock
 * only to reserve room in an output pack.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store-internal.h"

/* A live chunk: its entry as gc's plan saw it; the copy moves e (pack,
 * offset, stored length, slot) and gc writes that back into the index. */
typedef struct gc_live {
        uint32_t id;
        bool deferred; /* a raw record that waits for compression */
        index_entry e;
} gc_live;

/* A pack being dropped, as it was when gc planned. */
typedef struct gc_src {
        uint32_t id;
        int fd;
        uint64_t len;
} gc_src;

typedef struct gc_copy {
        st_store *s;
        st_diag *reterr;
        void *dctx, *cctx;
        uint8_t *buf, *out, *rec, *gather, *built, *merge;
        size_t out_cap, rec_cap, gather_cap, built_cap, merge_cap;
        uint64_t recompressed; /* frames made at the cold level */
} gc_copy;

/* Does the record of l need compressing (a deferred record, which sets
 * l->deferred; a frame made below the cold level; one whose head cannot be
 * read, for the copy to name)? Reads its header from fd. */
bool gc_copy_needs_work(st_store *s, int fd, gc_live *l);
int gc_copy_init(gc_copy *c, st_store *s, st_diag *reterr);
void gc_copy_done(gc_copy *c);
/* Copy the live chunks of one dropped pack (live[0..n), in offset order) to
 * the output packs. -EBADMSG (naming the record in reterr) if a chunk in use
 * is damaged. */
int gc_copy_pack(gc_copy *c, const gc_src *src, gc_live *live, size_t n);
