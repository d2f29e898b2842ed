/* SPDX-License-Identifier: Apache-2.0 */
/* stellar stats */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar stats [--json]\n\n"
        "Store totals. logical_bytes: sum of image sizes. referenced_bytes: bytes of\n"
        "data the images refer to (holes excluded). unique_bytes: raw bytes of distinct\n"
        "chunks. stored_bytes: their bytes in packs after compression, headers included.\n"
        "dedup_ratio: referenced_bytes / unique_bytes. compression_ratio: unique / stored.\n";

int cmd_stats(cli *c, int argc, char **argv) {
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
        st_store_stats st;
        int r = st_store_stats_get(s, &st);
        cli_close(c, s);
        if (r < 0) {
                cli_error("stats: %s", strerror(-r));
                return 1;
        }
        double dedup = st.unique_bytes ? (double)st.referenced_bytes / (double)st.unique_bytes : 1.0;
        double comp = st.stored_bytes ? (double)st.unique_bytes / (double)st.stored_bytes : 1.0;
        double ram = st.n_chunks ? (double)st.index_ram_bytes / (double)st.n_chunks : 0.0;
        if (c->json) {
                fprintf(cli_out(), "{\"images\":%llu,\"chunks\":%llu,\"unreferenced_chunks\":%llu,"
                       "\"framed_chunks\":%llu,\"frames\":%llu,"
                       "\"logical_bytes\":%llu,\"referenced_bytes\":%llu,\"unique_bytes\":%llu,"
                       "\"stored_bytes\":%llu,\"pack_bytes\":%llu,\"packs\":%llu,"
                       "\"dedup_ratio\":%.4f,\"compression_ratio\":%.4f,"
                       "\"index_ram_bytes\":%llu}\n",
                       (unsigned long long)st.n_images, (unsigned long long)st.n_chunks,
                       (unsigned long long)st.n_unreferenced, (unsigned long long)st.n_framed,
                       (unsigned long long)st.n_frames, (unsigned long long)st.logical_bytes,
                       (unsigned long long)st.referenced_bytes, (unsigned long long)st.unique_bytes,
                       (unsigned long long)st.stored_bytes, (unsigned long long)st.pack_bytes,
                       (unsigned long long)st.n_packs, dedup, comp,
                       (unsigned long long)st.index_ram_bytes);
                return 0;
        }
        char a[32], b[32], u[32], d[32], p[32], x[32];
        fprintf(cli_out(), "images:            %llu\n"
               "chunks:            %llu (%llu unreferenced; %llu in %llu frames)\n"
               "logical bytes:     %s\n"
               "referenced bytes:  %s\n"
               "unique bytes:      %s\n"
               "stored bytes:      %s\n"
               "pack files:        %llu, %s\n"
               "dedup ratio:       %.2fx\n"
               "compression ratio: %.2fx\n"
               "index RAM:         %s (%.1f bytes per chunk)\n",
               (unsigned long long)st.n_images, (unsigned long long)st.n_chunks,
               (unsigned long long)st.n_unreferenced, (unsigned long long)st.n_framed,
               (unsigned long long)st.n_frames, cli_size(st.logical_bytes, a),
               cli_size(st.referenced_bytes, b), cli_size(st.unique_bytes, u),
               cli_size(st.stored_bytes, d), (unsigned long long)st.n_packs,
               cli_size(st.pack_bytes, p), dedup, comp, cli_size(st.index_ram_bytes, x), ram);
        return 0;
}
