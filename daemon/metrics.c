/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the daemon tells about itself: 'stellar status' (text or JSON, run
 * in the daemon for a client of its control socket) and the Prometheus
 * text endpoint (serve --metrics). Both read the same counters: the
 * listeners' (serve.c), the exports' (exports.c) and the chunk cache's.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "serve.h"

static const char *const op_names[EXPORT_OPS] = { "read", "write", "flush", "trim", "other" };

static uint64_t ld(const _Atomic uint64_t *v) {
        return atomic_load_explicit(v, memory_order_relaxed);
}

/* Names are st_name_valid: no quote, backslash or newline to escape. */
static void metrics_export(void *ctx, const char *name, unsigned users, const export_stats *st) {
        FILE *f = ctx;
        fprintf(f, "stellar_export_clients{export=\"%s\"} %u\n", name, users);
        fprintf(f, "stellar_export_errors_total{export=\"%s\"} %" PRIu64 "\n", name, ld(&st->errors));
        for (unsigned op = 0; op < EXPORT_OPS; op++) {
                fprintf(f, "stellar_export_requests_total{export=\"%s\",op=\"%s\"} %" PRIu64 "\n",
                        name, op_names[op], ld(&st->ops[op]));
                if (op == EXPORT_OP_READ || op == EXPORT_OP_WRITE)
                        fprintf(f, "stellar_export_bytes_total{export=\"%s\",op=\"%s\"} %" PRIu64 "\n",
                                name, op_names[op], ld(&st->bytes[op]));
                uint64_t cum = 0;
                for (unsigned b = 0; b < EXPORT_LAT_BUCKETS; b++) {
                        cum += ld(&st->lat[op][b]);
                        if (b + 1 < EXPORT_LAT_BUCKETS)
                                fprintf(f,
                                        "stellar_request_duration_seconds_bucket{export=\"%s\",op=\"%s\","
                                        "le=\"%g\"} %" PRIu64 "\n",
                                        name, op_names[op], (double)export_lat_bounds_us[b] / 1e6, cum);
                        else
                                fprintf(f,
                                        "stellar_request_duration_seconds_bucket{export=\"%s\",op=\"%s\","
                                        "le=\"+Inf\"} %" PRIu64 "\n",
                                        name, op_names[op], cum);
                }
                fprintf(f, "stellar_request_duration_seconds_sum{export=\"%s\",op=\"%s\"} %.6f\n", name,
                        op_names[op], (double)ld(&st->ns_sum[op]) / 1e9);
                fprintf(f, "stellar_request_duration_seconds_count{export=\"%s\",op=\"%s\"} %" PRIu64 "\n",
                        name, op_names[op], cum);
        }
}

