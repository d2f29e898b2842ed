/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One vhost-user-blk front-end (a VMM) on one socket: its messages on this
 * thread, each queue served by a thread of its own. The memory table and
 * the rings change only under the device's lock taken exclusively; a queue
 * thread holds it shared while it drains its ring, so a table being
 * replaced is never in use.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../serve.h"
#include "blk.h"
#include "inflight.h"
#include "memory.h"
#include "msg.h"
#include "vhost.h"
#include "vring.h"

typedef struct device device;

typedef struct queue {
        device *dev;
        unsigned index;
        vhost_vring ring;
        int kick_fd, call_fd, err_fd;
        int stop_fd; /* eventfd: ends the thread */
        bool enabled, running, broken;
        inflight_queue track;    /* its inflight region, if the front-end gave one */
        uint16_t *again;         /* chains in flight at a restart, served first */
        unsigned n_again, next_again;
        pthread_t thread;
        vring_seg segs[VRING_MAX_SEGS];
} queue;

struct device {
        int fd;
        const char *peer;
        export *e;
        blk_dev blk;
        uint64_t features, protocol;
        bool features_set;
        pthread_rwlock_t lock;
        atomic_bool want_lock; /* the message thread waits for lock: stop polling */
        vhost_memory mem;
        vhost_inflight inflight;
        queue q[VHOST_MAX_QUEUES];
};

#define OFFERED_PROTOCOL                                                                      \
        (1ull << VHOST_USER_PROTOCOL_F_MQ | 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK |       \
         1ull << VHOST_USER_PROTOCOL_F_CONFIG | 1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE | \
         1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS |                                 \
         1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)

#define POLL_NS 50000u /* how long a queue looks for more work before it sleeps */

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void signal_fd(int fd) {
        uint64_t one = 1;
        if (fd >= 0)
                (void)!write(fd, &one, sizeof one);
}

/* Serve one chain (its segments in q->segs) and publish it; false for a
 * chain with no room for its status. */
static bool serve_chain(queue *q, uint16_t head, unsigned n) {
        device *d = q->dev;
        uint64_t t0 = now_ns();
        blk_result res;
        if (blk_execute(&d->blk, q->segs, n, &res) < 0)
                return false;
        inflight_before_push(&q->track, head);
        vring_push(&q->ring, head, res.written);
        inflight_after_push(&q->track, head, q->ring.used_idx);
        if (res.error)
                export_account_error(d->e);
        static const unsigned ops[] = { [BLK_OP_READ] = EXPORT_OP_READ,
                                        [BLK_OP_WRITE] = EXPORT_OP_WRITE,
                                        [BLK_OP_FLUSH] = EXPORT_OP_FLUSH,
                                        [BLK_OP_TRIM] = EXPORT_OP_TRIM,
                                        [BLK_OP_OTHER] = EXPORT_OP_OTHER };
        export_account(d->e, ops[res.op], res.bytes, now_ns() - t0);
        return true;
}

/* The next chain: one in flight at a restart first, then the available
 * ring's (marked in flight as it is taken). 1, 0 (none) or -EBADMSG. */
static int next_chain(queue *q, uint16_t *head, unsigned *n, const char **why) {
        device *d = q->dev;
        if (q->next_again < q->n_again) {
                *head = q->again[q->next_again++];
                int r = vring_chain(&q->ring, &d->mem, *head, q->segs, n, why);
                return r < 0 ? r : 1;
        }
        int k = vring_pop(&q->ring, &d->mem, head, q->segs, n, why);
        if (k == 1)
                inflight_begin(&q->track, *head);
        return k;
}

/* Serve what the ring holds, at most DRAIN_MAX chains (then *more is set,
 * so that the message thread can take the lock in between); false if the
 * ring is broken. */
