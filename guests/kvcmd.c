/*
 * kvcmd.c: see kvcmd.h.
 *
 * Dispatch follows Redis 7.0's processCommand(): look the name up (case
 * insensitive), then the subcommand of a container command (CONFIG, CLIENT,
 * COMMAND), then check the arity, each with Redis's error.  Redis builds its
 * messages from C strings, so an argument shown in an error stops at its
 * first NUL byte here too (cstr_len).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "kvcmd.h"
#include "resp.h"

#define E_SYNTAX "ERR syntax error"
#define E_NOT_INT "ERR value is not an integer or out of range"
#define E_OVERFLOW "ERR increment or decrement would overflow"
#define E_TOO_BIG "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
#define E_OOM "OOM command not allowed when used memory > 'maxmemory'."
#define E_NO_EXPIRY "ERR expiry is not supported by this server"
#define E_NAME "ERR Client names cannot contain spaces, newlines or special characters."

#define REDIS_VERSION "7.0.0"
#define SCAN_DEFAULT_COUNT 10

/* One command being run. */
struct exec {
	struct colo_kvcmd_ctx *ctx;
	struct colo_kvstore *kv;
	int argc;
	uint8_t *const *argv;
	const size_t *argl;
	struct colo_buf *out;
};

struct cmd {
	const char *name;
	const char *fullname;           /* "config|get": what arity errors name */
	int arity;                      /* Redis's: n exactly, -n at least n */
	int (*run)(struct exec *x);     /* returns COLO_KVCMD_* flags */
	const struct cmd *subs;         /* a container's subcommands, {NULL}-ended */
};

/* ---- helpers ---- */

static size_t cstr_len(const uint8_t *s, size_t n)
{
	const uint8_t *z = memchr(s, '\0', n);

	return z ? (size_t)(z - s) : n;
}

static bool bytes_eq_nocase(const uint8_t *s, size_t n, const char *lower)
{
	size_t i;

	for (i = 0; i < n && lower[i]; i++) {
		uint8_t c = s[i];

		if (c >= 'A' && c <= 'Z')
			c = (uint8_t)(c - 'A' + 'a');
		if (c != (uint8_t)lower[i])
			return false;
	}
	return i == n && lower[i] == '\0';
}

static bool arg_is(const struct exec *x, int i, const char *lower)
{
	return bytes_eq_nocase(x->argv[i], x->argl[i], lower);
}

static int reply_error(struct exec *x, const char *text)
{
	colo_resp_error_text(x->out, text, strlen(text));
	return 0;
}

static int reply_ok(struct exec *x)
{
	colo_resp_simple(x->out, "OK");
	return 0;
}

/* A store call's failure. */
static int reply_store_error(struct exec *x, int r)
{
	if (r == -ENOMEM)
		return reply_error(x, E_OOM);
	colo_resp_error(x->out, "ERR store failure: %s", strerror(-r));
	return 0;
}

/* Redis's getLongLongFromObjectOrReply(). */
static bool arg_ll(struct exec *x, int i, long long *v)
{
	if (colo_resp_str2ll(x->argv[i], x->argl[i], v))
		return true;
	reply_error(x, E_NOT_INT);
	return false;
}

/* Redis's clientSetName() check: printable ASCII without spaces. */
static bool name_ok(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '!' || s[i] > '~')
			return false;
	return true;
}

/* Set the connection's name ("" clears it); false after replying an error. */
static bool set_name(struct exec *x, int i)
{
	struct colo_kvcmd_client *cl = x->ctx->client;
	size_t n = x->argl[i];

	if (!name_ok(x->argv[i], n)) {
		reply_error(x, E_NAME);
		return false;
	}
	if (n > COLO_KVCMD_NAME_MAX) {
		colo_resp_error(x->out, "ERR Client names are limited to %d bytes here",
				COLO_KVCMD_NAME_MAX);
		return false;
	}
	if (cl) {
		memcpy(cl->name, x->argv[i], n);
		cl->name[n] = '\0';
	}
	return true;
}

/* ---- strings ---- */

static int cmd_get(struct exec *x)
{
	const uint8_t *v;
	uint64_t vl;

	if (colo_kv_get(x->kv, x->argv[1], x->argl[1], &v, &vl))
		colo_resp_bulk(x->out, v, (size_t)vl);
	else
		colo_resp_null(x->out);
	return 0;
}

/*
 * SET and GETSET: with `get` the old value (or nil) is the reply, written
 * before the store changes (it points into the store) and taken back if the
 * write does not fit.
 */
static int do_set(struct exec *x, int flags, bool get)
{
	size_t mark = x->out->len;
	int r;

	if (x->argl[2] > COLO_RESP_MAX_BULK)
		return reply_error(x, E_TOO_BIG);
	if (get)
		cmd_get(x);
	r = colo_kv_set(x->kv, x->argv[1], x->argl[1], x->argv[2], x->argl[2], flags);
	if (r < 0) {
		if (!x->out->failed)
			x->out->len = mark;
		return reply_store_error(x, r);
	}
	if (!get) {
		if (r)
			reply_ok(x);
		else
			colo_resp_null(x->out);
	}
	return r ? COLO_KVCMD_WROTE : 0;
}

