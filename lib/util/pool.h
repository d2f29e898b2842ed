/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fixed set of worker threads that run one parallel loop at a time:
 * st_pool_for(p, n, fn, ctx) calls fn(ctx, i, worker) for every i < n, with
 * the caller taking part, and returns when all calls returned. 'worker' is in
 * [0, st_pool_size(p)) and lets callers keep per-thread state (zstd contexts).
 * One thread drives a pool at a time.
 */
#pragma once

#include <stddef.h>

typedef struct st_pool st_pool;
typedef void (*st_pool_fn)(void *ctx, size_t i, unsigned worker);

/* n_threads = 0: one per online CPU. Returns NULL on failure. */
st_pool *st_pool_new(unsigned n_threads);
st_pool *st_pool_free(st_pool *p);
unsigned st_pool_size(const st_pool *p);
/* Callers from several threads take turns (fn must not call st_pool_for). */
void st_pool_for(st_pool *p, size_t n, st_pool_fn fn, void *ctx);
