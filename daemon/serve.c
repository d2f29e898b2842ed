/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's life: open the store with a shared chunk cache, listen on
 * every --nbd address, run each client on its own thread, write counters to
 * the stats file every second, and on SIGTERM/SIGINT stop accepting, end
 * every connection, flush and close every volume, and remove what it made
 * (Unix sockets, pidfile). Logs go to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <stellar/remote.h>

#include "serve.h"
#include "vhost/vhost.h"

static volatile int stopping;
static int wake_pipe[2] = { -1, -1 };
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_done = PTHREAD_COND_INITIALIZER;
static int *conn_fds;
static unsigned n_conns, cap_conns;
static atomic_ulong total_conns, rejected_conns;

static void vlog(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static void vlog(const char *fmt, va_list ap) {
        char ts[32], line[1024];
        time_t t = time(NULL);
        struct tm tm;
        strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&t, &tm));
        vsnprintf(line, sizeof line, fmt, ap);
        /* one write per line: lines of different threads never mix */
        fprintf(stderr, "stellar serve %s: %s\n", ts, line);
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vlog(fmt, ap);
        va_end(ap);
}

void serve_logf(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vlog(fmt, ap);
        va_end(ap);
}

static struct timespec started;

void serve_get_counts(serve_counts *ret) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        pthread_mutex_lock(&conns_lock);
        unsigned nc = n_conns;
        pthread_mutex_unlock(&conns_lock);
        *ret = (serve_counts){ .connections = nc,
                               .connections_total = atomic_load(&total_conns),
                               .connections_rejected = atomic_load(&rejected_conns),
                               .uptime_s = (double)(now.tv_sec - started.tv_sec) +
                                           (double)(now.tv_nsec - started.tv_nsec) / 1e9,
                               .pid = (long)getpid() };
}

/* Who a client is, for the log. */
static void peer_name(int fd, char *buf, size_t len) {
        struct sockaddr_storage a;
        socklen_t al = sizeof a;
        snprintf(buf, len, "?");
        if (getpeername(fd, (struct sockaddr *)&a, &al) < 0)
                return;
        if (a.ss_family == AF_UNIX) {
                struct ucred cr;
                socklen_t cl = sizeof cr;
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
                        snprintf(buf, len, "pid %ld uid %ld", (long)cr.pid, (long)cr.uid);
                return;
        }
        char host[64], port[16];
        if (getnameinfo((struct sockaddr *)&a, al, host, sizeof host, port, sizeof port,
                        NI_NUMERICHOST | NI_NUMERICSERV) == 0)
                snprintf(buf, len, a.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* The service manager's readiness protocol (sd_notify(3)): one datagram to
 * $NOTIFY_SOCKET, when it is set (a unit with Type=notify). */
static void notify(const char *state) {
        const char *path = getenv("NOTIFY_SOCKET");
        if (!path || (path[0] != '/' && path[0] != '@'))
                return;
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        size_t l = strlen(path);
        if (l >= sizeof a.sun_path)
                return;
        memcpy(a.sun_path, path, l);
        if (a.sun_path[0] == '@')
                a.sun_path[0] = 0; /* abstract */
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return;
        (void)sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&a,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l));
        close(fd);
}