enum {
	SET_NX = 1, SET_XX = 2, SET_GET = 4, SET_KEEPTTL = 8,
	SET_EX = 16, SET_PX = 32, SET_EXAT = 64, SET_PXAT = 128,
};

/* Redis's parseExtendedStringArgumentsOrReply() for SET. */
static int cmd_set(struct exec *x)
{
	static const struct {
		const char *name;
		int flag, excludes;
	} opts[] = {
		{ "nx", SET_NX, SET_XX },
		{ "xx", SET_XX, SET_NX },
		{ "get", SET_GET, 0 },
		{ "keepttl", SET_KEEPTTL, SET_EX | SET_PX | SET_EXAT | SET_PXAT },
		{ "ex", SET_EX, SET_KEEPTTL | SET_PX | SET_EXAT | SET_PXAT },
		{ "px", SET_PX, SET_KEEPTTL | SET_EX | SET_EXAT | SET_PXAT },
		{ "exat", SET_EXAT, SET_KEEPTTL | SET_EX | SET_PX | SET_PXAT },
		{ "pxat", SET_PXAT, SET_KEEPTTL | SET_EX | SET_PX | SET_EXAT },
	};
	const int timed = SET_EX | SET_PX | SET_EXAT | SET_PXAT;
	int flags = 0;

	for (int j = 3; j < x->argc; j++) {
		size_t k;

		for (k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (arg_is(x, j, opts[k].name))
				break;
		/* An expiry takes the next argument, so it must have one. */
		if (k == sizeof(opts) / sizeof(opts[0]) || (flags & opts[k].excludes) ||
		    ((opts[k].flag & timed) && j == x->argc - 1))
			return reply_error(x, E_SYNTAX);
		flags |= opts[k].flag;
		if (opts[k].flag & timed)
			j++;
	}
	if (flags & (timed | SET_KEEPTTL))
		return reply_error(x, E_NO_EXPIRY);
	return do_set(x, (flags & SET_NX ? COLO_KV_NX : 0) | (flags & SET_XX ? COLO_KV_XX : 0),
		      flags & SET_GET);
}

static int cmd_getset(struct exec *x)
{
	return do_set(x, 0, true);
}

static int cmd_mget(struct exec *x)
{
	colo_resp_array(x->out, (size_t)x->argc - 1);
	for (int i = 1; i < x->argc; i++) {
		const uint8_t *v;
		uint64_t vl;

		if (colo_kv_get(x->kv, x->argv[i], x->argl[i], &v, &vl))
			colo_resp_bulk(x->out, v, (size_t)vl);
		else
			colo_resp_null(x->out);
	}
	return 0;
}

static int cmd_mset(struct exec *x)
{
	int flags = 0;

	if (x->argc % 2 == 0) {
		colo_resp_error(x->out, "ERR wrong number of arguments for 'mset' command");
		return 0;
	}
	for (int i = 1; i < x->argc; i += 2)
		if (x->argl[i + 1] > COLO_RESP_MAX_BULK)
			return reply_error(x, E_TOO_BIG);
	for (int i = 1; i < x->argc; i += 2) {
		int r = colo_kv_set(x->kv, x->argv[i], x->argl[i], x->argv[i + 1],
				    x->argl[i + 1], 0);

		if (r < 0) {
			reply_store_error(x, r);
			return flags;
		}
		flags = COLO_KVCMD_WROTE;
	}
	reply_ok(x);
	return flags;
}

static int cmd_append(struct exec *x)
{
	const uint8_t *v;
	uint64_t vl, len;
	int r;

	/* Redis's checkStringLength(): only an existing value can grow past it. */
	if (colo_kv_get(x->kv, x->argv[1], x->argl[1], &v, &vl) &&
	    vl + x->argl[2] > COLO_RESP_MAX_BULK)
		return reply_error(x, E_TOO_BIG);
	r = colo_kv_append(x->kv, x->argv[1], x->argl[1], x->argv[2], x->argl[2], &len);
	if (r < 0)
		return reply_store_error(x, r);
	colo_resp_int(x->out, (long long)len);
	return COLO_KVCMD_WROTE;
}

static int cmd_strlen(struct exec *x)
{
	const uint8_t *v;
	uint64_t vl;

	if (!colo_kv_get(x->kv, x->argv[1], x->argl[1], &v, &vl))
		vl = 0;
	colo_resp_int(x->out, (long long)vl);
	return 0;
}

static int incr_by(struct exec *x, long long by)
{
	int64_t v;
	int r = colo_kv_incrby(x->kv, x->argv[1], x->argl[1], by, &v);

	if (r == -EINVAL)
		return reply_error(x, E_NOT_INT);
	if (r == -ERANGE)
		return reply_error(x, E_OVERFLOW);
	if (r < 0)
		return reply_store_error(x, r);
	colo_resp_int(x->out, v);
	return COLO_KVCMD_WROTE;
}

static int cmd_incr(struct exec *x)
{
	return incr_by(x, 1);
}

static int cmd_decr(struct exec *x)
{
	return incr_by(x, -1);
}

static int cmd_incrby(struct exec *x)
{
	long long by;

	if (!arg_ll(x, 2, &by))
		return 0;
	return incr_by(x, by);
}

static int cmd_decrby(struct exec *x)
{
	long long by;

	if (!arg_ll(x, 2, &by))
		return 0;
	if (by == LLONG_MIN)
		return reply_error(x, "ERR decrement would overflow");
	return incr_by(x, -by);
}

/* ---- keys ---- */

static int cmd_del(struct exec *x)
{
	long long n = 0;

	for (int i = 1; i < x->argc; i++)
		n += colo_kv_del(x->kv, x->argv[i], x->argl[i]) == 1;
	colo_resp_int(x->out, n);
	return n ? COLO_KVCMD_WROTE : 0;
}

static int cmd_exists(struct exec *x)
{
	long long n = 0;

	for (int i = 1; i < x->argc; i++) {
		const uint8_t *v;
		uint64_t vl;

		n += colo_kv_get(x->kv, x->argv[i], x->argl[i], &v, &vl);
	}
	colo_resp_int(x->out, n);
	return 0;
}

static int cmd_type(struct exec *x)
{
	const uint8_t *v;
	uint64_t vl;

	colo_resp_simple(x->out, colo_kv_get(x->kv, x->argv[1], x->argl[1], &v, &vl) ?
			 "string" : "none");
	return 0;
}

static int cmd_dbsize(struct exec *x)
{
	colo_resp_int(x->out, (long long)colo_kv_count(x->kv));
	return 0;
}

/* FLUSHALL and FLUSHDB [ASYNC|SYNC]: both flush now. */
static int cmd_flush(struct exec *x)
{
	if (x->argc > 2 || (x->argc == 2 && !arg_is(x, 1, "sync") && !arg_is(x, 1, "async")))
		return reply_error(x, E_SYNTAX);
	colo_kv_flush(x->kv);
	reply_ok(x);
	return COLO_KVCMD_WROTE;
}

/* Keys a walk found, as bulk replies, until they can be counted. */
struct found {
	struct colo_buf body;
	size_t n;
};

static void found_key(void *ud, const uint8_t *key, uint64_t klen)
{
	struct found *f = ud;

	colo_resp_bulk(&f->body, key, (size_t)klen);
	f->n++;
}

static void put_found(struct exec *x, struct found *f)
{
	colo_resp_array(x->out, f->n);
	colo_buf_put(x->out, f->body.data, f->body.len);
	if (f->body.failed)
		x->out->failed = true;
	colo_buf_free(&f->body);
}

static int cmd_keys(struct exec *x)
{
	const uint8_t *pat = x->argv[1];
	size_t plen = x->argl[1];
	struct found f = { COLO_BUF_INIT, 0 };
	uint64_t cursor = 0;

	if (plen == 1 && pat[0] == '*')
		pat = NULL;
	do {
		cursor = colo_kv_scan(x->kv, cursor, pat, pat ? plen : 0, 1024, found_key, &f);
	} while (cursor != 0);
	put_found(x, &f);
	return 0;
}

/*
 * Redis's parseScanCursorOrReply(): strtoul() on a C string, refused when it
 * starts with a blank, stops before the end or overflows.  So "" is 0 and
 * "-1" wraps, as in Redis.
 */
static bool scan_cursor(const uint8_t *s, size_t n, uint64_t *cursor)
{
	size_t i = 0, end = cstr_len(s, n);
	uint64_t v = 0;
	bool neg = false;

	if (end == 0) {
		*cursor = 0;
		return true;
	}
	if (s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r'))
		return false;
	if (s[0] == '+' || s[0] == '-')
		neg = s[i++] == '-';
	if (i == end)
		return false;
	for (; i < end; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*cursor = neg ? (uint64_t)0 - v : v;
	return true;
}

static void skip_key(void *ud, const uint8_t *key, uint64_t klen)
{
	(void)ud;
	(void)key;
	(void)klen;
}

static int cmd_scan(struct exec *x)
{
	const uint8_t *pat = NULL;
	size_t plen = 0;
	bool no_type = false;
	long long count = SCAN_DEFAULT_COUNT;
	struct found f = { COLO_BUF_INIT, 0 };
	uint64_t cursor;
	char num[24];

	if (!scan_cursor(x->argv[1], x->argl[1], &cursor))
		return reply_error(x, "ERR invalid cursor");
	for (int i = 2; i < x->argc; i += 2) {
		if (i + 1 >= x->argc)
			return reply_error(x, E_SYNTAX);
		if (arg_is(x, i, "count")) {
			if (!arg_ll(x, i + 1, &count))
				return 0;
			if (count < 1)
				return reply_error(x, E_SYNTAX);
		} else if (arg_is(x, i, "match")) {
			pat = x->argv[i + 1];
			plen = x->argl[i + 1];
			if (plen == 1 && pat[0] == '*')
				pat = NULL;
		} else if (arg_is(x, i, "type")) {
			/* Every key is a string. */
			no_type = !bytes_eq_nocase(x->argv[i + 1],
						   cstr_len(x->argv[i + 1], x->argl[i + 1]), "string");
		} else {
			return reply_error(x, E_SYNTAX);
		}
	}
	cursor = colo_kv_scan(x->kv, cursor, pat, pat ? plen : 0, (uint64_t)count,
			      no_type ? skip_key : found_key, &f);
	colo_resp_array(x->out, 2);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)cursor);
	colo_resp_bulk_str(x->out, num);
	put_found(x, &f);
	return 0;
}

/* ---- connection ---- */

static int cmd_ping(struct exec *x)
{
	if (x->argc > 2) {
		colo_resp_error(x->out, "ERR wrong number of arguments for 'ping' command");
		return 0;
	}
	if (x->argc == 2)
		colo_resp_bulk(x->out, x->argv[1], x->argl[1]);
	else
		colo_resp_simple(x->out, "PONG");
	return 0;
}

static int cmd_echo(struct exec *x)
{
	colo_resp_bulk(x->out, x->argv[1], x->argl[1]);
	return 0;
}

/* Redis's getIntFromObjectOrReply(), then only database 0 exists. */
static int cmd_select(struct exec *x)
{
	long long id;

	if (!arg_ll(x, 1, &id))
		return 0;
	if (id < INT_MIN || id > INT_MAX) {
		colo_resp_error(x->out, "ERR value is out of range, value must between %d and %d",
				INT_MIN, INT_MAX);
		return 0;
	}
	if (id != 0)
		return reply_error(x, "ERR DB index is out of range");
	return reply_ok(x);
}

static int cmd_quit(struct exec *x)
{
	reply_ok(x);
	return COLO_KVCMD_QUIT;
}

static int cmd_reset(struct exec *x)
{
	if (x->ctx->client)
		x->ctx->client->name[0] = '\0';
	colo_resp_simple(x->out, "RESET");
	return 0;
}

/* No password is configured: the default user takes any (Redis's nopass). */
static int cmd_auth(struct exec *x)
{
	if (x->argc > 3)
		return reply_error(x, E_SYNTAX);
	if (x->argc == 2)
		return reply_error(x, "ERR AUTH <password> called without any password "
				   "configured for the default user. Are you sure your "
				   "configuration is correct?");
	if (x->argl[1] != 7 || memcmp(x->argv[1], "default", 7) != 0)
		return reply_error(x, "WRONGPASS invalid username-password pair or user is "
				   "disabled.");
	return reply_ok(x);
}

static int cmd_hello(struct exec *x)
{
	const struct colo_kvcmd_ctx *ctx = x->ctx;
	int name_at = 0;

	if (x->argc >= 2) {
		long long ver;

		if (!colo_resp_str2ll(x->argv[1], x->argl[1], &ver))
			return reply_error(x, "ERR Protocol version is not an integer or out of range");
		/* RESP3 is not spoken here: clients fall back to RESP2. */
		if (ver != 2)
			return reply_error(x, "NOPROTO unsupported protocol version");
	}
	for (int j = 2; j < x->argc; j++) {
		int more = x->argc - 1 - j;

		if (arg_is(x, j, "auth") && more >= 2) {
			if (x->argl[j + 1] != 7 || memcmp(x->argv[j + 1], "default", 7) != 0)
				return reply_error(x, "WRONGPASS invalid username-password pair "
						   "or user is disabled.");
			j += 2;
		} else if (arg_is(x, j, "setname") && more >= 1) {
			name_at = ++j;
		} else {
			colo_resp_error(x->out, "ERR Syntax error in HELLO option '%.*s'",
					(int)cstr_len(x->argv[j], x->argl[j]), x->argv[j]);
			return 0;
		}
	}
	if (name_at && !set_name(x, name_at))
		return 0;
	colo_resp_array(x->out, 14);
	colo_resp_bulk_str(x->out, "server");
	colo_resp_bulk_str(x->out, "redis");
	colo_resp_bulk_str(x->out, "version");
	colo_resp_bulk_str(x->out, REDIS_VERSION);
	colo_resp_bulk_str(x->out, "proto");
	colo_resp_int(x->out, 2);
	colo_resp_bulk_str(x->out, "id");
	colo_resp_int(x->out, ctx->client ? (long long)ctx->client->id : 0);
	colo_resp_bulk_str(x->out, "mode");
	colo_resp_bulk_str(x->out, "standalone");
	colo_resp_bulk_str(x->out, "role");
	colo_resp_bulk_str(x->out, ctx->role ? ctx->role : "master");
	colo_resp_bulk_str(x->out, "modules");
	colo_resp_array(x->out, 0);
	return 0;
}

/* Redis's addReplyHelp(): a header, the lines, HELP. */
static int reply_help(struct exec *x, const char *cmd, const char *const *lines)
{
	size_t n = 0;
	char head[96];

	while (lines[n])
		n++;
	colo_resp_array(x->out, n + 3);
	snprintf(head, sizeof(head), "%s <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
		 cmd);
	colo_resp_simple(x->out, head);
	for (size_t i = 0; i < n; i++)
		colo_resp_simple(x->out, lines[i]);
	colo_resp_simple(x->out, "HELP");
	colo_resp_simple(x->out, "    Prints this help.");
	return 0;
}

static int cmd_client_id(struct exec *x)
{
	colo_resp_int(x->out, x->ctx->client ? (long long)x->ctx->client->id : 0);
	return 0;
}

static int cmd_client_getname(struct exec *x)
{
	const struct colo_kvcmd_client *cl = x->ctx->client;

	if (cl && cl->name[0])
		colo_resp_bulk_str(x->out, cl->name);
	else
		colo_resp_null(x->out);
	return 0;
}

static int cmd_client_setname(struct exec *x)
{
	if (set_name(x, 2))
		reply_ok(x);
	return 0;
}

/* Redis 7.2's: library name and version, which clients send and we forget. */
static int cmd_client_setinfo(struct exec *x)
{
	if (!arg_is(x, 2, "lib-name") && !arg_is(x, 2, "lib-ver")) {
		colo_resp_error(x->out, "ERR Unrecognized option '%.*s'",
				(int)cstr_len(x->argv[2], x->argl[2]), x->argv[2]);
		return 0;
	}
	if (!name_ok(x->argv[3], x->argl[3])) {
		colo_resp_error(x->out, "ERR %s cannot contain spaces, newlines or special "
				"characters.", arg_is(x, 2, "lib-name") ? "lib-name" : "lib-ver");
		return 0;
	}
	return reply_ok(x);
}

static int cmd_client_help(struct exec *x)
{
	static const char *const lines[] = {
		"GETNAME",
		"    Return the name of the current connection.",
		"ID",
		"    Return the ID of the current connection.",
		"SETINFO <option> <value>",
		"    Set client meta attr. Options are:",
		"    * LIB-NAME: the client lib name.",
		"    * LIB-VER: the client lib version.",
		"SETNAME <name>",
		"    Assign the name <name> to the current connection.",
		NULL,
	};

	return reply_help(x, "CLIENT", lines);
}

static int cmd_command(struct exec *x)
{
	colo_resp_array(x->out, 0);
	return 0;
}

static size_t command_count(void);
static const char *command_name(size_t i);

static int cmd_command_count(struct exec *x)
{
	colo_resp_int(x->out, (long long)command_count());
	return 0;
}

static int cmd_command_info(struct exec *x)
{
	colo_resp_array(x->out, (size_t)x->argc - 2);
	for (int i = 2; i < x->argc; i++)
		colo_resp_null(x->out);
	return 0;
}

static int cmd_command_list(struct exec *x)
{
	size_t n = command_count();

	if (x->argc > 2)
		return reply_error(x, E_SYNTAX);
	colo_resp_array(x->out, n);
	for (size_t i = 0; i < n; i++)
		colo_resp_bulk_str(x->out, command_name(i));
	return 0;
}

static int cmd_command_help(struct exec *x)
{
	static const char *const lines[] = {
		"(no subcommand)",
		"    Return details about all Redis commands (none here).",
		"COUNT",
		"    Return the total number of commands in this Redis server.",
		"LIST",
		"    Return a list of all commands in this Redis server.",
		"INFO [<command-name> ...]",
		"    Return details about multiple Redis commands (none here).",
		"DOCS [<command-name> ...]",
		"    Return documentation details about multiple Redis commands (none here).",
		NULL,
	};

	return reply_help(x, "COMMAND", lines);
}

/* ---- CONFIG ---- */

enum { P_APPENDONLY, P_DATABASES, P_MAXMEMORY, P_POLICY, P_PORT, P_BULK, P_SAVE, NPARAMS };

static const char *const param_names[NPARAMS] = {
	"appendonly", "databases", "maxmemory", "maxmemory-policy", "port",
	"proto-max-bulk-len", "save",
};

static void param_value(const struct colo_kvcmd_ctx *ctx, int k, char *v, size_t n)
{
	switch (k) {
	case P_APPENDONLY: snprintf(v, n, "no"); break;
	case P_DATABASES: snprintf(v, n, "1"); break;
	case P_MAXMEMORY: snprintf(v, n, "%llu", (unsigned long long)ctx->maxmemory); break;
	case P_POLICY: snprintf(v, n, "noeviction"); break;
	case P_PORT: snprintf(v, n, "%u", (unsigned)ctx->tcp_port); break;
	case P_BULK: snprintf(v, n, "%u", (unsigned)COLO_RESP_MAX_BULK); break;
	default: v[0] = '\0'; break;
	}
}

/*
 * Redis's configGetCommand(): a name without glob characters is looked up
 * (case-insensitive) and answered under the name as given; a pattern
 * matches the canonical names, ignoring case.  Each parameter once.
 */
static int cmd_config_get(struct exec *x)
{
	const uint8_t *names[NPARAMS];
	size_t lens[NPARAMS];
	int which[NPARAMS], n = 0;
	bool seen[NPARAMS] = { false };

	for (int i = 2; i < x->argc; i++) {
		const uint8_t *a = x->argv[i];
		size_t al = cstr_len(a, x->argl[i]);
		uint8_t *lower;

		if (!memchr(a, '[', al) && !memchr(a, '*', al) && !memchr(a, '?', al)) {
			for (int k = 0; k < NPARAMS; k++)
				if (!seen[k] && bytes_eq_nocase(a, x->argl[i], param_names[k])) {
					seen[k] = true;
					names[n] = a;
					lens[n] = x->argl[i];
					which[n++] = k;
				}
			continue;
		}
		lower = malloc(al ? al : 1);
		if (!lower) {
			x->out->failed = true;
			return 0;
		}
		for (size_t j = 0; j < al; j++)
			lower[j] = a[j] >= 'A' && a[j] <= 'Z' ? (uint8_t)(a[j] - 'A' + 'a') : a[j];
		for (int k = 0; k < NPARAMS; k++)
			if (!seen[k] && colo_glob_match(lower, al, param_names[k],
							strlen(param_names[k]))) {
				seen[k] = true;
				names[n] = (const uint8_t *)param_names[k];
				lens[n] = strlen(param_names[k]);
				which[n++] = k;
			}
		free(lower);
	}
	colo_resp_array(x->out, 2 * (size_t)n);
	for (int i = 0; i < n; i++) {
		char v[32];

		param_value(x->ctx, which[i], v, sizeof(v));
		colo_resp_bulk(x->out, names[i], lens[i]);
		colo_resp_bulk_str(x->out, v);
	}
	return 0;
}

static int cmd_config_set(struct exec *x)
{
	return reply_error(x, "ERR CONFIG SET is not supported by this server");
}

static int cmd_config_resetstat(struct exec *x)
{
	return reply_error(x, "ERR CONFIG RESETSTAT is not supported by this server");
}

static int cmd_config_rewrite(struct exec *x)
{
	return reply_error(x, "ERR The server is running without a config file");
}

static int cmd_config_help(struct exec *x)
{
	static const char *const lines[] = {
		"GET <pattern>",
		"    Return parameters matching the glob-like <pattern> and their values.",
		NULL,
	};

	return reply_help(x, "CONFIG", lines);
}

/* ---- INFO ---- */

enum {
	S_SERVER = 1, S_CLIENTS = 2, S_MEMORY = 4, S_PERSISTENCE = 8, S_STATS = 16,
	S_REPLICATION = 32, S_CLUSTER = 64, S_KEYSPACE = 128, S_ALL = 255,
};


/* Redis's bytesToHuman(). */
static void human(char *s, size_t n, uint64_t v)
{
	static const char units[] = "KMGTP";
	double d = (double)v;
	int u = -1;

	if (v < 1024) {
		snprintf(s, n, "%lluB", (unsigned long long)v);
		return;
	}
	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	if (d >= 1024) {
		snprintf(s, n, "%lluB", (unsigned long long)v);
		return;
	}
	snprintf(s, n, "%.2f%c", d, units[u]);
}

/* Sections are joined by an empty line, in one order whatever was asked. */
static bool section(struct colo_buf *b, int want, int bit, int *sections, const char *title)
{
	if (!(want & bit))
		return false;
	if ((*sections)++)
		colo_buf_put(b, "\r\n", 2);
	colo_buf_printf(b, "# %s\r\n", title);
	return true;
}

static int cmd_info(struct exec *x)
{
	static const struct {
		const char *name;
		int bit;
	} names[] = {
		{ "server", S_SERVER }, { "clients", S_CLIENTS }, { "memory", S_MEMORY },
		{ "persistence", S_PERSISTENCE }, { "stats", S_STATS },
		{ "replication", S_REPLICATION }, { "cluster", S_CLUSTER },
		{ "keyspace", S_KEYSPACE }, { "all", S_ALL }, { "default", S_ALL },
		{ "everything", S_ALL },
	};
	const struct colo_kvcmd_ctx *c = x->ctx;
	struct colo_buf b = COLO_BUF_INIT;
	int want = x->argc == 1 ? S_ALL : 0, sections = 0;
	uint64_t keys = colo_kv_count(x->kv), used = x->kv->m->used;
	char h1[32], h2[32];

	for (int i = 1; i < x->argc; i++)
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++)
			if (arg_is(x, i, names[k].name))
				want |= names[k].bit;
	human(h1, sizeof(h1), used);
	human(h2, sizeof(h2), c->maxmemory);
	if (section(&b, want, S_SERVER, &sections, "Server")) {
		colo_buf_printf(&b, "redis_version:%s\r\n", REDIS_VERSION);
		colo_buf_printf(&b, "redis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:0\r\n");
		colo_buf_printf(&b, "redis_mode:standalone\r\narch_bits:64\r\n");
		colo_buf_printf(&b, "tcp_port:%u\r\n", (unsigned)c->tcp_port);
		colo_buf_printf(&b, "uptime_in_seconds:%llu\r\n", (unsigned long long)c->uptime_s);
		colo_buf_printf(&b, "uptime_in_days:%llu\r\n", (unsigned long long)(c->uptime_s / 86400));
		colo_buf_printf(&b, "config_file:\r\n");
	}
	if (section(&b, want, S_CLIENTS, &sections, "Clients")) {
		colo_buf_printf(&b, "connected_clients:%llu\r\n", (unsigned long long)c->connected_clients);
		colo_buf_printf(&b, "blocked_clients:0\r\n");
	}
	if (section(&b, want, S_MEMORY, &sections, "Memory")) {
		colo_buf_printf(&b, "used_memory:%llu\r\nused_memory_human:%s\r\n",
		     (unsigned long long)used, h1);
		colo_buf_printf(&b, "maxmemory:%llu\r\nmaxmemory_human:%s\r\n",
		     (unsigned long long)c->maxmemory, h2);
		colo_buf_printf(&b, "maxmemory_policy:noeviction\r\n");
	}
	if (section(&b, want, S_PERSISTENCE, &sections, "Persistence")) {
		colo_buf_printf(&b, "loading:0\r\nasync_loading:0\r\nrdb_bgsave_in_progress:0\r\n");
		colo_buf_printf(&b, "aof_enabled:0\r\naof_rewrite_in_progress:0\r\n");
	}
	if (section(&b, want, S_STATS, &sections, "Stats")) {
		colo_buf_printf(&b, "total_connections_received:%llu\r\n",
		     (unsigned long long)c->total_connections);
		colo_buf_printf(&b, "total_commands_processed:%llu\r\n",
		     (unsigned long long)c->commands_processed);
	}
	if (section(&b, want, S_REPLICATION, &sections, "Replication")) {
		colo_buf_printf(&b, "role:%s\r\nconnected_slaves:0\r\n", c->role ? c->role : "master");
	}
	if (section(&b, want, S_CLUSTER, &sections, "Cluster")) {
		colo_buf_printf(&b, "cluster_enabled:0\r\n");
	}
	if (section(&b, want, S_KEYSPACE, &sections, "Keyspace")) {
		if (keys)
			colo_buf_printf(&b, "db0:keys=%llu,expires=0,avg_ttl=0\r\n", (unsigned long long)keys);
	}
	if (b.failed)
		x->out->failed = true;
	colo_resp_bulk(x->out, b.data, b.len);
	colo_buf_free(&b);
	return 0;
}

