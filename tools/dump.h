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

/*
 * The pieces of a description that other printers (colo-replay's commands
 * on recordings) share, so that names, page counts and device values read
 * the same everywhere.
 */

/* A name from a stream (bytes, not necessarily UTF-8) as a JSON string:
 * a byte that is not valid UTF-8 becomes the text \xNN.  NULL when out of
 * memory. */
struct json_t *colo_dump_name_json(const char *s);

/* Page counts by kind (indexed by enum colo_page_kind) as an object
 * {"zero": 64, "page": 192}; kinds with no page are left out. */
struct json_t *colo_dump_pages_json(const uint64_t *pages);

/* Such an object as "256 pages (64 zero, 192 page)".  one is the word
 * after a total of exactly one: dump's text has always said "1 pages"
 * (its golden transcript), replay's says "1 page". */
void colo_dump_print_pages(const struct json_t *pages, const char *one, FILE *out);

/*
 * A decoded value (colo_vmdesc_decode) as text: a number, true or false,
 * or a string: hex that holds text (and NUL padding) as "text" + N NUL,
 * other hex as is (cut after 32 bytes), other strings ("nan") as they
 * are.  An array prints as [a, b, ...] with its first 8 elements.
 */
void colo_dump_print_value(const struct json_t *v, FILE *out);

#endif
