/* SPDX-License-Identifier: Apache-2.0 */
/* stellar serve: the daemon in the foreground. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../daemon/serve.h"
#include "cli.h"

static const char usage[] =
        "Usage: stellar serve --nbd unix:PATH|tcp:HOST:PORT [--nbd ...]\n"
        "                     [--vhost-user-blk PATH=NAME[:ro] ...] [--vhost-queues N]\n"
        "                     [--pidfile FILE]\n"
        "                     [--stats FILE] [--cache SIZE] [--max-connections N]\n"
        "                     [--prefetch] [--compress-cpu PERCENT]\n"
        "                     [--metrics tcp:HOST:PORT|unix:PATH]\n"
        "                     [--tls-psk FILE] [--tls-certificates DIR] [--tls=off]\n\n"
        "Serve every image, snapshot and volume of the store over NBD, each as an\n"
        "export named after it: images and snapshots read-only, volumes writable\n"
        "(their writes go to the volume's delta). Names created while it runs are\n"
        "served without a restart. All clients share one cache of decompressed\n"
        "chunks. Runs in the foreground and logs to stderr; SIGTERM or SIGINT\n"
        "stops it cleanly (volumes flushed, sockets and pidfile removed).\n\n"
        "The daemon owns the store while it runs: every other stellar command on\n"
        "the store (import, commit, snapshot, rm, gc, fsck, publish, pull, ...) is\n"
        "sent to it over DIR/control.sock (mode 0600: the store owner's, and\n"
        "root's) and runs inside it, with the same output and exit status. A\n"
        "command still running when the daemon stops is waited for.\n\n"
        "  --nbd ADDR            unix:/path/sock or tcp:127.0.0.1:10809 (up to 8)\n"
        "  --vhost-user-blk PATH=NAME[:ro]\n"
        "                        serve NAME as a virtio-blk disk over vhost-user on\n"
        "                        the Unix socket PATH, one VMM at a time (up to 32;\n"
        "                        :ro attaches a volume read-only; images and\n"
        "                        snapshots always are). QEMU: -chardev\n"
        "                        socket,id=c0,path=PATH -device\n"
        "                        vhost-user-blk-pci,chardev=c0, with guest memory\n"
        "                        shared (memory-backend-memfd,share=on)\n"
        "  --vhost-queues N      queues offered to each VMM (default 4, at most 16)\n"
        "  --pidfile FILE        write the daemon's pid there\n"
        "  --stats FILE          rewrite JSON counters (cache hits, loads, connections,\n"
        "                        RSS) there every second\n"
        "  --cache SIZE          chunk cache budget (default 256M)\n"
        "  --max-connections N   refuse clients beyond N (default 1024)\n"
        "  --prefetch            lazily pulled images (pull --lazy): besides fetching\n"
        "                        chunks when read, fetch all the others in the\n"
        "                        background, in disk order (without it: only what\n"
        "                        is read is fetched)\n"
        "  --compress-cpu PERCENT  the idle compression's share of one core (default\n"
        "                        50; 0: none). What imports left to the store's cold\n"
        "                        level (init --zstd-level defer, --zstd-cold) is\n"
        "                        compressed in the background, at idle CPU priority,\n"
        "                        a pack at a time; 'stellar gc' does it all at once\n"
        "  --tls-psk FILE        TLS with pre-shared keys: FILE holds USERNAME:HEXKEY\n"
        "                        lines (psktool's format)\n"
        "  --tls-certificates DIR  TLS with x509: DIR holds server-cert.pem and\n"
        "                        server-key.pem\n"
        "  --tls=off             no TLS. Without it a TCP listener serves TLS only\n"
        "                        (NBD_OPT_STARTTLS first; plain clients are refused),\n"
        "                        so it needs --tls-psk or --tls-certificates; Unix\n"
        "                        sockets offer TLS then but do not require it. Give\n"
        "                        --tls=off only with loopback TCP addresses\n"
        "  --metrics ADDR        serve Prometheus text (HTTP GET, any path) there:\n"
        "                        connections, cache hits and misses, per export\n"
        "                        requests, bytes, errors and latency histograms.\n"
        "                        Unauthenticated: give it a loopback address or a\n"
        "                        Unix socket\n\n"
        "'stellar status' shows the running daemon: exports and their clients,\n"
        "cache hit rate, connections, uptime. Each refused option or request, broken\n"
        "handshake or connection that ends in an error is logged with the client\n"
        "(pid and uid on Unix sockets, address on TCP) and the export.\n\n"
        "Clients: qemu -drive file=nbd+unix:///NAME?socket=PATH, qemu-img, qemu-io,\n"
        "nbdinfo, nbdcopy, nbdsh. Metadata contexts: base:allocation, and\n"
        "stellar:shared (bit 0: the extent is stored in a deduplicated chunk).\n";

/* A command from a client of the control socket, in a thread of the daemon. */
static int run_for_client(void *ctx, st_store *s, int argc, char **argv, FILE *out, FILE *err,
                          int cwd_fd) {
        const cli *parent = ctx;
        cli c = { .store_dir = parent->store_dir, .served = s, .cwd_fd = cwd_fd };
        cli_set_streams(out, err);
        int r = strcmp(argv[0], "serve") == 0 || strcmp(argv[0], "init") == 0
                        ? (cli_error("the store is already served by this daemon"), 1)
                        : cli_dispatch(&c, argc, argv);
        cli_set_streams(NULL, NULL);
        return r;
}

