/*
 * cfgfile.c: the INI file (see cfgfile.h).
 *
 * The file is read by libinih through our own line reader, which counts
 * lines (libinih as packaged does not pass line numbers to the handler),
 * checks section headers (libinih does not report a section without keys)
 * and refuses lines longer than libinih's buffer (it would silently split
 * them).
 */
#include "config.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "cfgfile.h"
#include "cfgopt.h"

struct file_ctx {
	struct colo_config *cfg;
	const struct colo__cfg_keys *keys;
	FILE *f;
	int line;                 /* of the line libinih is parsing */
	int *seen;                /* line each key was set on, by key index */
	char *buf;                /* getline's */
	size_t cap;
	int read_errno;
	bool indented;            /* the line starts with a blank */
	int bad_line;             /* first error of ours, 0 none */
	char why[COLO_ERR_MAX];
};

static void file_fail(struct file_ctx *c, const char *fmt, ...) COLO_PRINTF(2, 3);

static void file_fail(struct file_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (c->bad_line)
		return;
	c->bad_line = c->line;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
}

static char *file_reader(char *str, int num, void *stream)
{
	struct file_ctx *c = stream;
	ssize_t n;
	char *p;

	if (c->bad_line)
		return NULL;              /* stop at our first error */
	errno = 0;
	n = getline(&c->buf, &c->cap, c->f);
	if (n < 0) {
		c->read_errno = errno;
		return NULL;
	}
	c->line++;
	if (n >= num) {
		file_fail(c, "line longer than %d characters", num - 2);
		return NULL;
	}
	memcpy(str, c->buf, (size_t)n + 1);
	/* libinih calls nobody for a section without keys: check headers here. */
	c->indented = *str == ' ' || *str == '\t';
	p = str;
	if (c->line == 1 && strncmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	p += strspn(p, " \t");
	if (*p == '[') {
		char *close = strchr(p, ']');
		size_t len = close ? (size_t)(close - p - 1) : 0;
		int s;

		for (s = 0; close && s < COLO_SEC_COUNT; s++)
			if (strlen(colo_opt_section_names[s]) == len &&
			    memcmp(colo_opt_section_names[s], p + 1, len) == 0)
				break;
		if (close && s == COLO_SEC_COUNT) {
			char name[64], q[80], list[160];
			size_t at = 0;

			if (len >= sizeof(name))
				len = sizeof(name) - 1;
			memcpy(name, p + 1, len);
			name[len] = '\0';
			for (s = 0; s < COLO_SEC_COUNT && at < sizeof(list); s++)
				at += (size_t)snprintf(list + at, sizeof(list) - at, "%s[%s]",
						       s ? " " : "", colo_opt_section_names[s]);
			file_fail(c, "unknown section [%s] (sections: %s)",
				  colo_opt_shown(name, q, sizeof(q)), list);
			return NULL;
		}
	}
	return str;
}

static int file_key(void *user, const char *section, const char *key, const char *value)
{
	struct file_ctx *c = user;
	size_t i;
	const struct colo_opt *o = colo__cfg_key_find(c->keys, key, &i);
	char why[COLO_ERR_MAX], q[128];

	if (c->bad_line)
		return 0;
	colo_opt_shown(key, q, sizeof(q));
	if (!*section) {
		file_fail(c, "%s: outside any section (before the first [section])", q);
		return 0;
	}
	if (!o) {
		file_fail(c, "[%s] %s: unknown key", section, q);
		return 0;
	}
	if (strcmp(section, colo_opt_section_names[o->section]) != 0) {
		file_fail(c, "[%s] %s: belongs in [%s]", section, q,
			  colo_opt_section_names[o->section]);
		return 0;
	}
	/* A repeated key is a mistake (or an indented line, which libinih
	 * appends to the key above as a second value). */
	if (c->seen[i] && c->indented) {
		file_fail(c, "[%s] %s: an indented line continues the value of the key "
			  "above (line %d)", section, q, c->seen[i]);
		return 0;
	}
	if (c->seen[i]) {
		file_fail(c, "[%s] %s: set twice (also on line %d)", section, q, c->seen[i]);
		return 0;
	}
	c->seen[i] = c->line;
	if (colo__cfg_key_set(c->cfg, c->keys, i, value, why, sizeof(why))) {
		file_fail(c, "[%s] %s: %s", section, q, why);
		return 0;
	}
	return 1;
}

int colo__cfg_file_load(struct colo_config *cfg, const struct colo__cfg_keys *k,
			const char *path, struct colo_err *err)
{
	struct file_ctx c = { .cfg = cfg, .keys = k };
	int rc;

	c.seen = calloc(k->n, sizeof(*c.seen));
	if (!c.seen)
		return colo_err_set(err, ENOMEM, "out of memory");
	c.f = fopen(path, "r");
	if (!c.f) {
		rc = errno;
		free(c.seen);
		return colo_err_set(err, rc, "config file '%s': %s", path, strerror(rc));
	}
	rc = ini_parse_stream(file_reader, &c, file_key, &c);
	fclose(c.f);
	free(c.buf);
	free(c.seen);
	if (rc > 0 && (!c.bad_line || rc < c.bad_line))
		return colo_err_set(err, EINVAL, "%s:%d: syntax error (expected [section] "
				    "or key = value)", path, rc);
	if (c.bad_line)
		return colo_err_set(err, EINVAL, "%s:%d: %s", path, c.bad_line, c.why);
	if (c.read_errno)
		return colo_err_set(err, c.read_errno, "config file '%s': %s", path,
				    strerror(c.read_errno));
	if (rc < 0)                       /* -2: libinih's malloc failed */
		return colo_err_set(err, ENOMEM, "config file '%s': out of memory", path);
	return 0;
}
