/* SPDX-License-Identifier: Apache-2.0 */
/*
 * vhost-bench: a vhost-user-blk front-end that plays the VMM for a benchmark
 * (without KVM a guest is too slow to measure a disk). It shares its
 * "guest memory" (a memfd) with the back-end, lays out one split virtqueue
 * per queue in it, keeps DEPTH requests in flight on each (one thread per
 * queue), and reports IOPS and latency. The same program drives any
 * vhost-user-blk back-end: stellar serve, qemu-storage-daemon.
 *
 * Usage: vhost-bench SOCK [--rw randread|read|randwrite] [--bs BYTES]
 *                    [--depth N] [--queues N] [--seconds S] [--flush-every N]
 *                    [--span BYTES]
 * Output (stdout): one line "iops=N mb_s=N p50_us=N p99_us=N errors=N".
 * Requests go to offsets in [0, span) (default: the whole disk), aligned to
 * the block size: random ones from a fixed-seed generator, sequential ones in
 * order, wrapping. --flush-every N sends a FLUSH after every N writes (on
 * each queue) and counts its time in the run.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define QSIZE 256u
#define MAXQ 16u
#define RING_AREA 65536u /* desc, avail, used, headers, status per queue */

enum { RANDREAD, SEQREAD, RANDWRITE };

typedef struct inflight {
        uint64_t t0;
        bool flush;
} inflight;

typedef struct queue {
        unsigned index;
        uint8_t *base; /* this queue's area in guest memory */
        uint64_t gpa;  /* its guest address */
        int kick, call;
        uint16_t avail_idx, last_used;
        inflight r[QSIZE / 3];
        uint64_t *lat; /* ns per completed request */
        size_t n_lat, cap_lat;
        uint64_t done, bytes, errors, writes_since_flush;
        uint64_t next_seq, rng;
        pthread_t thread;
} queue;

