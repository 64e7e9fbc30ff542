/*
 * config.c: a node's configuration from defaults, an INI file and flags
 * (see nodecfg.h, DESIGN.md §6).
 *
 * One table, `opts`, says for every key its section, type, range or
 * values, default, the field it fills and its --help line.  The defaults
 * are strings parsed by the same code as the file and the flags, so what
 * --help prints is what a node runs with.  The file is read by libinih
 * through our own line reader, which counts lines (libinih as packaged
 * does not pass line numbers to the handler), checks section headers
 * (libinih does not report a section without keys) and refuses lines
 * longer than libinih's buffer (it would silently split them).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfgopt.h"
#include "nodecfg.h"

/* ---- the option table ---- */

/* Role-dependent defaults, computed once the name is known. */
enum opt_dyn { DYN_NONE, DYN_NAME, DYN_CONTROL, DYN_STATE_DIR };

static const char *const level_values[] = { "error", "warn", "info", "debug", NULL };
static const char *const output_values[] = { "buffer", "none", NULL };
static const char *const dirty_values[] = { "auto", "uffd-wp", "mprotect", "manual", NULL };
static const char *const pattern_values[] = { "sequential", "random", "hotset", NULL };
static const char *const guest_values[] = { "kv", "memtouch", NULL };

/* The table writes enums through an int: they must be int-sized. */
_Static_assert(sizeof(enum colo_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum colo_output_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum colo_dirty_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum colo_memtouch_pattern) == sizeof(int), "enum size");
_Static_assert(COLO_LOG_DEBUG == 3 && COLO_OUTPUT_NONE == 1 &&
	       COLO_DIRTY_MANUAL == 3 && COLO_MEMTOUCH_HOTSET == 2,
	       "value tables follow the enums");

static bool check_name(const char *v, char *why, size_t len);
static bool check_control(const char *v, char *why, size_t len);

#define F(field) offsetof(struct colo_config, field)

