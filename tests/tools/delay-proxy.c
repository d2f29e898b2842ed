/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A TCP proxy on loopback that adds round-trip time (the C twin of
 * delay-proxy.py, fast enough for tens of thousands of requests a second).
 *
 *   delay-proxy --upstream HOST:PORT --delay-ms MS [--listen HOST:PORT]
 *               [--port-file F] [--no-handshake-delay]
 *
 * Every byte is held DELAY/2 in each direction, so a request and its answer
 * take DELAY longer, as over a real link with that RTT. Per connection and
 * direction, what is read is queued as (due time, bytes) segments and
 * written out in order once due; reading goes on meanwhile, so a large
 * transfer keeps its bandwidth and only starts DELAY/2 later. A direction
 * whose queue holds more than 4 MiB stops reading until it drains (TCP's
 * own flow control then holds the sender back). A new connection costs one
 * RTT more, as its TCP handshake would: the client's connect() succeeds at
 * once, but its first bytes are held one RTT longer (--no-handshake-delay
 * turns that off). An EOF is passed on as a half-close (shutdown SHUT_WR)
 * after the bytes before it, with the same delay; a reset (or a write that
 * fails) resets both sides, after the bytes queued before it went out.
 *
 * One thread, epoll edge-triggered, non-blocking sockets; the earliest due
 * segment arms a timerfd (CLOCK_MONOTONIC, absolute), with 100 us of slack
 * so that segments due close together go out in one pass. The bound port
 * goes to --port-file (written whole, then renamed into place). SIGTERM or
 * SIGINT ends it; it then prints how many connections and bytes it carried
 * on stderr.
 *
 * Build: part of the meson tests, or alone:
 *   cc -O2 -Wall -Wextra -Werror -o delay-proxy tests/tools/delay-proxy.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_MAX (4u << 20) /* bytes held per direction before reading pauses */
#define READ_SIZE (64u << 10) /* one read() at most */
#define SLACK_NS 100000u /* a due segment may go out this much late */
#define MAX_IOV 64 /* segments per writev() */
#define MAX_EVENTS 256

enum seg_kind { SEG_DATA, SEG_EOF, SEG_RESET };

/* Bytes read at one time from one side, to be written to the other. */
typedef struct seg {
        struct seg *next;
        uint64_t due; /* ns, CLOCK_MONOTONIC */
        uint32_t len, off; /* data, and how much of it went out */
        enum seg_kind kind;
        unsigned char data[];
} seg;

struct conn;
struct flow;

/* One socket of a connection. Edge-triggered: readable and writable say
 * what the last events and calls told, until a call hits EAGAIN. */
typedef struct end {
        int fd;
        bool readable, writable;
        bool connecting; /* the upstream side, until connect() completes */
        bool hup; /* EOF or error pending: read on until read() says so */
        struct conn *c;
        struct flow *in; /* reads from this socket */
        struct flow *out; /* writes to it */
} end;

/* One direction of a connection: src's bytes, queued, then written to dst. */
typedef struct flow {
        end *src, *dst;
        seg *head, *tail;
        size_t held; /* bytes queued, segment headers included */
        uint64_t not_before; /* nothing leaves before this (the handshake) */
        uint64_t *carried; /* the byte counter of this direction */
        bool src_done; /* EOF or error read from src: read no more */
        bool reset_queued;
        bool dst_shut; /* the EOF went out: dst shut down for writing */
        bool dst_gone; /* a write to dst failed: drop what comes */
        size_t hidx; /* in the timer heap, or NOT_IN_HEAP */
        uint64_t key; /* its due time there */
} flow;

typedef struct conn {
        end cl, up; /* client side, upstream side */
        flow c2u, u2c;
        bool closed; /* fds closed, freed after this batch of events */
        struct conn *next_dead;
} conn;

#define NOT_IN_HEAP SIZE_MAX

static uint64_t half_ns, rtt_ns; /* added delay one way, and a handshake */
static bool handshake = true;
static struct sockaddr_storage up_addr;
static socklen_t up_len;
static const char *up_name;
static int epfd, timer_fd;
static uint64_t now; /* CLOCK_MONOTONIC ns, read once per wake-up */
static uint64_t armed; /* when the timerfd fires, 0 if not armed */
static flow **heap; /* flows whose head segment is not due yet, by due time */
static size_t heap_n, heap_cap;
static conn *dead; /* closed during this batch, freed after it */
static uint64_t n_conns, bytes_up, bytes_down, n_live;
static unsigned char rbuf[READ_SIZE];
static bool accept_paused; /* out of fds: accept again once one closes */
static int listen_fd;

