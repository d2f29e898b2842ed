/* SPDX-License-Identifier: Apache-2.0 */
/* The delta layer; see delta.h for the durability rules. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <stellar/hash.h>

#include "../util/cleanup.h"
#include "../util/diag.h"
#include "../util/fs.h"
#include "../util/le.h"
#include "delta.h"

#define MAP_MAGIC "STDELTA\0"
#define MAP_VERSION 3u /* 1: no flush marks, no header check; 2: a commit
                            * record promises its data durable; both still read */
/* Header: 32 bytes in version 1 (magic, version, length, tag, zero), 40 in
 * version 2 (magic, version, length, tag, name sum, check). */
#define MAP_HEADER_MAX 40u
#define HDR_LEN(d) ((d)->version == 1 ? 32u : 40u)
#define UNFLUSHED (1ull << 63)
#define EMPTY UINT64_MAX

static uint64_t mix(uint64_t x) {
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        return x;
}

static int map_grow(delta *d) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        uint64_t *k = malloc(cap * sizeof *k), *v = malloc(cap * sizeof *v),
                 *h = malloc(cap * sizeof *h);
        if (!k || !v || !h) {
                free(k);
                free(v);
                free(h);
                return -ENOMEM;
        }
        memset(k, 0xff, cap * sizeof *k);
        for (size_t i = 0; i < d->cap; i++) {
                if (d->keys[i] == EMPTY)
                        continue;
                size_t j = mix(d->keys[i]) & (cap - 1);
                while (k[j] != EMPTY)
                        j = (j + 1) & (cap - 1);
                k[j] = d->keys[i];
                v[j] = d->vals[i];
                h[j] = d->sums[i];
        }
        free(d->keys);
        free(d->vals);
        free(d->sums);
        d->keys = k;
        d->vals = v;
        d->sums = h;
        d->cap = cap;
        return 0;
}

static uint64_t *map_slot(const delta *d, uint64_t block) {
        if (!d->cap)
                return NULL;
        for (size_t i = mix(block) & (d->cap - 1);; i = (i + 1) & (d->cap - 1)) {
                if (d->keys[i] == block)
                        return &d->vals[i];
                if (d->keys[i] == EMPTY)
                        return NULL;
        }
}

/* A set of u64 (region numbers), open addressing. */
static bool set_has(const uint64_t *keys, size_t cap, uint64_t k) {
        if (!cap)
                return false;
        for (size_t i = mix(k) & (cap - 1);; i = (i + 1) & (cap - 1)) {
                if (keys[i] == k)
                        return true;
                if (keys[i] == EMPTY)
                        return false;
        }
}

static int set_add(uint64_t **keys, size_t *cap, size_t *n, uint64_t k) {
        if (set_has(*keys, *cap, k))
                return 0;
        if ((*n + 1) * 10 > *cap * 7) {
                size_t nc = *cap ? *cap * 2 : 64;
                uint64_t *t = malloc(nc * sizeof *t);
                if (!t)
                        return -ENOMEM;
                memset(t, 0xff, nc * sizeof *t);
                for (size_t i = 0; i < *cap; i++)
                        if ((*keys)[i] != EMPTY) {
                                size_t j = mix((*keys)[i]) & (nc - 1);
                                while (t[j] != EMPTY)
                                        j = (j + 1) & (nc - 1);
                                t[j] = (*keys)[i];
                        }
                free(*keys);
                *keys = t;
                *cap = nc;
        }
        size_t i = mix(k) & (*cap - 1);
        while ((*keys)[i] != EMPTY)
                i = (i + 1) & (*cap - 1);
        (*keys)[i] = k;
        (*n)++;
        return 0;
}

#define R1_SHIFT 8  /* 256 blocks = 1 MiB */
#define R2_SHIFT 16 /* 65536 blocks = 256 MiB */

uint64_t delta_next_block(const delta *d, uint64_t from, uint64_t limit) {
        uint64_t b = from;
        while (b < limit && d->count > 0) {
                if (!set_has(d->r2, d->r2_cap, b >> R2_SHIFT)) {
                        b = ((b >> R2_SHIFT) + 1) << R2_SHIFT;
                        continue;
                }
                if (!set_has(d->r1, d->r1_cap, b >> R1_SHIFT)) {
                        b = ((b >> R1_SHIFT) + 1) << R1_SHIFT;
                        continue;
                }
                if (map_slot(d, b))
                        return b;
                b++;
        }
        return limit;
}

/* The data sum kept beside a value map_slot returned. */
static uint64_t *map_sum(const delta *d, const uint64_t *v) {
        return &d->sums[v - d->vals];
}

static int map_put(delta *d, uint64_t block, uint64_t val, uint64_t sum) {
        uint64_t *v = map_slot(d, block);
        if (v) {
                *v = val;
                *map_sum(d, v) = sum;
                return 0;
        }
        int k = set_add(&d->r1, &d->r1_cap, &d->r1_n, block >> R1_SHIFT);
        if (k == 0)
                k = set_add(&d->r2, &d->r2_cap, &d->r2_n, block >> R2_SHIFT);
        if (k < 0)
                return k;
        if ((d->count + 1) * 10 > d->cap * 7) {
                int r = map_grow(d);
                if (r < 0)
                        return r;
        }
        size_t i = mix(block) & (d->cap - 1);
        while (d->keys[i] != EMPTY)
                i = (i + 1) & (d->cap - 1);
        d->keys[i] = block;
        d->vals[i] = val;
        d->sums[i] = sum;
        d->count++;
        return 0;
}

