/* SPDX-License-Identifier: Apache-2.0 */
/* Encoding and parsing of control requests; see control-proto.h. */
#include <errno.h>
#include <string.h>

#include "control-proto.h"

/* A malformed request: where (from the request's start) and why. */
static int bad(st_diag *d, uint64_t off, const char *what) {
        if (d) {
                d->offset = off;
                d->what = what;
        }
        return -EBADMSG;
}

int control_request_encode(int argc, char *const *argv, uint8_t *buf, size_t cap) {
        if (argc < 1 || (unsigned)argc > CONTROL_MAX_ARGS ||
            cap < CONTROL_HEADER_LEN + CONTROL_MAX_LEN)
                return -E2BIG;
        size_t len = 4;
        for (int i = 0; i < argc; i++) {
                size_t n = strlen(argv[i]) + 1;
                if (n > CONTROL_MAX_LEN - len)
                        return -E2BIG;
                memcpy(buf + CONTROL_HEADER_LEN + len, argv[i], n);
                len += n;
        }
        memcpy(buf, CONTROL_MAGIC, 8);
        le32_put(buf + 8, (uint32_t)len);
        le32_put(buf + 12, 0);
        le32_put(buf + CONTROL_HEADER_LEN, (uint32_t)argc);
        return (int)(CONTROL_HEADER_LEN + len);
}

int control_header_parse(const uint8_t *p, size_t len, uint32_t *ret_body_len, st_diag *reterr) {
        if (len < CONTROL_HEADER_LEN)
                return bad(reterr, len, "control request truncated");
        if (memcmp(p, CONTROL_MAGIC, 8) != 0)
                return bad(reterr, 0, "not a control request (bad magic)");
        uint32_t n = le32_get(p + 8);
        if (n < 4 || n > CONTROL_MAX_LEN)
                return bad(reterr, 8, "control request length out of range");
        if (le32_get(p + 12) != 0)
                return bad(reterr, 12, "reserved bytes are not zero");
        *ret_body_len = n;
        return 0;
}

int control_body_parse(const uint8_t *body, size_t len, char **ret_argv, int *ret_argc,
                       st_diag *reterr) {
        if (len < 4 || len > CONTROL_MAX_LEN)
                return bad(reterr, 0, "control request length out of range");
        uint32_t argc = le32_get(body);
        if (argc < 1 || argc > CONTROL_MAX_ARGS)
                return bad(reterr, 0, "argument count out of range");
        size_t off = 4;
        for (uint32_t i = 0; i < argc; i++) {
                const uint8_t *nul = off < len ? memchr(body + off, 0, len - off) : NULL;
                if (!nul)
                        return bad(reterr, off, "argument not terminated");
                ret_argv[i] = (char *)(body + off);
                off = (size_t)(nul - body) + 1;
        }
        if (off != len)
                return bad(reterr, off, "bytes after the last argument");
        ret_argv[argc] = NULL;
        *ret_argc = (int)argc;
        return 0;
}