/* Tags for the epoll entries that are not connection ends. */
static char tag_listen, tag_timer, tag_signal;

static uint64_t clock_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
        fprintf(stderr, "delay-proxy: %s: %s\n", what, strerror(errno));
        exit(1);
}

/* ---- the timer heap: a binary min-heap of flows by key */

static void heap_swap(size_t a, size_t b) {
        flow *t = heap[a];
        heap[a] = heap[b];
        heap[b] = t;
        heap[a]->hidx = a;
        heap[b]->hidx = b;
}

static void heap_up(size_t i) {
        while (i > 0 && heap[(i - 1) / 2]->key > heap[i]->key) {
                heap_swap(i, (i - 1) / 2);
                i = (i - 1) / 2;
        }
}

static void heap_down(size_t i) {
        for (;;) {
                size_t l = 2 * i + 1, m = i;
                if (l < heap_n && heap[l]->key < heap[m]->key)
                        m = l;
                if (l + 1 < heap_n && heap[l + 1]->key < heap[m]->key)
                        m = l + 1;
                if (m == i)
                        return;
                heap_swap(i, m);
                i = m;
        }
}

static void heap_remove(flow *f) {
        size_t i = f->hidx;
        if (i == NOT_IN_HEAP)
                return;
        f->hidx = NOT_IN_HEAP;
        if (i == --heap_n)
                return;
        flow *m = heap[heap_n];
        heap[i] = m;
        m->hidx = i;
        heap_up(i);
        heap_down(m->hidx);
}

/* Put f in the heap at key, or move it there. */
static void heap_set(flow *f, uint64_t key) {
        if (f->hidx == NOT_IN_HEAP) {
                if (heap_n == heap_cap) {
                        heap_cap = heap_cap ? 2 * heap_cap : 1024;
                        heap = realloc(heap, heap_cap * sizeof *heap);
                        if (!heap)
                                die("realloc");
                }
                f->key = key;
                f->hidx = heap_n;
                heap[heap_n++] = f;
                heap_up(f->hidx);
                return;
        }
        uint64_t old = f->key;
        f->key = key;
        if (key < old)
                heap_up(f->hidx);
        else
                heap_down(f->hidx);
}

/* ---- queues */

static void flow_drop(flow *f) {
        for (seg *s = f->head, *n; s; s = n) {
                n = s->next;
                free(s);
        }
        f->head = f->tail = NULL;
        f->held = 0;
        heap_remove(f);
}

/* Append a segment of kind (data: rbuf's first len bytes) due DELAY/2 from
 * now, or from the end of the handshake. */
static void flow_push(flow *f, enum seg_kind kind, size_t len) {
        seg *s = malloc(sizeof *s + len);
        if (!s)
                die("malloc");
        s->next = NULL;
        s->due = (now > f->not_before ? now : f->not_before) + half_ns;
        s->len = (uint32_t)len;
        s->off = 0;
        s->kind = kind;
        memcpy(s->data, rbuf, len);
        if (f->tail)
                f->tail->next = s;
        else
                f->head = s;
        f->tail = s;
        f->held += sizeof *s + len;
}

/* Keep f in the heap, keyed by its head's due time, unless it has nothing
 * queued or its head is due data that waits for the destination to become
 * writable (EPOLLOUT brings it back). run_timers() releases what is due. */
static void flow_schedule(flow *f) {
        if (!f->head || (f->head->due <= now && f->head->kind == SEG_DATA && !f->dst->writable))
                heap_remove(f);
        else
                heap_set(f, f->head->due);
}

/* ---- connections */

