/* SPDX-License-Identifier: Apache-2.0 */
/* Inflight I/O tracking; see inflight.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inflight.h"
#include "memory.h"
#include "msg.h"

#define HDR_BYTES 16u
#define STATE_BYTES 16u
#define ALIGN 64u

/* Region fields (little-endian hosts only, as the rings). The front-end
 * may write them at any time: read and write each one as an atomic. */
#define VERSION(r) ((uint16_t *)(void *)((r) + 8))
#define DESC_NUM(r) ((uint16_t *)(void *)((r) + 10))
#define LAST_BATCH_HEAD(r) ((uint16_t *)(void *)((r) + 12))
#define USED_IDX(r) ((uint16_t *)(void *)((r) + 14))
#define STATE(r, i) ((r) + HDR_BYTES + STATE_BYTES * (size_t)(i))
#define INFLIGHT(r, i) ((uint8_t *)STATE(r, i))
#define NEXT(r, i) ((uint16_t *)(void *)(STATE(r, i) + 6))
#define COUNTER(r, i) ((uint64_t *)(void *)(STATE(r, i) + 8))

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)

size_t inflight_region_bytes(uint16_t queue_size) {
        return (HDR_BYTES + STATE_BYTES * (size_t)queue_size + ALIGN - 1) / ALIGN * ALIGN;
}

static bool counts_ok(uint16_t n_queues, uint16_t queue_size) {
        return n_queues >= 1 && n_queues <= VHOST_MAX_QUEUES && queue_size >= 1 &&
               queue_size <= VHOST_MAX_QUEUE_SIZE;
}

static void init_region(uint8_t *r, uint16_t queue_size) {
        memset(r, 0, inflight_region_bytes(queue_size));
        STORE(DESC_NUM(r), queue_size);
        STORE(VERSION(r), (uint16_t)INFLIGHT_VERSION);
}

int inflight_create(vhost_inflight *f, uint16_t n_queues, uint16_t queue_size, int *ret_fd,
                    uint64_t *ret_size) {
        *ret_fd = -1;
        if (!counts_ok(n_queues, queue_size))
                return -EINVAL;
        size_t len = inflight_region_bytes(queue_size) * n_queues;
        int fd = memfd_create("stellar-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return -errno;
        /* Sealed against shrinking: a mapping of it can never fault. */
        if (ftruncate(fd, (off_t)len) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
                int e = -errno;
                close(fd);
                return e;
        }
        inflight_clear(f);
        *f = (vhost_inflight){ .base = p, .map_len = len, .regions = p, .n_queues = n_queues,
                               .queue_size = queue_size };
        for (unsigned q = 0; q < n_queues; q++)
                init_region(f->regions + inflight_region_bytes(queue_size) * q, queue_size);
        *ret_fd = fd;
        *ret_size = len;
        return 0;
}

int inflight_map(vhost_inflight *f, int fd, uint64_t size, uint64_t offset, uint16_t n_queues,
                 uint16_t queue_size) {
        if (!counts_ok(n_queues, queue_size) || offset % 8 != 0 ||
            size != inflight_region_bytes(queue_size) * n_queues || offset > SIZE_MAX - size)
                return -EINVAL;
        int r = vhost_fd_holds(fd, offset + size); /* (ours is sealed; the front-end's may not be) */
        if (r < 0)
                return r;
        void *p = mmap(NULL, (size_t)(offset + size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return -errno;
        inflight_clear(f);
        *f = (vhost_inflight){ .base = p, .map_len = (size_t)(offset + size),
                               .regions = (uint8_t *)p + offset, .n_queues = n_queues,
                               .queue_size = queue_size };
        return 0;
}

void inflight_clear(vhost_inflight *f) {
        if (f->base)
                munmap(f->base, f->map_len);
        *f = (vhost_inflight){ 0 };
}

inflight_queue inflight_queue_of(const vhost_inflight *f, unsigned index, uint32_t num) {
        if (!f->base || index >= f->n_queues || num != f->queue_size)
                return (inflight_queue){ 0 };
        return (inflight_queue){ .region = f->regions + inflight_region_bytes(f->queue_size) * index,
                                 .num = (uint16_t)num };
}

typedef struct pending {
        uint64_t counter;
        uint16_t head;
} pending;

static int cmp_pending(const void *a, const void *b) {
        const pending *x = a, *y = b;
        if (x->counter != y->counter)
                return x->counter < y->counter ? -1 : 1;
        return x->head < y->head ? -1 : x->head > y->head;
}

unsigned inflight_recover(inflight_queue *t, uint16_t used_idx, uint16_t *heads) {
        uint8_t *r = t->region;
        if (!r)
                return 0;
        if (LOAD(VERSION(r)) != INFLIGHT_VERSION || LOAD(DESC_NUM(r)) != t->num) {
                init_region(r, t->num); /* nothing we can trust: nothing in flight */
                STORE(USED_IDX(r), used_idx);
                t->counter = 0;
                return 0;
        }
        /* Died between moving the used index and clearing the batch's
         * marks: the batch (linked from last_batch_head) is done. */
        uint16_t batch = (uint16_t)(used_idx - LOAD(USED_IDX(r)));
        uint16_t i = LOAD(LAST_BATCH_HEAD(r));
        for (uint32_t k = 0; k < batch && k < t->num && i < t->num; k++) {
                STORE(INFLIGHT(r, i), 0);
                i = LOAD(NEXT(r, i));
        }
        STORE(USED_IDX(r), used_idx);
        pending *p = malloc(sizeof *p * t->num);
        unsigned n = 0;
        uint64_t next_counter = 0;
        for (uint16_t h = 0; h < t->num; h++) {
                if (LOAD(INFLIGHT(r, h)) != 1)
                        continue;
                uint64_t c = LOAD(COUNTER(r, h));
                if (p)
                        p[n] = (pending){ c, h };
                else
                        heads[n] = h; /* no memory to order them: in head order */
                n++;
                if (c >= next_counter)
                        next_counter = c == UINT64_MAX ? c : c + 1;
        }
        if (p) {
                qsort(p, n, sizeof *p, cmp_pending);
                for (unsigned k = 0; k < n; k++)
                        heads[k] = p[k].head;
                free(p);
        }
        t->counter = next_counter;
        return n;
}

void inflight_begin(inflight_queue *t, uint16_t head) {
        uint8_t *r = t->region;
        if (!r || head >= t->num)
                return;
        STORE(COUNTER(r, head), t->counter++);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        STORE(INFLIGHT(r, head), 1);
}

void inflight_before_push(inflight_queue *t, uint16_t head) {
        uint8_t *r = t->region;
        if (!r || head >= t->num)
                return;
        STORE(NEXT(r, head), LOAD(LAST_BATCH_HEAD(r)));
        STORE(LAST_BATCH_HEAD(r), head);
        __atomic_thread_fence(__ATOMIC_RELEASE); /* before the used index moves */
}

void inflight_after_push(inflight_queue *t, uint16_t head, uint16_t used_idx) {
        uint8_t *r = t->region;
        if (!r || head >= t->num)
                return;
        STORE(INFLIGHT(r, head), 0);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        STORE(USED_IDX(r), used_idx);
}
