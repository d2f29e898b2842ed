/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by publish and pull: sets of chunk ids, and a name's chain
 * of manifest layers, bottom first. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../store/store-api.h"

typedef struct digest_set {
        st_digest *v;
        size_t n, cap;
        bool sealed;
} digest_set;

int digest_set_add(digest_set *d, const st_digest *id);
/* Sort and drop duplicates; has() needs it. */
void digest_set_seal(digest_set *d);
bool digest_set_has(const digest_set *d, const st_digest *id);
void digest_set_free(digest_set *d);

typedef struct layer_chain {
        manifest **layers; /* bottom first */
        size_t n;
} layer_chain;

/* Layers are collected top-down (following parents); make them bottom first. */
void chain_reverse(layer_chain *c);
/* The layers of a local name (an empty volume gets one empty layer). */
int chain_load_local(st_store *s, const char *name, layer_chain *ret, st_diag *reterr);
/* The distinct chunks the layers name, sorted (caller frees *ret), their
 * lengths (*ret_lens, parallel, if wanted; caller frees) and the sum of
 * those. -EBADMSG if two extents give one chunk different lengths. */
int chain_chunks(const layer_chain *c, const st_digest **ret, size_t *ret_n, uint32_t **ret_lens,
                 uint64_t *ret_bytes);
void chain_free(layer_chain *c);
