/* SPDX-License-Identifier: Apache-2.0 */
/* File helpers: full reads and writes, and durable atomic replacement. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* pread/pwrite until done. Return 0, -EIO on a short read (EOF), or -errno. */
int st_pread_full(int fd, void *buf, size_t len, uint64_t off);
int st_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* pwritev until all of iov is written (iov is consumed). 0 or -errno. */
struct iovec;
int st_pwritev_full(int fd, struct iovec *iov, int cnt, uint64_t off);
/* Durably replace dir/name with data: temp file, fsync, renameat, fsync dir. */
int st_write_atomic(int dirfd, const char *name, const void *data, size_t len);
/* Read a whole file (at most max bytes; -EFBIG beyond). Caller frees *ret. */
int st_read_file(int dirfd, const char *name, size_t max, uint8_t **ret, size_t *ret_len);
int st_fsync_dir(int dirfd);
/* Grow a byte buffer to at least need bytes: to twice its capacity, or to
 * need if that is more, but never past max. Returns 0, -EFBIG if need >
 * max, or -ENOMEM; on failure *p and *cap are unchanged. */
int st_buf_grow_max(uint8_t **p, size_t *cap, size_t need, size_t max);
/* st_buf_grow_max without a cap. */
int st_buf_grow(uint8_t **p, size_t *cap, size_t need);
/* Sorted names in dirfd that keep() accepts (every name but . and .. if keep is NULL). */
int st_list_dir(int dirfd, bool (*keep)(const char *name), char ***ret, size_t *ret_n);
void st_names_free(char **names, size_t n);
