/* SPDX-License-Identifier: Apache-2.0 */
/* stellar gc */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar gc [--json] [--quiet]\n\n"
        "Free chunks no image refers to, and compact the packs that held them.\n"
        "What is referenced is recounted from every manifest the refs reach; while\n"
        "any ref or manifest cannot be read, or a chunk in use is damaged, gc frees\n"
        "nothing and says which file to look at (see 'stellar fsck').\n"
        "It also compresses what imports left for it: frames made below the\n"
        "store's cold zstd level are remade at it, once, and chunks an import\n"
        "stored raw ('init --zstd-level defer') are compressed into frames.\n"
        "Every chunk it keeps is read and verified first.\n"
        "Safe to interrupt at any point.\n";

int cmd_gc(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, usage);
        if (i < 0)
                return 2;
        if (i != argc) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, 0, &s) < 0)
                return 1;
        cli_progress p;
        cli_progress_init(&p, c, "compacting packs");
        p.items = true;
        st_import_opts o = { .progress = cli_progress_cb, .userdata = &p };
        st_gc_result res;
        st_diag d = { 0 };
        int r = st_store_gc(s, &o, &res, &d);
        cli_progress_end(&p);
        cli_close(c, s);
        if (r < 0) {
                cli_diag_error("gc refused, nothing was freed", r, &d);
                return 1;
        }
        if (c->json)
                fprintf(cli_out(), "{\"chunks_freed\":%llu,\"bytes_freed\":%llu,\"packs_rewritten\":%llu,"
                       "\"counts_corrected\":%llu,\"frames_recompressed\":%llu}\n",
                       (unsigned long long)res.chunks_freed, (unsigned long long)res.bytes_freed,
                       (unsigned long long)res.packs_rewritten,
                       (unsigned long long)res.counts_corrected,
                       (unsigned long long)res.frames_recompressed);
        else if (!c->quiet) {
                char a[32];
                fprintf(cli_out(), "freed %llu chunks, reclaimed %s, rewrote %llu packs\n",
                       (unsigned long long)res.chunks_freed, cli_size(res.bytes_freed, a),
                       (unsigned long long)res.packs_rewritten);
                if (res.frames_recompressed)
                        fprintf(cli_out(), "recompressed %llu frames at the cold level\n",
                               (unsigned long long)res.frames_recompressed);
                if (res.counts_corrected)
                        fprintf(cli_out(), "corrected %llu reference counts that disagreed with the manifests\n",
                               (unsigned long long)res.counts_corrected);
        }
        return 0;
}
