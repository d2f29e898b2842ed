/* SPDX-License-Identifier: Apache-2.0 */
/* virtio-blk requests on a volume; see blk.h. */
#include <errno.h>
#include <string.h>

#include "blk.h"
#include "msg.h"

#define BLK_T_IN 0u
#define BLK_T_OUT 1u
#define BLK_T_FLUSH 4u
#define BLK_T_GET_ID 8u
#define BLK_T_DISCARD 11u
#define BLK_T_WRITE_ZEROES 13u
#define BLK_S_OK 0u
#define BLK_S_IOERR 1u
#define BLK_S_UNSUPP 2u
#define SECTOR 512u
#define SEG_MAX 126u
#define DISCARD_SEG_MAX 32u
#define WZ_UNMAP 1u

uint64_t blk_features(const blk_dev *b) {
        uint64_t f = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_RING_INDIRECT_DESC |
                     1ull << VIRTIO_F_RING_EVENT_IDX | 1ull << VIRTIO_BLK_F_SEG_MAX |
                     1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_TOPOLOGY |
                     1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_MQ;
        if (b->ro)
                f |= 1ull << VIRTIO_BLK_F_RO;
        else
                f |= 1ull << VIRTIO_BLK_F_DISCARD | 1ull << VIRTIO_BLK_F_WRITE_ZEROES;
        return f;
}

static void put16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t)v;
        p[1] = (uint8_t)(v >> 8);
}

void blk_config(const blk_dev *b, uint8_t c[BLK_CONFIG_LEN]) {
        memset(c, 0, BLK_CONFIG_LEN);
        le64_put(c, st_volume_size(b->v) / SECTOR); /* capacity */
        le32_put(c + 12, SEG_MAX);
        le32_put(c + 20, SECTOR);   /* blk_size: the logical block */
        c[24] = 3;                     /* physical block: 2^3 sectors, the delta's 4 KiB */
        put16(c + 26, 4096 / SECTOR);  /* min_io_size, in logical blocks */
        le32_put(c + 28, 0);        /* opt_io_size: none */
        put16(c + 34, (uint16_t)b->n_queues);
        le32_put(c + 36, 1u << 22); /* max_discard_sectors: 2 GiB */
        le32_put(c + 40, DISCARD_SEG_MAX);
        le32_put(c + 44, 4096 / SECTOR);
        le32_put(c + 48, 1u << 22); /* max_write_zeroes_sectors */
        le32_put(c + 52, DISCARD_SEG_MAX);
        c[56] = 1; /* write_zeroes_may_unmap */
}

/* A cursor over the readable (or writable) bytes of a chain. */
typedef struct cursor {
        const vring_seg *segs;
        unsigned n, i;
        uint32_t off;
        bool write;
} cursor;

static void cursor_init(cursor *c, const vring_seg *segs, unsigned n, bool write) {
        *c = (cursor){ .segs = segs, .n = n, .write = write };
        while (c->i < c->n && c->segs[c->i].write != write)
                c->i++;
}

/* The next piece of at most max bytes: its pointer and length (0 at the end). */
static uint8_t *cursor_next(cursor *c, uint64_t max, uint32_t *ret_len) {
        while (c->i < c->n && (c->segs[c->i].write != c->write || c->off == c->segs[c->i].len)) {
                c->i++;
                c->off = 0;
        }
        if (c->i == c->n || max == 0) {
                *ret_len = 0;
                return NULL;
        }
        const vring_seg *s = &c->segs[c->i];
        uint32_t n = s->len - c->off;
        if (n > max)
                n = (uint32_t)max;
        uint8_t *p = s->p + c->off;
        c->off += n;
        *ret_len = n;
        return p;
}

/* Copy len bytes out of the cursor: false if it has fewer. */
static bool cursor_read(cursor *c, void *buf, uint32_t len) {
        uint8_t *out = buf;
        while (len > 0) {
                uint32_t n;
                const uint8_t *p = cursor_next(c, len, &n);
                if (!p)
                        return false;
                memcpy(out, p, n);
                out += n;
                len -= n;
        }
        return true;
}

static uint64_t bytes_of(const vring_seg *segs, unsigned n, bool write) {
        uint64_t t = 0;
        for (unsigned i = 0; i < n; i++)
                if (segs[i].write == write)
                        t += segs[i].len;
        return t;
}

static int range_ok(const blk_dev *b, uint64_t sector, uint64_t len) {
        uint64_t size = st_volume_size(b->v);
        return sector <= size / SECTOR && len <= size - sector * SECTOR;
}