/* One scrape of the metrics endpoint: any request gets the text. */
static void *metrics_main(void *arg) {
        int fd = (int)(intptr_t)((void **)arg)[0];
        st_store *s = ((void **)arg)[1];
        free(arg);
        struct timeval tv = { .tv_sec = 5 };
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        char req[2048];
        size_t got = 0;
        /* up to the end of the request's head, or what arrives in 5 s */
        while (got < sizeof req - 1) {
                ssize_t n = recv(fd, req + got, sizeof req - 1 - got, 0);
                if (n <= 0)
                        break;
                got += (size_t)n;
                req[got] = 0;
                if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
                        break;
        }
        char *body = NULL;
        size_t blen = 0;
        FILE *m = open_memstream(&body, &blen);
        if (m) {
                serve_metrics(m, s);
                fclose(m);
        }
        FILE *f = fdopen(fd, "w");
        if (f) {
                fprintf(f,
                        "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                        body ? blen : 0);
                if (body)
                        fwrite(body, 1, blen, f);
                fclose(f);
        } else
                close(fd);
        free(body);
        return NULL;
}

static void on_signal(int sig) {
        (void)sig;
        stopping = 1;
        if (wake_pipe[1] >= 0) {
                char b = 1;
                (void)!write(wake_pipe[1], &b, 1);
        }
}

typedef struct listener {
        int fd;
        bool tcp;
        char unix_path[108];
} listener;

static int listen_on(const char *spec, listener *ret) {
        *ret = (listener){ .fd = -1 };
        if (strncmp(spec, "unix:", 5) == 0) {
                struct sockaddr_un a = { .sun_family = AF_UNIX };
                if (strlen(spec + 5) >= sizeof a.sun_path)
                        return -ENAMETOOLONG;
                strcpy(a.sun_path, spec + 5);
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return -errno;
                /* A socket nobody answers on is a killed daemon's: replace it.
                 * One that answers belongs to a live server: leave it be. */
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                bool live = probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof a) == 0;
                if (probe >= 0)
                        close(probe);
                if (live) {
                        close(fd);
                        return -EADDRINUSE;
                }
                (void)unlink(a.sun_path);
                if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 1024) < 0) {
                        int r = -errno;
                        close(fd);
                        return r;
                }
                ret->fd = fd;
                strcpy(ret->unix_path, a.sun_path);
                return 0;
        }
        if (strncmp(spec, "tcp:", 4) == 0) {
                char host[256];
                const char *hp = spec + 4, *colon = strrchr(hp, ':');
                if (!colon || (size_t)(colon - hp) >= sizeof host)
                        return -EINVAL;
                memcpy(host, hp, (size_t)(colon - hp));
                host[colon - hp] = 0;
                if (host[0] == '[') { /* [v6addr] */
                        memmove(host, host + 1, strlen(host));
                        char *e = strchr(host, ']');
                        if (e)
                                *e = 0;
                }
                ret->tcp = true;
                struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
                struct addrinfo *ai;
                if (getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai) != 0)
                        return -EADDRNOTAVAIL;
                int r = -EADDRNOTAVAIL;
                for (struct addrinfo *p = ai; p; p = p->ai_next) {
                        int fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, 0);
                        if (fd < 0)
                                continue;
                        int one = 1;
                        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                        if (bind(fd, p->ai_addr, p->ai_addrlen) == 0 && listen(fd, 1024) == 0) {
                                ret->fd = fd;
                                r = 0;
                                break;
                        }
                        r = -errno;
                        close(fd);
                }
                freeaddrinfo(ai);
                return r;
        }
        return -EINVAL;
}

struct conn_arg {
        conn_ctx ctx;
        int fd;
};

static void conns_remove(int fd) {
        pthread_mutex_lock(&conns_lock);
        for (unsigned i = 0; i < n_conns; i++)
                if (conn_fds[i] == fd) {
                        conn_fds[i] = conn_fds[--n_conns];
                        break;
                }
        if (n_conns == 0)
                pthread_cond_broadcast(&conns_done);
        pthread_mutex_unlock(&conns_lock);
}

/* A vhost-user-blk socket: one volume, one VMM at a time. The sockets are
 * made at start (--vhost-user-blk) and by `stellar attach`, ended by
 * `stellar detach`; only the main thread opens, polls and closes them, and
 * the commands ask it (vhost_request). A slot is free when it has no
 * socket and no session. */
typedef struct vhost_listener {
        listener l;
        char name[256];
        bool ro;
        atomic_bool busy;
        int session_fd; /* the VMM's connection, -1 (under vh_lock) */
} vhost_listener;

static vhost_listener vls[32];
static unsigned n_vls;
static pthread_mutex_t vh_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t vh_cond = PTHREAD_COND_INITIALIZER;
static struct {
        bool pending, done, detach, ro;
        char path[108], name[256], msg[256];
        int result;
} vh_req;
static bool vh_open_for_requests; /* the main loop runs */

