/* SPDX-License-Identifier: Apache-2.0 */
/* Listing, describing and removing images; store-wide statistics. */
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

static void fill_info(const char *name, const manifest *m, st_image_info *ret) {
        memset(ret, 0, sizeof *ret);
        snprintf(ret->name, sizeof ret->name, "%s", name);
        ret->kind = m->kind;
        ret->size = m->size;
        ret->n_extents = m->n;
        ret->ctime_ns = m->ctime_ns;
        for (size_t i = 0; i < m->n; i++)
                ret->data_bytes += m->ext[i].len;
}

int st_store_info(st_store *s, const char *name, st_image_info *ret, st_diag *reterr) {
        if (!st_name_valid(name))
                return -EINVAL;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = st_read_file(s->images_fd, name, SIZE_MAX, &buf, &len);
        if (r < 0) {
                return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET,
                                    r == -ENOENT ? "no such image" : "cannot read manifest", r);
        }
        manifest *m;
        st_diag d = { 0 };
        r = manifest_parse(buf, len, &m, &d);
        if (r < 0) {
                char file[300];
                snprintf(file, sizeof file, "images/%s", name);
                return st_diag_fail(reterr, file, d.offset, d.what, r);
        }
        fill_info(name, m, ret);
        st_hash(buf, len, &ret->id);
        manifest_free(m);
        return 0;
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
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (st_store_info(s, names[i], &v[k], NULL) == 0)
                        k++; /* damaged manifests are fsck's to report */
        store_free_names(names, n);
        *ret = v;
        *ret_n = k;
        return 0;
}

int st_store_remove(st_store *s, const char *name) {
        int r = store_writable(s);
        if (r < 0)
                return r;
        manifest *m;
        r = store_load_manifest(s, name, &m, NULL);
        if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
                /* A damaged manifest can still be removed; recovery recounts. */
                r = store_mark_dirty(s);
                if (r == 0)
                        r = ST_ERRNO(unlinkat(s->images_fd, name, 0));
                if (r == 0)
                        r = st_fsync_dir(s->images_fd);
                return r;
        }
        if (r < 0)
                return r;
        r = store_mark_dirty(s);
        if (r == 0)
                r = ST_ERRNO(unlinkat(s->images_fd, name, 0));
        if (r == 0)
                r = st_fsync_dir(s->images_fd);
        if (r == 0) {
                for (size_t i = 0; i < m->n; i++) {
                        uint32_t id = index_find(s->idx, &m->ext[i].hash);
                        if (id != INDEX_NONE && index_get(s->idx, id)->refs > 0)
                                index_get(s->idx, id)->refs--;
                }
                r = store_commit(s);
        }
        manifest_free(m);
        if (r < 0)
                s->broken = true;
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
        uint32_t nc = index_count(s->idx);
        st.n_chunks = nc;
        for (uint32_t id = 0; id < nc; id++)
                if (index_get(s->idx, id)->refs == 0)
                        st.n_unreferenced++;
        st.unique_bytes = s->unique_bytes;
        st.stored_bytes = s->stored_bytes;
        for (size_t i = 0; i < s->n_packs; i++)
                st.pack_bytes += s->packs[i].len;
        st.n_packs = s->n_packs;
        st.index_ram_bytes = index_ram_bytes(s->idx);
        *ret = st;
        return 0;
}
