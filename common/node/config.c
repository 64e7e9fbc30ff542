/*
 * config.c: a node's configuration from defaults, an INI file and flags
 * (see nodecfg.h, DESIGN.md §6): the order they apply in, the flags,
 * reload, and the guests' settings blocks.
 *
 * The keys are cfgkeys.c's list (the node's own, then the guests'); the
 * file is cfgfile.c's; a value is parsed by cfgopt.c.  Flags are parsed
 * first but applied after the file, so that they win over it whatever
 * their place around -c.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfgfile.h"
#include "cfgkeys.h"
#include "cfgopt.h"
#include "nodecfg.h"

/* ---- what follows from the others ---- */

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
		if (!colo__cfg_check_control(path, why, sizeof(why))) {
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
	const struct colo_guest_ops *g = colo_config_guest_ops(cfg);

	if (cfg->output_mode == COLO_OUTPUT_COMPARE && g &&
	    (!g->compare_tap || !g->compare_run || !g->output_match))
		return colo_err_set(err, EINVAL, "output-mode compare: the %s guest cannot "
				    "run it (its copy on the secondary would not say the "
				    "same; it is for guests that answer clients "
				    "deterministically, e.g. kv): use buffer", g->kind);
	if (cfg->heartbeat_timeout_ms <= cfg->heartbeat_interval_ms)
		return colo_err_set(err, EINVAL, "heartbeat-timeout-ms (%" PRIu32 ") must "
				    "be greater than heartbeat-interval-ms (%" PRIu32 ")",
				    cfg->heartbeat_timeout_ms, cfg->heartbeat_interval_ms);
	if (cfg->min_interval_ms > cfg->checkpoint_interval_ms)
		return colo_err_set(err, EINVAL, "min-interval-ms (%" PRIu32 ") must not "
				    "be greater than checkpoint-interval-ms (%" PRIu32 ")",
				    cfg->min_interval_ms, cfg->checkpoint_interval_ms);
	if (cfg->encrypt && !cfg->psk_file[0])
		return colo_err_set(err, EINVAL, "encrypt = yes needs a psk-file: the "
				    "connection's keys come from it");
	if (cfg->arbiter == COLO_ARBITER_ETCD && !cfg->etcd_endpoints[0])
		return colo_err_set(err, EINVAL, "arbiter = etcd needs etcd-endpoints "
				    "(http://HOST:PORT, comma-separated)");
	if (cfg->lease_ttl_ms % 1000)
		return colo_err_set(err, EINVAL, "lease-ttl-ms (%" PRIu32 ") must be a "
				    "multiple of 1000: etcd counts leases in seconds",
				    cfg->lease_ttl_ms);
	if (cfg->arbiter == COLO_ARBITER_ETCD && cfg->output_mode == COLO_OUTPUT_NONE)
		return colo_err_set(err, EINVAL, "arbiter = etcd needs output-mode = buffer "
				    "or compare: with none, replies leave before anything "
				    "is checked");
	return 0;
}

/* ---- flags, load and reload ---- */

enum { FLAG_CONFIG = 'c', FLAG_HELP = 'h', FLAG_VERSION = 'V',
       FLAG_CHECK = 0x100, FLAG_KEY = 0x200 };

struct flag_value {
	size_t key;                 /* index in the key list */
	const char *value;
};

