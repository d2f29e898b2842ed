/* SPDX-License-Identifier: Apache-2.0 */
/* Worker pool for parallel loops (hashing, compression); see pool.h. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool.h"

struct st_pool {
        /* One loop at a time: callers from several threads (commands the
         * daemon runs side by side) take turns. */
        pthread_mutex_t call_lock;
        pthread_mutex_t lock;
        pthread_cond_t wake, done;
        unsigned n_threads; /* including the caller */
        pthread_t *threads;
        unsigned n_started;
        /* The current loop. */
        unsigned long long generation;
        st_pool_fn fn;
        void *ctx;
        size_t n;
        atomic_size_t next;
        unsigned active;
        bool quit;
};

static void pool_drain(st_pool *p, unsigned worker) {
        for (;;) {
                size_t i = atomic_fetch_add(&p->next, 1);
                if (i >= p->n)
                        break;
                p->fn(p->ctx, i, worker);
        }
}

struct worker_arg {
        st_pool *p;
        unsigned id;
};

static void *pool_main(void *arg) {
        st_pool *p = ((struct worker_arg *)arg)->p;
        unsigned id = ((struct worker_arg *)arg)->id;
        free(arg);
        unsigned long long seen = 0;
        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (!p->quit && p->generation == seen)
                        pthread_cond_wait(&p->wake, &p->lock);
                if (p->quit)
                        break;
                seen = p->generation;
                pthread_mutex_unlock(&p->lock);
                pool_drain(p, id);
                pthread_mutex_lock(&p->lock);
                if (--p->active == 0)
                        pthread_cond_signal(&p->done);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
}

st_pool *st_pool_new(unsigned n_threads) {
        if (n_threads == 0) {
                long c = sysconf(_SC_NPROCESSORS_ONLN);
                n_threads = c > 0 ? (unsigned)c : 1;
        }
        if (n_threads > 64)
                n_threads = 64;
        st_pool *p = calloc(1, sizeof *p);
        if (!p)
                return NULL;
        pthread_mutex_init(&p->call_lock, NULL);
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->wake, NULL);
        pthread_cond_init(&p->done, NULL);
        p->n_threads = n_threads;
        p->threads = calloc(n_threads, sizeof(pthread_t));
        if (!p->threads)
                return st_pool_free(p);
        for (unsigned i = 1; i < n_threads; i++) {
                struct worker_arg *a = malloc(sizeof *a);
                if (!a)
                        break;
                *a = (struct worker_arg){ p, i };
                if (pthread_create(&p->threads[p->n_started], NULL, pool_main, a) != 0) {
                        free(a);
                        break;
                }
                p->n_started++;
        }
        p->n_threads = p->n_started + 1;
        return p;
}

st_pool *st_pool_free(st_pool *p) {
        if (!p)
                return NULL;
        pthread_mutex_lock(&p->lock);
        p->quit = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (unsigned i = 0; i < p->n_started; i++)
                pthread_join(p->threads[i], NULL);
        free(p->threads);
        pthread_mutex_destroy(&p->call_lock);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->wake);
        pthread_cond_destroy(&p->done);
        free(p);
        return NULL;
}

unsigned st_pool_size(const st_pool *p) {
        return p->n_threads;
}

void st_pool_for(st_pool *p, size_t n, st_pool_fn fn, void *ctx) {
        if (n == 0)
                return;
        if (n == 1 || p->n_started == 0) {
                for (size_t i = 0; i < n; i++)
                        fn(ctx, i, 0);
                return;
        }
        pthread_mutex_lock(&p->call_lock);
        pthread_mutex_lock(&p->lock);
        p->fn = fn;
        p->ctx = ctx;
        p->n = n;
        atomic_store(&p->next, 0);
        p->active = p->n_started;
        p->generation++;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);

        pool_drain(p, 0);

        pthread_mutex_lock(&p->lock);
        while (p->active > 0)
                pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_unlock(&p->call_lock);
}
