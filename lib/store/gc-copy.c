/* SPDX-License-Identifier: Apache-2.0 */
/* gc's copy of live records into new packs; see gc-copy.h. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/diag.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "gc-copy.h"

#define GC_COPY_BUF (8u << 20)
#define GC_FRAME_RAW (256u << 10) /* deferred records are framed up to this */

int gc_copy_init(gc_copy *c, st_store *s, st_diag *reterr) {
        *c = (gc_copy){ .s = s, .reterr = reterr, .dctx = ZSTD_createDCtx(),
                        .cctx = ZSTD_createCCtx(), .buf = malloc(GC_COPY_BUF) };
        if (!c->dctx || !c->cctx || !c->buf) {
                gc_copy_done(c);
                return -ENOMEM;
        }
        return 0;
}

void gc_copy_done(gc_copy *c) {
        ZSTD_freeDCtx(c->dctx);
        ZSTD_freeCCtx(c->cctx);
        free(c->buf);
        free(c->out);
        free(c->rec);
        free(c->gather);
        free(c->built);
        free(c->merge);
        c->dctx = c->cctx = NULL;
        c->buf = c->out = c->rec = c->gather = c->built = c->merge = NULL;
}

static int damaged(gc_copy *c, uint32_t pack_id, uint64_t off) {
        char file[48];
        pack_name(file, pack_id);
        char path[64];
        snprintf(path, sizeof path, "packs/%s", file);
        return st_diag_fail(c->reterr, path, off,
                            "a chunk in use is damaged: gc stopped before dropping any "
                            "pack (run 'stellar fsck')",
                            -EBADMSG);
}

bool gc_copy_needs_work(st_store *s, int fd, gc_live *l) {
        int cold = s->cfg.zstd_cold_level;
        if (cold == 0)
                return false;
        if (l->e.slot == 0) {
                if (l->e.stored_len != l->e.raw_len)
                        return false; /* compressed on its own */
                uint8_t hdr[PACK_RECORD_HEADER_LEN];
                pack_record rec;
                l->deferred = st_pread_full(fd, hdr, sizeof hdr, l->e.off) == 0 &&
                              pack_record_decode(hdr, sizeof hdr, &rec, NULL) == 0 &&
                              rec.flags == PACK_FLAG_DEFERRED;
                return l->deferred;
        }
        uint8_t head[PACK_FRAME_HEAD_LEN];
        return st_pread_full(fd, head, sizeof head, (uint64_t)l->e.off + PACK_RECORD_HEADER_LEN) < 0 ||
               (int32_t)st_le32_get(head + 4) < cold; /* (unreadable: the copy says why) */
}

/* Room for len bytes at the end of the current output pack, reserved under
 * the store's lock (a lazy fetch may append to the same pack meanwhile). */
static int reserve(gc_copy *c, uint64_t len, int *ret_fd, uint32_t *ret_pack, uint64_t *ret_off) {
        st_store *s = c->s;
        pthread_rwlock_wrlock(&s->lock);
        store_pack *dst;
        int r = store_pack_for_append(s, len, &dst);
        if (r == 0) {
                *ret_fd = dst->fd;
                *ret_pack = dst->id;
                *ret_off = dst->len;
                dst->len += len;
                dst->unsynced = true;
        }
        pthread_rwlock_unlock(&s->lock);
        return r;
}

/* Append one record (header, payload); e moves there. */
static int append_record(gc_copy *c, const pack_record *rec, const void *payload, index_entry *e) {
        uint8_t hdr[PACK_RECORD_HEADER_LEN];
        pack_record_encode(hdr, rec);
        int fd = -1;
        uint32_t pack_id = 0;
        uint64_t off = 0;
        int r = reserve(c, PACK_RECORD_HEADER_LEN + (uint64_t)rec->stored_len, &fd, &pack_id, &off);
        if (r < 0)
                return r;
        struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)payload, rec->stored_len } };
        r = st_pwritev_full(fd, iov, 2, off);
        if (r < 0)
                return r;
        e->pack = pack_id;
        e->off = (uint32_t)off;
        e->stored_len = rec->stored_len;
        return 0;
}

