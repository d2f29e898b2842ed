/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the seed corpus, fuzz/corpus/<target>/, with the library's own
 * encoders: valid files, then truncated, field-damaged (checksums redone, so
 * the damage reaches the field checks) and bit-flipped variants. Deterministic:
 * fixed data, and a fixed PRNG seed per target, so regenerating one target
 * leaves the others' seeds as they are.
 * Usage: gen-corpus CORPUS_DIR [TARGET...]   (default: all targets)
 * Not a test and not run by the build; rerun it when a format changes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <stellar/chunker.h>
#include <stellar/hash.h>
#include <stellar/store.h>

#include "fuzz.h"
#include "store/ref.h"
#include "store/store-internal.h"
#include "util/fs.h"
#include "util/le.h"
#include "volume/delta.h"
#include "nbd/proto.h"

static const char *root;
static uint64_t rng;

static uint32_t rnd(void) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t)(rng >> 33);
}

/* Each target draws from its own stream. pack and index keep the streams they
 * had when one stream ran through pack, manifest (v1) and index in turn, so
 * their seeds stay byte-identical. */
static void rnd_seed(uint64_t seed, unsigned skip) {
        rng = seed;
        while (skip--)
                (void)rnd();
}

static void put(const char *target, const char *name, const uint8_t *p, size_t len) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", root, target);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
                perror(path);
                exit(1);
        }
        snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
                perror(path);
                exit(1);
        }
}

/* Write buf, then n_flips copies with one random bit flipped each. */
static void put_flips(const char *target, const char *name, const uint8_t *p, size_t len,
                      int n_flips) {
        uint8_t *c = malloc(len);
        if (!c)
                exit(1);
        for (int i = 0; i < n_flips; i++) {
                memcpy(c, p, len);
                size_t bit = rnd() % (len * 8);
                c[bit / 8] ^= (uint8_t)(1u << (bit % 8));
                char nm[128];
                snprintf(nm, sizeof nm, "%s-flip%zu", name, bit);
                put(target, nm, c, len);
        }
        free(c);
}

static void reseal(uint8_t *p, size_t covered, size_t check_len) {
        st_digest d;
        st_hash(p, covered, &d);
        memcpy(p + covered, d.b, check_len);
}

/* A record (header + payload) for data; zstd-compressed if asked. */
static size_t make_record(uint8_t *out, const uint8_t *data, uint32_t len, bool zstd) {
        pack_record r = { .raw_len = len, .stored_len = len };
        st_hash(data, len, &r.hash);
        if (zstd) {
                size_t n = ZSTD_compress(out + PACK_RECORD_HEADER_LEN, ZSTD_compressBound(len),
                                         data, len, 3);
                if (ZSTD_isError(n))
                        exit(1);
                r.flags = PACK_FLAG_ZSTD;
                r.stored_len = (uint32_t)n;
        } else
                memcpy(out + PACK_RECORD_HEADER_LEN, data, len);
        pack_record_encode(out, &r);
        return PACK_RECORD_HEADER_LEN + r.stored_len;
}

/* A frame record (header + payload) of the n chunks of lens[] bytes at data,
 * end to end; hashed as data, or as hashed_as when that is not NULL (then a
 * chunk's bytes need not match its slot). */
static size_t make_frame(uint8_t *out, const uint8_t *data, const uint8_t *hashed_as,
                         const uint32_t *lens, uint32_t n) {
        pack_frame_src src[8];
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        size_t at = 0;
        if (!cctx || n > 8)
                exit(1);
        for (uint32_t k = 0; k < n; k++) {
                src[k] = (pack_frame_src){ .data = data + at, .len = lens[k] };
                st_hash((hashed_as ? hashed_as : data) + at, lens[k], &src[k].hash);
                at += lens[k];
        }
        pack_record r;
        int64_t len = pack_frame_build(cctx, 3, src, n, NULL, out + PACK_RECORD_HEADER_LEN, &r);
        ZSTD_freeCCtx(cctx);
        if (len <= 0)
                exit(1);
        pack_record_encode(out, &r);
        return PACK_RECORD_HEADER_LEN + (size_t)len;
}

/* Frame records: valid, with a chunk whose bytes its slot does not name, a
 * slot's length or the count wrong (table hash and header check redone),
 * FRAME without ZSTD; and a pack that mixes frames and single records. Kept
 * apart from gen_pack's first part, whose seeds (and random stream) they
 * leave as they were. */
static void gen_pack_frames(const uint8_t *rand_data, const uint8_t *text) {
        static uint8_t buf[32768], bad[32768], other[8192];
        static const uint32_t lens[4] = { 1500, 2500, 1000, 3000 };

        size_t n = make_frame(buf, text, NULL, lens, 4);
        put("pack", "rec-frame", buf, n);
        put_flips("pack", "rec-frame", buf, n, 2);
        uint8_t *table = bad + PACK_RECORD_HEADER_LEN;
        st_digest h;

        memcpy(bad, buf, n);
        st_le32_put(table + pack_frame_table_len(1) + 32, lens[1] + 1); /* sum one too many */
        st_hash(table, pack_frame_table_len(4), &h);
        memcpy(bad + 16, h.b, 32);
        reseal(bad, 48, 8);
        put("pack", "rec-frame-bad-sum", bad, n);

        memcpy(bad, buf, n);
        st_le32_put(table, PACK_FRAME_MAX_CHUNKS + 1);
        reseal(bad, 48, 8);
        put("pack", "rec-frame-bad-count", bad, n);

        memcpy(bad, buf, n);
        st_le32_put(bad + 4, PACK_FLAG_FRAME);
        reseal(bad, 48, 8);
        put("pack", "rec-frame-flag-alone", bad, n);

        memcpy(other, text, sizeof other);
        other[lens[0] + 10] ^= 0x40; /* inflates cleanly, chunk 1 does not match */
        n = make_frame(bad, other, text, lens, 4);
        put("pack", "rec-frame-bad-chunk", bad, n);

        /* A pack: header, raw, frame, zstd, frame (of 2), raw records. */
        static const uint32_t lens2[2] = { 2000, 2096 };
        pack_header_encode(buf, 8);
        size_t at = PACK_HEADER_LEN;
        at += make_record(buf + at, rand_data, 200, false);
        at += make_frame(buf + at, text, NULL, lens, 4);
        at += make_record(buf + at, text + 4096, 4096, true);
        at += make_frame(buf + at, text + 4096, NULL, lens2, 2);
        at += make_record(buf + at, rand_data + 200, 300, false);
        put("pack", "pack-mixed", buf, at);
}

