/* SPDX-License-Identifier: Apache-2.0 */
/* stellar attach / detach: vhost-user-blk sockets of a running daemon. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../daemon/serve.h"
#include "cli.h"

static const char attach_usage[] =
        "Usage: stellar attach NAME --vhost-user-blk PATH [--readonly]\n\n"
        "Have the daemon serving the store (stellar serve) serve NAME as a\n"
        "virtio-blk disk over vhost-user on the Unix socket PATH, from now on, for\n"
        "one VMM at a time: a volume read-write (--readonly: read-only), an image\n"
        "or snapshot read-only. The same as serve's --vhost-user-blk PATH=NAME,\n"
        "without a restart. Exit status 3 when no daemon serves the store.\n";

static const char detach_usage[] =
        "Usage: stellar detach PATH\n\n"
        "End the daemon's vhost-user-blk socket PATH, and the connection of the\n"
        "VMM attached to it if there is one (its disk goes away under the guest:\n"
        "stop the VM, or remove the device, first). The volume's acknowledged\n"
        "writes are kept. Exit status 3 when no daemon serves the store.\n";

/* PATH as the daemon binds it: relative ones from the client's working
 * directory, made absolute (the name stays valid after the command ends). */
static const char *socket_path(const cli *c, const char *path, char *buf, size_t len) {
        if (path[0] == '/')
                return path;
        char cwd[4096] = ".";
        if (c->cwd_fd >= 0) {
                char link[64];
                snprintf(link, sizeof link, "/proc/self/fd/%d", c->cwd_fd);
                ssize_t n = readlink(link, cwd, sizeof cwd - 1);
                if (n <= 0)
                        return NULL;
                cwd[n] = 0;
        } else if (!getcwd(cwd, sizeof cwd))
                return NULL;
        int n = snprintf(buf, len, "%s/%s", cwd, path);
        return n > 0 && (size_t)n < len ? buf : NULL;
}

static int no_daemon(const cli *c) {
        fprintf(cli_err(), "stellar: no daemon serves %s: start stellar serve (with "
                           "--vhost-user-blk PATH=NAME, or attach afterwards)\n",
                c->store_dir);
        return 3;
}

int cmd_attach(cli *c, int argc, char **argv) {
        const char *name = NULL, *path = NULL;
        bool ro = false;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        fprintf(cli_out(), "%s", attach_usage);
                        return 0;
                } else if (!strcmp(argv[i], "--vhost-user-blk") && i + 1 < argc)
                        path = argv[++i];
                else if (!strcmp(argv[i], "--readonly"))
                        ro = true;
                else if (argv[i][0] != '-' && !name)
                        name = argv[i];
                else {
                        cli_error("unexpected argument '%s'", argv[i]);
                        fprintf(cli_err(), "%s", attach_usage);
                        return 2;
                }
        }
        if (!name || !path) {
                fprintf(cli_err(), "%s", attach_usage);
                return 2;
        }
        if (!c->served)
                return no_daemon(c);
        st_image_info info;
        st_diag d = { 0 };
        int r = st_store_info(c->served, name, &info, &d);
        if (r < 0) {
                cli_diag_error(name, r, &d);
                return 1;
        }
        char buf[4096], msg[256];
        const char *p = socket_path(c, path, buf, sizeof buf);
        if (!p) {
                cli_error("%s: cannot make it an absolute path", path);
                return 1;
        }
        r = serve_vhost_request(false, p, name, ro, msg, sizeof msg);
        if (r < 0) {
                cli_error("attach %s: %s", name, msg);
                return 1;
        }
        fprintf(cli_out(), "%s\n", msg);
        return 0;
}

int cmd_detach(cli *c, int argc, char **argv) {
        if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
                fprintf(cli_out(), "%s", detach_usage);
                return 0;
        }
        if (argc != 2 || argv[1][0] == '-') {
                fprintf(cli_err(), "%s", detach_usage);
                return 2;
        }
        if (!c->served)
                return no_daemon(c);
        char buf[4096], msg[256];
        const char *p = socket_path(c, argv[1], buf, sizeof buf);
        if (!p) {
                cli_error("%s: cannot make it an absolute path", argv[1]);
                return 1;
        }
        int r = serve_vhost_request(true, p, NULL, false, msg, sizeof msg);
        if (r < 0) {
                cli_error("detach: %s", msg);
                return 1;
        }
        fprintf(cli_out(), "%s\n", msg);
        return 0;
}