/* ---- dispatch ---- */

static const struct cmd config_subs[] = {
	{ "get", "config|get", -3, cmd_config_get, NULL },
	{ "set", "config|set", -4, cmd_config_set, NULL },
	{ "resetstat", "config|resetstat", 2, cmd_config_resetstat, NULL },
	{ "rewrite", "config|rewrite", 2, cmd_config_rewrite, NULL },
	{ "help", "config|help", 2, cmd_config_help, NULL },
	{ NULL, NULL, 0, NULL, NULL },
};

static const struct cmd client_subs[] = {
	{ "id", "client|id", 2, cmd_client_id, NULL },
	{ "getname", "client|getname", 2, cmd_client_getname, NULL },
	{ "setname", "client|setname", 3, cmd_client_setname, NULL },
	{ "setinfo", "client|setinfo", 4, cmd_client_setinfo, NULL },
	{ "help", "client|help", 2, cmd_client_help, NULL },
	{ NULL, NULL, 0, NULL, NULL },
};

static const struct cmd command_subs[] = {
	{ "count", "command|count", 2, cmd_command_count, NULL },
	{ "docs", "command|docs", -2, cmd_command, NULL },
	{ "info", "command|info", -2, cmd_command_info, NULL },
	{ "list", "command|list", -2, cmd_command_list, NULL },
	{ "help", "command|help", 2, cmd_command_help, NULL },
	{ NULL, NULL, 0, NULL, NULL },
};

