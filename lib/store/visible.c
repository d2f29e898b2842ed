/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Changes to the store's names: the one transaction that makes a new image
 * or layer visible (import, volume commit, pull), and new names over
 * manifests already counted (create, clone, snapshot).
 *
 * The order is what makes a crash harmless: the chunks are in the packs
 * (the caller's ingest or fetch), then each new manifest is written, then the
 * ref, which is the commit point, then the index. Before the ref, nothing
 * names the new manifests and the next prune takes them; after it, recovery
 * counts their references from the manifests if the index did not get there.
 */
#include <errno.h>
#include <string.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "store-internal.h"

void store_change_begin(st_store *s) {
        /* (counted while it waits: a compression step gives way to it) */
        atomic_fetch_add(&s->change_waiters, 1);
        pthread_mutex_lock(&s->write_lock);
        atomic_fetch_sub(&s->change_waiters, 1);
}

void store_change_end(st_store *s) {
        pthread_mutex_unlock(&s->write_lock);
}

int store_name_create(st_store *s, const char *name, const store_ref *r) {
        if (!st_name_valid(name))
                return -EINVAL;
        if (store_ref_exists(s, name))
                return -EEXIST;
        return store_ref_create(s, name, r);
}

int store_make_visible(st_store *s, const char *name, manifest *const *layers, size_t n,
                       store_ref *ref, unsigned flags, bool *ret_named, st_diag *reterr) {
        *ret_named = false;
        if (n == 0)
                return -EINVAL;
        bool all_new = true;
        int r = 0;
        st_digest id;
        for (size_t i = 0; r == 0 && i < n; i++) {
                bool is_new = false;
                r = store_manifest_save(s, layers[i], &id, &is_new);
                if (r < 0) {
                        (void)st_diag_fail(reterr, "manifests", ST_DIAG_NO_OFFSET,
                                           "cannot write manifest", r);
                        break;
                }
                if (!is_new) {
                        all_new = false;
                        continue;
                }
                /* Counted now, in memory; durable with the index below, or
                 * recounted by recovery from the manifests. */
                pthread_rwlock_wrlock(&s->lock);
                store_manifest_count_refs(s, layers[i], +1);
                pthread_rwlock_unlock(&s->lock);
        }
        if (r < 0)
                return r;
        ref->manifest = id;
        if (flags & STORE_VISIBLE_CREATE) {
                r = store_ref_create(s, name, ref);
                if (r < 0)
                        return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET,
                                            r == -ENOTEMPTY ? STORE_ORPHAN_WRITES_MSG
                                            : r == -EEXIST  ? "the name is taken"
                                                            : "cannot write ref",
                                            r);
        } else if (!(flags & STORE_VISIBLE_KEEP)) {
                r = store_ref_save(s, name, ref);
                if (r < 0)
                        return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET, "cannot write ref", r);
        }
        *ret_named = true; /* the commit point */
        pthread_rwlock_wrlock(&s->lock);
        /* A flattened chain leaves its old layers unnamed; chunks that came
         * in under layers already counted (a lazy pull completed) need their
         * counts from the manifests. Held back (1) when something cannot be
         * read: pruned later. */
        if (flags & STORE_VISIBLE_PRUNE)
                r = ST_MIN(store_prune_manifests(s, false, NULL, NULL), 0);
        else if ((flags & STORE_VISIBLE_RECOUNT) && !all_new)
                r = ST_MIN(store_prune_manifests(s, true, NULL, NULL), 0);
        if (r == 0)
                r = store_commit(s);
        pthread_rwlock_unlock(&s->lock);
        if (r < 0) {
                /* Named but not indexed: this handle's counts can no longer
                 * be trusted; recovery at the next open sets them. */
                s->broken = true;
                return st_diag_fail(reterr, "index", ST_DIAG_NO_OFFSET, "cannot write index", r);
        }
        return 0;
}