static void conn_close(conn *c, bool reset) {
        if (c->closed)
                return;
        c->closed = true;
        end *ends[2] = { &c->cl, &c->up };
        for (int i = 0; i < 2; i++) {
                if (reset) { /* SO_LINGER 0: close() sends RST, not FIN */
                        struct linger l = { .l_onoff = 1, .l_linger = 0 };
                        setsockopt(ends[i]->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                }
                close(ends[i]->fd);
        }
        flow_drop(&c->c2u);
        flow_drop(&c->u2c);
        c->next_dead = dead;
        dead = c;
        n_live--;
}

static void accept_all(void);

/* Free the connections closed during this batch (events may still name
 * them until the batch is done); a paused accept loop may go on. */
static void bury_dead(void) {
        bool freed = dead != NULL;
        while (dead) {
                conn *c = dead;
                dead = c->next_dead;
                free(c);
        }
        if (freed && accept_paused)
                accept_all();
}

/* A write to f's destination failed: that peer is gone. What was queued for
 * it is dropped, and the other direction resets both sides once the bytes
 * queued before now went out (as a reset read from that peer would). */
static void flow_broken(flow *f) {
        f->dst_gone = true;
        flow_drop(f);
        flow *g = f->dst->in;
        g->src_done = true;
        if (!g->reset_queued) {
                g->reset_queued = true;
                flow_push(g, SEG_RESET, 0);
        }
        flow_schedule(g);
}

static void flow_pump(flow *f);

/* Read from f's source while it has bytes and f has room. */
static void flow_fill(flow *f) {
        end *e = f->src;
        while (!f->src_done && !f->dst_gone && e->readable && f->held <= QUEUE_MAX) {
                ssize_t n = read(e->fd, rbuf, sizeof rbuf);
                if (n > 0) {
                        flow_push(f, SEG_DATA, (size_t)n);
                        /* A short read emptied the socket buffer: the next
                         * bytes bring a new edge (but an EOF or error that
                         * came with these is only seen by reading on). */
                        if ((size_t)n < sizeof rbuf && !e->hup)
                                e->readable = false;
                } else if (n == 0) {
                        f->src_done = true;
                        flow_push(f, SEG_EOF, 0);
                } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
                        e->readable = false;
                } else if (errno != EINTR) { /* ECONNRESET and the like */
                        f->src_done = true;
                        f->reset_queued = true;
                        flow_push(f, SEG_RESET, 0);
                }
        }
        flow_schedule(f);
}

/* Write out f's due segments while the destination takes them; then read
 * more if that made room. */
static void flow_pump(flow *f) {
        end *d = f->dst;
        conn *c = d->c;
        while (!c->closed && !f->dst_gone && f->head && f->head->due <= now) {
                seg *s = f->head;
                if (s->kind == SEG_RESET) {
                        conn_close(c, true);
                        return;
                }
                if (s->kind == SEG_EOF) {
                        shutdown(d->fd, SHUT_WR);
                        f->dst_shut = true;
                        f->head = s->next;
                        if (!f->head)
                                f->tail = NULL;
                        f->held -= sizeof *s;
                        free(s);
                        if (d->in->dst_shut) { /* both directions done */
                                conn_close(c, false);
                                return;
                        }
                        continue;
                }
                if (!d->writable)
                        break; /* EPOLLOUT brings us back */
                struct iovec iov[MAX_IOV];
                int k = 0;
                size_t want = 0;
                for (seg *t = s; t && k < MAX_IOV && t->kind == SEG_DATA && t->due <= now;
                     t = t->next, k++) {
                        iov[k].iov_base = t->data + t->off;
                        iov[k].iov_len = t->len - t->off;
                        want += iov[k].iov_len;
                }
                ssize_t n = writev(d->fd, iov, k);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN || errno == EWOULDBLOCK) {
                                d->writable = false;
                                break;
                        }
                        flow_broken(f); /* EPIPE, ECONNRESET */
                        return;
                }
                *f->carried += (uint64_t)n;
                if ((size_t)n < want)
                        d->writable = false; /* the socket buffer is full */
                for (size_t left = (size_t)n; left > 0;) {
                        seg *t = f->head;
                        size_t l = t->len - t->off;
                        if (left < l) {
                                t->off += (uint32_t)left;
                                break;
                        }
                        left -= l;
                        f->head = t->next;
                        if (!f->head)
                                f->tail = NULL;
                        f->held -= sizeof *t + t->len;
                        free(t);
                }
        }
        if (c->closed || f->dst_gone)
                return;
        flow_fill(f); /* calls flow_schedule() */
}

static void end_init(end *e, conn *c, int fd, flow *in, flow *out) {
        e->fd = fd;
        e->c = c;
        e->in = in;
        e->out = out;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                  .data.ptr = e };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
                die("epoll_ctl");
}

static void flow_init(flow *f, end *src, end *dst, uint64_t *carried) {
        f->src = src;
        f->dst = dst;
        f->carried = carried;
        f->hidx = NOT_IN_HEAP;
}