#define DRAIN_MAX 256u
static bool drain(queue *q, bool *more) {
        device *d = q->dev;
        vhost_vring *r = &q->ring;
        if (vring_resolve(r, &d->mem, false) < 0) {
                serve_logf("vhost-user-blk %s (%s): queue %u: its rings lie outside guest memory",
                           export_name(d->e), d->peer, q->index);
                return false;
        }
        uint16_t old = r->used_idx;
        unsigned served = 0;
        *more = false;
        for (;;) {
                uint16_t head;
                unsigned n;
                const char *why = NULL;
                int k;
                while (served < DRAIN_MAX && (k = next_chain(q, &head, &n, &why)) == 1) {
                        served++;
                        if (!serve_chain(q, head, n)) {
                                why = "a request with no room for its status";
                                k = -EBADMSG;
                                break;
                        }
                        if ((uint16_t)(r->used_idx - old) >= 32 && vring_should_notify(r, old)) {
                                signal_fd(q->call_fd); /* a long batch: tell the driver as we go */
                                old = r->used_idx;
                        }
                }
                if (served == DRAIN_MAX) {
                        *more = true;
                        break;
                }
                if (k < 0) {
                        serve_logf("vhost-user-blk %s (%s): queue %u: %s: the queue stops",
                                   export_name(d->e), d->peer, q->index, why);
                        if (vring_should_notify(r, old))
                                signal_fd(q->call_fd);
                        signal_fd(q->err_fd);
                        return false;
                }
                vring_want_kick(r);
                if (!vring_has_avail(r))
                        break;
        }
        if (vring_should_notify(r, old))
                signal_fd(q->call_fd);
        return true;
}

static void *queue_main(void *arg) {
        queue *q = arg;
        device *d = q->dev;
        bool ok = true, more = true; /* first: what came before the kick fd did */
        while (ok) {
                if (!more) {
                        struct pollfd p[2] = { { .fd = q->kick_fd, .events = POLLIN },
                                               { .fd = q->stop_fd, .events = POLLIN } };
                        if (poll(p, 2, -1) < 0) {
                                if (errno == EINTR)
                                        continue;
                                break;
                        }
                        if (p[1].revents)
                                break;
                        uint64_t v;
                        if (p[0].revents & POLLIN)
                                (void)!read(q->kick_fd, &v, sizeof v);
                        else if (p[0].revents)
                                break; /* the kick fd went bad */
                } else {
                        struct pollfd p = { .fd = q->stop_fd, .events = POLLIN };
                        if (poll(&p, 1, 0) > 0)
                                break;
                }
                pthread_rwlock_rdlock(&d->lock);
                more = false;
                if (q->enabled)
                        ok = drain(q, &more);
                /* Adaptive polling, as QEMU's iothreads do: the next request
                 * often comes within microseconds, and waking from the kick
                 * fd costs more than looking for it a while. Not while the
                 * message thread waits for the lock. */
                for (uint64_t t0 = now_ns(); ok && !more && q->enabled &&
                                             !atomic_load(&d->want_lock) && now_ns() - t0 < POLL_NS;)
                        if (vring_has_avail(&q->ring)) {
                                ok = drain(q, &more);
                                t0 = now_ns();
                        }
                pthread_rwlock_unlock(&d->lock);
        }
        q->broken = !ok;
        return NULL;
}

/* Called with the device's lock held exclusively, or with no thread running. */
static void queue_stop(queue *q, pthread_rwlock_t *lock) {
        if (!q->running)
                return;
        signal_fd(q->stop_fd);
        if (lock)
                pthread_rwlock_unlock(lock); /* it may be waiting for the lock */
        pthread_join(q->thread, NULL);
        if (lock)
                pthread_rwlock_wrlock(lock);
        uint64_t v;
        (void)!read(q->stop_fd, &v, sizeof v);
        q->running = false;
}

/* A queue with an inflight region, starting: what was in flight when the
 * last back-end went is served again first, and new chains are taken after
 * every chain it had taken. */
static int queue_recover(queue *q) {
        device *d = q->dev;
        q->track = inflight_queue_of(&d->inflight, q->index, q->ring.num);
        free(q->again);
        q->again = NULL;
        q->n_again = q->next_again = 0;
        if (!q->track.region)
                return 0;
        q->again = malloc(sizeof *q->again * q->ring.num);
        if (!q->again)
                return -ENOMEM;
        q->n_again = inflight_recover(&q->track, q->ring.used_idx, q->again);
        q->ring.last_avail = (uint16_t)(q->ring.used_idx + q->n_again);
        if (q->n_again)
                serve_logf("vhost-user-blk %s (%s): queue %u: serving again %u request%s in flight "
                           "at the restart",
                           export_name(d->e), d->peer, q->index, q->n_again,
                           q->n_again == 1 ? "" : "s");
        return 0;
}

