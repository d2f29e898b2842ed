/* SPDX-License-Identifier: Apache-2.0 */
/* stellar init: create a store and fix its chunking parameters. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar init [--mode image|stream] [--avg SIZE] [--min SIZE] [--max SIZE]\n"
        "                    [--commit-avg SIZE] [--zstd-level N] [--zstd-cold N]\n\n"
        "Create an empty store. Chunking parameters are fixed for the store's life:\n"
        "chunks dedup only against chunks cut the same way.\n\n"
        "  --mode image   cut only at 4 KiB boundaries, zero blocks are holes (default)\n"
        "  --mode stream  cut at any byte (file streams, tar layers)\n"
        "  --avg SIZE     normalization point of the chunk size, a power of two\n"
        "                 (image: 4K, a mean of about 6 KiB; stream: 64K)\n"
        "  --min SIZE     minimum (image: 4K, stream: avg/4)\n"
        "  --max SIZE     maximum (image: 16K; stream: avg*4)\n"
        "  --commit-avg SIZE  average chunk size for volume commits (default 16K)\n"
        "  --zstd-level N zstd level for new chunks, which go in frames of up to\n"
        "                 128 KiB of neighbouring chunks (default 1: the fast one);\n"
        "                 'defer': store them raw, the fastest import, for the daemon's\n"
        "                 idle compression or 'stellar gc' to compress at the cold level\n"
        "  --zstd-cold N  the level at which the daemon at idle and 'stellar gc' remake\n"
        "                 frames made below it, neighbours merged up to 256 KiB\n"
        "                 (default 9: on shared libraries 15% smaller than level 1;\n"
        "                 0: never)\n";

int cmd_init(cli *c, int argc, char **argv) {
        st_store_config cfg = ST_STORE_CONFIG_DEFAULT;
        uint64_t avg = 0, min = 0, max = 0, commit_avg = 0;
        bool stream = false;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                const char *v = i + 1 < argc ? argv[i + 1] : NULL;
                uint64_t *dst = strcmp(a, "--avg") == 0   ? &avg
                                : strcmp(a, "--min") == 0 ? &min
                                : strcmp(a, "--max") == 0 ? &max
                                : strcmp(a, "--commit-avg") == 0 ? &commit_avg
                                                          : NULL;
                if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
                        fprintf(cli_out(), "%s", usage);
                        return 0;
                } else if (dst && v) {
                        if (cli_parse_size(v, dst) < 0 || *dst > UINT32_MAX) {
                                cli_error("bad size '%s'", v);
                                return 2;
                        }
                        i++;
                } else if (strcmp(a, "--mode") == 0 && v) {
                        if (strcmp(v, "stream") == 0)
                                stream = true;
                        else if (strcmp(v, "image") != 0) {
                                cli_error("--mode is 'image' or 'stream'");
                                return 2;
                        }
                        i++;
                } else if (strcmp(a, "--zstd-level") == 0 && v) {
                        cfg.zstd_level = strcmp(v, "defer") == 0 ? ST_ZSTD_DEFER : atoi(v);
                        i++;
                } else if (strcmp(a, "--zstd-cold") == 0 && v) {
                        char *end;
                        long l = strtol(v, &end, 10);
                        if (*end || l < 0 || l > 22) {
                                cli_error("--zstd-cold is a zstd level, 1 to 22, or 0 (never)");
                                return 2;
                        }
                        cfg.zstd_cold_level = (int)l;
                        i++;
                } else {
                        cli_error("unexpected argument '%s'", a);
                        fprintf(cli_err(), "%s", usage);
                        return 2;
                }
        }
        if (stream)
                cfg.chunker = ST_CHUNKER_STREAM_DEFAULT;
        if (avg) {
                cfg.chunker.avg_size = (uint32_t)avg;
                cfg.chunker.min_size = stream ? (uint32_t)(avg / 4) : ST_CHUNK_ALIGN;
                cfg.chunker.max_size = (uint32_t)(avg * 4);
        }
        if (min)
                cfg.chunker.min_size = (uint32_t)min;
        if (max)
                cfg.chunker.max_size = (uint32_t)max;
        if (commit_avg)
                cfg.commit_chunker = (st_chunker_params){ ST_CHUNK_ALIGN, ST_CHUNK_ALIGN,
                                                          (uint32_t)commit_avg,
                                                          (uint32_t)(commit_avg * 4) };
        if (st_chunker_params_check(&cfg.chunker) < 0 ||
            st_chunker_params_check(&cfg.commit_chunker) < 0) {
                cli_error("invalid chunking parameters (avg a power of two, min <= avg <= max <= 16M%s)",
                          stream ? "" : ", multiples of 4K");
                return 2;
        }
        if (cfg.zstd_level == ST_ZSTD_DEFER && cfg.zstd_cold_level == 0) {
                cli_error("--zstd-level defer needs a cold level to compress at (--zstd-cold 1..22)");
                return 2;
        }
        int r = st_store_init(c->store_dir, &cfg);
        if (r == -EEXIST) {
                cli_error("%s already holds a store", c->store_dir);
                return 1;
        }
        if (r < 0) {
                cli_error("cannot create store in %s: %s", c->store_dir, strerror(-r));
                return 1;
        }
        char cold[64] = "";
        if (cfg.zstd_level == ST_ZSTD_DEFER)
                snprintf(cold, sizeof cold, "deferred: gc compresses at level %d", cfg.zstd_cold_level);
        else
                snprintf(cold, sizeof cold, "%d%s%.0d", cfg.zstd_level,
                         cfg.zstd_cold_level > cfg.zstd_level ? "; gc recompresses at level " : "",
                         cfg.zstd_cold_level > cfg.zstd_level ? cfg.zstd_cold_level : 0);
        fprintf(cli_out(), "initialized store %s (%s chunks, avg %u, min %u, max %u, zstd %s)\n", c->store_dir,
               stream ? "stream" : "4K-aligned", cfg.chunker.avg_size, cfg.chunker.min_size,
               cfg.chunker.max_size, cold);
        return 0;
}
