/* SPDX-License-Identifier: Apache-2.0 */
/* Ref encoding and validation; see ref.h. */
#include <errno.h>
#include <string.h>

#include <stellar/hash.h>
#include <stellar/store.h>

#include "../util/diag.h"
#include "../util/le.h"
#include "ref.h"

/* Layout: magic 8, version 4, fixed length 4, kind 4, name length 4, size 8,
 * ctime 8, manifest 32, reserved 32, parent name, then 8 bytes of BLAKE3 of
 * everything before. */
uint64_t ref_name_sum(const char *name) {
        st_digest d;
        st_hash(name, strlen(name), &d);
        uint64_t v = st_le64_get(d.b);
        return v ? v : 1; /* 0 means "none" */
}

size_t ref_encode(const store_ref *r, uint8_t *out) {
        size_t nl = strnlen(r->parent, REF_NAME_MAX);
        memset(out, 0, REF_FIXED_LEN - 8);
        memcpy(out, REF_MAGIC, 8);
        st_le32_put(out + 8, r->name_sum ? REF_VERSION : 1u);
        st_le64_put(out + 72, r->name_sum);
        st_le32_put(out + 12, REF_FIXED_LEN);
        st_le32_put(out + 16, r->kind);
        st_le32_put(out + 20, (uint32_t)nl);
        st_le64_put(out + 24, r->size);
        st_le64_put(out + 32, r->ctime_ns);
        memcpy(out + 40, r->manifest.b, 32);
        memcpy(out + 104, r->parent, nl);
        st_digest d;
        st_hash(out, 104 + nl, &d);
        memcpy(out + 104 + nl, d.b, 8);
        return REF_FIXED_LEN + nl;
}

int ref_parse(const uint8_t *buf, size_t len, store_ref *ret, st_diag *reterr) {
        if (len < REF_FIXED_LEN)
                return st_diag_fail(reterr, NULL, len, "ref truncated", -EBADMSG);
        if (memcmp(buf, REF_MAGIC, 8) != 0)
                return st_diag_fail(reterr, NULL, 0, "not a ref (bad magic)", -EBADMSG);
        uint32_t version = st_le32_get(buf + 8);
        if (version != 1 && version != REF_VERSION)
                return st_diag_fail(reterr, NULL, 8, "unknown ref format version", -EPROTONOSUPPORT);
        if (st_le32_get(buf + 12) != REF_FIXED_LEN)
                return st_diag_fail(reterr, NULL, 12, "bad ref header length", -EBADMSG);
        uint32_t nl = st_le32_get(buf + 20);
        if (nl > REF_NAME_MAX || len != REF_FIXED_LEN + nl)
                return st_diag_fail(reterr, NULL, 20, "ref length does not match its name", -EBADMSG);
        st_digest d;
        st_hash(buf, 104 + nl, &d);
        if (memcmp(d.b, buf + 104 + nl, 8) != 0)
                return st_diag_fail(reterr, NULL, 104 + nl, "ref checksum mismatch", -EBADMSG);
        uint64_t name_sum = st_le64_get(buf + 72);
        if (version == 2 && name_sum == 0)
                return st_diag_fail(reterr, NULL, 72, "ref without its name sum", -EBADMSG);
        for (size_t i = version == 1 ? 72 : 80; i < 104; i++)
                if (buf[i])
                        return st_diag_fail(reterr, NULL, i, "reserved ref bytes are not zero",
                                            -EBADMSG);
        store_ref r = {
                .kind = st_le32_get(buf + 16),
                .size = st_le64_get(buf + 24),
                .ctime_ns = st_le64_get(buf + 32),
                .name_sum = version == 1 ? 0 : name_sum,
        };
        if (r.kind != ST_KIND_IMAGE && r.kind != ST_KIND_SNAPSHOT && r.kind != ST_KIND_VOLUME)
                return st_diag_fail(reterr, NULL, 16, "unknown ref kind", -EBADMSG);
        if (r.size > (1ull << 50))
                return st_diag_fail(reterr, NULL, 24, "size out of range", -EBADMSG);
        memcpy(r.manifest.b, buf + 40, 32);
        memcpy(r.parent, buf + 104, nl);
        r.parent[nl] = 0;
        if (nl && (strlen(r.parent) != nl || !st_name_valid(r.parent)))
                return st_diag_fail(reterr, NULL, 104, "bad parent name", -EBADMSG);
        *ret = r;
        return 0;
}
