/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Recovery after a crash (or a lost or damaged index): trusts the index for
 * what it lists, scans pack bytes it does not cover, cuts torn record tails,
 * drops packs that only hold duplicates (leftovers of an interrupted gc), and
 * recounts every reference from the manifests. Idempotent: a crash during
 * recovery is recovered by the next open.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../util/cleanup.h"
#include "../util/fs.h"
#include "store-internal.h"

struct scan_ctx {
        st_store *s;
        int fd;
        uint32_t pack_id;
        uint64_t n_added;
        uint8_t *buf, *out;
        size_t buf_cap, out_cap;
        store_chunk_buf dup; /* for the indexed copy of a duplicate */
};

/* Index the chunk found at e (a record, or a slot of a frame). */
static int scan_add(struct scan_ctx *c, const st_digest *hash, const index_entry *found) {
        uint32_t id = index_find(c->s->idx, hash);
        if (id != INDEX_NONE) {
                /* A duplicate: dead bytes until gc, and a pack of nothing else
                 * is deleted; so only if the copy the index names is intact.
                 * If it is not, this good copy takes its place. */
                index_entry *e = index_get(c->s->idx, id);
                if (e->pack == INDEX_PACK_PENDING)
                        return 0;
                int k = store_read_entry(c->s, e, hash, &c->dup);
                if (k == -EBADMSG || k == -EIO) {
                        uint32_t refs = e->refs;
                        *e = *found;
                        memcpy(e->prefix, hash->b, INDEX_PREFIX_LEN);
                        e->refs = refs;
                        c->n_added++;
                        return 0;
                }
                return k < 0 ? k : 0;
        }
        if (index_add(c->s->idx, hash, found) == INDEX_NONE)
                return -ENOMEM;
        c->n_added++;
        return 0;
}

static int scan_record(void *ctx, uint64_t off, const pack_record *r) {
        struct scan_ctx *c = ctx;
        /* Pack tails that no clean index covers are verified record by record:
         * an import writes groups of records in parallel, so a crash can leave
         * a record whose header landed and whose payload did not, followed by
         * intact ones. The first bad record ends the pack; everything after it
         * belongs to the same unfinished operation, which no manifest names. */
        int k = st_buf_grow(&c->buf, &c->buf_cap, r->stored_len);
        if (k == 0)
                k = st_buf_grow(&c->out, &c->out_cap, r->raw_len);
        if (k < 0)
                return k;
        k = st_pread_full(c->fd, c->buf, r->stored_len, off + PACK_RECORD_HEADER_LEN);
        if (k == -EIO)
                return 1;
        if (k < 0)
                return k;
        if (pack_payload_decode(r, c->buf, c->out, NULL) < 0)
                return 1;
        index_entry e = { .pack = c->pack_id, .off = (uint32_t)off, .stored_len = r->stored_len,
                          .raw_len = r->raw_len };
        if (!(r->flags & PACK_FLAG_FRAME))
                return scan_add(c, &r->hash, &e);
        pack_frame f;
        if (pack_frame_parse(r, c->buf, &f) < 0)
                return 1; /* (checked by the decode) */
        for (uint32_t i = 0; i < f.n; i++) {
                st_digest h;
                pack_frame_slot(&f, i, &h, NULL, &e.raw_len);
                e.slot = i + 1;
                k = scan_add(c, &h, &e);
                if (k < 0)
                        return k;
        }
        return 0;
}

static bool writable(const st_store *s) {
        return store_files_writable(s);
}

/* Scan p from 'from' to the end of its file; cut a torn tail. */
static int scan_pack_tail(st_store *s, store_pack *p, uint64_t from, uint64_t *ret_added) {
        struct stat st;
        if (fstat(p->fd, &st) < 0)
                return -errno;
        uint64_t size = (uint64_t)st.st_size;
        struct scan_ctx c = { .s = s, .fd = p->fd, .pack_id = p->id };
        uint64_t end = from;
        if (size > from) {
                int r = pack_walk(p->fd, from, size, scan_record, &c, &end, NULL);
                free(c.buf);
                free(c.out);
                store_chunk_buf_done(&c.dup);
                if (r < 0)
                        return r;
                if (end < size && writable(s) && ftruncate(p->fd, (off_t)end) < 0)
                        return -errno;
        }
        p->len = end;
        if (ret_added)
                *ret_added = c.n_added;
        return 0;
}

static bool keep_below(void *ctx, uint32_t id, const index_entry *e) {
        (void)id;
        const store_pack *p = ctx;
        return e->pack != p->id || (uint64_t)e->off + PACK_RECORD_HEADER_LEN + e->stored_len <= p->len;
}

