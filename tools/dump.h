/*
 * dump.h: `colo-replay dump`: read a whole savevm v3 stream (colo's or a
 * real QEMU migration file) to its last byte and describe it: header,
 * configuration, every section and command in order, RAM blocks with page
 * counts by kind, each device's fields decoded through the vmdesc.
 *
 * The description is one JSON document (printed as is with --json, or as
 * text); the caller owns it.  A malformed stream yields no document and a
 * one-line message naming what is wrong and at which byte offset.
 */
#ifndef COLO_TOOLS_DUMP_H
#define COLO_TOOLS_DUMP_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

struct json_t;

/*
 * Describe a whole stream held in memory.  The reader is fed in pieces of
 * the sizes piece(ctx) returns (all at once when piece is NULL); the result
 * does not depend on them.
 */
int colo_dump_buffer(const uint8_t *data, size_t len, size_t (*piece)(void *ctx),
		     void *ctx, struct json_t **doc, struct colo_err *err);

/* Read path and describe it. */
int colo_dump_file(const char *path, struct json_t **doc, struct colo_err *err);

/* Print a description as text. */
void colo_dump_print_text(const struct json_t *doc, FILE *out);

#endif
