/* SPDX-License-Identifier: Apache-2.0 */
/* stellar fsck */
#include <stdio.h>
#include <string.h>

#include <stellar/volume.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar fsck [--json] [--quiet]\n\n"
        "Read every chunk in every pack and check it against its hash; check every\n"
        "manifest, every reference and every reference count, and replay every\n"
        "volume's delta journal (damage there is an error; the torn end of an\n"
        "unfinished flush is not). Changes nothing.\n"
        "Prints each problem as FILE:OFFSET: message (the first 50 errors and 20\n"
        "warnings; no warnings with --quiet). Exit status 1 if any error was found (warnings, such as\n"
        "unreferenced chunks that gc will free, do not count).\n";

static void report(void *userdata, int severity, const char *file, uint64_t off, const char *msg) {
        cli *c = userdata;
        static unsigned long long n_warnings, n_errors;
        if (c->json || (severity == 0 && c->quiet))
                return;
        if (severity == 1 && ++n_errors > 50) {
                if (n_errors == 51)
                        fprintf(cli_out(), "error: more errors not shown (the summary counts them all)\n");
                return;
        }
        if (severity == 0 && ++n_warnings > 20) {
                if (n_warnings == 21)
                        fprintf(cli_out(), "warning: more warnings not shown\n");
                return;
        }
        if (off == ST_DIAG_NO_OFFSET)
                fprintf(cli_out(), "%s: %s: %s\n", severity ? "error" : "warning", file, msg);
        else
                fprintf(cli_out(), "%s: %s:%llu: %s\n", severity ? "error" : "warning", file,
                       (unsigned long long)off, msg);
}

int cmd_fsck(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (i != argc) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, ST_STORE_RDONLY, &s) < 0)
                return 1;
        cli_progress p;
        cli_progress_init(&p, c, "checking packs");
        p.items = true;
        st_import_opts o = { .progress = cli_progress_cb, .userdata = &p };
        st_fsck_result res;
        int r = st_store_fsck(s, report, c, &o, &res);
        cli_progress_end(&p);
        if (r == 0)
                r = st_volume_fsck(s, report, c, &res);
        cli_close(c, s);
        if (r < 0) {
                cli_error("fsck could not run: %s", strerror(-r));
                return 1;
        }
        if (c->json)
                fprintf(cli_out(), "{\"errors\":%llu,\"warnings\":%llu,\"chunks_checked\":%llu,"
                       "\"bytes_checked\":%llu,\"manifests_checked\":%llu,\"deltas_checked\":%llu}\n",
                       (unsigned long long)res.n_errors, (unsigned long long)res.n_warnings,
                       (unsigned long long)res.chunks_checked, (unsigned long long)res.bytes_checked,
                       (unsigned long long)res.manifests_checked,
                       (unsigned long long)res.deltas_checked);
        else if (!c->quiet)
                fprintf(cli_out(), "%llu chunks (%llu bytes), %llu manifests and %llu deltas checked: %llu "
                       "errors, %llu warnings\n",
                       (unsigned long long)res.chunks_checked, (unsigned long long)res.bytes_checked,
                       (unsigned long long)res.manifests_checked,
                       (unsigned long long)res.deltas_checked, (unsigned long long)res.n_errors,
                       (unsigned long long)res.n_warnings);
        return res.n_errors ? 1 : 0;
}
