/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The published form of a manifest layer (docs/formats/remote.md): compact
 * JSON with sorted keys, named by the BLAKE3 of its bytes. Parsing treats
 * the bytes as hostile.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../store/manifest.h"

#define JSON_MANIFEST_VERSION 1
#define JSON_MANIFEST_MAX (384u << 20) /* bytes of one manifest file */
/* JSON values in one manifest (4 an extent): bounds the parser's memory,
 * about 64 bytes a value, whatever the bytes are. */
#define JSON_MANIFEST_VALUES_MAX (16u << 20)

/* Encode m; its parent is given as the id of the parent's JSON form (NULL:
 * none), since JSON and binary ids differ. Caller frees *ret. */
int json_manifest_encode(const manifest *m, const st_digest *json_parent, char **ret,
                         size_t *ret_len);

/* Parse and validate. On success *ret holds the layer with m->parent set to
 * the parent's JSON id (zero: none). -EBADMSG (bad or inconsistent),
 * -EPROTONOSUPPORT (unknown version), -EFBIG, -ENOMEM; *reterr says where. */
int json_manifest_parse(const uint8_t *buf, size_t len, manifest **ret, st_diag *reterr);