void serve_metrics(FILE *f, st_store *s) {
        serve_counts c;
        serve_get_counts(&c);
        st_cache_stats cs;
        st_store_cache_stats(s, &cs);
        uint64_t z_in, z_out, z_records, z_dropped;
        compress_counters(&z_in, &z_out, &z_records, &z_dropped);
        fprintf(f,
                "# HELP stellar_uptime_seconds Seconds since the daemon started.\n"
                "# TYPE stellar_uptime_seconds gauge\n"
                "stellar_uptime_seconds %.3f\n"
                "# HELP stellar_connections NBD connections open now.\n"
                "# TYPE stellar_connections gauge\n"
                "stellar_connections %u\n"
                "# HELP stellar_connections_total NBD connections accepted.\n"
                "# TYPE stellar_connections_total counter\n"
                "stellar_connections_total %" PRIu64 "\n"
                "# HELP stellar_connections_rejected_total NBD connections refused (limits).\n"
                "# TYPE stellar_connections_rejected_total counter\n"
                "stellar_connections_rejected_total %" PRIu64 "\n"
                "# HELP stellar_exports_open Names open for some client now.\n"
                "# TYPE stellar_exports_open gauge\n"
                "stellar_exports_open %u\n"
                "# HELP stellar_cache_hits_total Chunk reads served by the shared cache.\n"
                "# TYPE stellar_cache_hits_total counter\n"
                "stellar_cache_hits_total %llu\n"
                "# HELP stellar_cache_misses_total Chunk reads the cache did not hold.\n"
                "# TYPE stellar_cache_misses_total counter\n"
                "stellar_cache_misses_total %llu\n"
                "# HELP stellar_cache_loaded_bytes_total Bytes read into the cache from packs.\n"
                "# TYPE stellar_cache_loaded_bytes_total counter\n"
                "stellar_cache_loaded_bytes_total %llu\n"
                "# HELP stellar_cache_evictions_total Chunks dropped from the cache.\n"
                "# TYPE stellar_cache_evictions_total counter\n"
                "stellar_cache_evictions_total %llu\n"
                "# HELP stellar_cache_bytes Bytes the cache holds, and its budget.\n"
                "# TYPE stellar_cache_bytes gauge\n"
                "stellar_cache_bytes %llu\n"
                "stellar_cache_budget_bytes %llu\n"
                "# HELP stellar_remote_fetches_total Chunks the remote tier (lazily pulled images) "
                "supplied.\n"
                "# TYPE stellar_remote_fetches_total counter\n"
                "stellar_remote_fetches_total %llu\n"
                "# HELP stellar_compress_records_total Records the idle compression read and wrote "
                "again.\n"
                "# TYPE stellar_compress_records_total counter\n"
                "stellar_compress_records_total %" PRIu64 "\n"
                "# HELP stellar_compress_bytes_total Their stored bytes before (in) and after (out).\n"
                "# TYPE stellar_compress_bytes_total counter\n"
                "stellar_compress_bytes_total{dir=\"in\"} %" PRIu64 "\n"
                "stellar_compress_bytes_total{dir=\"out\"} %" PRIu64 "\n",
                c.uptime_s, c.connections, c.connections_total, c.connections_rejected,
                exports_open(), (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                (unsigned long long)cs.bytes_loaded, (unsigned long long)cs.evictions,
                (unsigned long long)cs.bytes, (unsigned long long)cs.budget,
                (unsigned long long)cs.remote_fetches, z_records, z_in, z_out);
        fprintf(f, "# HELP stellar_export_requests_total Requests served, per open export and kind.\n"
                   "# TYPE stellar_export_requests_total counter\n"
                   "# HELP stellar_export_bytes_total Bytes read and written, per open export.\n"
                   "# TYPE stellar_export_bytes_total counter\n"
                   "# HELP stellar_export_errors_total Requests answered with an error.\n"
                   "# TYPE stellar_export_errors_total counter\n"
                   "# HELP stellar_export_clients Connections to the export now.\n"
                   "# TYPE stellar_export_clients gauge\n"
                   "# HELP stellar_request_duration_seconds From a request read to its reply sent.\n"
                   "# TYPE stellar_request_duration_seconds histogram\n");
        exports_visit(metrics_export, f);
}

typedef struct status_ctx {
        FILE *f;
        bool json;
        unsigned n;
} status_ctx;

static void status_export(void *ctx, const char *name, unsigned users, const export_stats *st) {
        status_ctx *c = ctx;
        uint64_t r = ld(&st->ops[EXPORT_OP_READ]), w = ld(&st->ops[EXPORT_OP_WRITE]);
        uint64_t rb = ld(&st->bytes[EXPORT_OP_READ]), wb = ld(&st->bytes[EXPORT_OP_WRITE]);
        uint64_t fl = ld(&st->ops[EXPORT_OP_FLUSH]), er = ld(&st->errors);
        if (c->json)
                fprintf(c->f,
                        "%s{\"name\":\"%s\",\"clients\":%u,\"reads\":%" PRIu64 ",\"read_bytes\":%" PRIu64
                        ",\"writes\":%" PRIu64 ",\"write_bytes\":%" PRIu64 ",\"flushes\":%" PRIu64
                        ",\"errors\":%" PRIu64 "}",
                        c->n ? "," : "", name, users, r, rb, w, wb, fl, er);
        else
                fprintf(c->f, "  %-24s %3u  %10" PRIu64 " %12" PRIu64 " %10" PRIu64 " %12" PRIu64
                              " %8" PRIu64 " %6" PRIu64 "\n",
                        name, users, r, rb, w, wb, fl, er);
        c->n++;
}

void serve_status(FILE *f, st_store *s, bool json) {
        serve_counts c;
        serve_get_counts(&c);
        st_cache_stats cs;
        st_store_cache_stats(s, &cs);
        double hit = cs.hits + cs.misses ? (double)cs.hits / (double)(cs.hits + cs.misses) : 0.0;
        status_ctx x = { .f = f, .json = json };
        uint64_t z_in, z_out, z_records, z_dropped;
        compress_counters(&z_in, &z_out, &z_records, &z_dropped);
        if (json) {
                fprintf(f,
                        "{\"pid\":%ld,\"uptime_s\":%.3f,\"connections\":%u,\"connections_total\":%" PRIu64
                        ",\"connections_rejected\":%" PRIu64 ",\"exports_open\":%u,\"cache\":{\"hits\":%llu,"
                        "\"misses\":%llu,\"hit_rate\":%.4f,\"bytes\":%llu,\"budget\":%llu,"
                                "\"bytes_loaded\":%llu},\"remote_fetches\":%llu,\"compress\":{\"records\":%" PRIu64
                        ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64 ",\"packs_dropped\":%" PRIu64
                        "},\"exports\":[",
                        c.pid, c.uptime_s, c.connections, c.connections_total, c.connections_rejected,
                        exports_open(), (unsigned long long)cs.hits, (unsigned long long)cs.misses, hit,
                        (unsigned long long)cs.bytes, (unsigned long long)cs.budget,
                        (unsigned long long)cs.bytes_loaded, (unsigned long long)cs.remote_fetches,
                        z_records, z_in, z_out, z_dropped);
                exports_visit(status_export, &x);
                fprintf(f, "]}\n");
                return;
        }
        fprintf(f, "served by pid %ld, up %.0f s\n", c.pid, c.uptime_s);
        fprintf(f, "connections: %u open, %" PRIu64 " since start, %" PRIu64 " refused\n", c.connections,
                c.connections_total, c.connections_rejected);
        fprintf(f, "cache: %.1f MiB of %.1f MiB, %.1f%% hits (%llu hits, %llu misses), %.1f MiB loaded\n",
                (double)cs.bytes / 1048576.0, (double)cs.budget / 1048576.0, 100.0 * hit,
                (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                (double)cs.bytes_loaded / 1048576.0);
        if (cs.remote_fetches)
                fprintf(f, "remote: %llu chunks fetched from the sources of lazily pulled images\n",
                        (unsigned long long)cs.remote_fetches);
        if (z_records)
                fprintf(f, "idle compression: %" PRIu64 " records, %.1f MiB -> %.1f MiB, %" PRIu64
                           " packs dropped\n",
                        z_records, (double)z_in / 1048576.0, (double)z_out / 1048576.0, z_dropped);
        fprintf(f, "exports open: %u\n", exports_open());
        if (exports_open())
                fprintf(f, "  %-24s %3s  %10s %12s %10s %12s %8s %6s\n", "NAME", "CLI", "READS",
                        "READ BYTES", "WRITES", "WRITE BYTES", "FLUSHES", "ERRORS");
        exports_visit(status_export, &x);
}
