#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The layout's rules, checked on the sources (the build enforces the rest:
# the front ends link the shared library, which exports the public API
# alone):
#   - lib/store includes nothing of lib/volume or lib/remote (no cycle);
#   - lib/volume and lib/remote see the store only through store-api.h and
#     the value types it is made of (manifest.h, ref.h, ingest.h), never
#     store-internal.h, the index or the packs;
#   - the front ends (cli/, daemon/) include only <stellar/...> headers and
#     their own, nothing under lib/.
# Each offending line is printed with its file and line number.
set -euo pipefail
root=${1:?usage: layering.sh SOURCE_ROOT}
cd "$root"
bad=0
check() { # WHAT FILES... : print the lines of FILES matching the regex $re
        local what=$1
        shift
        local out
        if out=$(grep -nE "$re" "$@" 2>/dev/null); then
                printf '%s\n' "$out" | sed "s/^/layering: $what: /" >&2
                bad=1
        fi
}
re='#include "\.\./(volume|remote)/'
check "lib/store reaches up into volume or remote" lib/store/*.[ch]
re='#include "\.\./store/(store-internal|index|pack|cache)\.h"|#include "\.\./store/[a-z-]*\.c"'
check "past the store's narrow API" lib/volume/*.[ch] lib/remote/*.[ch]
re='#include "\.\./store/' # anything else of the store must be one of these
out=$(grep -nE "$re" lib/volume/*.[ch] lib/remote/*.[ch] |
        grep -vE '"\.\./store/(store-api|manifest|ref|ingest)\.h"' || true)
if [ -n "$out" ]; then printf '%s\n' "$out" | sed 's/^/layering: unknown store header: /' >&2; bad=1; fi
re='#include "(\.\./)+lib/'
check "a front end past the public headers" cli/*.[ch] daemon/*.[ch] daemon/*/*.[ch]
# Nothing outside lib/store names the store's fields.
re='->(idx|packs|refs_fd|deltas_fd|write_lock|hot|remote_ctx|volumes_lock)\b'
check "st_store's fields outside lib/store" lib/volume/*.c lib/remote/*.c
[ $bad = 0 ] || exit 1
echo "layering: ok"