static int queue_start(queue *q) {
        if (q->running || q->kick_fd < 0 || q->ring.num == 0 || !q->ring.addr_set)
                return 0;
        q->ring.event_idx = (q->dev->features >> VIRTIO_F_RING_EVENT_IDX) & 1;
        if (vring_resolve(&q->ring, &q->dev->mem, true) < 0)
                return -EFAULT;
        int r = queue_recover(q);
        if (r < 0)
                return r;
        q->broken = false;
        if (pthread_create(&q->thread, NULL, queue_main, q) != 0)
                return -EAGAIN;
        q->running = true;
        return 0;
}

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void queues_reset(device *d) {
        for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
                queue *q = &d->q[i];
                queue_stop(q, &d->lock);
                close_fd(&q->kick_fd);
                close_fd(&q->call_fd);
                close_fd(&q->err_fd);
                q->ring = (vhost_vring){ 0 };
                q->enabled = true;
                q->track = (inflight_queue){ 0 };
                free(q->again);
                q->again = NULL;
                q->n_again = q->next_again = 0;
        }
}

/* ---- messages */

static int send_all(int fd, const void *buf, size_t len) {
        const uint8_t *p = buf;
        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -EPIPE;
                p += n;
                len -= (size_t)n;
        }
        return 0;
}

/* A reply, passing file descriptor fd with it unless fd is -1. */
static int reply_fd(device *d, const vhost_msg *m, const void *payload, uint32_t len, int fd) {
        uint8_t buf[VHOST_MSG_HEADER_LEN + VHOST_CONFIG_MAX + 16];
        le32_put(buf, m->request);
        le32_put(buf + 4, VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY);
        le32_put(buf + 8, len);
        memcpy(buf + VHOST_MSG_HEADER_LEN, payload, len);
        if (fd < 0)
                return send_all(d->fd, buf, VHOST_MSG_HEADER_LEN + len);
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } cm;
        memset(&cm, 0, sizeof cm);
        struct iovec iov = { buf, VHOST_MSG_HEADER_LEN + len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                             .msg_controllen = sizeof cm.buf };
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
        ssize_t n;
        do
                n = sendmsg(d->fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -EPIPE;
        /* the descriptor went with the first byte; the rest as bytes */
        return (size_t)n == iov.iov_len ? 0 : send_all(d->fd, buf + n, iov.iov_len - (size_t)n);
}

static int reply(device *d, const vhost_msg *m, const void *payload, uint32_t len) {
        return reply_fd(d, m, payload, len, -1);
}

static bool any_running(const device *d) {
        for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++)
                if (d->q[i].running)
                        return true;
        return false;
}

static int inflight_message(device *d, const vhost_msg *m, int *fds) {
        vhost_inflight_desc x = vhost_msg_inflight(m);
        if (any_running(d))
                return -EBUSY; /* a region in use is not replaced */
        if (m->request == VHOST_USER_SET_INFLIGHT_FD) {
                int r = inflight_map(&d->inflight, fds[0], x.mmap_size, x.mmap_offset,
                                     x.num_queues, x.queue_size);
                if (r == 0)
                        serve_logf("vhost-user-blk %s (%s): inflight buffer set (%u queue%s of %u)",
                                   export_name(d->e), d->peer, x.num_queues,
                                   x.num_queues == 1 ? "" : "s", x.queue_size);
                return r;
        }
        int fd;
        uint64_t size;
        int r = inflight_create(&d->inflight, x.num_queues, x.queue_size, &fd, &size);
        if (r < 0)
                return r;
        uint8_t p[VHOST_INFLIGHT_DESC_LEN];
        vhost_inflight_desc_put(p, &(vhost_inflight_desc){ .mmap_size = size,
                                                          .num_queues = x.num_queues,
                                                          .queue_size = x.queue_size });
        r = reply_fd(d, m, p, sizeof p, fd);
        close(fd);
        return r;
}

