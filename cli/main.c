/* SPDX-License-Identifier: Apache-2.0 */
/* stellar: the command line front end of libstellar. Parses global options
 * and hands the rest to one cmd-<verb>.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct {
        const char *name;
        cmd_fn fn;
        const char *summary;
} verbs[] = {
        { "init", cmd_init, "create a store (chunking parameters are fixed here)" },
        { "import", cmd_import, "IMAGE NAME: store a raw image file or block device" },
        { "export", cmd_export, "NAME FILE: write an image back out, byte-identical and sparse" },
        { "create", cmd_create, "NAME --size SIZE: an empty writable volume" },
        { "clone", cmd_clone, "SRC DST: a writable clone of an image, snapshot or volume" },
        { "snapshot", cmd_snapshot, "VOLUME SNAP: a read-only point-in-time copy" },
        { "commit", cmd_commit, "VOLUME: fold a volume's writes into dedup'd chunks" },
        { "publish", cmd_publish, "NAME TARGET: publish to a directory or s3:// (static tree)" },
        { "pull", cmd_pull, "URL NAME: fetch only the chunks the store lacks, verified" },
        { "serve", cmd_serve, "--nbd ADDR: serve everything over NBD (the daemon)" },
        { "ls", cmd_ls, "list images, snapshots and volumes" },
        { "info", cmd_info, "NAME: describe one of them" },
        { "rm", cmd_rm, "NAME...: remove (shared data stays; gc frees the rest)" },
        { "stats", cmd_stats, "store totals: chunks, bytes, dedup ratio" },
        { "status", cmd_status, "what the daemon serving the store is doing" },
        { "attach", cmd_attach, "NAME --vhost-user-blk PATH: a disk for a VMM, live" },
        { "detach", cmd_detach, "PATH: end a vhost-user-blk socket of the daemon" },
        { "gc", cmd_gc, "free unreferenced chunks, compact packs, compress cold data" },
        { "fsck", cmd_fsck, "re-hash every chunk and check every reference" },
        { "hash", cmd_hash, "FILE...: BLAKE3 of files (b3sum-compatible output)" },
        { "chunk", cmd_chunk, "FILE: chunk a file and print statistics (no store)" },
};

static void usage(FILE *f) {
        fprintf(f, "Usage: stellar [--store DIR] COMMAND [ARGS]\n\n"
                   "Stellarium stores disk images as deduplicated, compressed chunks, and\n"
                   "serves writable volumes, clones and snapshots over them.\n\n"
                   "Commands:\n");
        for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
                fprintf(f, "  %-9s %s\n", verbs[i].name, verbs[i].summary);
        fprintf(f, "\nGlobal options:\n"
                   "  --store DIR   the store (default: $STELLAR_STORE, else\n"
                   "                $XDG_DATA_HOME/stellar, else ~/.local/share/stellar)\n"
                   "  --help        this text; 'stellar COMMAND --help' for a command\n"
                   "  --version     print the version\n\n"
                   "Exit status: 0 success, 1 failure (fsck: damage found), 2 usage error.\n");
}

static char *default_store(void) {
        const char *e = getenv("STELLAR_STORE");
        if (e && *e)
                return strdup(e);
        char *p = NULL;
        const char *x = getenv("XDG_DATA_HOME");
        if (x && *x) {
                if (asprintf(&p, "%s/stellar", x) < 0)
                        return NULL;
                return p;
        }
        const char *h = getenv("HOME");
        if (asprintf(&p, "%s/.local/share/stellar", h && *h ? h : ".") < 0)
                return NULL;
        return p;
}

static bool wants_help(int argc, char **argv) {
        for (int i = 1; i < argc; i++)
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
                        return true;
        return false;
}

int cli_dispatch(cli *c, int argc, char **argv) {
        /* --help exits the process: never inside the daemon (the client
         * shows help itself, without asking it). */
        if (c->served && wants_help(argc, argv)) {
                cli_error("--help is answered by the command line, not the daemon");
                return 2;
        }
        for (size_t v = 0; v < sizeof verbs / sizeof verbs[0]; v++)
                if (strcmp(argv[0], verbs[v].name) == 0)
                        return verbs[v].fn(c, argc, argv);
        cli_error("unknown command '%s'", argv[0]);
        usage(cli_err());
        return 2;
}

/* Verbs that work on a store, which a running daemon does for us. */
static bool forwarded(const char *verb) {
        static const char *const local[] = { "init", "serve", "hash", "chunk" };
        for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
                if (!strcmp(verb, local[i]))
                        return false;
        return true;
}

int main(int argc, char **argv) {
        cli c = { .cwd_fd = -1 };
        char *store = NULL;
        int i = 1;
        for (; i < argc && argv[i][0] == '-'; i++) {
                if (strcmp(argv[i], "--store") == 0 && i + 1 < argc) {
                        free(store);
                        store = strdup(argv[++i]);
                } else if (strncmp(argv[i], "--store=", 8) == 0) {
                        free(store);
                        store = strdup(argv[i] + 8);
                } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        usage(cli_out());
                        return 0;
                } else if (strcmp(argv[i], "--version") == 0) {
                        fprintf(cli_out(), "stellar %s\n", STELLAR_VERSION);
                        return 0;
                } else {
                        cli_error("unknown option '%s'", argv[i]);
                        usage(cli_err());
                        return 2;
                }
        }
        if (i >= argc) {
                usage(cli_err());
                return 2;
        }
        if (!store)
                store = default_store();
        if (!store) {
                cli_error("out of memory");
                return 1;
        }
        c.store_dir = store;
        int r;
        /* While a daemon owns the store, it runs the command (the CLI is
         * its client); otherwise we open the store ourselves. */
        if (!forwarded(argv[i]) || wants_help(argc - i, argv + i) ||
            cli_forward(&c, argc - i, argv + i, &r) == 0)
                r = cli_dispatch(&c, argc - i, argv + i);
        free(store);
        return r;
}
