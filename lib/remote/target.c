/* SPDX-License-Identifier: Apache-2.0 */
/* Targets: the directory kind here, HTTP and S3 in http.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stellar/hash.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "blob.h"
#include "target.h"

struct target {
        int dirfd; /* directory targets */
        char root[4096];
        http_engine *http;
        unsigned tmp_seq;
};

/* Make the directories of path (relative to dirfd) that are missing: all
 * of them, or all but the last component. */
static int make_dirs(int dirfd, const char *path, bool last) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", path);
        for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
                *p = 0;
                if (mkdirat(dirfd, dir, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return last && mkdirat(dirfd, dir, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

int target_open(const char *url, const st_transfer_opts *o, target **ret, st_diag *reterr) {
        target *t = calloc(1, sizeof *t);
        if (!t)
                return -ENOMEM;
        t->dirfd = -EBADF;
        int r;
        if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8) || !strncmp(url, "s3://", 5)) {
                r = http_open(url, o, &t->http, reterr);
        } else {
                const char *path = !strncmp(url, "file://", 7) ? url + 7 : url;
                if (strstr(url, "://") && strncmp(url, "file://", 7)) {
                        r = st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET,
                                         "unknown URL scheme (use a path, file://, http://, "
                                         "https:// or s3://)", -EINVAL);
                } else if (strlen(path) >= sizeof t->root || !*path) {
                        r = st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, "bad path", -EINVAL);
                } else {
                        snprintf(t->root, sizeof t->root, "%s", path);
                        (void)make_dirs(AT_FDCWD, t->root, true); /* a publish target may not exist yet */
                        t->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        r = t->dirfd < 0 ? -errno : 0;
                        if (r < 0)
                                (void)st_diag_fail(reterr, path, ST_DIAG_NO_OFFSET,
                                                   "cannot open directory", r);
                }
        }
        if (r < 0) {
                target_close(t);
                return r;
        }
        *ret = t;
        return 0;
}

target *target_close(target *t) {
        if (!t)
                return NULL;
        if (t->dirfd >= 0)
                close(t->dirfd);
        http_close(t->http);
        free(t);
        return NULL;
}

bool target_writable(const target *t) {
        return !t->http || http_is_s3(t->http);
}

void target_url(const target *t, const char *key, char *out, size_t out_len) {
        if (t->http)
                http_url(t->http, key, out, out_len);
        else {
                size_t a = strlen(t->root), b = strlen(key);
                if (out_len == 0)
                        return;
                if (a >= out_len)
                        a = out_len - 1;
                memcpy(out, t->root, a);
                if (a + 1 < out_len)
                        out[a++] = '/';
                if (b >= out_len - a)
                        b = out_len - a - 1;
                memcpy(out + a, key, b);
                out[a + b] = 0;
        }
}

uint64_t target_retries(const target *t) {
        return t->http ? http_retries(t->http) : 0;
}

