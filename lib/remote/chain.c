/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../util/diag.h"
#include "chain.h"

int digest_set_add(digest_set *d, const st_digest *id) {
        if (d->n == d->cap) {
                size_t cap = d->cap ? d->cap * 2 : 1024;
                st_digest *v = realloc(d->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                d->v = v;
                d->cap = cap;
        }
        d->v[d->n++] = *id;
        d->sealed = false;
        return 0;
}

static int cmp(const void *a, const void *b) {
        return memcmp(a, b, sizeof(st_digest));
}

void digest_set_seal(digest_set *d) {
        if (d->n)
                qsort(d->v, d->n, sizeof *d->v, cmp);
        size_t k = 0;
        for (size_t i = 0; i < d->n; i++)
                if (k == 0 || memcmp(&d->v[k - 1], &d->v[i], sizeof *d->v) != 0)
                        d->v[k++] = d->v[i];
        d->n = k;
        d->sealed = true;
}

bool digest_set_has(const digest_set *d, const st_digest *id) {
        return d->n && bsearch(id, d->v, d->n, sizeof *d->v, cmp) != NULL;
}

void digest_set_free(digest_set *d) {
        free(d->v);
        *d = (digest_set){ 0 };
}

void chain_free(layer_chain *c) {
        for (size_t i = 0; i < c->n; i++)
                manifest_free(c->layers[i]);
        free(c->layers);
        *c = (layer_chain){ 0 };
}

void chain_reverse(layer_chain *c) {
        for (size_t i = 0; i < c->n / 2; i++) {
                manifest *t = c->layers[i];
                c->layers[i] = c->layers[c->n - 1 - i];
                c->layers[c->n - 1 - i] = t;
        }
}

int chain_load_local(st_store *s, const char *name, layer_chain *ret, st_diag *reterr) {
        store_ref ref;
        int r = store_ref_load(s, name, &ref, reterr);
        if (r < 0)
                return r;
        layer_chain c = { 0 };
        c.layers = calloc(MANIFEST_DEPTH_MAX + 1, sizeof *c.layers);
        if (!c.layers)
                return -ENOMEM;
        st_digest id = ref.manifest;
        while (!manifest_hash_is_hole(&id)) {
                if (c.n > MANIFEST_DEPTH_MAX) {
                        chain_free(&c);
                        return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET, "manifest chain too deep",
                                            -ELOOP);
                }
                manifest *m;
                r = store_manifest_load(s, &id, &m, reterr);
                if (r < 0) {
                        chain_free(&c);
                        return r;
                }
                c.layers[c.n++] = m;
                id = m->parent;
        }
        if (c.n == 0) { /* an empty volume: one empty layer */
                c.layers[0] = manifest_new(ref.size, &st_store_get_config(s)->chunker, NULL);
                if (!c.layers[0]) {
                        chain_free(&c);
                        return -ENOMEM;
                }
                c.layers[0]->ctime_ns = ref.ctime_ns;
                c.n = 1;
        }
        chain_reverse(&c);
        *ret = c;
        return 0;
}

int chain_chunks(const layer_chain *c, const st_digest **ret, size_t *ret_n, uint32_t **ret_lens,
                 uint64_t *ret_bytes) {
        digest_set set = { 0 };
        for (size_t i = 0; i < c->n; i++)
                for (size_t k = 0; k < c->layers[i]->n; k++) {
                        const manifest_extent *e = &c->layers[i]->ext[k];
                        if (manifest_hash_is_hole(&e->hash))
                                continue;
                        int r = digest_set_add(&set, &e->hash);
                        if (r < 0) {
                                digest_set_free(&set);
                                return r;
                        }
                }
        digest_set_seal(&set);
        /* each chunk's length: every extent naming it must agree */
        uint32_t *lens = calloc(set.n ? set.n : 1, sizeof *lens);
        if (!lens) {
                digest_set_free(&set);
                return -ENOMEM;
        }
        uint64_t bytes = 0;
        int r = 0;
        for (size_t i = 0; r == 0 && i < c->n; i++)
                for (size_t k = 0; r == 0 && k < c->layers[i]->n; k++) {
                        const manifest_extent *e = &c->layers[i]->ext[k];
                        if (manifest_hash_is_hole(&e->hash))
                                continue;
                        const st_digest *f = bsearch(&e->hash, set.v, set.n, sizeof *set.v, cmp);
                        size_t at = (size_t)(f - set.v);
                        if (!lens[at]) {
                                lens[at] = e->len;
                                bytes += e->len;
                        } else if (lens[at] != e->len)
                                r = -EBADMSG;
                }
        if (r < 0) {
                free(lens);
                digest_set_free(&set);
                return r;
        }
        if (ret_bytes)
                *ret_bytes = bytes;
        if (ret_lens)
                *ret_lens = lens;
        else
                free(lens);
        *ret = set.v;
        *ret_n = set.n;
        return 0;
}