/* The hot ones first: lookup is a walk. */
static const struct cmd commands[] = {
	{ "get", "get", 2, cmd_get, NULL },
	{ "set", "set", -3, cmd_set, NULL },
	{ "incr", "incr", 2, cmd_incr, NULL },
	{ "ping", "ping", -1, cmd_ping, NULL },
	{ "mget", "mget", -2, cmd_mget, NULL },
	{ "mset", "mset", -3, cmd_mset, NULL },
	{ "del", "del", -2, cmd_del, NULL },
	{ "exists", "exists", -2, cmd_exists, NULL },
	{ "incrby", "incrby", 3, cmd_incrby, NULL },
	{ "decr", "decr", 2, cmd_decr, NULL },
	{ "decrby", "decrby", 3, cmd_decrby, NULL },
	{ "getset", "getset", 3, cmd_getset, NULL },
	{ "append", "append", 3, cmd_append, NULL },
	{ "strlen", "strlen", 2, cmd_strlen, NULL },
	{ "echo", "echo", 2, cmd_echo, NULL },
	{ "type", "type", 2, cmd_type, NULL },
	{ "dbsize", "dbsize", 1, cmd_dbsize, NULL },
	{ "scan", "scan", -2, cmd_scan, NULL },
	{ "keys", "keys", 2, cmd_keys, NULL },
	{ "flushall", "flushall", -1, cmd_flush, NULL },
	{ "flushdb", "flushdb", -1, cmd_flush, NULL },
	{ "select", "select", 2, cmd_select, NULL },
	{ "quit", "quit", -1, cmd_quit, NULL },
	{ "reset", "reset", 1, cmd_reset, NULL },
	{ "auth", "auth", -2, cmd_auth, NULL },
	{ "hello", "hello", -1, cmd_hello, NULL },
	{ "info", "info", -1, cmd_info, NULL },
	{ "config", "config", -2, NULL, config_subs },
	{ "client", "client", -2, NULL, client_subs },
	{ "command", "command", -1, cmd_command, command_subs },
	{ NULL, NULL, 0, NULL, NULL },
};