/* A new client: connect its upstream side (non-blocking) and start. */
static void conn_new(int cfd) {
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int ufd = socket(up_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ufd < 0) {
                fprintf(stderr, "delay-proxy: socket: %s\n", strerror(errno));
                close(cfd);
                return;
        }
        setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bool connecting = false;
        if (connect(ufd, (struct sockaddr *)&up_addr, up_len) < 0) {
                if (errno != EINPROGRESS) {
                        fprintf(stderr, "delay-proxy: upstream %s: %s\n", up_name, strerror(errno));
                        struct linger l = { .l_onoff = 1, .l_linger = 0 };
                        setsockopt(cfd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
                        close(cfd);
                        close(ufd);
                        return;
                }
                connecting = true;
        }
        conn *c = calloc(1, sizeof *c);
        if (!c)
                die("calloc");
        flow_init(&c->c2u, &c->cl, &c->up, &bytes_up);
        flow_init(&c->u2c, &c->up, &c->cl, &bytes_down);
        /* The client's connect() returned at once; over a real link it
         * would have taken a round trip, so its first bytes leave one RTT
         * later. */
        if (handshake)
                c->c2u.not_before = now + rtt_ns;
        c->up.connecting = connecting;
        end_init(&c->cl, c, cfd, &c->c2u, &c->u2c);
        end_init(&c->up, c, ufd, &c->u2c, &c->c2u);
        n_conns++;
        n_live++;
}

static void accept_all(void) {
        accept_paused = false;
        for (;;) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd >= 0) {
                        conn_new(fd);
                        continue;
                }
                if (errno == EINTR || errno == ECONNABORTED)
                        continue;
                if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                        /* Edge-triggered: no new event comes for the
                         * clients already waiting; retry once a
                         * connection closes. */
                        if (!accept_paused)
                                fprintf(stderr, "delay-proxy: accept: %s (%llu open)\n",
                                        strerror(errno), (unsigned long long)n_live);
                        accept_paused = n_live > 0;
                }
                return;
        }
}

/* Events on one end of a connection. */
static void end_event(end *e, uint32_t ev) {
        if (e->c->closed)
                return;
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                e->readable = true;
        if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                e->hup = true;
        if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
                if (e->connecting) {
                        int err = 0;
                        socklen_t len = sizeof err;
                        getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                        if (err) {
                                fprintf(stderr, "delay-proxy: upstream %s: %s\n", up_name,
                                        strerror(err));
                                conn_close(e->c, true);
                                return;
                        }
                        e->connecting = false;
                }
                e->writable = true;
        }
        if (e->connecting)
                e->readable = false; /* nothing to read before it connects */
        flow_pump(e->out); /* due bytes out to it (and refill that flow) */
        if (!e->c->closed)
                flow_fill(e->in);
}

