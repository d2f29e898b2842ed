/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for delta_open, which replays a volume's delta journal
 * (deltas/NAME.map) against its data file (NAME.data), and for
 * delta_read_slot and delta_verify on what it replayed.
 *
 * Input: a 2-byte little-endian prefix U, then the bytes of NAME.map; an
 * input of the prefix alone has no journal file (shorter inputs are a journal
 * of 0 or 1 bytes and U = 0). U picks the data file: U * 256 bytes of zeros
 * (sparse), or no data file if U is 0xffff. The files go to a scratch
 * directory of this process, fuzz-delta-PID-XXXXXX under /dev/shm (else
 * $TMPDIR or /tmp), rewritten for every input and removed at exit; a crashed
 * run's directory is removed by the next run. The journal is replayed as
 * volume NAME with tag FUZZ_DELTA_TAG (fuzz.h).
 *
 * Checks, against an independent replay of the journal here (the model,
 * written from docs/formats/delta.md, versions 1, 2 and 3; version 3 as
 * version 2, except that a commit record's sum field is its trusted end,
 * which must be a record boundary between the last commit's trusted end and
 * its own flush's start, and that only the records before the last one's
 * are trusted: those after it are kept or not as unflushed ones are, against
 * the data file as it is; the durable length is the last whole flush's end
 * if every record before it was kept, else the trusted end, and the torn
 * tail is what follows it that is neither kept nor a durable commit record):
 *  - read-only and read-write opens succeed or fail alike, with the model's
 *    result: 0; -EPROTONOSUPPORT for a version other than 1 to 3; -EBADMSG
 *    for a bad header (shorter than 32 bytes, bad magic, header length 32 in
 *    version 1 and 40 in version 2, shorter than that; version 1: bytes 24..31
 *    not zero; version 2: the header check, BLAKE3 of bytes 0..31, then the
 *    name sum, BLAKE3 of NAME), for a bad record followed by a later intact
 *    one (version 1) or by a later whole checking flush that does not cover it
 *    (version 2), for a bad record with no such follower that a torn append
 *    cannot explain (the bytes from it to the end are not zero from it or
 *    from a 512-aligned offset inside it; a partial record at the end is
 *    torn), and for a kept record naming a block past the volume, a slot past
 *    the data file (no data file: no slots) or a slot another block holds;
 *    the diag names deltas/v.map and the offset of the bad header field or
 *    record (a bad record is reported before what the kept records name). No
 *    journal but a data file with bytes: -EBADMSG naming deltas/v.data, no
 *    offset. A foreign tag behind a good header, or no journal and no data,
 *    is an empty delta;
 *  - on success, the model's state: the version, the same blocks,
 *    delta_lookup agreeing (a slot < the data file's slots, or zeros), the
 *    durable length (whole checking flushes; version 1: the intact records
 *    before the first bad one), the torn tail's length and the next sequence
 *    number (commit records count); delta_blocks is sorted and unique and
 *    matches the map's count;
 *  - delta_read_slot of every block with data gives its content, or
 *    -EBADMSG in version 2 where the record's data sum (XXH3-64) is not that
 *    of the content (a replayed slot holds zeros); delta_verify is 0, or
 *    -EBADMSG naming one such block and its slot;
 *  - the free slots are exactly the slots no block names;
 *  - a read-write open cuts the torn tail off, and a read-only reopen then
 *    finds the same state with nothing to cut;
 *  - writes, a zero and flushes on top of the replayed state (rewriting a
 *    durable block, reusing freed slots, an in-place rewrite) leave every
 *    other block's slot, sum and content alone, and replay to what was
 *    written; after each flush the journal file as the model reads it
 *    (version kept: 1 stays 1 without commit records or sums, a new journal
 *    is 2) holds exactly the model's blocks, slots and data sums.
 * The sealed run recomputes the header's checks (version 1: bytes 24..31
 * zero; version 2: the right name sum, then the header check), the data sum
 * of every version 2 write record naming a slot inside the data file (the sum
 * of 4 KiB of zeros; a sum of 0 is left, so that sealed inputs still reach a
 * mismatch), every write record's check and then, in order, every commit
 * record's check over the records its count names; not the sequence numbers
 * or counts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "fuzz.h"