static int dir_get(target *t, target_req *q, uint8_t **buf, size_t *cap) {
        _cleanup_close_ int fd = openat(t->dirfd, q->key, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EISDIR;
        if ((uint64_t)st.st_size > q->max_len)
                return -EFBIG;
        size_t n = (size_t)st.st_size;
        int r = st_buf_grow(buf, cap, n ? n : 1);
        if (r < 0)
                return r;
        r = st_pread_full(fd, *buf, n, 0);
        if (r < 0)
                return r;
        q->data = *buf;
        q->len = n;
        return 0;
}

/* The temporary name of key: ".BASE.tmp.PID.SEQ" beside it. A leading '.'
 * is what no published name has (st_name_valid refuses it; blobs and
 * manifests are named by hex ids), so listings skip exactly these. */
static void dir_tmp_name(target *t, const char *key, char *out, size_t out_len) {
        const char *slash = strrchr(key, '/');
        int dir_len = slash ? (int)(slash - key + 1) : 0;
        snprintf(out, out_len, "%.*s.%s.tmp.%d.%u", dir_len, key, key + dir_len, (int)getpid(),
                 t->tmp_seq++);
}

/* digits, then '.', then digits, and nothing else: the "PID.SEQ" tail */
static bool is_pid_seq(const char *p) {
        size_t a = strspn(p, "0123456789");
        return a > 0 && p[a] == '.' && p[a + 1] && strspn(p + a + 1, "0123456789") == strlen(p + a + 1);
}

/* A temp file of dir_tmp_name, or of the naming before it (BASE.tmp.PID.SEQ,
 * recognised only where BASE is a hex id, as a name in refs/ may look like
 * that). */
static bool is_own_temp(const char *name, bool hex_names) {
        const char *t = strstr(name, ".tmp.");
        if (!t || !is_pid_seq(t + 5))
                return false;
        if (name[0] == '.')
                return true;
        size_t base = (size_t)(t - name);
        return hex_names && base >= ST_DIGEST_HEX_LEN &&
               strspn(name, "0123456789abcdef") == ST_DIGEST_HEX_LEN &&
               (base == ST_DIGEST_HEX_LEN ||
                (base == ST_DIGEST_HEX_LEN + 5 && !strncmp(name + ST_DIGEST_HEX_LEN, ".json", 5)));
}

int target_clean_temps(target *t, uint64_t *ret_removed) {
        static const char *const dirs[] = { "blobs", "manifests", "refs" };
        uint64_t removed = 0;
        if (t->http) { /* S3 PUTs are whole objects: no temp files */
                if (ret_removed)
                        *ret_removed = 0;
                return 0;
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
                int fd = openat(t->dirfd, dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0) {
                        if (errno == ENOENT)
                                continue;
                        return -errno;
                }
                DIR *d = fdopendir(fd);
                if (!d) {
                        close(fd);
                        return -errno;
                }
                struct dirent *de;
                while ((de = readdir(d))) {
                        struct stat st;
                        if (!is_own_temp(de->d_name, i < 2) ||
                            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                            !S_ISREG(st.st_mode) || st.st_mtime > now.tv_sec - TARGET_TEMP_STALE_S)
                                continue;
                        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
                                removed++;
                }
                closedir(d);
        }
        if (ret_removed)
                *ret_removed = removed;
        return 0;
}

/* Write key through a temporary name and a rename, so a reader sees the
 * whole file or none. Parent directories are made as needed. */
static int dir_put(target *t, const target_req *q) {
        char tmp[sizeof q->key + 40];
        dir_tmp_name(t, q->key, tmp, sizeof tmp);
        int fd = openat(t->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 && errno == ENOENT) {
                int r = make_dirs(t->dirfd, q->key, false);
                if (r < 0)
                        return r;
                fd = openat(t->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        }
        if (fd < 0)
                return -errno;
        int r = st_pwrite_full(fd, q->body, q->body_len, 0);
        close(fd);
        if (r == 0 && renameat(t->dirfd, tmp, t->dirfd, q->key) < 0)
                r = -errno;
        if (r < 0)
                (void)unlinkat(t->dirfd, tmp, 0);
        return r;
}

static int dir_run(target *t, const target_io *io, st_diag *reterr) {
        _cleanup_free_ uint8_t *buf = NULL;
        size_t cap = 0;
        for (;;) {
                target_req q = { 0 };
                int r = io->next(io->ctx, &q);
                if (r <= 0)
                        return r;
                for (;;) {
                        q.attempts++;
                        q.data = NULL;
                        q.len = 0;
                        q.err = q.op == TARGET_GET ? dir_get(t, &q, &buf, &cap) : dir_put(t, &q);
                        r = io->done(io->ctx, &q);
                        if (r == 1 && q.attempts < 2)
                                continue;
                        if (r == 1)
                                r = -EBADMSG;
                        break;
                }
                if (r < 0) {
                        char where[300];
                        target_url(t, q.key, where, sizeof where);
                        if (reterr && !reterr->what)
                                (void)st_diag_fail(reterr, where, ST_DIAG_NO_OFFSET,
                                                   r == -EBADMSG || r == -ENOENT || r == -EFBIG
                                                           ? remote_describe(r)
                                                           : "cannot read or write the file",
                                                   r);
                        return r;
                }
        }
}

void target_req_blob(target_req *r, const st_digest *id) {
        r->op = TARGET_GET;
        blob_key(id, r->key, sizeof r->key);
        r->max_len = blob_max_len();
        r->user = (void *)id;
}

int target_run(target *t, const target_io *io, st_diag *reterr) {
        return t->http ? http_run(t->http, io, reterr) : dir_run(t, io, reterr);
}

struct one {
        const char *key;
        int op;
        const void *body;
        size_t len, max;
        bool issued;
        uint8_t *data;
        size_t data_len;
};

static int one_next(void *ctx, target_req *r) {
        struct one *o = ctx;
        if (o->issued)
                return 0;
        o->issued = true;
        r->op = o->op;
        snprintf(r->key, sizeof r->key, "%s", o->key);
        r->body = o->body;
        r->body_len = o->len;
        r->max_len = o->max;
        return 1;
}

static int one_done(void *ctx, target_req *r) {
        struct one *o = ctx;
        if (r->err < 0)
                return r->err; /* the engine describes it, with the HTTP status */
        if (r->op == TARGET_GET) {
                o->data = malloc(r->len ? r->len : 1);
                if (!o->data)
                        return -ENOMEM;
                memcpy(o->data, r->data, r->len);
                o->data_len = r->len;
        }
        return 0;
}

static int one_run(target *t, struct one *o, st_diag *reterr) {
        target_io io = { one_next, one_done, o };
        int r = target_run(t, &io, reterr);
        if (r < 0 && reterr && !reterr->what) {
                char url[512];
                target_url(t, o->key, url, sizeof url);
                (void)st_diag_fail(reterr, url, ST_DIAG_NO_OFFSET, remote_describe(r), r);
        }
        return r;
}

int target_get(target *t, const char *key, size_t max_len, uint8_t **ret, size_t *ret_len,
               st_diag *reterr) {
        struct one o = { .key = key, .op = TARGET_GET, .max = max_len };
        int r = one_run(t, &o, reterr);
        if (r < 0) {
                free(o.data);
                return r;
        }
        *ret = o.data;
        *ret_len = o.data_len;
        return 0;
}

int target_put(target *t, const char *key, const void *data, size_t len, st_diag *reterr) {
        struct one o = { .key = key, .op = TARGET_PUT, .body = data, .len = len };
        return one_run(t, &o, reterr);
}

struct strip {
        int (*fn)(void *, const char *);
        void *ctx;
        size_t skip;
};

static int strip_key(void *ctx, const char *key) {
        struct strip *sc = ctx;
        return strlen(key) > sc->skip ? sc->fn(sc->ctx, key + sc->skip) : 0;
}

int target_list(target *t, const char *prefix, int (*fn)(void *ctx, const char *name), void *ctx,
                st_diag *reterr) {
        if (t->http) {
                if (!http_is_s3(t->http))
                        return -EOPNOTSUPP;
                /* ListObjectsV2, page by page */
                char token[1024] = "";
                do {
                        char enc[3100], pre[1400], both[1400], query[4600], key[4700];
                        snprintf(both, sizeof both, "%s%s", http_s3_prefix(t->http), prefix);
                        percent_encode(token, "", enc, sizeof enc);
                        percent_encode(both, "", pre, sizeof pre);
                        /* SigV4 wants the query sorted by name, every value encoded */
                        snprintf(query, sizeof query, "%s%s%slist-type=2&prefix=%s",
                                 *token ? "continuation-token=" : "", enc, *token ? "&" : "", pre);
                        snprintf(key, sizeof key, "?%s", query);
                        uint8_t *xml;
                        size_t len;
                        int r = target_get(t, key, 64u << 20, &xml, &len, reterr);
                        if (r < 0)
                                return r;
                        /* keys come back whole: strip the bucket prefix and ours */
                        struct strip sc = { fn, ctx, strlen(http_s3_prefix(t->http)) + strlen(prefix) };
                        r = s3_list_parse((const char *)xml, len, strip_key, &sc, token,
                                          sizeof token);
                        free(xml);
                        if (r < 0)
                                return st_diag_fail(reterr, "S3 listing", ST_DIAG_NO_OFFSET,
                                                    "malformed ListObjectsV2 answer", r);
                } while (*token);
                return 0;
        }
        _cleanup_close_ int fd = openat(t->dirfd, prefix, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        DIR *d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        int r = 0;
        struct dirent *de;
        while (r >= 0 && (de = readdir(d)))
                if (de->d_name[0] != '.') /* temp files (dir_tmp_name) */
                        r = fn(ctx, de->d_name);
        closedir(d);
        return r;
}

int target_sync(target *t) {
        if (t->http)
                return 0;
        return syncfs(t->dirfd) < 0 ? -errno : 0;
}
