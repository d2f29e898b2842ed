/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "wire.h"

static __thread uint64_t deadline_ns;

uint64_t wire_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void wire_set_deadline(uint64_t ns) {
        deadline_ns = ns;
}

int wire_read(int fd, void *buf, size_t len) {
        uint8_t *p = buf;
        while (len > 0) {
                if (deadline_ns) {
                        uint64_t now = wire_now_ns();
                        if (now >= deadline_ns)
                                return -ETIMEDOUT;
                        uint64_t left = deadline_ns - now;
                        struct timeval tv = { .tv_sec = (time_t)(left / 1000000000ull),
                                              .tv_usec = (suseconds_t)(left % 1000000000ull / 1000) };
                        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                }
                ssize_t n = recv(fd, p, len, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int wire_skip(int fd, uint64_t len) {
        uint8_t tmp[4096];
        while (len > 0) {
                size_t n = len < sizeof tmp ? (size_t)len : sizeof tmp;
                int r = wire_read(fd, tmp, n);
                if (r < 0)
                        return r;
                len -= n;
        }
        return 0;
}

int wire_send_iov(int fd, struct iovec *iov, int cnt) {
        while (cnt > 0) {
                struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
                ssize_t n = sendmsg(fd, &m, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                while (cnt > 0 && (size_t)n >= iov->iov_len) {
                        n -= (ssize_t)iov->iov_len;
                        iov++;
                        cnt--;
                }
                if (cnt > 0) {
                        iov->iov_base = (uint8_t *)iov->iov_base + n;
                        iov->iov_len -= (size_t)n;
                }
        }
        return 0;
}

int wire_send(int fd, const void *buf, size_t len) {
        struct iovec iov = { (void *)buf, len };
        return wire_send_iov(fd, &iov, 1);
}
