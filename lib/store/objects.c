/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Refs and manifests on disk: loading and saving refs (refs/NAME), manifests
 * stored by content (manifests/<hex id>), the chunk reference counts each
 * manifest contributes, pruning manifests no ref reaches, and the shared
 * in-memory cache of manifest chains that open volumes read through.
 *
 * Reference counting rule: a chunk's count is the number of extents that name
 * it, over all manifest files reachable from a ref. A manifest file is counted
 * once however many refs and child layers share it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "store-internal.h"

const char *st_kind_name(st_kind k) {
        switch (k) {
        case ST_KIND_IMAGE: return "image";
        case ST_KIND_SNAPSHOT: return "snapshot";
        case ST_KIND_VOLUME: return "volume";
        default: return "unknown";
        }
}

int store_ref_load(st_store *s, const char *name, store_ref *ret, st_diag *reterr) {
        if (!st_name_valid(name))
                return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET, "invalid name", -EINVAL);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = st_read_file(s->refs_fd, name, REF_FIXED_LEN + REF_NAME_MAX, &buf, &len);
        if (r < 0)
                return st_diag_fail(reterr, name, ST_DIAG_NO_OFFSET,
                                    r == -ENOENT ? "no such image, snapshot or volume"
                                    : r == -EFBIG ? "ref file too large"
                                                  : "cannot read ref",
                                    r == -EFBIG ? -EBADMSG : r);
        st_diag d = { 0 };
        r = ref_parse(buf, len, ret, &d);
        if (r == 0 && ret->name_sum && ret->name_sum != ref_name_sum(name)) {
                d = (st_diag){ .offset = 72, .what = "the ref is another name's (moved or swapped?)" };
                r = -EBADMSG;
        }
        if (r < 0) {
                char file[300];
                snprintf(file, sizeof file, "refs/%s", name);
                return st_diag_fail(reterr, file, d.offset, d.what, r);
        }
        return 0;
}

int store_ref_save(st_store *s, const char *name, const store_ref *r) {
        uint8_t buf[REF_FIXED_LEN + REF_NAME_MAX];
        store_ref named = *r;
        named.name_sum = ref_name_sum(name);
        size_t len = ref_encode(&named, buf);
        return st_write_atomic(s->refs_fd, name, buf, len);
}

