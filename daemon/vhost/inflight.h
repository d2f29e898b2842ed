/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Inflight I/O tracking for split virtqueues (QEMU docs/interop/vhost-user.rst,
 * "Inflight I/O tracking"): a buffer we make (GET_INFLIGHT_FD) and the
 * front-end keeps and hands back after we restart (SET_INFLIGHT_FD), one
 * region per queue:
 *
 *   features u64, version u16 (1), desc_num u16, last_batch_head u16,
 *   used_idx u16, then desc_num states of 16 bytes:
 *   inflight u8, padding [5], next u16, counter u64
 *
 * A chain's head is marked in flight, with a counter that orders the
 * chains, when we take it from the available ring, and unmarked once its
 * used element is published; a restarted back-end serves again every chain
 * still marked, oldest first, so requests completed out of order are
 * neither lost nor done twice. The buffer is the front-end's memory too:
 * every index read back from it is checked, and what it says can make us
 * serve a chain again, never touch memory outside it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INFLIGHT_VERSION 1u

/* The whole buffer, as mapped. */
typedef struct vhost_inflight {
        uint8_t *base;
        size_t map_len;   /* what is unmapped */
        uint8_t *regions; /* base + the front-end's offset */
        uint16_t n_queues, queue_size;
} vhost_inflight;

/* The bytes of one queue's region (64-byte aligned, as libvhost-user's). */
size_t inflight_region_bytes(uint16_t queue_size);

/* GET_INFLIGHT_FD: a new zeroed buffer for n_queues of queue_size, every
 * region initialised. *ret_fd is the memfd to send (the caller closes it);
 * *ret_size its size. -EINVAL for counts out of range. */
int inflight_create(vhost_inflight *f, uint16_t n_queues, uint16_t queue_size, int *ret_fd,
                    uint64_t *ret_size);
/* SET_INFLIGHT_FD: map the front-end's buffer (fd not closed here).
 * -EINVAL if the counts are out of range or the file is not a regular file
 * holding [offset, offset + size) with size = what the counts need. */
int inflight_map(vhost_inflight *f, int fd, uint64_t size, uint64_t offset, uint16_t n_queues,
                 uint16_t queue_size);
void inflight_clear(vhost_inflight *f);

/* One queue's tracking: region NULL when the queue is not tracked. */
typedef struct inflight_queue {
        uint8_t *region;
        uint16_t num;
        uint64_t counter; /* the next chain's */
} inflight_queue;

/* The region of queue index for a ring of num entries: tracked only when
 * the buffer has that queue and its queue size is num. */
inflight_queue inflight_queue_of(const vhost_inflight *f, unsigned index, uint32_t num);

/* A ring starting whose used index in guest memory is used_idx: finish the
 * last batch if the back-end died while publishing it, then list into
 * heads (room for num) the chains still in flight, oldest first. Returns
 * their count; the caller serves them before anything new, and takes new
 * chains from used_idx + count on. A region that was never initialised
 * (version 0) is initialised, with nothing in flight. */
unsigned inflight_recover(inflight_queue *t, uint16_t used_idx, uint16_t *heads);

/* A chain taken from the available ring. */
void inflight_begin(inflight_queue *t, uint16_t head);
/* Around publishing one used element: before the used index moves, and
 * after, with the used index it moved to. */
void inflight_before_push(inflight_queue *t, uint16_t head);
void inflight_after_push(inflight_queue *t, uint16_t head, uint16_t used_idx);
