/* SPDX-License-Identifier: Apache-2.0 */
/* File helpers; see fs.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "cleanup.h"
#include "fs.h"

int st_pread_full(int fd, void *buf, size_t len, uint64_t off) {
        uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pread(fd, p, len, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EIO;
                p += n;
                len -= (size_t)n;
                off += (uint64_t)n;
        }
        return 0;
}

int st_pwrite_full(int fd, const void *buf, size_t len, uint64_t off) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = pwrite(fd, p, len, (off_t)off);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t)n;
                off += (uint64_t)n;
        }
        return 0;
}

int st_fsync_dir(int dirfd) {
        return ST_ERRNO(fsync(dirfd));
}

int st_write_atomic(int dirfd, const char *name, const void *data, size_t len) {
        char tmp[512];
        if ((size_t)snprintf(tmp, sizeof tmp, ".%s.tmp", name) >= sizeof tmp)
                return -ENAMETOOLONG;
        _cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        int r = st_pwrite_full(fd, data, len, 0);
        if (r == 0)
                r = ST_ERRNO(fsync(fd));
        if (r == 0)
                r = ST_ERRNO(renameat(dirfd, tmp, dirfd, name));
        if (r < 0) {
                (void)unlinkat(dirfd, tmp, 0);
                return r;
        }
        return st_fsync_dir(dirfd);
}

int st_read_file(int dirfd, const char *name, size_t max, uint8_t **ret, size_t *ret_len) {
        _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((uint64_t)st.st_size > max)
                return -EFBIG;
        size_t len = (size_t)st.st_size;
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return -ENOMEM;
        int r = st_pread_full(fd, buf, len, 0);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int st_buf_grow_max(uint8_t **p, size_t *cap, size_t need, size_t max) {
        if (need <= *cap)
                return 0;
        if (need > max)
                return -EFBIG;
        /* Double (from 256 bytes): a buffer filled piece by piece is copied
         * O(n) bytes in all, not O(n^2). */
        size_t n = *cap > max / 2 ? max : *cap * 2;
        if (n < 256)
                n = 256 < max ? 256 : max;
        if (n < need)
                n = need;
        uint8_t *t = realloc(*p, n);
        if (!t)
                return -ENOMEM;
        *p = t;
        *cap = n;
        return 0;
}

int st_buf_grow(uint8_t **p, size_t *cap, size_t need) {
        return st_buf_grow_max(p, cap, need, SIZE_MAX);
}

void st_names_free(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *)a, *(char *const *)b);
}

int st_list_dir(int dirfd, bool (*keep)(const char *name), char ***ret, size_t *ret_n) {
        int fd = dup(dirfd);
        if (fd < 0)
                return -errno;
        DIR *d = fdopendir(fd);
        if (!d) {
                close(fd);
                return -errno;
        }
        rewinddir(d);
        char **names = NULL;
        size_t n = 0, cap = 0;
        int r = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (keep ? !keep(de->d_name)
                         : !strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                if (n == cap) {
                        cap = cap ? cap * 2 : 16;
                        char **nn = realloc(names, cap * sizeof *nn);
                        if (!nn) {
                                r = -ENOMEM;
                                break;
                        }
                        names = nn;
                }
                if (!(names[n] = strdup(de->d_name))) {
                        r = -ENOMEM;
                        break;
                }
                n++;
        }
        closedir(d);
        if (r < 0) {
                st_names_free(names, n);
                return r;
        }
        if (n)
                qsort(names, n, sizeof *names, cmp_str);
        *ret = names;
        *ret_n = n;
        return 0;
}

int st_pwritev_full(int fd, struct iovec *v, int cnt, uint64_t off) {
        while (cnt > 0) {
                ssize_t w = pwritev(fd, v, cnt, (off_t)off);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                off += (uint64_t)w;
                while (cnt > 0 && (size_t)w >= v->iov_len) {
                        w -= (ssize_t)v->iov_len;
                        v++;
                        cnt--;
                }
                if (cnt > 0) {
                        v->iov_base = (uint8_t *)v->iov_base + w;
                        v->iov_len -= (size_t)w;
                }
        }
        return 0;
}
