/* SPDX-License-Identifier: Apache-2.0 */
/* The vhost-user-blk front end of the daemon: one VMM on one socket. */
#pragma once

#include <stdbool.h>

#include <stellar/store.h>

typedef struct vhost_ctx {
        st_store *s;
        const char *name;       /* the export */
        bool readonly;
        unsigned queues;        /* offered (VIRTIO_BLK_F_MQ) */
        volatile int *stopping;
        char peer[96];
} vhost_ctx;

/* Serve the front-end on fd until it goes (or the daemon stops); the
 * caller closes fd (after it stops tracking it: the number is free then). */
void vhost_blk_run(const vhost_ctx *c, int fd);
