/* SPDX-License-Identifier: Apache-2.0 */
/* Umbrella header of libstellar. */
#pragma once

#include <stellar/chunker.h>
#include <stellar/common.h>
#include <stellar/hash.h>
#include <stellar/remote.h>
#include <stellar/store.h>