static size_t command_count(void)
{
	return sizeof(commands) / sizeof(commands[0]) - 1;
}

static const char *command_name(size_t i)
{
	return commands[i].name;
}

static const struct cmd *lookup(const struct cmd *table, const uint8_t *name, size_t len)
{
	for (const struct cmd *c = table; c->name; c++)
		if (bytes_eq_nocase(name, len, c->name))
			return c;
	return NULL;
}

/* ---- test only ---- */

/* n random bytes from the kernel; false if there are none to be had. */
static bool random_bytes(uint8_t *b, size_t n)
{
	ssize_t got = getrandom(b, n, 0);
	int fd;

	if (got == (ssize_t)n)
		return true;
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	got = read(fd, b, n);
	close(fd);
	return got == (ssize_t)n;
}

/*
 * COLOTEST.NONDET key: the key becomes 16 random hex digits, which are the
 * reply.  Deliberately not deterministic, so that tests can make the two
 * nodes of compare mode disagree (docs/kv.md).
 */
static int cmd_colotest_nondet(struct exec *x)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t rnd[8];
	char v[16];
	int r;

	if (!random_bytes(rnd, sizeof(rnd)))
		return reply_error(x, "ERR no random bytes to be had");
	for (size_t i = 0; i < sizeof(rnd); i++) {
		v[2 * i] = hex[rnd[i] >> 4];
		v[2 * i + 1] = hex[rnd[i] & 15];
	}
	r = colo_kv_set(x->kv, x->argv[1], x->argl[1], v, sizeof(v), 0);
	if (r < 0)
		return reply_store_error(x, r);
	colo_resp_bulk(x->out, v, sizeof(v));
	return COLO_KVCMD_WROTE;
}