static void gen_pack(void) {
        static uint8_t rand_data[1024], text[8192], buf[32768];
        rnd_seed(0x5eed5eed5eedULL, 0);
        for (size_t i = 0; i < sizeof rand_data; i++)
                rand_data[i] = (uint8_t)rnd();
        for (size_t i = 0; i < sizeof text; i++)
                text[i] = (uint8_t)"stellarium chunk store "[i % 23] ^ (uint8_t)(i / 997);

        size_t n = make_record(buf, rand_data, sizeof rand_data, false);
        put("pack", "rec-raw", buf, n);
        put("pack", "rec-trunc-header", buf, 40);
        put("pack", "rec-trunc-payload", buf, n - 100);
        buf[PACK_RECORD_HEADER_LEN + 7] ^= 1;
        put("pack", "rec-raw-hash-mismatch", buf, n);

        n = make_record(buf, text, sizeof text, true);
        put("pack", "rec-zstd", buf, n);
        put_flips("pack", "rec-zstd", buf, n, 3);
        uint8_t bad[PACK_RECORD_HEADER_LEN + 8192];
        memcpy(bad, buf, n);
        st_le32_put(bad + 8, sizeof text + 1); /* raw_len longer than the frame */
        reseal(bad, 48, 8);
        put("pack", "rec-zstd-rawlen-long", bad, n);
        st_le32_put(bad + 8, sizeof text - 1); /* shorter: output does not fit */
        reseal(bad, 48, 8);
        put("pack", "rec-zstd-rawlen-short", bad, n);
        memcpy(bad, buf, n);
        st_le32_put(bad + 4, 0); /* zstd bytes claimed raw */
        reseal(bad, 48, 8);
        put("pack", "rec-flags-clear", bad, n);
        st_le32_put(bad + 4, 2);
        reseal(bad, 48, 8);
        put("pack", "rec-flags-unknown", bad, n);

        /* A pack: header, raw, zstd, raw records. */
        uint8_t *pk = buf;
        pack_header_encode(pk, 7);
        size_t at = PACK_HEADER_LEN;
        at += make_record(pk + at, rand_data, 300, false);
        at += make_record(pk + at, text, 4096, true);
        at += make_record(pk + at, rand_data + 300, 500, false);
        put("pack", "pack-3rec", pk, at);
        put("pack", "pack-torn", pk, at - 200);
        put("pack", "pack-torn-header", pk, at - 500 - 30);
        put("pack", "pack-header-only", pk, PACK_HEADER_LEN);
        put("pack", "pack-header-trunc", pk, 20);
        put_flips("pack", "pack-3rec", pk, at, 6);
        st_le32_put(pk + 8, 2);
        put("pack", "pack-bad-version", pk, at);
        st_le32_put(pk + 8, PACK_VERSION);
        st_le32_put(pk + 12, 64);
        put("pack", "pack-bad-header-len", pk, at);
        st_le32_put(pk + 12, PACK_HEADER_LEN);
        memset(pk + at, 0xee, 70);
        put("pack", "pack-garbage-tail", pk, at + 70);

        gen_pack_frames(rand_data, text);
}

static manifest *manifest_sample(size_t n_ext, const st_chunker_params *cp) {
        manifest *m = manifest_new(64ull << 20, cp, NULL);
        if (!m)
                exit(1);
        m->ctime_ns = 1700000000123456789ull;
        uint64_t off = 0;
        for (size_t i = 0; i < n_ext; i++) {
                st_digest h;
                uint32_t len = cp->min_size * (1 + (uint32_t)(i % 3));
                st_hash(&i, sizeof i, &h);
                if (manifest_append(m, off, len, &h) < 0)
                        exit(1);
                off += len + (i % 2 ? 12288u : 0); /* holes */
        }
        return m;
}

static void put_manifest(const char *name, const manifest *m, uint8_t **ret, size_t *ret_len) {
        uint8_t *p;
        size_t len;
        if (manifest_encode(m, &p, &len) < 0)
                exit(1);
        put("manifest", name, p, len);
        if (ret) {
                *ret = p;
                *ret_len = len;
        } else
                free(p);
}

/* Overwrite n bytes at 'at' with v (little-endian, n <= 8), redo the checksum. */
typedef struct damage {
        const char *name;
        size_t at;
        uint64_t v;
        unsigned n;
} damage;

static void put_damaged(const char *target, const uint8_t *p, size_t len, size_t covered,
                        size_t check_len, const damage *dmg, size_t n_dmg) {
        uint8_t *c = malloc(len);
        if (!c)
                exit(1);
        for (size_t i = 0; i < n_dmg; i++) {
                memcpy(c, p, len);
                for (unsigned k = 0; k < dmg[i].n; k++)
                        c[dmg[i].at + k] = (uint8_t)(dmg[i].v >> (8 * k));
                reseal(c, covered, check_len);
                put(target, dmg[i].name, c, len);
        }
        free(c);
}

static void gen_manifest(void) {
        uint8_t *p;
        size_t len;
        st_chunker_params img = ST_CHUNKER_IMAGE_DEFAULT, str = ST_CHUNKER_STREAM_DEFAULT;

        rnd_seed(0x6d616e6966657374ULL, 0);
        manifest *m = manifest_sample(0, &img);
        m->size = 0;
        put_manifest("empty", m, NULL, NULL);
        manifest_free(m);

        m = manifest_sample(3, &str);
        put_manifest("stream-3ext", m, NULL, NULL);
        manifest_free(m);

        /* A layer: data extents, hole extents (zeros over the parent, one longer
         * than a chunk so it splits) and gaps that show the parent. */
        st_digest parent;
        st_hash("parent manifest", 15, &parent);
        m = manifest_new(64ull << 20, &img, &parent);
        if (!m)
                exit(1);
        m->ctime_ns = 1700000000987654321ull;
        for (uint64_t i = 0; i < 4; i++) {
                st_digest h;
                st_hash(&i, sizeof i, &h);
                if (manifest_append(m, i * (1u << 20), 8192, &h) < 0 ||
                    manifest_append_hole(m, i * (1u << 20) + 8192, 4096 * (i + 1)) < 0)
                        exit(1);
        }
        if (manifest_append_hole(m, 8ull << 20, (20ull << 20) + 4096) < 0)
                exit(1);
        put_manifest("layer-holes", m, &p, &len);
        manifest_free(m);
        put_flips("manifest", "layer-holes", p, len, 4);
        size_t body = len - MANIFEST_TRAILER_LEN;
        const damage ldmg[] = {
                { "layer-parent-cleared", 64, 0, 32 }, /* hole extents need a parent */
        };
        put_damaged("manifest", p, len, body, MANIFEST_TRAILER_LEN, ldmg, 1);
        free(p);

        m = manifest_sample(12, &img);
        put_manifest("image-12ext", m, &p, &len);
        manifest_free(m);
        put("manifest", "trunc-header", p, 40);
        put("manifest", "trunc-extent", p, len - 50);
        put_flips("manifest", "image-12ext", p, len, 4);
        body = len - MANIFEST_TRAILER_LEN;
        const size_t e = MANIFEST_HEADER_LEN, el = MANIFEST_EXTENT_LEN;
        const damage dmg[] = {
                { "bad-version", 8, 1, 4 },   /* version 1: no parent field */
                { "bad-header-len", 12, 64, 4 },
                { "bad-flags", 16, 1, 4 },    /* was crash-reserved-bytes (v1) */
                { "bad-flags-hi", 23, 0x80, 1 },
                { "size-too-big", 24, (1ull << 50) + 1, 8 },
                { "bad-count", 32, 13, 8 },
                { "bad-align", 40, 512, 4 },
                { "bad-avg", 48, 12288, 4 },
                { "ext0-zero-len", e + 8, 0, 4 },
                { "ext0-len-huge", e + 8, (16u << 20) + 1, 4 },
                { "ext1-overlap", e + el, 100, 4 },
                { "ext11-past-end", e + 11 * el + 4, 1, 4 },
        };
        put_damaged("manifest", p, len, body, MANIFEST_TRAILER_LEN, dmg,
                    sizeof dmg / sizeof dmg[0]);
        /* An all-zero hash (a hole extent) in a manifest without a parent. */
        uint8_t *c = malloc(len);
        if (!c)
                exit(1);
        memcpy(c, p, len);
        memset(c + e + 3 * el + 12, 0, 32);
        reseal(c, body, MANIFEST_TRAILER_LEN);
        put("manifest", "hole-no-parent", c, len);
        free(c);
        free(p);
}

