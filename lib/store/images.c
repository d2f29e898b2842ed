/* SPDX-License-Identifier: Apache-2.0 */
/* Listing, describing and removing names of every kind; store statistics. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "store-internal.h"

uint64_t store_delta_bytes(st_store *s, const char *name) {
        char file[REF_NAME_MAX + 16];
        snprintf(file, sizeof file, "%s.data", name);
        struct stat st;
        if (fstatat(s->deltas_fd, file, &st, 0) < 0)
                return 0;
        return (uint64_t)st.st_blocks * 512;
}

/* What a name's manifest chain holds, computed once per manifest however
 * many names share it (a listing of 200 clones reads their image once). */
typedef struct chain_sums {
        st_digest id;
        bool used;
        size_t n_layers;
        uint64_t n_extents, data_bytes;
} chain_sums;

typedef struct sums_table {
        chain_sums *v;
        size_t cap; /* a power of two, or 0: no table */
} sums_table;

static chain_sums *sums_slot(sums_table *t, const st_digest *id) {
        uint64_t h;
        memcpy(&h, id->b, sizeof h);
        for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
                if (!t->v[i].used || memcmp(t->v[i].id.b, id->b, ST_DIGEST_LEN) == 0)
                        return &t->v[i];
}

static int info_of(st_store *s, const char *name, sums_table *t, st_image_info *ret,
                   st_diag *reterr) {
        store_ref ref;
        int r = store_ref_load(s, name, &ref, reterr);
        if (r < 0)
                return r;
        chain_sums *slot = t->cap ? sums_slot(t, &ref.manifest) : NULL;
        chain_sums sums = { .id = ref.manifest, .used = true };
        if (slot && slot->used) {
                sums = *slot;
        } else {
                store_chain c;
                r = store_chain_get(s, &ref.manifest, &c, reterr);
                if (r < 0)
                        return r;
                sums.n_layers = c.n;
                for (size_t l = 0; l < c.n; l++) {
                        const manifest *m = c.layers[l];
                        sums.n_extents += m->n;
                        for (size_t i = 0; i < m->n; i++)
                                if (!manifest_hash_is_hole(&m->ext[i].hash))
                                        sums.data_bytes += m->ext[i].len;
                }
                store_chain_put(s, &c);
                if (slot)
                        *slot = sums;
        }
        st_image_info v = { .kind = (st_kind)ref.kind, .size = ref.size, .ctime_ns = ref.ctime_ns,
                            .id = ref.manifest, .n_layers = sums.n_layers,
                            .n_extents = sums.n_extents, .data_bytes = sums.data_bytes };
        snprintf(v.name, sizeof v.name, "%s", name);
        snprintf(v.parent, sizeof v.parent, "%s", ref.parent);
        if (ref.kind == ST_KIND_VOLUME)
                v.delta_bytes = store_delta_bytes(s, name);
        *ret = v;
        return 0;
}

int st_store_info(st_store *s, const char *name, st_image_info *ret, st_diag *reterr) {
        sums_table none = { 0 };
        return info_of(s, name, &none, ret, reterr);
}

int st_store_list(st_store *s, st_image_info **ret, size_t *ret_n) {
        char **names;
        size_t n;
        int r = store_list_names(s, &names, &n);
        if (r < 0)
                return r;
        st_image_info *v = calloc(n ? n : 1, sizeof *v);
        if (!v) {
                store_free_names(names, n);
                return -ENOMEM;
        }
        sums_table t = { 0 };
        for (t.cap = 16; t.cap < 2 * n; t.cap *= 2)
                ;
        t.v = calloc(t.cap, sizeof *t.v);
        if (!t.v)
                t.cap = 0; /* slower, not wrong */
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
                st_diag d = { 0 };
                int e = info_of(s, names[i], &t, &v[k], &d);
                if (e == 0) {
                        k++;
                        continue;
                }
                if (!store_ref_exists(s, names[i]))
                        continue; /* removed while we listed */
                /* Shown, not hidden: a damaged name is the user's to see. */
                store_ref ref;
                st_image_info b = { .error = e };
                if (store_ref_load(s, names[i], &ref, NULL) == 0) {
                        b.kind = (st_kind)ref.kind;
                        b.size = ref.size;
                        b.ctime_ns = ref.ctime_ns;
                        b.id = ref.manifest;
                        snprintf(b.parent, sizeof b.parent, "%s", ref.parent);
                }
                snprintf(b.name, sizeof b.name, "%s", names[i]);
                snprintf(b.error_msg, sizeof b.error_msg, "%s%s%s", d.file,
                         d.file[0] ? ": " : "", d.what ? d.what : "cannot be read");
                v[k++] = b;
        }
        free(t.v);
        store_free_names(names, n);
        *ret = v;
        *ret_n = k;
        return 0;
}

