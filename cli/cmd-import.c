/* SPDX-License-Identifier: Apache-2.0 */
/* stellar import IMAGE NAME */
#include <stdio.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar import [--json] [--quiet] IMAGE NAME\n\n"
        "Store IMAGE (a raw image file or a block device) as NAME. Chunks the store\n"
        "already has are not written again; zero blocks cost nothing. The image\n"
        "appears only once it is completely stored. Creates the store if needed.\n";

int cmd_import(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (argc - i != 2) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, ST_STORE_CREATE, &s) < 0)
                return 1;
        cli_progress p;
        cli_progress_init(&p, c, "importing");
        st_import_opts o = { .progress = cli_progress_cb, .userdata = &p };
        st_import_result res;
        st_diag d = { 0 };
        uint64_t t0 = cli_now_ns();
        char pb[4200];
        int r = st_store_import(s, cli_path(c, argv[i], pb, sizeof pb), argv[i + 1], &o, &res, &d);
        double secs = (double)(cli_now_ns() - t0) / 1e9;
        cli_progress_end(&p);
        cli_close(c, s);
        if (r < 0) {
                cli_diag_error("import failed", r, &d);
                return 1;
        }
        if (c->json) {
                fprintf(cli_out(), "{\"name\":\"%s\",\"size\":%llu,\"data_bytes\":%llu,\"chunks\":%llu,"
                       "\"new_chunks\":%llu,\"new_bytes\":%llu,\"new_stored_bytes\":%llu,"
                       "\"seconds\":%.3f}\n",
                       argv[i + 1], (unsigned long long)res.size, (unsigned long long)res.data_bytes,
                       (unsigned long long)res.n_chunks, (unsigned long long)res.n_new,
                       (unsigned long long)res.new_bytes, (unsigned long long)res.new_stored, secs);
        } else if (!c->quiet) {
                char a[32], b[32], n[32], w[32];
                fprintf(cli_out(), "imported %s: %s (%s data) in %llu chunks; %llu new chunks, %s new, %s "
                       "written; %.2f s\n",
                       argv[i + 1], cli_size(res.size, a), cli_size(res.data_bytes, b),
                       (unsigned long long)res.n_chunks, (unsigned long long)res.n_new,
                       cli_size(res.new_bytes, n), cli_size(res.new_stored, w), secs);
        }
        return 0;
}