/* Release what is due, and arm the timer for the next due segment. */
static void run_timers(void) {
        while (heap_n && heap[0]->key <= now) {
                flow *f = heap[0];
                heap_remove(f);
                flow_pump(f);
        }
        uint64_t want = heap_n ? heap[0]->key + SLACK_NS : 0;
        if (want && (!armed || want < armed || armed <= now)) {
                struct itimerspec its = { .it_value = { .tv_sec = (time_t)(want / 1000000000u),
                                                        .tv_nsec = (long)(want % 1000000000u) } };
                if (timerfd_settime(timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
                        die("timerfd_settime");
                armed = want;
        }
}

/* HOST:PORT (HOST may be [v6] or empty for 127.0.0.1) to an address. */
static void resolve(const char *s, struct sockaddr_storage *ss, socklen_t *len) {
        const char *colon = strrchr(s, ':');
        if (!colon) {
                fprintf(stderr, "delay-proxy: '%s' is not HOST:PORT\n", s);
                exit(2);
        }
        char host[256];
        size_t hl = (size_t)(colon - s);
        if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
                s++;
                hl -= 2;
        }
        if (hl >= sizeof host) {
                fprintf(stderr, "delay-proxy: host name too long\n");
                exit(2);
        }
        memcpy(host, s, hl);
        host[hl] = 0;
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
        int r = getaddrinfo(hl ? host : "127.0.0.1", colon + 1, &hints, &ai);
        if (r) {
                fprintf(stderr, "delay-proxy: %s: %s\n", s, gai_strerror(r));
                exit(2);
        }
        memcpy(ss, ai->ai_addr, ai->ai_addrlen);
        *len = ai->ai_addrlen;
        freeaddrinfo(ai);
}

static void usage(void) {
        fprintf(stderr, "usage: delay-proxy --upstream HOST:PORT --delay-ms MS [--listen HOST:PORT]\n"
                        "                   [--port-file F] [--no-handshake-delay]\n");
        exit(2);
}

int main(int argc, char **argv) {
        const char *listen_at = "127.0.0.1:0", *port_file = NULL;
        double delay_ms = -1;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = NULL;
                const char *eq = strchr(a, '=');
                char name[64];
                if (eq && eq - a < (long)sizeof name) { /* --opt=value */
                        snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
                        a = name;
                        v = eq + 1;
                }
                if (!strcmp(a, "--no-handshake-delay") && !v) {
                        handshake = false;
                        continue;
                }
                if (!strcmp(a, "-h") || !strcmp(a, "--help"))
                        usage();
                if (!v) {
                        if (i + 1 >= argc)
                                usage();
                        v = argv[++i];
                }
                if (!strcmp(a, "--listen"))
                        listen_at = v;
                else if (!strcmp(a, "--upstream"))
                        up_name = v;
                else if (!strcmp(a, "--port-file"))
                        port_file = v;
                else if (!strcmp(a, "--delay-ms")) {
                        char *endp;
                        delay_ms = strtod(v, &endp);
                        if (*endp || !(delay_ms >= 0) || delay_ms > 1e6)
                                usage();
                } else
                        usage();
        }
        if (!up_name || delay_ms < 0)
                usage();
        rtt_ns = (uint64_t)(delay_ms * 1e6 + 0.5);
        half_ns = rtt_ns / 2;
        resolve(up_name, &up_addr, &up_len);

        /* thousands of connections, two fds each */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        signal(SIGPIPE, SIG_IGN);
        sigset_t stop;
        sigemptyset(&stop);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGINT);
        sigprocmask(SIG_BLOCK, &stop, NULL);
        int sig_fd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
        epfd = epoll_create1(EPOLL_CLOEXEC);
        timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        if (sig_fd < 0 || epfd < 0 || timer_fd < 0)
                die("setup");

        struct sockaddr_storage la;
        socklen_t ll;
        resolve(listen_at, &la, &ll);
        listen_fd = socket(la.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        if (listen_fd < 0 || setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            bind(listen_fd, (struct sockaddr *)&la, ll) < 0 || listen(listen_fd, 4096) < 0)
                die(listen_at);
        ll = sizeof la;
        if (getsockname(listen_fd, (struct sockaddr *)&la, &ll) < 0)
                die("getsockname");
        unsigned port = ntohs(la.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&la)->sin6_port
                                                       : ((struct sockaddr_in *)&la)->sin_port);
        struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.ptr = &tag_listen };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
                die("epoll_ctl");
        ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &tag_timer };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, timer_fd, &ev) < 0)
                die("epoll_ctl");
        ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &tag_signal };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, sig_fd, &ev) < 0)
                die("epoll_ctl");
        if (port_file) {
                char tmp[4096];
                snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
                FILE *f = fopen(tmp, "w");
                if (!f || fprintf(f, "%u\n", port) < 0 || fclose(f) != 0 || rename(tmp, port_file) < 0)
                        die(port_file);
        }
        fprintf(stderr, "delay-proxy: 127.0.0.1:%u -> %s, +%g ms round trip\n", port, up_name,
                delay_ms);

        struct epoll_event evs[MAX_EVENTS];
        for (;;) {
                int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        die("epoll_wait");
                }
                now = clock_ns();
                for (int i = 0; i < n; i++) {
                        void *p = evs[i].data.ptr;
                        if (p == &tag_listen)
                                accept_all();
                        else if (p == &tag_timer) {
                                uint64_t ticks;
                                if (read(timer_fd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                                        die("timerfd");
                                armed = 0;
                        } else if (p == &tag_signal)
                                goto out;
                        else
                                end_event(p, evs[i].events);
                }
                run_timers();
                bury_dead();
        }
out:
        fprintf(stderr, "delay-proxy: %llu connections, %llu bytes up, %llu bytes down\n",
                (unsigned long long)n_conns, (unsigned long long)bytes_up,
                (unsigned long long)bytes_down);
        return 0;
}
