/* SPDX-License-Identifier: Apache-2.0 */
/* File helpers: full reads and writes, and durable atomic replacement. */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* pread/pwrite until done. Return 0, -EIO on a short read (EOF), or -errno. */
int st_pread_full(int fd, void *buf, size_t len, uint64_t off);
int st_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/* Durably replace dir/name with data: temp file, fsync, renameat, fsync dir. */
int st_write_atomic(int dirfd, const char *name, const void *data, size_t len);
/* Read a whole file (at most max bytes; -EFBIG beyond). Caller frees *ret. */
int st_read_file(int dirfd, const char *name, size_t max, uint8_t **ret, size_t *ret_len);
int st_fsync_dir(int dirfd);