/* One chunk as a record of its own, compressed at level if that makes it
 * smaller (else raw: never deferred again). */
static int append_single(gc_copy *c, const pack_frame_src *ch, int level, index_entry *e) {
        int r = st_buf_grow(&c->built, &c->built_cap, ZSTD_compressBound(ch->len));
        if (r < 0)
                return r;
        size_t z = ZSTD_compressCCtx(c->cctx, c->built, c->built_cap, ch->data, ch->len, level);
        bool zstd = !ZSTD_isError(z) && z < ch->len;
        pack_record one = { .flags = zstd ? PACK_FLAG_ZSTD : 0, .raw_len = ch->len,
                            .stored_len = zstd ? (uint32_t)z : ch->len, .hash = ch->hash };
        e->slot = 0;
        return append_record(c, &one, zstd ? c->built : ch->data, e);
}

/* The frame record rec as it is (payload), every live[0..m) moved there. */
static int append_frame_as_is(gc_copy *c, const pack_record *rec, const uint8_t *payload,
                              gc_live *live, size_t m) {
        index_entry at = { 0 };
        int r = append_record(c, rec, payload, &at);
        for (size_t q = 0; r == 0 && q < m; q++) {
                live[q].e.pack = at.pack;
                live[q].e.off = at.off;
        }
        return r;
}

/* The chunks in keep[0..n) (of live[0..n)) as one frame at level; 0 when
 * zstd gains nothing over stored_before (0: any gain), 1 when written. */
static int append_frame(gc_copy *c, const pack_frame_src *keep, gc_live *live, uint32_t n,
                        size_t raw, int level, uint64_t stored_before) {
        int r = st_buf_grow(&c->gather, &c->gather_cap, raw ? raw : 1);
        if (r == 0)
                r = st_buf_grow(&c->built, &c->built_cap, pack_frame_bound(n, raw));
        if (r < 0)
                return r;
        pack_record nr;
        int64_t len = pack_frame_build(c->cctx, level, keep, n, c->gather, c->built, &nr);
        if (len <= 0 || (stored_before && (uint64_t)len >= stored_before))
                return len < 0 ? (int)len : 0;
        index_entry at = { 0 };
        r = append_record(c, &nr, c->built, &at);
        for (uint32_t q = 0; r == 0 && q < n; q++) {
                live[q].e.pack = at.pack;
                live[q].e.off = at.off;
                live[q].e.stored_len = nr.stored_len;
                live[q].e.slot = q + 1;
        }
        return r < 0 ? r : 1;
}

/* The frame record of e0 read into c->rec, its header and table checked:
 * 0, -EIO (beyond the pack's end), -EBADMSG (not such a record) or an errno. */
static int read_frame(gc_copy *c, const gc_src *src, const index_entry *e0, pack_record *rec,
                      pack_frame *f) {
        size_t rl = PACK_RECORD_HEADER_LEN + (size_t)e0->stored_len;
        int r = st_buf_grow(&c->rec, &c->rec_cap, rl);
        if (r < 0)
                return r;
        r = (uint64_t)e0->off + rl > src->len ? -EIO : st_pread_full(src->fd, c->rec, rl, e0->off);
        if (r == 0 && (pack_record_decode(c->rec, PACK_RECORD_HEADER_LEN, rec, NULL) < 0 ||
                       rec->stored_len != e0->stored_len ||
                       pack_frame_parse(rec, c->rec + PACK_RECORD_HEADER_LEN, f) < 0))
                r = -EBADMSG;
        return r;
}

/* Slot e->slot of frame f, whose bytes are at bytes: the chunk e names, its
 * length and hash checked? Fills *ret (hash, data, length). */
static bool slot_verified(const pack_frame *f, const uint8_t *bytes, const index_entry *e,
                          pack_frame_src *ret) {
        uint32_t off, len;
        if (e->slot == 0 || e->slot > f->n)
                return false;
        pack_frame_slot(f, e->slot - 1, &ret->hash, &off, &len);
        st_digest got;
        st_hash(bytes + off, len, &got);
        ret->data = bytes + off;
        ret->len = len;
        return len == e->raw_len && memcmp(got.b, ret->hash.b, ST_DIGEST_LEN) == 0 &&
               memcmp(got.b, e->prefix, INDEX_PREFIX_LEN) == 0;
}

