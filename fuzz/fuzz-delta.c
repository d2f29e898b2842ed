/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for delta_open, which replays a volume's delta journal
 * (deltas/NAME.map) against its data file (NAME.data).
 *
 * Input: a 2-byte little-endian prefix U, then the bytes of NAME.map. U picks
 * the data file: U * 256 bytes of zeros (sparse), or no data file if U is
 * 0xffff. The files go to a scratch directory of this process,
 * fuzz-delta-PID-XXXXXX under /dev/shm (else $TMPDIR or /tmp), rewritten for
 * every input and removed at exit; a crashed run's directory is removed by the
 * next run. The journal is replayed with tag FUZZ_DELTA_TAG (fuzz.h).
 *
 * Checks, against an independent replay of the journal here (the model,
 * written from docs/formats/delta.md, versions 1 and 2):
 *  - read-only and read-write opens succeed or fail alike, with the model's
 *    result: 0; -EPROTONOSUPPORT for a version other than 1 and 2; -EBADMSG
 *    for a bad header (shorter than 32 bytes, bad magic, header length, or
 *    header check: zero in version 1, BLAKE3 of bytes 0..23 in version 2), for
 *    a bad record followed by a later intact one (version 1) or by a later
 *    whole checking flush that does not cover it (version 2), and for a kept
 *    record naming a block past the volume, a slot past the data file (no
 *    data file: no slots) or a slot another block holds; the diag names
 *    deltas/v.map and the offset of the bad header field or record (a bad
 *    record before a later flush is reported before what the kept records
 *    name). A foreign tag behind a good header is an empty delta;
 *  - on success, the model's state: the version, the same blocks,
 *    delta_lookup agreeing (a slot < the data file's slots, or zeros), the
 *    durable length (whole checking flushes; version 1: the intact records
 *    before the first bad one) and the next sequence number (commit records
 *    count); delta_blocks is sorted and unique and matches the map's count;
 *  - the free slots are exactly the slots no block names;
 *  - a read-write open cuts the torn tail off, and a read-only reopen then
 *    finds the same state with nothing to cut;
 *  - writes, a zero and flushes on top of the replayed state (rewriting a
 *    durable block, reusing freed slots) leave every other block's slot and
 *    content alone, and replay to what was written; after each flush the
 *    journal file as the model reads it (version kept: 1 stays 1 without
 *    commit records, a new journal is 2) holds exactly the model's blocks.
 * The sealed run recomputes the header check (zero for version 1), every
 * write record's check and, in order, every commit record's check over the
 * records its count names, not the sequence numbers or counts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "util/le.h"
#include "volume/delta.h"

/* As in delta.c. */
#define MAP_MAGIC "STDELTA\0"
#define MAP_VERSION 2u /* written by delta_create; 1 is still read */
#define MAP_HEADER_LEN 32u
#define MAP_RECORD_LEN 32u
#define COMMIT_BLOCK UINT64_MAX /* version 2: a commit record ends every flush */
#define PREFIX_LEN 2u
#define NAME "v"

static int dir_fd = -1;
static char dir_path[256];
/* All that delta_open and delta_create (st_write_atomic's temp file) make. */
static const char *const file_names[] = { NAME ".map", NAME ".data", "." NAME ".map.tmp" };

static void cleanup(void) {
        if (dir_fd < 0)
                return;
        for (size_t i = 0; i < sizeof file_names / sizeof file_names[0]; i++)
                (void)unlinkat(dir_fd, file_names[i], 0);
        close(dir_fd);
        dir_fd = -1;
        (void)rmdir(dir_path);
}

/* Remove what a crashed run (no atexit) left in base: fuzz-delta-PID-* of
 * processes that are gone. */
static void sweep(const char *base) {
        DIR *dir = opendir(base);
        if (!dir)
                return;
        struct dirent *de;
        while ((de = readdir(dir))) {
                char *end;
                if (strncmp(de->d_name, "fuzz-delta-", 11) != 0)
                        continue;
                long pid = strtol(de->d_name + 11, &end, 10);
                if (end == de->d_name + 11 || *end != '-' || pid <= 0 ||
                    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
                        continue;
                int fd = openat(dirfd(dir), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                for (size_t i = 0; i < sizeof file_names / sizeof file_names[0]; i++)
                        (void)unlinkat(fd, file_names[i], 0);
                close(fd);
                (void)unlinkat(dirfd(dir), de->d_name, AT_REMOVEDIR);
        }
        closedir(dir);
}

static void scratch_dir(void) {
        if (dir_fd >= 0)
                return;
        const char *bases[] = { "/dev/shm", getenv("TMPDIR"), "/tmp" };
        for (size_t i = 0; i < 3 && dir_fd < 0; i++) {
                if (!bases[i])
                        continue;
                sweep(bases[i]);
                snprintf(dir_path, sizeof dir_path, "%s/fuzz-delta-%ld-XXXXXX", bases[i],
                         (long)getpid());
                if (mkdtemp(dir_path))
                        dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (dir_fd < 0) {
                perror("fuzz-delta: scratch directory");
                abort();
        }
        atexit(cleanup);
}

static void write_file(const char *name, const uint8_t *p, size_t len, uint64_t size) {
        int fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || (len && write(fd, p, len) != (ssize_t)len) ||
            (size > len && ftruncate(fd, (off_t)size) < 0) || close(fd) < 0) {
                perror("fuzz-delta: write");
                abort();
        }
}

static uint64_t check_of(const uint8_t *rec) {
        return fuzz_delta_check(rec, FUZZ_DELTA_TAG);
}

/* Version 2's header check: BLAKE3 of bytes 0..23, first 8 bytes. */
static uint64_t header_check_of(const uint8_t *hdr) {
        st_digest d;
        st_hash(hdr, 24, &d);
        return st_le64_get(d.b);
}

/* A commit record's check: BLAKE3 of the n records before it (their 32 bytes
 * each), its own first 24 bytes and the tag. rec is record k of recs. */
static uint64_t commit_check_of(const uint8_t *recs, size_t k, uint64_t n) {
        st_hasher h;
        uint8_t t[8];
        st_digest d;
        st_hasher_init(&h);
        st_hasher_update(&h, recs + (k - n) * MAP_RECORD_LEN, n * MAP_RECORD_LEN);
        st_hasher_update(&h, recs + k * MAP_RECORD_LEN, 24);
        st_le64_put(t, FUZZ_DELTA_TAG);
        st_hasher_update(&h, t, 8);
        st_hasher_final(&h, &d);
        return st_le64_get(d.b);
}

/* Blocks of the fuzzed volume: records at or past it are damage. */
#define FUZZ_MAX_BLOCKS (1ull << 20)

/* The model: block -> slot, DELTA_ZERO, or written content. */
#define UNKNOWN UINT64_MAX
typedef struct ment {
        uint64_t block, val; /* val: slot, DELTA_ZERO, or UNKNOWN (written here) */
        int pat;             /* content: 0 zeros (a replayed slot), k > 0 pattern k */
} ment;

typedef struct model {
        int rc;           /* expected delta_open result */
        uint64_t err_off; /* if rc < 0: the offset the diag names */
        bool live;        /* a journal was replayed (else the delta is empty, no files) */
        uint32_t version; /* of the journal, if live */
        uint64_t n_slots; /* in the data file, if live */
        uint64_t map_len; /* durable journal length (the torn tail cut off) */
        uint64_t seq;
        ment *e; /* sorted by block */
        size_t n, cap;
} model;

static size_t model_find(const model *m, uint64_t block) {
        size_t lo = 0, hi = m->n;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (m->e[mid].block < block)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static bool model_has(const model *m, uint64_t block) {
        size_t i = model_find(m, block);
        return i < m->n && m->e[i].block == block;
}

static void model_set(model *m, uint64_t block, uint64_t val, int pat) {
        size_t i = model_find(m, block);
        if (i == m->n || m->e[i].block != block) {
                if (m->n == m->cap) {
                        m->cap = m->cap ? m->cap * 2 : 64;
                        m->e = realloc(m->e, m->cap * sizeof *m->e);
                        if (!m->e)
                                abort();
                }
                memmove(m->e + i + 1, m->e + i, (m->n - i) * sizeof *m->e);
                m->n++;
        }
        m->e[i] = (ment){ block, val, pat };
}

static void model_fail(model *m, int rc, uint64_t off) {
        m->rc = rc;
        m->err_off = off;
        m->live = false;
        m->n = 0;
}
#define FAIL(rc, off)                                                                              \
        do {                                                                                       \
                model_fail(m, rc, off);                                                            \
                return;                                                                            \
        } while (0)

/* Replay map (the journal) as delta.h and docs/formats/delta.md describe it:
 * has_data says whether the data file exists, n_slots is its size in slots. */
static void model_replay(model *m, const uint8_t *map, size_t len, bool has_data,
                         uint64_t n_slots) {
        ment *e = m->e;
        size_t cap = m->cap;
        *m = (model){ .e = e, .cap = cap };
        if (len < MAP_HEADER_LEN)
                FAIL(-EBADMSG, len);
        if (memcmp(map, MAP_MAGIC, 8) != 0)
                FAIL(-EBADMSG, 0);
        uint32_t version = st_le32_get(map + 8);
        if (version != 1 && version != 2)
                FAIL(-EPROTONOSUPPORT, 8);
        if (st_le32_get(map + 12) != MAP_HEADER_LEN)
                FAIL(-EBADMSG, 12);
        if (st_le64_get(map + 24) != (version == 1 ? 0 : header_check_of(map)))
                FAIL(-EBADMSG, 24);
        if (st_le64_get(map + 16) != FUZZ_DELTA_TAG)
                return; /* an earlier volume's: empty */
        m->live = true;
        m->version = version;
        m->n_slots = has_data ? n_slots : 0; /* no data file: no slots */

        const uint8_t *recs = map + MAP_HEADER_LEN;
        size_t n_rec = (len - MAP_HEADER_LEN) / MAP_RECORD_LEN; /* a partial one is torn */
        /* good[k]: how many of records 0..k-1 are intact write records
         * (sequence number its position, check right; version 2: not a commit) */
        size_t *good = malloc((n_rec + 1) * sizeof *good);
        if (!good)
                abort();
        good[0] = 0;
        for (size_t k = 0; k < n_rec; k++) {
                const uint8_t *rec = recs + k * MAP_RECORD_LEN;
                bool ok = st_le64_get(rec + 16) == k && st_le64_get(rec + 24) == check_of(rec) &&
                          (version == 1 || st_le64_get(rec) != COMMIT_BLOCK);
                good[k + 1] = good[k] + ok;
        }
#define GOOD(k) (good[(k) + 1] - good[k] == 1)
        /* version 2: record k is a commit record that checks, over its n records */
#define COMMIT_OK(k, n)                                                                            \
        (st_le64_get(recs + (k) * MAP_RECORD_LEN) == COMMIT_BLOCK &&                               \
         st_le64_get(recs + (k) * MAP_RECORD_LEN + 16) == (k) && (n) <= (k) &&                     \
         good[k] - good[(k) - (n)] == (n) &&                                                       \
         st_le64_get(recs + (k) * MAP_RECORD_LEN + 24) == commit_check_of(recs, k, n))

        /* Keep the records up to the last whole flush before the first bad record. */
        size_t k = 0, kept = 0, flush_start = 0;
        for (; k < n_rec; k++) {
                const uint8_t *rec = recs + k * MAP_RECORD_LEN;
                if (version == 1) {
                        if (!GOOD(k))
                                break;
                        kept = k + 1;
                } else if (st_le64_get(rec) == COMMIT_BLOCK) {
                        uint64_t n = st_le64_get(rec + 8);
                        if (n != k - flush_start || !COMMIT_OK(k, n))
                                break;
                        kept = flush_start = k + 1;
                } else if (!GOOD(k)) {
                        break;
                }
        }
        if (k < n_rec) {
                /* Record k is bad: damage if something durable was written after it. */
                bool later = false;
                for (size_t j = k + 1; j < n_rec && !later; j++) {
                        if (version == 1) {
                                later = GOOD(j);
                        } else {
                                uint64_t n = st_le64_get(recs + j * MAP_RECORD_LEN + 8);
                                later = n < j - k && COMMIT_OK(j, n); /* not covering k */
                        }
                }
                if (later) {
                        free(good);
                        FAIL(-EBADMSG, MAP_HEADER_LEN + k * MAP_RECORD_LEN);
                }
        }
#undef GOOD
#undef COMMIT_OK
        free(good);
        m->map_len = MAP_HEADER_LEN + kept * MAP_RECORD_LEN;
        m->seq = kept;
        for (size_t j = 0; j < kept; j++) {
                const uint8_t *rec = recs + j * MAP_RECORD_LEN;
                uint64_t block = st_le64_get(rec), val = st_le64_get(rec + 8);
                uint64_t off = MAP_HEADER_LEN + j * MAP_RECORD_LEN;
                if (version != 1 && block == COMMIT_BLOCK)
                        continue;
                if (block >= FUZZ_MAX_BLOCKS || (val != DELTA_ZERO && val >= m->n_slots))
                        FAIL(-EBADMSG, off);
                for (size_t i = 0; val != DELTA_ZERO && i < m->n; i++)
                        if (m->e[i].val == val && m->e[i].block != block)
                                FAIL(-EBADMSG, off); /* a shared slot */
                model_set(m, block, val, 0);
        }
#undef FAIL
}

static void pattern(uint8_t *buf, int pat, uint64_t block) {
        memset(buf, 0x40 + pat, DELTA_BLOCK);
        st_le64_put(buf, block);
}

/* Everything the delta holds agrees with the model. */
static void check_state(const delta *d, const model *m) {
        if (m->live) {
                FUZZ_ASSERT(d->n_slots >= m->n_slots);
                FUZZ_ASSERT(d->map_len == m->map_len && d->seq == m->seq);
                FUZZ_ASSERT(d->version == m->version);
        } else {
                FUZZ_ASSERT(d->map_fd < 0 && d->data_fd < 0 && d->n_slots == 0);
        }
        uint64_t *blocks = NULL;
        size_t nb = 0;
        FUZZ_ASSERT(delta_blocks(d, &blocks, &nb) == 0);
        FUZZ_ASSERT(nb == d->count);
        FUZZ_ASSERT(nb == m->n);
        uint8_t *named = calloc(d->n_slots ? d->n_slots : 1, 1);
        if (!named)
                abort();
        uint64_t n_named = 0;
        static uint8_t buf[DELTA_BLOCK], want[DELTA_BLOCK];
        for (size_t i = 0; i < nb; i++) {
                FUZZ_ASSERT(i == 0 || blocks[i - 1] < blocks[i]);
                FUZZ_ASSERT(blocks[i] == m->e[i].block);
                uint64_t slot = UNKNOWN;
                int k = delta_lookup(d, blocks[i], &slot);
                const ment *e = &m->e[i];
                if (e->val == DELTA_ZERO) {
                        FUZZ_ASSERT(k == 2);
                        continue;
                }
                FUZZ_ASSERT(k == 1 && slot < d->n_slots);
                FUZZ_ASSERT(e->val == UNKNOWN || e->val == slot);
                if (!named[slot]) {
                        named[slot] = 1;
                        n_named++;
                }
                FUZZ_ASSERT(delta_read_slot(d, slot, buf) == 0);
                if (e->pat)
                        pattern(want, e->pat, e->block);
                else
                        memset(want, 0, sizeof want);
                FUZZ_ASSERT(memcmp(buf, want, DELTA_BLOCK) == 0);
        }
        free(blocks);
        /* Free slots: in range, distinct, named by no block, and all the others. */
        for (size_t i = 0; i < d->n_free; i++) {
                uint64_t s = d->free_slots[i];
                FUZZ_ASSERT(s < d->n_slots && named[s] == 0);
                named[s] = 2;
        }
        FUZZ_ASSERT(n_named + d->n_free == d->n_slots);
        free(named);
}

static off_t map_size(void) {
        struct stat st;
        if (fstatat(dir_fd, NAME ".map", &st, 0) < 0)
                return -1;
        return st.st_size;
}

/* After writes and a flush: the journal is the file, all of it durable, and
 * the model's own replay of it finds the blocks the model holds: zeros where
 * zeros were written, data in distinct slots of the data file elsewhere. The
 * version stays (a new journal is version 2); version 2 ends with a commit. */
static void model_flushed(model *m) {
        off_t len = map_size();
        FUZZ_ASSERT(len >= (off_t)MAP_HEADER_LEN && (len - MAP_HEADER_LEN) % MAP_RECORD_LEN == 0);
        uint8_t *map = malloc((size_t)len);
        int fd = openat(dir_fd, NAME ".map", O_RDONLY | O_CLOEXEC);
        if (!map || fd < 0 || pread(fd, map, (size_t)len, 0) != len)
                abort();
        close(fd);
        struct stat st;
        FUZZ_ASSERT(fstatat(dir_fd, NAME ".data", &st, 0) == 0);
        model f = { 0 };
        model_replay(&f, map, (size_t)len, true, (uint64_t)st.st_size / DELTA_BLOCK);
        FUZZ_ASSERT(f.rc == 0 && f.live && f.map_len == (uint64_t)len);
        FUZZ_ASSERT(f.version == (m->live ? m->version : MAP_VERSION));
        if (f.version == 2 && len > (off_t)MAP_HEADER_LEN)
                FUZZ_ASSERT(st_le64_get(map + len - MAP_RECORD_LEN) == COMMIT_BLOCK);
        FUZZ_ASSERT(f.n == m->n);
        for (size_t i = 0; i < f.n; i++) {
                FUZZ_ASSERT(f.e[i].block == m->e[i].block);
                FUZZ_ASSERT((f.e[i].val == DELTA_ZERO) == (m->e[i].val == DELTA_ZERO));
        }
        free(map);
        free(f.e);
        m->live = true;
        m->version = f.version;
        m->map_len = (uint64_t)len;
        m->seq = (m->map_len - MAP_HEADER_LEN) / MAP_RECORD_LEN; /* commit records too */
        FUZZ_ASSERT(f.seq == m->seq);
}

static uint64_t free_block(const model *m, uint64_t from) {
        while (model_has(m, from))
                from++;
        return from;
}

static void do_write(delta *d, model *m, uint64_t block, size_t n, int pat) {
        static uint8_t buf[2 * DELTA_BLOCK];
        for (size_t i = 0; i < n; i++) {
                pattern(buf + i * DELTA_BLOCK, pat + (int)i, block + i);
                model_set(m, block + i, UNKNOWN, pat + (int)i);
        }
        FUZZ_ASSERT(delta_write(d, block, n, buf) == 0);
}

/* Rewrite a durable block, zero another, write fresh blocks, and reuse the
 * slots that frees; then everything must still agree with the model. */
static void exercise(delta *d, model *m) {
        uint64_t a = UNKNOWN, z = UNKNOWN;
        for (size_t i = 0; i < m->n; i++)
                if (m->e[i].val != DELTA_ZERO) {
                        if (a == UNKNOWN)
                                a = m->e[i].block;
                        else if (z == UNKNOWN)
                                z = m->e[i].block;
                }
        if (a == UNKNOWN)
                a = free_block(m, 0);
        do_write(d, m, a, 1, 1); /* in place if unflushed, else a fresh slot */
        FUZZ_ASSERT(delta_flush(d) == 0);
        do_write(d, m, a, 1, 2); /* durable: a fresh slot, the old one freed at flush */
        do_write(d, m, a, 1, 3); /* unflushed: in place */
        if (z != UNKNOWN) {
                FUZZ_ASSERT(delta_zero(d, z, 1) == 0);
                model_set(m, z, DELTA_ZERO, 0);
        }
        uint64_t c = free_block(m, 0);
        while (model_has(m, c + 1))
                c = free_block(m, c + 1);
        do_write(d, m, c, 2, 4); /* a run of two */
        FUZZ_ASSERT(delta_flush(d) == 0);
        model_flushed(m);
        check_state(d, m);
        do_write(d, m, free_block(m, 0), 1, 6); /* these take the freed slots */
        do_write(d, m, free_block(m, 0), 1, 7);
        FUZZ_ASSERT(delta_flush(d) == 0);
        model_flushed(m);
        check_state(d, m);
}

/* Both opens fail with the model's error, the diag naming its offset, and
 * cut nothing (damage is reported, never dropped). */
static void check_fails(const model *m, size_t map_len) {
        for (int rdonly = 1; rdonly >= 0; rdonly--) {
                delta d;
                st_diag diag = { .offset = 12345 };
                int r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, rdonly, &d, &diag);
                if (r == -ENOMEM)
                        return;
                FUZZ_ASSERT(r == m->rc);
                FUZZ_ASSERT(strcmp(diag.file, "deltas/" NAME ".map") == 0);
                FUZZ_ASSERT(diag.offset == m->err_off && diag.what);
                FUZZ_ASSERT(map_size() == (off_t)map_len);
        }
}

static void fuzz_one(const uint8_t *data, size_t len) {
        uint16_t u = len >= PREFIX_LEN ? (uint16_t)(data[0] | data[1] << 8) : 0;
        const uint8_t *map = len >= PREFIX_LEN ? data + PREFIX_LEN : data;
        size_t map_len = len >= PREFIX_LEN ? len - PREFIX_LEN : len;
        bool has_data = u != 0xffff;
        uint64_t data_size = has_data ? (uint64_t)u * 256 : 0;

        scratch_dir();
        write_file(NAME ".map", map, map_len, 0);
        if (has_data)
                write_file(NAME ".data", NULL, 0, data_size);
        else if (unlinkat(dir_fd, NAME ".data", 0) < 0 && errno != ENOENT)
                abort();

        model m = { 0 };
        delta ro, rw;
        model_replay(&m, map, map_len, has_data, data_size / DELTA_BLOCK);

        if (m.rc < 0) {
                check_fails(&m, map_len);
                goto out;
        }
        int r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL);
        if (r == -ENOMEM)
                goto out;
        FUZZ_ASSERT(r == 0);
        FUZZ_ASSERT(!m.live || ro.n_slots == m.n_slots);
        check_state(&ro, &m);
        delta_close(&ro);
        FUZZ_ASSERT(map_size() == (off_t)map_len); /* read-only: nothing cut */

        r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, false, &rw, NULL);
        if (r == -ENOMEM)
                goto out;
        FUZZ_ASSERT(r == 0);
        check_state(&rw, &m);
        if (m.live) /* the torn tail is gone */
                FUZZ_ASSERT(map_size() == (off_t)m.map_len);

        FUZZ_ASSERT(delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL) == 0);
        check_state(&ro, &m);
        delta_close(&ro);

        /* Write on top, then replay what that wrote. */
        exercise(&rw, &m);
        delta_close(&rw); /* LeakSanitizer checks that this frees everything */
        FUZZ_ASSERT(delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL) == 0);
        check_state(&ro, &m);
        delta_close(&ro);
