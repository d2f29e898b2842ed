/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The volumes open for writing through one store handle: so that a second
 * writer of a volume in this process is refused, rm refuses an open volume,
 * and commit and fsck of a name reach the handle that has its unflushed
 * writes. (Other processes are kept out by each volume's lock file.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "store-internal.h"

typedef struct open_volume {
        char name[REF_NAME_MAX + 1];
        void *owner;
        unsigned pins;
        struct open_volume *next;
} open_volume;

/* Call with volumes_lock held. */
static open_volume **find(st_store *s, const char *name) {
        open_volume **p = &s->volumes;
        while (*p && strcmp((*p)->name, name) != 0)
                p = &(*p)->next;
        return p;
}

int store_volume_attach(st_store *s, const char *name, void *owner) {
        if (strlen(name) > REF_NAME_MAX)
                return -EINVAL;
        open_volume *o = calloc(1, sizeof *o);
        if (!o)
                return -ENOMEM;
        strcpy(o->name, name);
        o->owner = owner;
        pthread_mutex_lock(&s->volumes_lock);
        int r = *find(s, name) ? -EBUSY : 0;
        if (r == 0) {
                o->next = s->volumes;
                s->volumes = o;
                o = NULL;
        }
        pthread_mutex_unlock(&s->volumes_lock);
        free(o);
        return r;
}

void store_volume_detach(st_store *s, const char *name) {
        pthread_mutex_lock(&s->volumes_lock);
        open_volume **p;
        while ((p = find(s, name)), *p && (*p)->pins > 0)
                pthread_cond_wait(&s->volumes_cv, &s->volumes_lock);
        open_volume *o = *p;
        if (o)
                *p = o->next;
        pthread_mutex_unlock(&s->volumes_lock);
        free(o);
}

bool store_volume_is_open(st_store *s, const char *name) {
        pthread_mutex_lock(&s->volumes_lock);
        bool open = *find(s, name) != NULL;
        pthread_mutex_unlock(&s->volumes_lock);
        return open;
}

void *store_volume_pin(st_store *s, const char *name) {
        pthread_mutex_lock(&s->volumes_lock);
        open_volume *o = *find(s, name);
        if (o)
                o->pins++;
        pthread_mutex_unlock(&s->volumes_lock);
        return o ? o->owner : NULL;
}

void store_volume_unpin(st_store *s, const char *name) {
        pthread_mutex_lock(&s->volumes_lock);
        open_volume *o = *find(s, name);
        if (o && o->pins > 0 && --o->pins == 0)
                pthread_cond_broadcast(&s->volumes_cv);
        pthread_mutex_unlock(&s->volumes_lock);
}
