/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Garbage collection. The mark recounts every chunk's references from the
 * manifests that the refs reach, never trusting the stored counts (a stale
 * index put back, or refs copied in from another store, would make them
 * wrong); while any ref or manifest cannot be read gc refuses and frees
 * nothing. Every record it keeps is read back and verified before its pack
 * is dropped, so a damaged record stops gc instead of losing the copy that
 * was still good elsewhere. Every pack holding dead bytes (freed chunks,
 * duplicates left by a crash, torn tails), a frame with a dead chunk or one
 * made below the cold level, or records whose compression was deferred, is
 * compacted: its live records are copied into new packs (gc-copy.c); the
 * new packs are fsynced; the index is written without the old packs; only
 * then are the old packs unlinked. A crash at any point leaves either the
 * old packs (still listed) or both; recovery drops whichever pack holds only
 * duplicates. gc never frees a chunk a manifest refers to.
 *
 * Readers are not held up by the copy, the long part (it compresses):
 *   plan   under the store's lock: the mark, and a copy of the live entries
 *   look   no lock: which frames and records need compressing (their heads)
 *   copy   no lock: the live records of the dropped packs into new ones,
 *          moving the entries' copies; readers read the old packs meanwhile
 *   apply  under the lock: the moves into the index, the old packs out of
 *          the table, the index written; then the old packs unlinked.
 * The write mutex is held throughout, so nothing but a lazy pull's fetches
 * changes the index meanwhile: those add entries (kept, and a dropped pack
 * they landed in is kept too) and never move one. The copy runs at idle
 * CPU priority (SCHED_IDLE), on one thread.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "gc-copy.h"
#include "store-internal.h"

static int cmp_live(const void *a, const void *b) {
        const gc_live *x = a, *y = b;
        if (x->e.pack != y->e.pack)
                return x->e.pack < y->e.pack ? -1 : 1;
        return x->e.off < y->e.off ? -1 : x->e.off > y->e.off;
}

/* Set every count from the manifests; refuse (restoring the old counts)
 * when a ref or manifest cannot be read. */
static int gc_mark(st_store *s, st_gc_result *res, st_diag *reterr) {
        uint32_t n = index_count(s->idx);
        _cleanup_free_ uint32_t *old = malloc((n ? n : 1) * sizeof *old);
        void *live = store_live_new();
        if (!old || !live) {
                store_live_free(live);
                return -ENOMEM;
        }
        for (uint32_t id = 0; id < n; id++)
                old[id] = index_get(s->idx, id)->refs;
        int r = store_mark(s, true, live, reterr);
        store_live_free(live);
        if (r != 0) {
                for (uint32_t id = 0; id < n; id++)
                        index_get(s->idx, id)->refs = old[id];
                return r < 0 ? r : -EBADMSG;
        }
        for (uint32_t id = 0; id < n; id++)
                if (index_get(s->idx, id)->refs != old[id])
                        res->counts_corrected++;
        return 0;
}

typedef struct gc_plan {
        uint32_t n0;          /* entries when planned: later ones are a lazy pull's */
        gc_live *live;        /* live entries, by (pack, offset) */
        size_t n_live;
        gc_src *packs;        /* the pack table as planned */
        uint64_t *live_bytes; /* per pack */
        bool *rebuild;        /* per pack: a frame or record in it needs remaking */
        size_t n_packs;
        uint64_t freed;
} gc_plan;

static void plan_free(gc_plan *p) {
        free(p->live);
        free(p->packs);
        free(p->live_bytes);
        free(p->rebuild);
}