static int reply_u64(device *d, const vhost_msg *m, uint64_t v) {
        uint8_t p[8];
        le64_put(p, v);
        return reply(d, m, p, 8);
}

/* Read one message and its descriptors: 1, 0 at the end, <0 on error. */
static int read_msg(device *d, vhost_msg *m, int *fds, unsigned *n_fds) {
        uint8_t hdr[VHOST_MSG_HEADER_LEN];
        union {
                char buf[CMSG_SPACE(VHOST_MSG_MAX_FDS * sizeof(int))];
                struct cmsghdr align;
        } cm;
        struct iovec iov = { hdr, sizeof hdr };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                             .msg_controllen = sizeof cm.buf };
        *n_fds = 0;
        ssize_t n;
        do
                n = recvmsg(d->fd, &mh, MSG_CMSG_CLOEXEC | MSG_WAITALL);
        while (n < 0 && errno == EINTR);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < k; i++) {
                                int fd;
                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
                                if (*n_fds < VHOST_MSG_MAX_FDS)
                                        fds[(*n_fds)++] = fd;
                                else
                                        close(fd);
                        }
                }
        if (n == 0)
                return 0;
        if (n != (ssize_t)sizeof hdr || (mh.msg_flags & MSG_CTRUNC))
                return -EBADMSG;
        m->request = le32_get(hdr);
        m->flags = le32_get(hdr + 4);
        m->size = le32_get(hdr + 8);
        if (m->size > VHOST_MSG_MAX_PAYLOAD)
                return -EMSGSIZE;
        size_t got = 0;
        while (got < m->size) {
                n = recv(d->fd, m->payload + got, m->size - got, MSG_WAITALL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -EBADMSG;
                got += (size_t)n;
        }
        return 1;
}

static int set_vring_fd(device *d, const vhost_msg *m, int *fds, unsigned n_fds) {
        uint64_t v = vhost_msg_u64(m);
        queue *q = &d->q[v & VHOST_VRING_INDEX_MASK];
        int fd = n_fds ? fds[0] : -1;
        fds[0] = -1;
        if (m->request == VHOST_USER_SET_VRING_CALL) {
                int old = q->call_fd; /* the thread reads it: swap under the lock */
                q->call_fd = fd;
                close_fd(&old);
                return 0;
        }
        if (m->request == VHOST_USER_SET_VRING_ERR) {
                close_fd(&q->err_fd);
                q->err_fd = fd;
                return 0;
        }
        if (fd < 0)
                return -ENOTSUP; /* polling without a kick fd: not offered */
        queue_stop(q, &d->lock);
        close_fd(&q->kick_fd);
        q->kick_fd = fd;
        return queue_start(q);
}

