/* SPDX-License-Identifier: Apache-2.0 */
/* stellar export NAME FILE */
#include <stdio.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar export [--quiet] NAME FILE\n\n"
        "Write NAME (an image, a snapshot, or a volume with its uncommitted writes)\n"
        "to FILE, byte-identical to its content. A regular\n"
        "file is sparse where the image has holes; a block device gets zeros.\n"
        "Every chunk is verified against its hash on the way out.\n";

int cmd_export(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (argc - i != 2) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        st_store *s;
        /* SHARED, not read-only: chunks of a lazily pulled image are
         * fetched and kept on the way */
        if (cli_open(c, ST_STORE_SHARED, &s) < 0)
                return 1;
        (void)st_store_attach_sources(s, NULL);
        cli_progress p;
        cli_progress_init(&p, c, "exporting");
        st_import_opts o = { .progress = cli_progress_cb, .userdata = &p };
        st_diag d = { 0 };
        char pb[4200];
        int r = st_store_export(s, argv[i], cli_path(c, argv[i + 1], pb, sizeof pb), &o, &d);
        cli_progress_end(&p);
        cli_close(c, s);
        if (r < 0) {
                cli_diag_error("export failed", r, &d);
                return 1;
        }
        return 0;
}
