/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the stellar subcommands. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static _Thread_local FILE *thread_out, *thread_err;

FILE *cli_out(void) {
        return thread_out ? thread_out : stdout;
}

FILE *cli_err(void) {
        return thread_err ? thread_err : stderr;
}

void cli_set_streams(FILE *out, FILE *err) {
        thread_out = out;
        thread_err = err;
}

const char *cli_path(const cli *c, const char *path, char *buf, size_t len) {
        if (c->cwd_fd < 0 || path[0] == '/' || strstr(path, "://"))
                return path;
        snprintf(buf, len, "/proc/self/fd/%d/%s", c->cwd_fd, path);
        return buf;
}

void cli_close(const cli *c, st_store *s) {
        if (s && s != c->served)
                st_store_close(s);
}

void cli_error(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fputs("stellar: ", cli_err());
        vfprintf(cli_err(), fmt, ap);
        fputc('\n', cli_err());
        va_end(ap);
}

void cli_diag_error(const char *what, int r, const st_diag *d) {
        if (d && d->what) {
                if (d->file[0] && d->offset == ST_DIAG_NO_OFFSET)
                        cli_error("%s: %s: %s (%s)", what, d->file, d->what, strerror(-r));
                else if (d->file[0])
                        cli_error("%s: %s at offset %llu: %s (%s)", what, d->file,
                                  (unsigned long long)d->offset, d->what, strerror(-r));
                else
                        cli_error("%s: offset %llu: %s (%s)", what, (unsigned long long)d->offset,
                                  d->what, strerror(-r));
        } else
                cli_error("%s: %s", what, strerror(-r));
}

/* "pid N (stellar import x.raw y)", from /proc, for messages. */
static void describe_pid(long pid, char *buf, size_t len) {
        char path[64], cmd[200] = "";
        snprintf(path, sizeof path, "/proc/%ld/cmdline", pid);
        FILE *f = fopen(path, "r");
        if (f) {
                size_t n = fread(cmd, 1, sizeof cmd - 1, f);
                fclose(f);
                for (size_t i = 0; i + 1 < n; i++)
                        if (cmd[i] == 0)
                                cmd[i] = ' ';
                cmd[n] = 0;
        }
        if (cmd[0])
                snprintf(buf, len, "pid %ld: %s", pid, cmd);
        else
                snprintf(buf, len, "pid %ld", pid);
}

int cli_open(cli *c, unsigned flags, st_store **ret) {
        if (c->served) {
                *ret = c->served;
                return 0;
        }
        st_diag d = { 0 };
        bool may_wait = (flags & (ST_STORE_RDONLY | ST_STORE_SHARED)) &&
                        !((flags & ST_STORE_RDONLY) && (flags & ST_STORE_NOINDEX));
        int r = st_store_open(c->store_dir, flags | (may_wait ? ST_STORE_NOWAIT : 0), ret, &d);
        if (r == -EBUSY && may_wait) {
                /* Say why we wait, then wait: a writer (import, gc) holds it. */
                char who[256] = "another process";
                long pid = st_store_writer_pid(c->store_dir);
                if (pid > 0)
                        describe_pid(pid, who, sizeof who);
                cli_error("waiting for %s to finish changing the store", who);
                d = (st_diag){ 0 };
                r = st_store_open(c->store_dir, flags, ret, &d);
        } else if (r == -EBUSY) {
                char who[256] = "";
                long pid = st_store_server_pid(c->store_dir);
                if (pid <= 0)
                        pid = st_store_writer_pid(c->store_dir);
                if (pid > 0) {
                        describe_pid(pid, who, sizeof who);
                        cli_error("cannot open store: the store is in use by %s; this command "
                                  "needs it to itself",
                                  who);
                        return r;
                }
        }
        if (r < 0) {
                char what[600];
                snprintf(what, sizeof what, "cannot open store");
                cli_diag_error(what, r, &d);
        }
        return r;
}

const char *cli_size(uint64_t v, char buf[32]) {
        static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
        double x = (double)v;
        unsigned u = 0;
        while (x >= 1024 && u < 5) {
                x /= 1024;
                u++;
        }
        if (u == 0)
                snprintf(buf, 32, "%llu B", (unsigned long long)v);
        else
                snprintf(buf, 32, "%.1f %s", x, units[u]);
        return buf;
}

int cli_parse_size(const char *s, uint64_t *ret) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end == s || s[0] == '-')
                return -EINVAL;
        unsigned shift = 0;
        switch (*end) {
        case 0: break;
        case 'k': case 'K': shift = 10; end++; break;
        case 'm': case 'M': shift = 20; end++; break;
        case 'g': case 'G': shift = 30; end++; break;
        case 't': case 'T': shift = 40; end++; break;
        default: return -EINVAL;
        }
        if (shift && (*end == 'i' || *end == 'I'))
                end++;
        if (shift && (*end == 'b' || *end == 'B'))
                end++;
        if (*end != 0)
                return -EINVAL;
        if (shift && v > (UINT64_MAX >> shift))
                return -EINVAL;
        *ret = (uint64_t)v << shift;
        return 0;
}

uint64_t cli_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cli_progress_init(cli_progress *p, const cli *c, const char *label) {
        p->label = label;
        p->on = !c->quiet && isatty(fileno(cli_err()));
        p->items = false;
        p->start_ns = p->last_ns = cli_now_ns();
}

void cli_progress_cb(void *userdata, uint64_t done, uint64_t total) {
        cli_progress *p = userdata;
        if (!p->on)
                return;
        uint64_t now = cli_now_ns();
        if (now - p->last_ns < 100000000ull && done < total)
                return;
        p->last_ns = now;
        double secs = (double)(now - p->start_ns) / 1e9;
        char a[32], b[32];
        if (p->items) {
                fprintf(cli_err(), "\r%s: %llu / %llu   ", p->label, (unsigned long long)done,
                        (unsigned long long)total);
                fflush(cli_err());
                return;
        }
        fprintf(cli_err(), "\r%s: %3.0f%%  %s / %s  %.0f MB/s   ", p->label,
                total ? 100.0 * (double)done / (double)total : 100.0, cli_size(done, a),
                cli_size(total, b), secs > 0 ? (double)done / secs / 1e6 : 0.0);
        fflush(cli_err());
}

void cli_progress_end(cli_progress *p) {
        if (p->on)
                fputs("\r\033[K", cli_err());
}

int cli_common_flags(cli *c, int argc, char **argv, const char *usage) {
        int i = 1;
        for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
                if (strcmp(argv[i], "--json") == 0)
                        c->json = true;
                else if (strcmp(argv[i], "--quiet") == 0 || strcmp(argv[i], "-q") == 0)
                        c->quiet = true;
                else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                        fprintf(cli_out(), "%s", usage);
                        exit(0);
                } else if (strcmp(argv[i], "--") == 0) {
                        i++;
                        break;
                } else {
                        cli_error("unknown option '%s'", argv[i]);
                        fprintf(cli_err(), "%s", usage);
                        return -1;
                }
        }
        return i;
}