struct vhost_arg {
        vhost_ctx ctx;
        vhost_listener *vl;
        int fd;
};

static void *vhost_main(void *arg) {
        struct vhost_arg a = *(struct vhost_arg *)arg;
        free(arg);
        vhost_blk_run(&a.ctx, a.fd);
        /* Forgotten before the close frees the number: a detach or the
         * shutdown must never reach another connection that reuses it. */
        conns_remove(a.fd);
        pthread_mutex_lock(&vh_lock);
        a.vl->session_fd = -1;
        pthread_mutex_unlock(&vh_lock);
        close(a.fd);
        atomic_store(&a.vl->busy, false);
        return NULL;
}

static int listen_on(const char *spec, listener *ret);

/* Main thread: a socket PATH serving NAME. */
static int vhost_open(const char *path, const char *name, bool ro, char *msg, size_t msg_len) {
        if (!st_name_valid(name)) {
                snprintf(msg, msg_len, "'%.200s' is not a valid name", name);
                return -EINVAL;
        }
        vhost_listener *vl = NULL;
        for (unsigned i = 0; i < n_vls; i++) {
                if (vls[i].l.fd >= 0 && strcmp(vls[i].l.unix_path, path) == 0) {
                        snprintf(msg, msg_len, "%s already serves %s", path, vls[i].name);
                        return -EEXIST;
                }
                if (!vl && vls[i].l.fd < 0 && !atomic_load(&vls[i].busy))
                        vl = &vls[i];
        }
        if (!vl && n_vls < sizeof vls / sizeof vls[0])
                vl = &vls[n_vls];
        if (!vl) {
                snprintf(msg, msg_len, "%zu vhost-user-blk sockets already", sizeof vls / sizeof vls[0]);
                return -ENOSPC;
        }
        char spec[128];
        snprintf(spec, sizeof spec, "unix:%s", path);
        listener l;
        int r = listen_on(spec, &l);
        if (r < 0) {
                snprintf(msg, msg_len, "cannot listen on %s: %s", path,
                         r == -EADDRINUSE ? "another server is listening on it" : strerror(-r));
                return r;
        }
        if (vl == &vls[n_vls])
                n_vls++;
        vl->l = l;
        snprintf(vl->name, sizeof vl->name, "%s", name);
        vl->ro = ro;
        vl->session_fd = -1;
        snprintf(msg, msg_len, "vhost-user-blk on %s: %s%s", path, name, ro ? " (read-only)" : "");
        logf_("%s", msg);
        return 0;
}

/* Main thread: end the socket PATH, and its VMM's session if one is attached. */
static int vhost_close(const char *path, char *msg, size_t msg_len) {
        for (unsigned i = 0; i < n_vls; i++) {
                vhost_listener *vl = &vls[i];
                if (vl->l.fd < 0 || strcmp(vl->l.unix_path, path) != 0)
                        continue;
                close(vl->l.fd);
                vl->l.fd = -1;
                (void)unlink(vl->l.unix_path);
                pthread_mutex_lock(&vh_lock);
                bool had = vl->session_fd >= 0;
                if (had)
                        shutdown(vl->session_fd, SHUT_RDWR);
                pthread_mutex_unlock(&vh_lock);
                snprintf(msg, msg_len, "%s: %s detached%s", path, vl->name,
                         had ? " (its VMM's connection ended)" : "");
                logf_("vhost-user-blk %s", msg);
                return 0;
        }
        snprintf(msg, msg_len, "no vhost-user-blk socket %s", path);
        return -ENOENT;
}

