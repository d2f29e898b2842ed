/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <stellar/chunker.h>

#include "../util/diag.h"
#include "manifest-json.h"

int json_manifest_encode(const manifest *m, const st_digest *json_parent, char **ret,
                         size_t *ret_len) {
        json_t *root = json_object(), *ext = json_array(), *ch = json_object();
        int r = -ENOMEM;
        if (!root || !ext || !ch)
                goto done;
        char hex[ST_DIGEST_HEX_LEN + 1];
        bool ok = json_object_set_new(root, "version", json_integer(JSON_MANIFEST_VERSION)) == 0 &&
                  json_object_set_new(root, "size", json_integer((json_int_t)m->size)) == 0 &&
                  json_object_set_new(root, "ctime_ns", json_integer((json_int_t)m->ctime_ns)) == 0 &&
                  json_object_set_new(ch, "align", json_integer(m->chunker.align)) == 0 &&
                  json_object_set_new(ch, "min", json_integer(m->chunker.min_size)) == 0 &&
                  json_object_set_new(ch, "avg", json_integer(m->chunker.avg_size)) == 0 &&
                  json_object_set_new(ch, "max", json_integer(m->chunker.max_size)) == 0 &&
                  json_object_set(root, "chunker", ch) == 0;
        if (ok && json_parent) {
                st_digest_to_hex(json_parent, hex);
                ok = json_object_set_new(root, "parent", json_string(hex)) == 0;
        }
        for (size_t i = 0; ok && i < m->n; i++) {
                const manifest_extent *e = &m->ext[i];
                json_t *a = json_array();
                ok = a && json_array_append_new(a, json_integer((json_int_t)e->off)) == 0 &&
                     json_array_append_new(a, json_integer(e->len)) == 0;
                if (ok && !manifest_hash_is_hole(&e->hash)) {
                        st_digest_to_hex(&e->hash, hex);
                        ok = json_array_append_new(a, json_string(hex)) == 0;
                }
                ok = ok && json_array_append_new(ext, a) == 0;
                if (!ok && a)
                        json_decref(a);
        }
        if (!ok || json_object_set(root, "extents", ext) < 0)
                goto done;
        char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s)
                goto done;
        *ret = s;
        *ret_len = strlen(s);
        r = 0;
done:
        json_decref(root);
        json_decref(ext);
        json_decref(ch);
        return r;
}

static int bad(st_diag *d, uint64_t off, const char *what) {
        return st_diag_fail(d, NULL, off, what, -EBADMSG);
}

/* An integer in [0, max]. */
static bool get_uint(json_t *v, uint64_t max, uint64_t *ret) {
        if (!json_is_integer(v))
                return false;
        json_int_t x = json_integer_value(v);
        if (x < 0 || (uint64_t)x > max)
                return false;
        *ret = (uint64_t)x;
        return true;
}

