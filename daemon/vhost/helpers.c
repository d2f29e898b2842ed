/* SPDX-License-Identifier: Apache-2.0 */
/* Helper threads for large reads; see helpers.h. */
#include <pthread.h>
#include <unistd.h>

#include "helpers.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER, done = PTHREAD_COND_INITIALIZER;
static read_part *head, *tail; /* parts waiting for a thread */
static unsigned n_helpers;

/* Read the part: its writable bytes from skip on, len of them. */
static void run(read_part *p) {
        uint64_t skip = p->skip, left = p->len, off = p->off;
        p->result = 0;
        for (unsigned i = 0; i < p->n && left > 0; i++) {
                const vring_seg *s = &p->segs[i];
                if (!s->write)
                        continue;
                if (skip >= s->len) {
                        skip -= s->len;
                        continue;
                }
                uint64_t n = s->len - skip;
                if (n > left)
                        n = left;
                int r = st_volume_read(p->v, s->p + skip, n, off);
                if (r < 0) {
                        p->result = r;
                        return;
                }
                skip = 0;
                off += n;
                left -= n;
        }
}

/* The next waiting part, taken (with the lock held), or NULL. */
static read_part *take(void) {
        read_part *p = head;
        if (p) {
                head = p->next;
                if (!head)
                        tail = NULL;
                p->taken = true;
        }
        return p;
}

static void finish(read_part *p) {
        pthread_mutex_lock(&lock);
        p->done = true;
        pthread_cond_broadcast(&done);
        pthread_mutex_unlock(&lock);
}

static void *helper_main(void *arg) {
        (void)arg;
        for (;;) {
                pthread_mutex_lock(&lock);
                read_part *p;
                while (!(p = take()))
                        pthread_cond_wait(&work, &lock);
                pthread_mutex_unlock(&lock);
                run(p);
                finish(p);
        }
        return NULL;
}

static void start(void) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned want = cores > 1 ? (unsigned)cores - 1 : 0;
        if (want > HELPERS_MAX_PARTS - 1)
                want = HELPERS_MAX_PARTS - 1;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 256 * 1024);
        for (unsigned i = 0; i < want; i++) {
                pthread_t t;
                if (pthread_create(&t, &attr, helper_main, NULL) == 0)
                        n_helpers++;
        }
        pthread_attr_destroy(&attr);
}

unsigned helpers_count(void) {
        pthread_once(&once, start);
        return n_helpers;
}

void helpers_read(read_part *parts, unsigned n) {
        if (n <= 1) { /* (no lock for the common small read) */
                if (n)
                        run(&parts[0]);
                return;
        }
        pthread_mutex_lock(&lock);
        for (unsigned i = 1; i < n; i++) {
                parts[i].next = NULL;
                parts[i].taken = parts[i].done = false;
                if (tail)
                        tail->next = &parts[i];
                else
                        head = &parts[i];
                tail = &parts[i];
        }
        pthread_cond_broadcast(&work);
        pthread_mutex_unlock(&lock);
        run(&parts[0]);
        pthread_mutex_lock(&lock);
        for (unsigned i = 1; i < n; i++) {
                if (!parts[i].taken) { /* still waiting: ours to do */
                        read_part **pp = &head, *prev = NULL;
                        while (*pp != &parts[i]) {
                                prev = *pp;
                                pp = &(*pp)->next;
                        }
                        *pp = parts[i].next;
                        if (tail == &parts[i])
                                tail = prev;
                        parts[i].taken = true;
                        pthread_mutex_unlock(&lock);
                        run(&parts[i]);
                        pthread_mutex_lock(&lock);
                        parts[i].done = true;
                }
                while (!parts[i].done)
                        pthread_cond_wait(&done, &lock);
        }
        pthread_mutex_unlock(&lock);
}
