/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Types shared by every part of the public API: digests, diagnostics, the
 * export macro. Errors are negative errno values; docs/errors.md lists them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_API __attribute__((visibility("default")))

#define ST_DIGEST_LEN 32
#define ST_DIGEST_HEX_LEN 64

/* A chunk's name: its BLAKE3-256 hash. */
typedef struct st_digest {
        uint8_t b[ST_DIGEST_LEN];
} st_digest;

/* Where a parser of on-disk or received bytes gave up: the file (or ""),
 * the byte offset in it (ST_DIAG_NO_OFFSET when a file as a whole is at
 * fault) and a static description. Filled only on failure. */
#define ST_DIAG_NO_OFFSET UINT64_MAX
typedef struct st_diag {
        char file[256];
        uint64_t offset;
        const char *what;
} st_diag;

/* Progress callback for long operations: bytes done of total. Called from the
 * thread that started the operation. */
typedef void (*st_progress_fn)(void *userdata, uint64_t done, uint64_t total);

/* Format digest as 64 lowercase hex characters plus NUL into out[65]. */
ST_API void st_digest_to_hex(const st_digest *d, char out[ST_DIGEST_HEX_LEN + 1]);
/* Parse 64 hex characters. Returns 0 or -EINVAL. */
ST_API int st_digest_from_hex(const char *hex, st_digest *ret);
