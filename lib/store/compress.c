/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compression a step at a time: what imports left to the cold level
 * (records stored raw by `--zstd-level defer`, frames made below the cold
 * level) is done here in small steps that the daemon runs at idle, where
 * gc does it all at once. A step holds the write mutex (so it never runs
 * beside an import, a commit or gc: their rollbacks and moves assume that)
 * but takes the store's lock only to reserve room in a pack and to write
 * back the entries it moved, so readers are not held up.
 *
 * It works through one pack at a time, in id order:
 *   look   the records of a pack not yet known to be done: does any need
 *          compressing? If none does, the pack is done up to its length.
 *   copy   every indexed record of the pack, in order, into the current
 *          output pack (gc-copy.c: frames rebuilt at the cold level,
 *          deferred runs framed, the rest byte for byte, each verified),
 *          the moved entries written back after each piece. The old copy
 *          stays where it was: until the pack is dropped, a crash loses
 *          nothing (the index on disk still names the old place).
 *   drop   once every record has moved and no entry names the pack (checked
 *          again under the lock), the index is written whole without it,
 *          then the pack is unlinked. A crash in between leaves a pack the
 *          index does not list, holding only duplicates: recovery drops it.
 * Nothing is freed: entries whose count is 0 move like the others.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stellar/store.h>

#include "../util/fs.h"
#include "gc-copy.h"
#include "store-internal.h"

#define COLD_PIECE (1u << 20) /* stored bytes copied between write-backs */

typedef struct cold_work {
        uint32_t pack;       /* the pack being looked at or copied; 0: none */
        uint64_t pack_len;   /* its length when its entries were listed */
        uint64_t gc_runs;    /* s->gc_runs then */
        gc_live *live;       /* its entries at or past its cold_clean, by offset */
        size_t n, next;      /* live[0..next) looked at (looking) or copied */
        bool copying;        /* a record needs compressing: the pack is being copied */
        uint64_t seen;       /* the packs' total length when all were last done */
        uint64_t seen_gc_runs; /* and s->gc_runs then */
        uint32_t out_pack;   /* the pack its copies went to last */
} cold_work;

void store_cold_free(st_store *s) {
        if (s->cold)
                free(s->cold->live);
        free(s->cold);
        s->cold = NULL;
}

