/*
 * cfgkeys.c: the node's own keys, the list with the guests' keys, and
 * --help (see cfgkeys.h, nodecfg.h, DESIGN.md §6).
 *
 * One table, `opts`, says for every key of the node its section, type,
 * range or values, default, the field it fills and its --help line.  The
 * defaults are strings parsed by the same code as the file and the flags,
 * so what --help prints is what a node runs with.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "cfgkeys.h"
#include "nodecfg.h"

/* ---- the node's own keys ---- */

static const char *const level_values[] = { "error", "warn", "info", "debug", NULL };
static const char *const output_values[] = { "buffer", "none", "compare", NULL };
static const char *const no_yes[] = { "no", "yes", NULL };
static const char *const arbiter_values[] = { "none", "etcd", NULL };
static const char *const dirty_values[] = { "auto", "uffd-wp", "mprotect", "manual", "soft-dirty",
					    NULL };

/* The table writes enums through an int: they must be int-sized. */
_Static_assert(sizeof(enum colo_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum colo_output_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum colo_dirty_mode) == sizeof(int), "enum size");
_Static_assert(COLO_ARBITER_ETCD == 1, "arbiter_values follows the enum");
_Static_assert(COLO_LOG_DEBUG == 3 && COLO_OUTPUT_NONE == 1 && COLO_OUTPUT_COMPARE == 2 && COLO_DIRTY_MANUAL == 3 &&
	       COLO_DIRTY_SOFT_DIRTY == 4,
	       "value tables follow the enums");

static bool check_name(const char *v, char *why, size_t len);
static bool check_metrics_listen(const char *v, char *why, size_t len);
static bool check_endpoints(const char *v, char *why, size_t len);
static bool check_cluster(const char *v, char *why, size_t len);

#define F(field) offsetof(struct colo_config, field)