/* An index of format 2 (p, len) rewritten in format 1: 36-byte entries
 * without the slot, the trailer redone. Into a new buffer, its length in *ret_len. */
static uint8_t *index_to_v1(const uint8_t *p, size_t len, size_t n_packs, size_t n,
                            size_t *ret_len) {
        size_t at = INDEX_FILE_HEADER_LEN + n_packs * INDEX_FILE_PACK_LEN;
        size_t v1_len = len - n * (INDEX_FILE_ENTRY_LEN - INDEX_FILE_ENTRY_LEN_V1);
        uint8_t *c = malloc(v1_len);
        if (!c)
                exit(1);
        memcpy(c, p, at);
        st_le32_put(c + 8, 1);
        for (size_t i = 0; i < n; i++)
                memcpy(c + at + i * INDEX_FILE_ENTRY_LEN_V1, p + at + i * INDEX_FILE_ENTRY_LEN,
                       INDEX_FILE_ENTRY_LEN_V1);
        reseal(c, v1_len - INDEX_FILE_TRAILER_LEN, INDEX_FILE_TRAILER_LEN);
        *ret_len = v1_len;
        return c;
}

static void gen_index(void) {
        st_store s = { .next_pack_id = 5 };
        store_pack packs[2] = { { .id = 1, .len = 1u << 20 }, { .id = 3, .len = 70000 } };
        uint8_t *p;
        size_t len;

        rnd_seed(0x5eed5eed5eedULL, 1024 + 3 + 6 + 6);

        s.idx = index_new();
        if (!s.idx)
                exit(1);
        index_file_encode(&s, &p, &len);
        put("index", "empty", p, len);
        free(p);

        s.packs = packs;
        s.n_packs = 2;
        /* Four single records, then two chunks in slots 0 and 1 of one frame. */
        for (uint32_t i = 0; i < 6; i++) {
                st_digest h;
                st_hash(&i, sizeof i, &h);
                index_entry e = { .pack = packs[i % 2].id, .off = 32 + i * 9000,
                                  .stored_len = 4000 + i, .raw_len = 16384, .refs = i };
                if (i >= 4)
                        e = (index_entry){ .pack = packs[0].id, .off = 32 + 4 * 9000,
                                           .stored_len = 9000, .raw_len = 8192 * (i - 3),
                                           .refs = 1, .slot = i - 3 };
                if (index_add(s.idx, &h, &e) == INDEX_NONE)
                        exit(1);
        }
        index_file_encode(&s, &p, &len);
        put("index", "2packs-6entries", p, len);
        put("index", "trunc-header", p, 50);
        put("index", "trunc-entries", p, len - 40);
        put_flips("index", "2packs-6entries", p, len, 6);
        size_t body = len - INDEX_FILE_TRAILER_LEN, e0 = 64 + 2 * 16;
        struct {
                const char *name;
                size_t at;
                uint32_t v;
        } dmg[] = {
                { "bad-version", 8, 9 },           { "bad-header-len", 12, 65 },
                { "bad-n-packs", 16, 3 },          { "next-id-low", 20, 3 },
                { "packs-unsorted", 64 + 16, 1 },  { "pack-len-short", 64 + 8, 31 },
                { "entry-no-pack", e0 + 16, 2 },   { "entry-off-low", e0 + 20, 31 },
                { "entry-past-pack", e0 + 24, 1u << 20 }, { "entry-raw-zero", e0 + 28, 0 },
                { "entry-raw-huge", e0 + 28, (16u << 20) + 1 },
                { "entry-slot-max", e0 + 36, PACK_FRAME_MAX_CHUNKS },
                { "entry-slot-huge", e0 + 36, PACK_FRAME_MAX_CHUNKS + 1 },
        };
        for (size_t i = 0; i < sizeof dmg / sizeof dmg[0]; i++) {
                uint8_t *c = malloc(len);
                memcpy(c, p, len);
                st_le32_put(c + dmg[i].at, dmg[i].v);
                reseal(c, body, INDEX_FILE_TRAILER_LEN);
                put("index", dmg[i].name, c, len);
                free(c);
        }
        uint8_t *c = malloc(len);
        memcpy(c, p, len);
        memcpy(c + e0 + INDEX_FILE_ENTRY_LEN, c + e0, 16); /* duplicate prefix */
        reseal(c, body, INDEX_FILE_TRAILER_LEN);
        put("index", "entry-duplicate", c, len);
        free(c);

        /* Format 1 (still read): the same index without slots, a truncated
         * one, and flips. */
        size_t v1_len;
        c = index_to_v1(p, len, 2, 6, &v1_len);
        put("index", "v1-2packs-6entries", c, v1_len);
        put("index", "v1-trunc-entries", c, v1_len - 40);
        put_flips("index", "v1-2packs-6entries", c, v1_len, 2);
        free(c);
        free(p);
        index_free(s.idx);
}