out:
        free(m.e);
}

/* Recompute the checks a mutation cannot forge: the header's (version 1:
 * zero), every write record's, and then in order every commit record's over
 * the count of records before it that it names (version 2). */
static void seal(uint8_t *map, size_t len) {
        if (len < MAP_HEADER_LEN)
                return;
        bool v1 = st_le32_get(map + 8) == 1;
        st_le64_put(map + 24, v1 ? 0 : header_check_of(map));
        uint8_t *recs = map + MAP_HEADER_LEN;
        size_t n_rec = (len - MAP_HEADER_LEN) / MAP_RECORD_LEN;
        for (size_t k = 0; k < n_rec; k++) {
                uint8_t *rec = recs + k * MAP_RECORD_LEN;
                if (v1 || st_le64_get(rec) != COMMIT_BLOCK)
                        st_le64_put(rec + 24, check_of(rec));
        }
        for (size_t k = 0; !v1 && k < n_rec; k++) {
                uint8_t *rec = recs + k * MAP_RECORD_LEN;
                uint64_t n = st_le64_get(rec + 8);
                if (st_le64_get(rec) == COMMIT_BLOCK && n <= k)
                        st_le64_put(rec + 24, commit_check_of(recs, k, n));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        if (len >= PREFIX_LEN + MAP_HEADER_LEN) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                seal(sealed + PREFIX_LEN, len - PREFIX_LEN);
                if (memcmp(sealed, data, len) != 0)
                        fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
