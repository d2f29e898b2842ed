/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The control socket's wire format (DIR/control.sock, a Unix stream socket
 * the daemon owns, mode 0600): one request, one reply per connection.
 *
 * Request, with three descriptors passed alongside (SCM_RIGHTS): the
 * client's stdout, stderr and working directory:
 *   header: magic "STCTL\0\0\1" (8), length of the body (u32 LE), zero (u32);
 *   body: argc (u32 LE), then argc NUL-terminated strings: a stellar verb
 *   and its arguments.
 * Reply: one byte 'R' once the request is accepted and the command starts
 * (a connection that ends before it ran nothing: the client may try again,
 * or run the command itself once no daemon answers), then the command's exit
 * status (i32 LE) when it has finished; its output went straight to the
 * client's descriptors.
 * Parsing is the only place the daemon reads these bytes (fuzz/fuzz-control.c).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <stellar/common.h>

#include "le.h"

#define CONTROL_MAGIC "STCTL\0\0\1"
#define CONTROL_HEADER_LEN 16u
#define CONTROL_MAX_LEN 65536u /* bytes after the header */
#define CONTROL_MAX_ARGS 256u
#define CONTROL_FDS 3u /* stdout, stderr, working directory */
#define CONTROL_STARTED 'R'

/* Encode argv into buf (at least CONTROL_HEADER_LEN + CONTROL_MAX_LEN
 * bytes). Returns the length, or -E2BIG if it does not fit the limits. */
int control_request_encode(int argc, char *const *argv, uint8_t *buf, size_t cap);

/* Check the header of a request: 0 and the length of its body, or -EBADMSG
 * (bad magic, body over CONTROL_MAX_LEN). */
int control_header_parse(const uint8_t *p, size_t len, uint32_t *ret_body_len, st_diag *reterr);

/* Split a body into argv: pointers into body (which must stay valid), at
 * most CONTROL_MAX_ARGS, each NUL-terminated inside it, nothing after the
 * last; argv[argc] is NULL. -EBADMSG otherwise. */
int control_body_parse(const uint8_t *body, size_t len, char **ret_argv, int *ret_argc,
                       st_diag *reterr);