static const struct colo_opt opts[] = {
	/* [node] */
	{ "name", COLO_SEC_NODE, COLO_OPT_STR, F(name), .check = check_name, .dyn = DYN_NAME,
	  .meta = "NAME", .help = "node name: in logs, the control socket's name "
	  "and the peer's view" },
	{ "control", COLO_SEC_NODE, COLO_OPT_STR, F(control), .check = check_control,
	  .dyn = DYN_CONTROL, .meta = "PATH", .help = "control socket for colo-ctl" },
	{ "state-dir", COLO_SEC_NODE, COLO_OPT_STR, F(state_dir), .check = colo_opt_check_nonempty,
	  .dyn = DYN_STATE_DIR, .meta = "DIR",
	  .help = "keeps the node's generation across restarts" },
	{ "log-level", COLO_SEC_NODE, COLO_OPT_ENUM, F(log_level), .values = level_values,
	  .def = "info", .meta = "LEVEL", .help = "error, warn, info or debug" },
	{ "fault", COLO_SEC_NODE, COLO_OPT_STR, F(fault), .def = "", .hidden = true },
	/* [replication] */
	{ "listen", COLO_SEC_REPLICATION, COLO_OPT_ADDR, F(listen), .def = "127.0.0.1:7070",
	  .meta = "ADDR", .help = "secondary: where to accept the primary, "
	  "a.b.c.d:PORT or [IPv6]:PORT" },
	{ "peer", COLO_SEC_REPLICATION, COLO_OPT_ADDR, F(peer), .def = "127.0.0.1:7070",
	  .meta = "ADDR", .help = "primary: the secondary's listen address" },
	{ "checkpoint-interval-ms", COLO_SEC_REPLICATION, COLO_OPT_UINT,
	  F(checkpoint_interval_ms), 1, 60000, .def = "100", .meta = "MS",
	  .help = "primary: checkpoints every MS ms, 1 to 60000" },
	{ "min-interval-ms", COLO_SEC_REPLICATION, COLO_OPT_UINT, F(min_interval_ms), 0, 60000,
	  .def = "0", .meta = "MS", .help = "primary: never start two checkpoints "
	  "less than MS ms apart, 0 to checkpoint-interval-ms" },
	{ "output-mode", COLO_SEC_REPLICATION, COLO_OPT_ENUM, F(output_mode),
	  .values = output_values, .def = "buffer", .meta = "MODE",
	  .help = "primary: buffer holds the guest's output until its checkpoint "
	  "is acknowledged; none releases it at once, which is unsafe" },
	{ "encodings", COLO_SEC_REPLICATION, COLO_OPT_ENCODINGS, F(encodings),
	  .def = "zero,raw,lz4,delta,delta-lz4", .meta = "LIST",
	  .help = "page encodings the primary offers and the secondary accepts, "
	  "from zero, raw, lz4, delta, delta-lz4, xbzrle; raw is always on" },
	{ "encode-threads", COLO_SEC_REPLICATION, COLO_OPT_UINT, F(encode_threads), 0, 64,
	  .def = "0", .meta = "N",
	  .help = "primary: threads encoding pages, 1 to 64, 0 = one per CPU" },
	{ "dirty-tracking", COLO_SEC_REPLICATION, COLO_OPT_ENUM, F(dirty_tracking),
	  .values = dirty_values, .def = "auto", .meta = "MODE",
	  .help = "how guest writes are found: auto, uffd-wp, mprotect or manual" },
	/* [heartbeat] */
	{ "heartbeat-interval-ms", COLO_SEC_HEARTBEAT, COLO_OPT_UINT, F(heartbeat_interval_ms),
	  1, 10000, .def = "50", .meta = "MS",
	  .help = "a heartbeat to the peer every MS ms, 1 to 10000" },
	{ "heartbeat-timeout-ms", COLO_SEC_HEARTBEAT, COLO_OPT_UINT, F(heartbeat_timeout_ms),
	  1, 60000, .def = "300", .meta = "MS", .help = "the peer is dead after MS ms "
	  "without one; more than the interval, up to 60000" },
	{ "fence-command", COLO_SEC_HEARTBEAT, COLO_OPT_STR, F(fence_command), .def = "",
	  .meta = "CMD", .help = "secondary: run by sh -c to fence the old primary "
	  "before taking over; it must exit 0" },
	{ "promote-command", COLO_SEC_HEARTBEAT, COLO_OPT_STR, F(promote_command), .def = "",
	  .meta = "CMD", .help = "secondary: run by sh -c once it has taken over" },
	/* [guest] */
	{ "guest", COLO_SEC_GUEST, COLO_OPT_CHOICE, F(guest), .values = guest_values,
	  .def = "kv", .meta = "KIND", .help = "the guest to run: kv or memtouch" },
	{ "guest-listen", COLO_SEC_GUEST, COLO_OPT_ADDR, F(guest_listen), .def = "127.0.0.1:6379",
	  .meta = "ADDR", .help = "kv: the address of the guest's service" },
	{ "ram-mb", COLO_SEC_GUEST, COLO_OPT_UINT, F(ram_mb), 1, 65536, .def = "64",
	  .meta = "MB", .help = "guest RAM in MiB, 1 to 65536; the same on both nodes" },
	{ "memtouch-rate", COLO_SEC_GUEST, COLO_OPT_UINT, F(memtouch_rate), 0, UINT32_MAX,
	  .def = "20000", .meta = "N",
	  .help = "memtouch: writes per second per thread, 0 = no limit" },
	{ "memtouch-pattern", COLO_SEC_GUEST, COLO_OPT_ENUM, F(memtouch_pattern),
	  .values = pattern_values, .def = "random", .meta = "PATTERN",
	  .help = "memtouch: where writes land: sequential, random or hotset" },
	{ "memtouch-bytes", COLO_SEC_GUEST, COLO_OPT_UINT, F(memtouch_bytes), 1, 4096,
	  .def = "64", .meta = "N", .help = "memtouch: bytes per write, 1 to 4096" },
	{ "memtouch-threads", COLO_SEC_GUEST, COLO_OPT_UINT, F(memtouch_threads), 1, 64,
	  .def = "1", .meta = "N", .help = "memtouch: writer threads, 1 to 64" },
	{ "memtouch-seed", COLO_SEC_GUEST, COLO_OPT_U64, F(memtouch_seed), .def = "1",
	  .meta = "N", .help = "memtouch: seed of the write pattern" },
	/* [record] */
	{ "record", COLO_SEC_RECORD, COLO_OPT_STR, F(record), .def = "", .meta = "DIR",
	  .help = "record every checkpoint into DIR for colo-replay; empty: no "
	  "recording (colo-ctl record start|stop at run time)" },
	{ "keyframe-every", COLO_SEC_RECORD, COLO_OPT_UINT, F(keyframe_every), 1, 1000000,
	  .def = "100", .meta = "N", .help = "a full keyframe every N recorded "
	  "checkpoints, 1 to 1000000" },
	{ "record-max-bytes", COLO_SEC_RECORD, COLO_OPT_U64, F(record_max_bytes), .def = "0",
	  .meta = "BYTES", .help = "delete the oldest segments above BYTES, 0 = no limit" },
	{ "record-max-checkpoints", COLO_SEC_RECORD, COLO_OPT_U64, F(record_max_checkpoints),
	  .def = "0", .meta = "N", .help = "delete the oldest segments above N "
	  "checkpoints, 0 = no limit" },
};