/* Known only with COLO_KV_TEST_NONDET=1 in the environment; not counted
 * or listed by COMMAND. */
static const struct cmd test_commands[] = {
	{ "colotest.nondet", "colotest.nondet", 2, cmd_colotest_nondet, NULL },
	{ NULL, NULL, 0, NULL, NULL },
};

static bool test_commands_on(void)
{
	const char *v = getenv("COLO_KV_TEST_NONDET");

	return v && strcmp(v, "1") == 0;
}

/* Redis's text, with its C-string view of the arguments and its length caps. */
static void reply_unknown(struct exec *x)
{
	char args[160];
	size_t at = 0;

	args[0] = '\0';
	for (int i = 1; i < x->argc && at < 128; i++) {
		int room = 128 - (int)at;
		size_t n = cstr_len(x->argv[i], x->argl[i]);

		at += (size_t)snprintf(args + at, sizeof(args) - at, "'%.*s' ",
				       n < (size_t)room ? (int)n : room, x->argv[i]);
	}
	colo_resp_error(x->out, "ERR unknown command '%.*s', with args beginning with: %s",
			(int)(cstr_len(x->argv[0], x->argl[0]) < 128 ?
			      cstr_len(x->argv[0], x->argl[0]) : 128),
			x->argv[0], args);
}

