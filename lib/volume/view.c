/* SPDX-License-Identifier: Apache-2.0 */
/* Run lookup over a manifest chain; see view.h. */
#include "view.h"

void view_run_at(const store_chain *c, uint64_t off, uint64_t limit, view_run *ret) {
        view_run_near(c, off, limit, NULL, ret);
}

void view_run_near(const store_chain *c, uint64_t off, uint64_t limit, view_hint *h,
                   view_run *ret) {
        uint64_t lim = limit;
        for (size_t l = 0; l < c->n; l++) {
                const manifest *m = c->layers[l];
                size_t i;
                if (h && l < VIEW_HINTS)
                        i = h->at[l] = manifest_find_near(m, off, h->at[l]);
                else
                        i = manifest_find(m, off);
                if (i < m->n && m->ext[i].off <= off) {
                        const manifest_extent *e = &m->ext[i];
                        uint64_t end = ST_MIN(e->off + e->len, lim);
                        if (manifest_hash_is_hole(&e->hash))
                                *ret = (view_run){ .off = off, .len = end - off, .kind = RUN_ZERO };
                        else
                                *ret = (view_run){ .off = off, .len = end - off, .kind = RUN_CHUNK,
                                                   .ext = e };
                        return;
                }
                /* Not here: a lower layer shows through, but only up to where
                 * this layer's next extent starts. */
                if (i < m->n && m->ext[i].off < lim)
                        lim = m->ext[i].off;
        }
        *ret = (view_run){ .off = off, .len = lim - off, .kind = RUN_ZERO };
}