int cmd_serve(cli *c, int argc, char **argv) {
        serve_opts o = { .store_dir = c->store_dir, .cache_bytes = 256u << 20,
                         .max_connections = 1024, .run = run_for_client, .run_ctx = c,
                         .compress_cpu = 50 };
        for (int i = 1; i < argc; i++) {
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        fprintf(cli_out(), "%s", usage);
                        return 0;
                } else if (strcmp(argv[i], "--nbd") == 0 && v && o.n_nbd < 8) {
                        o.nbd[o.n_nbd++] = v;
                        i++;
                } else if (strcmp(argv[i], "--vhost-user-blk") == 0 && v && o.n_vhost < 32) {
                        if (!strchr(v, '=') || strchr(v, '=') == v || !strchr(v, '=')[1]) {
                                cli_error("--vhost-user-blk wants PATH=NAME, not '%s'", v);
                                return 2;
                        }
                        o.vhost[o.n_vhost++] = v;
                        i++;
                } else if (strcmp(argv[i], "--vhost-queues") == 0 && v) {
                        int n = atoi(v);
                        if (n < 1 || n > 16) {
                                cli_error("--vhost-queues wants 1 to 16, not '%s'", v);
                                return 2;
                        }
                        o.vhost_queues = (unsigned)n;
                        i++;
                } else if (strcmp(argv[i], "--pidfile") == 0 && v) {
                        o.pidfile = v;
                        i++;
                } else if (strcmp(argv[i], "--stats") == 0 && v) {
                        o.stats_file = v;
                        i++;
                } else if (strcmp(argv[i], "--cache") == 0 && v) {
                        if (cli_parse_size(v, &o.cache_bytes) < 0) {
                                cli_error("bad size '%s'", v);
                                return 2;
                        }
                        i++;
                } else if (strcmp(argv[i], "--tls=off") == 0 ||
                           (strcmp(argv[i], "--tls") == 0 && v && strcmp(v, "off") == 0)) {
                        o.tls_off = true;
                        i += strcmp(argv[i], "--tls") == 0;
                } else if (strcmp(argv[i], "--tls=require") == 0 ||
                           (strcmp(argv[i], "--tls") == 0 && v && strcmp(v, "require") == 0)) {
                        o.tls_off = false;
                        i += strcmp(argv[i], "--tls") == 0;
                } else if (strcmp(argv[i], "--tls-psk") == 0 && v) {
                        o.tls_psk = v;
                        i++;
                } else if (strcmp(argv[i], "--tls-certificates") == 0 && v) {
                        o.tls_certs = v;
                        i++;
                } else if (strcmp(argv[i], "--metrics") == 0 && v) {
                        o.metrics = v;
                        i++;
                } else if (strcmp(argv[i], "--compress-cpu") == 0 && v) {
                        char *end;
                        long n = strtol(v, &end, 10);
                        if (*end || end == v || n < 0 || n > 100) {
                                cli_error("--compress-cpu wants a percentage, 0 to 100, not '%s'", v);
                                return 2;
                        }
                        o.compress_cpu = (unsigned)n;
                        i++;
                } else if (strcmp(argv[i], "--prefetch") == 0) {
                        o.prefetch = true;
                } else if (strcmp(argv[i], "--max-connections") == 0 && v) {
                        o.max_connections = (unsigned)atoi(v);
                        i++;
                } else {
                        cli_error("unexpected argument '%s'", argv[i]);
                        fprintf(cli_err(), "%s", usage);
                        return 2;
                }
        }
        if (o.n_nbd == 0 && o.n_vhost == 0) {
                cli_error("give at least one --nbd address or --vhost-user-blk socket");
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        if (o.tls_off && (o.tls_psk || o.tls_certs)) {
                cli_error("--tls=off with TLS credentials: choose one");
                return 2;
        }
        return serve_run(&o);
}

static const char status_usage[] =
        "Usage: stellar status [--json]\n\n"
        "What the daemon serving the store is doing: its pid and uptime, NBD\n"
        "connections, the shared cache (size, hit rate, bytes loaded), and each\n"
        "open export with its clients, reads, writes, flushes and errors since it\n"
        "was opened. Exit status 3 when no daemon serves the store.\n";

int cmd_status(cli *c, int argc, char **argv) {
        int i = cli_common_flags(c, argc, argv, status_usage);
        if (i < 0)
                return 2;
        if (i != argc) {
                fprintf(cli_err(), "%s", status_usage);
                return 2;
        }
        if (!c->served) {
                /* (main sends it to a daemon when one answers) */
                if (c->json)
                        fprintf(cli_out(), "{\"served\":false}\n");
                else
                        fprintf(cli_out(), "no daemon serves %s\n", c->store_dir);
                return 3;
        }
        serve_status(cli_out(), c->served, c->json);
        return 0;
}
