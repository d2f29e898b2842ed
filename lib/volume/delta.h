/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The delta layer of a volume (the seed's DeltaVol): guest writes since the
 * last commit, in 4 KiB blocks, with no hashing on the write path.
 *
 *   deltas/NAME.data   4 KiB slots
 *   deltas/NAME.map    a journal: 32-byte header, then 32-byte records
 *                      (block, slot or ZERO, sequence, checksum)
 *
 * Durability: a flush writes the journal records made since the last flush
 * with a commit record, then fdatasyncs the data and the journal at once
 * (version 3; version 2 synced the data first, so that a commit record never
 * covered data that was not durable). A commit record names where the last
 * complete flush ended; replay checks the records after that point against
 * their data and keeps only those whose data landed. A slot that a
 * durable record names is never overwritten: a rewrite of such a block goes
 * to a fresh (or freed) slot, and the old slot is freed only after the new
 * record is durable. Version 2 also writes each write's records into the
 * journal file as it is made (unsynced): when the writer dies, replay keeps
 * those whose data is in their slot as their sum says (acknowledged,
 * unflushed writes survive a restart of the daemon). Byte layout:
 * docs/formats/delta.md.
 * Not thread-safe: the volume serialises access (a flush's write step
 * excepted, see delta_flush_begin).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stellar/common.h>

#define DELTA_BLOCK 4096u
#define DELTA_ZERO (1ull << 62) /* the block reads as zeros (above any slot; bit 63 is a flag in memory) */

typedef struct delta {
        int dirfd;
        char name[256];
        uint64_t tag; /* the volume's creation time: a delta of another volume is ignored */
        uint64_t max_blocks; /* blocks of the volume: records past it are damage */
        int data_fd, map_fd; /* -1 until the first write */
        uint64_t n_slots;    /* slots in the data file */
        uint64_t map_len;    /* durable journal bytes */
        uint64_t seq;        /* next record's sequence number */
        /* block -> slot (or DELTA_ZERO); top bit: written since the last flush */
        uint64_t *keys, *vals;
        uint64_t *sums; /* beside vals: the data sum of the block's slot (version 2) */
        size_t cap, count;
        /* which 1 MiB and 256 MiB regions hold any block: successor search */
        uint64_t *r1, *r2;
        size_t r1_cap, r1_n, r2_cap, r2_n;
        /* since the last flush */
        uint8_t *jbuf;
        size_t jlen, jcap;
        size_t jclosed; /* bytes at the front of jbuf a commit record closes already */
        size_t jsent;   /* bytes at the front of jbuf a flush is writing now */
        uint64_t *touched, *pending_free, *free_slots;
        size_t n_touched, cap_touched, n_pending, cap_pending, n_free, cap_free;
        bool data_dirty;
        bool sealed; /* version 3: the journal ends with a seal (nothing flushed since) */
        uint32_t version; /* of the journal: 1 (no flush marks), 2 or 3 */
        uint64_t torn_len; /* bytes of an unfinished flush past the durable end, at open */
} delta;

/* Open (replaying the journal) the delta of volume 'name' in dirfd. A
 * missing journal is an empty delta; files are created on the first write
 * unless rdonly. A journal with another tag (an earlier volume's of the same
 * name) is treated as empty and replaced on the first write. Replay keeps
 * every flush that is whole and cuts the torn tail of an unfinished one
 * (unless rdonly). It fails with -EBADMSG, *reterr naming the offset in
 * deltas/NAME.map, for damage: a bad header, a bad record followed by a later
 * durable flush, or a durable record naming a block past max_blocks, a slot
 * past the data file or a slot another block holds. -EPROTONOSUPPORT for an
 * unknown version. */
int delta_open(int dirfd, const char *name, uint64_t tag, uint64_t max_blocks, bool rdonly,
               delta *ret, st_diag *reterr);
void delta_close(delta *d);

/* The first block >= from that the delta holds, or limit if none below it.
 * Skips empty 256 MiB and 1 MiB regions at a time. */
uint64_t delta_next_block(const delta *d, uint64_t from, uint64_t limit);
/* 0: not in the delta; 1: *ret_slot holds the data; 2: zeros. */
int delta_lookup(const delta *d, uint64_t block, uint64_t *ret_slot);
/* Read block's 4 KiB from its slot (from delta_lookup). Version 2 checks the
 * data against the sum its record keeps: -EBADMSG if it differs. */
int delta_read_slot(const delta *d, uint64_t block, uint64_t slot, void *buf);
/* Read back every block's data and check its sum: 0, or -EBADMSG with the
 * first bad block and slot; other negative errno if it could not read. */
int delta_verify(const delta *d, uint64_t *ret_block, uint64_t *ret_slot);
/* Write n whole blocks starting at 'block' from data (n * 4 KiB bytes). */
int delta_write(delta *d, uint64_t block, size_t n, const uint8_t *data);
/* Make n blocks read as zeros. */
int delta_zero(delta *d, uint64_t block, size_t n);
int delta_flush(delta *d);
/* Version 3, nothing unflushed: end the journal with a seal, an empty
 * commit record naming its own offset as the trusted end, and sync it, so
 * that the next open trusts the last flush too (damage to its data is then
 * reported, not taken for a flush a crash cut short). For a clean close. */
int delta_seal(delta *d);
/* The same in three steps, so that the slow middle one runs without the
 * volume's lock: begin (under it) takes what is to be made durable and
 * reserves its place in the journal; write (without it, one flush at a time)
 * writes the records and fdatasyncs them and the data (see the durability
 * rules above); end (under it)
 * frees the slots the batch replaced, or on failure (r < 0) leaves its
 * records for the next flush to write again. Reads and writes may run between them. */
typedef struct delta_flush_batch {
        bool active;
        bool records_first; /* version 3: records written, then both synced at once */
        int data_fd, map_fd;
        int journal_r; /* (the journal's sync, on its thread) */
        uint64_t off;
        uint8_t *jbuf; /* its own copy of the records */
        size_t jlen;
        uint64_t *pending_free;
        size_t n_pending;
} delta_flush_batch;
int delta_flush_begin(delta *d, delta_flush_batch *b);
int delta_flush_write(delta_flush_batch *b);
int delta_flush_end(delta *d, delta_flush_batch *b, int r);
/* Blocks in the delta, sorted. Caller frees. */
int delta_blocks(const delta *d, uint64_t **ret, size_t *ret_n);
/* Empty the delta (after a commit made its content part of the manifest). */
int delta_reset(delta *d);