int serve_vhost_request(bool detach, const char *path, const char *name, bool ro, char *msg,
                        size_t msg_len) {
        if (strlen(path) >= sizeof vh_req.path || (name && strlen(name) >= sizeof vh_req.name)) {
                snprintf(msg, msg_len, "path or name too long");
                return -ENAMETOOLONG;
        }
        pthread_mutex_lock(&vh_lock);
        while (vh_req.pending && vh_open_for_requests)
                pthread_cond_wait(&vh_cond, &vh_lock);
        if (!vh_open_for_requests) {
                pthread_mutex_unlock(&vh_lock);
                snprintf(msg, msg_len, "the daemon is stopping");
                return -ESHUTDOWN;
        }
        vh_req.pending = true;
        vh_req.done = false;
        vh_req.detach = detach;
        vh_req.ro = ro;
        snprintf(vh_req.path, sizeof vh_req.path, "%s", path);
        snprintf(vh_req.name, sizeof vh_req.name, "%s", name ? name : "");
        char b = 'v';
        (void)!write(wake_pipe[1], &b, 1);
        while (!vh_req.done && vh_open_for_requests)
                pthread_cond_wait(&vh_cond, &vh_lock);
        int r = vh_req.done ? vh_req.result : -ESHUTDOWN;
        snprintf(msg, msg_len, "%s", vh_req.done ? vh_req.msg : "the daemon is stopping");
        vh_req.pending = false;
        pthread_cond_broadcast(&vh_cond);
        pthread_mutex_unlock(&vh_lock);
        return r;
}

/* Main thread: answer the request a command left. */
static void vhost_serve_request(void) {
        pthread_mutex_lock(&vh_lock);
        bool todo = vh_req.pending && !vh_req.done;
        pthread_mutex_unlock(&vh_lock);
        if (!todo)
                return;
        char msg[256];
        int r = vh_req.detach ? vhost_close(vh_req.path, msg, sizeof msg)
                              : vhost_open(vh_req.path, vh_req.name, vh_req.ro, msg, sizeof msg);
        pthread_mutex_lock(&vh_lock);
        vh_req.result = r;
        snprintf(vh_req.msg, sizeof vh_req.msg, "%s", msg);
        vh_req.done = true;
        pthread_cond_broadcast(&vh_cond);
        pthread_mutex_unlock(&vh_lock);
}

/* Track fd as a connection (ended at shutdown): false when over the limit. */
static bool conns_add(int fd, unsigned max) {
        pthread_mutex_lock(&conns_lock);
        bool full = n_conns >= max;
        if (!full && n_conns == cap_conns) {
                unsigned cap = cap_conns ? cap_conns * 2 : 64;
                int *t = realloc(conn_fds, cap * sizeof *t);
                if (t) {
                        conn_fds = t;
                        cap_conns = cap;
                } else
                        full = true;
        }
        if (!full)
                conn_fds[n_conns++] = fd;
        pthread_mutex_unlock(&conns_lock);
        return !full;
}

static void *conn_main(void *arg) {
        struct conn_arg a = *(struct conn_arg *)arg;
        free(arg);
        int fd = a.fd;
        nbd_conn_run(&a.ctx, fd);
        conns_remove(fd); /* before the close frees the number for reuse */
        close(fd);
        return NULL;
}

static void write_stats(st_store *s, const char *path) {
        if (!path)
                return;
        st_cache_stats cs;
        st_store_cache_stats(s, &cs);
        long rss_kb = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f) {
                long pages, res;
                if (fscanf(f, "%ld %ld", &pages, &res) == 2)
                        rss_kb = res * (sysconf(_SC_PAGESIZE) / 1024);
                fclose(f);
        }
        pthread_mutex_lock(&conns_lock);
        unsigned nc = n_conns;
        pthread_mutex_unlock(&conns_lock);
        uint64_t c_in, c_out, c_records, c_dropped;
        compress_counters(&c_in, &c_out, &c_records, &c_dropped);
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        f = fopen(tmp, "w");
        if (!f)
                return;
        fprintf(f,
                "{\"connections\":%u,\"connections_total\":%lu,\"connections_rejected\":%lu,"
                "\"exports_open\":%u,\"rss_kb\":%ld,\"cache\":{\"hits\":%llu,\"misses\":%llu,"
                "\"waits\":%llu,\"loads\":%llu,\"bytes_loaded\":%llu,\"evictions\":%llu,"
                "\"entries\":%llu,\"bytes\":%llu,\"budget\":%llu},"
                "\"compress\":{\"records\":%llu,\"bytes_in\":%llu,\"bytes_out\":%llu,"
                "\"packs_dropped\":%llu}}\n",
                nc, (unsigned long)atomic_load(&total_conns),
                (unsigned long)atomic_load(&rejected_conns), exports_open(), rss_kb,
                (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                (unsigned long long)cs.waits, (unsigned long long)cs.loads,
                (unsigned long long)cs.bytes_loaded, (unsigned long long)cs.evictions,
                (unsigned long long)cs.entries, (unsigned long long)cs.bytes,
                (unsigned long long)cs.budget, (unsigned long long)c_records,
                (unsigned long long)c_in, (unsigned long long)c_out,
                (unsigned long long)c_dropped);
        fclose(f);
        (void)rename(tmp, path);
}