bool store_delta_pending(st_store *s, const char *name) {
        char file[REF_NAME_MAX + 16];
        snprintf(file, sizeof file, "%s.map", name);
        struct stat st;
        /* a journal holds records beyond its 32-byte header */
        return fstatat(s->deltas_fd, file, &st, 0) == 0 && st.st_size > 32;
}

bool store_delta_orphan_writes(st_store *s, const char *name) {
        char file[REF_NAME_MAX + 16];
        snprintf(file, sizeof file, "%s.data", name);
        struct stat st;
        return !store_ref_exists(s, name) &&
               (store_delta_pending(s, name) ||
                (fstatat(s->deltas_fd, file, &st, 0) == 0 && st.st_size > 0));
}

int store_remove_delta(st_store *s, const char *name) {
        /* The data before its journal: a journal without data reads as the
         * loss it is, data without a journal as a journal lost. */
        static const char *const ext[] = { "data", "map", "lock" };
        for (size_t i = 0; i < 3; i++) {
                char file[REF_NAME_MAX + 16];
                snprintf(file, sizeof file, "%s.%s", name, ext[i]);
                if (unlinkat(s->deltas_fd, file, 0) < 0 && errno != ENOENT)
                        return -errno;
        }
        return st_fsync_dir(s->deltas_fd);
}

int st_store_remove(st_store *s, const char *name, st_diag *retheld) {
        int r = store_exclusive(s);
        if (r < 0)
                return r;
        if (!st_name_valid(name))
                return -EINVAL;
        if (!store_ref_exists(s, name)) {
                /* Only the writes of a volume whose ref was lost: removing
                 * them is what this rm asks for. */
                if (!store_delta_orphan_writes(s, name))
                        return -ENOENT;
                store_change_begin(s);
                r = store_volume_is_open(s, name) ? -EBUSY : store_remove_delta(s, name);
                store_change_end(s);
                return r;
        }
        /* The write mutex keeps out this process's other commands (clone,
         * import, gc, commit); other processes, the store lock. */
        store_change_begin(s);
        if (store_volume_is_open(s, name)) {
                store_change_end(s);
                return -EBUSY;
        }
        pthread_rwlock_wrlock(&s->lock);
        r = store_mark_dirty(s);
        /* The volume's writes go before its ref: delta files without a ref
         * then never mean an rm cut short, only a ref lost, and nothing
         * removes them but an rm of that name. Cut short here, the name
         * stays, and rm again finishes. */
        if (r == 0)
                r = store_remove_delta(s, name);
        if (r == 0)
                r = ST_ERRNO(unlinkat(s->refs_fd, name, 0));
        if (r == 0)
                r = st_fsync_dir(s->refs_fd);
        if (r == 0) {
                /* a lazily pulled image's source (lib/remote) */
                int sfd = openat(s->dirfd, "sources", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (sfd >= 0) {
                        if (unlinkat(sfd, name, 0) < 0 && errno != ENOENT)
                                r = -errno;
                        close(sfd);
                }
        }
        if (r == 0)
                r = ST_MIN(store_prune_manifests(s, false, NULL, retheld), 0);
        if (r == 0)
                r = store_commit(s);
        if (r < 0)
                s->broken = true;
        pthread_rwlock_unlock(&s->lock);
        store_change_end(s);
        return r;
}

int st_store_stats_get(st_store *s, st_store_stats *ret) {
        st_store_stats st = { 0 };
        st_image_info *v;
        size_t n;
        int r = st_store_list(s, &v, &n);
        if (r < 0)
                return r;
        st.n_images = n;
        for (size_t i = 0; i < n; i++) {
                st.logical_bytes += v[i].size;
                st.referenced_bytes += v[i].data_bytes;
        }
        free(v);
        pthread_rwlock_rdlock(&s->lock);
        uint32_t nc = index_count(s->idx);
        st.n_chunks = nc;
        for (uint32_t id = 0; id < nc; id++) {
                const index_entry *e = index_get(s->idx, id);
                st.n_unreferenced += e->refs == 0;
                st.n_framed += e->slot > 0;
                st.n_frames += e->slot == 1; /* (one whose first chunk recovery found indexed elsewhere is missed) */
        }
        st.unique_bytes = s->unique_bytes;
        st.stored_bytes = s->stored_bytes;
        for (size_t i = 0; i < s->n_packs; i++)
                st.pack_bytes += s->packs[i].len;
        st.n_packs = s->n_packs;
        st.index_ram_bytes = index_ram_bytes(s->idx);
        pthread_rwlock_unlock(&s->lock);
        *ret = st;
        return 0;
}