static int sock_fd;
static uint8_t *mem;
static size_t mem_len;
static int mem_fd;
static unsigned depth = 1, n_queues = 1, flush_every, rw = RANDREAD;
static uint32_t bs = 4096;
static double seconds = 5;
static uint64_t span, capacity;
static atomic_bool stop;
static queue qs[MAXQ];

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
        fprintf(stderr, "vhost-bench: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
        exit(1);
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void send_msg(uint32_t req, const void *payload, uint32_t len, const int *fds, int n_fds) {
        uint8_t buf[12 + 512];
        put32(buf, req);
        put32(buf + 4, 1);
        put32(buf + 8, len);
        memcpy(buf + 12, payload, len);
        struct iovec iov = { buf, 12 + len };
        union {
                char b[CMSG_SPACE(8 * sizeof(int))];
                struct cmsghdr a;
        } cm;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (n_fds) {
                mh.msg_control = cm.b;
                mh.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
                memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
        }
        if (sendmsg(sock_fd, &mh, MSG_NOSIGNAL) != (ssize_t)(12 + len))
                die("send");
}

static uint32_t recv_reply(uint32_t req, uint8_t *payload, uint32_t cap) {
        uint8_t h[12];
        if (recv(sock_fd, h, 12, MSG_WAITALL) != 12)
                die("the back-end closed the connection");
        uint32_t r, len;
        memcpy(&r, h, 4);
        memcpy(&len, h + 8, 4);
        if (r != req || len > cap || (len && recv(sock_fd, payload, len, MSG_WAITALL) != (ssize_t)len))
                die("bad reply");
        return len;
}

static uint64_t get_u64(uint32_t req) {
        send_msg(req, NULL, 0, NULL, 0);
        uint8_t p[8];
        if (recv_reply(req, p, 8) != 8)
                die("bad reply length");
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
}

static void set_u64(uint32_t req, uint64_t v) {
        uint8_t p[8];
        put64(p, v);
        send_msg(req, p, 8, NULL, 0);
}

static void set_state(uint32_t req, uint32_t idx, uint32_t num) {
        uint8_t p[8];
        put32(p, idx);
        put32(p + 4, num);
        send_msg(req, p, 8, NULL, 0);
}

/* Layout of a queue's area: desc table, avail ring, used ring, headers, status. */
#define DESC_OFF 0u
#define AVAIL_OFF 4096u
#define USED_OFF 8192u
#define HDR_OFF 12288u
#define STATUS_OFF 28672u

static uint64_t data_gpa(const queue *q, unsigned slot) {
        return (uint64_t)n_queues * RING_AREA + ((uint64_t)q->index * depth + slot) * bs;
}

static void put_desc(queue *q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        uint8_t *d = q->base + DESC_OFF + 16 * i;
        put64(d, addr);
        put32(d + 8, len);
        memcpy(d + 12, &flags, 2);
        memcpy(d + 14, &next, 2);
}

static uint64_t next_offset(queue *q) {
        uint64_t blocks = span / bs;
        if (rw == SEQREAD)
                return (q->next_seq++ % blocks) * bs;
        q->rng = q->rng * 6364136223846793005ull + 1442695040888963407ull;
        return ((q->rng >> 17) % blocks) * bs;
}

/* Put request slot on the ring (a read, a write, or a flush). */
static void submit(queue *q, unsigned slot) {
        bool flush = rw == RANDWRITE && flush_every && q->writes_since_flush >= flush_every;
        uint8_t *h = q->base + HDR_OFF + 16 * slot;
        uint32_t type = flush ? 4 : rw == RANDWRITE ? 1 : 0;
        put32(h, type);
        put32(h + 4, 0);
        put64(h + 8, flush ? 0 : next_offset(q) / 512);
        q->base[STATUS_OFF + slot] = 0xff;
        unsigned d0 = 3 * slot;
        put_desc(q, d0, q->gpa + HDR_OFF + 16 * slot, 16, 1, (uint16_t)(d0 + 1));
        if (flush)
                put_desc(q, d0 + 1, q->gpa + STATUS_OFF + slot, 1, 2, 0);
        else {
                put_desc(q, d0 + 1, data_gpa(q, slot), bs, (uint16_t)(1 | (rw == RANDWRITE ? 0 : 2)),
                         (uint16_t)(d0 + 2));
                put_desc(q, d0 + 2, q->gpa + STATUS_OFF + slot, 1, 2, 0);
        }
        q->writes_since_flush = flush ? 0 : q->writes_since_flush + (rw == RANDWRITE);
        q->r[slot] = (inflight){ now_ns(), flush };
        uint8_t *avail = q->base + AVAIL_OFF;
        uint16_t head = (uint16_t)d0;
        memcpy(avail + 4 + 2 * (q->avail_idx % QSIZE), &head, 2);
        __atomic_store_n((uint16_t *)(void *)(avail + 2), ++q->avail_idx, __ATOMIC_RELEASE);
}

static void kick(queue *q) {
        uint64_t one = 1;
        (void)!write(q->kick, &one, 8);
}

static void *queue_main(void *arg) {
        queue *q = arg;
        for (unsigned s = 0; s < depth; s++)
                submit(q, s);
        kick(q);
        uint8_t *used = q->base + USED_OFF;
        while (!atomic_load(&stop)) {
                uint16_t idx = __atomic_load_n((uint16_t *)(void *)(used + 2), __ATOMIC_ACQUIRE);
                if (idx == q->last_used) {
                        struct pollfd p = { .fd = q->call, .events = POLLIN };
                        if (poll(&p, 1, 100) > 0) {
                                uint64_t v;
                                (void)!read(q->call, &v, 8);
                        }
                        continue;
                }
                bool any = false;
                while (q->last_used != idx) {
                        uint8_t *e = used + 4 + 8 * (q->last_used % QSIZE);
                        uint32_t id;
                        memcpy(&id, e, 4);
                        q->last_used++;
                        unsigned slot = id / 3;
                        if (slot >= depth)
                                die("the back-end returned a head we did not give");
                        uint64_t t = now_ns() - q->r[slot].t0;
                        if (q->base[STATUS_OFF + slot] != 0)
                                q->errors++;
                        if (!q->r[slot].flush) {
                                q->done++;
                                q->bytes += bs;
                                if (q->n_lat == q->cap_lat) {
                                        q->cap_lat = q->cap_lat ? 2 * q->cap_lat : 65536;
                                        q->lat = realloc(q->lat, q->cap_lat * sizeof *q->lat);
                                        if (!q->lat)
                                                die("realloc");
                                }
                                q->lat[q->n_lat++] = t;
                        }
                        submit(q, slot);
                        any = true;
                }
                if (any)
                        kick(q);
        }
        return NULL;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
        if (argc < 2)
                die("usage: vhost-bench SOCK [--rw randread|read|randwrite] [--bs N] [--depth N] "
                    "[--queues N] [--seconds S] [--flush-every N] [--span BYTES]");
        const char *path = argv[1];
        for (int i = 2; i + 1 < argc; i += 2) {
                const char *o = argv[i], *v = argv[i + 1];
                if (!strcmp(o, "--rw"))
                        rw = !strcmp(v, "read") ? SEQREAD : !strcmp(v, "randwrite") ? RANDWRITE : RANDREAD;
                else if (!strcmp(o, "--bs"))
                        bs = (uint32_t)strtoul(v, NULL, 0);
                else if (!strcmp(o, "--depth"))
                        depth = (unsigned)atoi(v);
                else if (!strcmp(o, "--queues"))
                        n_queues = (unsigned)atoi(v);
                else if (!strcmp(o, "--seconds"))
                        seconds = atof(v);
                else if (!strcmp(o, "--flush-every"))
                        flush_every = (unsigned)atoi(v);
                else if (!strcmp(o, "--span"))
                        span = strtoull(v, NULL, 0);
                else
                        die("unknown option");
        }
        if (depth < 1 || depth > QSIZE / 3 || n_queues < 1 || n_queues > MAXQ || bs < 512 || bs % 512)
                die("depth 1..85, queues 1..16, bs a multiple of 512");
        errno = 0;
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
        /* One front-end at a time: the last run's session may still be
         * ending (then this one is closed at once): try again. */
        uint64_t features = 0;
        for (int tries = 0;; tries++) {
                sock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (connect(sock_fd, (struct sockaddr *)&a, sizeof a) < 0)
                        die(path);
                uint8_t h[12] = { 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 }, r[20];
                if (send(sock_fd, h, 12, MSG_NOSIGNAL) == 12 && recv(sock_fd, r, 20, MSG_WAITALL) == 20) {
                        memcpy(&features, r + 12, 8);
                        break;
                }
                close(sock_fd);
                if (tries == 50)
                        die("the back-end refuses every connection");
                usleep(100000);
        }
        mem_len = (size_t)n_queues * RING_AREA + (size_t)n_queues * depth * bs;
        mem_fd = memfd_create("guest", MFD_CLOEXEC);
        if (mem_fd < 0 || ftruncate(mem_fd, (off_t)mem_len) < 0)
                die("memfd");
        mem = mmap(NULL, mem_len, PROT_READ | PROT_WRITE, MAP_SHARED, mem_fd, 0);
        if (mem == MAP_FAILED)
                die("mmap");
        const uint64_t uva = (uint64_t)(uintptr_t)mem;

        uint64_t want = (1ull << 32) | (1ull << 30) | (1ull << 12) /* MQ */;
        set_u64(2, features & want);
        uint64_t proto = get_u64(15);
        set_u64(16, proto & ((1u << 0) | (1u << 9))); /* MQ, CONFIG */
        if (n_queues > 1 && (get_u64(17) < n_queues))
                die("the back-end offers fewer queues");
        uint8_t cfg[12 + 60] = { 0 };
        put32(cfg + 4, 60);
        send_msg(24, cfg, sizeof cfg, NULL, 0);
        recv_reply(24, cfg, sizeof cfg);
        memcpy(&capacity, cfg + 12, 8);
        capacity *= 512;
        if (!span || span > capacity)
                span = capacity;
        if (span < bs)
                die("the disk is smaller than a block");
        send_msg(3, NULL, 0, NULL, 0); /* SET_OWNER */
        uint8_t mt[8 + 32] = { 0 };
        put32(mt, 1);
        put64(mt + 8, 0);
        put64(mt + 16, mem_len);
        put64(mt + 24, uva);
        put64(mt + 32, 0);
        send_msg(5, mt, sizeof mt, &mem_fd, 1);
        for (unsigned i = 0; i < n_queues; i++) {
                queue *q = &qs[i];
                q->index = i;
                q->gpa = (uint64_t)i * RING_AREA;
                q->base = mem + q->gpa;
                q->rng = 0x9e3779b97f4a7c15ull * (i + 1);
                q->next_seq = (span / bs) * i / n_queues;
                q->kick = eventfd(0, EFD_CLOEXEC);
                q->call = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                set_state(8, i, QSIZE);
                set_state(10, i, 0);
                uint8_t ad[40];
                put32(ad, i);
                put32(ad + 4, 0);
                put64(ad + 8, uva + q->gpa + DESC_OFF);
                put64(ad + 16, uva + q->gpa + USED_OFF);
                put64(ad + 24, uva + q->gpa + AVAIL_OFF);
                put64(ad + 32, 0);
                send_msg(9, ad, sizeof ad, NULL, 0);
                uint8_t p[8];
                put64(p, i);
                send_msg(13, p, 8, &q->call, 1);
                send_msg(12, p, 8, &q->kick, 1);
                set_state(18, i, 1);
        }
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < n_queues; i++)
                if (pthread_create(&qs[i].thread, NULL, queue_main, &qs[i]) != 0)
                        die("pthread_create");
        struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
        nanosleep(&ts, NULL);
        atomic_store(&stop, true);
        for (unsigned i = 0; i < n_queues; i++)
                pthread_join(qs[i].thread, NULL);
        double el = (double)(now_ns() - t0) / 1e9;
        uint64_t done = 0, bytes = 0, errors = 0, n = 0;
        for (unsigned i = 0; i < n_queues; i++) {
                done += qs[i].done;
                bytes += qs[i].bytes;
                errors += qs[i].errors;
                n += qs[i].n_lat;
        }
        uint64_t *all = malloc((n ? n : 1) * sizeof *all);
        if (!all)
                die("malloc");
        size_t k = 0;
        for (unsigned i = 0; i < n_queues; i++) {
                memcpy(all + k, qs[i].lat, qs[i].n_lat * sizeof *all);
                k += qs[i].n_lat;
        }
        qsort(all, n, sizeof *all, cmp_u64);
        printf("iops=%.0f mb_s=%.1f p50_us=%.1f p99_us=%.1f errors=%llu\n", (double)done / el,
               (double)bytes / el / 1e6, n ? (double)all[n / 2] / 1e3 : 0.0,
               n ? (double)all[n * 99 / 100] / 1e3 : 0.0, (unsigned long long)errors);
        return errors ? 1 : 0;
}
