/*
 * nodecfg.h: a node's configuration (DESIGN.md §6).
 *
 * Every setting is an INI key `[section] key` in the file given with -c and
 * also the command-line flag `--key`; flags win over the file, the file over
 * the built-in defaults.  The defaults work on loopback with no file: a
 * primary and a secondary started with no options find each other on
 * 127.0.0.1:7070.  A bad value is refused with the key, the value and why,
 * e.g. "checkpoint-interval-ms: 'fast' is not an integer from 1 to 60000".
 *
 * Option tables (cfgopt.h) drive parsing of both sources, --help (every
 * option with its default) and validation: the node's own table, and one
 * per guest for the guest's own [guest] keys.  The program says which
 * guests it has (a NULL-terminated list of ops, guest.h; the first is the
 * default); each guest's keys fill a settings struct of its own that the
 * config allocates, and the guest reads with colo_config_guest().
 * colo_config_load() builds a config from defaults + file + argv;
 * colo_config_reload() re-reads the file of a running node (SIGHUP)
 * keeping the flags it was started with, and leaves the running config
 * untouched when the new one is bad.
 *
 * A struct colo_config owns its strings and the guests' settings blocks;
 * colo_config_free() releases them.  The guest list is the program's and
 * must outlive the config.  Not thread-safe (the loop thread owns the
 * running config).
 */
#ifndef COLO_NODECFG_H
#define COLO_NODECFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cfgopt.h"
#include "err.h"
#include "guest.h"
#include "ram.h"
#include "role.h"

enum colo_output_mode {
	COLO_OUTPUT_BUFFER,
	COLO_OUTPUT_NONE,
	COLO_OUTPUT_COMPARE,        /* the secondary runs the guest too (docs/compare.md) */
};

/* checkpoint-interval-ms 0: the output mode's own default. */
#define COLO_INTERVAL_BUFFER_MS 100
#define COLO_INTERVAL_COMPARE_MS 20000

/* [arbiter] arbiter: who decides which node may serve (DESIGN.md §4, docs/arbiter.md). */
enum colo_arbiter_kind {
	COLO_ARBITER_NONE,          /* the pair alone: heartbeats (and fence-command) */
	COLO_ARBITER_ETCD,          /* a lease and two keys in etcd */
};

struct colo_config {
	/* [node] */
	char *name;                 /* default: "primary" / "secondary" */
	char *control;              /* default: /run/colo/<name>.sock, or
				       $XDG_RUNTIME_DIR/colo/<name>.sock when not root */
	char *metrics_listen;       /* "": no metrics endpoint */
	char *state_dir;            /* default: /var/lib/colo, or
				       ~/.local/state/colo when not root */
	enum colo_log_level log_level;          /* log-level: error|warn|info|debug */
	/* [replication] */
	struct colo_addr listen;                /* 127.0.0.1:7070 */
	struct colo_addr peer;                  /* 127.0.0.1:7070 */
	uint32_t checkpoint_interval_ms;        /* 0 = by output mode: 100, compare
						   20000; 1..60000 */
	uint32_t min_interval_ms;               /* 0, 0..60000 */
	enum colo_output_mode output_mode;      /* buffer */
	uint32_t compare_timeout_ms;            /* 200, 1..60000 */
	uint32_t encodings;                     /* COLO_PAGE_KIND_BIT set; names
						   zero,raw,lz4,delta,delta-lz4,xbzrle;
						   default all but xbzrle */
	uint32_t encode_threads;                /* 0 = number of CPUs; 1..64 */
	enum colo_dirty_mode dirty_tracking;    /* auto */
	/* [heartbeat] */
	uint32_t heartbeat_interval_ms;         /* 50, 1..10000 */
	uint32_t heartbeat_timeout_ms;          /* 300, > interval, ..60000 */
	char *fence_command;                    /* "" = none; run by sh -c */
	char *promote_command;                  /* "" = none; run by sh -c */
	/* [guest] */
	char *guest;                            /* a kind of the guest list; default
						   its first */
	struct colo_addr guest_listen;          /* 127.0.0.1:6379 */
	uint32_t ram_mb;                        /* 64, 1..65536 */
	/* (each guest's own keys: colo_config_guest()) */
	/* [record] */
	char *record;                           /* "" = not recording */
	uint32_t keyframe_every;                /* 100, 1..1000000 */
	uint64_t record_max_bytes;              /* 0 = no limit */
	uint64_t record_max_checkpoints;        /* 0 = no limit */
	/* [security] (read at start; a reload does not change them) */
	char *psk_file;                         /* "" = no key */
	int encrypt;                            /* no|yes: seal the connection */
	int insecure;                           /* no|yes: no key off loopback */
	/* [arbiter] (read at start; a reload does not change them) */
	int arbiter;                            /* none|etcd (enum colo_arbiter_kind) */
	char *etcd_endpoints;                   /* http://H:P[,...] */
	uint32_t lease_ttl_ms;                  /* 2000: a multiple of 1000 */
	char *cluster;                          /* "colo": keys under /colo/<cluster>/ */
	char *release_log;                      /* "" = none: a line per output release */
	int allow_split_brain;                  /* no|yes: arbiter none off loopback */
	/* tests only, not in --help: abort() at a named phase */
	char *fault;                            /* "" = none */

	/* where it came from */
	char *file;                             /* -c FILE or NULL */
	enum colo_role role;

	/* private (config.c): the flags, re-applied by colo_config_reload() */
	int priv_argc;
	char **priv_argv;
	/* private (config.c): the guest list, and a settings block per guest
	   of it (NULL for a guest without keys) */
	const struct colo_guest_ops *const *priv_guests;
	void **priv_settings;
};

/*
 * Build the configuration of a node of `role` running one of `guests` (a
 * NULL-terminated list, the first the default; NULL: none) from defaults,
 * the file of -c (if any) and the flags in argv.  Returns 0; 1 when
 * --help or --version was handled (print to out, then exit 0); or a
 * negative errno with err set for a bad flag, file or value.
 * --check-config is reported through *check_only (validate and exit).
 */
int colo_config_load(struct colo_config *cfg, enum colo_role role,
		     const struct colo_guest_ops *const *guests, int argc, char **argv,
		     FILE *out, bool *check_only, struct colo_err *err);

/* Re-read cfg->file with the original flags on top; cfg is kept on error. */
int colo_config_reload(struct colo_config *cfg, struct colo_err *err);

void colo_config_free(struct colo_config *cfg);

/* Print --help for a role (every key, its section, default and meaning). */
void colo_config_usage(enum colo_role role, const struct colo_guest_ops *const *guests,
		       FILE *out);

/*
 * Documents made from the same table (cfgdoc.c): the example file, every
 * key commented with its default; and the man page `page` (colo-primary,
 * colo-secondary or colo.conf; -1 for another name) in roff.
 */
void colo_config_example(const struct colo_guest_ops *const *guests, FILE *out);
int colo_config_man(const char *page, const struct colo_guest_ops *const *guests,
		    FILE *out);

/*
 * The settings block of a guest of the list cfg was loaded with (its
 * ops->settings_size bytes, filled from its keys), or NULL: a guest
 * without keys, not in the list, or a config not made by load.  Owned by
 * cfg; writable, as tests set values no flag would accept.
 */
void *colo_config_guest(const struct colo_config *cfg, const struct colo_guest_ops *ops);

/* The ops of the guest the guest key names (NULL if not in the list). */
const struct colo_guest_ops *colo_config_guest_ops(const struct colo_config *cfg);

const char *colo_output_mode_name(enum colo_output_mode m);

#endif