#include "util/le.h"
#include "volume/delta.h"

/* As docs/formats/delta.md has it. */
#define MAP_MAGIC "STDELTA\0"
#define MAP_VERSION 3u /* written by delta_create; 1 and 2 are still read */
#define HDR_LEN(v) ((v) == 1 ? 32u : 40u)
#define REC_LEN(v) ((v) == 1 ? 32u : 40u)
#define REC_BODY(v) (REC_LEN(v) - 8u) /* the bytes a record's check covers */
#define COMMIT_BLOCK UINT64_MAX       /* version 2: a commit record ends every flush */
#define SECTOR 512u                   /* a torn append leaves whole sectors */
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

static uint64_t hash8(const void *p, size_t len) {
        st_digest d;
        st_hash(p, len, &d);
        return st_le64_get(d.b);
}

/* A write record's check: BLAKE3 of its first 24 (version 1) or 32 bytes,
 * then the tag. */
static uint64_t check_of(const uint8_t *rec, uint32_t v) {
        uint8_t b[40];
        memcpy(b, rec, REC_BODY(v));
        st_le64_put(b + REC_BODY(v), FUZZ_DELTA_TAG);
        return hash8(b, REC_LEN(v));
}

/* A commit record's check: BLAKE3 of the n whole records before it, its own
 * first 32 bytes and the tag. rec is record k of recs (version 2). */
static uint64_t commit_check_of(const uint8_t *recs, size_t k, uint64_t n) {
        st_hasher h;
        uint8_t t[8];
        st_digest d;
        st_hasher_init(&h);
        st_hasher_update(&h, recs + (k - n) * REC_LEN(2), n * REC_LEN(2));
        st_hasher_update(&h, recs + k * REC_LEN(2), REC_BODY(2));
        st_le64_put(t, FUZZ_DELTA_TAG);
        st_hasher_update(&h, t, 8);
        st_hasher_final(&h, &d);
        return st_le64_get(d.b);
}

static uint64_t name_sum_of(void) {
        return hash8(NAME, strlen(NAME));
}

/* Version 2's data sum of a slot's 4 KiB. */
static uint64_t data_sum_of(const uint8_t *block) {
        return (uint64_t)XXH3_64bits(block, DELTA_BLOCK);
}

static uint64_t zero_sum(void) {
        static uint64_t sum;
        static bool done;
        if (!done) {
                static const uint8_t zeros[DELTA_BLOCK];
                sum = data_sum_of(zeros);
                done = true;
        }
        return sum;
}

/* The data sum of what slot holds in the data file now (zeros as the fuzz
 * input leaves it; what was written after writes and flushes). */
static uint64_t slot_sum(uint64_t slot) {
        static uint8_t buf[DELTA_BLOCK];
        int fd = openat(dir_fd, NAME ".data", O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pread(fd, buf, sizeof buf, (off_t)(slot * DELTA_BLOCK)) != (ssize_t)sizeof buf)
                abort();
        close(fd);
        return data_sum_of(buf);
}

/* Blocks of the fuzzed volume: records at or past it are damage. */
#define FUZZ_MAX_BLOCKS (1ull << 20)

/* The model: block -> slot, DELTA_ZERO, or written content. */
#define UNKNOWN UINT64_MAX
typedef struct ment {
        uint64_t block, val; /* val: slot, DELTA_ZERO, or UNKNOWN (written here) */
        uint64_t sum;        /* the data sum the block's last record keeps (version 1: 0) */
        int pat;             /* content: 0 zeros (a replayed slot), k > 0 pattern k */
} ment;

