/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fsck: reads every record of every pack and re-hashes its payload (on every
 * core), checks that each index entry points at an intact record with its
 * hash, parses every manifest, checks that each extent's chunk exists with
 * the right length, and recounts references against the index's counts.
 * It reports; it never changes the store.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "store-internal.h"

typedef struct fsck_rec {
        uint64_t off;
        pack_record rec;
        int result;
} fsck_rec;

typedef struct fsck_ctx {
        st_store *s;
        st_fsck_report_fn report;
        void *userdata;
        st_fsck_result *res;
        /* per-pack record batch */
        store_pack *pack;
        fsck_rec *recs;
        size_t n_recs, cap_recs;
        struct {
                uint8_t *buf;
                size_t cap;
                uint8_t *out;
                size_t out_cap;
                ZSTD_DCtx *dctx;
        } *w;
        unsigned n_w;
        uint8_t *seen; /* per index entry: its record was found intact */
        bool lazy;          /* lazily pulled images exist: chunks may be missing for now */
        uint64_t n_not_fetched;
} fsck_ctx;

static void problem(fsck_ctx *c, int severity, const char *file, uint64_t off, const char *fmt, ...)
        __attribute__((format(printf, 5, 6)));
static void problem(fsck_ctx *c, int severity, const char *file, uint64_t off, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (severity)
                c->res->n_errors++;
        else
                c->res->n_warnings++;
        if (c->report)
                c->report(c->userdata, severity, file, off, msg);
}

static int collect(void *ctx, uint64_t off, const pack_record *r) {
        fsck_ctx *c = ctx;
        if (c->n_recs == c->cap_recs) {
                size_t cap = c->cap_recs ? c->cap_recs * 2 : 1024;
                fsck_rec *t = realloc(c->recs, cap * sizeof *t);
                if (!t)
                        return -ENOMEM;
                c->recs = t;
                c->cap_recs = cap;
        }
        c->recs[c->n_recs++] = (fsck_rec){ .off = off, .rec = *r };
        return 0;
}

static void verify_one(void *ctx, size_t i, unsigned worker) {
        fsck_ctx *c = ctx;
        fsck_rec *fr = &c->recs[i];
        __typeof__(c->w[0]) *w = &c->w[worker];
        if (!w->dctx)
                w->dctx = ZSTD_createDCtx();
        if (!w->dctx || st_buf_grow(&w->buf, &w->cap, fr->rec.stored_len) < 0 ||
            st_buf_grow(&w->out, &w->out_cap, fr->rec.raw_len) < 0) {
                fr->result = -ENOMEM;
                return;
        }
        int r = st_pread_full(c->pack->fd, w->buf, fr->rec.stored_len,
                              fr->off + PACK_RECORD_HEADER_LEN);
        if (r == 0)
                r = pack_payload_decode(&fr->rec, w->buf, w->out, w->dctx);
        fr->result = r;
}

/* One chunk of a record that was read (and verified, or not: fr->result):
 * is it the one the index points to, with the lengths it says? */
static int check_chunk(fsck_ctx *c, const fsck_rec *fr, const char *name, const st_digest *hash,
                       uint32_t raw_len, uint32_t slot) {
        c->res->chunks_checked++;
        c->res->bytes_checked += raw_len;
        uint32_t id = index_find(c->s->idx, hash);
        const index_entry *e = id != INDEX_NONE ? index_get(c->s->idx, id) : NULL;
        bool indexed = e && e->pack == c->pack->id && e->off == fr->off && e->slot == slot;
        if (fr->result < 0) {
                problem(c, indexed ? 1 : 0, name, fr->off, "chunk does not match its hash%s",
                        indexed ? "" : " (unindexed garbage)");
                return 0;
        }
        if (indexed) {
                if (e->stored_len != fr->rec.stored_len || e->raw_len != raw_len)
                        problem(c, 1, name, fr->off, "index lengths differ from the record");
                else
                        c->seen[id] = 1;
        }
        return 0;
}

