/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pull: refs/NAME -> the manifest chain (each layer verified against its
 * name) -> the chunks the store lacks, fetched in parallel and verified ->
 * appended to packs as they come (a frame that compresses is stored as it
 * arrived) -> the manifests and the name, last. The index is committed
 * every PULL_COMMIT_BYTES, so an interrupted pull resumes where it stopped;
 * recovery finds anything after the last commit.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/remote.h>

#include "../store/store-api.h"
#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "blob.h"
#include "chain.h"
#include "manifest-json.h"
#include "pull.h"
#include "target.h"

#define PULL_BATCH_BYTES (8u << 20)
#define PULL_COMMIT_BYTES (256ull << 20)
#define PULL_FLUSH_NS 500000000ull

typedef struct puller {
        st_store *s;
        target *t;
        const st_transfer_opts *o;
        st_pull_result *res;
        const st_digest *missing;
        const uint32_t *missing_lens;
        size_t n_missing, next;
        ZSTD_DCtx *dctx;
        uint8_t *raw;
        size_t raw_cap;
        chunk_batch batch; /* verified chunks waiting to be appended */
        uint64_t since_commit;
        uint64_t last_flush_ns;
        st_diag *err;
} puller;

static uint64_t mono_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int pull_read_ref(target *t, const char *name, st_digest *ret, uint64_t *bytes, st_diag *reterr) {
        char key[300];
        snprintf(key, sizeof key, "refs/%s", name);
        uint8_t *buf;
        size_t len;
        int r = target_get(t, key, 4096, &buf, &len, reterr);
        if (r < 0)
                return r;
        *bytes += len;
        char hex[ST_DIGEST_HEX_LEN + 1] = "";
        if (len >= ST_DIGEST_HEX_LEN)
                memcpy(hex, buf, ST_DIGEST_HEX_LEN);
        bool ok = len >= ST_DIGEST_HEX_LEN && len <= ST_DIGEST_HEX_LEN + 2 &&
                  st_digest_from_hex(hex, ret) == 0;
        for (size_t i = ST_DIGEST_HEX_LEN; ok && i < len; i++)
                ok = buf[i] == '\n' || buf[i] == '\r';
        free(buf);
        if (!ok) {
                char url[512];
                target_url(t, key, url, sizeof url);
                return st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET,
                                    "not a name file (64 hex digits and a newline)", -EBADMSG);
        }
        return 0;
}

int pull_read_chain(target *t, const st_digest *top, layer_chain *ret, uint64_t *bytes,
                    st_diag *reterr) {
        layer_chain c = { .layers = calloc(MANIFEST_DEPTH_MAX + 1, sizeof(manifest *)) };
        if (!c.layers)
                return -ENOMEM;
        st_digest id = *top;
        int r = 0;
        while (r == 0 && !manifest_hash_is_hole(&id)) {
                char hex[ST_DIGEST_HEX_LEN + 1], key[128], url[512];
                st_digest_to_hex(&id, hex);
                snprintf(key, sizeof key, "manifests/%s.json", hex);
                target_url(t, key, url, sizeof url);
                if (c.n > MANIFEST_DEPTH_MAX) {
                        r = st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "manifest chain too deep",
                                         -ELOOP);
                        break;
                }
                uint8_t *buf;
                size_t len;
                r = target_get(t, key, JSON_MANIFEST_MAX, &buf, &len, reterr);
                if (r < 0)
                        break;
                *bytes += len;
                st_digest h;
                st_hash(buf, len, &h);
                manifest *m = NULL;
                if (memcmp(h.b, id.b, ST_DIGEST_LEN) != 0)
                        r = st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET,
                                         "manifest's bytes do not match its name (BLAKE3)", -EBADMSG);
                else {
                        st_diag d = { 0 };
                        r = json_manifest_parse(buf, len, &m, &d);
                        if (r < 0 && reterr)
                                (void)st_diag_fail(reterr, url, d.offset, d.what, r);
                }
                free(buf);
                if (r < 0)
                        break;
                c.layers[c.n++] = m;
                id = m->parent;
        }
        if (r < 0) {
                chain_free(&c);
                return r;
        }
        chain_reverse(&c);
        *ret = c;
        return 0;
}

int pull_local_ids(layer_chain *c, st_digest *ret_top) {
        st_digest below = { 0 };
        for (size_t i = 0; i < c->n; i++) {
                c->layers[i]->parent = below;
                uint8_t *buf;
                size_t len;
                int r = manifest_encode(c->layers[i], &buf, &len);
                if (r < 0)
                        return r;
                st_hash(buf, len, &below);
                free(buf);
        }
        *ret_top = below;
        return 0;
}