typedef struct model {
        int rc;           /* expected delta_open result */
        const char *err_file; /* if rc < 0: the file the diag names */
        uint64_t err_off; /* and the offset */
        bool live;        /* a journal was replayed (else the delta is empty, no files) */
        uint32_t version; /* of the journal, if live */
        uint64_t n_slots; /* in the data file, if live */
        uint64_t map_len; /* durable journal length (the torn tail cut off) */
        uint64_t torn;    /* bytes past it that are not kept */
        uint64_t seq;
        uint64_t tail_kept; /* version 2: unflushed write records kept (their data there) */
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

static void model_set(model *m, uint64_t block, uint64_t val, uint64_t sum, int pat) {
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
        m->e[i] = (ment){ block, val, sum, pat };
}

static void model_fail(model *m, int rc, const char *file, uint64_t off) {
        m->rc = rc;
        m->err_file = file;
        m->err_off = off;
        m->live = false;
        m->n = 0;
}
#define FAIL(rc, off)                                                                              \
        do {                                                                                       \
                model_fail(m, rc, "deltas/" NAME ".map", off);                                     \
                goto out;                                                                          \
        } while (0)

/* Could the bytes of map from b (a whole bad record) to the end be what an
 * unfinished append left? Zero from b itself, or from a sector boundary
 * inside the record at b, to the end (docs/formats/delta.md). z: one past
 * the last nonzero byte. */
static bool model_torn(const uint8_t *map, size_t len, size_t b, uint32_t rl) {
        size_t z = len;
        while (z > b && map[z - 1] == 0)
                z--;
        return z == b || (z + SECTOR - 1) / SECTOR * SECTOR < b + rl;
}

/* Replay map (the journal) as delta.h and docs/formats/delta.md describe it:
 * has_data says whether the data file exists, n_slots is its size in slots. */
static void model_replay(model *m, const uint8_t *map, size_t len, bool has_data,
                         uint64_t n_slots) {
        ment *e = m->e;
        size_t cap = m->cap;
        size_t *good = NULL;
        *m = (model){ .e = e, .cap = cap };
        if (len < 32)
                FAIL(-EBADMSG, len);
        if (memcmp(map, MAP_MAGIC, 8) != 0)
                FAIL(-EBADMSG, 0);
        uint32_t v = st_le32_get(map + 8);
        if (v < 1 || v > 3)
                FAIL(-EPROTONOSUPPORT, 8);
        const uint32_t hl = HDR_LEN(v), rl = REC_LEN(v);
        if (st_le32_get(map + 12) != hl)
                FAIL(-EBADMSG, 12);
        if (len < hl)
                FAIL(-EBADMSG, len);
        if (v == 1 && st_le64_get(map + 24) != 0)
                FAIL(-EBADMSG, 24);
        if (v >= 2 && st_le64_get(map + 32) != hash8(map, 32))
                FAIL(-EBADMSG, 32);
        if (v >= 2 && st_le64_get(map + 24) != name_sum_of())
                FAIL(-EBADMSG, 24); /* another volume's */
        if (st_le64_get(map + 16) != FUZZ_DELTA_TAG)
                goto out; /* an earlier volume's: empty */
        m->live = true;
        m->version = v;
        m->n_slots = has_data ? n_slots : 0; /* no data file: no slots */

        const uint8_t *recs = map + hl;
        size_t n_rec = (len - hl) / rl; /* a partial one at the end is torn */
        /* good[k]: how many of records 0..k-1 are intact write records
         * (sequence number its position, check right; version 2: not a commit) */
        good = malloc((n_rec + 1) * sizeof *good);
        if (!good)
                abort();
        good[0] = 0;
        for (size_t k = 0; k < n_rec; k++) {
                const uint8_t *rec = recs + k * rl;
                bool ok = st_le64_get(rec + 16) == k &&
                          st_le64_get(rec + REC_BODY(v)) == check_of(rec, v) &&
                          (v == 1 || st_le64_get(rec) != COMMIT_BLOCK);
                good[k + 1] = good[k] + ok;
        }
#define GOOD(k) (good[(k) + 1] - good[k] == 1)
        /* version 2: record k is a commit record that checks, over its n records */
#define COMMIT_OK(k, n)                                                                            \
        (st_le64_get(recs + (k) * rl) == COMMIT_BLOCK && st_le64_get(recs + (k) * rl + 16) == (k) && \
         (n) <= (k) && good[k] - good[(k) - (n)] == (n) &&                                         \
         st_le64_get(recs + (k) * rl + REC_BODY(2)) == commit_check_of(recs, k, n))

        /* Keep the records up to the last whole flush before the first bad
         * record. Version 3: a commit record's sum field is where the last
         * complete flush ended (a record boundary, not past its own flush's
         * start, not before the last commit's); only the records before the
         * last one's are trusted, the rest are checked as unflushed ones. */
        size_t k = 0, kept = 0, flush_start = 0, trusted = 0;
        for (; k < n_rec; k++) {
                const uint8_t *rec = recs + k * rl;
                if (v == 1) {
                        if (!GOOD(k))
                                break;
                        kept = trusted = k + 1;
                } else if (st_le64_get(rec) == COMMIT_BLOCK) {
                        uint64_t n = st_le64_get(rec + 8), x = st_le64_get(rec + 24);
                        if (n != k - flush_start || !COMMIT_OK(k, n))
                                break;
                        if (v == 3 && (x < hl + trusted * rl || x > hl + flush_start * rl ||
                                       (x - hl) % rl != 0))
                                break;
                        kept = flush_start = k + 1;
                        trusted = v == 3 ? (size_t)((x - hl) / rl) : kept;
                } else if (!GOOD(k)) {
                        break;
                }
        }
        if (k < n_rec) {
                /* Record k is bad: damage if something durable was written
                 * after it, or if a torn append cannot have left it. */
                bool later = false;
                for (size_t j = k + 1; j < n_rec && !later; j++) {
                        if (v == 1) {
                                later = GOOD(j);
                        } else {
                                uint64_t n = st_le64_get(recs + j * rl + 8);
                                later = n < j - k && COMMIT_OK(j, n); /* not covering k */
                        }
                }
                if (later || !model_torn(map, len, hl + k * rl, rl))
                        FAIL(-EBADMSG, hl + k * rl);
        }
#undef GOOD
#undef COMMIT_OK
        for (size_t j = 0; j < trusted; j++) {
                const uint8_t *rec = recs + j * rl;
                uint64_t block = st_le64_get(rec), val = st_le64_get(rec + 8);
                uint64_t sum = v == 1 ? 0 : st_le64_get(rec + 24);
                uint64_t off = hl + j * rl;
                if (v != 1 && block == COMMIT_BLOCK)
                        continue;
                if (block >= FUZZ_MAX_BLOCKS || (val != DELTA_ZERO && val >= m->n_slots))
                        FAIL(-EBADMSG, off);
                for (size_t i = 0; val != DELTA_ZERO && i < m->n; i++)
                        if (m->e[i].val == val && m->e[i].block != block)
                                FAIL(-EBADMSG, off); /* a shared slot */
                model_set(m, block, val, sum, 0);
        }
        /* Version 2: past the durable end (version 3: past the trusted
         * records), each intact write record for a block of the volume that
         * names zeros, or a slot inside the data file that no other block
         * holds and whose data has its sum, is kept, in order: a write
         * acknowledged, not yet flushed, when the writer died (or one of a
         * flush cut between the two files). The durable flushes' commit
         * records among them are not torn bytes. */
        size_t commits = 0, dropped = 0, kept_durable = 0;
        for (size_t j = trusted; v >= 2 && j < n_rec; j++) {
                const uint8_t *rec = recs + j * rl;
                uint64_t block = st_le64_get(rec), val = st_le64_get(rec + 8);
                uint64_t sum = st_le64_get(rec + 24);
                bool keep = good[j + 1] - good[j] == 1 && block < FUZZ_MAX_BLOCKS;
                if (keep && val != DELTA_ZERO) {
                        bool held = false;
                        for (size_t i = 0; i < m->n; i++)
                                held |= m->e[i].val == val && m->e[i].block != block;
                        keep = val < m->n_slots && !held && sum == slot_sum(val);
                }
                if (j < kept) {
                        commits += block == COMMIT_BLOCK;
                        dropped += block != COMMIT_BLOCK && !keep;
                        kept_durable += keep;
                }
                if (!keep)
                        continue;
                model_set(m, block, val, sum, 0);
                m->tail_kept++;
        }
        /* The cut: at the durable end if every record before it held its
         * data, else at the trusted end; the kept records after the cut are
         * what a writable open commits again. */
        size_t cut = dropped == 0 ? kept : trusted;
        if (cut == kept) {
                m->tail_kept -= kept_durable;
                commits = 0;
        }
        m->map_len = hl + cut * rl;
        m->seq = cut;
        m->torn = len - m->map_len - (m->tail_kept + commits) * rl;
out:
        free(good);
}
#undef FAIL

/* Open as delta_open does: has_map says whether the journal exists. */
static void model_open(model *m, bool has_map, const uint8_t *map, size_t len, bool has_data,
                       uint64_t data_size) {
        if (has_map) {
                model_replay(m, map, len, has_data, data_size / DELTA_BLOCK);
                return;
        }
        ment *e = m->e;
        size_t cap = m->cap;
        *m = (model){ .e = e, .cap = cap };
        if (has_data && data_size > 0) /* written data, its journal lost */
                model_fail(m, -EBADMSG, "deltas/" NAME ".data", ST_DIAG_NO_OFFSET);
}

static void pattern(uint8_t *buf, int pat, uint64_t block) {
        memset(buf, 0x40 + pat, DELTA_BLOCK);
        st_le64_put(buf, block);
}

/* The content of e's slot, and whether a read of it fails its data sum. */
static bool content_of(const model *m, const ment *e, uint8_t *want) {
        if (e->pat)
                pattern(want, e->pat, e->block);
        else
                memset(want, 0, DELTA_BLOCK);
        return m->version != 1 && e->sum != data_sum_of(want);
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
        uint64_t n_named = 0, n_bad = 0;
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
                bool bad = content_of(m, e, want);
                int r = delta_read_slot(d, blocks[i], slot, buf);
                if (bad) {
                        FUZZ_ASSERT(r == -EBADMSG);
                        n_bad++;
                } else {
                        FUZZ_ASSERT(r == 0 && memcmp(buf, want, DELTA_BLOCK) == 0);
                }
        }
        free(blocks);
        /* delta_verify: 0, or the first bad block it met and its slot */
        uint64_t bad_block = UNKNOWN, bad_slot = UNKNOWN;
        int r = delta_verify(d, &bad_block, &bad_slot);
        if (r != -ENOMEM) {
                FUZZ_ASSERT(r == (n_bad ? -EBADMSG : 0));
                if (n_bad) {
                        size_t i = model_find(m, bad_block);
                        uint64_t slot = UNKNOWN;
                        FUZZ_ASSERT(i < m->n && m->e[i].block == bad_block);
                        FUZZ_ASSERT(delta_lookup(d, bad_block, &slot) == 1 && slot == bad_slot);
                        FUZZ_ASSERT(content_of(m, &m->e[i], want));
                }
        }
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
 * zeros were written, data in distinct slots of the data file elsewhere, with
 * the sums of what was written (version 2). The version stays (a new journal
 * is version 2); version 2 ends with a commit. */
static void model_flushed(model *m) {
        off_t len = map_size();
        uint32_t v = m->live ? m->version : MAP_VERSION;
        FUZZ_ASSERT(len >= (off_t)HDR_LEN(v) && (len - HDR_LEN(v)) % REC_LEN(v) == 0);
        uint8_t *map = malloc((size_t)len);
        int fd = openat(dir_fd, NAME ".map", O_RDONLY | O_CLOEXEC);
        if (!map || fd < 0 || pread(fd, map, (size_t)len, 0) != len)
                abort();
        close(fd);
        struct stat st;
        FUZZ_ASSERT(fstatat(dir_fd, NAME ".data", &st, 0) == 0);
        model f = { 0 };
        model_replay(&f, map, (size_t)len, true, (uint64_t)st.st_size / DELTA_BLOCK);
        /* (version 3: the last flush's records are not trusted but checked
         * against their data; all of them hold it) */
        FUZZ_ASSERT(f.rc == 0 && f.live && f.torn == 0 && f.map_len == (uint64_t)len);
        FUZZ_ASSERT(f.version == v);
        if (v >= 2 && len > (off_t)HDR_LEN(v))
                FUZZ_ASSERT(st_le64_get(map + len - REC_LEN(v)) == COMMIT_BLOCK);
        FUZZ_ASSERT(f.n == m->n);
        for (size_t i = 0; i < f.n; i++) {
                ment *e = &m->e[i];
                FUZZ_ASSERT(f.e[i].block == e->block);
                FUZZ_ASSERT((f.e[i].val == DELTA_ZERO) == (e->val == DELTA_ZERO));
                FUZZ_ASSERT(e->val == UNKNOWN || f.e[i].val == e->val);
                FUZZ_ASSERT(f.e[i].sum == e->sum);
                e->val = f.e[i].val; /* the slot stays until the block is written again */
        }
        free(map);
        free(f.e);
        m->live = true;
        m->version = f.version;
        m->map_len = (uint64_t)len;
        m->torn = 0;
        m->seq = (m->map_len - HDR_LEN(v)) / REC_LEN(v); /* commit records too */
        FUZZ_ASSERT(f.seq == m->seq);
}

static uint64_t free_block(const model *m, uint64_t from) {
        while (model_has(m, from))
                from++;
        return from;
}

static void do_write(delta *d, model *m, uint64_t block, size_t n, int pat) {
        static uint8_t buf[2 * DELTA_BLOCK];
        bool v1 = m->live && m->version == 1;
        for (size_t i = 0; i < n; i++) {
                uint8_t *b = buf + i * DELTA_BLOCK;
                pattern(b, pat + (int)i, block + i);
                model_set(m, block + i, UNKNOWN, v1 ? 0 : data_sum_of(b), pat + (int)i);
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
        do_write(d, m, a, 1, 3); /* unflushed: in place (version 2: a second record) */
        if (z != UNKNOWN) {
                FUZZ_ASSERT(delta_zero(d, z, 1) == 0);
                model_set(m, z, DELTA_ZERO, 0, 0);
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

/* Both opens fail with the model's error, the diag naming its file and
 * offset, and cut nothing (damage is reported, never dropped). */
static void check_fails(const model *m, off_t map_len) {
        for (int rdonly = 1; rdonly >= 0; rdonly--) {
                delta d;
                st_diag diag = { .offset = 12345 };
                int r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, rdonly, &d, &diag);
                if (r == -ENOMEM)
                        return;
                FUZZ_ASSERT(r == m->rc);
                FUZZ_ASSERT(strcmp(diag.file, m->err_file) == 0);
                FUZZ_ASSERT(diag.offset == m->err_off && diag.what);
                FUZZ_ASSERT(map_size() == map_len);
        }
}

static void fuzz_one(const uint8_t *data, size_t len) {
        uint16_t u = len >= PREFIX_LEN ? (uint16_t)(data[0] | data[1] << 8) : 0;
        const uint8_t *map = len >= PREFIX_LEN ? data + PREFIX_LEN : data;
        size_t map_len = len >= PREFIX_LEN ? len - PREFIX_LEN : len;
        bool has_map = len != PREFIX_LEN, has_data = u != 0xffff;
        uint64_t data_size = has_data ? (uint64_t)u * 256 : 0;
        off_t file_len = has_map ? (off_t)map_len : -1;

        scratch_dir();
        if (has_map)
                write_file(NAME ".map", map, map_len, 0);
        else if (unlinkat(dir_fd, NAME ".map", 0) < 0 && errno != ENOENT)
                abort();
        if (has_data)
                write_file(NAME ".data", NULL, 0, data_size);
        else if (unlinkat(dir_fd, NAME ".data", 0) < 0 && errno != ENOENT)
                abort();

        model m = { 0 };
        delta ro, rw;
        model_open(&m, has_map, map, map_len, has_data, data_size);

        if (m.rc < 0) {
                check_fails(&m, file_len);
                goto out;
        }
        int r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL);
        if (r == -ENOMEM)
                goto out;
        FUZZ_ASSERT(r == 0);
        FUZZ_ASSERT(!m.live || (ro.n_slots == m.n_slots && ro.torn_len == m.torn));
        check_state(&ro, &m);
        delta_close(&ro);
        FUZZ_ASSERT(map_size() == file_len); /* read-only: nothing cut */

        r = delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, false, &rw, NULL);
        if (r == -ENOMEM)
                goto out;
        FUZZ_ASSERT(r == 0);
        FUZZ_ASSERT(!m.live || rw.torn_len == m.torn);
        if (m.tail_kept) { /* committed again after the durable end, with a commit record */
                m.map_len += (m.tail_kept + 1) * REC_LEN(m.version);
                m.seq += m.tail_kept + 1;
        }
        check_state(&rw, &m);
        /* the torn tail is gone; a foreign or missing journal stays as it was */
        FUZZ_ASSERT(map_size() == (m.live ? (off_t)m.map_len : file_len));

        FUZZ_ASSERT(delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL) == 0);
        FUZZ_ASSERT(!m.live || ro.torn_len == 0);
        check_state(&ro, &m);
        delta_close(&ro);

        /* Write on top, then replay what that wrote. */
        exercise(&rw, &m);
        delta_close(&rw); /* LeakSanitizer checks that this frees everything */
        FUZZ_ASSERT(delta_open(dir_fd, NAME, FUZZ_DELTA_TAG, FUZZ_MAX_BLOCKS, true, &ro, NULL) == 0);
        FUZZ_ASSERT(ro.torn_len == 0);
        check_state(&ro, &m);
        delta_close(&ro);
out:
        free(m.e);
}

