/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench-volume: volumes through the public library API (issue 3), driven by
 * bench/volume.sh, which runs the peers (qemu-img, qemu-io) on the same data.
 *
 *   bench-volume clone STORE SRC N NSNAP
 *       Times N calls of st_volume_clone(SRC, c<i>) (per-call µs: median,
 *       p99, mean, max), then st_volume_snapshot() of a volume with an empty
 *       delta, NSNAP times while the volume is not open in the process (the
 *       call opens it, finds nothing to commit, closes it) and NSNAP times
 *       while this process holds it open (the open handle is used).
 *
 *   bench-volume density STORE SRC N SHARED_FILE UNIQUE
 *       For i < N: clone SRC to d<i>, open it, write SHARED_FILE at 512 MiB
 *       (the same bytes in every clone: a package update), write U_i at
 *       768 MiB + (i % 200) * 5 MiB, commit, close. U_i is 5 MiB (the length
 *       of SHARED_FILE) of `gen i` output when UNIQUE is "gen", else the file
 *       UNIQUE/u<i>.bin. Reports the commit results summed and the time per
 *       clone and per commit (first and last 10% of the clones apart, to show
 *       a cost that grows with the store).
 *
 *   bench-volume io STORE SRC NW NF NRB W_OFF W_LEN B_OFF B_LEN
 *       4 KiB I/O on clones of SRC. Offsets follow a stride permutation of
 *       the range's blocks: request k goes to block (k * stride) mod nblocks,
 *       stride = floor(nblocks * 0.6180339887) | 1 (odd, so coprime with a
 *       power-of-two block count: every request hits a distinct block, and
 *       consecutive requests are ~0.38 of the range apart). It is the pattern
 *       `qemu-img bench -S stride*4096` produces, so the peer runs the same
 *       offsets in the same order. Phases:
 *         w64   NW writes over [W_OFF, +W_LEN) of a fresh clone, a flush after
 *               every 64 (and after the last), timed to the last flush
 *         wfua  NF writes with ST_WRITE_FUA on a second fresh clone (the
 *               same offsets as the first NF of w64)
 *         rd1 / rd2  NW reads of the blocks w64 wrote, in the same order (all
 *               in the delta), 1 and 2 threads (thread t takes requests t,
 *               t+2, ...)
 *         rb1 / rb2  NRB reads over [B_OFF, +B_LEN), which no phase wrote
 *               (the shared chunks of SRC, or its holes)
 *       Every delta read is checked against the block number stamped into
 *       the data when it was written. Sizes take K/M/G suffixes.
 *
 *   bench-volume gen SEED LEN OUT
 *       Write LEN bytes of the deterministic generator to OUT (SEED: a clone
 *       number, or "shared" for the shared update): the bytes `density gen`
 *       writes, for the peer.
 *
 * Human lines go to stderr; each mode prints one summary line to stdout,
 * "bench-volume-<mode>: key=value ...".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stellar/store.h>
#include <stellar/volume.h>