static int push(uint64_t **v, size_t *n, size_t *cap, uint64_t x) {
        if (*n == *cap) {
                size_t c = *cap ? *cap * 2 : 64;
                uint64_t *t = realloc(*v, c * sizeof *t);
                if (!t)
                        return -ENOMEM;
                *v = t;
                *cap = c;
        }
        (*v)[(*n)++] = x;
        return 0;
}

/* Records: 32 bytes in version 1 (block, value, sequence, check), 40 in
 * version 2 (block, value, sequence, data sum, check). The check is the first
 * 8 bytes of BLAKE3 of the record before it, then the tag. */
#define REC_LEN(d) ((d)->version == 1 ? 32u : 40u)
#define REC_BODY(d) (REC_LEN(d) - 8u)

static uint64_t record_check(const delta *d, const uint8_t *rec) {
        uint8_t b[40];
        memcpy(b, rec, REC_BODY(d));
        st_le64_put(b + REC_BODY(d), d->tag);
        st_digest h;
        st_hash(b, REC_LEN(d), &h);
        return st_le64_get(h.b);
}

/* The sum a version 2 record keeps of its slot's 4 KiB: a fast
 * non-cryptographic hash, so a write costs a few hundred nanoseconds more
 * and a flipped bit in the data file is found when read. */
static uint64_t data_sum(const void *block) {
        return (uint64_t)XXH3_64bits(block, DELTA_BLOCK);
}

/* A version 2 flush ends with a commit record: block COMMIT_BLOCK, value the
 * number of records before it in the flush, its own sequence number, and a
 * check over those records' bytes, its first 32 bytes and the tag. Version 2
 * writes the records only once the data is durable, so a durable commit
 * record promises its records' data. Version 3 writes them first and syncs
 * both files at once (one wait, not two): its commit record's data sum field
 * holds instead the journal's durable end when the flush began, the end of
 * the last flush known to be complete. Replay trusts the records before it
 * and checks every record after it against its data, as it checks unflushed
 * ones (keep_unflushed): only the last flush can have been cut between the
 * two files. */
#define COMMIT_BLOCK UINT64_MAX

static uint64_t commit_check(const delta *d, const st_hasher *batch, const uint8_t *rec) {
        st_hasher h = *batch;
        uint8_t t[8];
        st_le64_put(t, d->tag);
        st_hasher_update(&h, rec, REC_BODY(d));
        st_hasher_update(&h, t, 8);
        st_digest sum;
        st_hasher_final(&h, &sum);
        return st_le64_get(sum.b);
}

static uint64_t header_check(const uint8_t *hdr) {
        st_digest h;
        st_hash(hdr, 32, &h);
        return st_le64_get(h.b);
}

/* Binds a journal to its volume's name: a journal moved or swapped from
 * another volume is damage, not "an earlier volume's". */
static uint64_t name_sum(const char *name) {
        st_digest h;
        st_hash(name, strlen(name), &h);
        return st_le64_get(h.b);
}

static void file_name(const delta *d, const char *ext, char out[300]) {
        snprintf(out, 300, "%s.%s", d->name, ext);
}

static void header_encode(uint8_t out[MAP_HEADER_MAX], const delta *d) {
        memset(out, 0, MAP_HEADER_MAX);
        memcpy(out, MAP_MAGIC, 8);
        st_le32_put(out + 8, MAP_VERSION);
        st_le32_put(out + 12, MAP_HEADER_MAX);
        st_le64_put(out + 16, d->tag);
        st_le64_put(out + 24, name_sum(d->name));
        st_le64_put(out + 32, header_check(out));
}

