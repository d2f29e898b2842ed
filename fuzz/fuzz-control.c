/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the daemon's control socket parser (daemon/control-proto.c):
 * every request a client of DIR/control.sock sends passes
 * control_header_parse and control_body_parse before anything runs. The bytes
 * come from a local client with no checksum, so there is no sealed run.
 *
 * Input: the request as sent (header, then body).
 * Checks: the header is accepted exactly when its magic is right, its
 * reserved word zero and its body length between 4 and CONTROL_MAX_LEN; the
 * body exactly when an independent split (a count, then that many
 * NUL-terminated strings filling the rest) agrees; the arguments lie inside
 * the body; and what parses re-encodes (control_request_encode) to the same
 * bytes.
 */
#include <errno.h>

#include "control-proto.h"
#include "fuzz.h"
#include "util/le.h"

static bool model_body(const uint8_t *b, size_t len, uint32_t *ret_argc) {
        if (len < 4 || len > CONTROL_MAX_LEN)
                return false;
        uint32_t argc = st_le32_get(b);
        if (argc < 1 || argc > CONTROL_MAX_ARGS)
                return false;
        size_t off = 4;
        for (uint32_t i = 0; i < argc; i++) {
                while (off < len && b[off])
                        off++;
                if (off >= len)
                        return false;
                off++;
        }
        *ret_argc = argc;
        return off == len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
        uint32_t body_len = 0;
        int r = control_header_parse(data, len, &body_len, NULL);
        bool want = len >= CONTROL_HEADER_LEN && memcmp(data, CONTROL_MAGIC, 8) == 0 &&
                    st_le32_get(data + 12) == 0 && st_le32_get(data + 8) >= 4 &&
                    st_le32_get(data + 8) <= CONTROL_MAX_LEN;
        FUZZ_ASSERT((r == 0) == want);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG);
                return 0;
        }
        FUZZ_ASSERT(body_len == st_le32_get(data + 8));
        /* the body: what follows the header, whatever its announced length */
        const uint8_t *body = data + CONTROL_HEADER_LEN;
        size_t n = len - CONTROL_HEADER_LEN;
        char *argv[CONTROL_MAX_ARGS + 1];
        int argc = 0;
        uint32_t model_argc = 0;
        bool ok = model_body(body, n, &model_argc);
        r = control_body_parse(body, n, argv, &argc, NULL);
        FUZZ_ASSERT((r == 0) == ok);
        if (r < 0) {
                FUZZ_ASSERT(r == -EBADMSG);
                return 0;
        }
        FUZZ_ASSERT((uint32_t)argc == model_argc && argv[argc] == NULL);
        for (int i = 0; i < argc; i++)
                FUZZ_ASSERT((const uint8_t *)argv[i] >= body + 4 &&
                            (const uint8_t *)argv[i] + strlen(argv[i]) < body + n);
        uint8_t *enc = malloc(CONTROL_HEADER_LEN + CONTROL_MAX_LEN);
        if (!enc)
                abort();
        int k = control_request_encode(argc, argv, enc, CONTROL_HEADER_LEN + CONTROL_MAX_LEN);
        FUZZ_ASSERT(k == (int)(CONTROL_HEADER_LEN + n));
        FUZZ_ASSERT(memcmp(enc + CONTROL_HEADER_LEN, body, n) == 0);
        FUZZ_ASSERT(st_le32_get(enc + 8) == n);
        free(enc);
        return 0;
}
