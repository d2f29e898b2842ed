/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a published name and its manifest chain (pull.c), shared with
 * the on-demand fetcher (sources.c). */
#pragma once

#include "chain.h"
#include "target.h"

/* refs/NAME: the top manifest's JSON id. *bytes grows by what was read. */
int pull_read_ref(target *t, const char *name, st_digest *ret, uint64_t *bytes, st_diag *reterr);
/* The chain from top down, each layer verified against its id and parsed;
 * returned bottom first, parents still JSON ids. */
int pull_read_chain(target *t, const st_digest *top, layer_chain *ret, uint64_t *bytes,
                    st_diag *reterr);
/* Re-link the layers by their binary ids (as stored here); *ret_top is the
 * id the local name will point to. */
int pull_local_ids(layer_chain *c, st_digest *ret_top);
