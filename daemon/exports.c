/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exports: every name in the store is one, looked up when a client asks, so
 * volumes created while the daemon runs appear without a restart. Open
 * handles are shared by the connections to the same name; a volume opened
 * here is writable (NBD_FLAG_CAN_MULTI_CONN holds: one handle, one delta,
 * so a flush on any connection covers the writes of all).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>

#include "serve.h"

struct export {
        char name[256];
        st_volume *v;
        unsigned users;
        export_stats st;
        struct export *next;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct export *list;
static unsigned n_open;

int export_get(st_store *s, const char *name, export **ret) {
        if (!st_name_valid(name))
                return -ENOENT;
        pthread_mutex_lock(&lock);
        for (struct export *e = list; e; e = e->next)
                if (strcmp(e->name, name) == 0) {
                        e->users++;
                        pthread_mutex_unlock(&lock);
                        *ret = e;
                        return 0;
                }
        struct export *e = calloc(1, sizeof *e);
        int r = e ? st_volume_open(s, name, 0, &e->v, NULL) : -ENOMEM;
        if (r < 0) {
                pthread_mutex_unlock(&lock);
                free(e);
                return r;
        }
        strncpy(e->name, name, sizeof e->name - 1);
        e->users = 1;
        e->next = list;
        list = e;
        n_open++;
        pthread_mutex_unlock(&lock);
        *ret = e;
        return 0;
}

void export_put(export *e) {
        pthread_mutex_lock(&lock);
        if (--e->users == 0) {
                for (struct export **p = &list; *p; p = &(*p)->next)
                        if (*p == e) {
                                *p = e->next;
                                break;
                        }
                n_open--;
                st_volume_close(e->v); /* flushes a volume */
                free(e);
        }
        pthread_mutex_unlock(&lock);
}

st_volume *export_volume(export *e) {
        return e->v;
}

unsigned exports_open(void) {
        pthread_mutex_lock(&lock);
        unsigned n = n_open;
        pthread_mutex_unlock(&lock);
        return n;
}

void exports_close_all(void) {
        pthread_mutex_lock(&lock);
        while (list) {
                struct export *e = list;
                list = e->next;
                st_volume_close(e->v);
                free(e);
        }
        n_open = 0;
        pthread_mutex_unlock(&lock);
}

/* Upper bounds of the latency buckets, in µs (the last is +Inf). */
const uint64_t export_lat_bounds_us[EXPORT_LAT_BUCKETS - 1] = { 50,   100,  250,   500,
                                                                1000, 2500, 10000, 100000 };

void export_account(export *e, unsigned op, uint64_t bytes, uint64_t ns) {
        export_stats *st = &e->st;
        atomic_fetch_add_explicit(&st->ops[op], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->bytes[op], bytes, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->ns_sum[op], ns, memory_order_relaxed);
        unsigned b = 0;
        while (b < EXPORT_LAT_BUCKETS - 1 && ns > export_lat_bounds_us[b] * 1000)
                b++;
        atomic_fetch_add_explicit(&st->lat[op][b], 1, memory_order_relaxed);
}

void export_account_error(export *e) {
        atomic_fetch_add_explicit(&e->st.errors, 1, memory_order_relaxed);
}

const char *export_name(const export *e) {
        return e->name;
}

void exports_visit(void (*fn)(void *ctx, const char *name, unsigned users, const export_stats *st),
                   void *ctx) {
        pthread_mutex_lock(&lock);
        for (struct export *e = list; e; e = e->next)
                fn(ctx, e->name, e->users, &e->st);
        pthread_mutex_unlock(&lock);
}
