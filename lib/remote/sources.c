/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cold tier of lazily pulled images: a read of a chunk the store lacks
 * fetches its blob from the sources recorded in DIR/sources/NAME, verifies
 * it and keeps it in the store. Concurrent reads of one missing chunk wait
 * for a single fetch.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/remote.h>

#include "../store/store-api.h"
#include "../util/cleanup.h"
#include "../util/fs.h"
#include "blob.h"
#include "chain.h"
#include "target.h"

#define INFLIGHT_MAX 1024
#define BACKGROUND_BATCH 512

typedef struct fetcher {
        target **targets;
        size_t n;
        /* background fetch of the rest of the lazily pulled images */
        st_store *s;
        char **names;
        size_t n_names;
        pthread_t bg;
        bool bg_started;
        atomic_bool stop;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        st_digest inflight[INFLIGHT_MAX];
        size_t n_inflight;
} fetcher;

/* sources/NAME is written by st_write_atomic through ".NAME.tmp": every
 * temp name starts with '.', which st_name_valid never accepts, so that is
 * all to skip (an image may well be called "x.tmp"). */
static bool is_source_name(const char *name) {
        return name[0] != '.';
}

static void fetcher_free(void *ctx) {
        fetcher *f = ctx;
        if (f->bg_started) {
                atomic_store(&f->stop, true);
                pthread_join(f->bg, NULL);
        }
        st_names_free(f->names, f->n_names);
        for (size_t i = 0; i < f->n; i++)
                target_close(f->targets[i]);
        free(f->targets);
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
}

static ssize_t inflight_find(const fetcher *f, const st_digest *id) {
        for (size_t i = 0; i < f->n_inflight; i++)
                if (!memcmp(f->inflight[i].b, id->b, ST_DIGEST_LEN))
                        return (ssize_t)i;
        return -1;
}

/* Fetch, verify and keep one chunk. */
static int fetch_one(fetcher *f, st_store *s, const st_digest *id) {
        char key[80];
        blob_key(id, key, sizeof key);
        int r = -ENOENT;
        for (size_t i = 0; i < f->n; i++) {
                uint8_t *blob = NULL, *raw = NULL;
                size_t len = 0, cap = 0;
                r = target_get(f->targets[i], key, blob_max_len(), &blob, &len, NULL);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        break;
                const char *why;
                int64_t n = blob_verify(id, blob, len, &raw, &cap, NULL, &why);
                chunk_batch one = { 0 };
                r = n < 0 ? (int)n : chunk_batch_add(&one, id, blob, len, raw, (size_t)n);
                if (r == 0)
                        r = chunk_batch_flush(&one, s, NULL);
                if (r == 0)
                        store_note_remote(s, 1);
                chunk_batch_free(&one);
                free(blob);
                free(raw);
                if (r == 0 || r != -EBADMSG)
                        break; /* a bad blob: another source may have a good one */
        }
        return r;
}

static int fetch(void *ctx, st_store *s, const st_digest *id) {
        fetcher *f = ctx;
        pthread_mutex_lock(&f->mu);
        if (inflight_find(f, id) >= 0) {
                while (inflight_find(f, id) >= 0)
                        pthread_cond_wait(&f->cv, &f->mu);
                pthread_mutex_unlock(&f->mu);
                return 0; /* the reader re-reads: there, or -ENOENT */
        }
        while (f->n_inflight == INFLIGHT_MAX)
                pthread_cond_wait(&f->cv, &f->mu);
        f->inflight[f->n_inflight++] = *id;
        pthread_mutex_unlock(&f->mu);
        int r = fetch_one(f, s, id);
        pthread_mutex_lock(&f->mu);
        ssize_t i = inflight_find(f, id);
        f->inflight[i] = f->inflight[--f->n_inflight];
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        return r;
}

/* Read-ahead and background fetch: ids (those nobody is fetching yet) in
 * parallel from the first source. Each chunk is verified and kept as it
 * arrives, and its waiting readers woken then, not at the end of the batch. */
typedef struct batch {
        fetcher *f;
        st_store *s;
        const st_digest *ids;
        bool *done;
        size_t n, next;
        uint8_t *raw;
        size_t raw_cap;
        chunk_batch one;
} batch;

static void release(fetcher *f, const st_digest *id) {
        pthread_mutex_lock(&f->mu);
        ssize_t at = inflight_find(f, id);
        if (at >= 0)
                f->inflight[at] = f->inflight[--f->n_inflight];
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
}

static int batch_next(void *ctx, target_req *q) {
        batch *b = ctx;
        if (b->next >= b->n)
                return 0;
        target_req_blob(q, &b->ids[b->next++]);
        return 1;
}