static void long_options(struct option *lo, const struct colo__cfg_keys *k)
{
	size_t n = 0;

	lo[n++] = (struct option){ "config", required_argument, NULL, FLAG_CONFIG };
	lo[n++] = (struct option){ "help", no_argument, NULL, FLAG_HELP };
	lo[n++] = (struct option){ "version", no_argument, NULL, FLAG_VERSION };
	lo[n++] = (struct option){ "check-config", no_argument, NULL, FLAG_CHECK };
	for (size_t i = 0; i < k->n; i++) {
		const struct colo_opt *o = colo__cfg_key(k, i, NULL);

		/* A switch takes its value only as "--key=VALUE". */
		lo[n++] = (struct option){ o->key, o->bare ? optional_argument :
					   required_argument, NULL, FLAG_KEY + (int)i };
	}
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

/* A zeroed settings block for every guest of the list that has keys. */
static int make_settings(struct colo_config *cfg, const struct colo__cfg_keys *k,
			 struct colo_err *err)
{
	cfg->priv_guests = k->guests;
	if (!k->nguests)
		return 0;
	cfg->priv_settings = calloc(k->nguests, sizeof(*cfg->priv_settings));
	if (!cfg->priv_settings)
		return colo_err_set(err, ENOMEM, "out of memory");
	for (size_t g = 0; g < k->nguests; g++) {
		size_t size = k->guests[g]->settings_size;

		if (size && !(cfg->priv_settings[g] = calloc(1, size)))
			return colo_err_set(err, ENOMEM, "out of memory");
	}
	return 0;
}

/*
 * Defaults, then the file of -c, then the flags, then what follows from
 * them.  Returns 1 after --help / --version (printed to out).  On error
 * cfg holds what was made so far, for colo_config_free().
 */
static int build(struct colo_config *cfg, enum colo_role role,
		 const struct colo_guest_ops *const *guests, int argc, char **argv,
		 const char *reload_file, FILE *out, bool *check_only,
		 struct colo_err *err)
{
	struct colo__cfg_keys keys;
	struct option *lo = NULL;
	struct flag_value *flags = NULL;
	const char *file = NULL;
	char why[COLO_ERR_MAX], q[160];
	int nflags = 0, c, rc = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->role = role;
	colo__cfg_keys_init(&keys, guests);
	rc = make_settings(cfg, &keys, err);
	if (rc == 0)
		rc = colo__cfg_set_defaults(cfg, &keys, err);
	if (rc)
		return rc;
	lo = calloc(keys.n + 5, sizeof(*lo));
	flags = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*flags));
	if (!lo || !flags) {
		rc = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	long_options(lo, &keys);
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
			colo_config_usage(role, guests, out);
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
			flags[nflags].key = (size_t)(c - FLAG_KEY);
			flags[nflags++].value = optarg ? optarg :
				colo__cfg_key(&keys, (size_t)(c - FLAG_KEY), NULL)->bare;
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
		rc = colo__cfg_file_load(cfg, &keys, file, err);
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
		rc = colo__cfg_key_set(cfg, &keys, flags[i].key, flags[i].value, why,
				       sizeof(why));
		if (rc == -EINVAL)
			rc = colo_err_set(err, EINVAL, "%s: %s",
					  colo__cfg_key(&keys, flags[i].key, NULL)->key, why);
		else if (rc)
			rc = colo_err_set(err, -rc, "out of memory");
		if (rc)
			goto out;
	}
	if (cfg->checkpoint_interval_ms == 0)
		cfg->checkpoint_interval_ms = cfg->output_mode == COLO_OUTPUT_COMPARE ?
					      COLO_INTERVAL_COMPARE_MS :
					      COLO_INTERVAL_BUFFER_MS;
	rc = set_derived(cfg, err);
	if (rc == 0)
		rc = cross_check(cfg, err);
out:
	free(flags);
	free(lo);
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

int colo_config_load(struct colo_config *cfg, enum colo_role role,
		     const struct colo_guest_ops *const *guests, int argc, char **argv,
		     FILE *out, bool *check_only, struct colo_err *err)
{
	int rc;

	if (check_only)
		*check_only = false;
	rc = build(cfg, role, guests, argc, argv, NULL, out, check_only, err);
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

	rc = build(&next, cfg->role, cfg->priv_guests, cfg->priv_argc, cfg->priv_argv,
		   cfg->file, stdout, NULL, err);
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
	struct colo__cfg_keys keys;

	colo__cfg_keys_init(&keys, cfg->priv_guests);
	colo__cfg_clear_keys(cfg, &keys);
	if (cfg->priv_settings) {
		for (size_t g = 0; g < keys.nguests; g++)
			free(cfg->priv_settings[g]);
		free(cfg->priv_settings);
	}
	cfg->priv_settings = NULL;
	cfg->priv_guests = NULL;
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

/* ---- the guests ---- */

void *colo_config_guest(const struct colo_config *cfg, const struct colo_guest_ops *ops)
{
	for (size_t g = 0; cfg->priv_guests && cfg->priv_guests[g]; g++)
		if (cfg->priv_guests[g] == ops)
			return cfg->priv_settings ? cfg->priv_settings[g] : NULL;
	return NULL;
}

const struct colo_guest_ops *colo_config_guest_ops(const struct colo_config *cfg)
{
	for (size_t g = 0; cfg->guest && cfg->priv_guests && cfg->priv_guests[g]; g++)
		if (strcmp(cfg->priv_guests[g]->kind, cfg->guest) == 0)
			return cfg->priv_guests[g];
	return NULL;
}