static void gen_format(void) {
        const struct {
                const char *name;
                st_store_config cfg;
        } cfgs[] = {
                { "default", ST_STORE_CONFIG_DEFAULT },
                { "stream-zstd-max", { { 1, 16384, 65536, 262144 }, 22, ST_CHUNKER_COMMIT_DEFAULT, 0 } },
                { "defer-cold9",
                  { ST_CHUNKER_IMAGE_DEFAULT, ST_ZSTD_DEFER, ST_CHUNKER_COMMIT_DEFAULT, 9 } },
                { "image-zstd-neg7",
                  { { 4096, 4096, 4096, 16u << 20 }, -7, { 4096, 4096, 32768, 131072 }, 6 } },
        };
        uint8_t fmt[STORE_FORMAT_LEN];

        rnd_seed(0x666f726d6174ULL, 0);
        for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
                char dir[] = "/tmp/gen-corpus-XXXXXX", path[64];
                if (!mkdtemp(dir) || st_store_init(dir, &cfgs[i].cfg) < 0)
                        exit(1);
                snprintf(path, sizeof path, "%s/format", dir);
                int fd = open(path, O_RDONLY);
                if (fd < 0 || read(fd, fmt, sizeof fmt) != (ssize_t)sizeof fmt)
                        exit(1);
                close(fd);
                put("format", cfgs[i].name, fmt, sizeof fmt);
                char cmd[128];
                snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
                if (system(cmd) != 0)
                        exit(1);
        }
        /* fmt now holds the last config. */
        put("format", "trunc", fmt, 60);
        uint8_t big[STORE_FORMAT_LEN + 1] = { 0 };
        memcpy(big, fmt, sizeof fmt);
        put("format", "too-long", big, sizeof big);
        put_flips("format", "image-zstd-neg7", fmt, sizeof fmt, 4);
        struct {
                const char *name;
                size_t at;
                uint32_t v;
        } dmg[] = {
                { "bad-version", 8, 1 },  { "bad-align", 16, 8192 },  { "bad-min", 20, 63 },
                { "bad-avg", 24, 5000 },  { "bad-max", 28, (16u << 20) + 4096 },
                { "zstd-23", 32, 23 },    { "zstd-neg8", 32, (uint32_t)-8 },
                { "reserved", 40, 1 },    { "cold-23", 52, 23 },  { "cold-neg1", 52, (uint32_t)-1 },
                { "defer-cold0", 32, (uint32_t)ST_ZSTD_DEFER }, { "v2-cold", 8, 2 },
        };
        for (size_t i = 0; i < sizeof dmg / sizeof dmg[0]; i++) {
                uint8_t c[STORE_FORMAT_LEN];
                memcpy(c, fmt, sizeof c);
                st_le32_put(c + dmg[i].at, dmg[i].v);
                reseal(c, 56, 8);
                put("format", dmg[i].name, c, sizeof c);
        }
}

static void gen_ref(void) {
        uint8_t buf[REF_FIXED_LEN + REF_NAME_MAX];
        size_t n;

        rnd_seed(0x7265667320202020ULL, 0);
        store_ref img = { .kind = ST_KIND_IMAGE, .size = 10ull << 30,
                          .ctime_ns = 1700000000123456789ull };
        st_hash("a manifest", 10, &img.manifest);
        n = ref_encode(&img, buf);
        put("ref", "image", buf, n);

        /* An empty volume (no manifest) of the largest size, made from an image. */
        store_ref vol = { .kind = ST_KIND_VOLUME, .size = 1ull << 50,
                          .ctime_ns = 1700000000555555555ull };
        snprintf(vol.parent, sizeof vol.parent, "%s", "debian-12.5+cloud@x86_64:base_v1");
        n = ref_encode(&vol, buf);
        put("ref", "volume-empty", buf, n);

        store_ref snap = { .kind = ST_KIND_SNAPSHOT, .size = 1u << 30, .ctime_ns = 1 };
        st_hash("another manifest", 16, &snap.manifest);
        for (size_t i = 0; i < REF_NAME_MAX; i++)
                snap.parent[i] = "abcdefghijklmnopqrstuvwxyz0123456789._+@:-"[i % 42];
        snap.parent[REF_NAME_MAX] = 0;
        n = ref_encode(&snap, buf);
        put("ref", "snapshot-long-parent", buf, n);
        put("ref", "trunc-fixed", buf, 100);
        put("ref", "trunc-name", buf, n - 11);
        put_flips("ref", "snapshot-long-parent", buf, n, 6);
        const damage dmg[] = {
                { "bad-version", 8, 2, 4 },       { "bad-header-len", 12, 104, 4 },
                { "kind-0", 16, 0, 4 },           { "kind-4", 16, 4, 4 },
                { "name-len-long", 20, 201, 4 },  { "name-len-short", 20, 199, 4 },
                { "size-too-big", 24, (1ull << 50) + 1, 8 },
                { "reserved", 80, 1, 1 },         { "parent-slash", 104 + 5, '/', 1 },
                { "parent-dot", 104, '.', 1 },    { "parent-nul", 104 + 7, 0, 1 },
        };
        put_damaged("ref", buf, n, n - 8, 8, dmg, sizeof dmg / sizeof dmg[0]);
}

/* A delta seed: the 2-byte prefix fuzz-delta reads (data file size / 256, or
 * 0xffff: no data file), then the journal (none if len is 0). */
static void put_delta(const char *name, const uint8_t *map, size_t len, uint16_t units) {
        uint8_t *c = malloc(len + 2);
        if (!c)
                exit(1);
        c[0] = (uint8_t)units;
        c[1] = (uint8_t)(units >> 8);
        if (len)
                memcpy(c + 2, map, len);
        put("delta", name, c, len + 2);
        free(c);
}

/* Close d, and read back journal NAME.map and the data file's size in 256-byte units. */
static void delta_take_name(delta *d, int dfd, const char *name, uint8_t **map, size_t *len,
                            uint16_t *units) {
        char mn[64], dn[64];
        snprintf(mn, sizeof mn, "%s.map", name);
        snprintf(dn, sizeof dn, "%s.data", name);
        delta_close(d);
        struct stat st;
        if (st_read_file(dfd, mn, 1u << 20, map, len) < 0 || fstatat(dfd, dn, &st, 0) < 0 ||
            st.st_size / 256 >= 0xffff)
                exit(1);
        *units = (uint16_t)(st.st_size / 256);
}

static void delta_take(delta *d, int dfd, uint8_t **map, size_t *len, uint16_t *units) {
        delta_take_name(d, dfd, "v", map, len, units);
}

/* Content for blocks from 'block': a pattern per block (version 1 does not
 * check data), or zeros, which is what fuzz-delta's data file holds: a
 * version 2 seed's data sums then match it. */
static void block_of(uint8_t *buf, size_t n, uint64_t block, bool zeros) {
        for (size_t i = 0; i < n; i++) {
                memset(buf + i * DELTA_BLOCK, zeros ? 0 : (int)(block + i) | 1, DELTA_BLOCK);
                if (!zeros)
                        st_le64_put(buf + i * DELTA_BLOCK, block + i);
        }
}

#define OK(x)                                                                                      \
        do {                                                                                       \
                if ((x) < 0)                                                                       \
                        exit(1);                                                                   \
        } while (0)

/* Open v in dfd afresh: version 2 (the library creates it on the first write),
 * or version 1, whose header is written here (the library still appends
 * version 1 records to a version 1 journal, without commit records). */
static void delta_start(int dfd, delta *d, uint32_t version) {
        (void)unlinkat(dfd, "v.map", 0);
        (void)unlinkat(dfd, "v.data", 0);
        if (version == 1) {
                uint8_t hdr[32] = { 0 };
                memcpy(hdr, "STDELTA\0", 8);
                st_le32_put(hdr + 8, 1);
                st_le32_put(hdr + 12, 32);
                st_le64_put(hdr + 16, FUZZ_DELTA_TAG);
                int fd = openat(dfd, "v.data", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd < 0)
                        exit(1);
                close(fd);
                OK(st_write_atomic(dfd, "v.map", hdr, sizeof hdr));
        }
        OK(delta_open(dfd, "v", FUZZ_DELTA_TAG, 1u << 20, false, d, NULL));
        if (version == 1 && d->version != 1)
                exit(1);
}

