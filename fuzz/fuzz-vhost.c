/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the vhost-user-blk front end's parsers of what a VMM and
 * its guest send (daemon/vhost/): vhost_msg_check, the gate of every
 * message; vring_pop, the walk of a descriptor chain in guest memory; and
 * inflight_recover, the reading of an inflight buffer after a restart.
 *
 * Input: byte 0 picks the parser.
 *   even: a message: byte 1 the number of descriptors passed with it, then
 *         the 12-byte header and the payload. Checks: an accepted message has
 *         version 1, no reply flag, a payload within bounds and of the size
 *         its request takes, vring indexes below VHOST_MAX_QUEUES, memory
 *         tables of 1 to VHOST_MAX_REGIONS regions that fit the payload and
 *         do not wrap, config ranges within VHOST_CONFIG_MAX.
 *   odd:  guest memory: bytes 1-2 the queue size (1 to 256), bytes 3-4 the
 *         available index; the rest is the memory of one region at guest
 *         address 0, holding the descriptor table, the available ring and the
 *         used ring at fixed offsets (what does not fit reads as zeros).
 *         Chains are popped until none is left or one is refused. Checks:
 *         every segment lies inside guest memory, there are at most
 *         VRING_MAX_SEGS, the heads are below the queue size, and no more
 *         chains are taken than the available index allows.
 *         With bit 7 of byte 0 set, the queue also has an inflight region
 *         (inflight.h), read from guest memory at INFLIGHT_AT as a restarted
 *         back-end reads what the front-end kept: the chains it lists are
 *         walked first. Checks: at most the queue size of them, each head
 *         below it and listed once, new chains taken after them, and none
 *         left marked in flight once served.
 */
#include <errno.h>

#include "fuzz.h"
#include "vhost/inflight.h"
#include "vhost/msg.h"
#include "vhost/vring.h"

static void check_msg(const uint8_t *data, size_t len) {
        if (len < 1 + VHOST_MSG_HEADER_LEN)
                return;
        unsigned n_fds = data[0] % (VHOST_MSG_MAX_FDS + 1);
        data++;
        len--;
        static vhost_msg m;
        m.request = le32_get(data);
        m.flags = le32_get(data + 4);
        size_t have = len - VHOST_MSG_HEADER_LEN;
        if (have > VHOST_MSG_MAX_PAYLOAD)
                have = VHOST_MSG_MAX_PAYLOAD;
        m.size = (uint32_t)have; /* the daemon reads exactly size bytes */
        if (le32_get(data + 8) > VHOST_MSG_MAX_PAYLOAD)
                m.size = le32_get(data + 8); /* an oversized header: never read */
        memset(m.payload, 0, sizeof m.payload);
        memcpy(m.payload, data + VHOST_MSG_HEADER_LEN, have);
        const char *why = NULL;
        int r = vhost_msg_check(&m, n_fds, &why);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG && why);
                return;
        }
        FUZZ_ASSERT((m.flags & 3) == 1 && !(m.flags & VHOST_USER_FLAG_REPLY));
        FUZZ_ASSERT(m.size <= VHOST_MSG_MAX_PAYLOAD);
        uint32_t idx, num;
        switch (m.request) {
        case VHOST_USER_SET_VRING_NUM:
        case VHOST_USER_SET_VRING_BASE:
        case VHOST_USER_GET_VRING_BASE:
        case VHOST_USER_SET_VRING_ENABLE:
                vhost_msg_state(&m, &idx, &num);
                FUZZ_ASSERT(m.size == 8 && idx < VHOST_MAX_QUEUES && n_fds == 0);
                break;
        case VHOST_USER_SET_VRING_ADDR:
                FUZZ_ASSERT(m.size == 40 && vhost_msg_vring_addr(&m).index < VHOST_MAX_QUEUES);
                break;
        case VHOST_USER_SET_VRING_KICK:
        case VHOST_USER_SET_VRING_CALL:
        case VHOST_USER_SET_VRING_ERR: {
                uint64_t v = vhost_msg_u64(&m);
                FUZZ_ASSERT((v & VHOST_VRING_INDEX_MASK) < VHOST_MAX_QUEUES);
                FUZZ_ASSERT(n_fds == ((v & VHOST_VRING_NOFD) ? 0u : 1u));
                break;
        }
        case VHOST_USER_SET_MEM_TABLE: {
                unsigned n = vhost_msg_n_regions(&m);
                FUZZ_ASSERT(n >= 1 && n <= VHOST_MAX_REGIONS && m.size >= 8 + 32 * n && n_fds == n);
                for (unsigned i = 0; i < n; i++) {
                        vhost_region x = vhost_msg_region(&m, i);
                        FUZZ_ASSERT(x.size > 0 && x.gpa + x.size > x.gpa && x.uva + x.size > x.uva);
                }
                break;
        }
        case VHOST_USER_GET_CONFIG:
        case VHOST_USER_SET_CONFIG: {
                uint32_t off, size, flags;
                vhost_msg_config(&m, &off, &size, &flags);
                FUZZ_ASSERT(m.size == 12 + size && off + size <= VHOST_CONFIG_MAX);
                break;
        }
        default:
                break;
        }
}