static int batch_done(void *ctx, target_req *q) {
        batch *b = ctx;
        const st_digest *id = q->user;
        const char *why;
        /* best effort: a chunk that fails here is fetched again by its reader */
        int64_t n = q->err < 0 ? q->err
                               : blob_verify(id, q->data, q->len, &b->raw, &b->raw_cap, NULL, &why);
        if (n >= 0 && chunk_batch_add(&b->one, id, q->data, q->len, b->raw, (size_t)n) == 0 &&
            chunk_batch_flush(&b->one, b->s, NULL) == 0)
                store_note_remote(b->s, 1);
        b->done[id - b->ids] = true;
        release(b->f, id);
        return 0;
}

static void fetch_many(void *ctx, st_store *s, const st_digest *ids, size_t n) {
        fetcher *f = ctx;
        st_digest mine[BACKGROUND_BATCH];
        bool done[BACKGROUND_BATCH] = { false };
        size_t k = 0;
        pthread_mutex_lock(&f->mu);
        for (size_t i = 0; i < n && k < BACKGROUND_BATCH && f->n_inflight < INFLIGHT_MAX; i++)
                if (inflight_find(f, &ids[i]) < 0) {
                        f->inflight[f->n_inflight++] = ids[i];
                        mine[k++] = ids[i];
                }
        pthread_mutex_unlock(&f->mu);
        if (k == 0)
                return;
        batch b = { .f = f, .s = s, .ids = mine, .done = done, .n = k };
        target_io io = { batch_next, batch_done, &b };
        (void)target_run(f->targets[0], &io, NULL);
        chunk_batch_free(&b.one);
        free(b.raw);
        for (size_t i = 0; i < k; i++) /* those the run never finished */
                if (!done[i])
                        release(f, &mine[i]);
}

/* The daemon's background fetch: every chunk of the lazily pulled images
 * that the store still lacks, in the order of their extents, in batches
 * (readers still come first: a chunk a reader needs that is not in a batch
 * in flight is fetched at once, by the reader). */
static void *background_main(void *arg) {
        fetcher *f = arg;
        st_digest *batch_ids = malloc(BACKGROUND_BATCH * sizeof *batch_ids);
        for (size_t i = 0; batch_ids && i < f->n_names && !atomic_load(&f->stop); i++) {
                layer_chain c = { 0 };
                if (chain_load_local(f->s, f->names[i], &c, NULL) < 0)
                        continue;
                size_t k = 0;
                for (size_t l = 0; l < c.n && !atomic_load(&f->stop); l++)
                        for (size_t e = 0; e < c.layers[l]->n && !atomic_load(&f->stop); e++) {
                                const manifest_extent *x = &c.layers[l]->ext[e];
                                if (manifest_hash_is_hole(&x->hash))
                                        continue;
                                if (store_chunk_lookup(f->s, &x->hash, NULL, NULL) == 0)
                                        continue;
                                batch_ids[k++] = x->hash;
                                if (k == BACKGROUND_BATCH) {
                                        fetch_many(f, f->s, batch_ids, k);
                                        k = 0;
                                }
                        }
                if (k && !atomic_load(&f->stop))
                        fetch_many(f, f->s, batch_ids, k);
                chain_free(&c);
        }
        free(batch_ids);
        return NULL;
}

int st_store_attach_sources(st_store *s, const st_transfer_opts *o) {
        _cleanup_close_ int fd =
                openat(store_dir_fd(s), "sources", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        char **names = NULL;
        size_t n = 0;
        int r = st_list_dir(fd, is_source_name, &names, &n);
        if (r < 0)
                return r;
        fetcher *f = calloc(1, sizeof *f);
        if (!f || !(f->targets = calloc(n ? n : 1, sizeof *f->targets))) {
                free(f);
                st_names_free(names, n);
                return -ENOMEM;
        }
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        st_transfer_opts to = o ? *o : (st_transfer_opts){ 0 };
        /* to.parallel 0: the engine's default, ramping up from 64 in flight */
        for (size_t i = 0; i < n; i++) {
                uint8_t *buf;
                size_t len;
                if (st_read_file(fd, names[i], 4096, &buf, &len) < 0)
                        continue;
                char url[4100];
                snprintf(url, sizeof url, "%.*s", (int)len, (const char *)buf);
                free(buf);
                url[strcspn(url, "\r\n")] = 0;
                /* one target per distinct URL */
                bool dup = false;
                for (size_t k = 0; k < f->n; k++) {
                        char have[4100];
                        target_url(f->targets[k], "", have, sizeof have);
                        char want[4200];
                        snprintf(want, sizeof want, "%s/", url);
                        dup |= !strcmp(have, want) || !strcmp(have, url);
                }
                target *t;
                if (!dup && target_open(url, &to, &t, NULL) == 0)
                        f->targets[f->n++] = t;
        }
        if (f->n == 0) {
                st_names_free(names, n);
                fetcher_free(f);
                return 0;
        }
        f->s = s;
        f->names = names;
        f->n_names = n;
        if (o && o->background)
                f->bg_started = pthread_create(&f->bg, NULL, background_main, f) == 0;
        static const store_remote_ops ops = { fetch, fetch_many, fetcher_free };
        store_set_remote(s, &ops, f);
        return (int)f->n;
}