#define MIB (1024ull * 1024)
#define SHARED_OFF (512 * MIB)
#define UNIQUE_BASE (768 * MIB)
#define UNIQUE_STEP (5 * MIB)
#define UNIQUE_SLOTS 200
#define BLK 4096u
#define STAMP 0x5e11a71a0b10c000ull

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *s) {
        uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

#define SEED_SHARED 0x7368617265640000ull /* "shared" */
#define SEED_UNIQUE 0x756e697175650000ull /* "unique" */

/* The generator: a splitmix64 stream (incompressible, like any random data). */
static void gen_fill(uint64_t seed, uint8_t *buf, size_t len) {
        uint64_t s = seed;
        size_t i = 0;
        for (; i + 8 <= len; i += 8) {
                uint64_t v = splitmix64(&s);
                memcpy(buf + i, &v, 8);
        }
        if (i < len) {
                uint64_t v = splitmix64(&s);
                memcpy(buf + i, &v, len - i);
        }
}

static uint64_t gen_seed(const char *arg) {
        if (strcmp(arg, "shared") == 0)
                return SEED_SHARED;
        return SEED_UNIQUE ^ (strtoull(arg, NULL, 10) * 0xd1b54a32d192ed03ull);
}

static uint64_t parse_size(const char *s) {
        char *end;
        uint64_t v = strtoull(s, &end, 10);
        switch (*end) {
        case 'K': case 'k': return v << 10;
        case 'M': case 'm': return v << 20;
        case 'G': case 'g': return v << 30;
        default: return v;
        }
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
        return (x > y) - (x < y);
}

/* Percentile of sorted v (nearest rank). */
static uint64_t pct(const uint64_t *v, size_t n, double p) {
        size_t k = (size_t)(p * (double)n + 0.999999);
        if (k < 1)
                k = 1;
        if (k > n)
                k = n;
        return v[k - 1];
}

static double med_u64(uint64_t *v, size_t n) {
        qsort(v, n, sizeof *v, cmp_u64);
        return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

static double mean_u64(const uint64_t *v, size_t n) {
        double s = 0;
        for (size_t i = 0; i < n; i++)
                s += (double)v[i];
        return n ? s / (double)n : 0;
}

static int fail(const char *what, const char *name, int r) {
        fprintf(stderr, "bench-volume: %s %s: %s\n", what, name ? name : "", strerror(-r));
        return 1;
}

static st_store *open_store(const char *dir) {
        st_store *s;
        st_diag d = { 0 };
        int r = st_store_open(dir, 0, &s, &d);
        if (r < 0) {
                fprintf(stderr, "bench-volume: cannot open store %s: %s (%s)\n", dir, strerror(-r),
                        d.what ? d.what : "");
                exit(1);
        }
        return s;
}

/* ---- clone ---- */

static void print_times(const char *key, uint64_t *ns, size_t n) {
        qsort(ns, n, sizeof *ns, cmp_u64);
        double med = n % 2 ? (double)ns[n / 2] : ((double)ns[n / 2 - 1] + (double)ns[n / 2]) / 2;
        printf(" %s_n=%zu %s_median_us=%.1f %s_p99_us=%.1f %s_mean_us=%.1f %s_max_us=%.1f", key, n,
               key, med / 1e3, key, (double)pct(ns, n, 0.99) / 1e3, key, mean_u64(ns, n) / 1e3, key,
               (double)ns[n - 1] / 1e3);
        fprintf(stderr, "%s: %zu calls, median %.1f us, p99 %.1f us, max %.1f us\n", key, n,
                med / 1e3, (double)pct(ns, n, 0.99) / 1e3, (double)ns[n - 1] / 1e3);
}

static int do_clone(int argc, char **argv) {
        if (argc != 6)
                return fail("usage:", "clone STORE SRC N NSNAP", -EINVAL);
        const char *src = argv[3];
        size_t n = strtoull(argv[4], NULL, 10), nsnap = strtoull(argv[5], NULL, 10);
        if (n == 0 || nsnap == 0)
                return fail("bad", "N", -EINVAL);
        st_store *s = open_store(argv[2]);
        uint64_t *ns = calloc(n > nsnap ? n : nsnap, sizeof *ns);
        char name[64];
        int r;
        for (size_t i = 0; i < n; i++) {
                snprintf(name, sizeof name, "c%zu", i);
                uint64_t t0 = now_ns();
                r = st_volume_clone(s, src, name);
                ns[i] = now_ns() - t0;
                if (r < 0)
                        return fail("clone", name, r);
        }
        printf("bench-volume-clone:");
        print_times("clone", ns, n);

        if ((r = st_volume_clone(s, src, "sv")) < 0)
                return fail("clone", "sv", r);
        for (size_t i = 0; i < nsnap; i++) {
                snprintf(name, sizeof name, "sv-s%zu", i);
                uint64_t t0 = now_ns();
                r = st_volume_snapshot(s, "sv", name);
                ns[i] = now_ns() - t0;
                if (r < 0)
                        return fail("snapshot", name, r);
        }
        print_times("snap_closed", ns, nsnap);
        st_volume *v;
        if ((r = st_volume_open(s, "sv", 0, &v, NULL)) < 0)
                return fail("open", "sv", r);
        for (size_t i = 0; i < nsnap; i++) {
                snprintf(name, sizeof name, "sv-o%zu", i);
                uint64_t t0 = now_ns();
                r = st_volume_snapshot(s, "sv", name);
                ns[i] = now_ns() - t0;
                if (r < 0)
                        return fail("snapshot", name, r);
        }
        print_times("snap_open", ns, nsnap);
        st_volume_close(v);
        printf("\n");
        free(ns);
        st_store_close(s);
        return 0;
}

/* ---- density ---- */

static int read_file(const char *path, uint8_t *buf, size_t len) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        size_t got = 0;
        while (got < len) {
                ssize_t k = read(fd, buf + got, len - got);
                if (k <= 0) {
                        close(fd);
                        return k < 0 ? -errno : -EIO;
                }
                got += (size_t)k;
        }
        close(fd);
        return 0;
}

static int do_density(int argc, char **argv) {
        if (argc != 7)
                return fail("usage:", "density STORE SRC N SHARED_FILE gen|DIR", -EINVAL);
        const char *src = argv[3], *shared_path = argv[5], *uniq = argv[6];
        size_t n = strtoull(argv[4], NULL, 10);
        struct stat st;
        if (stat(shared_path, &st) < 0 || st.st_size <= 0 || st.st_size % BLK)
                return fail("bad shared file", shared_path, -EINVAL);
        size_t len = (size_t)st.st_size;
        uint8_t *shared = malloc(len), *u = malloc(len);
        uint64_t *t_clone = calloc(n, 8), *t_write = calloc(n, 8), *t_commit = calloc(n, 8);
        if (!shared || !u || !t_clone || !t_write || !t_commit)
                return fail("out of memory", NULL, -ENOMEM);
        int r = read_file(shared_path, shared, len);
        if (r < 0)
                return fail("read", shared_path, r);
        bool gen = strcmp(uniq, "gen") == 0;
        st_store *s = open_store(argv[2]);
        st_commit_result sum = { 0 };
        char name[64], path[4096], seed[32];
        uint64_t t_start = now_ns();
        for (size_t i = 0; i < n; i++) {
                if (gen) {
                        snprintf(seed, sizeof seed, "%zu", i);
                        gen_fill(gen_seed(seed), u, len);
                } else {
                        snprintf(path, sizeof path, "%s/u%zu.bin", uniq, i);
                        if ((r = read_file(path, u, len)) < 0)
                                return fail("read", path, r);
                }
                snprintf(name, sizeof name, "d%zu", i);
                uint64_t t0 = now_ns();
                if ((r = st_volume_clone(s, src, name)) < 0)
                        return fail("clone", name, r);
                st_volume *v;
                if ((r = st_volume_open(s, name, 0, &v, NULL)) < 0)
                        return fail("open", name, r);
                uint64_t t1 = now_ns();
                if ((r = st_volume_write(v, shared, len, SHARED_OFF, 0)) < 0)
                        return fail("write", name, r);
                uint64_t uoff = UNIQUE_BASE + (i % UNIQUE_SLOTS) * UNIQUE_STEP;
                if ((r = st_volume_write(v, u, len, uoff, 0)) < 0)
                        return fail("write", name, r);
                uint64_t t2 = now_ns();
                st_commit_result cr;
                if ((r = st_volume_commit(v, &cr)) < 0)
                        return fail("commit", name, r);
                st_volume_close(v);
                uint64_t t3 = now_ns();
                t_clone[i] = t1 - t0;
                t_write[i] = t2 - t1;
                t_commit[i] = t3 - t2;
                sum.blocks += cr.blocks;
                sum.new_chunks += cr.new_chunks;
                sum.new_bytes += cr.new_bytes;
                sum.new_stored += cr.new_stored;
                sum.flattened |= cr.flattened;
                if ((i + 1) % 100 == 0 || i + 1 == n)
                        fprintf(stderr, "density: %zu/%zu clones, %.1f s, last commit %.1f ms\n",
                                i + 1, n, (double)(now_ns() - t_start) / 1e9,
                                (double)t_commit[i] / 1e6);
        }
        double secs = (double)(now_ns() - t_start) / 1e9;
        size_t tenth = n >= 10 ? n / 10 : 1;
        double c_first = mean_u64(t_commit, tenth), c_last = mean_u64(t_commit + n - tenth, tenth);
        st_store_stats ss;
        if ((r = st_store_stats_get(s, &ss)) < 0)
                return fail("stats", NULL, r);
        printf("bench-volume-density: n=%zu bytes_per_write=%zu seconds=%.2f per_clone_ms=%.2f "
               "clone_open_median_ms=%.3f write_median_ms=%.3f commit_median_ms=%.2f "
               "commit_first10pct_mean_ms=%.2f commit_last10pct_mean_ms=%.2f "
               "blocks=%" PRIu64 " new_chunks=%" PRIu64 " new_bytes=%" PRIu64
               " new_stored=%" PRIu64 " chunks=%" PRIu64 " pack_bytes=%" PRIu64
               " index_ram_bytes=%" PRIu64 "\n",
               n, len, secs, secs * 1e3 / (double)n, med_u64(t_clone, n) / 1e6,
               med_u64(t_write, n) / 1e6, med_u64(t_commit, n) / 1e6, c_first / 1e6,
               c_last / 1e6, sum.blocks, sum.new_chunks, sum.new_bytes, sum.new_stored,
               ss.n_chunks, ss.pack_bytes, ss.index_ram_bytes);
        st_store_close(s);
        free(shared);
        free(u);
        free(t_clone);
        free(t_write);
        free(t_commit);
        return 0;
}

/* ---- io ---- */

static uint64_t stride_of(uint64_t nblocks) {
        return (nblocks * 6180339887ull / 10000000000ull) | 1;
}

typedef struct io_job {
        st_volume *v;
        uint64_t base, nblocks, stride;
        size_t first, n, step; /* requests first, first + step, ... below n */
        bool check;            /* delta reads: verify the stamp */
        uint64_t errors;
        int r;
} io_job;

static void *read_job(void *arg) {
        io_job *j = arg;
        uint8_t buf[BLK];
        for (size_t k = j->first; k < j->n; k += j->step) {
                uint64_t b = (k * j->stride) % j->nblocks;
                int r = st_volume_read(j->v, buf, BLK, j->base + b * BLK);
                if (r < 0) {
                        j->r = r;
                        return NULL;
                }
                if (j->check) {
                        uint64_t want = STAMP ^ b, got;
                        memcpy(&got, buf, 8);
                        if (got != want)
                                j->errors++;
                }
        }
        return NULL;
}

/* Seconds for n reads with 'threads' threads. */
static double read_phase(st_volume *v, uint64_t base, uint64_t nblocks, size_t n, int threads,
                         bool check, uint64_t *errors) {
        io_job jobs[8];
        pthread_t th[8];
        for (int t = 0; t < threads; t++)
                jobs[t] = (io_job){ .v = v, .base = base, .nblocks = nblocks,
                                    .stride = stride_of(nblocks), .first = (size_t)t, .n = n,
                                    .step = (size_t)threads, .check = check };
        uint64_t t0 = now_ns();
        for (int t = 0; t < threads; t++)
                if (pthread_create(&th[t], NULL, read_job, &jobs[t]) != 0) {
                        fprintf(stderr, "bench-volume: pthread_create failed\n");
                        exit(1);
                }
        for (int t = 0; t < threads; t++)
                pthread_join(th[t], NULL);
        double secs = (double)(now_ns() - t0) / 1e9;
        for (int t = 0; t < threads; t++) {
                if (jobs[t].r < 0) {
                        fail("read", NULL, jobs[t].r);
                        exit(1);
                }
                *errors += jobs[t].errors;
        }
        return secs;
}

/* Seconds for n writes; flush_every 0 = FUA on every write. */
static double write_phase(st_volume *v, uint64_t base, uint64_t nblocks, size_t n,
                          unsigned flush_every) {
        uint8_t buf[BLK];
        gen_fill(STAMP, buf, BLK);
        uint64_t stride = stride_of(nblocks);
        uint64_t t0 = now_ns();
        for (size_t k = 0; k < n; k++) {
                uint64_t b = (k * stride) % nblocks, stamp = STAMP ^ b;
                memcpy(buf, &stamp, 8);
                int r = st_volume_write(v, buf, BLK, base + b * BLK, flush_every ? 0 : ST_WRITE_FUA);
                if (r == 0 && flush_every && ((k + 1) % flush_every == 0 || k + 1 == n))
                        r = st_volume_flush(v);
                if (r < 0) {
                        fail("write", NULL, r);
                        exit(1);
                }
        }
        return (double)(now_ns() - t0) / 1e9;
}

static void print_rate(const char *key, size_t n, double secs) {
        double iops = (double)n / secs;
        printf(" %s_iops=%.0f %s_mb_s=%.2f", key, iops, key, iops * BLK / 1e6);
        fprintf(stderr, "%-5s %8zu x 4 KiB in %.3f s: %9.0f IOPS, %8.2f MB/s\n", key, n, secs, iops,
                iops * BLK / 1e6);
}

static int do_io(int argc, char **argv) {
        if (argc != 11)
                return fail("usage:", "io STORE SRC NW NF NRB W_OFF W_LEN B_OFF B_LEN", -EINVAL);
        const char *src = argv[3];
        size_t nw = (size_t)parse_size(argv[4]), nf = (size_t)parse_size(argv[5]);
        size_t nrb = (size_t)parse_size(argv[6]);
        uint64_t woff = parse_size(argv[7]), wlen = parse_size(argv[8]);
        uint64_t boff = parse_size(argv[9]), blen = parse_size(argv[10]);
        uint64_t wblocks = wlen / BLK, bblocks = blen / BLK;
        if (nw == 0 || nf == 0 || nrb == 0 || nw > wblocks || nf > wblocks || nrb > bblocks ||
            woff % BLK || boff % BLK || wlen % BLK || blen % BLK)
                return fail("bad", "arguments (need NW, NF <= W_LEN/4K, NRB <= B_LEN/4K)", -EINVAL);
        st_store *s = open_store(argv[2]);
        char wname[64], fname[64];
        snprintf(wname, sizeof wname, "io-w-%d", (int)getpid());
        snprintf(fname, sizeof fname, "io-f-%d", (int)getpid());
        int r;
        if ((r = st_volume_clone(s, src, wname)) < 0 || (r = st_volume_clone(s, src, fname)) < 0)
                return fail("clone", src, r);
        st_volume *w, *f;
        if ((r = st_volume_open(s, wname, 0, &w, NULL)) < 0 ||
            (r = st_volume_open(s, fname, 0, &f, NULL)) < 0)
                return fail("open", wname, r);
        if (woff + wlen > st_volume_size(w) || boff + blen > st_volume_size(w))
                return fail("range past the end of", src, -EINVAL);
        printf("bench-volume-io: nw=%zu nf=%zu nrb=%zu w_off=%" PRIu64 " w_len=%" PRIu64
               " b_off=%" PRIu64 " b_len=%" PRIu64 " w_stride=%" PRIu64 " b_stride=%" PRIu64,
               nw, nf, nrb, woff, wlen, boff, blen, stride_of(wblocks), stride_of(bblocks));
        uint64_t errors = 0;
        print_rate("w64", nw, write_phase(w, woff, wblocks, nw, 64));
        print_rate("wfua", nf, write_phase(f, woff, wblocks, nf, 0));
        print_rate("rd1", nw, read_phase(w, woff, wblocks, nw, 1, true, &errors));
        print_rate("rd2", nw, read_phase(w, woff, wblocks, nw, 2, true, &errors));
        print_rate("rb1", nrb, read_phase(w, boff, bblocks, nrb, 1, false, &errors));
        print_rate("rb2", nrb, read_phase(w, boff, bblocks, nrb, 2, false, &errors));
        printf(" errors=%" PRIu64 "\n", errors);
        fflush(stdout);
        st_volume_close(w);
        st_volume_close(f);
        (void)st_store_remove(s, wname, NULL);
        (void)st_store_remove(s, fname, NULL);
        st_store_close(s);
        return errors ? 1 : 0;
}

/* ---- gen ---- */

static int do_gen(int argc, char **argv) {
        if (argc != 5)
                return fail("usage:", "gen SEED LEN OUT", -EINVAL);
        size_t len = (size_t)parse_size(argv[3]);
        uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return fail("out of memory", NULL, -ENOMEM);
        gen_fill(gen_seed(argv[2]), buf, len);
        FILE *o = fopen(argv[4], "we");
        if (!o || fwrite(buf, 1, len, o) != len || fclose(o) != 0)
                return fail("write", argv[4], -EIO);
        free(buf);
        return 0;
}

int main(int argc, char **argv) {
        const char *mode = argc > 1 ? argv[1] : "";
        if (strcmp(mode, "clone") == 0)
                return do_clone(argc, argv);
        if (strcmp(mode, "density") == 0)
                return do_density(argc, argv);
        if (strcmp(mode, "io") == 0)
                return do_io(argc, argv);
        if (strcmp(mode, "gen") == 0)
                return do_gen(argc, argv);
        fprintf(stderr, "usage: bench-volume clone|density|io|gen ... (see the source)\n");
        return 2;
}
