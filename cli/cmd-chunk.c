/* SPDX-License-Identifier: Apache-2.0 */
/* stellar chunk FILE: run the chunker over a file held in memory and report
 * piece statistics and throughput; no store is touched. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
        "Usage: stellar chunk [--mode image|stream] [--avg SIZE] [--list] [--json] FILE\n\n"
        "Chunk FILE in memory with the given parameters (default: the image-mode store default)\n"
        "and print the number of chunks, holes, sizes and single-core chunking speed.\n"
        "--list prints every piece as 'OFFSET LENGTH data|hole'.\n";

int cmd_chunk(cli *c, int argc, char **argv) {
        st_chunker_params p = ST_CHUNKER_IMAGE_DEFAULT;
        bool list = false, stream = false;
        uint64_t avg = 0;
        const char *path = NULL;
        for (int i = 1; i < argc; i++) {
                if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        fprintf(cli_out(), "%s", usage);
                        return 0;
                } else if (strcmp(argv[i], "--list") == 0)
                        list = true;
                else if (strcmp(argv[i], "--json") == 0)
                        c->json = true;
                else if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
                        stream = strcmp(argv[++i], "stream") == 0;
                else if (strcmp(argv[i], "--avg") == 0 && i + 1 < argc) {
                        if (cli_parse_size(argv[++i], &avg) < 0 || avg > UINT32_MAX) {
                                cli_error("bad size '%s'", argv[i]);
                                return 2;
                        }
                } else if (!path && argv[i][0] != '-')
                        path = argv[i];
                else {
                        fprintf(cli_err(), "%s", usage);
                        return 2;
                }
        }
        if (!path) {
                fprintf(cli_err(), "%s", usage);
                return 2;
        }
        if (stream)
                p = ST_CHUNKER_STREAM_DEFAULT;
        if (avg) {
                p.avg_size = (uint32_t)avg;
                p.min_size = stream ? (uint32_t)(avg / 4) : ST_CHUNK_ALIGN;
                p.max_size = (uint32_t)(avg * 4);
        }
        if (st_chunker_params_check(&p) < 0) {
                cli_error("invalid chunking parameters");
                return 2;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
                cli_error("%s: %m", path);
                return 1;
        }
        size_t len = (size_t)st.st_size;
        uint8_t *buf = malloc(len ? len : 1);
        size_t got = 0;
        while (buf && got < len) {
                ssize_t n = read(fd, buf + got, len - got);
                if (n <= 0)
                        break;
                got += (size_t)n;
        }
        close(fd);
        if (!buf || got != len) {
                cli_error("%s: cannot read", path);
                free(buf);
                return 1;
        }
        uint64_t n_chunks = 0, n_holes = 0, data = 0, holes = 0;
        uint64_t t0 = cli_now_ns();
        for (size_t at = 0; at < len;) {
                st_piece pc;
                if (st_split_next(&p, at, buf + at, len - at, true, &pc) < 0)
                        break;
                if (list)
                        fprintf(cli_out(), "%zu %llu %s\n", at, (unsigned long long)pc.len, pc.hole ? "hole" : "data");
                if (pc.hole) {
                        n_holes++;
                        holes += pc.len;
                } else {
                        n_chunks++;
                        data += pc.len;
                }
                at += (size_t)pc.len;
        }
        double secs = (double)(cli_now_ns() - t0) / 1e9;
        free(buf);
        double mbs = secs > 0 ? (double)len / secs / 1e6 : 0;
        if (c->json)
                fprintf(cli_out(), "{\"bytes\":%zu,\"chunks\":%llu,\"data_bytes\":%llu,\"holes\":%llu,"
                       "\"hole_bytes\":%llu,\"avg_chunk\":%.0f,\"seconds\":%.6f,\"mb_per_s\":%.1f}\n",
                       len, (unsigned long long)n_chunks, (unsigned long long)data,
                       (unsigned long long)n_holes, (unsigned long long)holes,
                       n_chunks ? (double)data / (double)n_chunks : 0.0, secs, mbs);
        else if (!list)
                fprintf(cli_out(), "%llu chunks (avg %.0f bytes), %llu holes (%llu bytes); %.1f MB/s on one core\n",
                       (unsigned long long)n_chunks, n_chunks ? (double)data / (double)n_chunks : 0.0,
                       (unsigned long long)n_holes, (unsigned long long)holes, mbs);
        return 0;
}
