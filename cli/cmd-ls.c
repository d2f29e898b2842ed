/* SPDX-License-Identifier: Apache-2.0 */
/* stellar ls, stellar info NAME */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char ls_usage[] =
        "Usage: stellar ls [--json]\n\n"
        "List the images, snapshots and volumes in the store, with the name each\n"
        "was cloned or snapshotted from (PARENT). A name whose ref or manifests\n"
        "cannot be read is listed as damaged, with the file at fault, and makes the\n"
        "exit status 1. Never waits for an import or gc.\n";
static const char info_usage[] =
        "Usage: stellar info [--json] NAME\n\n"
        "Describe NAME: kind, parent, size, data, manifest layers and extents, the\n"
        "uncommitted delta of a volume, and the id of its top manifest.\n";

static void when(uint64_t ns, char buf[32]) {
        time_t t = (time_t)(ns / 1000000000ull);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void print_json(const st_image_info *v) {
        char hex[ST_DIGEST_HEX_LEN + 1], t[32];
        st_digest_to_hex(&v->id, hex);
        when(v->ctime_ns, t);
        fprintf(cli_out(), "{\"name\":\"%s\",\"kind\":\"%s\",\"parent\":\"%s\",\"size\":%llu,"
               "\"data_bytes\":%llu,\"delta_bytes\":%llu,\"layers\":%llu,\"extents\":%llu,"
               "\"created\":\"%s\",\"manifest\":\"%s\"",
               v->name, st_kind_name(v->kind), v->parent, (unsigned long long)v->size,
               (unsigned long long)v->data_bytes, (unsigned long long)v->delta_bytes,
               (unsigned long long)v->n_layers, (unsigned long long)v->n_extents, t,
               v->n_layers || v->error ? hex : "");
        if (v->error) {
                /* names are [A-Za-z0-9._+@:-] and messages ours: nothing to escape */
                fprintf(cli_out(), ",\"error\":\"%s\"", v->error_msg);
        }
        fprintf(cli_out(), "}");
}

int cmd_ls(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, ls_usage);
        if (i < 0)
                return 2;
        if (i != argc) {
                fprintf(cli_err(), "%s", ls_usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, ST_STORE_RDONLY | ST_STORE_NOINDEX, &s) < 0)
                return 1;
        st_image_info *v;
        size_t n;
        int r = st_store_list(s, &v, &n);
        cli_close(c, s);
        if (r < 0) {
                cli_error("cannot list images: %s", strerror(-r));
                return 1;
        }
        if (c->json) {
                fprintf(cli_out(), "[");
                for (size_t k = 0; k < n; k++) {
                        if (k)
                                fprintf(cli_out(), ",");
                        print_json(&v[k]);
                }
                fprintf(cli_out(), "]\n");
        } else {
                if (n)
                        fprintf(cli_out(), "%-24s %-8s %-24s %10s %10s %10s  %s\n", "NAME", "KIND", "PARENT",
                               "SIZE", "DATA", "DELTA", "CREATED");
                for (size_t k = 0; k < n; k++) {
                        char a[32], b[32], d[32], t[32];
                        if (v[k].error) {
                                fprintf(cli_out(), "%-24s %-8s damaged: %s\n", v[k].name, "?", v[k].error_msg);
                                continue;
                        }
                        when(v[k].ctime_ns, t);
                        fprintf(cli_out(), "%-24s %-8s %-24s %10s %10s %10s  %s\n", v[k].name,
                               st_kind_name(v[k].kind), v[k].parent[0] ? v[k].parent : "-",
                               cli_size(v[k].size, a), cli_size(v[k].data_bytes, b),
                               v[k].kind == ST_KIND_VOLUME ? cli_size(v[k].delta_bytes, d) : "-", t);
                }
        }
        int damaged = 0;
        for (size_t k = 0; k < n; k++)
                damaged |= v[k].error != 0;
        free(v);
        return damaged ? 1 : 0;
}

int cmd_info(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, info_usage);
        if (i < 0)
                return 2;
        if (argc - i != 1) {
                fprintf(cli_err(), "%s", info_usage);
                return 2;
        }
        st_store *s;
        if (cli_open(c, ST_STORE_RDONLY | ST_STORE_NOINDEX, &s) < 0)
                return 1;
        st_image_info v;
        st_diag d = { 0 };
        int r = st_store_info(s, argv[i], &v, &d);
        cli_close(c, s);
        if (r < 0) {
                cli_diag_error("info", r, &d);
                return 1;
        }
        if (c->json) {
                print_json(&v);
                fprintf(cli_out(), "\n");
        } else {
                char a[32], b[32], dl[32], t[32], hex[ST_DIGEST_HEX_LEN + 1];
                st_digest_to_hex(&v.id, hex);
                when(v.ctime_ns, t);
                fprintf(cli_out(), "name:     %s\nkind:     %s\nparent:   %s\nsize:     %s (%llu bytes)\n"
                       "data:     %s in %llu extents over %llu manifest layers\n",
                       v.name, st_kind_name(v.kind), v.parent[0] ? v.parent : "-",
                       cli_size(v.size, a), (unsigned long long)v.size, cli_size(v.data_bytes, b),
                       (unsigned long long)v.n_extents, (unsigned long long)v.n_layers);
                if (v.kind == ST_KIND_VOLUME)
                        fprintf(cli_out(), "delta:    %s uncommitted\n", cli_size(v.delta_bytes, dl));
                fprintf(cli_out(), "created:  %s\nmanifest: %s\n", t, v.n_layers ? hex : "- (empty)");
        }
        return 0;
}
