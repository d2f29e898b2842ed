/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Garbage collection. The mark recounts every chunk's references from the
 * manifests that the refs reach, never trusting the stored counts (a stale
 * index put back, or refs copied in from another store, would make them
 * wrong); while any ref or manifest cannot be read gc refuses and frees
 * nothing. Every record it keeps is read back and verified before its pack
 * is dropped, so a damaged record stops gc instead of losing the copy that
 * was still good elsewhere. Every pack holding dead bytes (freed chunks, duplicates left by a crash,
 * torn tails) is compacted: its live records are copied, byte for byte, into
 * new packs; the new packs are fsynced; the index is written without the old
 * packs; only then are the old packs unlinked. A crash at any point leaves
 * either the old packs (still listed) or both; recovery drops whichever pack
 * holds only duplicates. gc never frees a chunk a manifest refers to.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "store-internal.h"

#define GC_COPY_BUF (8u << 20)
#define GC_FRAME_RAW (256u << 10) /* deferred records are framed up to this (as ingest does) */

typedef struct live_ref {
        uint32_t pack, off, id;
} live_ref;

static int cmp_live(const void *a, const void *b) {
        const live_ref *x = a, *y = b;
        if (x->pack != y->pack)
                return x->pack < y->pack ? -1 : 1;
        return x->off < y->off ? -1 : x->off > y->off;
}

static bool keep_referenced(void *ctx, const index_entry *e) {
        (void)ctx;
        return e->refs > 0;
}

typedef struct gc_verify {
        void *dctx;
        uint8_t *out;
        size_t out_cap;
        st_diag *reterr;
        /* frames: the record read, and a new one built of its live chunks */
        void *cctx;
        uint8_t *rec, *gather, *built;
        size_t rec_cap, gather_cap, built_cap;
        uint64_t recompressed;
        const uint8_t *deferred; /* per entry: its record waits for compression */
} gc_verify;

static int damaged(gc_verify *v, uint32_t pack_id, uint64_t off) {
        char file[48];
        pack_name(file, pack_id);
        char path[64];
        snprintf(path, sizeof path, "packs/%s", file);
        return st_diag_fail(v->reterr, path, off,
                            "a chunk in use is damaged: gc stopped before dropping any "
                            "pack (run 'stellar fsck')",
                            -EBADMSG);
}

/* Append one record (header, payload) to the current output pack. */
static int append_record(st_store *s, const pack_record *rec, const void *payload,
                         uint32_t *ret_pack, uint32_t *ret_off) {
        uint8_t hdr[PACK_RECORD_HEADER_LEN];
        pack_record_encode(hdr, rec);
        store_pack *dst;
        int r = store_pack_for_append(s, PACK_RECORD_HEADER_LEN + (uint64_t)rec->stored_len, &dst);
        if (r < 0)
                return r;
        struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)payload, rec->stored_len } };
        r = st_pwritev_full(dst->fd, iov, 2, dst->len);
        if (r < 0)
                return r;
        *ret_pack = dst->id;
        *ret_off = (uint32_t)dst->len;
        dst->len += PACK_RECORD_HEADER_LEN + (uint64_t)rec->stored_len;
        dst->unsynced = true;
        return 0;
}

/* One chunk as a record of its own, compressed at level if that makes it
 * smaller (else raw: never deferred again); e is moved there. */
static int append_single(st_store *s, gc_verify *v, const pack_frame_src *c, int level,
                         index_entry *e) {
        int r = st_buf_grow(&v->built, &v->built_cap, ZSTD_compressBound(c->len));
        if (r < 0)
                return r;
        size_t z = ZSTD_compressCCtx(v->cctx, v->built, v->built_cap, c->data, c->len, level);
        bool zstd = !ZSTD_isError(z) && z < c->len;
        pack_record one = { .flags = zstd ? PACK_FLAG_ZSTD : 0, .raw_len = c->len,
                            .stored_len = zstd ? (uint32_t)z : c->len, .hash = c->hash };
        uint32_t pack_id, at;
        r = append_record(s, &one, zstd ? v->built : c->data, &pack_id, &at);
        if (r < 0)
                return r;
        e->pack = pack_id;
        e->off = at;
        e->stored_len = one.stored_len;
        e->slot = 0;
        return 0;
}

