/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Opening, creating and closing a store; the dirty/clean protocol that makes
 * every operation crash-safe; pack and manifest plumbing for the other files.
 *
 * Crash safety rests on one rule: before an operation changes packs or
 * manifests it creates 'dirty'; after, it writes a fresh index and removes
 * 'dirty'. Opening a store that has 'dirty' runs recover.c, which rebuilds
 * what the index lacks from the packs and recounts references from the
 * manifests. A manifest appears only by rename() after its chunks are fsynced,
 * so an import is visible entirely or not at all.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "store-internal.h"

static void diag(st_diag *d, const char *file, uint64_t off, const char *what) {
        (void)st_diag_fail(d, file ? file : "", off, what, 0);
}

bool st_name_valid(const char *name) {
        size_t n = strlen(name);
        if (n == 0 || n > 200 || name[0] == '.' || name[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      strchr("._+@:-", c)))
                        return false;
        }
        return true;
}

static void format_encode(uint8_t out[STORE_FORMAT_LEN], const st_store_config *cfg) {
        memset(out, 0, STORE_FORMAT_LEN);
        memcpy(out, STORE_FORMAT_MAGIC, 8);
        st_le32_put(out + 8, STORE_FORMAT_VERSION);
        st_le32_put(out + 12, STORE_FORMAT_LEN);
        st_le32_put(out + 16, cfg->chunker.align);
        st_le32_put(out + 20, cfg->chunker.min_size);
        st_le32_put(out + 24, cfg->chunker.avg_size);
        st_le32_put(out + 28, cfg->chunker.max_size);
        st_le32_put(out + 32, (uint32_t)cfg->zstd_level);
        st_le32_put(out + 36, cfg->commit_chunker.align);
        st_le32_put(out + 40, cfg->commit_chunker.min_size);
        st_le32_put(out + 44, cfg->commit_chunker.avg_size);
        st_le32_put(out + 48, cfg->commit_chunker.max_size);
        st_le32_put(out + 52, (uint32_t)cfg->zstd_cold_level);
        st_digest d;
        st_hash(out, 56, &d);
        memcpy(out + 56, d.b, 8);
}

/* The zstd levels a store of format version may have: -7..22, or defer
 * (from format 3); a cold level of 1..22, or 0 for none, only from format 3,
 * and not none with defer. */
static bool zstd_level_valid(int level, uint32_t version) {
        return (level >= -7 && level <= 22) || (level == ST_ZSTD_DEFER && version >= 3);
}

static bool cold_level_valid(const st_store_config *c, uint32_t version) {
        if (c->zstd_cold_level < 0 || c->zstd_cold_level > 22 || (version < 3 && c->zstd_cold_level))
                return false;
        return c->zstd_level != ST_ZSTD_DEFER || c->zstd_cold_level > 0;
}

int store_format_decode(const uint8_t *p, size_t len, st_store_config *ret, uint32_t *ret_version,
                        st_diag *reterr) {
        if (len != STORE_FORMAT_LEN || memcmp(p, STORE_FORMAT_MAGIC, 8) != 0) {
                diag(reterr, "format", 0, "not a Stellarium store (bad format file)");
                return -EBADMSG;
        }
        uint32_t version = st_le32_get(p + 8);
        if (version < 2 || version > STORE_FORMAT_VERSION) {
                diag(reterr, "format", 8, "unknown store format version");
                return -EPROTONOSUPPORT;
        }
        if (st_le32_get(p + 12) != STORE_FORMAT_LEN) {
                diag(reterr, "format", 12, "bad format header length");
                return -EBADMSG;
        }
        /* (bytes 52..55 were reserved in format 2: zero, no cold level) */
        st_digest d;
        st_hash(p, 56, &d);
        if (memcmp(d.b, p + 56, 8) != 0) {
                diag(reterr, "format", 56, "format file checksum mismatch");
                return -EBADMSG;
        }
        st_store_config c = {
                .chunker = { st_le32_get(p + 16), st_le32_get(p + 20), st_le32_get(p + 24),
                             st_le32_get(p + 28) },
                .zstd_level = (int32_t)st_le32_get(p + 32),
        };
        if (st_chunker_params_check(&c.chunker) < 0 || !zstd_level_valid(c.zstd_level, version)) {
                diag(reterr, "format", 16, "bad chunker parameters or zstd level");
                return -EBADMSG;
        }
        c.commit_chunker = (st_chunker_params){ st_le32_get(p + 36), st_le32_get(p + 40),
                                                st_le32_get(p + 44), st_le32_get(p + 48) };
        if (st_chunker_params_check(&c.commit_chunker) < 0) {
                diag(reterr, "format", 36, "bad commit chunker parameters");
                return -EBADMSG;
        }
        c.zstd_cold_level = (int32_t)st_le32_get(p + 52);
        if (!cold_level_valid(&c, version)) {
                diag(reterr, "format", 52, version < 3 ? "reserved format bytes are not zero"
                                                       : "bad cold zstd level");
                return -EBADMSG;
        }
        *ret = c;
        if (ret_version)
                *ret_version = version;
        return 0;
}

