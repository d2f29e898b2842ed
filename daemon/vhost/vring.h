/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A split virtqueue (virtio 1.x, "Split Virtqueues"), seen from the device:
 * the descriptor table, the available ring the driver fills and the used
 * ring we fill, all in guest memory. Every index read from the guest is
 * checked against the queue size, every buffer against the memory table;
 * a chain is at most the queue size long (indirect tables included), with
 * no loops, so a hostile driver gets its ring marked broken, never a read
 * or write outside its memory.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "memory.h"

#define VRING_MAX_SEGS 1024u

typedef struct vring_seg {
        uint8_t *p;
        uint32_t len;
        bool write; /* device-writable (the driver reads it) */
} vring_seg;

typedef struct vhost_vring {
        uint32_t num;                    /* queue size; 0 until set */
        uint64_t desc_uva, avail_uva, used_uva;
        bool addr_set;
        uint16_t last_avail, used_idx;   /* ours */
        bool event_idx;
        /* resolved for one pass, under the device's lock */
        uint8_t *desc, *avail, *used;
} vhost_vring;

/* Resolve the ring's addresses in the current memory table: 0, or -EFAULT
 * if a part lies outside it. Reads the used index the driver last saw when
 * first is set (the ring starting). */
int vring_resolve(vhost_vring *q, const vhost_memory *m, bool first);
/* Is there a chain we have not taken? */
bool vring_has_avail(const vhost_vring *q);
/* Take the next chain: 1 with its head and segments, 0 if none, -EBADMSG
 * for a malformed chain (*why says how). */
int vring_pop(vhost_vring *q, const vhost_memory *m, uint16_t *ret_head, vring_seg *segs,
              unsigned *ret_n, const char **why);
/* Walk the chain at head (one taken before, served again after a restart)
 * as vring_pop does, taking nothing from the available ring. */
int vring_chain(const vhost_vring *q, const vhost_memory *m, uint16_t head, vring_seg *segs,
                unsigned *ret_n, const char **why);
/* Return chain head, having written len bytes into its writable buffers. */
void vring_push(vhost_vring *q, uint16_t head, uint32_t len);
/* With event_idx: ask for a kick at the next chain (then check again). */
void vring_want_kick(vhost_vring *q);
/* Should the driver be interrupted, used_idx having moved from old? */
bool vring_should_notify(const vhost_vring *q, uint16_t old);