/* The live chunks of one frame record (live[0..m), all at one offset): the
 * record copied as it is when every chunk in it lives, else a new frame of
 * the live ones (one alone becomes a plain record). Each chunk kept is
 * verified first. */
static int copy_frame(st_store *s, const live_ref *live, size_t m, gc_verify *v) {
        store_pack *src = store_pack_find(s, live[0].pack);
        const index_entry *e0 = index_get(s->idx, live[0].id);
        size_t rl = PACK_RECORD_HEADER_LEN + (size_t)e0->stored_len;
        int r = st_buf_grow(&v->rec, &v->rec_cap, rl);
        if (r < 0)
                return r;
        r = !src || (uint64_t)e0->off + rl > src->len ? -EIO : st_pread_full(src->fd, v->rec, rl, e0->off);
        pack_record rec;
        pack_frame f;
        if (r == 0 && (pack_record_decode(v->rec, PACK_RECORD_HEADER_LEN, &rec, NULL) < 0 ||
                       rec.stored_len != e0->stored_len ||
                       pack_frame_parse(&rec, v->rec + PACK_RECORD_HEADER_LEN, &f) < 0))
                r = -EBADMSG;
        if (r == 0)
                r = st_buf_grow(&v->out, &v->out_cap, rec.raw_len);
        if (r == 0 && pack_frame_inflate(&rec, &f, v->out, v->dctx) < 0)
                r = -EBADMSG;
        if (r == -EIO || r == -EBADMSG)
                return damaged(v, live[0].pack, e0->off);
        if (r < 0)
                return r;
        pack_frame_src keep[PACK_FRAME_MAX_CHUNKS];
        uint32_t n = 0;
        for (size_t q = 0; q < m; q++) {
                index_entry *e = index_get(s->idx, live[q].id);
                uint32_t off, len;
                if (e->slot == 0 || e->slot > f.n || n == PACK_FRAME_MAX_CHUNKS)
                        return damaged(v, live[0].pack, e0->off);
                pack_frame_slot(&f, e->slot - 1, &keep[n].hash, &off, &len);
                st_digest got;
                st_hash(v->out + off, len, &got);
                if (len != e->raw_len || memcmp(got.b, keep[n].hash.b, ST_DIGEST_LEN) != 0 ||
                    memcmp(got.b, e->prefix, INDEX_PREFIX_LEN) != 0)
                        return damaged(v, live[0].pack, e0->off);
                keep[n].data = v->out + off;
                keep[n].len = len;
                n++;
        }
        uint32_t pack_id, at;
        int cold = s->cfg.zstd_cold_level;
        bool recompress = cold > 0 && f.level < cold;
        if (n == f.n && !recompress) { /* all of it lives: byte for byte */
                r = append_record(s, &rec, v->rec + PACK_RECORD_HEADER_LEN, &pack_id, &at);
                for (size_t q = 0; r == 0 && q < m; q++) {
                        index_entry *e = index_get(s->idx, live[q].id);
                        e->pack = pack_id;
                        e->off = at;
                }
                return r;
        }
        int level = recompress || s->cfg.zstd_level == ST_ZSTD_DEFER ? cold : s->cfg.zstd_level;
        v->recompressed += recompress;
        if (n >= 2) {
                r = st_buf_grow(&v->gather, &v->gather_cap, rec.raw_len);
                if (r == 0)
                        r = st_buf_grow(&v->built, &v->built_cap, pack_frame_bound(n, rec.raw_len));
                if (r < 0)
                        return r;
                pack_record nr;
                int64_t len = pack_frame_build(v->cctx, level, keep, n, v->gather, v->built, &nr);
                if (len < 0)
                        return (int)len;
                if (len == 0 || (n == f.n && nr.stored_len >= rec.stored_len)) {
                        if (n == f.n) {
                                /* No gain at the cold level: the frame as it
                                 * was, marked as tried so no gc tries again. */
                                uint8_t *payload = v->rec + PACK_RECORD_HEADER_LEN;
                                st_le32_put(payload + 4, (uint32_t)cold);
                                st_hash(payload, pack_frame_table_len(f.n), &rec.hash);
                                r = append_record(s, &rec, payload, &pack_id, &at);
                                for (size_t q = 0; r == 0 && q < m; q++) {
                                        index_entry *e = index_get(s->idx, live[q].id);
                                        e->pack = pack_id;
                                        e->off = at;
                                }
                                return r;
                        }
                } else {
                        r = append_record(s, &nr, v->built, &pack_id, &at);
                        for (size_t q = 0; r == 0 && q < m; q++) {
                                index_entry *e = index_get(s->idx, live[q].id);
                                e->pack = pack_id;
                                e->off = at;
                                e->stored_len = nr.stored_len;
                                e->slot = (uint32_t)q + 1;
                        }
                        return r;
                }
        }
        /* One chunk left, or chunks that no longer compress together: each
         * a record of its own. */
        for (size_t q = 0; q < m; q++) {
                r = append_single(s, v, &keep[q], level, index_get(s->idx, live[q].id));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* A run of records whose compression was deferred (live[0..m), in pack
 * order, at most a frame's worth): each read and verified, then one frame
 * of them at the cold level, or records of their own if that gains nothing. */
static int copy_deferred(st_store *s, const live_ref *live, size_t m, gc_verify *v) {
        store_pack *src = store_pack_find(s, live[0].pack);
        size_t raw = 0;
        for (size_t q = 0; q < m; q++)
                raw += index_get(s->idx, live[q].id)->raw_len;
        int r = st_buf_grow(&v->gather, &v->gather_cap, raw ? raw : 1);
        if (r < 0)
                return r;
        pack_frame_src keep[PACK_FRAME_MAX_CHUNKS];
        size_t at = 0;
        for (size_t q = 0; q < m; q++) {
                index_entry *e = index_get(s->idx, live[q].id);
                uint8_t hdr[PACK_RECORD_HEADER_LEN];
                pack_record rec;
                uint64_t end = (uint64_t)e->off + PACK_RECORD_HEADER_LEN + e->raw_len;
                r = !src || end > src->len ? -EIO : st_pread_full(src->fd, hdr, sizeof hdr, e->off);
                if (r == 0 && (pack_record_decode(hdr, sizeof hdr, &rec, NULL) < 0 ||
                               rec.flags != PACK_FLAG_DEFERRED || rec.raw_len != e->raw_len ||
                               memcmp(rec.hash.b, e->prefix, INDEX_PREFIX_LEN) != 0))
                        r = -EBADMSG;
                if (r == 0)
                        r = st_pread_full(src->fd, v->gather + at, e->raw_len,
                                          (uint64_t)e->off + PACK_RECORD_HEADER_LEN);
                st_digest got;
                if (r == 0) {
                        st_hash(v->gather + at, e->raw_len, &got);
                        if (memcmp(got.b, rec.hash.b, ST_DIGEST_LEN) != 0)
                                r = -EBADMSG;
                }
                if (r == -EIO || r == -EBADMSG)
                        return damaged(v, live[q].pack, e->off);
                if (r < 0)
                        return r;
                keep[q] = (pack_frame_src){ .hash = rec.hash, .data = v->gather + at, .len = e->raw_len };
                at += e->raw_len;
        }
        int level = s->cfg.zstd_cold_level;
        v->recompressed++;
        if (m >= 2) {
                r = st_buf_grow(&v->built, &v->built_cap, pack_frame_bound((uint32_t)m, raw));
                if (r < 0)
                        return r;
                pack_record nr;
                int64_t len = pack_frame_build(v->cctx, level, keep, (uint32_t)m, v->gather,
                                               v->built, &nr);
                if (len < 0)
                        return (int)len;
                if (len > 0) {
                        uint32_t pack_id, off;
                        r = append_record(s, &nr, v->built, &pack_id, &off);
                        for (size_t q = 0; r == 0 && q < m; q++) {
                                index_entry *e = index_get(s->idx, live[q].id);
                                e->pack = pack_id;
                                e->off = off;
                                e->stored_len = nr.stored_len;
                                e->slot = (uint32_t)q + 1;
                        }
                        return r;
                }
        }
        for (size_t q = 0; q < m; q++) {
                r = append_single(s, v, &keep[q], level, index_get(s->idx, live[q].id));
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Is the record at p (header and payload) the chunk the index entry says? */
static int verify_record(gc_verify *v, uint32_t pack_id, const index_entry *e, const uint8_t *p) {
        pack_record rec;
        int r = p ? pack_record_decode(p, PACK_RECORD_HEADER_LEN, &rec, NULL) : -EBADMSG;
        if (r == 0 && (rec.stored_len != e->stored_len || rec.raw_len != e->raw_len ||
                       memcmp(rec.hash.b, e->prefix, INDEX_PREFIX_LEN) != 0))
                r = -EBADMSG;
        if (r == 0)
                r = st_buf_grow(&v->out, &v->out_cap, rec.raw_len ? rec.raw_len : 1);
        if (r == 0)
                r = pack_payload_decode(&rec, p + PACK_RECORD_HEADER_LEN, v->out, v->dctx);
        if (r == -EBADMSG)
                return damaged(v, pack_id, e->off);
        return r;
}

static int copy_records(st_store *s, const live_ref *live, size_t n, uint8_t *buf, gc_verify *v) {
        /* live[] is one victim pack's records in offset order: read runs of
         * them into buf and append each run to the current output pack. */
        size_t i = 0;
        while (i < n) {
                if (index_get(s->idx, live[i].id)->slot > 0) {
                        size_t k = i + 1;
                        while (k < n && live[k].off == live[i].off)
                                k++;
                        int r = copy_frame(s, live + i, k - i, v);
                        if (r < 0)
                                return r;
                        i = k;
                        continue;
                }
                if (v->deferred && v->deferred[live[i].id]) {
                        size_t k = i;
                        uint64_t raw = 0;
                        while (k < n && v->deferred[live[k].id] && k - i < PACK_FRAME_MAX_CHUNKS &&
                               raw + index_get(s->idx, live[k].id)->raw_len <= GC_FRAME_RAW)
                                raw += index_get(s->idx, live[k++].id)->raw_len;
                        if (k == i)
                                k++; /* one larger than a frame: alone */
                        int r = copy_deferred(s, live + i, k - i, v);
                        if (r < 0)
                                return r;
                        i = k;
                        continue;
                }
                store_pack *src = store_pack_find(s, live[i].pack);
                size_t k = i;
                uint64_t len = 0;
                while (k < n) {
                        const index_entry *e = index_get(s->idx, live[k].id);
                        if (e->slot > 0 || (v->deferred && v->deferred[live[k].id]))
                                break; /* a frame, or records to compress: on their own */
                        uint64_t rl = PACK_RECORD_HEADER_LEN + (uint64_t)e->stored_len;
                        if (k > i && len + rl > GC_COPY_BUF)
                                break;
                        len += rl;
                        k++;
                }
                if (len > GC_COPY_BUF) {
                        /* a single huge record: grow the buffer just for it */
                        uint8_t *big = malloc((size_t)len);
                        if (!big)
                                return -ENOMEM;
                        int r = copy_records(s, live + i, 1, big, v);
                        free(big);
                        if (r < 0)
                                return r;
                        i++;
                        continue;
                }
                store_pack *dst;
                int r = store_pack_for_append(s, len, &dst);
                if (r < 0)
                        return r;
                src = store_pack_find(s, live[i].pack); /* the array may have moved */
                uint64_t w = 0;
                for (size_t q = i; q < k; q++) {
                        index_entry *e = index_get(s->idx, live[q].id);
                        size_t rl = PACK_RECORD_HEADER_LEN + e->stored_len;
                        r = (uint64_t)e->off + rl > src->len
                                    ? -EIO
                                    : st_pread_full(src->fd, buf + w, rl, e->off);
                        r = r == 0 ? verify_record(v, src->id, e, buf + w)
                            : r == -EIO ? verify_record(v, src->id, e, NULL)
                                        : r;
                        if (r < 0)
                                return r;
                        w += rl;
                }
                r = st_pwrite_full(dst->fd, buf, (size_t)w, dst->len);
                if (r < 0)
                        return r;
                w = 0;
                for (size_t q = i; q < k; q++) {
                        index_entry *e = index_get(s->idx, live[q].id);
                        e->pack = dst->id;
                        e->off = (uint32_t)(dst->len + w);
                        w += PACK_RECORD_HEADER_LEN + e->stored_len;
                }
                dst->len += w;
                dst->unsynced = true;
                i = k;
        }
        return 0;
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

static int gc_run(st_store *s, const st_import_opts *o, st_gc_result *res, bool *ret_changed,
                  st_diag *reterr) {
        int r = gc_mark(s, res, reterr);
        if (r < 0)
                return r;
        uint32_t n = index_count(s->idx);
        size_t np = s->n_packs;
        /* live bytes per pack, by position in s->packs */
        _cleanup_free_ uint64_t *live_bytes = calloc(np ? np : 1, sizeof *live_bytes);
        _cleanup_free_ live_ref *live = malloc((n ? n : 1) * sizeof *live);
        _cleanup_free_ uint8_t *buf = malloc(GC_COPY_BUF);
        if (!live_bytes || !live || !buf)
                return -ENOMEM;
        /* (a frame with a dead chunk, or made below the cold level, makes
         * its pack a victim: the frame is rebuilt) */
        _cleanup_free_ bool *dead_frame = calloc(np ? np : 1, sizeof *dead_frame);
        _cleanup_free_ uint8_t *deferred = calloc(n ? n : 1, 1);
        if (!dead_frame || !deferred)
                return -ENOMEM;
        size_t n_live = 0;
        for (uint32_t id = 0; id < n; id++) {
                const index_entry *e = index_get(s->idx, id);
                store_pack *p = store_pack_find(s, e->pack);
                if (e->refs == 0) {
                        res->chunks_freed++;
                        if (p && e->slot > 0)
                                dead_frame[p - s->packs] = true;
                        continue;
                }
                if (!p)
                        return -EBADMSG;
                live_bytes[p - s->packs] += index_entry_stored(e);
                if (e->slot == 0 && e->stored_len == e->raw_len && s->cfg.zstd_cold_level > 0) {
                        /* raw: deferred? (the record says) */
                        uint8_t hdr[PACK_RECORD_HEADER_LEN];
                        pack_record rec;
                        if (st_pread_full(p->fd, hdr, sizeof hdr, e->off) == 0 &&
                            pack_record_decode(hdr, sizeof hdr, &rec, NULL) == 0 &&
                            rec.flags == PACK_FLAG_DEFERRED) {
                                deferred[id] = 1;
                                dead_frame[p - s->packs] = true;
                        }
                }
                if (e->slot == 1 && s->cfg.zstd_cold_level > 0 && !dead_frame[p - s->packs]) {
                        uint8_t head[PACK_FRAME_HEAD_LEN];
                        if (st_pread_full(p->fd, head, sizeof head, (uint64_t)e->off + PACK_RECORD_HEADER_LEN) < 0 ||
                            (int32_t)st_le32_get(head + 4) < s->cfg.zstd_cold_level)
                                dead_frame[p - s->packs] = true; /* (unreadable: copy_frame says why) */
                }
                live[n_live++] = (live_ref){ e->pack, e->off, id };
        }
        qsort(live, n_live, sizeof *live, cmp_live);

        /* Victims: packs with any dead byte. */
        _cleanup_free_ uint32_t *victims = malloc((np ? np : 1) * sizeof *victims);
        if (!victims)
                return -ENOMEM;
        size_t n_victims = 0;
        uint64_t old_bytes = 0;
        for (size_t i = 0; i < np; i++)
                if (s->packs[i].len > PACK_HEADER_LEN + live_bytes[i] || dead_frame[i]) {
                        victims[n_victims++] = s->packs[i].id;
                        old_bytes += s->packs[i].len;
                }
        if (n_victims == 0 && res->chunks_freed == 0)
                return res->counts_corrected ? store_commit(s) : 0;

        *ret_changed = true;
        s->idx_full = true; /* entries move and go: the next index is whole */
        r = store_mark_dirty(s);
        if (r < 0)
                return r;
        /* New output packs get ids above every victim, so appends never land
         * in a pack that is about to be deleted. */
        store_pack *out;
        if (n_victims > 0 && (r = store_pack_create(s, &out)) < 0)
                return r;
        uint64_t new_bytes = 0;
        uint32_t first_new = s->next_pack_id - 1;
        gc_verify ver = { .dctx = ZSTD_createDCtx(), .cctx = ZSTD_createCCtx(), .reterr = reterr,
                          .deferred = deferred };
        if (!ver.dctx || !ver.cctx) {
                ZSTD_freeDCtx(ver.dctx);
                ZSTD_freeCCtx(ver.cctx);
                return -ENOMEM;
        }
        for (size_t v = 0; v < n_victims; v++) {
                size_t a = 0;
                while (a < n_live && live[a].pack < victims[v])
                        a++;
                size_t b = a;
                while (b < n_live && live[b].pack == victims[v])
                        b++;
                r = copy_records(s, live + a, b - a, buf, &ver);
                if (r < 0)
                        break;
                if (o && o->progress)
                        o->progress(o->userdata, v + 1, n_victims);
        }
        ZSTD_freeDCtx(ver.dctx);
        ZSTD_freeCCtx(ver.cctx);
        free(ver.out);
        free(ver.rec);
        free(ver.gather);
        free(ver.built);
        if (r < 0)
                return r;
        r = index_filter(s->idx, keep_referenced, NULL);
        if (r < 0)
                return r;
        /* Drop the victims from the pack table, keeping their fds to close. */
        _cleanup_free_ int *old_fds = malloc((n_victims ? n_victims : 1) * sizeof(int));
        if (!old_fds)
                return -ENOMEM;
        size_t w = 0, k = 0;
        for (size_t i = 0; i < s->n_packs; i++) {
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
        s->n_packs = w;
        store_recount_totals(s);
        r = store_write_index(s);
        for (size_t i = 0; i < k; i++)
                close(old_fds[i]);
        if (r < 0)
                return r;
        for (size_t v = 0; v < n_victims; v++) {
                char name[32];
                pack_name(name, victims[v]);
                if (unlinkat(s->packs_fd, name, 0) < 0 && errno != ENOENT)
                        return -errno;
        }
        r = st_fsync_dir(s->packs_fd);
        if (r < 0)
                return r;
        res->packs_rewritten = n_victims;
        res->frames_recompressed = ver.recompressed;
        res->bytes_freed = old_bytes > new_bytes ? old_bytes - new_bytes : 0;
        return store_clear_dirty(s);
}

int st_store_gc(st_store *s, const st_import_opts *o, st_gc_result *ret, st_diag *reterr) {
        int r = store_exclusive(s);
        if (r < 0)
                return r;
        st_gc_result res = { 0 };
        pthread_mutex_lock(&s->write_lock);
        pthread_rwlock_wrlock(&s->lock);
        bool changed = false;
        r = gc_run(s, o, &res, &changed, reterr);
        pthread_rwlock_unlock(&s->lock);
        pthread_mutex_unlock(&s->write_lock);
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
