/* SPDX-License-Identifier: Apache-2.0 */
/*
 * virtio-blk on a volume (virtio 1.x, "Block Device"): the configuration
 * space the driver reads, the features we offer, and one request executed
 * on the guest's buffers in place: reads go from the store straight into
 * them, writes from them into the delta.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/volume.h>

#include "vring.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_TOPOLOGY 10
#define VIRTIO_BLK_F_MQ 12
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14
#define VIRTIO_F_RING_INDIRECT_DESC 28
#define VIRTIO_F_RING_EVENT_IDX 29
#define VIRTIO_F_VERSION_1 32

#define BLK_CONFIG_LEN 60u

enum { BLK_OP_READ, BLK_OP_WRITE, BLK_OP_FLUSH, BLK_OP_TRIM, BLK_OP_OTHER };

typedef struct blk_dev {
        st_volume *v;
        bool ro;
        unsigned n_queues;
        char serial[21]; /* GET_ID: the volume's name, at most 20 bytes */
} blk_dev;

uint64_t blk_features(const blk_dev *b);
void blk_config(const blk_dev *b, uint8_t cfg[BLK_CONFIG_LEN]);

typedef struct blk_result {
        uint32_t written; /* bytes written into the guest's buffers, status included */
        unsigned op;      /* BLK_OP_* */
        uint64_t bytes;   /* data moved */
        bool error;
} blk_result;
/* Execute the request in segs; -EBADMSG if it has no room for a status
 * (nothing can be said to the driver: the ring is broken). */
int blk_execute(const blk_dev *b, const vring_seg *segs, unsigned n, blk_result *ret);
