/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Publish: blobs first (only those the target lacks), then the manifest
 * layers bottom-up, then refs/NAME. Each step is made durable before the
 * next refers to it, so a reader never finds a name whose manifest, or a
 * manifest whose blobs, are not all there.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/remote.h>

#include "../store/store-api.h"
#include "../util/diag.h"
#include "blob.h"
#include "chain.h"
#include "manifest-json.h"
#include "target.h"

typedef struct pub {
        st_store *s;
        target *t;
        digest_set have; /* blobs already on the target */
        const st_digest *todo;
        size_t n_todo, next;
        store_chunk_buf *cb;
        ZSTD_CCtx *cctx;
        st_publish_result *res;
        const st_transfer_opts *o;
        uint64_t done_bytes, total_bytes;
        st_diag *err;
} pub;

static int have_add(void *ctx, const char *name) {
        st_digest d;
        if (strlen(name) != ST_DIGEST_HEX_LEN || st_digest_from_hex(name, &d) < 0)
                return 0; /* not ours */
        return digest_set_add(ctx, &d);
}

static int pub_next(void *ctx, target_req *q) {
        pub *p = ctx;
        while (p->next < p->n_todo && digest_set_has(&p->have, &p->todo[p->next]))
                p->next++;
        if (p->next >= p->n_todo)
                return 0;
        const st_digest *id = &p->todo[p->next++];
        store_payload rec;
        int r = store_chunk_payload(p->s, id, p->cb, &rec);
        char hex[ST_DIGEST_HEX_LEN + 1];
        st_digest_to_hex(id, hex);
        if (r < 0)
                return st_diag_fail(p->err, hex, ST_DIAG_NO_OFFSET,
                                    r == -ENOENT ? "chunk missing from the store (a lazily pulled "
                                                   "image not yet complete?)"
                                                 : "chunk unreadable (run stellar fsck)",
                                    r);
        uint8_t *body;
        size_t len;
        if (rec.zstd) {
                len = rec.stored_len; /* already a frame: ship it as stored */
                body = malloc(len);
                if (!body)
                        return -ENOMEM;
                memcpy(body, rec.data, len);
        } else {
                /* stored raw (it did not compress): wrap it in a frame at
                 * the fastest level, which stores such data as raw blocks;
                 * one of a frame's chunks: a frame of its own */
                size_t cap = ZSTD_compressBound(rec.raw_len);
                body = malloc(cap);
                if (!body)
                        return -ENOMEM;
                len = ZSTD_compressCCtx(p->cctx, body, cap, rec.data, rec.raw_len,
                                        rec.compressible ? 3 : -5);
                if (ZSTD_isError(len)) {
                        free(body);
                        return -EIO;
                }
        }
        q->op = TARGET_PUT;
        blob_key(id, q->key, sizeof q->key);
        q->body = body;
        q->body_len = len;
        q->user = body;
        p->done_bytes += rec.raw_len;
        return 1;
}

static int pub_done(void *ctx, target_req *q) {
        pub *p = ctx;
        free(q->user);
        if (q->err < 0)
                return q->err;
        p->res->n_uploaded++;
        p->res->bytes_uploaded += q->body_len;
        if (p->o && p->o->progress)
                p->o->progress(p->o->userdata, p->done_bytes, p->total_bytes);
        return 0;
}

int st_publish(st_store *s, const char *name, const char *url, const st_transfer_opts *o,
               st_publish_result *ret, st_diag *reterr) {
        st_publish_result res = { 0 };
        layer_chain ch = { 0 };
        int r = chain_load_local(s, name, &ch, reterr);
        if (r < 0)
                return r;
        target *t = NULL;
        pub p = { .s = s, .res = &res, .o = o, .err = reterr };
        r = target_open(url, o, &t, reterr);
        if (r == 0 && !target_writable(t))
                r = st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET,
                                 "http:// and https:// are read-only: publish to the directory "
                                 "the web server serves, or to s3://", -EOPNOTSUPP);
        if (r == 0 && (r = target_clean_temps(t, NULL)) < 0)
                (void)st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET,
                                   "cannot remove stale temp files of the target", r);
        if (r == 0)
                r = chain_chunks(&ch, &p.todo, &p.n_todo, NULL, &p.total_bytes);
        if (r == 0) {
                p.t = t;
                r = target_list(t, "blobs/", have_add, &p.have, reterr);
        }
        if (r == 0) {
                digest_set_seal(&p.have);
                p.cb = store_chunk_buf_get(s);
                p.cctx = ZSTD_createCCtx();
                r = p.cb && p.cctx ? 0 : -ENOMEM;
        }
        if (r == 0) {
                res.n_chunks = p.n_todo;
                target_io io = { pub_next, pub_done, &p };
                r = target_run(t, &io, reterr);
                res.n_present = res.n_chunks - res.n_uploaded;
        }
        if (r == 0 && (r = target_sync(t)) < 0)
                (void)st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "cannot sync the target", r);
        /* manifests, bottom-up: each names its parent's JSON id */
        st_digest parent_json = { 0 };
        for (size_t i = 0; r == 0 && i < ch.n; i++) {
                char *js = NULL;
                size_t len = 0;
                r = json_manifest_encode(ch.layers[i], i ? &parent_json : NULL, &js, &len);
                if (r < 0)
                        break;
                st_hash(js, len, &parent_json);
                char hex[ST_DIGEST_HEX_LEN + 1], key[128];
                st_digest_to_hex(&parent_json, hex);
                snprintf(key, sizeof key, "manifests/%s.json", hex);
                r = target_put(t, key, js, len, reterr);
                res.manifest_bytes += len;
                free(js);
        }
        if (r == 0 && (r = target_sync(t)) < 0)
                (void)st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "cannot sync the target", r);
        if (r == 0) {
                char line[ST_DIGEST_HEX_LEN + 2], key[300];
                st_digest_to_hex(&parent_json, line);
                line[ST_DIGEST_HEX_LEN] = '\n';
                line[ST_DIGEST_HEX_LEN + 1] = 0;
                snprintf(key, sizeof key, "refs/%s", name);
                r = target_put(t, key, line, ST_DIGEST_HEX_LEN + 1, reterr);
        }
        if (r == 0)
                r = target_sync(t);
        res.id = parent_json;
        res.n_layers = ch.n;
        store_chunk_buf_put(s, p.cb);
        ZSTD_freeCCtx(p.cctx);
        free((void *)p.todo);
        digest_set_free(&p.have);
        chain_free(&ch);
        target_close(t);
        if (r == 0 && ret)
                *ret = res;
        return r;
}
