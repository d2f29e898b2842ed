/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for json_manifest_parse, the published (JSON) manifest that a
 * pull reads from any server. Whatever parses must satisfy the layer
 * invariants, and encode and parse back to the same layer.
 */
#include <errno.h>

#include <stellar/chunker.h>

#include "fuzz.h"
#include "remote/manifest-json.h"

static void same(const manifest *a, const manifest *b) {
        FUZZ_ASSERT(a->size == b->size && a->n == b->n && a->ctime_ns == b->ctime_ns);
        FUZZ_ASSERT(!memcmp(&a->chunker, &b->chunker, sizeof a->chunker));
        FUZZ_ASSERT(!memcmp(&a->parent, &b->parent, sizeof a->parent));
        for (size_t i = 0; i < a->n; i++)
                FUZZ_ASSERT(a->ext[i].off == b->ext[i].off && a->ext[i].len == b->ext[i].len &&
                            !memcmp(&a->ext[i].hash, &b->ext[i].hash, sizeof(st_digest)));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        manifest *m = NULL;
        st_diag d = { 0 };
        int r = json_manifest_parse(data, len, &m, &d);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG || r == -EPROTONOSUPPORT || r == -ENOMEM || r == -EFBIG);
                FUZZ_ASSERT(r == -ENOMEM || d.what != NULL);
                return 0;
        }
        FUZZ_ASSERT(m && m->n <= MANIFEST_EXTENTS_MAX && m->size <= MANIFEST_SIZE_MAX);
        FUZZ_ASSERT(st_chunker_params_check(&m->chunker) == 0);
        for (size_t i = 0; i < m->n; i++) {
                FUZZ_ASSERT(m->ext[i].len > 0 && m->ext[i].len <= ST_CHUNK_MAX_LIMIT);
                FUZZ_ASSERT(m->ext[i].off + m->ext[i].len <= m->size);
                FUZZ_ASSERT(i == 0 || m->ext[i - 1].off + m->ext[i - 1].len <= m->ext[i].off);
                FUZZ_ASSERT(manifest_has_parent(m) || !manifest_hash_is_hole(&m->ext[i].hash));
        }
        char *js = NULL;
        size_t js_len = 0;
        FUZZ_ASSERT(json_manifest_encode(m, manifest_has_parent(m) ? &m->parent : NULL, &js,
                                         &js_len) == 0);
        manifest *m2 = NULL;
        FUZZ_ASSERT(json_manifest_parse((const uint8_t *)js, js_len, &m2, &d) == 0);
        same(m, m2);
        free(js);
        manifest_free(m2);
        manifest_free(m);
        return 0;
}