/* Runs, rewrites of durable and of unflushed blocks, zeros, in three flushes;
 * flush_end[i]: the journal's length after flush i. */
static void delta_writes(int dfd, uint32_t version, uint8_t **map, size_t *len, uint16_t *units,
                         size_t flush_end[3]) {
        static uint8_t buf[4 * DELTA_BLOCK];
        bool z = version != 1;
        delta d;
        delta_start(dfd, &d, version);
        block_of(buf, 4, 0, z);
        OK(delta_write(&d, 0, 4, buf));
        OK(delta_flush(&d));
        flush_end[0] = (size_t)d.map_len;
        block_of(buf, 1, 2, z);
        OK(delta_write(&d, 2, 1, buf));
        OK(delta_zero(&d, 1, 1));
        block_of(buf, 1, 10, z);
        OK(delta_write(&d, 10, 1, buf));
        OK(delta_write(&d, 10, 1, buf)); /* in place (version 2: a second record) */
        OK(delta_zero(&d, 10, 1));
        block_of(buf, 1, 11, z);
        OK(delta_write(&d, 11, 1, buf));
        OK(delta_flush(&d));
        flush_end[1] = (size_t)d.map_len;
        block_of(buf, 2, 5, z);
        OK(delta_write(&d, 5, 2, buf));
        OK(delta_zero(&d, 0, 2));
        block_of(buf, 1, 3, z);
        OK(delta_write(&d, 3, 1, buf));
        OK(delta_flush(&d));
        flush_end[2] = (size_t)d.map_len;
        delta_take(&d, dfd, map, len, units);
}

/* More records than replay reads at once (256); a flush every 10 writes. */
static void delta_many(int dfd, uint32_t version, uint8_t **map, size_t *len, uint16_t *units) {
        static uint8_t buf[DELTA_BLOCK];
        delta d;
        delta_start(dfd, &d, version);
        for (uint64_t i = 0; i < 300; i++) {
                uint64_t b = (i * 7) % 40;
                if (i % 9 == 4)
                        OK(delta_zero(&d, b, 1));
                else {
                        block_of(buf, 1, b, version != 1);
                        OK(delta_write(&d, b, 1, buf));
                }
                if (i % 10 == 9)
                        OK(delta_flush(&d));
        }
        delta_take(&d, dfd, map, len, units);
}

/* A copy of map with byte off flipped. */
static void put_delta_flipped(const char *name, const uint8_t *map, size_t len, uint16_t units,
                              size_t off) {
        uint8_t *c = malloc(len);
        if (!c)
                exit(1);
        memcpy(c, map, len);
        c[off] ^= 0xff;
        put_delta(name, c, len, units);
        free(c);
}

/* A copy of map[0..len) with the bytes from 'from' on zeroed: sectors of an
 * unfinished append that did not land. */
static void put_delta_zeroed(const char *name, const uint8_t *map, size_t len, uint16_t units,
                             size_t from) {
        uint8_t *c = malloc(len);
        if (!c)
                exit(1);
        memcpy(c, map, len);
        memset(c + from, 0, len - from);
        put_delta(name, c, len, units);
        free(c);
}

/* Version 2: the end of the flush whose records hold offset 'at', and
 * whether a data record (not zeros, not a commit) holds it. */
#define V2_LEN 40u
static size_t v2_flush_end(const uint8_t *map, size_t len, size_t at, bool *ret_data) {
        size_t k = (at - V2_LEN) / V2_LEN, off = V2_LEN + k * V2_LEN;
        *ret_data = st_le64_get(map + off) != UINT64_MAX &&
                    st_le64_get(map + off + 8) != DELTA_ZERO;
        for (; off + V2_LEN <= len; off += V2_LEN)
                if (st_le64_get(map + off) == UINT64_MAX)
                        return off + V2_LEN;
        return 0;
}