#undef F

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const struct colo_opt *opt_find(const char *key)
{
	for (size_t i = 0; i < NOPTS; i++)
		if (strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

/* ---- string checks ---- */

/* A name goes into socket paths, file names and log lines. */
static bool check_name(const char *v, char *why, size_t len)
{
	size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "0123456789._-");
	char q[128];

	if (n > 0 && n <= 63 && !v[n] && v[0] != '.' && v[0] != '-')
		return true;
	snprintf(why, len, "'%s' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, "
		 "not starting with . or -)", colo_opt_shown(v, q, sizeof(q)));
	return false;
}

static bool check_control(const char *v, char *why, size_t len)
{
	struct sockaddr_un sun;
	char q[128];

	if (!colo_opt_check_nonempty(v, why, len))
		return false;
	if (strlen(v) < sizeof(sun.sun_path))
		return true;
	snprintf(why, len, "'%s' is too long for a unix socket path (at most %zu bytes)",
		 colo_opt_shown(v, q, sizeof(q)), sizeof(sun.sun_path) - 1);
	return false;
}

/* ---- setting a value ---- */


static int set_defaults(struct colo_config *cfg, struct colo_err *err)
{
	char why[COLO_ERR_MAX];

	for (size_t i = 0; i < NOPTS; i++) {
		int rc;

		if (!opts[i].def)
			continue;
		rc = colo_opt_set(&opts[i], cfg, opts[i].def, why, sizeof(why));
		/* A default that does not parse is a bug in the table. */
		if (rc == -EINVAL)
			abort();
		if (rc)
			return colo_err_set(err, -rc, "out of memory");
	}
	return 0;
}

/* Defaults that follow the name and the user: after the file and the flags. */
static int set_derived(struct colo_config *cfg, struct colo_err *err)
{
	char why[COLO_ERR_MAX];
	char *path = NULL;
	int rc = 0;

	if (!cfg->name && colo_opt_set_string(&cfg->name, colo_role_name(cfg->role)))
		return colo_err_set(err, ENOMEM, "out of memory");
	if (!cfg->control) {
		const char *xdg = getenv("XDG_RUNTIME_DIR");

		if (geteuid() == 0)
			rc = asprintf(&path, "/run/colo/%s.sock", cfg->name);
		else if (xdg && *xdg)
			rc = asprintf(&path, "%s/colo/%s.sock", xdg, cfg->name);
		else
			rc = asprintf(&path, "/tmp/colo-%u/%s.sock", (unsigned)geteuid(),
				      cfg->name);
		if (rc < 0)
			return colo_err_set(err, ENOMEM, "out of memory");
		if (!check_control(path, why, sizeof(why))) {
			free(path);
			return colo_err_set(err, EINVAL, "control (default): %s", why);
		}
		cfg->control = path;
	}
	if (!cfg->state_dir) {
		const char *home = getenv("HOME");
		struct passwd *pw;

		if (geteuid() == 0) {
			rc = asprintf(&path, "/var/lib/colo");
		} else {
			if ((!home || !*home) && (pw = getpwuid(geteuid())))
				home = pw->pw_dir;
			if (home && *home)
				rc = asprintf(&path, "%s/.local/state/colo", home);
			else
				rc = asprintf(&path, "/tmp/colo-%u/state", (unsigned)geteuid());
		}
		if (rc < 0)
			return colo_err_set(err, ENOMEM, "out of memory");
		cfg->state_dir = path;
	}
	return 0;
}

static int cross_check(const struct colo_config *cfg, struct colo_err *err)
{
	if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms)
		return colo_err_set(err, EINVAL, "heartbeat-timeout-ms (%" PRIu32 ") must "
				    "be greater than heartbeat-interval-ms (%" PRIu32 ")",
				    cfg->heartbeat_timeout_ms, cfg->heartbeat_interval_ms);
	if (cfg->min_interval_ms > cfg->checkpoint_interval_ms)
		return colo_err_set(err, EINVAL, "min-interval-ms (%" PRIu32 ") must not "
				    "be greater than checkpoint-interval-ms (%" PRIu32 ")",
				    cfg->min_interval_ms, cfg->checkpoint_interval_ms);
	return 0;
}