static int flush_batch(puller *p) {
        uint64_t stored = 0;
        int r = chunk_batch_flush(&p->batch, p->s, &stored);
        p->last_flush_ns = mono_ns();
        if (r < 0)
                return st_diag_fail(p->err, "packs", ST_DIAG_NO_OFFSET, "cannot append to the store", r);
        p->since_commit += stored;
        if (p->since_commit >= PULL_COMMIT_BYTES) {
                r = store_checkpoint(p->s);
                p->since_commit = 0;
                if (r < 0)
                        return st_diag_fail(p->err, "index", ST_DIAG_NO_OFFSET, "cannot write index", r);
        }
        return 0;
}

static int pull_next(void *ctx, target_req *q) {
        puller *p = ctx;
        if (p->next >= p->n_missing)
                return 0;
        target_req_blob(q, &p->missing[p->next++]);
        return 1;
}

static int pull_done(void *ctx, target_req *q) {
        puller *p = ctx;
        if (q->err < 0)
                return q->err;
        const st_digest *id = q->user;
        const char *why = NULL;
        int64_t n = blob_verify(id, q->data, q->len, &p->raw, &p->raw_cap, p->dctx, &why);
        if (n == -EBADMSG)
                return 1; /* try again; the engine gives up after its retries */
        if (n < 0)
                return (int)n;
        if ((uint64_t)n != p->missing_lens[id - p->missing]) {
                char url[1024];
                target_url(p->t, q->key, url, sizeof url);
                return st_diag_fail(p->err, url, ST_DIAG_NO_OFFSET,
                                    "the chunk's length differs from the manifest's extent",
                                    -EBADMSG);
        }
        if (chunk_batch_add(&p->batch, id, q->data, q->len, p->raw, (size_t)n) < 0)
                return -ENOMEM;
        p->res->n_fetched++;
        p->res->bytes_fetched += q->len;
        p->res->raw_fetched += (uint64_t)n;
        if (p->o && p->o->progress)
                p->o->progress(p->o->userdata, p->res->n_fetched, p->n_missing);
        /* Append in batches, and at least every PULL_FLUSH_NS on a slow
         * link: what was fetched before a crash or kill is kept. */
        return p->batch.len >= PULL_BATCH_BYTES || mono_ns() - p->last_flush_ns > PULL_FLUSH_NS
                       ? flush_batch(p)
                       : 0;
}

/* How many of the chunks the store lacked it has now. A chunk counts once
 * store_put_chunks has indexed it; a group it failed to append is cut from
 * the pack, so this is what the next open finds too. Not n_fetched: that
 * counts chunks verified, and those still in the batch when an append
 * failed (a full disk) never reached the store. */
static uint64_t count_kept(st_store *s, const st_digest *missing, size_t n) {
        uint64_t k = 0;
        for (size_t i = 0; i < n; i++)
                k += store_chunk_lookup(s, &missing[i], NULL, NULL) == 0;
        return k;
}

/* The chunks of c the store lacks, and the length each must have. A chunk
 * the store has must have the length the manifest gives it. */
static int find_missing(st_store *s, const layer_chain *c, st_digest **ret, uint32_t **ret_lens,
                        size_t *ret_n, st_pull_result *res, st_diag *reterr) {
        const st_digest *all;
        uint32_t *lens;
        size_t n;
        int r = chain_chunks(c, &all, &n, &lens, NULL);
        if (r == -EBADMSG)
                return st_diag_fail(reterr, "manifest", ST_DIAG_NO_OFFSET,
                                    "manifest: extents give one chunk two different lengths", r);
        if (r < 0)
                return r;
        st_digest *miss = malloc((n ? n : 1) * sizeof *miss);
        uint32_t *miss_lens = malloc((n ? n : 1) * sizeof *miss_lens);
        if (!miss || !miss_lens) {
                free(miss);
                free(miss_lens);
                free((void *)all);
                free(lens);
                return -ENOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; r == 0 && i < n; i++) {
                uint32_t have_len;
                if (store_chunk_lookup(s, &all[i], &have_len, NULL) < 0) {
                        miss_lens[k] = lens[i];
                        miss[k++] = all[i];
                } else if (have_len != lens[i])
                        r = st_diag_fail(reterr, "manifest", ST_DIAG_NO_OFFSET,
                                         "manifest: an extent's length differs from its chunk's",
                                         -EBADMSG);
        }
        free((void *)all);
        free(lens);
        if (r < 0) {
                free(miss);
                free(miss_lens);
                return r;
        }
        res->n_chunks = n;
        res->n_present = n - k;
        *ret = miss;
        *ret_lens = miss_lens;
        *ret_n = k;
        return 0;
}

