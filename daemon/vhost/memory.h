/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The guest's memory as the front-end shares it: regions mapped from the
 * descriptors it sends, and the translation of guest-physical addresses
 * (descriptors) and front-end virtual addresses (ring addresses) into our
 * mappings, each checked to lie inside a region.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"

typedef struct vhost_map {
        vhost_region r;
        uint8_t *base;   /* mmap of r.mmap_offset + r.size bytes */
        size_t map_len;
} vhost_map;

typedef struct vhost_memory {
        vhost_map maps[VHOST_MAX_MEM_SLOTS];
        unsigned n;
} vhost_memory;

/* Does fd, a regular file, hold [0, len)? A shared mapping past the end of
 * its file faults (SIGBUS) when touched, so the front-end's files are
 * checked before they are mapped: 0, -EINVAL, or fstat's error. (A
 * front-end that shrinks its file afterwards can still make it fault;
 * QEMU's memfd memory is sealed against that by default.) */
int vhost_fd_holds(int fd, uint64_t len);

/* Map region r from fd (not closed here). -EINVAL (also for a file that is
 * not a regular file holding the region), -ENOSPC (no slot left), or
 * mmap's error. */
int vhost_memory_add(vhost_memory *m, const vhost_region *r, int fd);
/* Unmap the region with r's guest address and size: 0 or -ENOENT. */
int vhost_memory_remove(vhost_memory *m, const vhost_region *r);
void vhost_memory_clear(vhost_memory *m);

/* Our pointer to guest-physical [gpa, gpa + len) if one region holds it
 * whole, else NULL; with *ret_len set, the bytes from gpa that one region
 * holds (a buffer that spans two adjacent regions is taken in pieces). */
void *vhost_gpa(const vhost_memory *m, uint64_t gpa, uint64_t len, uint64_t *ret_len);
/* The same for the front-end's virtual addresses (vring addresses). */
void *vhost_uva(const vhost_memory *m, uint64_t uva, uint64_t len);