/* Create (or replace) the two files, empty. */
static int delta_create(delta *d) {
        char dn[300], mn[300];
        file_name(d, "data", dn);
        file_name(d, "map", mn);
        uint8_t hdr[MAP_HEADER_MAX];
        header_encode(hdr, d);
        /* The journal appears complete or not at all, and before the data
         * file is emptied: a crash between leaves an empty journal over old
         * slots (free), never records over a data file that lost them. */
        int r = st_write_atomic(d->dirfd, mn, hdr, sizeof hdr);
        int mfd = r < 0 ? -1 : openat(d->dirfd, mn, O_RDWR | O_CLOEXEC);
        if (mfd < 0)
                return r < 0 ? r : -errno;
        int dfd = openat(d->dirfd, dn, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (dfd < 0) {
                r = -errno;
                close(mfd);
                return r;
        }
        if (d->data_fd >= 0)
                close(d->data_fd);
        if (d->map_fd >= 0)
                close(d->map_fd);
        d->data_fd = dfd;
        d->map_fd = mfd;
        d->n_slots = 0;
        d->version = MAP_VERSION;
        d->map_len = HDR_LEN(d);
        d->seq = 0;
        return st_fsync_dir(d->dirfd);
}

/* Reads the journal's records in runs of RUN. */
#define RUN 256
typedef struct reader {
        int fd;
        uint32_t rec_len;
        uint64_t len, buf_off; /* file length; offset of buf[0] */
        size_t buf_len;
        uint8_t buf[40 * RUN];
} reader;

/* The record at off (a multiple of 32 past the header), or NULL past the
 * last whole record; *ret_r gets a read error. */
static const uint8_t *reader_at(reader *rd, uint64_t off, int *ret_r) {
        if (off + rd->rec_len > rd->len)
                return NULL;
        if (off < rd->buf_off || off + rd->rec_len > rd->buf_off + rd->buf_len) {
                size_t n = (size_t)ST_MIN((uint64_t)rd->rec_len * RUN,
                                          (rd->len - off) / rd->rec_len * rd->rec_len);
                int r = st_pread_full(rd->fd, rd->buf, n, off);
                if (r < 0) {
                        *ret_r = r;
                        return NULL;
                }
                rd->buf_off = off;
                rd->buf_len = n;
        }
        return rd->buf + (off - rd->buf_off);
}

static uint64_t rec_seq(const delta *d, uint64_t off) {
        return (off - HDR_LEN(d)) / REC_LEN(d);
}

static bool rec_intact(const delta *d, const uint8_t *rec, uint64_t off) {
        return st_le64_get(rec + 16) == rec_seq(d, off) &&
               st_le64_get(rec + REC_BODY(d)) == record_check(d, rec);
}

static int damaged(const delta *d, st_diag *reterr, uint64_t off, const char *what) {
        char file[300];
        snprintf(file, sizeof file, "deltas/%s.map", d->name);
        return st_diag_fail(reterr, file, off, what, -EBADMSG);
}

/* Does a whole, verified flush start at or after 'from' (version 2)? Then
 * the bad record before it was durable once: damage, not a torn tail. */
static int later_flush_v2(const delta *d, reader *rd, uint64_t from, bool *ret) {
        int r = 0;
        *ret = false;
        uint32_t rl = REC_LEN(d);
        for (uint64_t off = from; !*ret; off += rl) {
                const uint8_t *rec = reader_at(rd, off, &r);
                if (!rec)
                        return r;
                if (st_le64_get(rec) != COMMIT_BLOCK || st_le64_get(rec + 16) != rec_seq(d, off))
                        continue;
                uint64_t n = st_le64_get(rec + 8);
                if (n > (off - from) / rl)
                        continue; /* it would cover the bad record */
                uint8_t commit[40];
                memcpy(commit, rec, rl);
                st_hasher h;
                st_hasher_init(&h);
                bool ok = true;
                for (uint64_t o = off - n * rl; ok && o < off; o += rl) {
                        const uint8_t *x = reader_at(rd, o, &r);
                        if (!x)
                                return r ? r : -EIO;
                        ok = rec_intact(d, x, o) && st_le64_get(x) != COMMIT_BLOCK;
                        st_hasher_update(&h, x, rl);
                }
                *ret = ok && st_le64_get(commit + REC_BODY(d)) == commit_check(d, &h, commit);
        }
        return 0;
}

/* Version 1 had no flush marks: an intact record after the bad one is the
 * best sign that the bad one was durable. */
static int later_record_v1(const delta *d, reader *rd, uint64_t from, bool *ret) {
        int r = 0;
        *ret = false;
        for (uint64_t off = from; !*ret; off += REC_LEN(d)) {
                const uint8_t *rec = reader_at(rd, off, &r);
                if (!rec)
                        return r;
                *ret = rec_intact(d, rec, off);
        }
        return 0;
}

/* Is what follows the last good record, from 'from' to the end of the file,
 * what an unfinished append leaves? That is a prefix of the records it was
 * writing, landed in whole sectors, then zeros (sectors the crash kept from
 * landing) or the end of the file. So the bytes from the first bad record on
 * must be zero from a sector boundary inside that record (or from its very
 * start) to the end. A record that is whole, not zero-tailed, and bad is
 * damage: typically a flipped bit in the last flush, which a torn append
 * cannot produce. */
#define SECTOR 512u
static int looks_torn(reader *rd, uint64_t from, uint32_t rl, bool *ret) {
        uint64_t last_nonzero = UINT64_MAX; /* none */
        int r = 0;
        uint8_t buf[4096];
        for (uint64_t o = from; o < rd->len;) {
                size_t n = (size_t)ST_MIN((uint64_t)sizeof buf, rd->len - o);
                r = st_pread_full(rd->fd, buf, n, o);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++)
                        if (buf[i])
                                last_nonzero = o + i;
                o += n;
        }
        uint64_t z = last_nonzero == UINT64_MAX ? from : last_nonzero + 1;
        /* zero from B, or from some sector boundary inside the record at B */
        uint64_t aligned = (z + SECTOR - 1) / SECTOR * SECTOR;
        *ret = z == from || aligned < from + rl;
        return 0;
}

/* Find where the durable journal ends: *ret_end. Records past it are the
 * torn tail of an unfinished flush; a bad record followed by a durable
 * flush is damage (-EBADMSG, *reterr naming its offset). */
static int journal_end(delta *d, reader *rd, uint64_t *ret_end, uint64_t *ret_trusted,
                       st_diag *reterr) {
        uint64_t off = HDR_LEN(d), end = HDR_LEN(d), n_batch = 0, trusted = HDR_LEN(d);
        st_hasher h;
        st_hasher_init(&h);
        int r = 0;
        uint32_t rl = REC_LEN(d);
        for (;; off += rl) {
                const uint8_t *rec = reader_at(rd, off, &r);
                if (!rec)
                        break;
                if (d->version == 1) {
                        if (!rec_intact(d, rec, off))
                                break;
                        end = trusted = off + rl;
                } else if (st_le64_get(rec) == COMMIT_BLOCK) {
                        /* version 3: where the last complete flush ended,
                         * at a record boundary, not after this flush's start
                         * and not before what the last commit said */
                        uint64_t x = st_le64_get(rec + 24);
                        if (st_le64_get(rec + 16) != rec_seq(d, off) ||
                            st_le64_get(rec + 8) != n_batch ||
                            st_le64_get(rec + REC_BODY(d)) != commit_check(d, &h, rec) ||
                            (d->version >= 3 && (x < trusted || x > off - n_batch * rl ||
                                                 (x - HDR_LEN(d)) % rl != 0)))
                                break;
                        end = off + rl;
                        trusted = d->version >= 3 ? x : end;
                        n_batch = 0;
                        st_hasher_init(&h);
                } else {
                        if (!rec_intact(d, rec, off))
                                break;
                        st_hasher_update(&h, rec, rl);
                        n_batch++;
                }
        }
        if (r < 0)
                return r;
        if (off + rl <= rd->len) {
                /* Stopped at a bad record: torn, or damaged? */
                bool later = false;
                r = d->version == 1 ? later_record_v1(d, rd, off + rl, &later)
                                    : later_flush_v2(d, rd, off + rl, &later);
                if (r < 0)
                        return r;
                if (later)
                        return damaged(d, reterr, off,
                                       "damaged journal record before later durable ones");
                bool torn = false;
                r = looks_torn(rd, off, rl, &torn);
                if (r < 0)
                        return r;
                if (!torn)
                        return damaged(d, reterr, off,
                                       "damaged journal record (not the torn end of an "
                                       "unfinished flush)");
        }
        *ret_end = end;
        *ret_trusted = trusted;
        return 0;
}