static void gen_delta(void) {
        char dir[] = "/tmp/gen-corpus-XXXXXX";
        delta d;
        uint8_t *map;
        size_t len, flush_end[3];
        uint16_t units;
        static uint8_t buf[2 * DELTA_BLOCK];

        if (!mkdtemp(dir))
                exit(1);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                exit(1);

        /* Version 1 (32-byte header and records, no commit records, no data
         * sums), as written before version 2. */
        delta_writes(dfd, 1, &map, &len, &units, flush_end);
        size_t nrec = (len - 32) / 32;
        put_delta("writes", map, len, units);
        put_delta("writes-torn", map, len - 20, units);
        put_delta("writes-torn-header", map, 20, units);
        /* the last record zeroed (torn), or damaged (whole and not zero: damage) */
        put_delta_zeroed("writes-zero-tail", map, len, units, len - 32);
        put_delta_flipped("writes-damaged-last", map, len, units, len - 32 + 9);
        put_delta("writes-short-data", map, len, units - 2 * (DELTA_BLOCK / 256));
        put_delta("writes-no-data", map, len, 0xffff);
        uint8_t *c = malloc(len);
        if (!c)
                exit(1);
        memcpy(c, map, len);
        c[16] ^= 1; /* an earlier volume's journal */
        put_delta("foreign-tag", c, len, units);
        memcpy(c, map, len);
        st_le32_put(c + 8, 3);
        put_delta("bad-version", c, len, units);
        memcpy(c, map, len);
        uint8_t *rec = c + 32 + 4 * 32;
        st_le64_put(rec + 16, 5); /* a gap in the sequence */
        st_le64_put(rec + 24, fuzz_delta_check(rec, FUZZ_DELTA_TAG));
        put_delta("bad-seq", c, len, units);
        memcpy(c, map, len);
        rec = c + 32 + (nrec - 2) * 32;
        st_le64_put(rec + 8, units / (DELTA_BLOCK / 256)); /* the first slot past the data */
        st_le64_put(rec + 24, fuzz_delta_check(rec, FUZZ_DELTA_TAG));
        put_delta("slot-past-data", c, len, units);
        free(c);
        free(map);

        /* A version 1 header alone. */
        delta_start(dfd, &d, 1);
        delta_take(&d, dfd, &map, &len, &units);
        put_delta("empty", map, len, units);
        free(map);

        delta_many(dfd, 1, &map, &len, &units);
        put_delta("many", map, len, units);
        free(map);

        /* Version 3, as the library writes it: 40-byte header (name sum,
         * header check) and records (data sum), every flush ends with a
         * commit record naming where the flush before ended (version 2's
         * seeds in the corpus, v2-*, were written by the version 2 writer
         * and are kept as they are). Three flushes
         * of 5, 7 and 5 records: they end at 240, 520 and 720. */
        delta_writes(dfd, 2, &map, &len, &units, flush_end);
        put_delta("v3-writes", map, len, units);
        /* the last flush torn: two of its records durable, not its commit;
         * the file ending inside its third; its records from the third on
         * zero (the file's length landed, the sectors did not) */
        put_delta("v3-torn", map, flush_end[1] + 2 * V2_LEN, units);
        put_delta("v3-torn-partial", map, flush_end[1] + 2 * V2_LEN + 20, units);
        put_delta_zeroed("v3-torn-zero", map, len, units, flush_end[1] + 2 * V2_LEN);
        /* damage: a record of the first flush (block 1's value), and the
         * first flush's commit record (its check), both before whole flushes */
        put_delta_flipped("v3-damaged", map, len, units, V2_LEN + V2_LEN + 8);
        put_delta_flipped("v3-damaged-commit", map, len, units, flush_end[0] - 8);
        /* a flipped byte in the last flush, no whole flush after it: its last
         * record (the commit) or a write record: not what a torn append
         * leaves, so damage too */
        put_delta_flipped("v3-damaged-last", map, len, units, len - 8);
        put_delta_flipped("v3-damaged-last-write", map, len, units, flush_end[1] + V2_LEN + 8);
        put_delta("v3-short-data", map, len, units - 2 * (DELTA_BLOCK / 256));
        put_delta("v3-no-data", map, len, 0xffff);
        put_delta("v3-short-header", map, 36, units);
        c = malloc(len + 8192);
        if (!c)
                exit(1);
        memcpy(c, map, len);
        st_le32_put(c + 12, 32); /* version 1's header length */
        reseal(c, 32, 8);
        put_delta("v3-bad-header-len", c, len, units);
        memcpy(c, map, len);
        st_le64_put(c + flush_end[0] - V2_LEN + 8, 5); /* the first commit's count, 4 */
        put_delta("v3-commit-count", c, len, units);
        /* the journal's length grew by sectors that never landed: a bad
         * (zero) record, then more zeros than replay reads at once */
        memcpy(c, map, len);
        memset(c + len, 0, 8192);
        put_delta("v3-zero-tail", c, len + 8192, units);
        memcpy(c, map, len);
        c[16] ^= 1; /* an earlier volume's journal: the header check redone */
        reseal(c, 32, 8);
        put_delta("v3-foreign-tag", c, len, units);
        free(c);
        free(map);

        /* Another volume's journal (moved or swapped): the name sum differs. */
        (void)unlinkat(dfd, "w.map", 0);
        (void)unlinkat(dfd, "w.data", 0);
        OK(delta_open(dfd, "w", FUZZ_DELTA_TAG, 1u << 20, false, &d, NULL));
        block_of(buf, 2, 0, true);
        OK(delta_write(&d, 0, 2, buf));
        OK(delta_flush(&d));
        delta_take_name(&d, dfd, "w", &map, &len, &units);
        put_delta("v3-other-volume", map, len, units);
        free(map);

        /* Data sums: block 2 rewritten with data the (zero) data file does
         * not hold: reads of it fail; block 1 rewritten, then rewritten in
         * place with zeros: its second record's sum counts. */
        delta_start(dfd, &d, 2);
        block_of(buf, 2, 0, true);
        OK(delta_write(&d, 0, 2, buf));
        OK(delta_write(&d, 2, 2, buf));
        OK(delta_flush(&d));
        block_of(buf, 1, 2, false);
        OK(delta_write(&d, 2, 1, buf));
        block_of(buf, 1, 1, false);
        OK(delta_write(&d, 1, 1, buf));
        block_of(buf, 1, 1, true);
        OK(delta_write(&d, 1, 1, buf));
        OK(delta_flush(&d));
        delta_take(&d, dfd, &map, &len, &units);
        put_delta("v3-sum-mismatch", map, len, units);
        free(map);

        /* Emptied after a commit: the header alone; and no data file. */
        delta_start(dfd, &d, 2);
        block_of(buf, 1, 0, true);
        OK(delta_write(&d, 0, 1, buf));
        OK(delta_reset(&d));
        delta_take(&d, dfd, &map, &len, &units);
        put_delta("v3-empty", map, len, 0xffff);
        free(map);
        /* No journal: written data without it is damage; an empty data file is not. */
        put_delta("no-journal", NULL, 0, 2 * (DELTA_BLOCK / 256));
        put_delta("no-journal-empty-data", NULL, 0, 0);

        /* Blocks in more 1 MiB regions and more of them than the tables
         * replay starts with hold: zeros, and data every fifth. */
        delta_start(dfd, &d, 2);
        block_of(buf, 1, 0, true);
        for (uint64_t i = 0; i < 120; i++)
                OK(i % 5 ? delta_zero(&d, i * 257 + 3, 1) : delta_write(&d, i * 257 + 3, 1, buf));
        OK(delta_zero(&d, 40000, 1000));
        OK(delta_flush(&d));
        delta_take(&d, dfd, &map, &len, &units);
        put_delta("v3-spread", map, len, units);
        free(map);

        delta_many(dfd, 2, &map, &len, &units);
        put_delta("v3-many", map, len, units);
        /* damage in the first of 30 flushes: found by reading back across runs */
        put_delta_flipped("v3-many-damaged", map, len, units, V2_LEN + 3 * V2_LEN + 20);
        /* A flush torn at a sector boundary inside a data record: cut at
         * that flush's end, zero from the boundary on. The first boundary
         * whose sector ends in a nonzero byte (the data sum's last). */
        for (size_t at = 512; at < len; at += 512) {
                bool data;
                size_t end = v2_flush_end(map, len, at, &data);
                if (data && end && map[at - 1] != 0 && (at - V2_LEN) % V2_LEN != 0) {
                        put_delta_zeroed("v3-many-torn-sector", map, end, units, at);
                        break;
                }
        }
        free(map);

#undef OK
        close(dfd);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                exit(1);
}

/* ---- nbd: records for fuzz-nbd.c (see its header): options and request headers ---- */

typedef struct nbuf {
        uint8_t b[16384];
        size_t n;
} nbuf;

