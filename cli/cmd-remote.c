/* SPDX-License-Identifier: Apache-2.0 */
/* stellar publish NAME TARGET; stellar pull [--lazy] URL NAME */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char publish_usage[] =
        "Usage: stellar publish [--json] [--quiet] [-j N] NAME TARGET\n\n"
        "Publish image, snapshot or volume NAME (a volume: its last commit) as a\n"
        "static tree any web server, CDN or S3 bucket can serve:\n"
        "  refs/NAME              the id of NAME's manifest\n"
        "  manifests/<id>.json    manifest layers, named by the BLAKE3 of their bytes\n"
        "  blobs/<hash>           each chunk once, a zstd frame named by its BLAKE3\n"
        "TARGET is a directory (a path or file:///path) or s3://BUCKET/PREFIX.\n"
        "Blobs the target has are not sent again; blobs go first, then manifests,\n"
        "then the name, so readers never see a manifest whose blobs are missing.\n\n"
        "Options:\n"
        "  -j, --parallel N   at most N uploads in flight (default 512; starts with 64)\n"
        "  --retries N        attempts per request on 5xx, resets, stalls, deadlines\n"
        "                     (default 5)\n"
        "  --timeout S        a request that moves nothing for S seconds fails (default 20)\n"
        "  --deadline S       a request not done S seconds after it started fails, even\n"
        "                     if bytes trickle in (default 300). Like a stall, that is\n"
        "                     a failed attempt, retried with backoff.\n\n"
        "S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), AWS_REGION\n"
        "(default us-east-1), AWS_ENDPOINT_URL (default AWS), STELLAR_S3_STYLE=path\n"
        "(default) or virtual (BUCKET.host).\n";

static const char pull_usage[] =
        "Usage: stellar pull [--json] [--quiet] [--lazy] [--as LOCAL] [-j N] URL NAME\n\n"
        "Fetch NAME from the tree at URL (http://, https://, file://, a path, or\n"
        "s3://BUCKET/PREFIX) into the store: only the chunks the store lacks, in\n"
        "parallel over keep-alive connections, each verified (BLAKE3) before it is\n"
        "stored. Run again after an interruption, it fetches only what is still\n"
        "missing. Needs the store to itself (not while stellar serve runs).\n\n"
        "Options:\n"
        "  --lazy             fetch the manifests only; chunks are fetched when first\n"
        "                     read (stellar serve, export) and kept. A later pull\n"
        "                     without --lazy fetches the rest.\n"
        "  --as LOCAL         store it under another name\n"
        "  -j, --parallel N   at most N requests in flight (default 512, at most 1024).\n"
        "                     A pull starts with 64 and doubles while the rate rises:\n"
        "                     a long round trip needs many. Over HTTP/2 they share\n"
        "                     a connection, else each has its own.\n"
        "  --retries N        attempts per request on 5xx, resets, stalls, deadlines\n"
        "                     (default 5)\n"
        "  --timeout S        a request that moves nothing for S seconds fails (default 20)\n"
        "  --deadline S       a request not done S seconds after it started fails, even\n"
        "                     if bytes trickle in (default 300). Like a stall, that is\n"
        "                     a failed attempt, retried with backoff.\n\n"
        "HTTPS: the system's CAs, or STELLAR_CA_BUNDLE / CURL_CA_BUNDLE (a PEM file).\n"
        "S3: as for publish (stellar publish --help).\n";

/* Options shared by both verbs; returns the index of the first operand. */
static int parse(cli *c, int argc, char **argv, const char *usage, st_transfer_opts *o,
                 bool pull) {
        int i = 1;
        for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
                const char *a = argv[i];
                bool has_val = i + 1 < argc;
                unsigned long v = 0;
                if (!strcmp(a, "--json"))
                        c->json = true;
                else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
                        c->quiet = true;
                else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        fprintf(cli_out(), "%s", usage);
                        exit(0);
                } else if (pull && !strcmp(a, "--lazy"))
                        o->lazy = true;
                else if (pull && !strcmp(a, "--as") && has_val)
                        o->local_name = argv[++i];
                else if ((!strcmp(a, "-j") || !strcmp(a, "--parallel") || !strcmp(a, "--retries") ||
                          !strcmp(a, "--timeout") || !strcmp(a, "--deadline")) &&
                         has_val) {
                        char *end;
                        unsigned long max = !strcmp(a, "--deadline") ? 86400 : 3600;
                        v = strtoul(argv[i + 1], &end, 10);
                        if (*end || v == 0 || v > max) {
                                cli_error("%s wants a number from 1 to %lu", a, max);
                                return -1;
                        }
                        i++;
                        if (a[1] == 'j' || !strcmp(a, "--parallel"))
                                o->parallel = (unsigned)v; /* the engine caps it */
                        else if (!strcmp(a, "--retries"))
                                o->retries = (unsigned)v;
                        else if (!strcmp(a, "--deadline"))
                                o->deadline_s = (unsigned)v;
                        else
                                o->timeout_s = (unsigned)v;
                } else if (!strcmp(a, "--")) {
                        i++;
                        break;
                } else {
                        cli_error("unknown option or missing value: '%s'", a);
                        fprintf(cli_err(), "%s", usage);
                        return -1;
                }
        }
        if (argc - i != 2) {
                fprintf(cli_err(), "%s", usage);
                return -1;
        }
        return i;
}

