/* SPDX-License-Identifier: Apache-2.0 */
/* Internal: the gear table shared by the chunker's code paths. */
#pragma once

#include <stdint.h>

extern const uint64_t st_gear_table[256];
