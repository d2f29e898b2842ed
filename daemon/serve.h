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
        const char *vhost[32]; /* "PATH=NAME" or "PATH=NAME:ro": vhost-user-blk sockets */
        unsigned n_vhost;
        unsigned vhost_queues; /* 0: 4 */
        const char *pidfile;
        const char *stats_file; /* JSON counters, rewritten every second */
        uint64_t cache_bytes;
        bool prefetch; /* lazily pulled images: fetch the rest in the background */
        unsigned max_connections;
        const char *metrics; /* "tcp:HOST:PORT" or "unix:PATH": Prometheus text over HTTP */
        bool tls_off;             /* --tls=off: no TLS, plain TCP allowed (loopback only) */
        const char *tls_psk;      /* --tls-psk FILE */
        const char *tls_certs;    /* --tls-certificates DIR */
        /* Runs a command a client of the control socket sent (the CLI's
         * dispatcher), with the client's stdout, stderr and working
         * directory; returns its exit status. Called from several threads. */
        int (*run)(void *ctx, st_store *s, int argc, char **argv, FILE *out, FILE *err,
                   int cwd_fd);
        void *run_ctx;
        unsigned compress_cpu; /* percent of one core for the idle compression; 0: none */
} serve_opts;

/* A line on the daemon's log (stderr), with the time. */
void serve_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* compress.c: the idle compression of what imports left to the cold level,
 * on a thread of its own at SCHED_IDLE, within cpu_percent of one core (0:
 * not started). compress_stop ends it (waiting for a step in progress). */
int compress_start(st_store *s, unsigned cpu_percent);
void compress_stop(void);
/* What it did since the start. */
void compress_counters(uint64_t *bytes_in, uint64_t *bytes_out, uint64_t *records,
                       uint64_t *packs_dropped);

/* control.c: the control socket DIR/control.sock. */
int control_listen(const char *store_dir, int *ret_fd, char ret_path[108]);
/* Accept one client on lfd and run its command in a thread of its own. */
void control_accept(int lfd, st_store *s, const serve_opts *o);
/* Wait until no command runs (at shutdown). */
void control_drain(void);

/* From a command running in the daemon (stellar attach / detach): add a
 * vhost-user-blk socket PATH serving NAME, or end the socket PATH (and the
 * session of the VMM on it). 0, or a negative errno with msg saying why; msg
 * also says what was done. */
int serve_vhost_request(bool detach, const char *path, const char *name, bool ro, char *msg,
                        size_t msg_len);

/* Runs until SIGTERM or SIGINT; returns 0 after a clean shutdown. */
int serve_run(const serve_opts *o);

/* The export table (exports.c): a volume handle shared by every connection
 * to the same name, opened on first use, closed (flushed) on last. */
typedef struct export export;
/* Per export, while it is open: requests, bytes and time by kind, and a
 * latency histogram (EXPORT_LAT_BUCKETS buckets, bounds in µs). */
enum { EXPORT_OP_READ, EXPORT_OP_WRITE, EXPORT_OP_FLUSH, EXPORT_OP_TRIM, EXPORT_OP_OTHER,
       EXPORT_OPS };
#define EXPORT_LAT_BUCKETS 9
extern const uint64_t export_lat_bounds_us[EXPORT_LAT_BUCKETS - 1];
typedef struct export_stats {
        _Atomic uint64_t ops[EXPORT_OPS], bytes[EXPORT_OPS], ns_sum[EXPORT_OPS];
        _Atomic uint64_t lat[EXPORT_OPS][EXPORT_LAT_BUCKETS];
        _Atomic uint64_t errors;
} export_stats;
void export_account(export *e, unsigned op, uint64_t bytes, uint64_t ns);
void export_account_error(export *e);
const char *export_name(const export *e);
/* Calls fn for every open export, under the table's lock. */
void exports_visit(void (*fn)(void *ctx, const char *name, unsigned users, const export_stats *st),
                   void *ctx);
int export_get(st_store *s, const char *name, export **ret);
void export_put(export *e);
st_volume *export_volume(export *e);
void exports_close_all(void);
unsigned exports_open(void);

/* One client connection (nbd/conn.c). Takes ownership of fd. */
/* TLS credentials for NBD_OPT_STARTTLS (nbd/tls.c): a PSK file in psktool's
 * format (USERNAME:HEXKEY lines) and/or a directory holding server-cert.pem
 * and server-key.pem. */
typedef struct nbd_tls_creds nbd_tls_creds;
int nbd_tls_creds_new(const char *psk_file, const char *cert_dir, nbd_tls_creds **ret,
                      char *err, size_t err_len);
void nbd_tls_creds_free(nbd_tls_creds *c);

typedef struct conn_ctx {
        st_store *s;
        volatile int *stopping;
        const nbd_tls_creds *tls; /* offered when set */
        bool tls_required;        /* a TCP listener: no option but STARTTLS before TLS */
        char peer[96]; /* who it is, for the log: "pid N uid N" or "ADDR:PORT" */
} conn_ctx;

/* A line in the daemon's log (stderr), time-stamped. */
void serve_logf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The daemon's state (metrics.c), for 'stellar status' and the metrics
 * endpoint: both run in the daemon. */
typedef struct serve_counts {
        unsigned connections;
        uint64_t connections_total, connections_rejected;
        double uptime_s;
        long pid;
} serve_counts;
void serve_get_counts(serve_counts *ret);
/* Prometheus text exposition format 0.0.4. */
void serve_metrics(FILE *f, st_store *s);
void serve_status(FILE *f, st_store *s, bool json);
/* Serve one NBD client on fd until it goes; the caller closes fd. */
void nbd_conn_run(const conn_ctx *c, int fd);
