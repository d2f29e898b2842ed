/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The client side of the daemon's control socket: when a daemon owns the
 * store, the command is sent to it with our stdout, stderr and working
 * directory, and its exit status comes back. See daemon/control-proto.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../daemon/control-proto.h"
#include "cli.h"

/* One attempt: 1 with *ret_status when the daemon ran it (or failed in a
 * way we report), 0 when no daemon answers, -EAGAIN when one answered but
 * ran nothing (it was stopping): try again. */
static int forward_once(cli *c, int argc, char **argv, int *ret_status) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        if ((size_t)snprintf(a.sun_path, sizeof a.sun_path, "%s/control.sock", c->store_dir) >=
            sizeof a.sun_path)
                return 0; /* a daemon could not listen there either */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 0;
        if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
                int e = errno;
                close(fd);
                if (e == ENOENT || e == ECONNREFUSED || e == ENOTDIR)
                        return 0; /* no daemon: we open the store ourselves */
                cli_error("the daemon serving %s refuses this client (%s: %s)", c->store_dir,
                          a.sun_path, strerror(e));
                *ret_status = 1;
                return 1;
        }
        uint8_t *buf = malloc(CONTROL_HEADER_LEN + CONTROL_MAX_LEN);
        int n = buf ? control_request_encode(argc, argv, buf, CONTROL_HEADER_LEN + CONTROL_MAX_LEN)
                    : -ENOMEM;
        int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (n < 0 || cwd < 0) {
                cli_error("cannot send the command to the daemon: %s",
                          strerror(n < 0 ? -n : errno));
                free(buf);
                close(fd);
                if (cwd >= 0)
                        close(cwd);
                *ret_status = 1;
                return 1;
        }
        fflush(stdout);
        fflush(stderr);
        int fds[CONTROL_FDS] = { STDOUT_FILENO, STDERR_FILENO, cwd };
        union {
                char b[CMSG_SPACE(sizeof fds)];
                struct cmsghdr align;
        } ctl;
        memset(&ctl, 0, sizeof ctl);
        struct iovec iov = { .iov_base = buf, .iov_len = (size_t)n };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                            .msg_controllen = sizeof ctl.b };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof fds);
        memcpy(CMSG_DATA(cm), fds, sizeof fds);
        ssize_t w = sendmsg(fd, &m, MSG_NOSIGNAL);
        close(cwd);
        free(buf);
        char started = 0;
        ssize_t k0 = -1;
        while (w == n && (k0 = read(fd, &started, 1)) < 0 && errno == EINTR) {
        }
        /* Not all sent (a daemon closing its listener resets the
         * connections still queued), or not started: nothing ran. */
        if (w != n || k0 != 1 || started != CONTROL_STARTED) {
                close(fd);
                return -EAGAIN; /* accepted nothing: the daemon was stopping */
        }
        uint8_t st[4];
        size_t got = 0;
        while (w == n && got < sizeof st) {
                ssize_t k = read(fd, st + got, sizeof st - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                got += (size_t)k;
        }
        close(fd);
        if (got != sizeof st) {
                cli_error("the daemon serving %s ended while it ran the command: its outcome "
                          "is unknown (see 'stellar ls', 'stellar fsck')",
                          c->store_dir);
                *ret_status = 1;
                return 1;
        }
        *ret_status = (int)le32_get(st);
        return 1;
}

int cli_forward(cli *c, int argc, char **argv, int *ret_status) {
        for (int attempt = 0;; attempt++) {
                int r = forward_once(c, argc, argv, ret_status);
                if (r != -EAGAIN)
                        return r;
                if (attempt == 50) {
                        cli_error("the daemon serving %s accepts no commands", c->store_dir);
                        *ret_status = 1;
                        return 1;
                }
                usleep(100 * 1000);
        }
}