int store_ref_create(st_store *s, const char *name, const store_ref *r) {
        /* Writes of a volume whose ref was lost: a new name over them would
         * replace them, or rm would ('stellar rm NAME' removes them). */
        if (store_delta_orphan_writes(s, name))
                return -ENOTEMPTY;
        uint8_t buf[REF_FIXED_LEN + REF_NAME_MAX];
        store_ref named = *r;
        named.name_sum = ref_name_sum(name);
        size_t len = ref_encode(&named, buf);
        char tmp[REF_NAME_MAX + 40];
        snprintf(tmp, sizeof tmp, ".%s.%ld.new", name, (long)getpid());
        _cleanup_close_ int fd = openat(s->refs_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        int k = st_pwrite_full(fd, buf, len, 0);
        if (k == 0)
                k = ST_ERRNO(fsync(fd));
        if (k == 0)
                k = ST_ERRNO(renameat2(s->refs_fd, tmp, s->refs_fd, name, RENAME_NOREPLACE));
        if (k < 0) {
                (void)unlinkat(s->refs_fd, tmp, 0);
                return k;
        }
        return st_fsync_dir(s->refs_fd);
}

bool store_ref_exists(st_store *s, const char *name) {
        return faccessat(s->refs_fd, name, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
}

void store_free_names(char **names, size_t n) {
        st_names_free(names, n);
}

int store_list_names(st_store *s, char ***ret, size_t *ret_n) {
        return st_list_dir(s->refs_fd, st_name_valid, ret, ret_n);
}

static bool manifest_name_valid(const char *name) {
        st_digest d;
        return st_digest_from_hex(name, &d) == 0;
}

int store_manifest_load(st_store *s, const st_digest *id, manifest **ret, st_diag *reterr) {
        char hex[ST_DIGEST_HEX_LEN + 1], file[80];
        st_digest_to_hex(id, hex);
        snprintf(file, sizeof file, "manifests/%s", hex);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = st_read_file(s->manifests_fd, hex,
                             MANIFEST_HEADER_LEN + MANIFEST_TRAILER_LEN +
                                     (size_t)MANIFEST_EXTENTS_MAX * MANIFEST_EXTENT_LEN,
                             &buf, &len);
        if (r < 0)
                return st_diag_fail(reterr, file, ST_DIAG_NO_OFFSET,
                                    r == -ENOENT ? "manifest missing" : "cannot read manifest", r);
        st_digest sum;
        st_hash(buf, len, &sum);
        if (memcmp(&sum, id, sizeof sum) != 0)
                return st_diag_fail(reterr, file, ST_DIAG_NO_OFFSET,
                                    "manifest bytes do not match its name", -EBADMSG);
        st_diag d = { 0 };
        r = manifest_parse(buf, len, ret, &d);
        if (r < 0)
                return st_diag_fail(reterr, file, d.offset, d.what, r);
        return 0;
}

int store_manifest_save(st_store *s, const manifest *m, st_digest *ret_id, bool *ret_new) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = manifest_encode(m, &buf, &len);
        if (r < 0)
                return r;
        st_digest id;
        st_hash(buf, len, &id);
        char hex[ST_DIGEST_HEX_LEN + 1];
        st_digest_to_hex(&id, hex);
        bool is_new = faccessat(s->manifests_fd, hex, F_OK, 0) < 0;
        if (is_new) {
                r = st_write_atomic(s->manifests_fd, hex, buf, len);
                if (r < 0)
                        return r;
        }
        *ret_id = id;
        if (ret_new)
                *ret_new = is_new;
        return 0;
}

void store_manifest_count_refs(st_store *s, const manifest *m, int delta) {
        for (size_t i = 0; i < m->n; i++) {
                if (manifest_hash_is_hole(&m->ext[i].hash))
                        continue;
                uint32_t id = index_find(s->idx, &m->ext[i].hash);
                if (id == INDEX_NONE)
                        continue; /* fsck reports it */
                index_entry *e = index_get(s->idx, id);
                if (delta > 0 && e->refs < UINT32_MAX)
                        e->refs++;
                else if (delta < 0 && e->refs > 0)
                        e->refs--;
                else
                        continue;
                index_log_note(s, id);
        }
}

/* A sorted set of manifest ids. */
typedef struct id_set {
        st_digest *v;
        size_t n, cap;
} id_set;

static int cmp_digest(const void *a, const void *b) {
        return memcmp(a, b, sizeof(st_digest));
}

static bool id_set_has(const id_set *set, const st_digest *id) {
        return set->n && bsearch(id, set->v, set->n, sizeof *id, cmp_digest);
}

static int id_set_add(id_set *set, const st_digest *id) {
        if (id_set_has(set, id))
                return 0;
        if (set->n == set->cap) {
                size_t cap = set->cap ? set->cap * 2 : 64;
                st_digest *v = realloc(set->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                set->v = v;
                set->cap = cap;
        }
        size_t i = set->n++;
        while (i > 0 && cmp_digest(&set->v[i - 1], id) > 0) {
                set->v[i] = set->v[i - 1];
                i--;
        }
        set->v[i] = *id;
        return 1;
}

/* Ref names vanish only under an exclusive writer (rm); anything else a
 * ref or manifest load says is damage the mark cannot see past. */
static int mark_fail(st_diag *why, const st_diag *d, const char *file, const char *what, int r) {
        if (why && !why->what) {
                if (d && d->what)
                        *why = *d;
                else
                        (void)st_diag_fail(why, file, ST_DIAG_NO_OFFSET, what, r);
        }
        return r;
}

int store_mark(st_store *s, bool recount, void *ret_live, st_diag *retwhy) {
        id_set *live = ret_live;
        char **names = NULL;
        size_t n_names = 0;
        int r = store_list_names(s, &names, &n_names);
        if (r < 0)
                return mark_fail(retwhy, NULL, "refs", "cannot list refs", r);
        if (recount) {
                for (uint32_t id = 0; id < index_count(s->idx); id++)
                        index_get(s->idx, id)->refs = 0;
                s->idx_full = true;
        }
        int incomplete = 0;
        for (size_t i = 0; i < n_names; i++) {
                store_ref ref;
                st_diag d = { 0 };
                r = store_ref_load(s, names[i], &ref, &d);
                if (r == -ENOENT && !store_ref_exists(s, names[i]))
                        continue;
                if (r < 0) {
                        incomplete = mark_fail(retwhy, &d, names[i], "cannot read ref", r);
                        continue;
                }
                st_digest id = ref.manifest;
                int depth = 0;
                for (; !manifest_hash_is_hole(&id) && depth <= MANIFEST_DEPTH_MAX; depth++) {
                        r = id_set_add(live, &id);
                        if (r < 0) {
                                store_free_names(names, n_names);
                                return r;
                        }
                        if (r == 0)
                                break; /* seen already, with its parents */
                        manifest *m;
                        d = (st_diag){ 0 };
                        r = store_manifest_load(s, &id, &m, &d);
                        if (r < 0) {
                                incomplete = mark_fail(retwhy, &d, "manifests", "cannot read", r);
                                break;
                        }
                        if (recount)
                                store_manifest_count_refs(s, m, +1);
                        id = m->parent;
                        manifest_free(m);
                }
                if (depth > MANIFEST_DEPTH_MAX)
                        incomplete = mark_fail(retwhy, NULL, names[i],
                                               "manifest chain too deep (a loop?)", -ELOOP);
        }
        store_free_names(names, n_names);
        return incomplete < 0 ? 1 : 0;
}

void *store_live_new(void) {
        return calloc(1, sizeof(id_set));
}

void store_live_free(void *live) {
        id_set *set = live;
        if (set)
                free(set->v);
        free(set);
}

int store_prune_manifests(st_store *s, bool recount, uint64_t *ret_pruned, st_diag *retwhy) {
        id_set *live = store_live_new();
        char **files = NULL;
        size_t n_files = 0;
        uint64_t pruned = 0;
        if (!live)
                return -ENOMEM;
        int r = store_mark(s, recount, live, retwhy);
        /* Nothing is deleted on the strength of a ref or manifest that could
         * not be read: what it reaches is unknown. */
        bool may_delete = r == 0 && store_files_writable(s);
        if (r != 0 || !may_delete) {
                store_live_free(live);
                if (r == 0 && ret_pruned)
                        *ret_pruned = 0;
                return r;
        }
        /* Sweep: manifest files nothing reaches. */
        r = st_list_dir(s->manifests_fd, manifest_name_valid, &files, &n_files);
        for (size_t i = 0; r >= 0 && i < n_files; i++) {
                st_digest id;
                (void)st_digest_from_hex(files[i], &id);
                if (id_set_has(live, &id))
                        continue;
                if (!recount) {
                        manifest *m;
                        if (store_manifest_load(s, &id, &m, NULL) == 0) {
                                store_manifest_count_refs(s, m, -1);
                                manifest_free(m);
                        }
                }
                pruned++;
                if (unlinkat(s->manifests_fd, files[i], 0) < 0)
                        r = -errno;
        }
        store_free_names(files, n_files);
        if (r >= 0 && pruned)
                r = st_fsync_dir(s->manifests_fd);
        store_live_free(live);
        if (r >= 0 && ret_pruned)
                *ret_pruned = pruned;
        return r < 0 ? r : 0;
}

/* The chain cache: loaded manifests shared by every open volume. */
struct cached_manifest {
        st_digest id;
        manifest *m;
        unsigned users;
        struct cached_manifest *next;
};

static manifest *chain_cache_get(st_store *s, const st_digest *id, st_diag *reterr, int *ret_r) {
        pthread_mutex_lock(&s->cache_lock);
        for (struct cached_manifest *c = s->cache; c; c = c->next)
                if (memcmp(&c->id, id, sizeof *id) == 0) {
                        c->users++;
                        pthread_mutex_unlock(&s->cache_lock);
                        return c->m;
                }
        pthread_mutex_unlock(&s->cache_lock);
        manifest *m;
        int r = store_manifest_load(s, id, &m, reterr);
        if (r < 0) {
                *ret_r = r;
                return NULL;
        }
        struct cached_manifest *c = calloc(1, sizeof *c);
        if (!c) {
                manifest_free(m);
                *ret_r = -ENOMEM;
                return NULL;
        }
        pthread_mutex_lock(&s->cache_lock);
        for (struct cached_manifest *o = s->cache; o; o = o->next)
                if (memcmp(&o->id, id, sizeof *id) == 0) { /* lost a race: use theirs */
                        o->users++;
                        pthread_mutex_unlock(&s->cache_lock);
                        manifest_free(m);
                        free(c);
                        return o->m;
                }
        *c = (struct cached_manifest){ .id = *id, .m = m, .users = 1, .next = s->cache };
        s->cache = c;
        pthread_mutex_unlock(&s->cache_lock);
        return m;
}

static void chain_cache_put(st_store *s, const manifest *m) {
        pthread_mutex_lock(&s->cache_lock);
        for (struct cached_manifest **pc = &s->cache; *pc; pc = &(*pc)->next) {
                struct cached_manifest *c = *pc;
                if (c->m != m)
                        continue;
                if (--c->users == 0) {
                        *pc = c->next;
                        manifest_free(c->m);
                        free(c);
                }
                break;
        }
        pthread_mutex_unlock(&s->cache_lock);
}

void store_chain_put(st_store *s, store_chain *c) {
        for (size_t i = 0; i < c->n; i++)
                chain_cache_put(s, c->layers[i]);
        free(c->layers);
        *c = (store_chain){ 0 };
}

int store_chain_get(st_store *s, const st_digest *top, store_chain *ret, st_diag *reterr) {
        store_chain c = { 0 };
        st_digest id = *top;
        int r = 0;
        while (!manifest_hash_is_hole(&id)) {
                if (c.n > MANIFEST_DEPTH_MAX) {
                        r = st_diag_fail(reterr, "manifests", ST_DIAG_NO_OFFSET,
                                         "manifest chain too deep (a loop?)", -ELOOP);
                        break;
                }
                manifest **l = realloc(c.layers, (c.n + 1) * sizeof *l);
                if (!l) {
                        r = -ENOMEM;
                        break;
                }
                c.layers = l;
                manifest *m = chain_cache_get(s, &id, reterr, &r);
                if (!m)
                        break;
                c.layers[c.n++] = m;
                id = m->parent;
        }
        if (r < 0) {
                store_chain_put(s, &c);
                return r;
        }
        *ret = c;
        return 0;
}

void store_cache_free(st_store *s) {
        while (s->cache) {
                struct cached_manifest *c = s->cache;
                s->cache = c->next;
                manifest_free(c->m);
                free(c);
        }
}