static int journal(delta *d, uint64_t block, uint64_t val, uint64_t sum);

/* Replay: point block at val in the map, moving the slot ownership that the
 * checks of later records go by. */
static int replay_put(delta *d, uint64_t *owner, uint64_t block, uint64_t val, uint64_t sum) {
        uint64_t *old = map_slot(d, block);
        if (old && *old != DELTA_ZERO)
                owner[*old] = EMPTY;
        if (val != DELTA_ZERO)
                owner[val] = block;
        return map_put(d, block, val, sum);
}

/* Writes acknowledged but not flushed when the writer died (version 2: their
 * records reach the journal file as they are made): each intact write record
 * past the durable end whose data is in its slot, as its sum says, is kept,
 * in order; one whose data never landed, or that names a slot past the data
 * file or one another block holds, is not (none of them was flushed, so
 * none was promised). The kept ones are applied to the map and listed in
 * *ret (block, value, sum triples) for the caller to commit. */
typedef struct tail {
        uint64_t *kept; /* (block, value, sum) of each kept record, in order */
        size_t n;
        /* of them, before the durable end (version 3: the last flush's) */
        size_t n_durable;
        size_t dropped_durable; /* write records before the durable end not kept */
        size_t commits_durable; /* commit records before the durable end */
} tail;

static int keep_unflushed(delta *d, reader *rd, uint64_t from, uint64_t durable, uint64_t *owner,
                          tail *t) {
        uint32_t rl = REC_LEN(d);
        size_t cap = (size_t)((rd->len - from) / rl);
        *t = (tail){ .kept = malloc((cap ? cap : 1) * 3 * sizeof *t->kept) };
        uint8_t *buf = malloc(DELTA_BLOCK);
        int r = t->kept && buf ? 0 : -ENOMEM;
        for (uint64_t off = from; r == 0 && off + rl <= rd->len; off += rl) {
                const uint8_t *rec = reader_at(rd, off, &r);
                if (!rec)
                        break;
                uint64_t block = st_le64_get(rec), val = st_le64_get(rec + 8);
                uint64_t sum = st_le64_get(rec + 24);
                bool keep = block != COMMIT_BLOCK && rec_intact(d, rec, off) && block < d->max_blocks;
                if (keep && val != DELTA_ZERO) {
                        keep = val < d->n_slots && (owner[val] == EMPTY || owner[val] == block);
                        /* a slot that cannot be read ends the open: nothing
                         * is dropped or cut on the strength of it */
                        if (keep && (r = st_pread_full(d->data_fd, buf, DELTA_BLOCK,
                                                       val * DELTA_BLOCK)) < 0)
                                break;
                        keep = keep && data_sum(buf) == sum;
                }
                if (off < durable) { /* (checked whole by journal_end) */
                        t->commits_durable += block == COMMIT_BLOCK;
                        t->dropped_durable += block != COMMIT_BLOCK && !keep;
                        t->n_durable += keep;
                }
                if (!keep)
                        continue;
                r = replay_put(d, owner, block, val, sum);
                t->kept[3 * t->n] = block;
                t->kept[3 * t->n + 1] = val;
                t->kept[3 * t->n + 2] = sum;
                t->n++;
        }
        free(buf);
        if (r < 0) {
                free(t->kept);
                t->kept = NULL;
        }
        return r;
}

