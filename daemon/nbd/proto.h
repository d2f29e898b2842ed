/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The NBD wire protocol (NetworkBlockDevice/nbd doc/proto.md): constants,
 * and the one gate every received message passes before any handler sees
 * it. Parsing never trusts a length; handlers get decoded structs only.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NBD_MAGIC 0x4e42444d41474943ull    /* "NBDMAGIC" */
#define NBD_IHAVEOPT 0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC 0x3e889045565a9ull
#define NBD_REQUEST_MAGIC 0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC 0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* handshake flags (server) and client flags */
#define NBD_FLAG_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_NO_ZEROES (1u << 1)

/* options */
enum {
        NBD_OPT_EXPORT_NAME = 1,
        NBD_OPT_ABORT = 2,
        NBD_OPT_LIST = 3,
        NBD_OPT_STARTTLS = 5,
        NBD_OPT_INFO = 6,
        NBD_OPT_GO = 7,
        NBD_OPT_STRUCTURED_REPLY = 8,
        NBD_OPT_LIST_META_CONTEXT = 9,
        NBD_OPT_SET_META_CONTEXT = 10,
};

/* option replies */
#define NBD_REP_ACK 1u
#define NBD_REP_SERVER 2u
#define NBD_REP_INFO 3u
#define NBD_REP_META_CONTEXT 4u
#define NBD_REP_ERR(n) ((1u << 31) + (n))
#define NBD_REP_ERR_UNSUP NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID NBD_REP_ERR(3)
#define NBD_REP_ERR_TLS_REQD NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN NBD_REP_ERR(6)
#define NBD_REP_ERR_TOO_BIG NBD_REP_ERR(9)

/* NBD_REP_INFO types */
#define NBD_INFO_EXPORT 0u
#define NBD_INFO_NAME 1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE 3u

/* transmission flags */
#define NBD_FLAG_HAS_FLAGS (1u << 0)
#define NBD_FLAG_READ_ONLY (1u << 1)
#define NBD_FLAG_SEND_FLUSH (1u << 2)
#define NBD_FLAG_SEND_FUA (1u << 3)
#define NBD_FLAG_SEND_TRIM (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN (1u << 8)
#define NBD_FLAG_SEND_CACHE (1u << 10)

/* commands and their flags */
enum {
        NBD_CMD_READ = 0,
        NBD_CMD_WRITE = 1,
        NBD_CMD_DISC = 2,
        NBD_CMD_FLUSH = 3,
        NBD_CMD_TRIM = 4,
        NBD_CMD_CACHE = 5,
        NBD_CMD_WRITE_ZEROES = 6,
        NBD_CMD_BLOCK_STATUS = 7,
};
#define NBD_CMD_FLAG_FUA (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE (1u << 1)
#define NBD_CMD_FLAG_DF (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE (1u << 3)

/* structured reply chunk types */
#define NBD_REPLY_FLAG_DONE (1u << 0)
#define NBD_REPLY_TYPE_NONE 0u
#define NBD_REPLY_TYPE_OFFSET_DATA 1u
#define NBD_REPLY_TYPE_OFFSET_HOLE 2u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR ((1u << 15) + 1)

/* base:allocation */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/* error values on the wire */
#define NBD_EPERM 1u
#define NBD_EIO 5u
#define NBD_ENOMEM 12u
#define NBD_EINVAL 22u
#define NBD_ENOSPC 28u
#define NBD_EOVERFLOW 75u
#define NBD_ESHUTDOWN 108u

/* Our limits. */
#define NBD_OPTION_MAX (64u << 10)   /* longest option payload we read */
#define NBD_REQUEST_MAX (32u << 20)  /* longest read or write */
#define NBD_NAME_MAX 4096u
#define NBD_QUERIES_MAX 16u
#define NBD_META_BASE_ALLOCATION 1u  /* context ids we hand out */
#define NBD_META_STELLAR_SHARED 2u

/* A decoded NBD_OPT_INFO/GO/LIST_META_CONTEXT/SET_META_CONTEXT payload.
 * name points into the payload (not NUL-terminated: use name_len). */
typedef struct nbd_option {
        uint32_t opt;
        const char *name;
        uint32_t name_len;
        uint16_t n_info;
        uint16_t info[16];        /* the first 16 info requests */
        uint32_t n_queries;
        const char *query[NBD_QUERIES_MAX];
        uint32_t query_len[NBD_QUERIES_MAX];
} nbd_option;

/* Decode and check an option payload. Returns 0, or an NBD_REP_ERR_* to
 * send back (the connection stays usable). */
uint32_t nbd_option_parse(uint32_t opt, const uint8_t *data, size_t len, nbd_option *ret);

typedef struct nbd_request {
        uint16_t flags;
        uint16_t type;
        uint64_t cookie;
        uint64_t offset;
        uint32_t length;
} nbd_request;

/* Decode a 28-byte request header. false: bad magic (hang up). */
bool nbd_request_decode(const uint8_t hdr[28], nbd_request *ret);

/* What the export allows. */
typedef struct nbd_export_caps {
        uint64_t size;
        bool writable;
        bool structured; /* structured replies negotiated */
        bool meta;       /* a metadata context negotiated */
} nbd_export_caps;

/* The gate: 0 if the request may be dispatched, else the NBD error to
 * reply with. *ret_hangup is set when the stream cannot continue (a write
 * longer than we will ever read). */
uint32_t nbd_request_validate(const nbd_request *q, const nbd_export_caps *caps, bool *ret_hangup);

/* Whether a metadata context query (a name or a namespace prefix such as
 * "base:") selects context id; for LIST an empty query selects all. */
bool nbd_meta_matches(const char *q, uint32_t len, bool list, uint32_t id);
const char *nbd_meta_name(uint32_t id);