/* ---- the file ---- */

struct file_ctx {
	struct colo_config *cfg;
	FILE *f;
	int line;                 /* of the line libinih is parsing */
	int seen[NOPTS];          /* line each key was set on */
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
			char name[64], q[80];

			if (len >= sizeof(name))
				len = sizeof(name) - 1;
			memcpy(name, p + 1, len);
			name[len] = '\0';
			if (strcmp(name, "security") == 0)
				file_fail(c, "section [%s] is not supported by this version "
					  "(peer authentication is not built yet)", name);
			else
				file_fail(c, "unknown section [%s] (sections: [node] [replication] "
					  "[heartbeat] [guest] [record])", colo_opt_shown(name, q, sizeof(q)));
			return NULL;
		}
	}
	return str;
}

static int file_key(void *user, const char *section, const char *key, const char *value)
{
	struct file_ctx *c = user;
	const struct colo_opt *o = opt_find(key);
	char why[COLO_ERR_MAX], q[128];
	size_t i;

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
	i = (size_t)(o - opts);
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
	if (colo_opt_set(o, c->cfg, value, why, sizeof(why))) {
		file_fail(c, "[%s] %s: %s", section, q, why);
		return 0;
	}
	return 1;
}

static int load_file(struct colo_config *cfg, const char *path, struct colo_err *err)
{
	struct file_ctx c = { .cfg = cfg };
	int rc;

	c.f = fopen(path, "r");
	if (!c.f) {
		rc = errno;
		return colo_err_set(err, rc, "config file '%s': %s", path, strerror(rc));
	}
	rc = ini_parse_stream(file_reader, &c, file_key, &c);
	fclose(c.f);
	free(c.buf);
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

/* ---- flags ---- */

enum { FLAG_CONFIG = 'c', FLAG_HELP = 'h', FLAG_VERSION = 'V',
       FLAG_CHECK = 0x100, FLAG_KEY = 0x200 };

struct flag_value {
	const struct colo_opt *opt;
	const char *value;
};

static void long_options(struct option *lo)
{
	size_t n = 0;

	lo[n++] = (struct option){ "config", required_argument, NULL, FLAG_CONFIG };
	lo[n++] = (struct option){ "help", no_argument, NULL, FLAG_HELP };
	lo[n++] = (struct option){ "version", no_argument, NULL, FLAG_VERSION };
	lo[n++] = (struct option){ "check-config", no_argument, NULL, FLAG_CHECK };
	for (size_t i = 0; i < NOPTS; i++)
		lo[n++] = (struct option){ opts[i].key, required_argument, NULL,
					   FLAG_KEY + (int)i };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };
}