static int replay(delta *d, bool rdonly, st_diag *reterr) {
        struct stat st;
        if (fstat(d->map_fd, &st) < 0)
                return -errno;
        uint64_t len = (uint64_t)st.st_size;
        uint8_t hdr[MAP_HEADER_MAX];
        if (len < 32)
                return damaged(d, reterr, len, "journal shorter than its header");
        int r = st_pread_full(d->map_fd, hdr, 32, 0);
        if (r < 0)
                return r;
        if (memcmp(hdr, MAP_MAGIC, 8) != 0)
                return damaged(d, reterr, 0, "bad journal magic");
        d->version = st_le32_get(hdr + 8);
        if (d->version < 1 || d->version > MAP_VERSION) {
                (void)damaged(d, reterr, 8, "unknown journal version");
                return -EPROTONOSUPPORT;
        }
        if (st_le32_get(hdr + 12) != HDR_LEN(d))
                return damaged(d, reterr, 12, "bad journal header length");
        if (len < HDR_LEN(d))
                return damaged(d, reterr, len, "journal shorter than its header");
        if (d->version == 1) {
                if (st_le64_get(hdr + 24) != 0)
                        return damaged(d, reterr, 24, "reserved journal header bytes are not zero");
        } else {
                r = st_pread_full(d->map_fd, hdr + 32, 8, 32);
                if (r < 0)
                        return r;
                if (st_le64_get(hdr + 32) != header_check(hdr))
                        return damaged(d, reterr, 32, "journal header checksum mismatch");
                if (st_le64_get(hdr + 24) != name_sum(d->name))
                        return damaged(d, reterr, 24,
                                       "the journal is another volume's (moved or swapped?)");
        }
        if (st_le64_get(hdr + 16) != d->tag)
                return 1; /* a delta of an earlier volume of this name: not ours */
        d->n_slots = 0;
        if (d->data_fd >= 0) {
                if (fstat(d->data_fd, &st) < 0)
                        return -errno;
                d->n_slots = (uint64_t)st.st_size / DELTA_BLOCK;
        }
        reader *rd = malloc(sizeof *rd);
        if (!rd)
                return -ENOMEM;
        *rd = (reader){ .fd = d->map_fd, .rec_len = REC_LEN(d), .len = len };
        /* Version 3: the records past the last complete flush (the trusted
         * end) are checked against their data like unflushed ones (see
         * commit_check); before version 3 it is the durable end. */
        uint64_t durable = HDR_LEN(d), trusted = HDR_LEN(d);
        r = journal_end(d, rd, &durable, &trusted, reterr);
        /* Which block holds each slot: a durable record that names a slot
         * another block holds, or one past the data file, is damage (a
         * correct writer never shares a slot, and makes data durable before
         * the record that names it). */
        uint64_t *owner = r < 0 ? NULL : malloc((d->n_slots ? d->n_slots : 1) * sizeof *owner);
        if (r == 0 && !owner)
                r = -ENOMEM;
        if (owner)
                memset(owner, 0xff, (d->n_slots ? d->n_slots : 1) * sizeof *owner);
        for (uint64_t off = HDR_LEN(d); r == 0 && off < trusted; off += REC_LEN(d)) {
                const uint8_t *rec = reader_at(rd, off, &r);
                if (!rec)
                        break;
                uint64_t block = st_le64_get(rec), val = st_le64_get(rec + 8);
                uint64_t sum = d->version == 1 ? 0 : st_le64_get(rec + 24);
                if (d->version != 1 && block == COMMIT_BLOCK)
                        continue;
                if (block >= d->max_blocks)
                        r = damaged(d, reterr, off, "journal record names a block past the volume");
                else if (val != DELTA_ZERO && val >= d->n_slots)
                        r = damaged(d, reterr, off,
                                    "journal record names a slot past the end of the data file "
                                    "(the data file lost bytes)");
                else if (val != DELTA_ZERO && owner[val] != EMPTY && owner[val] != block)
                        r = damaged(d, reterr, off,
                                    "journal record names a slot another block holds");
                if (r < 0)
                        break;
                r = replay_put(d, owner, block, val, sum);
        }
        tail t = { 0 };
        if (r == 0 && d->version != 1 && trusted < len)
                r = keep_unflushed(d, rd, trusted, durable, owner, &t);
        free(owner);
        free(rd);
        if (r < 0)
                return r;
        /* The journal is cut where what follows can go: at the durable end
         * if every record before it held its data (version 3: the last
         * flush is whole as written), else (one of its records lost its
         * data: that flush never completed) where that flush began. What
         * follows the cut (writes that never landed, an unfinished flush's
         * commit) goes; the kept writes after it are committed again before
         * anything else is written. */
        uint64_t cut = t.dropped_durable == 0 ? durable : trusted;
        size_t first = cut == durable ? t.n_durable : 0;
        size_t commits = cut == durable ? 0 : t.commits_durable;
        if (cut < len && !rdonly && ftruncate(d->map_fd, (off_t)cut) < 0) {
                free(t.kept);
                return -errno;
        }
        d->map_len = cut;
        d->seq = (cut - HDR_LEN(d)) / REC_LEN(d);
        /* ends with its seal: nothing but commit records after the trusted end */
        d->sealed = d->version >= 3 && cut == durable && durable > trusted && t.n == 0;
        d->torn_len = len - cut - (t.n - first + commits) * REC_LEN(d);
        for (size_t i = first; r == 0 && !rdonly && i < t.n; i++)
                r = journal(d, t.kept[3 * i], t.kept[3 * i + 1], t.kept[3 * i + 2]);
        free(t.kept);
        if (r == 0 && !rdonly && t.n > first) {
                d->data_dirty = true;
                r = delta_flush(d);
        }
        if (r < 0)
                return r;
        /* Slots no record names (written, never journalled) are free too. */
        uint8_t *used = calloc(d->n_slots ? d->n_slots : 1, 1);
        if (!used)
                return -ENOMEM;
        for (size_t i = 0; i < d->cap; i++)
                if (d->keys[i] != EMPTY && d->vals[i] != DELTA_ZERO)
                        used[d->vals[i]] = 1;
        d->n_free = 0;
        r = 0;
        for (uint64_t sl = 0; r == 0 && sl < d->n_slots; sl++)
                if (!used[sl])
                        r = push(&d->free_slots, &d->n_free, &d->cap_free, sl);
        free(used);
        return r;
}

