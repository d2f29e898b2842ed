/* SPDX-License-Identifier: Apache-2.0 */
/* stellar hash FILE...: BLAKE3 in b3sum's output format. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar hash FILE...\n\n"
        "Print the BLAKE3 hash of each file as 'HEX  FILE' (like b3sum). '-' is stdin.\n";

int cmd_hash(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (i == argc) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        int ret = 0;
        for (; i < argc; i++) {
                int fd = strcmp(argv[i], "-") == 0 ? STDIN_FILENO : open(argv[i], O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        cli_error("%s: %m", argv[i]);
                        ret = 1;
                        continue;
                }
                st_digest d;
                int r = st_hash_fd(fd, &d);
                if (fd != STDIN_FILENO)
                        close(fd);
                if (r < 0) {
                        cli_error("%s: %s", argv[i], strerror(-r));
                        ret = 1;
                        continue;
                }
                char hex[ST_DIGEST_HEX_LEN + 1];
                st_digest_to_hex(&d, hex);
                fprintf(cli_out(), "%s  %s\n", hex, argv[i]);
        }
        return ret;
}
