/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A few threads, shared by every vhost-user-blk device of the daemon, that
 * take parts of one large read, so that its chunks are copied into guest
 * memory on several cores at once while the queue's own thread copies the
 * first part. The request still completes as one, in its queue's order.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/volume.h>

#include "vring.h"

#define HELPERS_MAX_PARTS 8u

/* One part of a read: len bytes of the volume at off, into the chain's
 * writable bytes from skip on. */
typedef struct read_part {
        st_volume *v;
        const vring_seg *segs;
        unsigned n;
        uint64_t skip, len, off;
        int result; /* 0, or st_volume_read's error */
        /* the pool's */
        struct read_part *next;
        bool taken, done;
} read_part;

/* How many helper threads there are: one less than the cores, at most
 * HELPERS_MAX_PARTS - 1 (none on one core). Started on first use. */
unsigned helpers_count(void);

/* Read every part: part 0 on this thread, the others by helpers as they
 * come free (or by this thread, once its own is done and they are still
 * waiting). Returns when all are done. */
void helpers_read(read_part *parts, unsigned n);