#define MEM_LEN 65536u
#define DESC_AT 0u
#define AVAIL_AT 8192u
#define USED_AT 16384u
#define INFLIGHT_AT 4096u /* after the largest descriptor table */

/* Publish head as the device does, its inflight mark kept (t may track
 * nothing), and check that no mark is left. */
static void push_tracked(vhost_vring *q, inflight_queue *t, uint16_t head, const uint8_t *mem) {
        inflight_before_push(t, head);
        vring_push(q, head, 1);
        inflight_after_push(t, head, q->used_idx);
        if (t->region)
                FUZZ_ASSERT(mem[INFLIGHT_AT + 16 + 16 * head] == 0);
}

static void check_ring(const uint8_t *data, size_t len) {
        if (len < 5)
                return;
        static uint8_t mem[MEM_LEN];
        memset(mem, 0, sizeof mem);
        uint32_t num = (uint32_t)(data[1] | data[2] << 8) % 256 + 1;
        memcpy(mem, data + 5, len - 5 < MEM_LEN ? len - 5 : MEM_LEN);
        /* the driver's available index, where the ring says */
        mem[AVAIL_AT + 2] = data[3];
        mem[AVAIL_AT + 3] = data[4];
        vhost_memory m = { .n = 1 };
        m.maps[0] = (vhost_map){ .r = { .gpa = 0, .size = MEM_LEN, .uva = 0x10000, .mmap_offset = 0 },
                                 .base = mem, .map_len = MEM_LEN };
        vhost_vring q = { .num = num, .desc_uva = 0x10000 + DESC_AT, .avail_uva = 0x10000 + AVAIL_AT,
                          .used_uva = 0x10000 + USED_AT, .addr_set = true };
        FUZZ_ASSERT(vring_resolve(&q, &m, true) == 0);
        static vring_seg segs[VRING_MAX_SEGS];
        uint16_t avail = (uint16_t)(data[3] | data[4] << 8), taken = 0;
        inflight_queue t = { 0 };
        static uint16_t again[256];
        unsigned n_again = 0;
        if (data[0] & 0x80) {
                t = (inflight_queue){ .region = mem + INFLIGHT_AT, .num = (uint16_t)num };
                n_again = inflight_recover(&t, q.used_idx, again);
                FUZZ_ASSERT(n_again <= num);
                bool seen[256] = { false };
                for (unsigned k = 0; k < n_again; k++) {
                        FUZZ_ASSERT(again[k] < num && !seen[again[k]]);
                        seen[again[k]] = true;
                }
                q.last_avail = (uint16_t)(q.used_idx + n_again);
                avail = (uint16_t)(avail - q.last_avail);
        }
        for (unsigned k = 0; k < n_again; k++) {
                unsigned n = 0;
                const char *why = NULL;
                int r = vring_chain(&q, &m, again[k], segs, &n, &why);
                if (r < 0) {
                        FUZZ_ASSERT(r == -EBADMSG && why);
                        return;
                }
                for (unsigned i = 0; i < n; i++)
                        FUZZ_ASSERT(segs[i].p >= mem && segs[i].len <= MEM_LEN &&
                                    (size_t)(segs[i].p - mem) + segs[i].len <= MEM_LEN);
                push_tracked(&q, &t, again[k], mem);
        }
        for (;;) {
                uint16_t head;
                unsigned n = 0;
                const char *why = NULL;
                int r = vring_pop(&q, &m, &head, segs, &n, &why);
                if (r <= 0) {
                        FUZZ_ASSERT(r == 0 || (r == -EBADMSG && why));
                        break;
                }
                taken++;
                FUZZ_ASSERT(taken <= avail && head < num && n <= VRING_MAX_SEGS);
                for (unsigned i = 0; i < n; i++)
                        FUZZ_ASSERT(segs[i].p >= mem && segs[i].len <= MEM_LEN &&
                                    (size_t)(segs[i].p - mem) + segs[i].len <= MEM_LEN);
                inflight_begin(&t, head);
                push_tracked(&q, &t, head, mem);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        if (len == 0)
                return 0;
        if (data[0] & 1)
                check_ring(data, len);
        else
                check_msg(data + 1, len - 1);
        return 0;
}
