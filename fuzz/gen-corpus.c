/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the seed corpus, fuzz/corpus/<target>/, with the library's own
 * encoders: valid files, then truncated, field-damaged (checksums redone, so
 * the damage reaches the field checks) and bit-flipped variants. Deterministic:
 * fixed data and a fixed PRNG seed. Usage: gen-corpus CORPUS_DIR
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

#include "store/store-internal.h"
#include "util/le.h"

static const char *root;
static uint64_t rng = 0x5eed5eed5eedULL;

static uint32_t rnd(void) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t)(rng >> 33);
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

static void gen_pack(void) {
        static uint8_t rand_data[1024], text[8192], buf[32768];
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

static void gen_manifest(void) {
        uint8_t *p;
        size_t len;
        st_chunker_params img = ST_CHUNKER_IMAGE_DEFAULT, str = ST_CHUNKER_STREAM_DEFAULT;

        manifest *m = manifest_sample(0, &img);
        m->size = 0;
        manifest_encode(m, &p, &len);
        put("manifest", "empty", p, len);
        free(p);
        manifest_free(m);

        m = manifest_sample(3, &str);
        manifest_encode(m, &p, &len);
        put("manifest", "stream-3ext", p, len);
        free(p);
        manifest_free(m);

        m = manifest_sample(12, &img);
        manifest_encode(m, &p, &len);
        put("manifest", "image-12ext", p, len);
        put("manifest", "trunc-header", p, 40);
        put("manifest", "trunc-extent", p, len - 50);
        put_flips("manifest", "image-12ext", p, len, 6);
        size_t body = len - MANIFEST_TRAILER_LEN;
        struct {
                const char *name;
                size_t at;
                uint32_t v;
        } dmg[] = {
                { "bad-version", 8, 2 },      { "bad-header-len", 12, 32 },
                { "bad-kind", 16, 2 },        { "bad-count", 32, 13 },
                { "bad-align", 40, 512 },     { "bad-avg", 48, 12288 },
                { "ext0-zero-len", 72, 0 },   { "ext1-overlap", 64 + 44, 100 },
                { "ext11-past-end", 64 + 11 * 44 + 4, 1 },
        };
        for (size_t i = 0; i < sizeof dmg / sizeof dmg[0]; i++) {
                uint8_t *c = malloc(len);
                memcpy(c, p, len);
                st_le32_put(c + dmg[i].at, dmg[i].v);
                reseal(c, body, MANIFEST_TRAILER_LEN);
                put("manifest", dmg[i].name, c, len);
                free(c);
        }
        free(p);
        manifest_free(m);
}

static void gen_index(void) {
        st_store s = { .next_pack_id = 5 };
        store_pack packs[2] = { { .id = 1, .len = 1u << 20 }, { .id = 3, .len = 70000 } };
        uint8_t *p;
        size_t len;

        s.idx = index_new();
        if (!s.idx)
                exit(1);
        index_file_encode(&s, &p, &len);
        put("index", "empty", p, len);
        free(p);

        s.packs = packs;
        s.n_packs = 2;
        for (uint32_t i = 0; i < 6; i++) {
                st_digest h;
                st_hash(&i, sizeof i, &h);
                index_entry e = { .pack = packs[i % 2].id, .off = 32 + i * 9000,
                                  .stored_len = 4000 + i, .raw_len = 16384, .refs = i };
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
        free(p);
        index_free(s.idx);
}

static void gen_format(void) {
        const struct {
                const char *name;
                st_store_config cfg;
        } cfgs[] = {
                { "default", ST_STORE_CONFIG_DEFAULT },
                { "stream-zstd-max", { { 1, 16384, 65536, 262144 }, 22 } },
                { "image-zstd-neg7", { { 4096, 4096, 4096, 16u << 20 }, -7 } },
        };
        uint8_t fmt[STORE_FORMAT_LEN];

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
                { "bad-version", 8, 2 },  { "bad-align", 16, 8192 },  { "bad-min", 20, 63 },
                { "bad-avg", 24, 5000 },  { "bad-max", 28, (16u << 20) + 4096 },
                { "zstd-23", 32, 23 },    { "zstd-neg8", 32, (uint32_t)-8 },
        };
        for (size_t i = 0; i < sizeof dmg / sizeof dmg[0]; i++) {
                uint8_t c[STORE_FORMAT_LEN];
                memcpy(c, fmt, sizeof c);
                st_le32_put(c + dmg[i].at, dmg[i].v);
                reseal(c, 56, 8);
                put("format", dmg[i].name, c, sizeof c);
        }
}

int main(int argc, char **argv) {
        if (argc != 2) {
                fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
                return 2;
        }
        root = argv[1];
        gen_pack();
        gen_manifest();
        gen_index();
        gen_format();
        return 0;
}
