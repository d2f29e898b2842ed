/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The few elements of an S3 ListObjectsV2 answer we need: <Key>,
 * <IsTruncated>, <NextContinuationToken>. A bounded scan, not a general XML
 * parser: the answer is from a server, so it is treated as hostile.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "target.h"

/* The text between <tag> and </tag> starting the search at *p: decoded into
 * out (at most out_len - 1 bytes). 1 found, 0 none, -EBADMSG. */
static int element(const char **p, const char *end, const char *tag, char *out, size_t out_len) {
        char open[64], close[64];
        snprintf(open, sizeof open, "<%s>", tag);
        snprintf(close, sizeof close, "</%s>", tag);
        const char *a = memmem(*p, (size_t)(end - *p), open, strlen(open));
        if (!a)
                return 0;
        a += strlen(open);
        const char *b = memmem(a, (size_t)(end - a), close, strlen(close));
        if (!b)
                return -EBADMSG;
        size_t k = 0;
        for (const char *c = a; c < b; c++) {
                char ch = *c;
                if (ch == '&') {
                        static const struct {
                                const char *ent;
                                char ch;
                        } ents[] = { { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
                                     { "&quot;", '"' }, { "&apos;", '\'' } };
                        size_t i;
                        for (i = 0; i < 5; i++) {
                                size_t n = strlen(ents[i].ent);
                                if ((size_t)(b - c) >= n && !memcmp(c, ents[i].ent, n)) {
                                        ch = ents[i].ch;
                                        c += n - 1;
                                        break;
                                }
                        }
                        if (i == 5)
                                return -EBADMSG;
                }
                if (ch == 0 || k + 1 >= out_len)
                        return -EBADMSG;
                out[k++] = ch;
        }
        out[k] = 0;
        *p = b + strlen(close);
        return 1;
}

int s3_list_parse(const char *xml, size_t len, int (*fn)(void *ctx, const char *key), void *ctx,
                  char *ret_token, size_t token_len) {
        const char *end = xml + len, *p = xml;
        if (!memmem(xml, len, "<ListBucketResult", 17))
                return -EBADMSG;
        char key[1100], trunc[16] = "";
        int r;
        while ((r = element(&p, end, "Key", key, sizeof key)) == 1)
                if (fn && (r = fn(ctx, key)) < 0)
                        return r;
        if (r < 0)
                return r;
        p = xml;
        r = element(&p, end, "IsTruncated", trunc, sizeof trunc);
        if (r < 0)
                return r;
        ret_token[0] = 0;
        if (!strcmp(trunc, "true")) {
                p = xml;
                r = element(&p, end, "NextContinuationToken", ret_token, token_len);
                if (r <= 0 || !ret_token[0])
                        return -EBADMSG; /* truncated, but no way to go on */
        }
        return 0;
}
