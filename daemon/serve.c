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

static volatile int stopping;
static int wake_pipe[2] = { -1, -1 };
static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_done = PTHREAD_COND_INITIALIZER;
static int *conn_fds;
static unsigned n_conns, cap_conns;
static atomic_ulong total_conns, rejected_conns;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...) {
        char ts[32];
        time_t t = time(NULL);
        struct tm tm;
        strftime(ts, sizeof ts, "%H:%M:%S", localtime_r(&t, &tm));
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "stellar serve %s: ", ts);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
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

static void *conn_main(void *arg) {
        struct conn_arg a = *(struct conn_arg *)arg;
        free(arg);
        int fd = a.fd;
        nbd_conn_run(&a.ctx, fd); /* closes fd */
        conns_remove(fd);
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
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        f = fopen(tmp, "w");
        if (!f)
                return;
        fprintf(f,
                "{\"connections\":%u,\"connections_total\":%lu,\"connections_rejected\":%lu,"
                "\"exports_open\":%u,\"rss_kb\":%ld,\"cache\":{\"hits\":%llu,\"misses\":%llu,"
                "\"waits\":%llu,\"loads\":%llu,\"bytes_loaded\":%llu,\"evictions\":%llu,"
                "\"entries\":%llu,\"bytes\":%llu,\"budget\":%llu}}\n",
                nc, (unsigned long)atomic_load(&total_conns),
                (unsigned long)atomic_load(&rejected_conns), exports_open(), rss_kb,
                (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                (unsigned long long)cs.waits, (unsigned long long)cs.loads,
                (unsigned long long)cs.bytes_loaded, (unsigned long long)cs.evictions,
                (unsigned long long)cs.entries, (unsigned long long)cs.bytes,
                (unsigned long long)cs.budget);
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
                logf_("listening on %s", o->nbd[i]);
                n_ls++;
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
        struct pollfd pfd[10];
        time_t last_stats = 0;
        int reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        unsigned warned_fds = 0;
        while (!stopping) {
                for (unsigned i = 0; i < n_ls; i++)
                        pfd[i] = (struct pollfd){ .fd = ls[i].fd, .events = POLLIN };
                pfd[n_ls] = (struct pollfd){ .fd = wake_pipe[0], .events = POLLIN };
                pfd[n_ls + 1] = (struct pollfd){ .fd = ctl_fd, .events = POLLIN };
                int n = poll(pfd, n_ls + 2, 1000);
                if (time(NULL) != last_stats) {
                        write_stats(s, o->stats_file);
                        last_stats = time(NULL);
                }
                if (n <= 0)
                        continue;
                if (ctl_fd >= 0 && (pfd[n_ls + 1].revents & POLLIN) && !stopping)
                        control_accept(ctl_fd, s, o);
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
                        pthread_mutex_lock(&conns_lock);
                        bool full = n_conns >= o->max_connections;
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
                        struct conn_arg *a = full ? NULL : malloc(sizeof *a);
                        pthread_t t;
                        if (a) {
                                *a = (struct conn_arg){ .ctx = { .s = s, .stopping = &stopping },
                                                        .fd = fd };
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
        for (unsigned i = 0; i < n_ls; i++)
                close(ls[i].fd);
        pthread_mutex_lock(&conns_lock);
        for (unsigned i = 0; i < n_conns; i++)
                shutdown(conn_fds[i], SHUT_RDWR);
        while (n_conns > 0)
                pthread_cond_wait(&conns_done, &conns_lock);
        pthread_mutex_unlock(&conns_lock);
        pthread_attr_destroy(&attr);
        r = 0;
out:
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
        if (wrote_pidfile)
                (void)unlink(o->pidfile);
        st_store_close(s);
        free(conn_fds);
        logf_("stopped");
        return r < 0 ? 1 : 0;
}