/* Handle one message (with the lock held exclusively); <0 ends the session. */
static int handle(device *d, vhost_msg *m, int *fds, unsigned n_fds) {
        uint32_t idx, num;
        switch (m->request) {
        case VHOST_USER_GET_FEATURES:
                return reply_u64(d, m, blk_features(&d->blk) | 1ull << VHOST_USER_F_PROTOCOL_FEATURES);
        case VHOST_USER_SET_FEATURES: {
                uint64_t f = vhost_msg_u64(m);
                if (f & ~(blk_features(&d->blk) | 1ull << VHOST_USER_F_PROTOCOL_FEATURES))
                        return -ENOTSUP;
                d->features = f;
                d->features_set = true;
                for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++)
                        d->q[i].ring.event_idx = (f >> VIRTIO_F_RING_EVENT_IDX) & 1;
                return 0;
        }
        case VHOST_USER_GET_PROTOCOL_FEATURES:
                return reply_u64(d, m, OFFERED_PROTOCOL);
        case VHOST_USER_SET_PROTOCOL_FEATURES:
                if (vhost_msg_u64(m) & ~OFFERED_PROTOCOL)
                        return -ENOTSUP;
                d->protocol = vhost_msg_u64(m);
                return 0;
        case VHOST_USER_GET_QUEUE_NUM:
                return reply_u64(d, m, d->blk.n_queues);
        case VHOST_USER_GET_MAX_MEM_SLOTS:
                return reply_u64(d, m, VHOST_MAX_MEM_SLOTS);
        case VHOST_USER_SET_OWNER:
                return 0;
        case VHOST_USER_RESET_OWNER:
        case VHOST_USER_RESET_DEVICE:
                queues_reset(d);
                d->features = 0;
                d->features_set = false;
                return 0;
        case VHOST_USER_SET_MEM_TABLE: {
                vhost_memory_clear(&d->mem);
                int r = 0;
                for (unsigned i = 0; r == 0 && i < vhost_msg_n_regions(m); i++) {
                        vhost_region x = vhost_msg_region(m, i);
                        r = vhost_memory_add(&d->mem, &x, fds[i]);
                }
                if (r < 0)
                        vhost_memory_clear(&d->mem);
                return r;
        }
        case VHOST_USER_ADD_MEM_REG: {
                vhost_region x = vhost_msg_one_region(m);
                return vhost_memory_add(&d->mem, &x, fds[0]);
        }
        case VHOST_USER_REM_MEM_REG: {
                vhost_region x = vhost_msg_one_region(m);
                return vhost_memory_remove(&d->mem, &x);
        }
        case VHOST_USER_SET_VRING_NUM:
                vhost_msg_state(m, &idx, &num);
                if (num == 0 || num > VHOST_MAX_QUEUE_SIZE || d->q[idx].running)
                        return -EINVAL;
                d->q[idx].ring.num = num;
                return 0;
        case VHOST_USER_SET_VRING_BASE:
                vhost_msg_state(m, &idx, &num);
                if (d->q[idx].running || num > 0xffff)
                        return -EINVAL;
                d->q[idx].ring.last_avail = (uint16_t)num;
                return 0;
        case VHOST_USER_SET_VRING_ADDR: {
                vhost_vring_addr a = vhost_msg_vring_addr(m);
                queue *q = &d->q[a.index];
                if (q->running)
                        return -EINVAL;
                q->ring.desc_uva = a.desc;
                q->ring.avail_uva = a.avail;
                q->ring.used_uva = a.used;
                q->ring.addr_set = true;
                return 0;
        }
        case VHOST_USER_GET_VRING_BASE: {
                vhost_msg_state(m, &idx, &num);
                queue *q = &d->q[idx];
                queue_stop(q, &d->lock);
                close_fd(&q->kick_fd);
                uint8_t p[8];
                le32_put(p, idx);
                le32_put(p + 4, q->ring.last_avail);
                return reply(d, m, p, 8);
        }
        case VHOST_USER_SET_VRING_KICK:
        case VHOST_USER_SET_VRING_CALL:
        case VHOST_USER_SET_VRING_ERR:
                return set_vring_fd(d, m, fds, n_fds);
        case VHOST_USER_SET_VRING_ENABLE:
                vhost_msg_state(m, &idx, &num);
                d->q[idx].enabled = num != 0;
                if (num)
                        signal_fd(d->q[idx].kick_fd); /* what was queued while disabled */
                return 0;
        case VHOST_USER_GET_CONFIG: {
                uint32_t off, size, flags;
                vhost_msg_config(m, &off, &size, &flags);
                uint8_t cfg[VHOST_CONFIG_MAX] = { 0 }, out[12 + VHOST_CONFIG_MAX];
                blk_config(&d->blk, cfg);
                memcpy(out, m->payload, 12);
                memcpy(out + 12, cfg + off, size);
                return reply(d, m, out, 12 + size);
        }
        case VHOST_USER_SET_CONFIG:
                return -ENOTSUP; /* nothing writable (no writeback toggle) */
        case VHOST_USER_GET_INFLIGHT_FD:
        case VHOST_USER_SET_INFLIGHT_FD:
                return inflight_message(d, m, fds);
        default:
                return -ENOTSUP;
        }
}

static bool replies_itself(uint32_t request) {
        switch (request) {
        case VHOST_USER_GET_FEATURES:
        case VHOST_USER_GET_PROTOCOL_FEATURES:
        case VHOST_USER_GET_QUEUE_NUM:
        case VHOST_USER_GET_MAX_MEM_SLOTS:
        case VHOST_USER_GET_VRING_BASE:
        case VHOST_USER_GET_CONFIG:
        case VHOST_USER_GET_INFLIGHT_FD:
                return true;
        default:
                return false;
        }
}

