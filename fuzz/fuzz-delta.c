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
 * Checks, against an independent replay of the journal here (the model):
 *  - read-only and read-write opens succeed or fail alike (0, or
 *    -EPROTONOSUPPORT for a version other than 1), and reach the model's state:
 *    the same blocks, delta_lookup agreeing (a slot < the data file's slots,
 *    or zeros), the durable length and the next sequence number; delta_blocks
 *    is sorted and unique and matches the map's count;
 *  - the free slots are exactly the slots no block names;
 *  - a read-write open cuts the torn tail off, and a read-only reopen then
 *    finds the same state with nothing to cut;
 *  - writes, a zero and flushes on top of the replayed state (rewriting a
 *    durable block, reusing freed slots) leave every other block's slot and
 *    content alone, and replay to what was written.
 * The sealed run recomputes every record's check (as record_check in delta.c).
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
#define MAP_VERSION 1u
#define MAP_HEADER_LEN 32u
#define MAP_RECORD_LEN 32u
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
        bool live;        /* a journal was replayed (else the delta is empty, no files) */
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

/* Replay map (the journal) as delta.h and docs/formats/delta.md describe it. */
static void model_replay(model *m, const uint8_t *map, size_t len, bool data, uint64_t n_slots) {
        *m = (model){ 0 };
        if (!data || len < MAP_HEADER_LEN || memcmp(map, MAP_MAGIC, 8) != 0 ||
            st_le64_get(map + 16) != FUZZ_DELTA_TAG)
                return; /* no files, foreign or torn at creation: empty */
        if (st_le32_get(map + 8) != MAP_VERSION) {
                m->rc = -EPROTONOSUPPORT;
                return;
        }
        if (st_le32_get(map + 12) != MAP_HEADER_LEN || st_le64_get(map + 24) != 0) {
                m->rc = -EBADMSG;
                return;
        }
        m->live = true;
        m->n_slots = n_slots;
        size_t off = MAP_HEADER_LEN;
        for (; off + MAP_RECORD_LEN <= len; off += MAP_RECORD_LEN, m->seq++) {
                const uint8_t *rec = map + off;
                uint64_t block = st_le64_get(rec), val = st_le64_get(rec + 8);
                if (st_le64_get(rec + 16) != m->seq || st_le64_get(rec + 24) != check_of(rec) ||
                    block >= FUZZ_MAX_BLOCKS || (val != DELTA_ZERO && val >= n_slots))
                        break;
                /* a slot another block holds ends the journal too */
                bool shared = false;
                for (size_t k = 0; val != DELTA_ZERO && k < m->n && !shared; k++)
                        shared = m->e[k].val == val && m->e[k].block != block;
                if (shared)
                        break;
                model_set(m, block, val, 0);
        }
        m->map_len = off;
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

/* After writes and a flush: the journal is the file, all of it durable. */
static void model_flushed(model *m) {
        off_t len = map_size();
        FUZZ_ASSERT(len >= (off_t)MAP_HEADER_LEN && (len - MAP_HEADER_LEN) % MAP_RECORD_LEN == 0);
        m->live = true;
        m->map_len = (uint64_t)len;
        m->seq = (m->map_len - MAP_HEADER_LEN) / MAP_RECORD_LEN;
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

        model m;
        delta ro, rw;
        model_replay(&m, map, map_len, has_data, data_size / DELTA_BLOCK);

        int r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL);
        if (r == -ENOMEM)
                goto out;
        FUZZ_ASSERT(r == m.rc);
        if (r < 0) {
                FUZZ_ASSERT(delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, false, &rw, NULL) == r);
                goto out;
        }
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        size_t n_rec = len >= PREFIX_LEN + MAP_HEADER_LEN
                               ? (len - PREFIX_LEN - MAP_HEADER_LEN) / MAP_RECORD_LEN
                               : 0;
        if (n_rec > 0) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                for (size_t i = 0; i < n_rec; i++) {
                        uint8_t *rec = sealed + PREFIX_LEN + MAP_HEADER_LEN + i * MAP_RECORD_LEN;
                        st_le64_put(rec + 24, check_of(rec));
                }
                fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