static const struct colo_opt opts[] = {
	/* [node] */
	{ "name", COLO_SEC_NODE, COLO_OPT_STR, F(name), .check = check_name,
	  .dyn = COLO__CFG_DYN_NAME, .meta = "NAME", .help = "node name: in logs, "
	  "the control socket's name and the peer's view" },
	{ "control", COLO_SEC_NODE, COLO_OPT_STR, F(control),
	  .check = colo__cfg_check_control, .dyn = COLO__CFG_DYN_CONTROL, .meta = "PATH",
	  .help = "control socket for colo-ctl" },
	{ "state-dir", COLO_SEC_NODE, COLO_OPT_STR, F(state_dir),
	  .check = colo_opt_check_nonempty, .dyn = COLO__CFG_DYN_STATE_DIR, .meta = "DIR",
	  .help = "keeps the node's generation across restarts" },
	{ "metrics-listen", COLO_SEC_NODE, COLO_OPT_STR, F(metrics_listen), .def = "",
	  .check = check_metrics_listen, .meta = "ADDR", .help = "serve Prometheus "
	  "metrics at http://ADDR/metrics, a.b.c.d:PORT or [IPv6]:PORT (unauthenticated, "
	  "read-only); empty: none" },
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
	  F(checkpoint_interval_ms), 0, 60000, .def = "0", .meta = "MS",
	  .help = "primary: checkpoints every MS ms, 1 to 60000; 0 = 100, or 20000 "
	  "with output-mode compare" },
	{ "min-interval-ms", COLO_SEC_REPLICATION, COLO_OPT_UINT, F(min_interval_ms),
	  0, 60000, .def = "0", .meta = "MS", .help = "primary: never start two "
	  "checkpoints less than MS ms apart, 0 to checkpoint-interval-ms" },
	{ "output-mode", COLO_SEC_REPLICATION, COLO_OPT_ENUM, F(output_mode),
	  .values = output_values, .def = "buffer", .meta = "MODE",
	  .help = "primary: buffer holds the guest's output until its checkpoint "
	  "is acknowledged; compare releases it once the secondary's copy of the "
	  "guest said the same (both nodes must say compare); none releases it "
	  "at once, which is unsafe" },
	{ "compare-timeout-ms", COLO_SEC_REPLICATION, COLO_OPT_UINT, F(compare_timeout_ms),
	  1, 60000, .def = "200", .meta = "MS", .help = "primary, output-mode compare: "
	  "a checkpoint when the secondary's answer for a reply is MS ms late" },
	{ "encodings", COLO_SEC_REPLICATION, COLO_OPT_ENCODINGS, F(encodings),
	  .def = "zero,raw,lz4,delta,delta-lz4", .meta = "LIST",
	  .help = "page encodings the primary offers and the secondary accepts, "
	  "from zero, raw, lz4, delta, delta-lz4, xbzrle; raw is always on" },
	{ "encode-threads", COLO_SEC_REPLICATION, COLO_OPT_UINT, F(encode_threads), 0, 64,
	  .def = "0", .meta = "N",
	  .help = "primary: threads encoding pages, 1 to 64, 0 = one per CPU" },
	{ "dirty-tracking", COLO_SEC_REPLICATION, COLO_OPT_ENUM, F(dirty_tracking),
	  .values = dirty_values, .def = "auto", .meta = "MODE",
	  .help = "how guest writes are found: auto, uffd-wp, soft-dirty, mprotect or "
		  "manual" },
	/* [heartbeat] */
	{ "heartbeat-interval-ms", COLO_SEC_HEARTBEAT, COLO_OPT_UINT,
	  F(heartbeat_interval_ms), 1, 10000, .def = "50", .meta = "MS",
	  .help = "a heartbeat to the peer every MS ms, 1 to 10000" },
	{ "heartbeat-timeout-ms", COLO_SEC_HEARTBEAT, COLO_OPT_UINT,
	  F(heartbeat_timeout_ms), 1, 60000, .def = "300", .meta = "MS",
	  .help = "the peer is dead after MS ms without one; more than the "
	  "interval, up to 60000" },
	{ "fence-command", COLO_SEC_HEARTBEAT, COLO_OPT_STR, F(fence_command), .def = "",
	  .meta = "CMD", .help = "secondary: run by sh -c to fence the old primary "
	  "before taking over; it must exit 0" },
	{ "promote-command", COLO_SEC_HEARTBEAT, COLO_OPT_STR, F(promote_command),
	  .def = "", .meta = "CMD",
	  .help = "secondary: run by sh -c once it has taken over" },
	/* [guest]: the keys of every guest; each guest's own keys follow these
	 * (struct colo_guest_ops.opts).  Values, default and help of guest and
	 * the help of guest-listen are made from the guest list. */
	{ "guest", COLO_SEC_GUEST, COLO_OPT_CHOICE, F(guest), .dyn = COLO__CFG_DYN_GUEST,
	  .meta = "KIND" },
	{ "guest-listen", COLO_SEC_GUEST, COLO_OPT_ADDR, F(guest_listen),
	  .def = "127.0.0.1:6379", .dyn = COLO__CFG_DYN_GUEST_LISTEN, .meta = "ADDR" },
	{ "ram-mb", COLO_SEC_GUEST, COLO_OPT_UINT, F(ram_mb), 1, 65536, .def = "64",
	  .meta = "MB", .help = "guest RAM in MiB, 1 to 65536; the same on both nodes" },
	/* [record] */
	{ "record", COLO_SEC_RECORD, COLO_OPT_STR, F(record), .def = "", .meta = "DIR",
	  .help = "record every checkpoint into DIR for colo-replay; empty: no "
	  "recording (colo-ctl record start|stop at run time)" },
	{ "keyframe-every", COLO_SEC_RECORD, COLO_OPT_UINT, F(keyframe_every), 1, 1000000,
	  .def = "100", .meta = "N", .help = "a full keyframe every N recorded "
	  "checkpoints, 1 to 1000000" },
	{ "record-max-bytes", COLO_SEC_RECORD, COLO_OPT_U64, F(record_max_bytes),
	  .def = "0", .meta = "BYTES",
	  .help = "delete the oldest segments above BYTES, 0 = no limit" },
	{ "record-max-checkpoints", COLO_SEC_RECORD, COLO_OPT_U64,
	  F(record_max_checkpoints), .def = "0", .meta = "N",
	  .help = "delete the oldest segments above N checkpoints, 0 = no limit" },
	/* [security] */
	{ "psk-file", COLO_SEC_SECURITY, COLO_OPT_STR, F(psk_file), .def = "", .meta = "FILE",
	  .help = "the pre-shared key both nodes authenticate with (32 bytes or 64 hex "
	  "digits, mode 0600; colo-ctl keygen FILE writes one); empty: none, "
	  "loopback only" },
	{ "encrypt", COLO_SEC_SECURITY, COLO_OPT_ENUM, F(encrypt), .values = no_yes,
	  .def = "no", .meta = "no|yes", .help = "also encrypt the replication "
	  "connection (needs psk-file; both nodes must agree)" },
	{ "insecure", COLO_SEC_SECURITY, COLO_OPT_ENUM, F(insecure), .values = no_yes,
	  .def = "no", .bare = "yes", .meta = "yes|no", .help = "run without psk-file on "
	  "addresses that are not loopback: anyone who reaches them is believed" },
	/* [arbiter] */
	{ "arbiter", COLO_SEC_ARBITER, COLO_OPT_ENUM, F(arbiter), .values = arbiter_values,
	  .def = "none", .meta = "none|etcd", .help = "who decides which node serves: none "
	  "(the pair alone, heartbeats) or etcd (a lease there; no split brain)" },
	{ "etcd-endpoints", COLO_SEC_ARBITER, COLO_OPT_STR, F(etcd_endpoints), .def = "",
	  .check = check_endpoints, .meta = "URLS",
	  .help = "etcd's client URLs, http://HOST:PORT, comma-separated" },
	{ "lease-ttl-ms", COLO_SEC_ARBITER, COLO_OPT_UINT, F(lease_ttl_ms), 1000, 600000,
	  .def = "2000", .meta = "MS", .help = "the primary's lease in etcd, a multiple of "
	  "1000 from 1000; a promotion may wait this long" },
	{ "cluster", COLO_SEC_ARBITER, COLO_OPT_STR, F(cluster), .def = "colo",
	  .check = check_cluster, .meta = "NAME",
	  .help = "this pair's keys in etcd are under /colo/NAME/ (one etcd, many pairs)" },
	{ "release-log", COLO_SEC_ARBITER, COLO_OPT_STR, F(release_log), .def = "",
	  .meta = "FILE", .help = "append a line per release of held output to FILE "
	  "(for audits and the partition test); empty: none" },
	{ "allow-split-brain", COLO_SEC_ARBITER, COLO_OPT_ENUM, F(allow_split_brain),
	  .values = no_yes, .def = "no", .bare = "yes", .meta = "yes|no",
	  .help = "run with arbiter none and no fence-command on addresses that are not "
	  "loopback, where a partition lets both nodes serve" },
};