/* Enough descriptors for --max-connections: a socket per connection, and
 * per attached volume its delta's data, journal and lock, with room for
 * packs, listeners and control clients. */
static void raise_fd_limit(unsigned max_connections) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        rlim_t want = (rlim_t)max_connections * 4 + 1024;
        if (rl.rlim_cur >= want)
                return;
        /* The soft limit, up to the hard one (which the host sets: a unit's
         * LimitNOFILE=, or prlimit) */
        struct rlimit nl = { .rlim_cur = rl.rlim_max < want ? rl.rlim_max : want,
                             .rlim_max = rl.rlim_max };
        if (nl.rlim_cur > rl.rlim_cur)
                (void)setrlimit(RLIMIT_NOFILE, &nl);
        if (getrlimit(RLIMIT_NOFILE, &nl) == 0 && nl.rlim_cur < want)
                logf_("open-file limit %llu is below the %llu that %u connections need; "
                      "connections past it are refused",
                      (unsigned long long)nl.rlim_cur, (unsigned long long)want, max_connections);
}

int serve_run(const serve_opts *o) {
        st_store *s;
        st_diag d = { 0 };
        raise_fd_limit(o->max_connections);
        clock_gettime(CLOCK_MONOTONIC, &started);
        /* The daemon owns the store: it holds it to itself, and every other
         * command comes to it over the control socket. A command that holds
         * the store now (an import, a gc) is waited for; another daemon is
         * not. */
        int r;
        bool said = false;
        for (;;) {
                d = (st_diag){ 0 };
                r = st_store_open(o->store_dir, 0, &s, &d);
                if (r != -EBUSY)
                        break;
                long pid = st_store_server_pid(o->store_dir);
                if (pid != 0) {
                        if (pid > 0)
                                logf_("store %s is already served by pid %ld", o->store_dir, pid);
                        else
                                logf_("store %s is already served by another process", o->store_dir);
                        return 1;
                }
                if (!said) {
                        long w = st_store_writer_pid(o->store_dir);
                        if (w > 0)
                                logf_("waiting for pid %ld to finish with the store", w);
                        else
                                logf_("waiting for the commands that hold the store to finish");
                        said = true;
                }
                struct timespec ts = { 0, 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
                if (stopping)
                        return 1;
        }
        if (r < 0) {
                logf_("cannot open store %s: %s%s%s", o->store_dir, d.what ? d.what : "",
                      d.what ? ": " : "", strerror(-r));
                return 1;
        }
        /* One server per store: two would each hand out delta slots and
         * journal numbers of the same volume and lose each other's writes. */
        long holder = 0;
        r = st_store_claim_server(s, &holder);
        if (r < 0) {
                if (r == -EBUSY && holder > 0)
                        logf_("store %s is already served by pid %ld", o->store_dir, holder);
                else
                        logf_("cannot claim store %s for serving: %s", o->store_dir, strerror(-r));
                st_store_close(s);
                return 1;
        }
        r = st_store_attach_sources(s, &(st_transfer_opts){ .background = o->prefetch });
        if (r > 0)
                logf_("lazily pulled images: missing chunks are fetched when read%s, from %d "
                      "source(s)", o->prefetch ? ", and the rest in the background" : "", r);
        r = st_store_set_cache(s, o->cache_bytes);
        if (r < 0) {
                logf_("cannot allocate the cache: %s", strerror(-r));
                st_store_close(s);
                return 1;
        }
        listener ls[8];
        listener ml = { .fd = -1 }; /* metrics */
        for (unsigned i = 0; i < sizeof vls / sizeof vls[0]; i++)
                vls[i].l.fd = vls[i].session_fd = -1;
        nbd_tls_creds *tls = NULL;
        if (!o->tls_off && (o->tls_psk || o->tls_certs)) {
                char why[512] = "";
                r = nbd_tls_creds_new(o->tls_psk, o->tls_certs, &tls, why, sizeof why);
                if (r < 0) {
                        logf_("TLS credentials: %s", why[0] ? why : strerror(-r));
                        st_store_close(s);
                        return 1;
                }
        }
        for (unsigned i = 0; i < o->n_nbd; i++)
                if (!strncmp(o->nbd[i], "tcp:", 4) && !o->tls_off && !tls) {
                        logf_("%s: a TCP listener serves TLS only: give --tls-psk FILE or "
                              "--tls-certificates DIR (or --tls=off, for a loopback address only)",
                              o->nbd[i]);
                        st_store_close(s);
                        return 1;
                }
        /* Only once the options are known good: every return from here on
         * goes through out, which stops it before the store closes (a
         * return that closed the store under it freed what a step used). */
        r = compress_start(s, o->compress_cpu);
        if (r < 0) {
                logf_("cannot start the idle compression: %s", strerror(-r));
                nbd_tls_creds_free(tls);
                st_store_close(s);
                return 1;
        }
        unsigned n_ls = 0;
        bool wrote_pidfile = false;
        int ctl_fd = -1;
        char ctl_path[108] = "";
        for (unsigned i = 0; i < o->n_nbd; i++) {
                r = listen_on(o->nbd[i], &ls[n_ls]);
                if (r < 0) {
                        logf_("cannot listen on %s: %s", o->nbd[i],
                              r == -EADDRINUSE && !strncmp(o->nbd[i], "unix:", 5)
                                      ? "another server is listening on it"
                                      : strerror(-r));
                        goto out;
                }
                logf_("listening on %s%s", o->nbd[i],
                      ls[n_ls].tcp ? (tls ? " (TLS required)" : " (plain: --tls=off)")
                                   : (tls ? " (TLS offered)" : ""));
                n_ls++;
        }
        for (unsigned i = 0; i < o->n_vhost; i++) {
                const char *eq = strchr(o->vhost[i], '=');
                char path[108], name[256], msg[256];
                snprintf(path, sizeof path, "%.*s", (int)(eq - o->vhost[i]), o->vhost[i]);
                snprintf(name, sizeof name, "%s", eq + 1);
                size_t nl = strlen(name);
                bool ro = nl > 3 && strcmp(name + nl - 3, ":ro") == 0;
                if (ro)
                        name[nl - 3] = 0;
                r = vhost_open(path, name, ro, msg, sizeof msg);
                if (r < 0) {
                        logf_("--vhost-user-blk %s: %s", o->vhost[i], msg);
                        goto out;
                }
        }
        if (o->metrics) {
                r = listen_on(o->metrics, &ml);
                if (r < 0) {
                        logf_("cannot listen on %s (metrics): %s", o->metrics, strerror(-r));
                        goto out;
                }
                logf_("metrics on %s", o->metrics);
        }
        if (o->run) {
                r = control_listen(o->store_dir, &ctl_fd, ctl_path);
                if (r < 0) {
                        logf_("cannot listen on %s/control.sock: %s", o->store_dir, strerror(-r));
                        goto out;
                }
        }
        if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                goto out;
        }
        struct sigaction sa = { .sa_handler = on_signal };
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (o->pidfile) {
                FILE *f = fopen(o->pidfile, "w");
                if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
                        r = -errno;
                        logf_("cannot write pidfile %s", o->pidfile);
                        goto out;
                }
                wrote_pidfile = true;
        }
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 << 10);
        struct pollfd pfd[8 + 3 + 32];
        time_t last_stats = 0;
        int reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        unsigned warned_fds = 0;
        {
                char ready[96];
                snprintf(ready, sizeof ready, "READY=1\nMAINPID=%ld\nSTATUS=serving", (long)getpid());
                notify(ready);
        }
        pthread_mutex_lock(&vh_lock);
        vh_open_for_requests = true; /* attach and detach are answered from here on */
        pthread_mutex_unlock(&vh_lock);
        while (!stopping) {
                for (unsigned i = 0; i < n_ls; i++)
                        pfd[i] = (struct pollfd){ .fd = ls[i].fd, .events = POLLIN };
                pfd[n_ls] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
                pfd[n_ls + 1] = (struct pollfd){ .fd = ctl_fd, .events = POLLIN };
                pfd[n_ls + 2] = (struct pollfd){ .fd = ml.fd, .events = POLLIN };
                for (unsigned i = 0; i < n_vls; i++) /* a closed one (fd -1) is skipped by poll */
                        pfd[n_ls + 3 + i] = (struct pollfd){ .fd = vls[i].l.fd, .events = POLLIN };
                unsigned polled_vls = n_vls;
                int n = poll(pfd, n_ls + 3 + polled_vls, 1000);
                if (pfd[n_ls].revents & POLLIN) { /* drain the wake pipe */
                        char b[64];
                        while (read(wake_pipe[0], b, sizeof b) > 0)
                                ;
                }
                vhost_serve_request();
                if (time(NULL) != last_stats) {
                        write_stats(s, o->stats_file);
                        last_stats = time(NULL);
                }
                if (n <= 0)
                        continue;
                if (ctl_fd >= 0 && (pfd[n_ls + 1].revents & POLLIN) && !stopping)
                        control_accept(ctl_fd, s, o);
                if (ml.fd >= 0 && (pfd[n_ls + 2].revents & POLLIN) && !stopping) {
                        int mfd = accept4(ml.fd, NULL, NULL, SOCK_CLOEXEC);
                        void **arg = mfd >= 0 ? malloc(2 * sizeof *arg) : NULL;
                        pthread_t mt;
                        if (arg) {
                                arg[0] = (void *)(intptr_t)mfd;
                                arg[1] = s;
                        }
                        if (!arg || pthread_create(&mt, &attr, metrics_main, arg) != 0) {
                                free(arg);
                                if (mfd >= 0)
                                        close(mfd);
                        }
                }
                for (unsigned i = 0; i < polled_vls && !stopping; i++) {
                        if (!(pfd[n_ls + 3 + i].revents & POLLIN) || vls[i].l.fd < 0)
                                continue;
                        vhost_listener *vl = &vls[i];
                        int fd = accept4(vl->l.fd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd < 0)
                                continue;
                        struct vhost_arg *a = malloc(sizeof *a);
                        if (!a || atomic_exchange(&vl->busy, true)) {
                                if (a)
                                        logf_("vhost-user-blk %s: a second VMM refused (one is "
                                              "attached)", vl->name);
                                free(a);
                                close(fd);
                                atomic_fetch_add(&rejected_conns, 1);
                                continue;
                        }
                        *a = (struct vhost_arg){ .ctx = { .s = s, .name = vl->name, .readonly = vl->ro,
                                                          .queues = o->vhost_queues ? o->vhost_queues : 4,
                                                          .stopping = &stopping },
                                                 .vl = vl, .fd = fd };
                        peer_name(fd, a->ctx.peer, sizeof a->ctx.peer);
                        pthread_mutex_lock(&vh_lock);
                        vl->session_fd = fd;
                        pthread_mutex_unlock(&vh_lock);
                        pthread_t t;
                        if (conns_add(fd, o->max_connections) &&
                            pthread_create(&t, &attr, vhost_main, a) == 0) {
                                atomic_fetch_add(&total_conns, 1);
                                continue;
                        }
                        conns_remove(fd);
                        free(a);
                        close(fd);
                        pthread_mutex_lock(&vh_lock);
                        vl->session_fd = -1;
                        atomic_store(&vl->busy, false);
                        pthread_mutex_unlock(&vh_lock);
                        atomic_fetch_add(&rejected_conns, 1);
                }
                for (unsigned i = 0; i < n_ls && !stopping; i++) {
                        if (!(pfd[i].revents & POLLIN))
                                continue;
                        int fd = accept4(ls[i].fd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd < 0 && (errno == EMFILE || errno == ENFILE) && reserve_fd >= 0) {
                                /* Out of descriptors: the client would stay queued and
                                 * poll would wake us forever. Free the reserve, take
                                 * the client off the queue, refuse it, keep the reserve. */
                                close(reserve_fd);
                                fd = accept4(ls[i].fd, NULL, NULL, SOCK_CLOEXEC);
                                if (fd >= 0)
                                        close(fd);
                                reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                                atomic_fetch_add(&rejected_conns, 1);
                                if (!warned_fds++)
                                        logf_("out of file descriptors: refusing clients (raise ulimit -n)");
                                continue;
                        }
                        if (fd < 0)
                                continue;
                        int one = 1;
                        (void)setsockopt(fd, IPPROTO_TCP, 1 /* TCP_NODELAY */, &one, sizeof one);
                        bool full = !conns_add(fd, o->max_connections);
                        struct conn_arg *a = full ? NULL : malloc(sizeof *a);
                        pthread_t t;
                        if (a) {
                                *a = (struct conn_arg){ .ctx = { .s = s, .stopping = &stopping,
                                                                 .tls = tls,
                                                                 .tls_required = ls[i].tcp && tls },
                                                        .fd = fd };
                                peer_name(fd, a->ctx.peer, sizeof a->ctx.peer);
                                if (pthread_create(&t, &attr, conn_main, a) == 0) {
                                        atomic_fetch_add(&total_conns, 1);
                                        continue;
                                }
                                free(a);
                                conns_remove(fd);
                        } else if (!full)
                                conns_remove(fd);
                        atomic_fetch_add(&rejected_conns, 1);
                        close(fd);
                }
        }
        if (reserve_fd >= 0)
                close(reserve_fd);
        pthread_mutex_lock(&conns_lock);
        unsigned ending = n_conns;
        pthread_mutex_unlock(&conns_lock);
        logf_("stopping: ending %u connections", ending);
        notify("STOPPING=1");
        for (unsigned i = 0; i < n_ls; i++)
                close(ls[i].fd);
        pthread_mutex_lock(&vh_lock);
        vh_open_for_requests = false; /* a command waiting on a request gives up */
        pthread_cond_broadcast(&vh_cond);
        pthread_mutex_unlock(&vh_lock);
        for (unsigned i = 0; i < n_vls; i++)
                if (vls[i].l.fd >= 0) {
                        close(vls[i].l.fd);
                        vls[i].l.fd = -1;
                        (void)unlink(vls[i].l.unix_path);
                }

        pthread_mutex_lock(&conns_lock);
        for (unsigned i = 0; i < n_conns; i++)
                shutdown(conn_fds[i], SHUT_RDWR);
        while (n_conns > 0)
                pthread_cond_wait(&conns_done, &conns_lock);
        pthread_mutex_unlock(&conns_lock);
        pthread_attr_destroy(&attr);
        r = 0;
out:
        compress_stop(); /* (a step in progress ends first) */
        if (ctl_fd >= 0) {
                /* No new commands; the ones running finish first. */
                close(ctl_fd);
                (void)unlink(ctl_path);
        }
        control_drain();
        exports_close_all();
        write_stats(s, o->stats_file);
        for (unsigned i = 0; i < n_ls; i++)
                if (ls[i].unix_path[0])
                        (void)unlink(ls[i].unix_path);
        for (unsigned i = 0; i < n_vls; i++) /* (made before a failed start) */
                if (vls[i].l.fd >= 0) {
                        close(vls[i].l.fd);
                        (void)unlink(vls[i].l.unix_path);
                }
        if (ml.fd >= 0)
                close(ml.fd);
        if (ml.unix_path[0])
                (void)unlink(ml.unix_path);
        if (wrote_pidfile)
                (void)unlink(o->pidfile);
        st_store_close(s);
        nbd_tls_creds_free(tls);
        free(conn_fds);
        logf_("stopped");
        return r < 0 ? 1 : 0;
}