static uint64_t thread_cpu_ns(void) {
        struct timespec t;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
        return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int cmp_off(const void *a, const void *b) {
        const gc_live *x = a, *y = b;
        return x->e.off < y->e.off ? -1 : x->e.off > y->e.off;
}

static void work_reset(cold_work *w) {
        free(w->live);
        *w = (cold_work){ .seen = w->seen, .seen_gc_runs = w->seen_gc_runs, .out_pack = w->out_pack };
}

/* Under the read lock: the first pack not known to be done, and its entries
 * past what is; 0 with w->pack 0 when every pack is done. */
static int work_pick(st_store *s, cold_work *w) {
        uint64_t total = 0;
        for (size_t i = 0; i < s->n_packs; i++)
                total += s->packs[i].len;
        if (total == w->seen && s->gc_runs == w->seen_gc_runs)
                return 0; /* nothing appended (or moved by gc) since all was done */
        const store_pack *p = NULL;
        for (size_t i = 0; i < s->n_packs && !p; i++)
                if (s->packs[i].cold_clean < s->packs[i].len)
                        p = &s->packs[i];
        if (!p) {
                w->seen = total;
                w->seen_gc_runs = s->gc_runs;
                return 0;
        }
        size_t n = 0, cap = 0;
        gc_live *live = NULL;
        uint32_t count = index_count(s->idx);
        for (uint32_t id = 0; id < count; id++) {
                const index_entry *e = index_get(s->idx, id);
                if (e->pack != p->id || e->off < p->cold_clean)
                        continue;
                if (n == cap) {
                        size_t c = cap ? cap * 2 : 1024;
                        gc_live *v = realloc(live, c * sizeof *v);
                        if (!v) {
                                free(live);
                                return -ENOMEM;
                        }
                        live = v;
                        cap = c;
                }
                live[n++] = (gc_live){ .id = id, .e = *e };
        }
        if (n > 1) /* (live is NULL when n is 0) */
                qsort(live, n, sizeof *live, cmp_off);
        work_reset(w); /* (it held no list: no pack) */
        w->pack = p->id;
        w->pack_len = p->len;
        w->gc_runs = s->gc_runs;
        w->live = live;
        w->n = n;
        return 0;
}

/* Under the read lock: the pack's fd and length as listed (-ENOENT once gone). */
static int pack_src(st_store *s, uint32_t id, gc_src *ret) {
        store_pack *p = store_pack_find(s, id);
        if (!p)
                return -ENOENT;
        *ret = (gc_src){ p->id, p->fd, p->len };
        return 0;
}

/* live[i..k): the records of one piece, ending at a record's end. */
static size_t piece_end(const cold_work *w, size_t i) {
        uint64_t bytes = 0;
        size_t k = i;
        while (k < w->n && bytes < COLD_PIECE) {
                uint32_t off = w->live[k].e.off;
                bytes += PACK_RECORD_HEADER_LEN + (uint64_t)w->live[k].e.stored_len;
                while (k < w->n && w->live[k].e.off == off)
                        k++;
        }
        return k;
}

/* The look: does a record from w->next on need compressing? Stops at the
 * first that does, or at the budget (1: look again), or marks the pack done
 * up to its length then (0). */
static int look(st_store *s, cold_work *w, const gc_src *src, uint64_t deadline) {
        for (; w->next < w->n; w->next++) {
                gc_live *l = &w->live[w->next];
                if (w->next > 0 && w->live[w->next - 1].e.off == l->e.off)
                        continue;
                if (gc_copy_needs_work(s, src->fd, l)) {
                        w->copying = true;
                        w->next = 0;
                        return 1;
                }
                if ((w->next & 255) == 255 && thread_cpu_ns() > deadline)
                        return 1;
        }
        pthread_rwlock_wrlock(&s->lock);
        store_pack *p = store_pack_find(s, w->pack);
        if (p && p->cold_clean < w->pack_len)
                p->cold_clean = w->pack_len;
        pthread_rwlock_unlock(&s->lock);
        work_reset(w);
        return 0;
}

/* Back into the index: the entries of live[i..k) that still name the place
 * they were copied from (all of them, unless something moved one). */
static void write_back(st_store *s, const cold_work *w, const gc_live *moved, size_t i,
                       size_t k) {
        pthread_rwlock_wrlock(&s->lock);
        uint32_t count = index_count(s->idx);
        for (size_t q = i; q < k; q++) {
                const gc_live *was = &w->live[q];
                if (was->id >= count)
                        continue;
                index_entry *e = index_get(s->idx, was->id);
                if (e->pack != was->e.pack || e->off != was->e.off || e->slot != was->e.slot ||
                    memcmp(e->prefix, was->e.prefix, INDEX_PREFIX_LEN) != 0)
                        continue;
                s->stored_bytes -= index_entry_stored(e);
                e->pack = moved[q - i].e.pack;
                e->off = moved[q - i].e.off;
                e->stored_len = moved[q - i].e.stored_len;
                e->slot = moved[q - i].e.slot;
                s->stored_bytes += index_entry_stored(e);
        }
        pthread_rwlock_unlock(&s->lock);
}

/* Every record has moved: the index without the pack, then the pack gone.
 * 1 when dropped; 0 when an entry still names it (it is looked at anew). */
static int drop(st_store *s, cold_work *w) {
        pthread_rwlock_wrlock(&s->lock);
        uint32_t count = index_count(s->idx);
        bool named = false;
        for (uint32_t id = 0; id < count && !named; id++)
                named = index_get(s->idx, id)->pack == w->pack;
        store_pack *p = store_pack_find(s, w->pack);
        size_t at = p ? (size_t)(p - s->packs) : s->n_packs;
        if (named || !p || at + 1 == s->n_packs) {
                if (p)
                        p->cold_clean = 0;
                pthread_rwlock_unlock(&s->lock);
                work_reset(w);
                return 0;
        }
        int fd = s->packs[at].fd;
        memmove(&s->packs[at], &s->packs[at + 1], (s->n_packs - at - 1) * sizeof *s->packs);
        s->n_packs--;
        if (s->logged_packs > at)
                s->logged_packs--; /* (moot: the index is written whole) */
        s->idx_full = true;
        store_recount_totals(s);
        int r = store_write_index(s); /* (fsyncs the packs the copies went to first) */
        close(fd);
        pthread_rwlock_unlock(&s->lock);
        if (r < 0)
                return r;
        char name[32];
        pack_name(name, w->pack);
        if (unlinkat(s->packs_fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        r = st_fsync_dir(s->packs_fd);
        work_reset(w);
        return r < 0 ? r : 1;
}

/* The copy, from w->next on, piece by piece until the budget; then the drop.
 * 'dirty' is held meanwhile: until the index lists what the step appended,
 * a crash must send the next open to recovery. */
static int copy(st_store *s, cold_work *w, const gc_src *src, uint64_t deadline,
                st_compress_result *res, st_diag *reterr) {
        pthread_rwlock_wrlock(&s->lock);
        int r = store_dirty_hold(s);
        /* The copies go to a pack of their own: never the one being copied,
         * nor one an import left (which has work of its own: copies put
         * there would be copied again with it). */
        uint32_t last = s->n_packs ? s->packs[s->n_packs - 1].id : 0;
        if (r == 0 && (last == w->pack || last != w->out_pack)) {
                store_pack *out;
                r = store_pack_create(s, &out);
                if (r == 0)
                        w->out_pack = out->id;
        }
        pthread_rwlock_unlock(&s->lock);
        if (r < 0)
                return r;
        gc_copy c;
        r = gc_copy_init(&c, s, reterr);
        size_t cap = 0;
        gc_live *moved = NULL;
        /* (until the budget, or a change waits: an import is not held up by
         * a step that idle priority may slow down) */
        while (r == 0 && w->next < w->n && thread_cpu_ns() < deadline &&
               atomic_load(&s->change_waiters) == 0) {
                size_t i = w->next, k = piece_end(w, i);
                if (k - i > cap) {
                        gc_live *v = realloc(moved, (k - i) * sizeof *v);
                        if (!v) {
                                r = -ENOMEM;
                                break;
                        }
                        moved = v;
                        cap = k - i;
                }
                memcpy(moved, w->live + i, (k - i) * sizeof *moved);
                uint64_t in = 0, out = 0, records = 0;
                for (size_t q = 0; q < k - i; q++)
                        if (q == 0 || moved[q - 1].e.off != moved[q].e.off) {
                                (void)gc_copy_needs_work(s, src->fd, &moved[q]); /* (sets deferred) */
                                in += PACK_RECORD_HEADER_LEN + (uint64_t)moved[q].e.stored_len;
                                records++;
                        }
                uint64_t before = c.recompressed;
                r = gc_copy_pack(&c, src, moved, k - i);
                if (r < 0)
                        break;
                for (size_t q = 0; q < k - i; q++)
                        if (q == 0 || moved[q - 1].e.pack != moved[q].e.pack ||
                            moved[q - 1].e.off != moved[q].e.off)
                                out += PACK_RECORD_HEADER_LEN + (uint64_t)moved[q].e.stored_len;
                write_back(s, w, moved, i, k);
                w->next = k;
                w->out_pack = moved[k - i - 1].e.pack; /* (a full pack goes on in a new one) */
                res->records += records;
                res->recompressed += c.recompressed - before;
                res->bytes_in += in;
                res->bytes_out += out;
        }
        free(moved);
        gc_copy_done(&c); /* (after a failed init too: it left nothing to free) */
        int dropped = 0;
        if (r == 0 && w->next == w->n)
                r = dropped = drop(s, w);
        /* What was appended, listed (the pack lengths; the moves are in
         * memory until the pack is dropped), after a failure too; then
         * 'dirty' let go. If the index cannot be written it stays: the next
         * open recovers. */
        pthread_rwlock_wrlock(&s->lock);
        int k = store_write_index(s);
        if (k == 0)
                k = store_dirty_release(s);
        pthread_rwlock_unlock(&s->lock);
        if (r < 0 || k < 0)
                return r < 0 ? r : k;
        res->packs_dropped += (uint64_t)dropped;
        return 1;
}

static int step(st_store *s, uint64_t deadline, st_compress_result *res, st_diag *reterr) {
        if (!s->cold && !(s->cold = calloc(1, sizeof *s->cold)))
                return -ENOMEM;
        cold_work *w = s->cold;
        for (;;) {
                pthread_rwlock_rdlock(&s->lock);
                gc_src src = { 0 };
                int r = 0;
                if (w->pack && (w->gc_runs != s->gc_runs || pack_src(s, w->pack, &src) < 0 ||
                                src.len < w->pack_len))
                        work_reset(w); /* gc moved things meanwhile: look again */
                if (!w->pack)
                        r = work_pick(s, w);
                if (r == 0 && w->pack)
                        r = pack_src(s, w->pack, &src);
                pthread_rwlock_unlock(&s->lock);
                if (r < 0)
                        return r;
                if (!w->pack)
                        return 0; /* every pack done */
                if (!w->copying) {
                        r = look(s, w, &src, deadline);
                        if (r == 0 && thread_cpu_ns() < deadline)
                                continue; /* that pack was done: the next */
                        if (r == 0 || !w->copying)
                                return 1;
                }
                return copy(s, w, &src, deadline, res, reterr);
        }
}

int st_store_compress_step(st_store *s, uint64_t budget_ns, st_compress_result *ret,
                           st_diag *reterr) {
        int r = store_exclusive(s);
        if (r < 0)
                return r;
        if (s->cfg.zstd_cold_level == 0)
                return 0;
        if (pthread_mutex_trylock(&s->write_lock) != 0)
                return -EBUSY;
        st_compress_result res = { 0 };
        r = step(s, thread_cpu_ns() + budget_ns, &res, reterr);
        pthread_mutex_unlock(&s->write_lock);
        if (ret) {
                ret->records += res.records;
                ret->recompressed += res.recompressed;
                ret->bytes_in += res.bytes_in;
                ret->bytes_out += res.bytes_out;
                ret->packs_dropped += res.packs_dropped;
        }
        return r;
}