#undef F

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

const char *colo_output_mode_name(enum colo_output_mode m)
{
	return (unsigned)m < 3 ? output_values[m] : "?";
}

/* ---- value checks ---- */

/* A name goes into socket paths, file names and log lines. */
static bool is_name(const char *v)
{
	size_t n = strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "0123456789._-");

	return n > 0 && n <= 63 && !v[n] && v[0] != '.' && v[0] != '-';
}

/* metrics-listen: empty, or an address as listen takes. */
static bool check_metrics_listen(const char *v, char *why, size_t len)
{
	struct colo_addr a;

	return !*v || colo_opt_parse_addr(v, &a, why, len) == 0;
}

static bool check_name(const char *v, char *why, size_t len)
{
	char q[128];

	if (is_name(v))
		return true;
	snprintf(why, len, "'%s' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, "
		 "not starting with . or -)", colo_opt_shown(v, q, sizeof(q)));
	return false;
}

/* The cluster is a path element of the keys in etcd. */
static bool check_cluster(const char *v, char *why, size_t len)
{
	char q[128];

	if (is_name(v))
		return true;
	snprintf(why, len, "'%s' is not a cluster name (1 to 63 of A-Z a-z 0-9 . _ -, "
		 "not starting with . or -)", colo_opt_shown(v, q, sizeof(q)));
	return false;
}