/* The live chunks of one frame record (live[0..m), all at one offset): the
 * record copied as it is when every chunk in it lives and it was made at
 * the cold level, else a new frame of the live ones (one alone becomes a
 * plain record). Each chunk kept is verified first. */
static int copy_frame(gc_copy *c, const gc_src *src, gc_live *live, size_t m) {
        st_store *s = c->s;
        const index_entry *e0 = &live[0].e;
        pack_record rec;
        pack_frame f;
        int r = read_frame(c, src, e0, &rec, &f);
        if (r == 0)
                r = st_buf_grow(&c->out, &c->out_cap, rec.raw_len);
        if (r == 0 && pack_frame_inflate(&rec, &f, c->out, c->dctx) < 0)
                r = -EBADMSG;
        if (r == -EIO || r == -EBADMSG)
                return damaged(c, src->id, e0->off);
        if (r < 0)
                return r;
        pack_frame_src keep[PACK_FRAME_MAX_CHUNKS];
        uint32_t n = 0;
        for (size_t q = 0; q < m; q++) {
                if (n == PACK_FRAME_MAX_CHUNKS || !slot_verified(&f, c->out, &live[q].e, &keep[n]))
                        return damaged(c, src->id, e0->off);
                n++;
        }
        int cold = s->cfg.zstd_cold_level;
        bool recompress = cold > 0 && f.level < cold;
        if (n == f.n && !recompress) /* all of it lives: byte for byte */
                return append_frame_as_is(c, &rec, c->rec + PACK_RECORD_HEADER_LEN, live, m);
        int level = recompress || s->cfg.zstd_level == ST_ZSTD_DEFER ? cold : s->cfg.zstd_level;
        c->recompressed += recompress;
        if (n >= 2) {
                r = append_frame(c, keep, live, n, rec.raw_len, level, n == f.n ? rec.stored_len : 0);
                if (r != 0)
                        return r < 0 ? r : 0;
                if (n == f.n) {
                        /* No gain at the cold level: the frame as it was,
                         * marked as tried so that no gc tries again. */
                        uint8_t *payload = c->rec + PACK_RECORD_HEADER_LEN;
                        st_le32_put(payload + 4, (uint32_t)cold);
                        st_hash(payload, pack_frame_table_len(f.n), &rec.hash);
                        return append_frame_as_is(c, &rec, payload, live, m);
                }
        }
        /* One chunk left, or chunks that no longer compress together: each
         * a record of its own. */
        for (size_t q = 0; q < m; q++) {
                r = append_single(c, &keep[q], level, &live[q].e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Frames made below the cold level, one after another from live[0] (of n),
 * every chunk of each live: as many as fit a deferred run's frame
 * (GC_FRAME_RAW, PACK_FRAME_MAX_CHUNKS) remade as one frame at the cold
 * level, since the larger frame compresses better. Returns the entries it
 * moved; 0 when fewer than two such frames are there or zstd gains nothing,
 * *ret_tried then saying how many records (at least 1) to copy one by one.
 * Each chunk is verified first. */
static int64_t copy_frames_merged(gc_copy *c, const gc_src *src, gc_live *live, size_t n,
                                  size_t *ret_tried) {
        int cold = c->s->cfg.zstd_cold_level;
        pack_frame_src keep[PACK_FRAME_MAX_CHUNKS];
        size_t raw = 0, used = 0, records = 0;
        uint32_t count = 0;
        uint64_t stored = 0;
        *ret_tried = 1;
        /* (room for the largest merge at once: keep[] points into it) */
        int k = st_buf_grow(&c->merge, &c->merge_cap, GC_FRAME_RAW);
        if (k < 0)
                return k;
        while (used < n && live[used].e.slot > 0) {
                const index_entry *e0 = &live[used].e;
                size_t m = 1;
                while (used + m < n && live[used + m].e.off == e0->off)
                        m++;
                size_t rl = PACK_RECORD_HEADER_LEN + (size_t)e0->stored_len;
                pack_record rec;
                pack_frame f;
                int r = read_frame(c, src, e0, &rec, &f);
                if ((r == -EIO || r == -EBADMSG) && records) {
                        *ret_tried = records; /* (those first; then this one says what) */
                        return 0;
                }
                if (r == -EIO || r == -EBADMSG)
                        return damaged(c, src->id, e0->off);
                if (r < 0)
                        return r;
                if (f.level >= cold || m != f.n || raw + rec.raw_len > GC_FRAME_RAW ||
                    count + f.n > PACK_FRAME_MAX_CHUNKS)
                        break;
                if (pack_frame_inflate(&rec, &f, c->merge + raw, c->dctx) < 0) {
                        if (!records)
                                return damaged(c, src->id, e0->off);
                        *ret_tried = records;
                        return 0;
                }
                for (size_t q = 0; q < m; q++) {
                        if (!slot_verified(&f, c->merge + raw, &live[used + q].e, &keep[count]))
                                return damaged(c, src->id, e0->off);
                        count++;
                }
                raw += rec.raw_len;
                stored += rl;
                used += m;
                records++;
        }
        *ret_tried = records ? records : 1;
        if (records < 2)
                return 0;
        int r = append_frame(c, keep, live, count, raw, cold, stored - PACK_RECORD_HEADER_LEN);
        if (r <= 0)
                return r;
        c->recompressed += records;
        return (int64_t)used;
}

/* A run of records whose compression was deferred (live[0..m), in pack
 * order, at most a frame's worth): each read and verified, then one frame
 * of them at the cold level, or records of their own if that gains nothing. */
static int copy_deferred(gc_copy *c, const gc_src *src, gc_live *live, size_t m) {
        size_t raw = 0;
        for (size_t q = 0; q < m; q++)
                raw += live[q].e.raw_len;
        int r = st_buf_grow(&c->out, &c->out_cap, raw ? raw : 1);
        if (r < 0)
                return r;
        pack_frame_src keep[PACK_FRAME_MAX_CHUNKS];
        size_t at = 0;
        for (size_t q = 0; q < m; q++) {
                index_entry *e = &live[q].e;
                uint8_t hdr[PACK_RECORD_HEADER_LEN];
                pack_record rec;
                uint64_t end = (uint64_t)e->off + PACK_RECORD_HEADER_LEN + e->raw_len;
                r = end > src->len ? -EIO : st_pread_full(src->fd, hdr, sizeof hdr, e->off);
                if (r == 0 && (pack_record_decode(hdr, sizeof hdr, &rec, NULL) < 0 ||
                               rec.flags != PACK_FLAG_DEFERRED || rec.raw_len != e->raw_len ||
                               memcmp(rec.hash.b, e->prefix, INDEX_PREFIX_LEN) != 0))
                        r = -EBADMSG;
                if (r == 0)
                        r = st_pread_full(src->fd, c->out + at, e->raw_len,
                                          (uint64_t)e->off + PACK_RECORD_HEADER_LEN);
                if (r == 0) {
                        st_digest got;
                        st_hash(c->out + at, e->raw_len, &got);
                        if (memcmp(got.b, rec.hash.b, ST_DIGEST_LEN) != 0)
                                r = -EBADMSG;
                }
                if (r == -EIO || r == -EBADMSG)
                        return damaged(c, src->id, e->off);
                if (r < 0)
                        return r;
                keep[q] = (pack_frame_src){ .hash = rec.hash, .data = c->out + at, .len = e->raw_len };
                at += e->raw_len;
        }
        int level = c->s->cfg.zstd_cold_level;
        c->recompressed++;
        if (m >= 2) {
                r = append_frame(c, keep, live, (uint32_t)m, raw, level, 0);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        for (size_t q = 0; q < m; q++) {
                r = append_single(c, &keep[q], level, &live[q].e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Is the record at p (header and payload) the chunk the entry says? */
static int verify_record(gc_copy *c, uint32_t pack_id, const index_entry *e, const uint8_t *p) {
        pack_record rec;
        int r = p ? pack_record_decode(p, PACK_RECORD_HEADER_LEN, &rec, NULL) : -EBADMSG;
        if (r == 0 && (rec.stored_len != e->stored_len || rec.raw_len != e->raw_len ||
                       memcmp(rec.hash.b, e->prefix, INDEX_PREFIX_LEN) != 0))
                r = -EBADMSG;
        if (r == 0)
                r = st_buf_grow(&c->out, &c->out_cap, rec.raw_len ? rec.raw_len : 1);
        if (r == 0)
                r = pack_payload_decode(&rec, p + PACK_RECORD_HEADER_LEN, c->out, c->dctx);
        return r == -EBADMSG ? damaged(c, pack_id, e->off) : r;
}

/* Plain records, live[0..k): read in runs into buf, verified, appended as
 * they are. */
static int copy_plain(gc_copy *c, const gc_src *src, gc_live *live, size_t k, uint8_t *buf,
                      uint64_t len) {
        uint64_t w = 0;
        for (size_t q = 0; q < k; q++) {
                const index_entry *e = &live[q].e;
                size_t rl = PACK_RECORD_HEADER_LEN + e->stored_len;
                int r = (uint64_t)e->off + rl > src->len ? -EIO
                                                        : st_pread_full(src->fd, buf + w, rl, e->off);
                r = r == 0 ? verify_record(c, src->id, e, buf + w)
                    : r == -EIO ? verify_record(c, src->id, e, NULL)
                                : r;
                if (r < 0)
                        return r;
                w += rl;
        }
        int fd = -1;
        uint32_t pack_id = 0;
        uint64_t off = 0;
        int r = reserve(c, len, &fd, &pack_id, &off);
        if (r == 0)
                r = st_pwrite_full(fd, buf, (size_t)len, off);
        if (r < 0)
                return r;
        for (size_t q = 0; q < k; q++) {
                index_entry *e = &live[q].e;
                e->pack = pack_id;
                e->off = (uint32_t)off;
                off += PACK_RECORD_HEADER_LEN + e->stored_len;
        }
        return 0;
}

int gc_copy_pack(gc_copy *c, const gc_src *src, gc_live *live, size_t n) {
        size_t i = 0;
        while (i < n) {
                int r;
                size_t k = i + 1;
                if (live[i].e.slot > 0) {
                        size_t tried;
                        int64_t moved = copy_frames_merged(c, src, live + i, n - i, &tried);
                        if (moved < 0)
                                return (int)moved;
                        if (moved > 0) {
                                i += (size_t)moved;
                                continue;
                        }
                        /* (the records it looked at, one by one) */
                        for (size_t t = 0; t < tried && i < n && live[i].e.slot > 0; t++) {
                                k = i + 1;
                                while (k < n && live[k].e.off == live[i].e.off)
                                        k++;
                                r = copy_frame(c, src, live + i, k - i);
                                if (r < 0)
                                        return r;
                                i = k;
                        }
                        continue;
                } else if (live[i].deferred && c->s->cfg.zstd_cold_level > 0) {
                        uint64_t raw = live[i].e.raw_len;
                        while (k < n && live[k].deferred && k - i < PACK_FRAME_MAX_CHUNKS &&
                               raw + live[k].e.raw_len <= GC_FRAME_RAW)
                                raw += live[k++].e.raw_len;
                        r = copy_deferred(c, src, live + i, k - i);
                } else {
                        uint64_t len = PACK_RECORD_HEADER_LEN + (uint64_t)live[i].e.stored_len;
                        while (k < n && live[k].e.slot == 0 &&
                               !(live[k].deferred && c->s->cfg.zstd_cold_level > 0)) {
                                uint64_t rl = PACK_RECORD_HEADER_LEN + (uint64_t)live[k].e.stored_len;
                                if (len + rl > GC_COPY_BUF)
                                        break;
                                len += rl;
                                k++;
                        }
                        uint8_t *buf = c->buf, *big = NULL;
                        if (len > GC_COPY_BUF && !(buf = big = malloc((size_t)len)))
                                return -ENOMEM; /* (a single huge record: a buffer just for it) */
                        r = copy_plain(c, src, live + i, k - i, buf, len);
                        free(big);
                }
                if (r < 0)
                        return r;
                i = k;
        }
        return 0;
}