/* The option word in argv as the user wrote it, without "=VALUE". */
static const char *option_word(const char *arg, char *buf, size_t len)
{
	size_t n = strcspn(arg, "=");
	char q[128];

	if (n >= sizeof(q))
		n = sizeof(q) - 1;
	memcpy(q, arg, n);
	q[n] = '\0';
	return colo_opt_shown(q, buf, len);
}

/*
 * Defaults, then the file of -c, then the flags, then what follows from
 * them.  Returns 1 after --help / --version (printed to out).
 */
static int build(struct colo_config *cfg, enum colo_role role, int argc, char **argv,
		 const char *reload_file, FILE *out, bool *check_only,
		 struct colo_err *err)
{
	struct option lo[NOPTS + 5];
	struct flag_value *flags;
	const char *file = NULL;
	char why[COLO_ERR_MAX], q[160];
	int nflags = 0, c, rc = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->role = role;
	rc = set_defaults(cfg, err);
	if (rc)
		return rc;
	long_options(lo);
	flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*flags));
	if (!flags)
		return colo_err_set(err, ENOMEM, "out of memory");
	/*
	 * getopt keeps its state in globals, among them a pointer to where it
	 * stopped inside the previous argv: we return at "-h" of "-hV", leaving
	 * it on the "V".  With optind = 1 glibc would resume from that pointer,
	 * into an argv that may be freed by now (reload parses a copy; tests
	 * parse many).  optind = 0 makes glibc re-initialize everything,
	 * including the ordering read from the "+" of this optstring: stop at
	 * the first non-option, never permute the caller's argv.
	 */
	optind = 0;
	opterr = 0;
	while (argc > 0) {
		int at = optind ? optind : 1, idx = -1;

		c = getopt_long(argc, argv, "+:c:hV", lo, &idx);
		if (c == -1)
			break;
		/* Keys are spelled out in full: a prefix getopt would accept
		 * today could become ambiguous when a key is added. */
		if (idx >= 0 && at < argc && strncmp(argv[at], "--", 2) == 0) {
			size_t n = strcspn(argv[at] + 2, "=");

			if (strlen(lo[idx].name) != n ||
			    strncmp(lo[idx].name, argv[at] + 2, n) != 0) {
				rc = colo_err_set(err, EINVAL, "unknown option '%s' (did you "
						  "mean --%s?)", option_word(argv[at], q,
						  sizeof(q)), lo[idx].name);
				goto out;
			}
		}
		switch (c) {
		case FLAG_CONFIG:
			file = optarg;
			break;
		case FLAG_HELP:
			colo_config_usage(role, out);
			rc = 1;
			goto out;
		case FLAG_VERSION:
			fprintf(out, "colo-%s (%s) %s\n", colo_role_name(role), PACKAGE_NAME,
				PACKAGE_VERSION);
			rc = 1;
			goto out;
		case FLAG_CHECK:
			if (check_only)
				*check_only = true;
			break;
		case ':':
			if (optopt >= FLAG_KEY || optopt == FLAG_CONFIG)
				rc = colo_err_set(err, EINVAL, "option '%s' needs a value",
						  option_word(argv[optind - 1], q, sizeof(q)));
			else
				rc = colo_err_set(err, EINVAL, "option '-%c' needs a value",
						  optopt);
			goto out;
		case '?': {
			/* optopt: 0 for an unknown long option, the option's
			 * value for "--help=x", the letter for a short one. */
			const char *w = argv[optind - 1];
			bool is_long = strncmp(w, "--", 2) == 0;

			if (is_long && optopt)
				rc = colo_err_set(err, EINVAL, "option '%s' takes no value",
						  option_word(w, q, sizeof(q)));
			else if (is_long)
				rc = colo_err_set(err, EINVAL, "unknown option '%s' (see --help)",
						  option_word(w, q, sizeof(q)));
			else
				rc = colo_err_set(err, EINVAL, "unknown option '-%c' (see --help)",
						  optopt);
			goto out;
		}
		default:
			flags[nflags].opt = &opts[c - FLAG_KEY];
			flags[nflags++].value = optarg;
			break;
		}
	}
	if (argc > 0 && optind < argc) {
		rc = colo_err_set(err, EINVAL, "unexpected argument '%s' (options only; "
				  "see --help)", colo_opt_shown(argv[optind], q, sizeof(q)));
		goto out;
	}
	if (reload_file)
		file = reload_file;
	if (file) {
		rc = load_file(cfg, file, err);
		if (rc)
			goto out;
		/* Absolute, so that a reload after a chdir reads the same file. */
		cfg->file = realpath(file, NULL);
		if (!cfg->file)
			cfg->file = strdup(file);
		if (!cfg->file) {
			rc = colo_err_set(err, ENOMEM, "out of memory");
			goto out;
		}
	}
	for (int i = 0; i < nflags; i++) {
		rc = colo_opt_set(flags[i].opt, cfg, flags[i].value, why, sizeof(why));
		if (rc == -EINVAL)
			rc = colo_err_set(err, EINVAL, "%s: %s", flags[i].opt->key, why);
		else if (rc)
			rc = colo_err_set(err, -rc, "out of memory");
		if (rc)
			goto out;
	}
	rc = set_derived(cfg, err);
	if (rc == 0)
		rc = cross_check(cfg, err);
