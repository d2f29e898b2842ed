/* SPDX-License-Identifier: Apache-2.0 */
/*
 * BLAKE3 hashing. One-shot and streaming. The state is a fixed-size value the
 * caller keeps on the stack; it is not shared between threads.
 */
#pragma once

#include <stellar/common.h>

typedef struct st_hasher {
        /* Large enough for the BLAKE3 reference hasher (1912 bytes on x86-64). */
        _Alignas(16) uint8_t opaque[1920];
} st_hasher;

ST_API void st_hasher_init(st_hasher *h);
ST_API void st_hasher_update(st_hasher *h, const void *data, size_t len);
ST_API void st_hasher_final(const st_hasher *h, st_digest *ret);

/* Hash len bytes at data. Thread-safe. */
ST_API void st_hash(const void *data, size_t len, st_digest *ret);

/* Hash a whole file by read() into one reused buffer (no mmap). Returns 0 or
 * negative errno. */
ST_API int st_hash_fd(int fd, st_digest *ret);