/* A frame: each of its chunks, from its table (read again: the workers'
 * buffers are reused). */
static int check_frame(fsck_ctx *c, const fsck_rec *fr, const char *name) {
        uint8_t head[PACK_FRAME_HEAD_LEN];
        int r = st_pread_full(c->pack->fd, head, sizeof head, fr->off + PACK_RECORD_HEADER_LEN);
        uint32_t n = r == 0 ? st_le32_get(head) : 0;
        _cleanup_free_ uint8_t *table = NULL;
        pack_frame f = { 0 };
        if (n >= 2 && n <= PACK_FRAME_MAX_CHUNKS && pack_frame_table_len(n) < fr->rec.stored_len) {
                table = malloc(fr->rec.stored_len);
                if (!table)
                        return -ENOMEM;
                r = st_pread_full(c->pack->fd, table, fr->rec.stored_len,
                                  fr->off + PACK_RECORD_HEADER_LEN);
                if (r == 0)
                        r = pack_frame_parse(&fr->rec, table, &f);
        } else
                r = -EBADMSG;
        if (r < 0) {
                /* A table that does not check names no chunk to look for. */
                c->res->chunks_checked++;
                problem(c, 1, name, fr->off, "frame table damaged: its chunks cannot be found");
                return 0;
        }
        for (uint32_t k = 0; k < f.n; k++) {
                st_digest h;
                uint32_t len;
                pack_frame_slot(&f, k, &h, NULL, &len);
                r = check_chunk(c, fr, name, &h, len, k + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_pack(fsck_ctx *c, store_pack *p) {
        char name[40] = "packs/";
        pack_name(name + 6, p->id);
        struct stat st;
        if (fstat(p->fd, &st) < 0)
                return -errno;
        uint8_t hdr[PACK_HEADER_LEN];
        uint32_t hid;
        st_diag d = { 0 };
        if (st_pread_full(p->fd, hdr, sizeof hdr, 0) < 0 ||
            pack_header_decode(hdr, sizeof hdr, &hid, &d) < 0 || hid != p->id) {
                problem(c, 1, name, d.offset, "%s", d.what ? d.what : "bad pack header");
                return 0;
        }
        uint64_t size = (uint64_t)st.st_size;
        if (p->lost)
                problem(c, 1, name, size, "pack is shorter than the index says (%llu bytes lost)",
                        (unsigned long long)p->lost);
        else if (size < p->len)
                problem(c, 1, name, size, "pack is shorter than the index says (%llu bytes lost)",
                        (unsigned long long)(p->len - size));
        else if (size > p->len)
                problem(c, 0, name, p->len, "%llu bytes past the last indexed record",
                        (unsigned long long)(size - p->len));
        c->n_recs = 0;
        c->pack = p;
        uint64_t end;
        uint64_t lim = ST_MIN(size, p->len);
        int r = pack_walk(p->fd, PACK_HEADER_LEN, lim, collect, c, &end, &d);
        if (r < 0)
                return r;
        if (end < lim)
                problem(c, 1, name, d.offset, "%s; records after it cannot be read",
                        d.what ? d.what : "damaged record");
        st_pool_for(store_pool(c->s), c->n_recs, verify_one, c);
        for (size_t i = 0; i < c->n_recs; i++) {
                fsck_rec *fr = &c->recs[i];
                if (fr->result == -ENOMEM)
                        return -ENOMEM;
                r = fr->rec.flags & PACK_FLAG_FRAME ? check_frame(c, fr, name)
                                                     : check_chunk(c, fr, name, &fr->rec.hash,
                                                                   fr->rec.raw_len, 0);
                if (r < 0)
                        return r;
        }
        return 0;
}

static bool visible_name(const char *name) {
        return name[0] != '.';
}

static int check_manifest(fsck_ctx *c, const st_digest *mid, const manifest *m, uint32_t *counts) {
        char hex[ST_DIGEST_HEX_LEN + 1], file[80];
        st_digest_to_hex(mid, hex);
        snprintf(file, sizeof file, "manifests/%s", hex);
        c->res->manifests_checked++;
        for (size_t k = 0; k < m->n; k++) {
                if (manifest_hash_is_hole(&m->ext[k].hash))
                        continue;
                uint32_t id = index_find(c->s->idx, &m->ext[k].hash);
                uint64_t at = MANIFEST_HEADER_LEN + k * MANIFEST_EXTENT_LEN;
                if (id == INDEX_NONE) {
                        if (c->lazy)
                                c->n_not_fetched++; /* one warning at the end */
                        else
                                problem(c, 1, file, at, "extent at offset %llu: chunk missing",
                                        (unsigned long long)m->ext[k].off);
                        continue;
                }
                if (index_get(c->s->idx, id)->raw_len != m->ext[k].len)
                        problem(c, 1, file, at, "extent at offset %llu: length differs from its chunk",
                                (unsigned long long)m->ext[k].off);
                if (counts[id] < UINT32_MAX)
                        counts[id]++;
        }
        return 0;
}

/* Every ref must parse and reach a complete chain of sound manifests; each
 * reachable manifest is checked and counted once. */
static int check_manifests(fsck_ctx *c, uint32_t *counts) {
        char **names;
        size_t n;
        int r = store_list_names(c->s, &names, &n);
        if (r < 0)
                return r;
        st_digest *seen = NULL;
        size_t n_seen = 0;
        for (size_t i = 0; r == 0 && i < n; i++) {
                st_diag d = { 0 };
                store_ref ref;
                char file[300];
                snprintf(file, sizeof file, "refs/%s", names[i]);
                if (store_ref_load(c->s, names[i], &ref, &d) < 0) {
                        problem(c, 1, d.file[0] ? d.file : file,
                                d.offset == ST_DIAG_NO_OFFSET ? 0 : d.offset, "%s", d.what);
                        continue;
                }
                st_digest id = ref.manifest;
                for (int depth = 0; !manifest_hash_is_hole(&id); depth++) {
                        bool dup = false;
                        for (size_t k = 0; k < n_seen && !dup; k++)
                                dup = memcmp(&seen[k], &id, sizeof id) == 0;
                        if (dup)
                                break;
                        if (depth > MANIFEST_DEPTH_MAX) {
                                problem(c, 1, file, 0, "manifest chain too deep");
                                break;
                        }
                        manifest *m;
                        d = (st_diag){ 0 };
                        r = store_manifest_load(c->s, &id, &m, &d);
                        if (r < 0) {
                                if (r == -ENOMEM)
                                        break;
                                problem(c, 1, d.file, d.offset == ST_DIAG_NO_OFFSET ? 0 : d.offset,
                                        "%s (needed by %s)", d.what, names[i]);
                                r = 0;
                                break;
                        }
                        st_digest *t = realloc(seen, (n_seen + 1) * sizeof *t);
                        if (!t) {
                                manifest_free(m);
                                r = -ENOMEM;
                                break;
                        }
                        seen = t;
                        seen[n_seen++] = id;
                        if (m->size != ref.size)
                                problem(c, 1, file, 24, "size differs from its manifest's");
                        check_manifest(c, &id, m, counts);
                        id = m->parent;
                        manifest_free(m);
                }
        }
        free(seen);
        store_free_names(names, n);
        return r;
}

static bool is_visible(const char *name) {
        return name[0] != '.';
}

static void check_unlisted_packs(fsck_ctx *c) {
        char **files;
        size_t n;
        if (st_list_dir(c->s->packs_fd, is_visible, &files, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                uint32_t id;
                if (!pack_name_parse(files[i], &id))
                        problem(c, 0, "packs", 0, "unexpected file '%s'", files[i]);
                else if (!store_pack_find(c->s, id))
                        problem(c, 0, "packs", 0, "pack '%s' is not in the index", files[i]);
        }
        st_names_free(files, n);
}

int st_store_fsck(st_store *s, st_fsck_report_fn report, void *userdata, const st_import_opts *o,
                  st_fsck_result *ret) {
        st_fsck_result res = { 0 };
        fsck_ctx c = { .s = s, .report = report, .userdata = userdata, .res = &res };
        {
                /* DIR/sources/NAME: lazily pulled images (lib/remote) */
                char **src = NULL;
                size_t n_src = 0;
                int sfd = openat(s->dirfd, "sources", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                c.lazy = sfd >= 0 && st_list_dir(sfd, visible_name, &src, &n_src) == 0 && n_src > 0;
                st_names_free(src, n_src);
                if (sfd >= 0)
                        close(sfd);
        }
        /* Nothing changes the store while fsck reads it. */
        store_change_begin(s);
        st_pool *pool = store_pool(s);
        if (!pool)
                return -ENOMEM;
        uint32_t n = index_count(s->idx);
        c.n_w = st_pool_size(pool);
        c.w = calloc(c.n_w, sizeof *c.w);
        c.seen = calloc(n ? n : 1, 1);
        _cleanup_free_ uint32_t *counts = calloc(n ? n : 1, sizeof(uint32_t));
        int r = (c.w && c.seen && counts) ? 0 : -ENOMEM;
        if (r == 0 && s->index_problem.what)
                problem(&c, 1, s->index_problem.file[0] ? s->index_problem.file : "index",
                        s->index_problem.offset, "%s%s", s->index_problem.what,
                        strstr(s->index_problem.what, "packs") ? ""
                        : strstr(s->index_problem.file, "index.log")
                                ? " (the packs past it were read again)"
                                : " (the index was rebuilt from the packs)");
        for (size_t i = 0; r == 0 && i < s->n_lost_packs; i++) {
                char name[48];
                pack_name(name, s->lost_packs[i]);
                char path[64];
                snprintf(path, sizeof path, "packs/%s", name);
                problem(&c, 1, path, ST_DIAG_NO_OFFSET,
                        "pack listed in the index is missing (its chunks are lost; the index "
                        "was rebuilt from the other packs)");
        }
        for (size_t i = 0; r == 0 && i < s->n_packs; i++) {
                r = check_pack(&c, &s->packs[i]);
                if (o && o->progress)
                        o->progress(o->userdata, i + 1, s->n_packs);
        }
        if (r == 0)
                check_unlisted_packs(&c);
        if (r == 0)
                r = check_manifests(&c, counts);
        if (r == 0 && c.n_not_fetched)
                problem(&c, 0, "sources", ST_DIAG_NO_OFFSET,
                        "%llu extents of lazily pulled images name chunks not fetched yet "
                        "(read, or pull without --lazy, to fetch them)",
                        (unsigned long long)c.n_not_fetched);
        for (uint32_t id = 0; r == 0 && id < n; id++) {
                const index_entry *e = index_get(s->idx, id);
                if (!c.seen[id])
                        problem(&c, 1, "index", INDEX_FILE_HEADER_LEN + (uint64_t)id * INDEX_FILE_ENTRY_LEN,
                                "entry %u points to no intact record (pack %08x offset %u)", id,
                                e->pack, e->off);
                if (counts[id] != e->refs)
                        problem(&c, 1, "index", INDEX_FILE_HEADER_LEN + (uint64_t)id * INDEX_FILE_ENTRY_LEN,
                                "entry %u: reference count %u, manifests refer to it %u times", id,
                                e->refs, counts[id]);
                else if (e->refs == 0)
                        problem(&c, 0, "index", INDEX_FILE_HEADER_LEN + (uint64_t)id * INDEX_FILE_ENTRY_LEN,
                                "entry %u is unreferenced (gc frees it)", id);
        }
        if (c.w) {
                for (unsigned i = 0; i < c.n_w; i++) {
                        free(c.w[i].buf);
                        free(c.w[i].out);
                        ZSTD_freeDCtx(c.w[i].dctx);
                }
                free(c.w);
        }
        free(c.seen);
        free(c.recs);
        store_change_end(s);
        if (r < 0)
                return r;
        if (ret)
                *ret = res;
        return 0;
}