int st_store_init(const char *dir, const st_store_config *cfg) {
        st_store_config c = cfg ? *cfg : ST_STORE_CONFIG_DEFAULT;
        if (st_chunker_params_check(&c.chunker) < 0 ||
            !zstd_level_valid(c.zstd_level, STORE_FORMAT_VERSION) ||
            st_chunker_params_check(&c.commit_chunker) < 0 ||
            !cold_level_valid(&c, STORE_FORMAT_VERSION))
                return -EINVAL;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return -errno;
        if (faccessat(dfd, "format", F_OK, 0) == 0)
                return -EEXIST;
        /* Never make a store of a directory that holds something else (an
         * import into the wrong path would litter it); only of an empty one,
         * or of one a crashed init left its own entries in. */
        char **names;
        size_t n_names;
        int k = st_list_dir(dfd, NULL, &names, &n_names);
        if (k < 0)
                return k;
        static const char *const ours[] = { "packs", "manifests", "refs", "deltas", "lock" };
        bool foreign = false;
        for (size_t i = 0; i < n_names && !foreign; i++) {
                foreign = true;
                for (size_t j = 0; j < 5 && foreign; j++)
                        foreign = strcmp(names[i], ours[j]) != 0;
        }
        st_names_free(names, n_names);
        if (foreign)
                return -ENOTEMPTY;
        if (mkdirat(dfd, "packs", 0755) < 0 && errno != EEXIST)
                return -errno;
        static const char *const dirs[] = { "manifests", "refs", "deltas" };
        for (size_t i = 0; i < 3; i++)
                if (mkdirat(dfd, dirs[i], 0755) < 0 && errno != EEXIST)
                        return -errno;
        _cleanup_close_ int lfd = openat(dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (lfd < 0)
                return -errno;
        uint8_t buf[STORE_FORMAT_LEN];
        format_encode(buf, &c);
        /* 'format' is written last: a store without it is not a store yet. */
        return st_write_atomic(dfd, "format", buf, sizeof buf);
}

st_pool *store_pool(st_store *s) {
        /* Made on first use, by whichever command (thread) comes first. */
        pthread_mutex_lock(&s->bufs_lock);
        if (!s->pool)
                s->pool = st_pool_new(0);
        st_pool *p = s->pool;
        pthread_mutex_unlock(&s->bufs_lock);
        return p;
}

store_pack *store_pack_find(st_store *s, uint32_t id) {
        size_t lo = 0, hi = s->n_packs;
        while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (s->packs[mid].id == id)
                        return &s->packs[mid];
                if (s->packs[mid].id < id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

void store_recount_totals(st_store *s) {
        s->unique_bytes = s->stored_bytes = 0;
        for (uint32_t id = 0; id < index_count(s->idx); id++) {
                const index_entry *e = index_get(s->idx, id);
                s->unique_bytes += e->raw_len;
                s->stored_bytes += index_entry_stored(e);
        }
}

int store_exclusive(const st_store *s) {
        int r = store_writable(s);
        return r < 0 ? r : (s->flags & ST_STORE_SHARED) ? -EBUSY : 0;
}

int store_writable(const st_store *s) {
        if (s->flags & ST_STORE_RDONLY)
                return -EROFS;
        if (s->broken)
                return -EIO;
        return 0;
}

/* A store of format 2 (packs of single chunks only) becomes format 3 before
 * anything is written to it: a binary that knows only 2 then refuses the
 * store instead of taking a frame for damage and cutting the pack there. */
static int store_format_upgrade(st_store *s) {
        if (s->format_version >= STORE_FORMAT_VERSION)
                return 0;
        uint8_t buf[STORE_FORMAT_LEN];
        format_encode(buf, &s->cfg);
        int r = st_write_atomic(s->dirfd, "format", buf, sizeof buf);
        if (r < 0)
                return r;
        s->format_version = STORE_FORMAT_VERSION;
        return 0;
}

int store_mark_dirty(st_store *s) {
        if (s->dirty_marked)
                return 0;
        int k = store_format_upgrade(s);
        if (k < 0)
                return k;
        _cleanup_close_ int fd = openat(s->dirfd, "dirty", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        int r = st_fsync_dir(s->dirfd);
        if (r < 0)
                return r;
        s->dirty_marked = true;
        return 0;
}

int store_write_index(st_store *s) {
        for (size_t i = 0; i < s->n_packs; i++) {
                if (!s->packs[i].unsynced)
                        continue;
                if (fsync(s->packs[i].fd) < 0)
                        return -errno;
                s->packs[i].unsynced = false;
        }
        /* What changed, appended to the log; now and then (and after gc or
         * recovery, which move entries) the whole index, with a fresh log. */
        uint64_t index_len = INDEX_FILE_HEADER_LEN + s->n_packs * INDEX_FILE_PACK_LEN +
                             (uint64_t)index_count(s->idx) * INDEX_FILE_ENTRY_LEN;
        /* (an index of format 1 is rewritten whole: idx_full) */
        if (index_log_can_append(s, index_len))
                return index_log_append(s);
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        int r = index_file_encode(s, &buf, &len);
        if (r < 0)
                return r;
        r = st_write_atomic(s->dirfd, "index", buf, len);
        if (r < 0)
                return r;
        memcpy(s->index_sum, buf + len - INDEX_FILE_TRAILER_LEN, 32);
        s->index_old = false;
        /* (a crash here leaves the old log, of another index: ignored) */
        r = index_log_reset(s);
        if (r < 0) {
                s->idx_full = true;
                return r;
        }
        index_log_saved(s);
        return 0;
}

int store_dirty_hold(st_store *s) {
        int r = store_mark_dirty(s);
        if (r == 0)
                s->dirty_holds++;
        return r;
}

int store_dirty_release(st_store *s) {
        if (s->dirty_holds > 0)
                s->dirty_holds--;
        return store_clear_dirty(s);
}

int store_clear_dirty(st_store *s) {
        if (s->dirty_holds > 0)
                return 0; /* (what a holder appended is not listed yet) */
        if (unlinkat(s->dirfd, "dirty", 0) < 0 && errno != ENOENT)
                return -errno;
        int r = st_fsync_dir(s->dirfd);
        if (r < 0)
                return r;
        s->dirty_marked = false;
        return 0;
}

int store_commit(st_store *s) {
        int r = store_write_index(s);
        return r < 0 ? r : store_clear_dirty(s);
}

int store_pack_create(st_store *s, store_pack **ret) {
        if (s->next_pack_id == UINT32_MAX)
                return -ENOSPC;
        /* Exclusive create: a SHARED process may be making packs too. */
        uint32_t id = s->next_pack_id;
        char name[32];
        _cleanup_close_ int fd = -EBADF;
        for (;;) {
                pack_name(name, id);
                fd = openat(s->packs_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
                if (fd >= 0)
                        break;
                if (errno != EEXIST || id == UINT32_MAX - 1)
                        return -errno;
                id++;
        }
        uint8_t hdr[PACK_HEADER_LEN];
        pack_header_encode(hdr, id);
        int r = st_pwrite_full(fd, hdr, sizeof hdr, 0);
        if (r < 0)
                return r;
        r = st_fsync_dir(s->packs_fd);
        if (r < 0)
                return r;
        store_pack *packs = realloc(s->packs, (s->n_packs + 1) * sizeof *packs);
        if (!packs)
                return -ENOMEM;
        s->packs = packs;
        /* ids only grow, so appending keeps the array sorted */
        packs[s->n_packs] = (store_pack){ .id = id, .fd = TAKE_FD(fd), .len = PACK_HEADER_LEN,
                                          .unsynced = true };
        s->next_pack_id = id + 1;
        *ret = &packs[s->n_packs++];
        return 0;
}

int store_pack_for_append(st_store *s, uint64_t need, store_pack **ret) {
        if (s->n_packs > 0) {
                store_pack *p = &s->packs[s->n_packs - 1];
                if (p->id == s->next_pack_id - 1 &&
                    (p->len + need <= PACK_TARGET_SIZE || p->len == PACK_HEADER_LEN) &&
                    p->len + need <= PACK_MAX_SIZE) {
                        *ret = p;
                        return 0;
                }
        }
        return store_pack_create(s, ret);
}

static int store_open_packs(st_store *s, bool *ret_stale) {
        /* Open every pack file listed by the index. One that is missing, or
         * whose size is not what the index says, means the index is not the
         * one the packs were last left with (a stale copy put back, a lost
         * pack): recovery checks the packs themselves. */
        *ret_stale = false;
        for (size_t i = 0; i < s->n_packs; i++) {
                char name[32];
                pack_name(name, s->packs[i].id);
                int fd = openat(s->packs_fd, name,
                                (store_files_writable(s) ? O_RDWR : O_RDONLY) | O_CLOEXEC);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0) {
                        if (fd >= 0)
                                close(fd);
                        if (errno != ENOENT)
                                return -errno;
                        *ret_stale = true;
                        continue;
                }
                if ((uint64_t)st.st_size != s->packs[i].len)
                        *ret_stale = true;
                s->packs[i].fd = fd;
        }
        /* A pack the index does not list (new since it was written). */
        char **names;
        size_t n;
        int r = st_list_dir(s->packs_fd, NULL, &names, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n && !*ret_stale; i++) {
                uint32_t id;
                if (pack_name_parse(names[i], &id) && !store_pack_find(s, id))
                        *ret_stale = true;
        }
        st_names_free(names, n);
        return 0;
}

static void store_reset_index(st_store *s) {
        for (size_t i = 0; i < s->n_packs; i++)
                if (s->packs[i].fd >= 0)
                        close(s->packs[i].fd);
        free(s->packs);
        s->packs = NULL;
        s->n_packs = 0;
        s->next_pack_id = 1;
        s->unique_bytes = s->stored_bytes = 0;
        index_free(s->idx);
        s->idx = index_new();
        s->idx_full = true;
}

bool store_files_writable(const st_store *s) {
        return !(s->flags & (ST_STORE_RDONLY | ST_STORE_SHARED));
}

/* Take the lock the flags ask for. Writers fail at once if anyone holds
 * it; readers and SHARED openers wait for a writer unless NOWAIT. */
static int store_lock(st_store *s, st_diag *reterr) {
        if ((s->flags & ST_STORE_NOINDEX) && (s->flags & ST_STORE_RDONLY))
                return 0; /* names only: refs and manifests come and go by rename */
        if (!(s->flags & (ST_STORE_RDONLY | ST_STORE_SHARED))) {
                if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                        int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                        diag(reterr, "lock", ST_DIAG_NO_OFFSET,
                             r == -EBUSY ? "the store is in use by another process (stellar "
                                           "serve, or an import or gc still running)"
                                         : "cannot lock the store");
                        return r;
                }
                /* Who holds it, for the messages of those who wait. */
                char who[32];
                int n = snprintf(who, sizeof who, "%ld\n", (long)getpid());
                if (ftruncate(s->lock_fd, 0) == 0)
                        (void)st_pwrite_full(s->lock_fd, who, (size_t)n, 0);
                return 0;
        }
        if (flock(s->lock_fd, LOCK_SH | LOCK_NB) == 0)
                return 0;
        if (errno != EWOULDBLOCK)
                return -errno;
        if (s->flags & ST_STORE_NOWAIT) {
                diag(reterr, "lock", ST_DIAG_NO_OFFSET,
                     "another process is changing the store (an import, commit, rm or gc)");
                return -EBUSY;
        }
        while (flock(s->lock_fd, LOCK_SH) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

static long read_pid(int dirfd, const char *file) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len;
        if (st_read_file(dirfd, file, 31, &buf, &len) < 0)
                return 0;
        char txt[32];
        memcpy(txt, buf, len);
        txt[len] = 0;
        long pid = strtol(txt, NULL, 10);
        return pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM) ? pid : 0;
}

long st_store_writer_pid(const char *dir) {
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return dfd < 0 ? 0 : read_pid(dfd, "lock");
}

#define SERVE_LOCK "serve.lock"

long st_store_server_pid(const char *dir) {
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return 0;
        _cleanup_close_ int fd = openat(dfd, SERVE_LOCK, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0)
                return 0; /* nobody serves it */
        long pid = read_pid(dfd, SERVE_LOCK);
        return pid ? pid : -1;
}

int st_store_claim_server(st_store *s, long *ret_holder) {
        if (s->serve_fd >= 0)
                return 0;
        _cleanup_close_ int fd =
                openat(s->dirfd, SERVE_LOCK, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EBUSY : -errno;
                if (r == -EBUSY && ret_holder)
                        *ret_holder = read_pid(s->dirfd, SERVE_LOCK);
                return r;
        }
        char who[32];
        int n = snprintf(who, sizeof who, "%ld\n", (long)getpid());
        if (ftruncate(fd, 0) < 0)
                return -errno;
        int r = st_pwrite_full(fd, who, (size_t)n, 0);
        if (r < 0)
                return r;
        s->serve_fd = TAKE_FD(fd);
        return 0;
}

static int store_open_once(const char *dir, unsigned flags, bool *ret_wants_recovery,
                           st_store **ret, st_diag *reterr) {
        _cleanup_free_ uint8_t *fmt = NULL, *ibuf = NULL;
        size_t fmt_len, ilen = 0;
        int r;
        st_store *s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->dirfd = s->packs_fd = s->manifests_fd = s->refs_fd = s->deltas_fd = s->lock_fd = -EBADF;
        s->serve_fd = s->log_fd = -EBADF;
        s->idx_full = true; /* until an index (and its log) is loaded */
        pthread_rwlock_init(&s->lock, NULL);
        pthread_mutex_init(&s->write_lock, NULL);
        pthread_mutex_init(&s->bufs_lock, NULL);
        pthread_mutex_init(&s->cache_lock, NULL);
        pthread_mutex_init(&s->volumes_lock, NULL);
        pthread_cond_init(&s->volumes_cv, NULL);
        s->flags = flags & (ST_STORE_RDONLY | ST_STORE_SHARED | ST_STORE_NOINDEX | ST_STORE_NOWAIT);
        s->next_pack_id = 1;

        s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dirfd < 0) {
                r = -errno;
                diag(reterr, dir, ST_DIAG_NO_OFFSET,
                     r == -ENOENT ? "no store here (run 'stellar init')" : "cannot open store directory");
                goto fail;
        }
        r = st_read_file(s->dirfd, "format", 4096, &fmt, &fmt_len);
        if (r < 0) {
                diag(reterr, "format", ST_DIAG_NO_OFFSET,
                     r == -ENOENT ? "no store here (run 'stellar init')" : "cannot read");
                goto fail;
        }
        r = store_format_decode(fmt, fmt_len, &s->cfg, &s->format_version, reterr);
        if (r < 0)
                goto fail;
        s->lock_fd = openat(s->dirfd, "lock",
                            ((s->flags & ST_STORE_RDONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (s->lock_fd < 0) {
                r = -errno;
                diag(reterr, "lock", ST_DIAG_NO_OFFSET, "cannot open the lock file");
                goto fail;
        }
        r = store_lock(s, reterr);
        if (r < 0)
                goto fail;
        static const char *const dirs[] = { "packs", "manifests", "refs", "deltas" };
        int *fds[] = { &s->packs_fd, &s->manifests_fd, &s->refs_fd, &s->deltas_fd };
        for (size_t i = 0; i < 4; i++) {
                *fds[i] = openat(s->dirfd, dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (*fds[i] < 0) {
                        r = -errno;
                        diag(reterr, dirs[i], ST_DIAG_NO_OFFSET, "cannot open directory");
                        goto fail;
                }
        }
        s->idx = index_new();
        if (!s->idx) {
                r = -ENOMEM;
                goto fail;
        }
        if (s->flags & ST_STORE_NOINDEX) {
                *ret = s;
                return 0;
        }

        /* Read under the lock: what a writer that finished while we waited
         * wrote is what we see. */
        bool need_recovery = faccessat(s->dirfd, "dirty", F_OK, 0) == 0;
        r = st_read_file(s->dirfd, "index", SIZE_MAX, &ibuf, &ilen);
        if (r == -ENOENT) {
                need_recovery = true; /* a new store, or one whose index was lost */
                char **names;
                size_t n;
                if (st_list_dir(s->packs_fd, NULL, &names, &n) == 0) {
                        if (n > 0 && faccessat(s->dirfd, "dirty", F_OK, 0) < 0)
                                diag(&s->index_problem, "index", ST_DIAG_NO_OFFSET,
                                     "the index is missing");
                        st_names_free(names, n);
                }
        }
        else if (r < 0) {
                diag(reterr, "index", ST_DIAG_NO_OFFSET, "cannot read");
                goto fail;
        } else {
                st_diag d = { 0 };
                r = index_file_load(s, ibuf, ilen, &d);
                if (r == -EPROTONOSUPPORT) {
                        diag(reterr, "index", d.offset, d.what);
                        goto fail;
                }
                if (r == 0) {
                        r = index_log_load(s, &d); /* (entries it adds count in the totals) */
                        if (r == 1) {
                                /* a torn batch: a crash (then 'dirty' is
                                 * here), else damage to report */
                                if (!need_recovery)
                                        s->index_problem = d;
                                need_recovery = true;
                                r = 0;
                        } else if (r == 0) {
                                index_log_saved(s);
                        } else if (r == -ENOMEM) {
                                goto fail;
                        }
                }
                if (r < 0) {
                        /* A damaged index is rebuilt from the packs alone. */
                        s->index_problem = d;
                        if (!d.file[0])
                                snprintf(s->index_problem.file, sizeof s->index_problem.file,
                                         "index");
                        store_reset_index(s);
                        if (!s->idx) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        need_recovery = true;
                }
        }
        for (size_t i = 0; i < s->n_packs; i++)
                s->packs[i].fd = -EBADF;
        bool stale;
        r = store_open_packs(s, &stale);
        if (r < 0) {
                diag(reterr, "packs", ST_DIAG_NO_OFFSET, "cannot open the packs");
                goto fail;
        }
        if (stale && !need_recovery)
                diag(&s->index_problem, "index", ST_DIAG_NO_OFFSET,
                     "the index does not match the packs and no crash explains it (a stale "
                     "copy put back?); the packs were read again");
        if (stale) {
                /* Packs the index lists are gone: its entries cannot be
                 * trusted; every pack is read again instead. */
                bool lost = false;
                for (size_t i = 0; i < s->n_packs; i++)
                        if (s->packs[i].fd < 0) {
                                uint32_t *t = realloc(s->lost_packs,
                                                      (s->n_lost_packs + 1) * sizeof *t);
                                if (t) {
                                        s->lost_packs = t;
                                        t[s->n_lost_packs++] = s->packs[i].id;
                                }
                                lost = true;
                        }
                if (lost) {
                        /* Never hand out a lost pack's id again: the pack
                         * may come back (restored from a backup). */
                        uint32_t next = s->next_pack_id;
                        store_reset_index(s);
                        s->next_pack_id = next;
                        if (!s->idx) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
                need_recovery = true;
        }
        if (need_recovery && ret_wants_recovery && (s->flags & ST_STORE_SHARED) &&
            !(s->flags & ST_STORE_RDONLY)) {
                /* The caller may recover it with the store to itself, then
                 * open again. */
                *ret_wants_recovery = true;
                st_store_close(s);
                return 0;
        }
        if (need_recovery) {
                /* Only a process holding the store to itself writes what it
                 * finds; readers and SHARED openers catch up in memory. */
                s->dirty_marked = store_files_writable(s);
                r = store_recover(s, reterr);
                if (r < 0)
                        goto fail;
        }
        *ret = s;
        return 0;
fail:
        st_store_close(s);
        return r;
}

int st_store_open(const char *dir, unsigned flags, st_store **ret, st_diag *reterr) {
        int r;
        if (flags & ST_STORE_CREATE) {
                r = st_store_init(dir, NULL);
                if (r < 0 && r != -EEXIST) {
                        diag(reterr, dir, ST_DIAG_NO_OFFSET,
                             r == -ENOTEMPTY ? "not a store, and not empty: will not make it one"
                                             : "cannot create a store here");
                        return r;
                }
        }
        if ((flags & ST_STORE_SHARED) && !(flags & (ST_STORE_RDONLY | ST_STORE_NOINDEX))) {
                bool wants = false;
                r = store_open_once(dir, flags, &wants, ret, reterr);
                if (r < 0 || !wants)
                        return r;
                /* Recover with the store to ourselves if nobody shares it (a
                 * daemon does: then catch up in memory), then open shared. */
                st_store *x;
                r = store_open_once(dir, flags & ~(ST_STORE_SHARED | ST_STORE_NOWAIT), NULL, &x,
                                    NULL);
                if (r == 0)
                        st_store_close(x);
        }
        return store_open_once(dir, flags, NULL, ret, reterr);
}

st_store *st_store_close(st_store *s) {
        if (!s)
                return NULL;
        store_set_remote(s, NULL, NULL); /* first: it may have a thread appending to packs */
        for (size_t i = 0; i < s->n_packs; i++)
                if (s->packs[i].fd >= 0)
                        close(s->packs[i].fd);
        free(s->packs);
        store_cold_free(s);
        free(s->lost_packs);
        free(s->changed);
        free(s->changed_bits);
        if (s->log_fd >= 0)
                close(s->log_fd);
        index_free(s->idx);
        st_pool_free(s->pool);
        store_cache_free(s);
        cache_free(s->hot);
        for (unsigned i = 0; i < s->n_bufs; i++) {
                store_chunk_buf_done(s->bufs[i]);
                free(s->bufs[i]);
        }
        pthread_mutex_destroy(&s->bufs_lock);
        int fds[] = { s->packs_fd, s->manifests_fd, s->refs_fd, s->deltas_fd };
        for (size_t i = 0; i < 4; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        if (s->serve_fd >= 0)
                close(s->serve_fd);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        if (s->dirfd >= 0)
                close(s->dirfd);
        pthread_rwlock_destroy(&s->lock);
        pthread_mutex_destroy(&s->write_lock);
        pthread_mutex_destroy(&s->cache_lock);
        pthread_mutex_destroy(&s->volumes_lock);
        pthread_cond_destroy(&s->volumes_cv);
        free(s);
        return NULL;
}

int st_store_set_cache(st_store *s, uint64_t budget) {
        chunk_cache *c = budget ? cache_new(budget) : NULL;
        if (budget && !c)
                return -ENOMEM;
        cache_free(s->hot);
        s->hot = c;
        return 0;
}

void st_store_cache_stats(st_store *s, st_cache_stats *ret) {
        if (s->hot)
                cache_stats(s->hot, ret);
        else
                *ret = (st_cache_stats){ 0 };
        ret->remote_fetches = atomic_load(&s->remote_fetches);
}

const st_store_config *st_store_get_config(const st_store *s) {
        return &s->cfg;
}

int store_entry_matches(st_store *s, const index_entry *e, const st_digest *hash) {
        store_pack *p = store_pack_find(s, e->pack);
        if (!p)
                return -EBADMSG;
        uint8_t hdr[PACK_RECORD_HEADER_LEN];
        int r = st_pread_full(p->fd, hdr, sizeof hdr, e->off);
        if (r < 0)
                return r == -EIO ? -EBADMSG : r;
        pack_record rec;
        if (pack_record_decode(hdr, sizeof hdr, &rec, NULL) < 0)
                return -EBADMSG;
        if (e->slot == 0)
                return memcmp(rec.hash.b, hash->b, ST_DIGEST_LEN) == 0;
        /* A frame: the slot's hash in its table (the read checks the bytes). */
        uint8_t slot[PACK_FRAME_SLOT_LEN];
        uint64_t at = (uint64_t)e->off + PACK_RECORD_HEADER_LEN + pack_frame_table_len(e->slot - 1);
        if (!(rec.flags & PACK_FLAG_FRAME) || e->slot > PACK_FRAME_MAX_CHUNKS ||
            pack_frame_table_len(e->slot) >= rec.stored_len)
                return -EBADMSG;
        r = st_pread_full(p->fd, slot, sizeof slot, at);
        if (r < 0)
                return r == -EIO ? -EBADMSG : r;
        return memcmp(slot, hash->b, ST_DIGEST_LEN) == 0;
}

/* The table of the frame in b->frame (checked when it was decompressed). */
static pack_frame frame_kept(const store_chunk_buf *b) {
        return (pack_frame){ .n = b->frame_chunks,
                             .table = b->scratch + PACK_RECORD_HEADER_LEN + PACK_FRAME_HEAD_LEN };
}

/* Slot e->slot - 1 of the frame in b->frame, if it is the chunk. */
static int frame_take(const index_entry *e, const st_digest *hash, store_chunk_buf *b) {
        uint32_t k = e->slot - 1, off = 0;
        pack_frame f = frame_kept(b);
        if (k >= f.n)
                return -EBADMSG;
        st_digest want;
        uint32_t len;
        pack_frame_slot(&f, k, &want, &off, &len);
        if (len != e->raw_len || (uint64_t)off + len > b->frame_len ||
            memcmp(want.b, hash->b, ST_DIGEST_LEN) != 0)
                return -EBADMSG;
        st_digest got;
        st_hash(b->frame + off, len, &got);
        if (memcmp(got.b, hash->b, ST_DIGEST_LEN) != 0)
                return -EBADMSG;
        memcpy(b->out, b->frame + off, len);
        return 0;
}

int store_read_entry(st_store *s, const index_entry *e, const st_digest *hash, store_chunk_buf *b) {
        store_pack *p = store_pack_find(s, e->pack);
        if (!p || (uint64_t)e->off + PACK_RECORD_HEADER_LEN + e->stored_len > p->len)
                return -EBADMSG;
        int r = st_buf_grow(&b->scratch, &b->scratch_cap, PACK_RECORD_HEADER_LEN + (size_t)e->stored_len);
        if (r == 0)
                r = st_buf_grow(&b->out, &b->out_cap, e->raw_len ? e->raw_len : 1);
        if (r == 0 && !b->dctx && !(b->dctx = ZSTD_createDCtx()))
                r = -ENOMEM;
        if (r < 0)
                return r;
        /* The frame decompressed last, if this chunk is in it: its record
         * is still in scratch. (Should the pack have been cut back and
         * rewritten since, the hash tells, and the record is read again.) */
        if (e->slot > 0 && b->frame_len && b->frame_pack == e->pack && b->frame_off == e->off &&
            frame_take(e, hash, b) == 0)
                return 0;
        b->frame_len = 0;
        r = st_pread_full(p->fd, b->scratch, PACK_RECORD_HEADER_LEN + e->stored_len, e->off);
        if (r < 0)
                return r == -EIO ? -EBADMSG : r;
        pack_record rec;
        if (pack_record_decode(b->scratch, PACK_RECORD_HEADER_LEN, &rec, NULL) < 0 ||
            rec.stored_len != e->stored_len || !(rec.flags & PACK_FLAG_FRAME) != !e->slot)
                return -EBADMSG;
        if (e->slot == 0) {
                if (rec.raw_len != e->raw_len || memcmp(rec.hash.b, hash->b, ST_DIGEST_LEN) != 0)
                        return -EBADMSG;
                return pack_payload_decode(&rec, b->scratch + PACK_RECORD_HEADER_LEN, b->out,
                                           b->dctx);
        }
        pack_frame f;
        if (pack_frame_parse(&rec, b->scratch + PACK_RECORD_HEADER_LEN, &f) < 0)
                return -EBADMSG;
        r = st_buf_grow(&b->frame, &b->frame_cap, rec.raw_len);
        if (r < 0)
                return r;
        if (pack_frame_inflate(&rec, &f, b->frame, b->dctx) < 0)
                return -EBADMSG;
        b->frame_pack = e->pack;
        b->frame_off = e->off;
        b->frame_len = rec.raw_len;
        b->frame_chunks = f.n;
        b->frame_new = true;
        r = frame_take(e, hash, b);
        if (r < 0)
                b->frame_len = 0;
        return r;
}

void store_offer_frame(st_store *s, store_chunk_buf *b, const st_digest *except) {
        if (!b->frame_new)
                return;
        b->frame_new = false;
        if (!s->hot || !b->frame_len)
                return;
        pack_frame f = frame_kept(b);
        uint32_t off = 0;
        for (uint32_t k = 0; k < f.n; k++) {
                const uint8_t *slot = f.table + (size_t)k * PACK_FRAME_SLOT_LEN;
                uint32_t len = st_le32_get(slot + 32);
                st_digest want, got;
                memcpy(want.b, slot, ST_DIGEST_LEN);
                if (memcmp(want.b, except->b, ST_DIGEST_LEN) != 0) {
                        st_hash(b->frame + off, len, &got);
                        if (memcmp(got.b, want.b, ST_DIGEST_LEN) == 0)
                                cache_offer(s->hot, &want, b->frame + off, len);
                }
                off += len;
        }
}

int64_t st_store_read_chunk(st_store *s, const st_digest *id, void *buf, size_t buf_len) {
        store_chunk c;
        int r = store_get(s, id, &c);
        if (r < 0)
                return r;
        int64_t n = c.len;
        if (c.len > buf_len)
                n = -ENOBUFS;
        else
                memcpy(buf, c.data, c.len);
        store_release(s, &c);
        return n;
}

store_chunk_buf *store_chunk_buf_get(st_store *s) {
        pthread_mutex_lock(&s->bufs_lock);
        store_chunk_buf *b = s->n_bufs ? s->bufs[--s->n_bufs] : NULL;
        pthread_mutex_unlock(&s->bufs_lock);
        return b ? b : calloc(1, sizeof *b);
}

void store_chunk_buf_put(st_store *s, store_chunk_buf *b) {
        if (!b)
                return;
        pthread_mutex_lock(&s->bufs_lock);
        if (s->n_bufs < 16) {
                s->bufs[s->n_bufs++] = b;
                b = NULL;
        }
        pthread_mutex_unlock(&s->bufs_lock);
        if (b) {
                store_chunk_buf_done(b);
                free(b);
        }
}

void store_chunk_buf_done(store_chunk_buf *b) {
        free(b->scratch);
        free(b->out);
        free(b->frame);
        ZSTD_freeDCtx(b->dctx);
        *b = (store_chunk_buf){ 0 };
}

int64_t store_read_chunk_local(st_store *s, const st_digest *id, store_chunk_buf *b,
                               uint32_t *ret_stored_len) {
        pthread_rwlock_rdlock(&s->lock);
        int r;
        uint32_t i = index_find(s->idx, id);
        index_entry e = { 0 };
        if (i == INDEX_NONE || (e = *index_get(s->idx, i)).pack == INDEX_PACK_PENDING)
                r = -ENOENT;
        else
                r = store_read_entry(s, &e, id, b);
        pthread_rwlock_unlock(&s->lock);
        if (ret_stored_len)
                *ret_stored_len = e.stored_len;
        return r < 0 ? r : (int64_t)e.raw_len;
}
