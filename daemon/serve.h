/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon: one process serves every image, snapshot and volume of a store
 * over NBD (Unix and TCP listeners), all sharing one chunk cache.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <stellar/store.h>
#include <stellar/volume.h>

typedef struct serve_opts {
        const char *store_dir;
        const char *nbd[8]; /* "unix:PATH" or "tcp:HOST:PORT" */
        unsigned n_nbd;
        const char *pidfile;
        const char *stats_file; /* JSON counters, rewritten every second */
        uint64_t cache_bytes;
        bool prefetch; /* lazily pulled images: fetch the rest in the background */
        unsigned max_connections;
        /* Runs a command a client of the control socket sent (the CLI's
         * dispatcher), with the client's stdout, stderr and working
         * directory; returns its exit status. Called from several threads. */
        int (*run)(void *ctx, st_store *s, int argc, char **argv, FILE *out, FILE *err,
                   int cwd_fd);
        void *run_ctx;
} serve_opts;

/* control.c: the control socket DIR/control.sock. */
int control_listen(const char *store_dir, int *ret_fd, char ret_path[108]);
/* Accept one client on lfd and run its command in a thread of its own. */
void control_accept(int lfd, st_store *s, const serve_opts *o);
/* Wait until no command runs (at shutdown). */
void control_drain(void);

/* Runs until SIGTERM or SIGINT; returns 0 after a clean shutdown. */
int serve_run(const serve_opts *o);

/* The export table (exports.c): a volume handle shared by every connection
 * to the same name, opened on first use, closed (flushed) on last. */
typedef struct export export;
int export_get(st_store *s, const char *name, export **ret);
void export_put(export *e);
st_volume *export_volume(export *e);
void exports_close_all(void);
unsigned exports_open(void);

/* One client connection (nbd/conn.c). Takes ownership of fd. */
typedef struct conn_ctx {
        st_store *s;
        volatile int *stopping;
} conn_ctx;
void nbd_conn_run(const conn_ctx *c, int fd);
