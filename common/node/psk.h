/*
 * psk.h: the pre-shared key file that authenticates the two nodes to each
 * other (DESIGN.md §8).
 *
 * A key file holds 32 random bytes, either raw or as 64 hex digits with an
 * optional newline (what colo_psk_generate and `colo-ctl keygen FILE` write).
 * It must be a regular file nobody but its owner can read or write: a key
 * others can read authenticates nobody, so such a file is refused rather
 * than used with a warning.
 *
 * A node loads it once at start ([security] psk-file, node_sec.c); the
 * heartbeats (hb.h) and the replication handshake (hello.h) derive their
 * own subkeys from it.  docs/security.md says what it protects.
 *
 * Memory: the caller owns the key buffer and should wipe it with
 * sodium_memzero once done; every copy made here is wiped before return.
 * Thread-safety: the functions keep no state and may be called from any
 * thread (libsodium's own initialisation is thread-safe).
 */
#ifndef COLO_PSK_H
#define COLO_PSK_H

#include <stdint.h>

#include "err.h"

#define COLO_PSK_BYTES 32

/* Initialise libsodium (idempotent); fails only if it cannot run here. */
int colo_sodium_init(struct colo_err *err);

/* Read the key in path into key; a refused file says why, naming it. */
int colo_psk_load(const char *path, uint8_t key[COLO_PSK_BYTES], struct colo_err *err);

/* Write a new random key to path (64 hex digits and a newline, mode 0600);
 * an existing file is never overwritten. */
int colo_psk_generate(const char *path, struct colo_err *err);

#endif
