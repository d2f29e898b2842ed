/* SPDX-License-Identifier: Apache-2.0 */
/* Split virtqueues; see vring.h. Layouts (little-endian):
 *   descriptor  addr u64, len u32, flags u16, next u16       (16 bytes)
 *   available   flags u16, idx u16, ring[num] u16, used_event u16
 *   used        flags u16, idx u16, ring[num] {id u32, len u32}, avail_event u16
 */
#include <errno.h>
#include <string.h>

#include "vring.h"

#define DESC_F_NEXT 1u
#define DESC_F_WRITE 2u
#define DESC_F_INDIRECT 4u
#define AVAIL_F_NO_INTERRUPT 1u

static uint16_t le16(const uint8_t *p) {
        return (uint16_t)(p[0] | p[1] << 8);
}

/* The idx fields move under us: read and write them as atomics (the ring
 * is little-endian, as is every host this builds for). */
static uint16_t load_idx(const uint8_t *p) {
        return __atomic_load_n((const uint16_t *)(const void *)p, __ATOMIC_ACQUIRE);
}

static void store_idx(uint8_t *p, uint16_t v) {
        __atomic_store_n((uint16_t *)(void *)p, v, __ATOMIC_RELEASE);
}

int vring_resolve(vhost_vring *q, const vhost_memory *m, bool first) {
        if (!q->addr_set || q->num == 0)
                return -EFAULT;
        q->desc = vhost_uva(m, q->desc_uva, 16ull * q->num);
        q->avail = vhost_uva(m, q->avail_uva, 6ull + 2ull * q->num);
        q->used = vhost_uva(m, q->used_uva, 6ull + 8ull * q->num);
        if (!q->desc || !q->avail || !q->used)
                return -EFAULT;
        if (first)
                q->used_idx = load_idx(q->used + 2);
        return 0;
}

bool vring_has_avail(const vhost_vring *q) {
        return load_idx(q->avail + 2) != q->last_avail;
}

/* Append guest buffer [addr, addr + len) as segments (it may span regions). */
static int add_buffer(const vhost_memory *m, uint64_t addr, uint32_t len, bool write,
                      vring_seg *segs, unsigned *n, const char **why) {
        while (len > 0) {
                uint64_t have;
                uint8_t *p = vhost_gpa(m, addr, len, &have);
                if (!p || have == 0) {
                        *why = "a descriptor's buffer lies outside guest memory";
                        return -EBADMSG;
                }
                if (*n == VRING_MAX_SEGS) {
                        *why = "a chain of more buffers than we take";
                        return -EBADMSG;
                }
                segs[(*n)++] = (vring_seg){ p, (uint32_t)have, write };
                addr += have;
                len -= (uint32_t)have;
        }
        return 0;
}

int vring_chain(const vhost_vring *q, const vhost_memory *m, uint16_t head, vring_seg *segs,
                unsigned *ret_n, const char **why) {
        if (head >= q->num) {
                *why = "a chain head past the queue size";
                return -EBADMSG;
        }
        const uint8_t *table = q->desc;
        uint32_t table_n = q->num, i = head, seen = 0;
        bool indirect = false;
        unsigned n = 0;
        for (;;) {
                if (++seen > q->num + (indirect ? table_n : 0)) {
                        *why = "a descriptor chain longer than the queue (a loop?)";
                        return -EBADMSG;
                }
                const uint8_t *d = table + 16 * i;
                uint64_t addr;
                uint32_t len;
                uint16_t flags, next;
                memcpy(&addr, d, 8);
                memcpy(&len, d + 8, 4);
                memcpy(&flags, d + 12, 2);
                memcpy(&next, d + 14, 2);
                if (flags & DESC_F_INDIRECT) {
                        if (indirect || (flags & DESC_F_NEXT)) {
                                *why = "a nested or chained indirect descriptor";
                                return -EBADMSG;
                        }
                        if (len == 0 || len % 16 != 0 || len / 16 > VHOST_MAX_QUEUE_SIZE) {
                                *why = "an indirect table of a bad length";
                                return -EBADMSG;
                        }
                        table = vhost_gpa(m, addr, len, NULL);
                        if (!table) {
                                *why = "an indirect table outside guest memory";
                                return -EBADMSG;
                        }
                        table_n = len / 16;
                        indirect = true;
                        seen = 0;
                        i = 0;
                        continue;
                }
                int r = add_buffer(m, addr, len, (flags & DESC_F_WRITE) != 0, segs, &n, why);
                if (r < 0)
                        return r;
                if (!(flags & DESC_F_NEXT))
                        break;
                if (next >= table_n) {
                        *why = "a descriptor's next index past its table";
                        return -EBADMSG;
                }
                i = next;
        }
        *ret_n = n;
        return 0;
}

int vring_pop(vhost_vring *q, const vhost_memory *m, uint16_t *ret_head, vring_seg *segs,
              unsigned *ret_n, const char **why) {
        uint16_t avail_idx = load_idx(q->avail + 2);
        if (avail_idx == q->last_avail)
                return 0;
        if ((uint16_t)(avail_idx - q->last_avail) > q->num) {
                *why = "the available index ran more than the queue size ahead";
                return -EBADMSG;
        }
        uint16_t head = le16(q->avail + 4 + 2 * (q->last_avail % q->num));
        if (head >= q->num) {
                *why = "an available head past the queue size";
                return -EBADMSG;
        }
        int r = vring_chain(q, m, head, segs, ret_n, why);
        if (r < 0)
                return r;
        q->last_avail++;
        *ret_head = head;
        return 1;
}

void vring_push(vhost_vring *q, uint16_t head, uint32_t len) {
        uint8_t *e = q->used + 4 + 8 * (q->used_idx % q->num);
        uint32_t id = head;
        memcpy(e, &id, 4);
        memcpy(e + 4, &len, 4);
        store_idx(q->used + 2, ++q->used_idx);
}

void vring_want_kick(vhost_vring *q) {
        if (q->event_idx) /* avail_event, after the used ring */
                store_idx(q->used + 4 + 8 * q->num, q->last_avail);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

bool vring_should_notify(const vhost_vring *q, uint16_t old) {
        if (q->used_idx == old)
                return false;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        if (!q->event_idx)
                return !(le16(q->avail) & AVAIL_F_NO_INTERRUPT);
        uint16_t event = load_idx(q->avail + 4 + 2 * q->num); /* used_event */
        return (uint16_t)(q->used_idx - event - 1) < (uint16_t)(q->used_idx - old);
}
