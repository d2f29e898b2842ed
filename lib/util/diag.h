/* SPDX-License-Identifier: Apache-2.0 */
/* Filling st_diag: where a parser or an operation gave up. */
#pragma once

#include <string.h>

#include <stellar/common.h>

/* Set offset and reason; file too unless it is NULL. Returns err, so parsers
 * can write 'return st_diag_fail(d, NULL, off, "why", -EBADMSG);'. */
static inline int st_diag_fail(st_diag *d, const char *file, uint64_t off, const char *what,
                               int err) {
        if (d) {
                if (file) {
                        size_t n = strnlen(file, sizeof d->file - 1);
                        memcpy(d->file, file, n);
                        d->file[n] = 0;
                }
                d->offset = off;
                d->what = what;
        }
        return err;
}
