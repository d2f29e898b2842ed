/* SPDX-License-Identifier: Apache-2.0 */
/* stellar rm NAME... */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar rm NAME...\n\n"
        "Remove images, snapshots or volumes (with their uncommitted writes). Data\n"
        "that clones or snapshots share stays; 'stellar gc' frees the chunks nothing\n"
        "uses any more.\n";

int cmd_rm(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (i == argc) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, 0, &s) < 0)
                return 1;
        int ret = 0;
        for (; i < argc; i++) {
                st_diag held = { 0 };
                int r = st_store_remove(s, argv[i], &held);
                if (r == 0 && held.what)
                        cli_error("warning: '%s' removed, but the manifests it held are kept "
                                  "until %s%s%s can be read (run 'stellar fsck')",
                                  argv[i], held.file, held.file[0] ? ": " : "", held.what);
                if (r < 0) {
                        cli_error("cannot remove '%s': %s", argv[i],
                                  r == -ENOENT   ? "no such image, snapshot or volume"
                                  : r == -EBUSY ? "the volume is open"
                                                : strerror(-r));
                        ret = 1;
                }
        }
        cli_close(c, s);
        return ret;
}