/* http://HOST:PORT[,...]: plain HTTP on a numeric port, nothing after it. */
static bool check_endpoints(const char *v, char *why, size_t len)
{
	const char *p = v;
	char q[128];

	if (!*v)
		return true;
	while (*p) {
		const char *end = strchr(p, ','), *colon;
		size_t n = end ? (size_t)(end - p) : strlen(p);
		unsigned long port;
		char one[256], *stop;

		if (n >= sizeof(one) || n <= 7 || strncmp(p, "http://", 7) != 0)
			goto bad;
		memcpy(one, p, n);
		one[n] = '\0';
		colon = strrchr(one + 7, ':');
		if (!colon || colon == one + 7 || strchr(one + 7, '/'))
			goto bad;
		errno = 0;
		port = strtoul(colon + 1, &stop, 10);
		if (errno || *stop || colon[1] == '\0' || port == 0 || port > 65535)
			goto bad;
		p += n;
		if (*p == ',' && *++p == '\0')
			goto bad;
	}
	return true;
bad:
	snprintf(why, len, "'%s' is not a list of http://HOST:PORT, comma-separated",
		 colo_opt_shown(v, q, sizeof(q)));
	return false;
}

bool colo__cfg_check_control(const char *v, char *why, size_t len)
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

/* ---- the list: the node's keys, then each guest's ---- */

/* "a", "a or b", "a, b or c". */
static void join_or(const char *const *names, size_t n, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s",
				       i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
}

/* A guest table the config cannot fill is a bug in that guest. */
static void check_guest_table(const struct colo_guest_ops *ops)
{
	if (ops->nopts && (!ops->opts || !ops->settings_size))
		abort();
	for (size_t j = 0; j < ops->nopts; j++) {
		const struct colo_opt *o = &ops->opts[j];

		if ((o->section != COLO_SEC_GUEST && o->section != COLO_SEC_QEMU) ||
		    !o->def || o->dyn || o->off >= ops->settings_size)
			abort();
	}
}

void colo__cfg_keys_init(struct colo__cfg_keys *k,
			 const struct colo_guest_ops *const *guests)
{
	const char *listening[COLO__CFG_GUESTS_MAX];
	size_t nlistening = 0;
	char list[160];

	memset(k, 0, sizeof(*k));
	k->guests = guests;
	for (size_t g = 0; guests && guests[g]; g++) {
		if (g == COLO__CFG_GUESTS_MAX)
			abort();
		check_guest_table(guests[g]);
		k->kinds[g] = guests[g]->kind;
		if (guests[g]->listens)
			listening[nlistening++] = guests[g]->kind;
		k->n += guests[g]->nopts;
		k->nguests++;
	}
	k->n += NOPTS;
	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].dyn == COLO__CFG_DYN_GUEST)
			k->guest_key = opts[i];
		else if (opts[i].dyn == COLO__CFG_DYN_GUEST_LISTEN)
			k->listen_key = opts[i];
	}
	/* The first guest of the list is the default one. */
	k->guest_key.values = k->kinds;
	k->guest_key.def = k->kinds[0];
	join_or(k->kinds, k->nguests, list, sizeof(list));
	snprintf(k->guest_help, sizeof(k->guest_help), "the guest to run: %s", list);
	k->guest_key.help = k->guest_help;
	/* "a, b: the address ...": the guests that serve clients there. */
	list[0] = '\0';
	for (size_t i = 0, at = 0; i < nlistening && at < sizeof(list); i++)
		at += (size_t)snprintf(list + at, sizeof(list) - at, "%s%s%s",
				       i ? ", " : "", listening[i],
				       i + 1 == nlistening ? ": " : "");
	snprintf(k->listen_help, sizeof(k->listen_help),
		 "%sthe address of the guest's service", list);
	k->listen_key.help = k->listen_help;
	/* One key, one meaning: a guest may not redefine another's key. */
	for (size_t i = 0; i < k->n; i++)
		for (size_t j = 0; j < i; j++)
			if (strcmp(colo__cfg_key(k, i, NULL)->key,
				   colo__cfg_key(k, j, NULL)->key) == 0)
				abort();
}