int delta_open(int dirfd, const char *name, uint64_t tag, uint64_t max_blocks, bool rdonly,
               delta *ret, st_diag *reterr) {
        delta d = { .dirfd = dirfd, .tag = tag, .max_blocks = max_blocks, .data_fd = -1,
                    .map_fd = -1 };
        snprintf(d.name, sizeof d.name, "%s", name);
        char dn[300], mn[300];
        file_name(&d, "data", dn);
        file_name(&d, "map", mn);
        int flags = (rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
        int r = 0;
        d.map_fd = openat(dirfd, mn, flags);
        if (d.map_fd < 0 && errno != ENOENT)
                r = -errno;
        struct stat st;
        if (r == 0 && d.map_fd < 0 && fstatat(dirfd, dn, &st, 0) == 0 && st.st_size > 0) {
                /* Data is written only once its journal exists, and the
                 * journal goes only after the data: written data without a
                 * journal means the journal was lost. */
                char file[320];
                snprintf(file, sizeof file, "deltas/%s", dn);
                r = st_diag_fail(reterr, file, ST_DIAG_NO_OFFSET,
                                 "the volume's writes are here but their journal "
                                 "(NAME.map) is missing",
                                 -EBADMSG);
        }
        if (r == 0 && d.map_fd >= 0) {
                /* A journal without its data file: replay finds whether any
                 * record needed it (then the loss is reported, not hidden). */
                d.data_fd = openat(dirfd, dn, flags | (rdonly ? 0 : O_CREAT), 0644);
                if (d.data_fd < 0 && errno != ENOENT)
                        r = -errno;
        }
        if (r == 0 && d.map_fd >= 0) {
                r = replay(&d, rdonly, reterr);
                if (r == 0 && d.data_fd < 0 && d.count > 0 &&
                    !rdonly)
                        r = -EIO; /* unreachable: O_CREAT made it */
                if (r == 1) { /* an earlier volume's: start over on the first write */
                        delta_close(&d);
                        d = (delta){ .dirfd = dirfd, .tag = tag, .max_blocks = max_blocks,
                                     .data_fd = -1, .map_fd = -1 };
                        snprintf(d.name, sizeof d.name, "%s", name);
                        r = 0;
                }
        }
        if (r < 0) {
                delta_close(&d);
                return r;
        }
        *ret = d;
        return 0;
}

void delta_close(delta *d) {
        if (d->data_fd >= 0)
                close(d->data_fd);
        if (d->map_fd >= 0)
                close(d->map_fd);
        free(d->keys);
        free(d->vals);
        free(d->sums);
        free(d->r1);
        free(d->r2);
        free(d->jbuf);
        free(d->touched);
        free(d->pending_free);
        free(d->free_slots);
        *d = (delta){ .data_fd = -1, .map_fd = -1 };
}

int delta_lookup(const delta *d, uint64_t block, uint64_t *ret_slot) {
        const uint64_t *v = map_slot(d, block);
        if (!v)
                return 0;
        uint64_t s = *v & ~UNFLUSHED;
        if (s == (DELTA_ZERO & ~UNFLUSHED))
                return 2;
        *ret_slot = s;
        return 1;
}

int delta_read_slot(const delta *d, uint64_t block, uint64_t slot, void *buf) {
        int r = st_pread_full(d->data_fd, buf, DELTA_BLOCK, slot * DELTA_BLOCK);
        if (r < 0 || d->version == 1)
                return r;
        const uint64_t *v = map_slot(d, block);
        if (!v || (*v & ~UNFLUSHED) != slot || *map_sum(d, v) != data_sum(buf))
                return -EBADMSG;
        return 0;
}

int delta_verify(const delta *d, uint64_t *ret_block, uint64_t *ret_slot) {
        uint8_t *buf = malloc(DELTA_BLOCK);
        if (!buf)
                return -ENOMEM;
        int r = 0;
        for (size_t i = 0; r == 0 && i < d->cap; i++) {
                if (d->keys[i] == EMPTY || (d->vals[i] & ~UNFLUSHED) == (DELTA_ZERO & ~UNFLUSHED))
                        continue;
                uint64_t slot = d->vals[i] & ~UNFLUSHED;
                r = delta_read_slot(d, d->keys[i], slot, buf);
                if (r == -EBADMSG || r == -EIO) {
                        *ret_block = d->keys[i];
                        *ret_slot = slot;
                        r = -EBADMSG;
                }
        }
        free(buf);
        return r;
}

static int journal(delta *d, uint64_t block, uint64_t val, uint64_t sum) {
        if (d->jlen + REC_LEN(d) > d->jcap) {
                size_t c = d->jcap ? d->jcap * 2 : 4096;
                uint8_t *t = realloc(d->jbuf, c);
                if (!t)
                        return -ENOMEM;
                d->jbuf = t;
                d->jcap = c;
        }
        uint8_t *rec = d->jbuf + d->jlen;
        st_le64_put(rec, block);
        st_le64_put(rec + 8, val);
        st_le64_put(rec + 16, d->seq + d->jlen / REC_LEN(d));
        if (d->version != 1)
                st_le64_put(rec + 24, sum);
        st_le64_put(rec + REC_BODY(d), record_check(d, rec));
        d->jlen += REC_LEN(d);
        return 0;
}

/* Point block at val (a slot or ZERO, whose data has this sum) in memory and
 * in the pending journal. */
static int remap(delta *d, uint64_t block, uint64_t val, uint64_t sum) {
        uint64_t *old = map_slot(d, block);
        int r;
        if (old && !(*old & UNFLUSHED) && *old != DELTA_ZERO)
                if ((r = push(&d->pending_free, &d->n_pending, &d->cap_pending, *old)) < 0)
                        return r;
        if (!old || !(*old & UNFLUSHED))
                if ((r = push(&d->touched, &d->n_touched, &d->cap_touched, block)) < 0)
                        return r;
        if (old && (*old & UNFLUSHED) && (*old & ~UNFLUSHED) != DELTA_ZERO &&
            val != (*old & ~UNFLUSHED)) {
                /* An unflushed slot: freed only after the flush, or one flush
                 * could hold "A -> s, A -> zeros, B -> s", and a crash that
                 * keeps only its first record would show B's data in A. */
                if ((r = push(&d->pending_free, &d->n_pending, &d->cap_pending,
                              *old & ~UNFLUSHED)) < 0)
                        return r;
        }
        if ((r = map_put(d, block, val | UNFLUSHED, sum)) < 0)
                return r;
        return journal(d, block, val, sum);
}

static int ensure_files(delta *d) {
        return d->map_fd >= 0 ? 0 : delta_create(d);
}

/* Version 2: the records made since 'from' go to the journal file at once,
 * past its durable end, where the next flush commits them. Not synced: they
 * are there for the next open if this process dies (a kill, a crash, an
 * upgrade under running VMs), each checked then against its data. */
static int journal_out(delta *d, size_t from) {
        if (d->version == 1 || d->jlen == from)
                return 0;
        return st_pwrite_full(d->map_fd, d->jbuf + from, d->jlen - from, d->map_len + from);
}

/* Does a write of this block go into its slot in place? Version 1 only:
 * version 2 writes every block to a fresh slot, so that a record in the
 * journal file always names the data it was made for (its predecessor's
 * slot is freed after the next flush). */
static bool in_place(const delta *d, const uint64_t *cur) {
        return d->version == 1 && cur && (*cur & UNFLUSHED) && *cur != (DELTA_ZERO | UNFLUSHED);
}

int delta_write(delta *d, uint64_t block, size_t n, const uint8_t *data) {
        if (block >= d->max_blocks || n > d->max_blocks - block)
                return -EINVAL;
        int r = ensure_files(d);
        if (r < 0)
                return r;
        size_t jstart = d->jlen;
        for (size_t i = 0; i < n;) {
                uint64_t *cur = map_slot(d, block + i);
                if (in_place(d, cur)) {
                        /* Written since the last flush: no durable record names
                         * this slot, so overwrite it in place. */
                        uint64_t slot = *cur & ~UNFLUSHED;
                        r = st_pwrite_full(d->data_fd, data + i * DELTA_BLOCK, DELTA_BLOCK,
                                           slot * DELTA_BLOCK);
                        if (r < 0)
                                return r;
                        d->data_dirty = true;
                        i++;
                        continue;
                }
                /* A fresh slot: a freed one, else a run appended at the end. */
                uint64_t slot;
                size_t run = 1;
                if (d->n_free > 0)
                        slot = d->free_slots[--d->n_free];
                else {
                        slot = d->n_slots;
                        while (i + run < n && !in_place(d, map_slot(d, block + i + run)))
                                run++;
                        d->n_slots += run;
                }
                r = st_pwrite_full(d->data_fd, data + i * DELTA_BLOCK, run * DELTA_BLOCK,
                                   slot * DELTA_BLOCK);
                if (r < 0)
                        return r;
                d->data_dirty = true;
                for (size_t k = 0; k < run; k++) {
                        uint64_t sum = d->version == 1 ? 0 : data_sum(data + (i + k) * DELTA_BLOCK);
                        if ((r = remap(d, block + i + k, slot + k, sum)) < 0)
                                return r;
                }
                i += run;
        }
        return journal_out(d, jstart);
}

int delta_zero(delta *d, uint64_t block, size_t n) {
        if (block >= d->max_blocks || n > d->max_blocks - block)
                return -EINVAL;
        int r = ensure_files(d);
        size_t jstart = d->jlen;
        for (size_t i = 0; r == 0 && i < n; i++) {
                uint64_t *cur = map_slot(d, block + i);
                if (cur && (*cur & ~UNFLUSHED) == (DELTA_ZERO & ~UNFLUSHED))
                        continue;
                r = remap(d, block + i, DELTA_ZERO, 0);
        }
        return r < 0 ? r : journal_out(d, jstart);
}

/* Close the flush's records with a commit record (version 2). */
/* Append the commit record of the records from jclosed on (the ones
 * before it are a failed flush's, closed already), naming trusted as the
 * trusted end (version 3; 0 in version 2). */
static int journal_commit_record(delta *d, uint64_t trusted) {
        size_t n = (d->jlen - d->jclosed) / REC_LEN(d);
        st_hasher h;
        st_hasher_init(&h);
        st_hasher_update(&h, d->jbuf + d->jclosed, d->jlen - d->jclosed);
        int r = journal(d, COMMIT_BLOCK, n, trusted);
        if (r < 0)
                return r;
        uint8_t *rec = d->jbuf + d->jlen - REC_LEN(d);
        st_le64_put(rec + REC_BODY(d), commit_check(d, &h, rec));
        return 0;
}

/* Close the flush's records with a commit record (version 2 and later). */
static int journal_commit(delta *d) {
        if (d->version == 1 || d->jlen == d->jclosed)
                return 0;
        return journal_commit_record(d, d->version >= 3 ? d->map_len : 0);
}

int delta_flush_begin(delta *d, delta_flush_batch *b) {
        *b = (delta_flush_batch){ 0 };
        if (d->map_fd < 0 || (d->jlen == 0 && !d->data_dirty))
                return 0;
        /* The batch's own copy of its records (the journal buffer may grow
         * while they are written), with room for its commit record; taken
         * before anything changes, so that running out of memory here
         * leaves the delta as it was. */
        uint8_t *copy = malloc(d->jlen + REC_LEN(d));
        if (!copy)
                return -ENOMEM;
        int k = journal_commit(d);
        if (k < 0) {
                free(copy);
                return k;
        }
        memcpy(copy, d->jbuf, d->jlen);
        b->active = true;
        b->data_fd = d->data_dirty ? d->data_fd : -1;
        b->map_fd = d->map_fd;
        b->records_first = d->version >= 3;
        b->off = d->map_len;
        b->jbuf = copy;
        b->jlen = d->jlen;
        b->pending_free = d->pending_free;
        b->n_pending = d->n_pending;
        /* The records stay at the front of the journal buffer until they
         * are durable (closed by their commit record): new ones follow them
         * with the sequence numbers after theirs. */
        d->jsent = d->jclosed = d->jlen;
        /* The batch's blocks are no longer rewritten in place: their slots
         * are named by records about to be durable. A later write of one
         * goes to a fresh slot, and the old one is freed after the next
         * flush. */
        for (size_t i = 0; i < d->n_touched; i++) {
                uint64_t *v = map_slot(d, d->touched[i]);
                if (v)
                        *v &= ~UNFLUSHED;
        }
        d->n_touched = 0;
        d->data_dirty = false;
        d->pending_free = NULL;
        d->n_pending = d->cap_pending = 0;
        return 0;
}

static void *sync_journal(void *arg) {
        delta_flush_batch *b = arg;
        b->journal_r = fdatasync(b->map_fd) < 0 ? -errno : 0;
        return NULL;
}

/* Version 3: the records, then both files synced at once, the journal's on
 * a thread of its own (a flush waits for one sync, not two in a row). */
static int flush_write_v3(delta_flush_batch *b) {
        int r = b->jlen ? st_pwrite_full(b->map_fd, b->jbuf, b->jlen, b->off) : 0;
        if (r < 0 || b->jlen == 0 || b->data_fd < 0) {
                if (r == 0 && b->data_fd >= 0 && fdatasync(b->data_fd) < 0)
                        r = -errno;
                if (r == 0 && b->jlen && fdatasync(b->map_fd) < 0)
                        r = -errno;
                return r;
        }
        pthread_attr_t attr;
        pthread_t t;
        bool apart = pthread_attr_init(&attr) == 0;
        if (apart) {
                pthread_attr_setstacksize(&attr, 64u << 10);
                apart = pthread_create(&t, &attr, sync_journal, b) == 0;
                pthread_attr_destroy(&attr);
        }
        if (!apart)
                sync_journal(b);
        if (fdatasync(b->data_fd) < 0)
                r = -errno;
        if (apart)
                pthread_join(t, NULL);
        return r < 0 ? r : b->journal_r;
}

int delta_flush_write(delta_flush_batch *b) {
        if (!b->active)
                return 0;
        if (b->records_first)
                return flush_write_v3(b);
        if (b->data_fd >= 0 && fdatasync(b->data_fd) < 0)
                return -errno;
        if (b->jlen == 0)
                return 0;
        int r = st_pwrite_full(b->map_fd, b->jbuf, b->jlen, b->off);
        if (r == 0 && fdatasync(b->map_fd) < 0)
                r = -errno;
        return r;
}

int delta_flush_end(delta *d, delta_flush_batch *b, int r) {
        if (!b->active)
                return r;
        if (r == 0) {
                /* durable: the journal goes on after them */
                if (d->jsent > 0)
                        d->sealed = false;
                memmove(d->jbuf, d->jbuf + d->jsent, d->jlen - d->jsent);
                d->jlen -= d->jsent;
                d->jclosed = 0;
                d->map_len += d->jsent;
                d->seq += d->jsent / REC_LEN(d);
                for (size_t i = 0; i < b->n_pending; i++)
                        if (push(&d->free_slots, &d->n_free, &d->cap_free, b->pending_free[i]) < 0)
                                break; /* a slot leaked until the next commit; harmless */
        } else {
                /* Not durable: the records stay in front (closed by their
                 * commit record; version 1 has none) for the next flush to
                 * write again, with the data it syncs. */
                d->data_dirty = true;
                for (size_t i = 0; i < b->n_pending; i++)
                        if (push(&d->pending_free, &d->n_pending, &d->cap_pending,
                                 b->pending_free[i]) < 0)
                                break; /* a slot leaked until the next commit; harmless */
        }
        d->jsent = 0;
        free(b->jbuf);
        free(b->pending_free);
        *b = (delta_flush_batch){ 0 };
        return r;
}

int delta_seal(delta *d) {
        if (d->version < 3 || d->map_fd < 0 || d->sealed || d->jlen != 0 || d->data_dirty ||
            d->map_len <= HDR_LEN(d))
                return 0;
        /* an empty commit record, the trusted end its own offset */
        int r = journal_commit_record(d, d->map_len);
        if (r < 0)
                return r;
        r = st_pwrite_full(d->map_fd, d->jbuf, REC_LEN(d), d->map_len);
        if (r == 0 && fdatasync(d->map_fd) < 0)
                r = -errno;
        d->jlen = 0;
        if (r < 0)
                return r; /* (a seal that did not land is a torn tail: cut at the next open) */
        d->map_len += REC_LEN(d);
        d->seq++;
        d->sealed = true;
        return 0;
}

int delta_flush(delta *d) {
        delta_flush_batch b;
        int r = delta_flush_begin(d, &b);
        if (r < 0)
                return r;
        return delta_flush_end(d, &b, delta_flush_write(&b));
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return x < y ? -1 : x > y;
}

int delta_blocks(const delta *d, uint64_t **ret, size_t *ret_n) {
        uint64_t *v = malloc((d->count ? d->count : 1) * sizeof *v);
        if (!v)
                return -ENOMEM;
        size_t n = 0;
        for (size_t i = 0; i < d->cap; i++)
                if (d->keys[i] != EMPTY)
                        v[n++] = d->keys[i];
        qsort(v, n, sizeof *v, cmp_u64);
        *ret = v;
        *ret_n = n;
        return 0;
}

int delta_reset(delta *d) {
        int dirfd = d->dirfd;
        uint64_t tag = d->tag, max_blocks = d->max_blocks;
        char name[256];
        snprintf(name, sizeof name, "%s", d->name);
        bool had_files = d->map_fd >= 0;
        delta_close(d);
        *d = (delta){ .dirfd = dirfd, .tag = tag, .max_blocks = max_blocks, .data_fd = -1,
                      .map_fd = -1 };
        snprintf(d->name, sizeof d->name, "%s", name);
        if (!had_files)
                return 0;
        /* The journal is replaced atomically by an empty one, then the data
         * file is emptied: a crash between leaves an empty delta. */
        return delta_create(d);
}