out:
	free(flags);
	return rc;
}

static char **copy_argv(int argc, char **argv)
{
	char **copy = calloc((size_t)(argc > 0 ? argc : 0) + 1, sizeof(*copy));

	for (int i = 0; copy && i < argc; i++) {
		copy[i] = strdup(argv[i]);
		if (!copy[i]) {
			while (i--)
				free(copy[i]);
			free(copy);
			return NULL;
		}
	}
	return copy;
}

int colo_config_load(struct colo_config *cfg, enum colo_role role, int argc,
		     char **argv, FILE *out, bool *check_only, struct colo_err *err)
{
	int rc;

	if (check_only)
		*check_only = false;
	rc = build(cfg, role, argc, argv, NULL, out, check_only, err);
	if (rc == 0) {
		cfg->priv_argv = copy_argv(argc, argv);
		cfg->priv_argc = argc > 0 ? argc : 0;
		if (!cfg->priv_argv)
			rc = colo_err_set(err, ENOMEM, "out of memory");
	}
	if (rc != 0)
		colo_config_free(cfg);
	return rc;
}

int colo_config_reload(struct colo_config *cfg, struct colo_err *err)
{
	struct colo_config next;
	int rc;

	rc = build(&next, cfg->role, cfg->priv_argc, cfg->priv_argv, cfg->file, stdout,
		   NULL, err);
	if (rc == 1)      /* --help: load would have refused to start */
		rc = colo_err_set(err, EINVAL, "--help or --version among the flags");
	if (rc != 0) {
		colo_config_free(&next);
		return rc;
	}
	/* The flags stay: they belong to the process, not to the file. */
	next.priv_argc = cfg->priv_argc;
	next.priv_argv = cfg->priv_argv;
	cfg->priv_argv = NULL;
	colo_config_free(cfg);
	*cfg = next;
	return 0;
}

void colo_config_free(struct colo_config *cfg)
{
	for (size_t i = 0; i < NOPTS; i++)
		colo_opt_clear(&opts[i], cfg);
	free(cfg->file);
	cfg->file = NULL;
	if (cfg->priv_argv) {
		for (int i = 0; i < cfg->priv_argc; i++)
			free(cfg->priv_argv[i]);
		free(cfg->priv_argv);
	}
	cfg->priv_argv = NULL;
	cfg->priv_argc = 0;
}

