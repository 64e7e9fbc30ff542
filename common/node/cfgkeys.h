/*
 * cfgkeys.h: every key a node knows, as one list, and --help (internal to
 * the configuration: config.c and cfgfile.c use it).
 *
 * The list is the node's own table (the [node], [replication], [heartbeat]
 * and [record] keys, and guest, guest-listen and ram-mb, which every guest
 * has) followed by each guest's own table, in the order of the guest list
 * the program gives (guest.h).  Key i of the list is key i everywhere: the
 * flags, the file's "set twice" bookkeeping and --help follow it.  The
 * guest key's values and default (the first guest) and the --help lines of
 * guest and guest-listen are made from the list, so the node's table names
 * no guest.
 *
 * A node key fills struct colo_config; a guest's key fills that guest's
 * settings block, cfg->priv_settings[its place in the list].
 *
 * Memory: a struct colo__cfg_keys is plain data (no allocation) that
 * points at the guest list and into itself (the guest key's values): it
 * is valid while the list is, and is used in place, never copied.
 * Reentrant.
 */
#ifndef COLO_CFGKEYS_H
#define COLO_CFGKEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "cfgopt.h"
#include "err.h"
#include "guest.h"
#include "role.h"

struct colo_config;

/* More guests than this in one list is a programmer error (abort). */
#define COLO__CFG_GUESTS_MAX 16

/* How a key of the node's table gets a default that is not plain text. */
enum colo__cfg_dyn {
	COLO__CFG_DYN_NONE,
	COLO__CFG_DYN_NAME,          /* the role's name, after the file and flags */
	COLO__CFG_DYN_CONTROL,       /* from the name and the user */
	COLO__CFG_DYN_STATE_DIR,     /* from the user */
	COLO__CFG_DYN_GUEST,         /* values, default, help: from the list */
	COLO__CFG_DYN_GUEST_LISTEN,  /* help names the guests that listen */
};

struct colo__cfg_keys {
	const struct colo_guest_ops *const *guests;  /* NULL-terminated, or NULL */
	size_t nguests;
	size_t n;                                    /* keys in all */
	/* The guest and guest-listen keys, completed from the list. */
	struct colo_opt guest_key, listen_key;
	const char *kinds[COLO__CFG_GUESTS_MAX + 1];
	char guest_help[256], listen_help[256];
};

/*
 * The keys of a node running one of `guests` (NULL: none).  Aborts on a
 * table that cannot work: a guest key outside [guest], without a default
 * or a settings block to fill, or a key that two tables both define.
 */
void colo__cfg_keys_init(struct colo__cfg_keys *k,
			 const struct colo_guest_ops *const *guests);

/* Key i (< k->n); *guest = its guest's place in the list, -1 for the node's. */
const struct colo_opt *colo__cfg_key(const struct colo__cfg_keys *k, size_t i,
				     int *guest);

/* The key named `key` and its index, or NULL. */
const struct colo_opt *colo__cfg_key_find(const struct colo__cfg_keys *k,
					  const char *key, size_t *index);

/* colo_opt_set() for key i of cfg (in its guest's block for a guest key). */
int colo__cfg_key_set(struct colo_config *cfg, const struct colo__cfg_keys *k,
		      size_t i, const char *v, char *why, size_t len);

/* Every key that has a textual default, set to it. */
int colo__cfg_set_defaults(struct colo_config *cfg, const struct colo__cfg_keys *k,
			   struct colo_err *err);

/* Free every string field of cfg and of its guests' blocks (NULL after). */
void colo__cfg_clear_keys(struct colo_config *cfg, const struct colo__cfg_keys *k);

/* The check of the control key, also for its derived default. */
bool colo__cfg_check_control(const char *v, char *why, size_t len);

/* --help's words, shared with the generated documents (cfgdoc.c): what each
 * daemon does, how keys and flags relate, the exit statuses by number
 * (NULL-terminated); and a key's default as --help says it. */
extern const char colo__cfg_intro_primary[];
extern const char colo__cfg_intro_secondary[];
extern const char colo__cfg_intro_keys[];
extern const char *const colo__cfg_exit_statuses[];
const char *colo__cfg_default_text(const struct colo_opt *o, enum colo_role role);
/* fn(ud, o, first) for each key --help shows, a section at a time in the
 * sections' order; first: the first key of its section. */
void colo__cfg_each_shown(const struct colo__cfg_keys *k,
			  void (*fn)(void *ud, const struct colo_opt *o, bool first), void *ud);

#endif