int colo_kvcmd_exec(struct colo_kvcmd_ctx *ctx, int argc, uint8_t *const *argv,
		    const size_t *argl, struct colo_buf *out)
{
	struct exec x = { ctx, ctx->kv, argc, argv, argl, out };
	const struct cmd *c = lookup(commands, argv[0], argl[0]);

	if (!c && test_commands_on())
		c = lookup(test_commands, argv[0], argl[0]);
	if (c && c->subs && argc >= 2) {
		const struct cmd *sub = lookup(c->subs, argv[1], argl[1]);

		if (!sub) {
			char upper[16];
			size_t i;

			for (i = 0; c->name[i] && i < sizeof(upper) - 1; i++)
				upper[i] = (char)(c->name[i] - 'a' + 'A');
			upper[i] = '\0';
			colo_resp_error(out, "ERR unknown subcommand '%.*s'. Try %s HELP.",
					(int)(cstr_len(argv[1], argl[1]) < 128 ?
					      cstr_len(argv[1], argl[1]) : 128),
					argv[1], upper);
			return 0;
		}
		c = sub;
	}
	if (!c) {
		reply_unknown(&x);
		return 0;
	}
	if ((c->arity > 0 && argc != c->arity) || argc < -c->arity) {
		colo_resp_error(out, "ERR wrong number of arguments for '%s' command", c->fullname);
		return 0;
	}
	return c->run(&x);
}
