/*
 * role.h: what a node is (primary or secondary) and how much it logs.
 *
 * The two enums the log, the configuration and the engines all speak, in
 * a header of their own so that log.h needs nothing else (not the
 * configuration, not RAM).  Header only: no memory, no state; everything
 * here may be used from any thread.
 */
#ifndef COLO_ROLE_H
#define COLO_ROLE_H

enum colo_role {
	COLO_ROLE_PRIMARY,
	COLO_ROLE_SECONDARY,
};

/* In order of verbosity: a level logs itself and everything above it. */
enum colo_log_level {
	COLO_LOG_ERROR,
	COLO_LOG_WARN,
	COLO_LOG_INFO,
	COLO_LOG_DEBUG,
};

/* "primary", "secondary" (the default node names), "?" for anything else. */
static inline const char *colo_role_name(enum colo_role r)
{
	return r == COLO_ROLE_PRIMARY ? "primary" : r == COLO_ROLE_SECONDARY ?
	       "secondary" : "?";
}

#endif