static size_t plan_pack(const gc_plan *p, uint32_t id) {
        size_t lo = 0, hi = p->n_packs;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (p->packs[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/* Under the lock: the mark, then a copy of what the copy needs. */
static int plan(st_store *s, gc_plan *p, st_gc_result *res, st_diag *reterr) {
        int r = gc_mark(s, res, reterr);
        if (r < 0)
                return r;
        uint32_t n = p->n0 = index_count(s->idx);
        size_t np = p->n_packs = s->n_packs;
        p->live = malloc((n ? n : 1) * sizeof *p->live);
        p->packs = malloc((np ? np : 1) * sizeof *p->packs);
        p->live_bytes = calloc(np ? np : 1, sizeof *p->live_bytes);
        p->rebuild = calloc(np ? np : 1, sizeof *p->rebuild);
        if (!p->live || !p->packs || !p->live_bytes || !p->rebuild)
                return -ENOMEM;
        for (size_t i = 0; i < np; i++)
                p->packs[i] = (gc_src){ s->packs[i].id, s->packs[i].fd, s->packs[i].len };
        for (uint32_t id = 0; id < n; id++) {
                const index_entry *e = index_get(s->idx, id);
                size_t pi = plan_pack(p, e->pack);
                bool known = pi < np && p->packs[pi].id == e->pack;
                if (e->refs == 0) {
                        p->freed++;
                        if (known && e->slot > 0)
                                p->rebuild[pi] = true; /* a frame with a dead chunk */
                        continue;
                }
                if (!known)
                        return -EBADMSG;
                p->live_bytes[pi] += index_entry_stored(e);
                p->live[p->n_live++] = (gc_live){ .id = id, .e = *e };
        }
        qsort(p->live, p->n_live, sizeof *p->live, cmp_live);
        return 0;
}

/* No lock: records whose compression waits, frames made below the cold
 * level (the packs are only appended to meanwhile). */
static void look(st_store *s, gc_plan *p) {
        if (s->cfg.zstd_cold_level == 0)
                return;
        for (size_t i = 0; i < p->n_live; i++) {
                gc_live *l = &p->live[i];
                size_t pi = plan_pack(p, l->e.pack);
                bool same = i > 0 && p->live[i - 1].e.pack == l->e.pack &&
                            p->live[i - 1].e.off == l->e.off;
                if (same || (l->e.slot > 0 && p->rebuild[pi]))
                        continue; /* (a frame is looked at once) */
                if (gc_copy_needs_work(s, p->packs[pi].fd, l))
                        p->rebuild[pi] = true;
        }
}

/* The copy: on a thread of its own at idle priority (serving comes first;
 * a thread that drops to SCHED_IDLE may not be allowed back). */
typedef struct copy_job {
        st_store *s;
        gc_plan *p;
        const uint32_t *victims;
        size_t n_victims;
        const st_import_opts *o;
        st_diag *reterr;
        uint64_t recompressed;
        int r;
} copy_job;

static void *copy_main(void *arg) {
        copy_job *j = arg;
        struct sched_param idle = { .sched_priority = 0 };
        (void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle); /* (best effort) */
        gc_plan *p = j->p;
        gc_copy c;
        j->r = gc_copy_init(&c, j->s, j->reterr);
        size_t a = 0;
        for (size_t v = 0; j->r == 0 && v < j->n_victims; v++) {
                while (a < p->n_live && p->live[a].e.pack < j->victims[v])
                        a++;
                size_t b = a;
                while (b < p->n_live && p->live[b].e.pack == j->victims[v])
                        b++;
                j->r = gc_copy_pack(&c, &p->packs[plan_pack(p, j->victims[v])], p->live + a, b - a);
                a = b;
                if (j->o && j->o->progress)
                        j->o->progress(j->o->userdata, v + 1, j->n_victims);
        }
        j->recompressed = c.recompressed;
        gc_copy_done(&c); /* (after a failed init too: it left nothing to free) */
        return NULL;
}

static bool keep_entry(void *ctx, uint32_t id, const index_entry *e) {
        const gc_plan *p = ctx;
        return e->refs > 0 || id >= p->n0;
}

static int gc_run(st_store *s, const st_import_opts *o, st_gc_result *res, bool *ret_changed,
                  st_diag *reterr) {
        _cleanup_(plan_free) gc_plan p = { 0 };
        pthread_rwlock_wrlock(&s->lock);
        int r = plan(s, &p, res, reterr);
        pthread_rwlock_unlock(&s->lock);
        if (r < 0)
                return r;
        res->chunks_freed = p.freed;
        look(s, &p);

        /* Victims: packs with any dead byte, or something to remake. */
        _cleanup_free_ uint32_t *victims = malloc((p.n_packs ? p.n_packs : 1) * sizeof *victims);
        if (!victims)
                return -ENOMEM;
        size_t n_victims = 0;
        uint64_t old_bytes = 0;
        for (size_t i = 0; i < p.n_packs; i++)
                if (p.packs[i].len > PACK_HEADER_LEN + p.live_bytes[i] || p.rebuild[i]) {
                        victims[n_victims++] = p.packs[i].id;
                        old_bytes += p.packs[i].len;
                }
        if (n_victims == 0 && p.freed == 0) {
                if (!res->counts_corrected)
                        return 0;
                pthread_rwlock_wrlock(&s->lock);
                r = store_commit(s);
                pthread_rwlock_unlock(&s->lock);
                return r;
        }

        *ret_changed = true;
        /* New output packs get ids above every victim, so appends (gc's and
         * a lazy pull's) never land in a pack that is about to be deleted. */
        pthread_rwlock_wrlock(&s->lock);
        s->idx_full = true; /* entries move and go: the next index is whole */
        r = store_dirty_hold(s);
        store_pack *out;
        if (r == 0 && n_victims > 0)
                r = store_pack_create(s, &out);
        uint32_t first_new = s->next_pack_id - 1;
        pthread_rwlock_unlock(&s->lock);
        if (r < 0)
                return r;

        copy_job job = { .s = s, .p = &p, .victims = victims, .n_victims = n_victims, .o = o,
                         .reterr = reterr };
        pthread_t t;
        if (pthread_create(&t, NULL, copy_main, &job) != 0)
                return -EAGAIN;
        pthread_join(t, NULL);
        r = job.r;
        uint64_t recompressed = job.recompressed;
        if (r < 0)
                return r;
        /* The new packs durable before the lock: readers wait for nothing. */
        for (uint32_t id = first_new;; id++) {
                pthread_rwlock_rdlock(&s->lock);
                store_pack *pk = store_pack_find(s, id);
                int fd = pk ? pk->fd : -1;
                bool last = id + 1 >= s->next_pack_id;
                pthread_rwlock_unlock(&s->lock);
                if (fd >= 0 && fsync(fd) < 0)
                        return -errno;
                if (last)
                        break;
        }

        pthread_rwlock_wrlock(&s->lock);
        s->gc_runs++; /* (the step-wise compression's plan is stale now) */
        for (size_t i = 0; i < p.n_live; i++) {
                index_entry *e = index_get(s->idx, p.live[i].id);
                e->pack = p.live[i].e.pack;
                e->off = p.live[i].e.off;
                e->stored_len = p.live[i].e.stored_len;
                e->slot = p.live[i].e.slot;
        }
        /* A victim that a lazy pull's fetch appended to stays (its live
         * records were copied: what is left is dead bytes for the next gc).
         * (Before the filter, which renumbers the entries.) */
        for (uint32_t id = p.n0; id < index_count(s->idx); id++) {
                uint32_t pack = index_get(s->idx, id)->pack;
                for (size_t v = 0; v < n_victims; v++)
                        if (victims[v] == pack)
                                victims[v] = 0; /* (pack ids start at 1) */
        }
        r = index_filter(s->idx, keep_entry, &p);
        /* Drop the victims from the pack table, keeping their fds to close. */
        _cleanup_free_ int *old_fds = malloc((n_victims ? n_victims : 1) * sizeof(int));
        if (r == 0 && !old_fds)
                r = -ENOMEM;
        size_t w = 0, k = 0;
        uint64_t new_bytes = 0;
        for (size_t i = 0; r == 0 && i < s->n_packs; i++) {
                bool victim = false;
                for (size_t v = 0; v < n_victims && !victim; v++)
                        victim = s->packs[i].id == victims[v];
                if (victim)
                        old_fds[k++] = s->packs[i].fd;
                else {
                        if (s->packs[i].id >= first_new)
                                new_bytes += s->packs[i].len;
                        s->packs[w++] = s->packs[i];
                }
        }
        if (r == 0) {
                s->n_packs = w;
                store_recount_totals(s);
                r = store_write_index(s);
        }
        for (size_t i = 0; i < k; i++)
                close(old_fds[i]);
        pthread_rwlock_unlock(&s->lock);
        if (r < 0)
                return r;
        for (size_t v = 0; v < n_victims; v++) {
                char name[32];
                if (!victims[v])
                        continue;
                pack_name(name, victims[v]);
                if (unlinkat(s->packs_fd, name, 0) < 0 && errno != ENOENT)
                        return -errno;
        }
        r = st_fsync_dir(s->packs_fd);
        if (r < 0)
                return r;
        res->packs_rewritten = n_victims;
        res->frames_recompressed = recompressed;
        res->bytes_freed = old_bytes > new_bytes ? old_bytes - new_bytes : 0;
        pthread_rwlock_wrlock(&s->lock);
        r = store_dirty_release(s);
        pthread_rwlock_unlock(&s->lock);
        return r;
}

int st_store_gc(st_store *s, const st_import_opts *o, st_gc_result *ret, st_diag *reterr) {
        int r = store_exclusive(s);
        if (r < 0)
                return r;
        st_gc_result res = { 0 };
        store_change_begin(s);
        bool changed = false;
        r = gc_run(s, o, &res, &changed, reterr);
        store_change_end(s);
        if (r < 0) {
                /* Refused before changing anything (an unreadable ref or
                 * manifest): the store stays usable. */
                if (changed)
                        s->broken = true;
                return r;
        }
        if (ret)
                *ret = res;
        return 0;
}