const struct colo_opt *colo__cfg_key(const struct colo__cfg_keys *k, size_t i,
				     int *guest)
{
	if (guest)
		*guest = -1;
	if (i < NOPTS) {
		if (opts[i].dyn == COLO__CFG_DYN_GUEST)
			return &k->guest_key;
		if (opts[i].dyn == COLO__CFG_DYN_GUEST_LISTEN)
			return &k->listen_key;
		return &opts[i];
	}
	i -= NOPTS;
	for (size_t g = 0; g < k->nguests; g++) {
		if (i < k->guests[g]->nopts) {
			if (guest)
				*guest = (int)g;
			return &k->guests[g]->opts[i];
		}
		i -= k->guests[g]->nopts;
	}
	abort();                          /* i >= k->n */
}

const struct colo_opt *colo__cfg_key_find(const struct colo__cfg_keys *k,
					  const char *key, size_t *index)
{
	for (size_t i = 0; i < k->n; i++) {
		const struct colo_opt *o = colo__cfg_key(k, i, NULL);

		if (strcmp(o->key, key) == 0) {
			*index = i;
			return o;
		}
	}
	return NULL;
}

/* The struct key i fills: cfg, or its guest's block (NULL if not made). */
static void *key_base(struct colo_config *cfg, int guest)
{
	if (guest < 0)
		return cfg;
	return cfg->priv_settings ? cfg->priv_settings[guest] : NULL;
}

int colo__cfg_key_set(struct colo_config *cfg, const struct colo__cfg_keys *k,
		      size_t i, const char *v, char *why, size_t len)
{
	int guest;
	const struct colo_opt *o = colo__cfg_key(k, i, &guest);
	void *base = key_base(cfg, guest);

	if (!base)                        /* config.c makes every block first */
		abort();
	return colo_opt_set(o, base, v, why, len);
}

int colo__cfg_set_defaults(struct colo_config *cfg, const struct colo__cfg_keys *k,
			   struct colo_err *err)
{
	char why[COLO_ERR_MAX];

	for (size_t i = 0; i < k->n; i++) {
		const struct colo_opt *o = colo__cfg_key(k, i, NULL);
		int rc;

		if (!o->def)
			continue;
		rc = colo__cfg_key_set(cfg, k, i, o->def, why, sizeof(why));
		/* A default that does not parse is a bug in the table. */
		if (rc == -EINVAL)
			abort();
		if (rc)
			return colo_err_set(err, -rc, "out of memory");
	}
	return 0;
}

void colo__cfg_clear_keys(struct colo_config *cfg, const struct colo__cfg_keys *k)
{
	for (size_t i = 0; i < k->n; i++) {
		int guest;
		const struct colo_opt *o = colo__cfg_key(k, i, &guest);
		void *base = key_base(cfg, guest);

		if (base)
			colo_opt_clear(o, base);
	}
}

/* ---- --help ---- */

const char colo__cfg_intro_primary[] =
	"Run a guest and replicate its state to colo-secondary at every\n"
	"checkpoint, so that the secondary can take over where it stopped.\n";
