/* SPDX-License-Identifier: Apache-2.0 */
/* The gate for vhost-user messages; see msg.h. */
#include <errno.h>
#include <string.h>

#include "msg.h"

static int bad(const char **why, const char *what) {
        if (why)
                *why = what;
        return -EBADMSG;
}

static bool region_ok(const vhost_region *r) {
        return r->size > 0 && r->gpa + r->size > r->gpa && r->uva + r->size > r->uva &&
               r->mmap_offset + r->size > r->mmap_offset;
}

int vhost_msg_check(const vhost_msg *m, unsigned n_fds, const char **why) {
        if ((m->flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION)
                return bad(why, "unsupported protocol version");
        if (m->flags & VHOST_USER_FLAG_REPLY)
                return bad(why, "a reply where a request was expected");
        if (m->size > VHOST_MSG_MAX_PAYLOAD)
                return bad(why, "payload too large");
        unsigned want_fds = 0;
        switch (m->request) {
        case VHOST_USER_GET_FEATURES:
        case VHOST_USER_GET_PROTOCOL_FEATURES:
        case VHOST_USER_GET_QUEUE_NUM:
        case VHOST_USER_GET_MAX_MEM_SLOTS:
        case VHOST_USER_SET_OWNER:
        case VHOST_USER_RESET_OWNER:
        case VHOST_USER_RESET_DEVICE:
                if (m->size > 8)
                        return bad(why, "payload where none belongs");
                break;
        case VHOST_USER_SET_FEATURES:
        case VHOST_USER_SET_PROTOCOL_FEATURES:
                if (m->size != 8)
                        return bad(why, "payload is not one u64");
                break;
        case VHOST_USER_SET_VRING_KICK:
        case VHOST_USER_SET_VRING_CALL:
        case VHOST_USER_SET_VRING_ERR: {
                if (m->size != 8)
                        return bad(why, "payload is not one u64");
                uint64_t v = vhost_msg_u64(m);
                if ((v & VHOST_VRING_INDEX_MASK) >= VHOST_MAX_QUEUES)
                        return bad(why, "vring index out of range");
                if (v & ~(uint64_t)(VHOST_VRING_INDEX_MASK | VHOST_VRING_NOFD))
                        return bad(why, "unknown bits in the vring file message");
                want_fds = (v & VHOST_VRING_NOFD) ? 0 : 1;
                break;
        }
        case VHOST_USER_SET_VRING_NUM:
        case VHOST_USER_SET_VRING_BASE:
        case VHOST_USER_SET_VRING_ENABLE:
        case VHOST_USER_GET_VRING_BASE:
                if (m->size != 8)
                        return bad(why, "payload is not a vring state");
                if (le32_get(m->payload) >= VHOST_MAX_QUEUES)
                        return bad(why, "vring index out of range");
                break;
        case VHOST_USER_SET_VRING_ADDR:
                if (m->size != 40)
                        return bad(why, "payload is not a vring address");
                if (le32_get(m->payload) >= VHOST_MAX_QUEUES)
                        return bad(why, "vring index out of range");
                break;
        case VHOST_USER_SET_MEM_TABLE: {
                if (m->size < 8)
                        return bad(why, "memory table truncated");
                uint32_t n = le32_get(m->payload);
                if (n == 0 || n > VHOST_MAX_REGIONS)
                        return bad(why, "memory table region count out of range");
                if (m->size < 8 + 32 * n)
                        return bad(why, "memory table shorter than its regions");
                for (unsigned i = 0; i < n; i++) {
                        vhost_region r = vhost_msg_region(m, i);
                        if (!region_ok(&r))
                                return bad(why, "memory region empty or wrapping");
                }
                want_fds = n;
                break;
        }
        case VHOST_USER_ADD_MEM_REG:
        case VHOST_USER_REM_MEM_REG: {
                if (m->size != 40)
                        return bad(why, "payload is not one memory region");
                vhost_region r = vhost_msg_one_region(m);
                if (!region_ok(&r))
                        return bad(why, "memory region empty or wrapping");
                want_fds = m->request == VHOST_USER_ADD_MEM_REG ? 1 : n_fds > 1 ? 1 : n_fds;
                break;
        }
        case VHOST_USER_GET_CONFIG:
        case VHOST_USER_SET_CONFIG: {
                if (m->size < 12)
                        return bad(why, "config message truncated");
                uint32_t off, size, flags;
                vhost_msg_config(m, &off, &size, &flags);
                if (size > VHOST_CONFIG_MAX || m->size != 12 + size)
                        return bad(why, "config size out of range");
                if (off > VHOST_CONFIG_MAX || size > VHOST_CONFIG_MAX - off)
                        return bad(why, "config range out of range");
                break;
        }
        case VHOST_USER_GET_INFLIGHT_FD:
        case VHOST_USER_SET_INFLIGHT_FD:
                if (m->size < 20 || m->size > VHOST_INFLIGHT_DESC_LEN)
                        return bad(why, "payload is not an inflight description");
                want_fds = m->request == VHOST_USER_SET_INFLIGHT_FD ? 1 : 0;
                break;
        default:
                break; /* answered as unsupported */
        }
        if (n_fds != want_fds)
                return bad(why, "wrong number of file descriptors for the request");
        return 0;
}

uint64_t vhost_msg_u64(const vhost_msg *m) {
        return le64_get(m->payload);
}

unsigned vhost_msg_n_regions(const vhost_msg *m) {
        return le32_get(m->payload);
}

static vhost_region region_at(const uint8_t *p) {
        return (vhost_region){ .gpa = le64_get(p), .size = le64_get(p + 8),
                               .uva = le64_get(p + 16), .mmap_offset = le64_get(p + 24) };
}

vhost_region vhost_msg_region(const vhost_msg *m, unsigned i) {
        return region_at(m->payload + 8 + 32 * i);
}

vhost_region vhost_msg_one_region(const vhost_msg *m) {
        return region_at(m->payload + 8);
}

void vhost_msg_state(const vhost_msg *m, uint32_t *index, uint32_t *num) {
        *index = le32_get(m->payload);
        *num = le32_get(m->payload + 4);
}

vhost_vring_addr vhost_msg_vring_addr(const vhost_msg *m) {
        const uint8_t *p = m->payload;
        return (vhost_vring_addr){ .index = le32_get(p), .flags = le32_get(p + 4),
                                   .desc = le64_get(p + 8), .used = le64_get(p + 16),
                                   .avail = le64_get(p + 24), .log = le64_get(p + 32) };
}

vhost_inflight_desc vhost_msg_inflight(const vhost_msg *m) {
        const uint8_t *p = m->payload;
        return (vhost_inflight_desc){ .mmap_size = le64_get(p), .mmap_offset = le64_get(p + 8),
                                      .num_queues = (uint16_t)(p[16] | p[17] << 8),
                                      .queue_size = (uint16_t)(p[18] | p[19] << 8) };
}

void vhost_inflight_desc_put(uint8_t p[VHOST_INFLIGHT_DESC_LEN], const vhost_inflight_desc *x) {
        memset(p, 0, VHOST_INFLIGHT_DESC_LEN);
        le64_put(p, x->mmap_size);
        le64_put(p + 8, x->mmap_offset);
        p[16] = (uint8_t)x->num_queues;
        p[17] = (uint8_t)(x->num_queues >> 8);
        p[18] = (uint8_t)x->queue_size;
        p[19] = (uint8_t)(x->queue_size >> 8);
}

void vhost_msg_config(const vhost_msg *m, uint32_t *offset, uint32_t *size, uint32_t *flags) {
        *offset = le32_get(m->payload);
        *size = le32_get(m->payload + 4);
        *flags = le32_get(m->payload + 8);
}
