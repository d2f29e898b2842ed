/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
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

/* With a deadline: the socket's receive timeout set to what is left of it
 * (or -ETIMEDOUT once it has passed). */
static int arm_deadline(int fd) {
        if (!deadline_ns)
                return 0;
        uint64_t now = wire_now_ns();
        if (now >= deadline_ns)
                return -ETIMEDOUT;
        uint64_t left = deadline_ns - now;
        struct timeval tv = { .tv_sec = (time_t)(left / 1000000000ull),
                              .tv_usec = (suseconds_t)(left % 1000000000ull / 1000) };
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        return 0;
}

int wire_recv_some(const wire *w, void *buf, size_t cap) {
        if (cap > INT_MAX)
                cap = INT_MAX;
        for (;;) {
                int r = arm_deadline(w->fd);
                if (r < 0)
                        return r;
                if (w->tls) {
                        ssize_t n = gnutls_record_recv(w->tls, buf, cap);
                        /* (a receive timeout that ran out: the deadline decides) */
                        if (n == GNUTLS_E_INTERRUPTED || (n == GNUTLS_E_AGAIN && deadline_ns))
                                continue;
                        if (n == GNUTLS_E_AGAIN)
                                return -ETIMEDOUT;
                        if (n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION)
                                return -ECONNRESET;
                        /* -EPROTO: a record that does not decrypt or check */
                        return n < 0 ? -EPROTO : (int)n;
                }
                ssize_t n = recv(w->fd, buf, cap, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                return (int)n;
        }
}

int wire_read(const wire *w, void *buf, size_t len) {
        uint8_t *p = buf;
        while (len > 0) {
                int n = wire_recv_some(w, p, len);
                if (n < 0)
                        return n;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

int wire_skip(const wire *w, uint64_t len) {
        uint8_t tmp[4096];
        while (len > 0) {
                size_t n = len < sizeof tmp ? (size_t)len : sizeof tmp;
                int r = wire_read(w, tmp, n);
                if (r < 0)
                        return r;
                len -= n;
        }
        return 0;
}

static int tls_send(gnutls_session_t s, struct iovec *iov, int cnt) {
        /* corked: the pieces of one message go out in as few records as fit */
        gnutls_record_cork(s);
        for (int i = 0; i < cnt; i++) {
                const uint8_t *p = iov[i].iov_base;
                size_t len = iov[i].iov_len;
                while (len > 0) {
                        ssize_t n = gnutls_record_send(s, p, len);
                        if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
                                continue;
                        if (n < 0) {
                                (void)gnutls_record_uncork(s, 0);
                                return -EPIPE;
                        }
                        p += n;
                        len -= (size_t)n;
                }
        }
        for (;;) {
                int r = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
                if (r >= 0)
                        return 0;
                if (r != GNUTLS_E_INTERRUPTED && r != GNUTLS_E_AGAIN)
                        return -EPIPE;
        }
}

int wire_send_iov(const wire *w, struct iovec *iov, int cnt) {
        if (w->tls)
                return tls_send(w->tls, iov, cnt);
        int fd = w->fd;
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

int wire_send(const wire *w, const void *buf, size_t len) {
        struct iovec iov = { (void *)buf, len };
        return wire_send_iov(w, &iov, 1);
}

size_t wire_pending(const wire *w) {
        size_t n = w->tls ? gnutls_record_check_pending(w->tls) : 0;
        int q = 0;
        if (ioctl(w->fd, FIONREAD, &q) == 0 && q > 0)
                n += (size_t)q;
        return n;
}

int wire_buf_grow(uint8_t **p, size_t *cap, size_t need) {
        if (need <= *cap)
                return 0;
        size_t n = *cap < 256 ? 256 : *cap;
        while (n < need)
                n = n > SIZE_MAX / 2 ? need : n * 2;
        uint8_t *t = realloc(*p, n);
        if (!t)
                return -ENOMEM;
        *p = t;
        *cap = n;
        return 0;
}