const char colo__cfg_intro_secondary[] =
	"Hold a copy of colo-primary's guest, updated at every checkpoint, and\n"
	"take over when the primary's heartbeats stop.\n";
const char colo__cfg_intro_keys[] =
	"Every option is also a key of the INI file given with -c, in the\n"
	"[section] it is listed under.  Flags win over the file, the file over\n"
	"the defaults.  Options marked primary: or secondary: matter to that\n"
	"role only; both accept them, so one file can serve a pair.\n";
const char *const colo__cfg_exit_statuses[] = {
	"stopped cleanly",
	"runtime failure",
	"bad usage or configuration",
	"setup failure: cannot listen, bind, connect or start the guest",
	"state-dir unusable",
	"superseded by a newer generation (fenced)",
	"fence-command failed",
	"the guest died (a VM's QEMU exited, hung or ended COLO)",
	NULL,
};

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

const char *colo__cfg_default_text(const struct colo_opt *o, enum colo_role role)
{
	switch (o->dyn) {
	case COLO__CFG_DYN_NAME:
		return colo_role_name(role);
	case COLO__CFG_DYN_CONTROL:
		return "/run/colo/NAME.sock as root, else $XDG_RUNTIME_DIR/colo/NAME.sock "
		       "or /tmp/colo-UID/NAME.sock";
	case COLO__CFG_DYN_STATE_DIR:
		return "/var/lib/colo as root, else ~/.local/state/colo";
	default:
		break;
	}
	return o->def && *o->def ? o->def : "none";
}

void colo__cfg_each_shown(const struct colo__cfg_keys *k,
			  void (*fn)(void *ud, const struct colo_opt *o, bool first), void *ud)
{
	for (int s = 0; s < COLO_SEC_COUNT; s++) {
		bool first = true;

		for (size_t i = 0; i < k->n; i++) {
			const struct colo_opt *o = colo__cfg_key(k, i, NULL);

			if (o->section != (enum colo_opt_section)s || o->hidden)
				continue;
			fn(ud, o, first);
			first = false;
		}
	}
}

struct usage {
	FILE *out;
	enum colo_role role;
};

static void usage_key(void *ud, const struct colo_opt *o, bool first)
{
	struct usage *u = ud;
	char left[64], text[512];

	/* a section only some guests have is left out without them */
	if (first)
		fprintf(u->out, "\n[%s]\n", colo_opt_section_names[o->section]);
	snprintf(left, sizeof(left), o->bare ? "--%s[=%s]" : "--%s %s", o->key, o->meta);
	snprintf(text, sizeof(text), "%s (default %s)", o->help,
		 colo__cfg_default_text(o, u->role));
	help_entry(u->out, left, text);
}

void colo_config_usage(enum colo_role role, const struct colo_guest_ops *const *guests,
		       FILE *out)
{
	bool primary = role == COLO_ROLE_PRIMARY;
	struct colo__cfg_keys k;
	struct usage u;

	colo__cfg_keys_init(&k, guests);

	fprintf(out, "Usage: colo-%s [OPTIONS]\n\n", colo_role_name(role));
	fputs(primary ? colo__cfg_intro_primary : colo__cfg_intro_secondary, out);
	fputs(colo__cfg_intro_keys, out);
	fputc('\n', out);
	help_entry(out, "-c, --config FILE", "read settings from the INI file FILE");
	help_entry(out, "--check-config", "check the settings, say whether they are "
		   "good and exit (0: good, 2: bad)");
	help_entry(out, "-h, --help", "print this help and exit");
	help_entry(out, "-V, --version", "print the version and exit");
	u.out = out;
	u.role = role;
	colo__cfg_each_shown(&k, usage_key, &u);
	fputs("\nExit status:\n", out);
	for (int i = 0; colo__cfg_exit_statuses[i]; i++)
		fprintf(out, "  %d  %s\n", i, colo__cfg_exit_statuses[i]);
}