static void nb_put(nbuf *o, const void *p, size_t n) {
        if (o->n + n > sizeof o->b)
                exit(1);
        memcpy(o->b + o->n, p, n);
        o->n += n;
}
static void nb_be(nbuf *o, uint64_t v, int bytes) {
        for (int i = bytes - 1; i >= 0; i--) {
                uint8_t c = (uint8_t)(v >> (8 * i));
                nb_put(o, &c, 1);
        }
}
/* An option record with payload p (its length as the record says). */
static void nb_opt(nbuf *o, uint32_t opt, const void *p, size_t n) {
        uint8_t tag = 0;
        nb_put(o, &tag, 1);
        if (opt < 0xff) {
                nb_be(o, opt, 1);
        } else {
                nb_be(o, 0xff, 1);
                nb_be(o, opt, 4);
        }
        uint8_t l[2] = { (uint8_t)n, (uint8_t)(n >> 8) };
        nb_put(o, l, 2);
        nb_put(o, p, n);
}
/* A request record: mode 1 as sent, 2 with the offset relative to the size. */
static void nb_req(nbuf *o, int mode, uint32_t magic, uint16_t flags, uint16_t type,
                   uint64_t off, uint32_t len) {
        uint8_t tag = (uint8_t)mode;
        nb_put(o, &tag, 1);
        nb_be(o, magic, 4);
        nb_be(o, flags, 2);
        nb_be(o, type, 2);
        nb_be(o, 0x1122334455667788ull, 8);
        nb_be(o, off, 8);
        nb_be(o, len, 4);
}
/* GO/INFO payload: name length, name, info count, infos. */
static size_t go_payload(uint8_t *p, uint32_t nl_field, const char *name, uint16_t n,
                         const uint16_t *info, uint16_t n_sent) {
        nbuf b = { .n = 0 };
        nb_be(&b, nl_field, 4);
        nb_put(&b, name, strlen(name));
        nb_be(&b, n, 2);
        for (uint16_t i = 0; i < n_sent; i++)
                nb_be(&b, info[i], 2);
        memcpy(p, b.b, b.n);
        return b.n;
}
/* META payload: name length, name, query count, queries (lengths as given). */
static size_t meta_payload(uint8_t *p, const char *name, uint32_t nq, const char *const *q,
                           const uint32_t *ql, uint32_t nq_sent) {
        nbuf b = { .n = 0 };
        nb_be(&b, strlen(name), 4);
        nb_put(&b, name, strlen(name));
        nb_be(&b, nq, 4);
        for (uint32_t i = 0; i < nq_sent; i++) {
                nb_be(&b, ql ? ql[i] : strlen(q[i]), 4);
                nb_put(&b, q[i], strlen(q[i]));
        }
        memcpy(p, b.b, b.n);
        return b.n;
}

static void gen_nbd(void) {
        rnd_seed(0x6e6264, 0);
        static const uint16_t info[] = { NBD_INFO_EXPORT, NBD_INFO_NAME, NBD_INFO_BLOCK_SIZE };
        static const char *const q2[] = { "base:allocation", "stellar:shared" };
        static const char *const qns[] = { "base:", "stellar:", "" };
        uint8_t p[8192];
        size_t n;

        /* a well-behaved handshake */
        nbuf ok = { .n = 0 };
        nb_opt(&ok, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
        nb_opt(&ok, NBD_OPT_LIST, NULL, 0);
        n = meta_payload(p, "vm1", 3, qns, NULL, 3);
        nb_opt(&ok, NBD_OPT_LIST_META_CONTEXT, p, n);
        n = meta_payload(p, "vm1", 2, q2, NULL, 2);
        nb_opt(&ok, NBD_OPT_SET_META_CONTEXT, p, n);
        n = go_payload(p, 3, "vm1", 3, info, 3);
        nb_opt(&ok, NBD_OPT_INFO, p, n);
        n = go_payload(p, 3, "vm1", 0, NULL, 0);
        nb_opt(&ok, NBD_OPT_GO, p, n);
        nb_opt(&ok, NBD_OPT_EXPORT_NAME, "base", 4);
        nb_opt(&ok, NBD_OPT_ABORT, NULL, 0);
        put("nbd", "options-valid", ok.b, ok.n);
        put_flips("nbd", "options-valid", ok.b, ok.n, 4);

        /* payloads whose inner lengths lie */
        nbuf lie = { .n = 0 };
        static const uint32_t bad_nl[] = { 0xffffffffu, 0xfffffffau, 1000, 5 };
        for (size_t i = 0; i < sizeof bad_nl / sizeof bad_nl[0]; i++) {
                n = go_payload(p, bad_nl[i], "base", 0, NULL, 0);
                nb_opt(&lie, NBD_OPT_GO, p, n);
        }
        n = go_payload(p, 4, "base", 5, info, 1); /* 5 infos, 1 sent */
        nb_opt(&lie, NBD_OPT_INFO, p, n);
        n = go_payload(p, 4, "base", 0xffff, NULL, 0);
        nb_opt(&lie, NBD_OPT_GO, p, n);
        nb_opt(&lie, NBD_OPT_GO, "\0\0\0\4ba\0e\0\0", 10); /* NUL in the name */
        /* the name length one too long, over a count with no NUL in it */
        n = go_payload(p, 5, "base", 0x0101, NULL, 0);
        nb_opt(&lie, NBD_OPT_GO, p, n);
        n = go_payload(p, 5, "base", 0x0101, NULL, 0);
        nb_opt(&lie, NBD_OPT_INFO, p, n);
        nb_opt(&lie, NBD_OPT_SET_META_CONTEXT, "\0\0\0\5base\1\1\1\1", 12);
        /* a NUL in a query; a query length one too long at the end */
        nb_opt(&lie, NBD_OPT_SET_META_CONTEXT, "\0\0\0\4base\0\0\0\1\0\0\0\6base:\0", 22);
        nb_opt(&lie, NBD_OPT_LIST_META_CONTEXT, "\0\0\0\4base\0\0\0\1\0\0\0\6base:", 21);
        n = meta_payload(p, "base", 2, q2, NULL, 1); /* 2 queries, 1 sent */
        nb_opt(&lie, NBD_OPT_SET_META_CONTEXT, p, n);
        static const uint32_t ql_lie[] = { 0xffffffffu, 16 };
        n = meta_payload(p, "base", 2, q2, ql_lie, 2);
        nb_opt(&lie, NBD_OPT_SET_META_CONTEXT, p, n);
        n = meta_payload(p, "base", 0xffffffffu, q2, NULL, 2);
        nb_opt(&lie, NBD_OPT_LIST_META_CONTEXT, p, n);
        n = meta_payload(p, "base", 17, q2, NULL, 0);
        nb_opt(&lie, NBD_OPT_LIST_META_CONTEXT, p, n);
        nb_opt(&lie, NBD_OPT_LIST, "x", 1);
        nb_opt(&lie, NBD_OPT_STRUCTURED_REPLY, "\0\0\0\0", 4);
        nb_opt(&lie, NBD_OPT_STARTTLS, NULL, 0);
        nb_opt(&lie, 11, "junk", 4);
        nb_opt(&lie, 0x80000001u, NULL, 0);
        put("nbd", "options-lying", lie.b, lie.n);
        put_flips("nbd", "options-lying", lie.b, lie.n, 4);

        /* a name at the string limit and one past it; 16 queries and 17 */
        nbuf big = { .n = 0 };
        memset(p, 'a', 4097);
        nb_opt(&big, NBD_OPT_EXPORT_NAME, p, 4096);
        nb_opt(&big, NBD_OPT_EXPORT_NAME, p, 4097);
        static const char *const q17[17] = { "base:", "base:", "base:", "base:", "base:", "base:",
                                             "base:", "base:", "base:", "base:", "base:", "base:",
                                             "base:", "base:", "base:", "base:", "base:" };
        n = meta_payload(p, "vm1", 16, q17, NULL, 16);
        nb_opt(&big, NBD_OPT_LIST_META_CONTEXT, p, n);
        n = meta_payload(p, "vm1", 17, q17, NULL, 17);
        nb_opt(&big, NBD_OPT_LIST_META_CONTEXT, p, n);
        put("nbd", "options-limits", big.b, big.n);

        /* every command, in range and at the edges (offsets relative to the size) */
        nbuf rq = { .n = 0 };
        for (uint16_t t = 0; t <= NBD_CMD_BLOCK_STATUS; t++) {
                nb_req(&rq, 1, NBD_REQUEST_MAGIC, 0, t, 0, 4096);
                nb_req(&rq, 2, NBD_REQUEST_MAGIC, 0, t, (uint64_t)-4096, 4096);
                nb_req(&rq, 2, NBD_REQUEST_MAGIC, 0, t, (uint64_t)-4096, 4097);
                nb_req(&rq, 2, NBD_REQUEST_MAGIC, 0, t, 0, 0);
                nb_req(&rq, 2, NBD_REQUEST_MAGIC, 0, t, 1, 0);
        }
        nb_req(&rq, 1, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_DF, NBD_CMD_READ, 0, 65536);
        nb_req(&rq, 1, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 512, 512);
        nb_req(&rq, 1, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE,
               NBD_CMD_WRITE_ZEROES, 0, 1u << 20);
        nb_req(&rq, 1, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 0, 1u << 30);
        put("nbd", "requests-valid", rq.b, rq.n);

        /* hostile headers: overflow, huge lengths, unknown types and flags, bad magic */
        nbuf hq = { .n = 0 };
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, UINT64_MAX, 2);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_WRITE, UINT64_MAX - 511, 1024);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, 0, UINT32_MAX);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_READ, 0, NBD_REQUEST_MAX + 1);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_WRITE, 0, NBD_REQUEST_MAX + 1);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_WRITE, 0, NBD_REQUEST_MAX);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_TRIM, 1ull << 63, UINT32_MAX);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, 8, 0, 4096);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, 0xffff, 0, 4096);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0x8000, NBD_CMD_READ, 0, 4096);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_REQ_ONE, NBD_CMD_READ, 0, 4096);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, NBD_CMD_FLAG_FUA, NBD_CMD_FLUSH, 0, 0);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC, 0, NBD_CMD_DISC, 12345, 678);
        nb_req(&hq, 1, NBD_REQUEST_MAGIC ^ 1, 0, NBD_CMD_READ, 0, 4096);
        nb_req(&hq, 1, NBD_SIMPLE_REPLY_MAGIC, 0, NBD_CMD_READ, 0, 4096);
        nb_req(&hq, 2, NBD_REQUEST_MAGIC, 0, NBD_CMD_WRITE, (uint64_t)-1, 2);
        nb_req(&hq, 2, NBD_REQUEST_MAGIC, 0, NBD_CMD_WRITE_ZEROES, (uint64_t)-4096, UINT32_MAX);
        put("nbd", "requests-hostile", hq.b, hq.n);
        put_flips("nbd", "requests-hostile", hq.b, hq.n, 4);

        /* a short tail: a request header cut off, an option with no length */
        static const uint8_t cut[] = { 1, 0x25, 0x60, 0x95, 0x13, 0, 0, 0, 1, 0, 0 };
        put("nbd", "cut-request", cut, sizeof cut);
        static const uint8_t cut_opt[] = { 0, 0xff, 0, 0 };
        put("nbd", "cut-option", cut_opt, sizeof cut_opt);
        put("nbd", "empty", NULL, 0);
}