static bool get_hex(json_t *v, st_digest *ret) {
        if (!json_is_string(v) || json_string_length(v) != ST_DIGEST_HEX_LEN)
                return false;
        const char *s = json_string_value(v);
        for (size_t i = 0; i < ST_DIGEST_HEX_LEN; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false; /* lowercase only: one spelling per name */
        return st_digest_from_hex(s, ret) == 0;
}

static int parse_chunker(json_t *c, st_chunker_params *p, st_diag *d) {
        uint64_t v[4];
        static const char *const keys[] = { "align", "min", "avg", "max" };
        if (!json_is_object(c))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: 'chunker' is missing or not an object");
        for (size_t i = 0; i < 4; i++)
                if (!get_uint(json_object_get(c, keys[i]), ST_CHUNK_MAX_LIMIT, &v[i]))
                        return bad(d, ST_DIAG_NO_OFFSET, "manifest: bad chunker parameter");
        *p = (st_chunker_params){ (uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2], (uint32_t)v[3] };
        if (st_chunker_params_check(p) < 0)
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: bad chunker parameters");
        return 0;
}

static int parse_root(json_t *root, manifest **ret, st_diag *d) {
        if (!json_is_object(root))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: not a JSON object");
        json_t *ver = json_object_get(root, "version");
        uint64_t version;
        if (!get_uint(ver, UINT32_MAX, &version))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: 'version' is missing or not a number");
        if (version != JSON_MANIFEST_VERSION)
                return st_diag_fail(d, NULL, ST_DIAG_NO_OFFSET,
                                    "manifest: unknown version (this stellar reads version 1)",
                                    -EPROTONOSUPPORT);
        uint64_t size, ctime = 0;
        if (!get_uint(json_object_get(root, "size"), MANIFEST_SIZE_MAX, &size))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: 'size' is missing or out of range");
        json_t *ct = json_object_get(root, "ctime_ns");
        if (ct && !get_uint(ct, INT64_MAX, &ctime))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: bad 'ctime_ns'");
        st_chunker_params cp;
        int r = parse_chunker(json_object_get(root, "chunker"), &cp, d);
        if (r < 0)
                return r;
        st_digest parent = { 0 };
        json_t *pv = json_object_get(root, "parent");
        if (pv && (!get_hex(pv, &parent) || manifest_hash_is_hole(&parent)))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: bad 'parent' (not 64 lowercase hex)");
        json_t *ext = json_object_get(root, "extents");
        if (!json_is_array(ext))
                return bad(d, ST_DIAG_NO_OFFSET, "manifest: 'extents' is missing or not an array");
        size_t n = json_array_size(ext);
        if (n > MANIFEST_EXTENTS_MAX)
                return st_diag_fail(d, NULL, ST_DIAG_NO_OFFSET, "manifest: too many extents",
                                    -EFBIG);
        manifest *m = manifest_new(size, &cp, &parent);
        if (!m)
                return -ENOMEM;
        m->ctime_ns = ctime;
        uint64_t end = 0;
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(ext, i);
                size_t k = json_is_array(e) ? json_array_size(e) : 0;
                uint64_t off, len;
                st_digest h = { 0 };
                if ((k != 2 && k != 3) || !get_uint(json_array_get(e, 0), size, &off) ||
                    !get_uint(json_array_get(e, 1), size, &len) || len == 0) {
                        manifest_free(m);
                        return bad(d, ST_DIAG_NO_OFFSET, "manifest: an extent is not [offset, length, hash] or [offset, length]");
                }
                if (off < end || off + len > size) {
                        manifest_free(m);
                        return bad(d, ST_DIAG_NO_OFFSET, off < end ? "manifest: extents overlap or are out of order"
                                                   : "manifest: extent past the end of the image");
                }
                if (k == 3) {
                        if (len > ST_CHUNK_MAX_LIMIT || !get_hex(json_array_get(e, 2), &h) ||
                            manifest_hash_is_hole(&h)) {
                                manifest_free(m);
                                return bad(d, ST_DIAG_NO_OFFSET, "manifest: bad chunk extent (length or hash)");
                        }
                        r = manifest_append(m, off, (uint32_t)len, &h);
                } else {
                        if (manifest_hash_is_hole(&parent)) {
                                manifest_free(m);
                                return bad(d, ST_DIAG_NO_OFFSET, "manifest: a hole extent in a layer without parent");
                        }
                        r = manifest_append_hole(m, off, len);
                }
                if (r < 0) {
                        manifest_free(m);
                        return r == -EINVAL ? bad(d, ST_DIAG_NO_OFFSET, "manifest: extent rejected") : r;
                }
                end = off + len;
        }
        *ret = m;
        return 0;
}

int json_manifest_parse(const uint8_t *buf, size_t len, manifest **ret, st_diag *reterr) {
        if (len > JSON_MANIFEST_MAX)
                return st_diag_fail(reterr, NULL, ST_DIAG_NO_OFFSET, "manifest: file too large",
                                    -EFBIG);
        /* Count the values before building them: a hostile file of tiny
         * values ("[0,0],...") would cost the parser 20 times its size. */
        size_t n_values = 1;
        for (size_t i = 0; i < len; i++)
                n_values += buf[i] == ',' || buf[i] == '[' || buf[i] == '{';
        if (n_values > JSON_MANIFEST_VALUES_MAX)
                return st_diag_fail(reterr, NULL, ST_DIAG_NO_OFFSET,
                                    "manifest: too many values", -EFBIG);
        json_error_t err;
        json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return bad(reterr, (uint64_t)(err.position < 0 ? 0 : err.position),
                           "manifest: not valid JSON");
        int r = parse_root(root, ret, reterr);
        json_decref(root);
        return r;
}