static int write_source(st_store *s, const char *name, const char *url, bool lazy) {
        if (mkdirat(store_dir_fd(s), "sources", 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int fd =
                openat(store_dir_fd(s), "sources", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (!lazy) {
                if (unlinkat(fd, name, 0) < 0 && errno != ENOENT)
                        return -errno;
                return st_fsync_dir(fd);
        }
        char line[4200];
        int n = snprintf(line, sizeof line, "%s\n", url);
        if (n < 0 || (size_t)n >= sizeof line)
                return -ENAMETOOLONG;
        return st_write_atomic(fd, name, line, (size_t)n);
}

int st_pull(st_store *s, const char *url, const char *name, const st_transfer_opts *o,
            st_pull_result *ret, st_diag *reterr) {
        int r = store_exclusive(s);
        if (r < 0)
                return st_diag_fail(reterr, "store", ST_DIAG_NO_OFFSET,
                                    r == -EBUSY ? "pull needs the store to itself (stop stellar serve)"
                                                : "the store is not writable",
                                    r);
        const char *local = o && o->local_name ? o->local_name : name;
        if (!st_name_valid(name) || !st_name_valid(local))
                return st_diag_fail(reterr, local, ST_DIAG_NO_OFFSET, "invalid name", -EINVAL);
        st_pull_result res = { .lazy = o && o->lazy };
        target *t = NULL;
        layer_chain c = { 0 };
        st_digest *missing = NULL;
        uint32_t *missing_lens = NULL;
        size_t n_missing = 0;
        puller p = { .s = s, .o = o, .res = &res, .err = reterr };
        st_digest top;
        r = target_open(url, o, &t, reterr);
        if (r == 0)
                r = pull_read_ref(t, name, &res.id, &res.manifest_bytes, reterr);
        if (r == 0)
                r = pull_read_chain(t, &res.id, &c, &res.manifest_bytes, reterr);
        if (r == 0)
                r = pull_local_ids(&c, &top);
        store_change_begin(s);
        bool exists = false;
        if (r == 0 && (exists = store_ref_exists(s, local))) {
                store_ref have;
                r = store_ref_load(s, local, &have, reterr);
                if (r == 0 && memcmp(have.manifest.b, top.b, ST_DIGEST_LEN) != 0)
                        r = st_diag_fail(reterr, local, ST_DIAG_NO_OFFSET,
                                         "a different image has this name here (pull --as NEWNAME, "
                                         "or rm it first)", -EEXIST);
        }
        if (r == 0) {
                res.size = c.layers[c.n - 1]->size;
                r = find_missing(s, &c, &missing, &missing_lens, &n_missing, &res, reterr);
        }
        if (r == 0 && !res.lazy && n_missing > 0) {
                p.t = t;
                p.missing = missing;
                p.missing_lens = missing_lens;
                p.n_missing = n_missing;
                p.dctx = ZSTD_createDCtx();
                p.last_flush_ns = mono_ns();
                r = p.dctx ? 0 : -ENOMEM;
                target_io io = { pull_next, pull_done, &p };
                if (r == 0)
                        r = target_run(t, &io, reterr);
                int k = flush_batch(&p);
                if (r == 0)
                        r = k;
        }
        /* Where a lazy image's missing chunks come from (or, complete now,
         * no source); then the manifests, bottom-up, and the name. */
        if (r == 0)
                r = write_source(s, local, url, res.lazy && n_missing > 0);
        if (r == 0) {
                const manifest *m = c.layers[c.n - 1];
                store_ref ref = { .kind = ST_KIND_IMAGE, .size = m->size, .ctime_ns = m->ctime_ns };
                bool named;
                r = store_make_visible(s, local, c.layers, c.n, &ref,
                                       (exists ? STORE_VISIBLE_KEEP : STORE_VISIBLE_CREATE) |
                                               (res.n_fetched > 0 ? STORE_VISIBLE_RECOUNT : 0),
                                       &named, reterr);
        }
        res.n_kept = r == 0 ? res.n_fetched : count_kept(s, missing, n_missing);
        store_change_end(s);
        res.n_retries = t ? target_retries(t) : 0;
        ZSTD_freeDCtx(p.dctx);
        free(p.raw);
        chunk_batch_free(&p.batch);
        free(missing);
        free(missing_lens);
        chain_free(&c);
        target_close(t);
        if (ret)
                *ret = res;
        return r;
}
