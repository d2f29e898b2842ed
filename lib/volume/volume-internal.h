/* SPDX-License-Identifier: Apache-2.0 */
/* What export needs from an open volume: its content as runs. */
#pragma once

#include <stellar/volume.h>

#include "../store/store-api.h"
#include "view.h"

typedef enum volume_run_kind {
        VRUN_ZERO,
        VRUN_CHUNK, /* bytes [off - ext->off, + len) of chunk ext->hash */
        VRUN_DELTA, /* bytes [off % 4096, + len) of delta slot 'slot' (within one block) */
} volume_run_kind;

typedef struct volume_run {
        uint64_t off, len;
        volume_run_kind kind;
        const manifest_extent *ext;
        uint64_t slot;
} volume_run;

/* The run at off, ending at the first change of source or at limit. The
 * caller keeps the volume from changing meanwhile (read-only handle). */
void volume_run_at(st_volume *v, uint64_t off, uint64_t limit, volume_run *ret);
/* volume_run_at with a hint for the manifest chain (view_run_near). */
void volume_run_near(st_volume *v, uint64_t off, uint64_t limit, view_hint *h, volume_run *ret);
/* Block's data from its delta slot, checked against its sum (-EBADMSG). */
/* Verify the data of volume name's delta through this process's open
 * writable handle: as delta_verify, or -ENOENT if it is not open here. */
int volume_verify_open(st_store *s, const char *name, uint64_t *ret_block, uint64_t *ret_slot);
int volume_read_slot(st_volume *v, uint64_t block, uint64_t slot, void *buf);
st_store *volume_store(st_volume *v);