/* ---- names ---- */

const char *colo_output_mode_name(enum colo_output_mode m)
{
	return (unsigned)m < 2 ? output_values[m] : "?";
}

/* ---- --help ---- */

#define HELP_COLUMN 32
#define HELP_WIDTH 79

/* "  --key META" then the text, wrapped, from HELP_COLUMN. */
static void help_entry(FILE *out, const char *left, const char *text)
{
	int col = fprintf(out, "  %s", left);
	const char *p = text;

	if (col > HELP_COLUMN - 3) {
		fputc('\n', out);
		col = 0;
	}
	fprintf(out, "%*s", HELP_COLUMN - col, "");
	col = HELP_COLUMN;
	while (*p) {
		size_t w = strcspn(p, " ");

		if (col > HELP_COLUMN && col + 1 + (int)w > HELP_WIDTH) {
			fprintf(out, "\n%*s", HELP_COLUMN, "");
			col = HELP_COLUMN;
		} else if (col > HELP_COLUMN) {
			fputc(' ', out);
			col++;
		}
		fwrite(p, 1, w, out);
		col += (int)w;
		p += w;
		p += strspn(p, " ");
	}
	fputc('\n', out);
}

static const char *default_text(const struct colo_opt *o, enum colo_role role)
{
	switch (o->dyn) {
	case DYN_NAME:
		return colo_role_name(role);
	case DYN_CONTROL:
		return "/run/colo/NAME.sock as root, else $XDG_RUNTIME_DIR/colo/NAME.sock "
		       "or /tmp/colo-UID/NAME.sock";
	case DYN_STATE_DIR:
		return "/var/lib/colo as root, else ~/.local/state/colo";
	case DYN_NONE:
		break;
	}
	return *o->def ? o->def : "none";
}

void colo_config_usage(enum colo_role role, FILE *out)
{
	bool primary = role == COLO_ROLE_PRIMARY;
	char left[64], text[512];

	fprintf(out, "Usage: colo-%s [OPTIONS]\n\n", colo_role_name(role));
	if (primary)
		fputs("Run a guest and replicate its state to colo-secondary at every\n"
		      "checkpoint, so that the secondary can take over where it stopped.\n",
		      out);
	else
		fputs("Hold a copy of colo-primary's guest, updated at every checkpoint, and\n"
		      "take over when the primary's heartbeats stop.\n", out);
	fputs("Every option is also a key of the INI file given with -c, in the\n"
	      "[section] it is listed under.  Flags win over the file, the file over\n"
	      "the defaults.  Options marked primary: or secondary: matter to that\n"
	      "role only; both accept them, so one file can serve a pair.\n\n", out);
	help_entry(out, "-c, --config FILE", "read settings from the INI file FILE");
	help_entry(out, "--check-config", "check the settings, say whether they are "
		   "good and exit (0: good, 2: bad)");
	help_entry(out, "-h, --help", "print this help and exit");
	help_entry(out, "-V, --version", "print the version and exit");
	for (int s = 0; s < COLO_SEC_COUNT; s++) {
		fprintf(out, "\n[%s]\n", colo_opt_section_names[s]);
		for (size_t i = 0; i < NOPTS; i++) {
			const struct colo_opt *o = &opts[i];

			if (o->section != (enum colo_opt_section)s || o->hidden)
				continue;
			snprintf(left, sizeof(left), "--%s %s", o->key, o->meta);
			snprintf(text, sizeof(text), "%s (default %s)", o->help,
				 default_text(o, role));
			help_entry(out, left, text);
		}
	}
	fputs("\nExit status:\n"
	      "  0  stopped cleanly\n"
	      "  1  runtime failure\n"
	      "  2  bad usage or configuration\n"
	      "  3  setup failure: cannot listen, bind, connect or start the guest\n"
	      "  4  state-dir unusable\n"
	      "  5  superseded by a newer generation (fenced)\n"
	      "  6  fence-command failed\n", out);
}
