/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where published trees live: a directory, an HTTP server (read-only) or an
 * S3 bucket. Keys are paths in the tree ("blobs/<hex>", "refs/NAME").
 * Requests run in parallel: the caller hands them out one at a time through
 * next() and gets each result through done(), both on its own thread.
 * Retries with backoff (5xx, 429, resets, timeouts) happen inside.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stellar/remote.h>

/* The most requests in flight by default. A blob is a few KiB, so a pull
 * over a long round trip is bound by how many are in flight: 512 keep a
 * 20 ms link at 3/4 of the no-delay rate (bench/RESULTS.md, pull). A run
 * starts with 64 and doubles while that pays (http.c). */
#define REMOTE_PARALLEL_DEFAULT 512
#define REMOTE_PARALLEL_MAX 1024
/* Seconds one attempt of a request may take in all (--deadline): a blob
 * is at most a frame of 16 MiB, 300 s is 56 KB/s for it. */
#define REMOTE_DEADLINE_DEFAULT 300

typedef struct target target;

enum { TARGET_GET = 1, TARGET_PUT = 2 };

typedef struct target_req {
        /* set by next() */
        int op;
        char key[4800]; /* a path, or "?QUERY" on the bucket (S3 listings) */
        const void *body; /* PUT */
        size_t body_len;
        size_t max_len; /* GET: a longer body fails with -EFBIG */
        void *user;
        /* results, valid in done() */
        int err;           /* 0, -ENOENT (404), -EACCES, -EFBIG, -EIO, -ETIMEDOUT, -ETIME, ... */
        long status;       /* HTTP status, 0 for a directory */
        const uint8_t *data; /* GET body */
        size_t len;
        unsigned attempts;
} target_req;

typedef struct target_io {
        /* Fill r for the next request: 1, or 0 when there are no more. */
        int (*next)(void *ctx, target_req *r);
        /* r ended (r->err says how). Return 0 to go on, 1 to have it tried
         * again (counts as an attempt; e.g. bytes that fail verification),
         * or a negative errno to stop everything. */
        int (*done)(void *ctx, target_req *r);
        void *ctx;
} target_io;

/* Fill r as a GET of chunk id's blob, with id as its user pointer. */
void target_req_blob(target_req *r, const st_digest *id);

int target_open(const char *url, const st_transfer_opts *o, target **ret, st_diag *reterr);
target *target_close(target *t);
/* Directories and S3 take PUTs; plain HTTP does not. */
bool target_writable(const target *t);
/* A human-readable URL of key (for messages). */
void target_url(const target *t, const char *key, char *out, size_t out_len);

/* Run requests until next() has no more and all have ended. Returns 0, the
 * first negative value done() returned, or a transport failure; *reterr
 * names the request that failed. */
int target_run(target *t, const target_io *io, st_diag *reterr);
/* Totals since open. */
uint64_t target_retries(const target *t);

/* One GET: *ret (malloc'ed, caller frees) and *ret_len. */
int target_get(target *t, const char *key, size_t max_len, uint8_t **ret, size_t *ret_len,
               st_diag *reterr);
int target_put(target *t, const char *key, const void *data, size_t len, st_diag *reterr);
/* Call fn with the name (after prefix) of every key that starts with prefix
 * ("blobs/"). -EOPNOTSUPP for plain HTTP. */
int target_list(target *t, const char *prefix, int (*fn)(void *ctx, const char *name), void *ctx,
                st_diag *reterr);
/* A directory target: remove the temp files its PUTs leave when a publisher
 * dies mid-write (kill -9, a crash), if untouched for TARGET_TEMP_STALE_S.
 * Age, not the pid in the name, tells a dead publisher's from a live one's:
 * the directory may be shared (NFS) with publishers on other hosts, whose
 * pids mean nothing here, and pids are reused. A live publisher writes a
 * temp file in one go and renames it at once, so one untouched for minutes
 * is abandoned; were it only stopped (SIGSTOP), its rename would fail and
 * that publish would report it: no published file is ever lost or wrong.
 * *ret_removed (if non-NULL) gets the count. No-op for HTTP and S3. */
#define TARGET_TEMP_STALE_S (15 * 60)
int target_clean_temps(target *t, uint64_t *ret_removed);
/* Make what was PUT durable before what comes next refers to it (a
 * directory: syncfs; S3: a PUT is durable when answered). */
int target_sync(target *t);

/* What a request's final error means, for messages. */
const char *remote_describe(int err);

/* Internal: the HTTP/S3 engine (http.c) and the S3 listing parser (s3-list.c). */
typedef struct http_engine http_engine;
int http_open(const char *url, const st_transfer_opts *o, http_engine **ret, st_diag *reterr);
http_engine *http_close(http_engine *h);
bool http_is_s3(const http_engine *h);
void http_url(const http_engine *h, const char *key, char *out, size_t out_len);
/* Percent-encode all but RFC 3986's unreserved characters and those in
 * keep (SigV4 canonical form: "" for query values, "/" for paths). */
void percent_encode(const char *in, const char *keep, char *out, size_t out_len);
int http_run(http_engine *h, const target_io *io, st_diag *reterr);
uint64_t http_retries(const http_engine *h);
/* The prefix inside the bucket ("" or "a/b/"). */
const char *http_s3_prefix(const http_engine *h);

/* Parse one page of an S3 ListObjectsV2 answer: fn gets each <Key> (entity-
 * decoded); *ret_token the NextContinuationToken if the listing is truncated
 * ("" otherwise). -EBADMSG on malformed XML. */
int s3_list_parse(const char *xml, size_t len, int (*fn)(void *ctx, const char *key), void *ctx,
                  char *ret_token, size_t token_len);
