/*
 * cfgfile.h: a node's INI file, read into its configuration (internal to
 * the configuration: config.c calls it; DESIGN.md §6).
 *
 * Sections are the five of cfgopt.h; a key is known when the key list
 * (cfgkeys.h) has it, and belongs in its own section.  The first error
 * stops the reading and is reported as "FILE:LINE: why".
 *
 * Memory: the values go into cfg as colo_opt_set() puts them (strings
 * owned by cfg); nothing else outlives the call.  Reentrant.
 */
#ifndef COLO_CFGFILE_H
#define COLO_CFGFILE_H

#include "cfgkeys.h"
#include "err.h"

struct colo_config;

/* Set the keys the file at path sets.  0, or a negative errno with err
 * set (unreadable file, syntax, unknown or misplaced key, bad value). */
int colo__cfg_file_load(struct colo_config *cfg, const struct colo__cfg_keys *k,
			const char *path, struct colo_err *err);

#endif