/* The batch of what changed in s since its last, appended to log (of cap
 * bytes, len used); the new length. */
static size_t append_batch(const st_store *s, uint8_t *log, size_t len, size_t cap) {
        uint8_t *b;
        size_t bl;
        if (index_log_batch(s, &b, &bl) < 0 || len + bl > cap)
                exit(1);
        memcpy(log + len, b, bl);
        free(b);
        return len + bl;
}

/* index.log over an empty index (trailer sum zero): two batches, the
 * second growing a pack and moving counts; cut, flipped, misnamed. */
static void gen_index_log(void) {
        st_store s = { .next_pack_id = 1, .idx_full = false };
        store_pack packs[2] = { { .id = 1, .len = 1u << 20 }, { .id = 3, .len = 70000 } };
        s.idx = index_new();
        if (!s.idx)
                exit(1);
        rnd_seed(0x106106106ULL, 12);
        uint8_t log[4096];
        size_t len = INDEX_LOG_HEADER_LEN;
        index_log_header(log, s.index_sum);
        put("index-log", "empty", log, len);
        s.packs = packs;
        s.n_packs = 2;
        s.next_pack_id = 5;
        for (uint32_t i = 0; i < 5; i++) {
                st_digest h;
                st_hash(&i, sizeof i, &h);
                index_entry e = { .pack = packs[i % 2].id, .off = 32 + i * 9000,
                                  .stored_len = 4000 + i, .raw_len = 16384, .refs = 1 };
                if (index_add(s.idx, &h, &e) == INDEX_NONE)
                        exit(1);
        }
        len = append_batch(&s, log, len, sizeof log);
        put("index-log", "one-batch", log, len);
        /* what index_log_saved does, by hand: the second batch's base */
        s.idx_saved = index_count(s.idx);
        packs[0].logged_len = packs[0].len;
        packs[1].logged_len = packs[1].len;
        s.logged_packs = 2;
        s.logged_next_pack = s.next_pack_id;
        packs[1].len += 20000;
        uint32_t changed[2] = { 1, 4 };
        s.changed = changed;
        s.n_changed = 2;
        index_get(s.idx, 1)->refs = 7;
        index_get(s.idx, 4)->refs = 0;
        len = append_batch(&s, log, len, sizeof log);
        put("index-log", "two-batches", log, len);
        put("index-log", "torn-tail", log, len - 9);
        put_flips("index-log", "two-batches", log, len, 4);
        log[40] ^= 1; /* another index's log */
        put("index-log", "other-index", log, len);
        index_free(s.idx);
}

int main(int argc, char **argv) {
        static const struct {
                const char *name;
                void (*gen)(void);
        } targets[] = {
                { "pack", gen_pack },     { "manifest", gen_manifest }, { "index", gen_index },
                { "format", gen_format }, { "ref", gen_ref },           { "delta", gen_delta },
                { "nbd", gen_nbd },       { "index-log", gen_index_log },
        };
        const size_t n_targets = sizeof targets / sizeof targets[0];
        if (argc < 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR [TARGET...]\n", argv[0]);
                return 2;
        }
        root = argv[1];
        for (int i = 2; i < argc; i++) {
                size_t k = 0;
                while (k < n_targets && strcmp(argv[i], targets[k].name) != 0)
                        k++;
                if (k == n_targets) {
                        fprintf(stderr, "%s: unknown target %s\n", argv[0], argv[i]);
                        return 2;
                }
        }
        for (size_t k = 0; k < n_targets; k++) {
                bool want = argc == 2;
                for (int i = 2; i < argc; i++)
                        want |= strcmp(argv[i], targets[k].name) == 0;
                if (want)
                        targets[k].gen();
        }
        return 0;
}
