/*
 * cfgopt.c: parsing one value of a key (see cfgopt.h).
 *
 * Numbers are digits only, checked against their range; enums and choices
 * are one of a listed set; addresses are numeric host:port (no DNS: a
 * name would make a config's meaning depend on the resolver at start);
 * encodings are a list of page kinds.  Every refusal quotes the value as
 * written, with control characters shown as '?'.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>

#include "cfgopt.h"
#include "ramfmt.h"

const char *const colo_opt_section_names[COLO_SEC_COUNT] = {
	"node", "replication", "heartbeat", "guest", "qemu", "record", "security", "arbiter",
};

/* ---- values ---- */

const char *colo_opt_shown(const char *v, char *buf, size_t len)
{
	size_t n = 0;

	for (; *v && n + 4 < len; v++)
		buf[n++] = (unsigned char)*v < 0x20 || *v == 0x7f ? '?' : *v;
	if (*v)
		buf[n++] = '.', buf[n++] = '.', buf[n++] = '.';
	buf[n] = '\0';
	return buf;
}

static int parse_u64(const char *v, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long x;
	char *end;

	/* Digits only: strtoull would take a sign, spaces and wrap "-1". */
	if (*v < '0' || *v > '9')
		return -EINVAL;
	errno = 0;
	x = strtoull(v, &end, 10);
	if (errno || *end || x < min || x > max)
		return -EINVAL;
	*out = x;
	return 0;
}

static void list_values(const char *const *values, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; values[i] && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", i ? ", " : "", values[i]);
}

int colo_opt_parse_addr(const char *v, struct colo_addr *a, char *why, size_t len)
{
	char q[128], host[sizeof(a->host)];
	const char *colon, *port;
	uint64_t p;
	size_t hl;

	if (*v == '[') {
		const char *close = strchr(v, ']');
		struct in6_addr in6;

		if (!close) {
			snprintf(why, len, "'%s' has no ']' after the IPv6 address",
				 colo_opt_shown(v, q, sizeof(q)));
			return -EINVAL;
		}
		if (close[1] != ':' || !close[2]) {
			snprintf(why, len, "'%s' has no port (expected a.b.c.d:PORT or "
				 "[IPv6]:PORT)", colo_opt_shown(v, q, sizeof(q)));
			return -EINVAL;
		}
		hl = (size_t)(close - v - 1);
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, v + 1, hl);
		host[hl] = '\0';
		port = close + 2;
		if (inet_pton(AF_INET6, host, &in6) != 1) {
			snprintf(why, len, "'%s': '%s' is not a numeric IPv6 address",
				 colo_opt_shown(v, q, sizeof(q)), host);
			return -EINVAL;
		}
	} else {
		struct in_addr in4;

		colon = strrchr(v, ':');
		if (colon && memchr(v, ':', (size_t)(colon - v))) {
			snprintf(why, len, "'%s': an IPv6 address goes in brackets, "
				 "e.g. [::1]:7070", colo_opt_shown(v, q, sizeof(q)));
			return -EINVAL;
		}
		if (!colon || !colon[1]) {
			snprintf(why, len, "'%s' has no port (expected a.b.c.d:PORT or "
				 "[IPv6]:PORT)", colo_opt_shown(v, q, sizeof(q)));
			return -EINVAL;
		}
		hl = (size_t)(colon - v);
		if (hl >= sizeof(host))
			hl = sizeof(host) - 1;
		memcpy(host, v, hl);
		host[hl] = '\0';
		port = colon + 1;
		if (inet_pton(AF_INET, host, &in4) != 1) {
			char hq[sizeof(host) + 8];

			snprintf(why, len, "'%s': '%s' is not a numeric IPv4 address "
				 "a.b.c.d or [IPv6] (no DNS)", colo_opt_shown(v, q, sizeof(q)),
				 colo_opt_shown(host, hq, sizeof(hq)));
			return -EINVAL;
		}
	}
	if (parse_u64(port, 1, 65535, &p)) {
		char pq[32];

		snprintf(why, len, "'%s': port '%s' is not an integer from 1 to 65535",
			 colo_opt_shown(v, q, sizeof(q)), colo_opt_shown(port, pq, sizeof(pq)));
		return -EINVAL;
	}
	memcpy(a->host, host, sizeof(host));
	a->port = (uint16_t)p;
	return 0;
}

/* ---- encodings ---- */

/* The names an operator writes; RAW is "raw" here, not ramfmt's "page". */
static const struct {
	const char *name;
	enum colo_page_kind kind;
} encoding_names[] = {
	{ "zero", COLO_PAGE_ZERO },
	{ "raw", COLO_PAGE_RAW },
	{ "lz4", COLO_PAGE_LZ4 },
	{ "delta", COLO_PAGE_DELTA },
	{ "delta-lz4", COLO_PAGE_DELTA_LZ4 },
	{ "xbzrle", COLO_PAGE_XBZRLE },
};

#define NENCODINGS (sizeof(encoding_names) / sizeof(encoding_names[0]))
#define ENCODINGS_LIST "zero, raw, lz4, delta, delta-lz4, xbzrle"

