/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for index_log_apply, the store's 'index.log', applied over a
 * bare st_store whose index is empty (its trailer sum all zeros, which the
 * corpus's logs name). Whatever applies must leave a pack table and entries
 * that the rest of the store may trust: packs sorted and in range, every
 * entry inside its pack and found by its own prefix.
 */
#include <errno.h>

#include "fuzz-store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        st_store *s = calloc(1, sizeof *s);
        if (!s || !(s->idx = index_new()))
                abort();
        s->dirfd = s->packs_fd = s->manifests_fd = s->refs_fd = s->deltas_fd = s->lock_fd = -1;
        s->log_fd = -1;
        s->next_pack_id = 1;
        st_diag d = { 0 };
        size_t end = 0;
        int r = index_log_apply(s, data, len, &end, &d);
        FUZZ_ASSERT(r == 0 || r == 1 || r == -EBADMSG || r == -ENOMEM);
        if (r != 0)
                FUZZ_ASSERT(r == -ENOMEM || (d.what && (d.offset <= len)));
        FUZZ_ASSERT(end <= len);
        if (r == 0 && end > 0)
                FUZZ_ASSERT(end == len);
        fuzz_check_index(s);
        free(s->packs);
        index_free(s->idx);
        free(s);
        return 0;
}
