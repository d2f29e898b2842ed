/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Distribution: images travel as a static tree of content-addressed files
 * that any web server, CDN or S3 bucket can hold (docs/formats/remote.md):
 *
 *   refs/NAME               the hex id of NAME's top manifest, one line
 *   manifests/<id>.json     a manifest layer; id = BLAKE3 of the file's bytes
 *   blobs/<hash>            one chunk as one zstd frame; hash = BLAKE3 of the
 *                           decompressed bytes
 *
 * Targets and sources are URLs: a directory (a path or file:///path),
 * http:// and https:// (read-only), and s3://BUCKET/PREFIX, signed with AWS
 * SigV4 from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN),
 * AWS_REGION (default us-east-1), at AWS_ENDPOINT_URL (default AWS itself),
 * path-style unless STELLAR_S3_STYLE=virtual.
 */
#pragma once

#include <stellar/common.h>
#include <stellar/store.h>

typedef struct st_transfer_opts {
        unsigned parallel;     /* most requests in flight (0: 512; at most 1024); a
                                * transfer starts with 64 and doubles while that pays */
        unsigned retries;      /* per request, on 5xx, resets and timeouts (0: 5) */
        unsigned timeout_s;    /* a request that moves no byte for this long fails (0: 20) */
        bool lazy;             /* pull: the manifests only; chunks on first read */
        bool background;       /* attach_sources: also fetch the rest of lazily pulled
                                * images in the background (the daemon) */
        const char *local_name; /* pull: the name to store it as (NULL: the remote name) */
        st_progress_fn progress;
        void *userdata;
        unsigned deadline_s;   /* a request not finished this long after it started
                                * fails, and is retried like a stall (0: 300); it
                                * bounds a server that trickles bytes just fast
                                * enough never to stall. Added last: callers that
                                * zero the struct keep working */
} st_transfer_opts;

typedef struct st_publish_result {
        st_digest id;           /* the top manifest's id in the tree */
        uint64_t n_layers;
        uint64_t n_chunks;      /* distinct chunks the image uses */
        uint64_t n_uploaded;    /* blobs written */
        uint64_t n_present;     /* blobs the target had already */
        uint64_t bytes_uploaded; /* blob bytes written */
        uint64_t manifest_bytes;
} st_publish_result;

/* Publish NAME (an image or snapshot; a volume's committed state) to target.
 * Blobs go first, then manifests bottom-up, then refs/NAME: a reader never
 * finds a manifest whose blobs are not all there. Incremental and
 * idempotent. */
ST_API int st_publish(st_store *s, const char *name, const char *target,
                      const st_transfer_opts *o, st_publish_result *ret, st_diag *reterr);

typedef struct st_pull_result {
        st_digest id;            /* the top manifest's id in the tree */
        uint64_t size;
        uint64_t n_chunks;       /* distinct chunks the image uses */
        uint64_t n_present;      /* of those, already in the store */
        uint64_t n_fetched;      /* blobs downloaded */
        uint64_t bytes_fetched;  /* blob bytes downloaded (compressed) */
        uint64_t raw_fetched;    /* their chunk bytes */
        uint64_t manifest_bytes; /* refs and manifests downloaded */
        uint64_t n_retries;
        bool lazy;
        uint64_t n_kept;         /* chunks this pull added to the store: n_fetched
                                  * on success; after a failure, those that made
                                  * it (a resumed pull does not fetch them again) */
} st_pull_result;

/* Pull NAME from source into the store (which must be open for writing).
 * Only chunks the store lacks are fetched, in parallel, each verified
 * before it is stored. Interrupted, it resumes where it stopped. */
ST_API int st_pull(st_store *s, const char *source, const char *name, const st_transfer_opts *o,
                   st_pull_result *ret, st_diag *reterr);

/* Let reads of chunks the store lacks fetch them from the sources that lazy
 * pulls recorded, and keep them. Concurrent reads of one missing chunk cause
 * one fetch. With o->background, a thread also fetches every other missing
 * chunk of those images, in extent order, until done or the store closes.
 * Thread-safe once set; call after st_store_open. Returns the number of
 * sources (0: nothing to do). */
ST_API int st_store_attach_sources(st_store *s, const st_transfer_opts *o);