static int parse_encodings(const char *s, uint32_t *kinds, char *why, size_t len)
{
	uint32_t set = COLO_PAGE_KIND_BIT(COLO_PAGE_RAW);
	char q[128];

	if (!*s) {
		snprintf(why, len, "'' is empty (raw is always on: write 'raw' for "
			 "raw pages only)");
		return -EINVAL;
	}
	for (const char *p = s;;) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		size_t i;

		/* "delta, lz4" is fine: spaces around a name do not count. */
		while (n && (*p == ' ' || *p == '\t'))
			p++, n--;
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		for (i = 0; i < NENCODINGS; i++)
			if (strlen(encoding_names[i].name) == n &&
			    memcmp(encoding_names[i].name, p, n) == 0)
				break;
		if (i == NENCODINGS) {
			char item[64];

			if (n >= sizeof(item))
				n = sizeof(item) - 1;
			memcpy(item, p, n);
			item[n] = '\0';
			if (n == 0)
				snprintf(why, len, "'%s' has an empty name (names are "
					 ENCODINGS_LIST ")", colo_opt_shown(s, q, sizeof(q)));
			else
				snprintf(why, len, "'%s' is not one of " ENCODINGS_LIST,
					 colo_opt_shown(item, q, sizeof(q)));
			return -EINVAL;
		}
		set |= COLO_PAGE_KIND_BIT(encoding_names[i].kind);
		if (!end)
			break;
		p = end + 1;
	}
	*kinds = set;
	return 0;
}

int colo_encodings_parse(const char *s, uint32_t *kinds, struct colo_err *err)
{
	char why[COLO_ERR_MAX];
	int rc = parse_encodings(s, kinds, why, sizeof(why));

	return rc ? colo_err_set(err, -rc, "%s", why) : 0;
}

void colo_encodings_format(uint32_t kinds, char *buf, size_t len)
{
	size_t n = 0;

	if (!len)
		return;
	buf[0] = '\0';
	for (size_t i = 0; i < NENCODINGS; i++) {
		if (!(kinds & COLO_PAGE_KIND_BIT(encoding_names[i].kind)))
			continue;
		kinds &= ~COLO_PAGE_KIND_BIT(encoding_names[i].kind);
		if (n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "",
					      encoding_names[i].name);
	}
	/* Kinds nobody configures (compress) still show, under ramfmt's name. */
	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		if ((kinds & COLO_PAGE_KIND_BIT(k)) && n < len)
			n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? "," : "",
					      colo_page_kind_name((enum colo_page_kind)k));
}

/* ---- setting a value ---- */

bool colo_opt_check_nonempty(const char *v, char *why, size_t len)
{
	if (*v)
		return true;
	snprintf(why, len, "'' is empty");
	return false;
}

int colo_opt_set_string(char **slot, const char *v)
{
	char *s = strdup(v);

	if (!s)
		return -ENOMEM;
	free(*slot);
	*slot = s;
	return 0;
}

int colo_opt_set(const struct colo_opt *o, void *base, const char *v, char *why,
		 size_t len)
{
	void *f = (char *)base + o->off;
	char q[128], list[128];
	uint64_t u;

	switch (o->type) {
	case COLO_OPT_STR:
		if (o->check && !o->check(v, why, len))
			return -EINVAL;
		return colo_opt_set_string(f, v);
	case COLO_OPT_CHOICE:
	case COLO_OPT_ENUM:
		for (int i = 0; o->values[i]; i++) {
			if (strcmp(o->values[i], v) != 0)
				continue;
			if (o->type == COLO_OPT_CHOICE)
				return colo_opt_set_string(f, v);
			memcpy(f, &i, sizeof(i));
			return 0;
		}
		list_values(o->values, list, sizeof(list));
		snprintf(why, len, "'%s' is not one of %s", colo_opt_shown(v, q, sizeof(q)),
			 list);
		return -EINVAL;
	case COLO_OPT_UINT:
		if (parse_u64(v, o->min, o->max, &u)) {
			snprintf(why, len, "'%s' is not an integer from %" PRIu32 " to %" PRIu32,
				 colo_opt_shown(v, q, sizeof(q)), o->min, o->max);
			return -EINVAL;
		}
		*(uint32_t *)f = (uint32_t)u;
		return 0;
	case COLO_OPT_U64:
		if (parse_u64(v, 0, UINT64_MAX, &u)) {
			snprintf(why, len, "'%s' is not an integer from 0 to %" PRIu64,
				 colo_opt_shown(v, q, sizeof(q)), UINT64_MAX);
			return -EINVAL;
		}
		*(uint64_t *)f = u;
		return 0;
	case COLO_OPT_ADDR:
		return colo_opt_parse_addr(v, f, why, len);
	case COLO_OPT_ENCODINGS:
		return parse_encodings(v, f, why, len);
	}
	return -EINVAL;
}

void colo_opt_clear(const struct colo_opt *o, void *base)
{
	if (o->type == COLO_OPT_STR || o->type == COLO_OPT_CHOICE) {
		char **s = (char **)((char *)base + o->off);

		free(*s);
		*s = NULL;
	}
}