/* Recompute what a mutation cannot forge: the header's name sum and check
 * (version 1: zero), then every write record's data sum (version 2, a slot
 * inside the data file of n_slots, not a sum of 0) and check, and then in
 * order every commit record's check over the count of records before it that
 * it names (version 2). */
static void seal(uint8_t *map, size_t len, uint64_t n_slots) {
        if (len < 32)
                return;
        uint32_t v = st_le32_get(map + 8);
        if (v < 1 || v > 3)
                return;
        if (v == 1) {
                st_le64_put(map + 24, 0);
        } else {
                st_le64_put(map + 24, name_sum_of());
                if (len >= 40)
                        st_le64_put(map + 32, hash8(map, 32));
        }
        const uint32_t hl = HDR_LEN(v), rl = REC_LEN(v);
        if (len < hl)
                return;
        uint8_t *recs = map + hl;
        size_t n_rec = (len - hl) / rl;
        for (size_t k = 0; k < n_rec; k++) {
                uint8_t *rec = recs + k * rl;
                if (v >= 2 && st_le64_get(rec) == COMMIT_BLOCK)
                        continue;
                if (v >= 2 && st_le64_get(rec + 8) < n_slots && st_le64_get(rec + 24) != 0)
                        st_le64_put(rec + 24, zero_sum()); /* the data file is zeros */
                st_le64_put(rec + REC_BODY(v), check_of(rec, v));
        }
        for (size_t k = 0; v >= 2 && k < n_rec; k++) {
                uint8_t *rec = recs + k * rl;
                uint64_t n = st_le64_get(rec + 8);
                if (st_le64_get(rec) == COMMIT_BLOCK && n <= k)
                        st_le64_put(rec + REC_BODY(v), commit_check_of(recs, k, n));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        fuzz_one(data, len);
        if (len >= PREFIX_LEN + 32) {
                uint8_t *sealed = fuzz_dup(data, len);
                if (!sealed)
                        abort();
                uint16_t u = (uint16_t)(data[0] | data[1] << 8);
                uint64_t n_slots = u == 0xffff ? 0 : (uint64_t)u * 256 / DELTA_BLOCK;
                seal(sealed + PREFIX_LEN, len - PREFIX_LEN, n_slots);
                if (memcmp(sealed, data, len) != 0)
                        fuzz_one(sealed, len);
                free(sealed);
        }
        return 0;
}
