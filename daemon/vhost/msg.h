/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-user messages (QEMU docs/interop/vhost-user.rst), as the back-end
 * receives them: a 12-byte header (request, flags, size; little-endian),
 * then size bytes of payload, with file descriptors passed alongside
 * (SCM_RIGHTS). vhost_msg_check is the one gate every message goes through
 * before its payload is read (fuzz/fuzz-vhost.c).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../le.h"

enum {
        VHOST_USER_GET_FEATURES = 1,
        VHOST_USER_SET_FEATURES = 2,
        VHOST_USER_SET_OWNER = 3,
        VHOST_USER_RESET_OWNER = 4,
        VHOST_USER_SET_MEM_TABLE = 5,
        VHOST_USER_SET_LOG_BASE = 6,
        VHOST_USER_SET_LOG_FD = 7,
        VHOST_USER_SET_VRING_NUM = 8,
        VHOST_USER_SET_VRING_ADDR = 9,
        VHOST_USER_SET_VRING_BASE = 10,
        VHOST_USER_GET_VRING_BASE = 11,
        VHOST_USER_SET_VRING_KICK = 12,
        VHOST_USER_SET_VRING_CALL = 13,
        VHOST_USER_SET_VRING_ERR = 14,
        VHOST_USER_GET_PROTOCOL_FEATURES = 15,
        VHOST_USER_SET_PROTOCOL_FEATURES = 16,
        VHOST_USER_GET_QUEUE_NUM = 17,
        VHOST_USER_SET_VRING_ENABLE = 18,
        VHOST_USER_GET_CONFIG = 24,
        VHOST_USER_SET_CONFIG = 25,
        VHOST_USER_GET_INFLIGHT_FD = 31,
        VHOST_USER_SET_INFLIGHT_FD = 32,
        VHOST_USER_RESET_DEVICE = 34,
        VHOST_USER_GET_MAX_MEM_SLOTS = 36,
        VHOST_USER_ADD_MEM_REG = 37,
        VHOST_USER_REM_MEM_REG = 38,
};

/* Protocol feature bits. */
enum {
        VHOST_USER_PROTOCOL_F_MQ = 0,
        VHOST_USER_PROTOCOL_F_REPLY_ACK = 3,
        VHOST_USER_PROTOCOL_F_CONFIG = 9,
        VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12,
        VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13,
        VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15,
};
#define VHOST_USER_F_PROTOCOL_FEATURES 30

#define VHOST_USER_VERSION 1u
#define VHOST_USER_VERSION_MASK 0x3u
#define VHOST_USER_FLAG_REPLY (1u << 2)
#define VHOST_USER_FLAG_NEED_REPLY (1u << 3)

#define VHOST_MSG_HEADER_LEN 12u
#define VHOST_MSG_MAX_PAYLOAD 4096u /* the largest we take (a config read is at most 256) */
#define VHOST_MSG_MAX_FDS 8u
#define VHOST_MAX_REGIONS 8u  /* in one SET_MEM_TABLE */
#define VHOST_MAX_MEM_SLOTS 32u /* in all, with ADD_MEM_REG */
#define VHOST_MAX_QUEUES 16u
#define VHOST_MAX_QUEUE_SIZE 32768u
#define VHOST_CONFIG_MAX 256u

#define VHOST_VRING_INDEX_MASK 0xffu
#define VHOST_VRING_NOFD (1u << 8)

typedef struct vhost_msg {
        uint32_t request, flags, size;
        uint8_t payload[VHOST_MSG_MAX_PAYLOAD];
} vhost_msg;

typedef struct vhost_region {
        uint64_t gpa, size, uva, mmap_offset;
} vhost_region;

/* Check a message whose header and size bytes of payload were read, with
 * n_fds descriptors: version, payload size for its request, descriptor
 * count, counts and indexes within bounds. 0, or -EBADMSG with *why. A
 * request we do not know passes (it is answered as unsupported). */
int vhost_msg_check(const vhost_msg *m, unsigned n_fds, const char **why);

/* Payload readers, for a message that passed vhost_msg_check. */
uint64_t vhost_msg_u64(const vhost_msg *m);
/* SET_MEM_TABLE: region i of the count the payload gives. */
unsigned vhost_msg_n_regions(const vhost_msg *m);
vhost_region vhost_msg_region(const vhost_msg *m, unsigned i);
/* ADD_MEM_REG / REM_MEM_REG: the one region. */
vhost_region vhost_msg_one_region(const vhost_msg *m);
/* SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE: index and number. */
void vhost_msg_state(const vhost_msg *m, uint32_t *index, uint32_t *num);
/* SET_VRING_ADDR. */
typedef struct vhost_vring_addr {
        uint32_t index, flags;
        uint64_t desc, used, avail, log;
} vhost_vring_addr;
vhost_vring_addr vhost_msg_vring_addr(const vhost_msg *m);
/* GET_INFLIGHT_FD / SET_INFLIGHT_FD: mmap size and offset (SET), queue
 * count and size. */
typedef struct vhost_inflight_desc {
        uint64_t mmap_size, mmap_offset;
        uint16_t num_queues, queue_size;
} vhost_inflight_desc;
#define VHOST_INFLIGHT_DESC_LEN 24u /* as front-ends send it: 20 bytes, padded to 8 */
vhost_inflight_desc vhost_msg_inflight(const vhost_msg *m);
/* The same, written as a reply's payload. */
void vhost_inflight_desc_put(uint8_t p[VHOST_INFLIGHT_DESC_LEN], const vhost_inflight_desc *x);
/* GET_CONFIG / SET_CONFIG: offset, size, flags. */
void vhost_msg_config(const vhost_msg *m, uint32_t *offset, uint32_t *size, uint32_t *flags);