static int recover_listed(st_store *s) {
        for (size_t i = 0; i < s->n_packs; i++) {
                store_pack *p = &s->packs[i];
                struct stat st;
                if (fstat(p->fd, &st) < 0)
                        return -errno;
                if ((uint64_t)st.st_size < p->len) {
                        /* Bytes the index knew are gone: forget the chunks in them, so
                         * fsck reports the manifests that need them. */
                        p->lost = p->len - (uint64_t)st.st_size;
                        p->len = (uint64_t)st.st_size;
                        int r = index_filter(s->idx, keep_below, p);
                        if (r < 0)
                                return r;
                        continue;
                }
                int r = scan_pack_tail(s, p, p->len, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int insert_pack(st_store *s, store_pack pk) {
        store_pack *packs = realloc(s->packs, (s->n_packs + 1) * sizeof *packs);
        if (!packs)
                return -ENOMEM;
        s->packs = packs;
        size_t i = s->n_packs;
        while (i > 0 && packs[i - 1].id > pk.id) {
                packs[i] = packs[i - 1];
                i--;
        }
        packs[i] = pk;
        s->n_packs++;
        return 0;
}

static bool is_pack_name(const char *name) {
        uint32_t id;
        return pack_name_parse(name, &id);
}

static bool is_temp_file(const char *name) {
        size_t l = strlen(name);
        return name[0] == '.' && l > 5 && strcmp(name + l - 4, ".tmp") == 0;
}

static int recover_unlisted(st_store *s) {
        char **names;
        size_t n_names;
        int r = st_list_dir(s->packs_fd, is_pack_name, &names, &n_names);
        if (r < 0)
                return r;
        /* Pack names are fixed-width hex: sorted names are sorted ids. */
        uint32_t *ids = malloc((n_names ? n_names : 1) * sizeof *ids);
        size_t n = 0;
        for (size_t i = 0; ids && i < n_names; i++) {
                uint32_t id;
                if (pack_name_parse(names[i], &id) && !store_pack_find(s, id))
                        ids[n++] = id;
        }
        st_names_free(names, n_names);
        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; r == 0 && i < n; i++) {
                char name[32];
                pack_name(name, ids[i]);
                int pfd = openat(s->packs_fd, name, (writable(s) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
                if (pfd < 0) {
                        r = -errno;
                        break;
                }
                if (ids[i] >= s->next_pack_id)
                        s->next_pack_id = ids[i] + 1;
                uint8_t hdr[PACK_HEADER_LEN];
                uint32_t hid;
                if (st_pread_full(pfd, hdr, sizeof hdr, 0) < 0 ||
                    pack_header_decode(hdr, sizeof hdr, &hid, NULL) < 0 || hid != ids[i]) {
                        /* Created but never written (crash): nothing in it. A damaged
                         * header on a non-empty pack is left for fsck to report. */
                        struct stat st;
                        if (writable(s) && fstat(pfd, &st) == 0 && st.st_size <= PACK_HEADER_LEN)
                                (void)unlinkat(s->packs_fd, name, 0);
                        close(pfd);
                        continue;
                }
                store_pack pk = { .id = ids[i], .fd = pfd, .len = PACK_HEADER_LEN };
                uint64_t added = 0;
                r = scan_pack_tail(s, &pk, PACK_HEADER_LEN, &added);
                if (r < 0) {
                        close(pfd);
                        break;
                }
                if (added == 0 && writable(s)) {
                        /* Only copies of chunks we already have, intact where
                         * the index says: an interrupted gc's output or input. */
                        close(pfd);
                        (void)unlinkat(s->packs_fd, name, 0);
                        continue;
                }
                r = insert_pack(s, pk);
                if (r < 0)
                        close(pfd);
        }
        free(ids);
        return r;
}

static void remove_temp_files(int dirfd) {
        char **files;
        size_t n;
        if (st_list_dir(dirfd, is_temp_file, &files, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++)
                (void)unlinkat(dirfd, files[i], 0);
        st_names_free(files, n);
}

int store_recover(st_store *s, st_diag *reterr) {
        (void)reterr;
        s->idx_full = true; /* entries move and go: the next index is whole */
        int r = recover_listed(s);
        if (r == 0)
                r = recover_unlisted(s);
        /* Held back (1) when a ref or manifest is unreadable: then nothing
         * is pruned and the counts are a lower bound; gc recounts for itself. */
        if (r == 0)
                r = ST_MIN(store_prune_manifests(s, true, NULL, NULL), 0);
        if (r < 0)
                return r;
        store_recount_totals(s);
        if (!writable(s))
                return 0;
        remove_temp_files(s->refs_fd);
        remove_temp_files(s->manifests_fd);
        remove_temp_files(s->deltas_fd);
        remove_temp_files(s->dirfd);
        /* Delta files of no ref are kept: rm removes them before the ref,
         * so they mean a ref lost, and its volume's writes (fsck says so). */
        /* The state in memory is right even if it cannot be saved (a full
         * disk): stay dirty and carry on, so rm and gc can make room. */
        if (store_commit(s) == 0)
                s->index_problem = (st_diag){ 0 }; /* repaired: a fresh index is written */
        return 0;
}