int cmd_publish(cli *c, int argc, char **argv) {
        st_transfer_opts o = { 0 };
        int i = parse(c, argc, argv, publish_usage, &o, false);
        if (i < 0)
                return 2;
        const char *name = argv[i], *target = argv[i + 1];
        st_store *s;
        /* reading chunks and refs: works while the daemon runs */
        if (cli_open(c, ST_STORE_SHARED, &s) < 0)
                return 1;
        cli_progress p;
        cli_progress_init(&p, c, "publishing");
        o.progress = cli_progress_cb;
        o.userdata = &p;
        st_publish_result res;
        st_diag d = { 0 };
        uint64_t t0 = cli_now_ns();
        char pb[4200];
        int r = st_publish(s, name, cli_path(c, target, pb, sizeof pb), &o, &res, &d);
        double secs = (double)(cli_now_ns() - t0) / 1e9;
        cli_progress_end(&p);
        cli_close(c, s);
        if (r < 0) {
                cli_diag_error("publish failed", r, &d);
                return 1;
        }
        char hex[ST_DIGEST_HEX_LEN + 1];
        st_digest_to_hex(&res.id, hex);
        if (c->json)
                fprintf(cli_out(), "{\"name\":\"%s\",\"manifest\":\"%s\",\"layers\":%llu,\"chunks\":%llu,"
                       "\"uploaded\":%llu,\"present\":%llu,\"bytes_uploaded\":%llu,"
                       "\"manifest_bytes\":%llu,\"seconds\":%.3f}\n",
                       name, hex, (unsigned long long)res.n_layers, (unsigned long long)res.n_chunks,
                       (unsigned long long)res.n_uploaded, (unsigned long long)res.n_present,
                       (unsigned long long)res.bytes_uploaded,
                       (unsigned long long)res.manifest_bytes, secs);
        else if (!c->quiet) {
                char a[32];
                fprintf(cli_out(), "published %s as manifest %.16s: %llu chunks, %llu uploaded (%s), %llu "
                       "already there; %.2f s\n",
                       name, hex, (unsigned long long)res.n_chunks,
                       (unsigned long long)res.n_uploaded, cli_size(res.bytes_uploaded, a),
                       (unsigned long long)res.n_present, secs);
        }
        return 0;
}

int cmd_pull(cli *c, int argc, char **argv) {
        st_transfer_opts o = { 0 };
        int i = parse(c, argc, argv, pull_usage, &o, true);
        if (i < 0)
                return 2;
        const char *url = argv[i], *name = argv[i + 1];
        st_store *s;
        if (cli_open(c, ST_STORE_CREATE, &s) < 0)
                return 1;
        cli_progress p;
        cli_progress_init(&p, c, "pulling chunks");
        p.items = true;
        o.progress = cli_progress_cb;
        o.userdata = &p;
        st_pull_result res;
        st_diag d = { 0 };
        uint64_t t0 = cli_now_ns();
        char pb[4200];
        int r = st_pull(s, cli_path(c, url, pb, sizeof pb), name, &o, &res, &d);
        double secs = (double)(cli_now_ns() - t0) / 1e9;
        cli_progress_end(&p);
        cli_close(c, s);
        if (r < 0) {
                cli_diag_error("pull failed", r, &d);
                if (res.n_kept)
                        fprintf(cli_err(), "stellar: %llu chunks fetched so far are kept; run the "
                                        "same pull again to go on\n",
                                (unsigned long long)res.n_kept);
                return 1;
        }
        const char *local = o.local_name ? o.local_name : name;
        char hex[ST_DIGEST_HEX_LEN + 1];
        st_digest_to_hex(&res.id, hex);
        if (c->json)
                fprintf(cli_out(), "{\"name\":\"%s\",\"manifest\":\"%s\",\"size\":%llu,\"lazy\":%s,"
                       "\"chunks\":%llu,\"present\":%llu,\"fetched\":%llu,\"bytes_fetched\":%llu,"
                       "\"raw_fetched\":%llu,\"manifest_bytes\":%llu,\"retries\":%llu,"
                       "\"seconds\":%.3f}\n",
                       local, hex, (unsigned long long)res.size, res.lazy ? "true" : "false",
                       (unsigned long long)res.n_chunks, (unsigned long long)res.n_present,
                       (unsigned long long)res.n_fetched, (unsigned long long)res.bytes_fetched,
                       (unsigned long long)res.raw_fetched, (unsigned long long)res.manifest_bytes,
                       (unsigned long long)res.n_retries, secs);
        else if (!c->quiet) {
                char a[32], b[32];
                if (res.lazy)
                        fprintf(cli_out(), "pulled %s lazily: %llu chunks, %llu here already, the rest "
                               "fetched when read; %.2f s\n",
                               local, (unsigned long long)res.n_chunks,
                               (unsigned long long)res.n_present, secs);
                else
                        fprintf(cli_out(), "pulled %s (%s): %llu chunks, %llu already here, %llu fetched "
                               "(%s, %s of data); %.2f s\n",
                               local, cli_size(res.size, a), (unsigned long long)res.n_chunks,
                               (unsigned long long)res.n_present, (unsigned long long)res.n_fetched,
                               cli_size(res.bytes_fetched, b), cli_size(res.raw_fetched, hex),
                               secs);
        }
        return 0;
}
