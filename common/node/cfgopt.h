/*
 * cfgopt.h: one configuration key as a table entry, and setting it from
 * its text (DESIGN.md §6).
 *
 * A table of struct colo_opt says for every key its [section], type,
 * range or values, default and --help line, and where its value goes: an
 * offset into the struct the table fills.  The node's own keys fill a
 * struct colo_config (cfgkeys.c); a guest's own [guest] keys fill a
 * settings struct of the guest's (struct colo_guest_ops.opts).  One
 * parser, colo_opt_set(), serves the defaults, the file and the flags,
 * so --help shows what a node runs with and every bad value is refused
 * in the same words: "'VALUE' is not ...".
 *
 * Memory: a COLO_OPT_STR or COLO_OPT_CHOICE field is a char * owned by
 * the struct it is in; colo_opt_clear() frees it.  Tables are static and
 * never change.  Everything here is reentrant: the functions touch only
 * the struct and buffers they are given.
 */
#ifndef COLO_CFGOPT_H
#define COLO_CFGOPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

enum colo_opt_type {
	COLO_OPT_STR,         /* char *, checked by .check when set */
	COLO_OPT_CHOICE,      /* char *, one of .values */
	COLO_OPT_UINT,        /* uint32_t, .min to .max */
	COLO_OPT_U64,         /* uint64_t, any */
	COLO_OPT_ENUM,        /* an int-sized enum: the index of the value in .values */
	COLO_OPT_ADDR,        /* struct colo_addr */
	COLO_OPT_ENCODINGS,   /* uint32_t COLO_PAGE_KIND_BIT set */
};

/* The file's sections, in --help's order. */
enum colo_opt_section {
	COLO_SEC_NODE,
	COLO_SEC_REPLICATION,
	COLO_SEC_HEARTBEAT,
	COLO_SEC_GUEST,
	COLO_SEC_QEMU,        /* the qemu guest's keys */
	COLO_SEC_RECORD,
	COLO_SEC_SECURITY,
	COLO_SEC_ARBITER,
	COLO_SEC_COUNT
};

/* "node", "replication", ...: the names in the file's [section] headers. */
extern const char *const colo_opt_section_names[COLO_SEC_COUNT];

struct colo_opt {
	const char *key;                 /* INI key and --flag */
	enum colo_opt_section section;   /* a guest's keys: COLO_SEC_GUEST, or
					    a section of the guest's own */
	enum colo_opt_type type;
	size_t off;                      /* of the field in the struct filled */
	uint32_t min, max;               /* COLO_OPT_UINT */
	const char *const *values;       /* COLO_OPT_ENUM, COLO_OPT_CHOICE;
					    NULL-terminated */
	bool (*check)(const char *v, char *why, size_t len);  /* COLO_OPT_STR */
	const char *def;                 /* default, as text; NULL: see dyn */
	int dyn;                         /* the node's own table only: how a
					    default without text is computed */
	bool hidden;                     /* accepted, not in --help */
	const char *bare;                /* the value of "--key" without one
					    ("yes" for a switch); NULL: a
					    value is required */
	const char *meta;                /* --help: "--key META" */
	const char *help;                /* --help: one line, "(default X)" follows */
};

/* host:port, resolved to numbers at load time (no DNS: IPv4 or [IPv6]). */
struct colo_addr {
	char host[64];              /* as written, numeric; IPv6 without the
				       brackets ("::1") */
	uint16_t port;
};

/* Parse a.b.c.d:PORT or [IPv6]:PORT (numbers only) into a; -EINVAL with
 * why naming what is wrong. */
int colo_opt_parse_addr(const char *v, struct colo_addr *a, char *why, size_t len);

/*
 * Set the field of o in the struct at base from the text v.  Returns 0;
 * -EINVAL with why set to "'VALUE' is not ..." (without the key); or
 * -ENOMEM.  A string field is replaced (the old one freed).
 */
int colo_opt_set(const struct colo_opt *o, void *base, const char *v, char *why,
		 size_t len);

/* Free a string field of o in the struct at base (NULL after); others: no-op. */
void colo_opt_clear(const struct colo_opt *o, void *base);

/* Replace *slot by a copy of v: 0 or -ENOMEM (*slot kept). */
int colo_opt_set_string(char **slot, const char *v);

/* v as quoted in a message: control characters shown as '?', cut with
 * "..." to fit len.  Returns buf. */
const char *colo_opt_shown(const char *v, char *buf, size_t len);

/* A value check for COLO_OPT_STR: not "". */
bool colo_opt_check_nonempty(const char *v, char *why, size_t len);

/* "zero,raw,lz4" from a COLO_PAGE_KIND_BIT set, and back. */
void colo_encodings_format(uint32_t kinds, char *buf, size_t len);
int colo_encodings_parse(const char *s, uint32_t *kinds, struct colo_err *err);

#endif
