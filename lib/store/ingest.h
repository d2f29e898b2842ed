/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The chunk write path shared by import and volume commit (see ingest.c).
 * Use: ingest_begin (marks the store dirty), ingest_region for each region of
 * the source in increasing offset order, ingest_finish (chunks durable), then
 * save the manifest and commit the store; ingest_free(j, rollback=true) if
 * anything failed before the manifest was saved. One ingest at a time per
 * store; the caller holds the store's write mutex.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <stellar/store.h>

#include "manifest.h"

typedef struct ingest ingest;

/* Read [off, off + len) of the source into buf. Called from several threads
 * at once for disjoint ranges. Returns 0 or negative errno. */
typedef int (*ingest_read_fn)(void *ctx, uint64_t off, void *buf, size_t len);

/* Extents go to m (which must outlive the ingest). record_holes: zero runs
 * become hole extents (layers mask their parent with them). */
int ingest_begin(st_store *s, manifest *m, bool record_holes, const st_import_opts *o,
                 uint64_t progress_total, ingest **ret);
/* The pieces are cut with m->chunker. */
int ingest_region(ingest *j, uint64_t pos, uint64_t end, ingest_read_fn fn, void *ctx,
                  st_diag *reterr);
int ingest_finish(ingest *j, st_import_result *ret, st_diag *reterr);
ingest *ingest_free(ingest *j, bool rollback);