/* DISCARD / WRITE_ZEROES: the segments after the header. */
static uint8_t discard(const blk_dev *b, cursor *c, uint64_t data_len, bool zeroes) {
        if (data_len == 0 || data_len % 16 != 0 || data_len / 16 > DISCARD_SEG_MAX)
                return BLK_S_IOERR;
        for (uint64_t k = 0; k < data_len / 16; k++) {
                uint8_t seg[16];
                if (!cursor_read(c, seg, sizeof seg))
                        return BLK_S_IOERR;
                uint64_t sector = le64_get(seg);
                uint32_t count = le32_get(seg + 8), flags = le32_get(seg + 12);
                if (flags & ~(zeroes ? WZ_UNMAP : 0u))
                        return BLK_S_UNSUPP;
                uint64_t len = (uint64_t)count * SECTOR;
                if (count > (1u << 22) || !range_ok(b, sector, len))
                        return BLK_S_IOERR;
                int r = zeroes ? st_volume_write_zeroes(b->v, sector * SECTOR, len,
                                                        (flags & WZ_UNMAP) ? 0 : ST_WRITE_NO_HOLE)
                               : st_volume_discard(b->v, sector * SECTOR, len);
                if (r < 0)
                        return BLK_S_IOERR;
        }
        return BLK_S_OK;
}

int blk_execute(const blk_dev *b, const vring_seg *segs, unsigned n, blk_result *ret) {
        *ret = (blk_result){ .op = BLK_OP_OTHER };
        /* The status: the last byte of the last writable segment. */
        int last = -1;
        for (unsigned i = 0; i < n; i++)
                if (segs[i].write && segs[i].len > 0)
                        last = (int)i;
        if (last < 0)
                return -EBADMSG;
        uint8_t *status = segs[last].p + segs[last].len - 1;
        vring_seg body[VRING_MAX_SEGS];
        memcpy(body, segs, n * sizeof *segs);
        body[last].len--; /* the data the driver gave room for, status apart */
        cursor in, out;
        cursor_init(&out, body, n, false);
        cursor_init(&in, body, n, true);
        uint8_t hdr[16];
        uint64_t readable = bytes_of(body, n, false), writable = bytes_of(body, n, true);
        uint8_t st = BLK_S_OK;
        if (!cursor_read(&out, hdr, sizeof hdr)) {
                *status = BLK_S_IOERR;
                ret->written = 1;
                ret->error = true;
                return 0;
        }
        uint32_t type = le32_get(hdr);
        uint64_t sector = le64_get(hdr + 8);
        uint64_t data_out = readable - 16;
        switch (type) {
        case BLK_T_IN: {
                ret->op = BLK_OP_READ;
                if (writable % SECTOR || !range_ok(b, sector, writable)) {
                        st = BLK_S_IOERR;
                        break;
                }
                uint64_t off = sector * SECTOR;
                uint32_t len;
                for (uint8_t *p; (p = cursor_next(&in, UINT64_MAX, &len));) {
                        if (st_volume_read(b->v, p, len, off) < 0) {
                                st = BLK_S_IOERR;
                                break;
                        }
                        off += len;
                }
                if (st == BLK_S_OK) {
                        ret->bytes = writable;
                        ret->written = (uint32_t)writable;
                }
                break;
        }
        case BLK_T_OUT: {
                ret->op = BLK_OP_WRITE;
                if (b->ro || data_out % SECTOR || !range_ok(b, sector, data_out)) {
                        st = BLK_S_IOERR;
                        break;
                }
                uint64_t off = sector * SECTOR;
                uint32_t len;
                for (uint8_t *p; (p = cursor_next(&out, UINT64_MAX, &len));) {
                        if (st_volume_write(b->v, p, len, off, 0) < 0) {
                                st = BLK_S_IOERR;
                                break;
                        }
                        off += len;
                }
                if (st == BLK_S_OK)
                        ret->bytes = data_out;
                break;
        }
        case BLK_T_FLUSH:
                ret->op = BLK_OP_FLUSH;
                st = b->ro || st_volume_flush(b->v) == 0 ? BLK_S_OK : BLK_S_IOERR;
                break;
        case BLK_T_GET_ID: {
                uint8_t id[20] = { 0 };
                memcpy(id, b->serial, strnlen(b->serial, sizeof id));
                uint32_t done = 0, len;
                for (uint8_t *p; done < sizeof id && (p = cursor_next(&in, sizeof id - done, &len));) {
                        memcpy(p, id + done, len);
                        done += len;
                }
                ret->written = done;
                break;
        }
        case BLK_T_DISCARD:
        case BLK_T_WRITE_ZEROES:
                ret->op = type == BLK_T_DISCARD ? BLK_OP_TRIM : BLK_OP_WRITE;
                st = b->ro ? BLK_S_IOERR : discard(b, &out, data_out, type == BLK_T_WRITE_ZEROES);
                break;
        default:
                st = BLK_S_UNSUPP;
                break;
        }
        *status = st;
        ret->written += 1;
        ret->error = st != BLK_S_OK;
        return 0;
}
