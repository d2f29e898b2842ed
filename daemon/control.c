/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's control socket: DIR/control.sock, mode 0600. Each client
 * (the stellar command, while the daemon owns the store) sends one request
 * with its stdout, stderr and working directory, and gets its command's exit
 * status back. A peer that is neither the daemon's user nor root is refused
 * (SO_PEERCRED), a malformed request gets an error and runs nothing. Every
 * request runs in a thread of its own; control_drain waits for them.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control-proto.h"
#include "serve.h"

static pthread_mutex_t running_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t running_done = PTHREAD_COND_INITIALIZER;
static unsigned n_running;

int control_listen(const char *store_dir, int *ret_fd, char ret_path[108]) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        if ((size_t)snprintf(a.sun_path, sizeof a.sun_path, "%s/control.sock", store_dir) >=
            sizeof a.sun_path)
                return -ENAMETOOLONG;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        /* We own the store (its lock), so a socket here is a dead daemon's. */
        (void)unlink(a.sun_path);
        mode_t old = umask(077);
        int r = bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0 ? -errno : 0;
        umask(old);
        if (r == 0 && chmod(a.sun_path, 0600) < 0)
                r = -errno;
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret_fd = fd;
        memcpy(ret_path, a.sun_path, sizeof a.sun_path);
        return 0;
}

typedef struct request {
        int fd;
        long pid, uid; /* of the client */
        st_store *s;
        const serve_opts *o;
} request;

static int reply(int fd, int status) {
        uint8_t b[4];
        le32_put(b, (uint32_t)status);
        ssize_t k;
        while ((k = send(fd, b, sizeof b, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
        }
        return k == (ssize_t)sizeof b ? 0 : -errno;
}

/* Read exactly len bytes; the first read may carry the descriptors. */
static int read_full(int fd, uint8_t *buf, size_t len, int *fds, size_t *n_fds) {
        size_t got = 0;
        while (got < len) {
                union {
                        char b[CMSG_SPACE(sizeof(int) * CONTROL_FDS)];
                        struct cmsghdr align;
                } ctl;
                struct iovec iov = { .iov_base = buf + got, .iov_len = len - got };
                struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                                    .msg_controllen = sizeof ctl.b };
                ssize_t k = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < n; i++) {
                                int x;
                                memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof x);
                                if (*n_fds < CONTROL_FDS)
                                        fds[(*n_fds)++] = x;
                                else
                                        close(x);
                        }
                }
                got += (size_t)k;
        }
        return 0;
}

static void *request_main(void *arg) {
        request q = *(request *)arg;
        free(arg);
        int fds[CONTROL_FDS];
        size_t n_fds = 0;
        uint8_t hdr[CONTROL_HEADER_LEN];
        uint8_t *body = NULL;
        uint32_t body_len = 0;
        int status = 1;
        int r = read_full(q.fd, hdr, sizeof hdr, fds, &n_fds);
        st_diag d = { 0 };
        if (r == 0)
                r = control_header_parse(hdr, sizeof hdr, &body_len, &d);
        if (r == 0 && !(body = malloc(body_len)))
                r = -ENOMEM;
        if (r == 0)
                r = read_full(q.fd, body, body_len, fds, &n_fds);
        char *argv[CONTROL_MAX_ARGS + 1];
        int argc = 0;
        if (r == 0)
                r = control_body_parse(body, body_len, argv, &argc, &d);
        if (r == 0 && n_fds != CONTROL_FDS)
                r = -EBADMSG;
        FILE *out = NULL, *err = NULL;
        if (r == 0) {
                out = fdopen(fds[0], "w");
                err = fdopen(fds[1], "w");
                if (!out || !err)
                        r = -errno;
        }
        if (r == 0) {
                char started = CONTROL_STARTED;
                if (send(q.fd, &started, 1, MSG_NOSIGNAL) != 1)
                        r = -EPIPE; /* the client is gone: run nothing */
        }
        if (r == 0) {
                setvbuf(err, NULL, _IONBF, 0);
                status = q.o->run(q.o->run_ctx, q.s, argc, argv, out, err, fds[2]);
                fflush(out);
        } else
                fprintf(stderr, "stellar serve: control socket: bad request: %s%s%s\n",
                        d.what ? d.what : "", d.what ? ": " : "", strerror(-r));
        if (out)
                fclose(out);
        else if (n_fds > 0)
                close(fds[0]);
        if (err)
                fclose(err);
        else if (n_fds > 1)
                close(fds[1]);
        if (n_fds > 2)
                close(fds[2]);
        if (r == 0) {
                int k = reply(q.fd, status);
                /* One line per command: who asked for what, and how it ended. */
                fprintf(stderr, "stellar serve: control: pid %ld (uid %ld): %s%s -> exit %d%s\n",
                        q.pid, q.uid, argv[0], argc > 1 ? " ..." : "", status,
                        k < 0 ? " (the client was gone)" : "");
        }
        close(q.fd);
        free(body);
        pthread_mutex_lock(&running_lock);
        if (--n_running == 0)
                pthread_cond_broadcast(&running_done);
        pthread_mutex_unlock(&running_lock);
        return NULL;
}

void control_accept(int lfd, st_store *s, const serve_opts *o) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return;
        struct ucred cr;
        socklen_t cl = sizeof cr;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) < 0 ||
            (cr.uid != geteuid() && cr.uid != 0)) {
                fprintf(stderr, "stellar serve: control socket: refused a client of uid %ld\n",
                        (long)cr.uid);
                close(fd);
                return;
        }
        request *q = malloc(sizeof *q);
        if (!q) {
                close(fd);
                return;
        }
        *q = (request){ .fd = fd, .s = s, .o = o, .pid = (long)cr.pid, .uid = (long)cr.uid };
        pthread_mutex_lock(&running_lock);
        n_running++;
        pthread_mutex_unlock(&running_lock);
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_t t;
        if (pthread_create(&t, &attr, request_main, q) != 0) {
                free(q);
                close(fd);
                pthread_mutex_lock(&running_lock);
                n_running--;
                pthread_mutex_unlock(&running_lock);
        }
        pthread_attr_destroy(&attr);
}

void control_drain(void) {
        pthread_mutex_lock(&running_lock);
        while (n_running > 0)
                pthread_cond_wait(&running_done, &running_lock);
        pthread_mutex_unlock(&running_lock);
}