void vhost_blk_run(const vhost_ctx *c, int fd) {
        device *d = calloc(1, sizeof *d);
        if (!d)
                return;
        d->fd = fd;
        d->peer = c->peer;
        /* Writers first: a queue thread under a steady load would otherwise
         * hold the lock shared for ever, and the VMM's messages wait. */
        pthread_rwlockattr_t la;
        pthread_rwlockattr_init(&la);
        pthread_rwlockattr_setkind_np(&la, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&d->lock, &la);
        pthread_rwlockattr_destroy(&la);
        for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++) {
                queue *q = &d->q[i];
                q->dev = d;
                q->index = i;
                q->kick_fd = q->call_fd = q->err_fd = -1;
                q->enabled = true;
                q->stop_fd = eventfd(0, EFD_CLOEXEC);
        }
        int r = export_get(c->s, c->name, &d->e);
        if (r < 0) {
                serve_logf("vhost-user-blk %s (%s): cannot open it: %s", c->name, c->peer,
                           strerror(-r));
                goto out;
        }
        st_volume *v = export_volume(d->e);
        d->blk = (blk_dev){ .v = v, .ro = !st_volume_writable(v) || c->readonly,
                            .n_queues = c->queues ? c->queues : 1 };
        snprintf(d->blk.serial, sizeof d->blk.serial, "%s", c->name);
        serve_logf("vhost-user-blk %s: %s attached (%s, %u queue%s)", c->name, c->peer,
                   d->blk.ro ? "read-only" : "read-write", d->blk.n_queues,
                   d->blk.n_queues == 1 ? "" : "s");
        vhost_msg *m = malloc(sizeof *m);
        while (m && !*c->stopping) {
                int fds[VHOST_MSG_MAX_FDS];
                unsigned n_fds = 0;
                r = read_msg(d, m, fds, &n_fds);
                if (r <= 0) {
                        for (unsigned i = 0; i < n_fds; i++)
                                close(fds[i]);
                        if (r < 0)
                                serve_logf("vhost-user-blk %s (%s): bad message: %s", c->name,
                                           c->peer, strerror(-r));
                        break;
                }
                const char *why = NULL;
                r = vhost_msg_check(m, n_fds, &why);
                if (r == 0) {
                        atomic_store(&d->want_lock, true);
                        pthread_rwlock_wrlock(&d->lock);
                        r = handle(d, m, fds, n_fds);
                        pthread_rwlock_unlock(&d->lock);
                        atomic_store(&d->want_lock, false);
                        if (r < 0)
                                why = strerror(-r);
                }
                /* What was not taken (a ring's kick or call fd is); a
                 * region's mapping holds its memory without the fd. */
                for (unsigned i = 0; i < n_fds; i++)
                        if (fds[i] >= 0)
                                close(fds[i]);
                if (r < 0)
                        serve_logf("vhost-user-blk %s (%s): request %u refused: %s", c->name,
                                   c->peer, m->request, why ? why : "");
                bool ack = (m->flags & VHOST_USER_FLAG_NEED_REPLY) &&
                           (d->protocol >> VHOST_USER_PROTOCOL_F_REPLY_ACK & 1) &&
                           !replies_itself(m->request);
                if (ack && reply_u64(d, m, r < 0 ? 1 : 0) < 0)
                        break;
                /* A malformed message, or one that asks a reply we cannot
                 * give: the session cannot go on in step. */
                if (r == -EBADMSG || (r < 0 && replies_itself(m->request)))
                        break;
        }
        free(m);
        atomic_store(&d->want_lock, true);
        pthread_rwlock_wrlock(&d->lock);
        queues_reset(d);
        pthread_rwlock_unlock(&d->lock);
        serve_logf("vhost-user-blk %s: %s detached", c->name, c->peer);
out:
        vhost_memory_clear(&d->mem);
        inflight_clear(&d->inflight);
        for (unsigned i = 0; i < VHOST_MAX_QUEUES; i++)
                close_fd(&d->q[i].stop_fd);
        if (d->e)
                export_put(d->e);
        pthread_rwlock_destroy(&d->lock);
        free(d);
}
