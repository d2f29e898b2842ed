/* SPDX-License-Identifier: Apache-2.0 */
/* Shared pieces of the stellar command: options, store opening, output. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <stellar/stellar.h>
#include <stellar/volume.h>

typedef struct cli {
        const char *store_dir;
        bool json;
        bool quiet;
        /* Run inside the daemon for a client of its control socket: the
         * daemon's own store handle (cli_open hands it out, cli_close keeps
         * it open), and the client's working directory (-1 otherwise). */
        st_store *served;
        int cwd_fd;
} cli;

typedef int (*cmd_fn)(cli *c, int argc, char **argv);

/* Where this thread's command writes: the client's stdout and stderr when
 * the daemon runs it, else the process's own. */
FILE *cli_out(void);
FILE *cli_err(void);
void cli_set_streams(FILE *out, FILE *err);
/* When a daemon owns the store, have it run the command: 1 with its exit
 * status in *ret_status (or 1 after an error message), 0 if none runs. */
int cli_forward(cli *c, int argc, char **argv, int *ret_status);
/* Run the command in argv[0] (a verb and its arguments); its exit status. */
int cli_dispatch(cli *c, int argc, char **argv);
/* A path argument as this process can open it: relative ones are taken from
 * the client's working directory when the daemon runs the command. */
const char *cli_path(const cli *c, const char *path, char *buf, size_t len);

/* Open the store, printing a clear error on failure. */
int cli_open(cli *c, unsigned flags, st_store **ret);
/* Close what cli_open gave (the daemon's own handle stays open). */
void cli_close(const cli *c, st_store *s);
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print "stellar: <what>: <file> at offset N: <why>" from a diag. */
void cli_diag_error(const char *what, int r, const st_diag *d);
/* Human sizes ("1.5 GiB") into buf. */
const char *cli_size(uint64_t v, char buf[32]);
/* Parse "10G", "512K", "4096". Returns 0 or -EINVAL. */
int cli_parse_size(const char *s, uint64_t *ret);
/* Progress on stderr when it is a terminal (and not --quiet). */
typedef struct cli_progress {
        const char *label;
        bool on;
        bool items; /* counts, not bytes */
        uint64_t start_ns, last_ns;
} cli_progress;
void cli_progress_init(cli_progress *p, const cli *c, const char *label);
void cli_progress_cb(void *userdata, uint64_t done, uint64_t total);
void cli_progress_end(cli_progress *p);
uint64_t cli_now_ns(void);
/* Parse leading --json/--quiet style flags shared by verbs; returns argv index
 * of the first non-option, or -1 after printing an error. */
int cli_common_flags(cli *c, int argc, char **argv, const char *usage);

int cmd_init(cli *c, int argc, char **argv);
int cmd_import(cli *c, int argc, char **argv);
int cmd_export(cli *c, int argc, char **argv);
int cmd_ls(cli *c, int argc, char **argv);
int cmd_info(cli *c, int argc, char **argv);
int cmd_rm(cli *c, int argc, char **argv);
int cmd_stats(cli *c, int argc, char **argv);
int cmd_status(cli *c, int argc, char **argv);
int cmd_attach(cli *c, int argc, char **argv);
int cmd_detach(cli *c, int argc, char **argv);
int cmd_gc(cli *c, int argc, char **argv);
int cmd_fsck(cli *c, int argc, char **argv);
int cmd_hash(cli *c, int argc, char **argv);
int cmd_create(cli *c, int argc, char **argv);
int cmd_clone(cli *c, int argc, char **argv);
int cmd_snapshot(cli *c, int argc, char **argv);
int cmd_commit(cli *c, int argc, char **argv);
int cmd_serve(cli *c, int argc, char **argv);
int cmd_chunk(cli *c, int argc, char **argv);
int cmd_publish(cli *c, int argc, char **argv);
int cmd_pull(cli *c, int argc, char **argv);
