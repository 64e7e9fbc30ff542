/*
 * registry.h: the built-in guests, for the configuration (the guest key
 * and each guest's own keys) and by kind.
 *
 * A fixed table of struct colo_guest_ops (static, never freed); safe from
 * any thread.
 */
#ifndef COLO_GUEST_REGISTRY_H
#define COLO_GUEST_REGISTRY_H

#include "guest.h"

/* Every built-in guest, NULL-terminated, the default (kv) first: the list
 * a program hands to colo_node_init() / colo_config_load(). */
const struct colo_guest_ops *const *colo_guest_list(void);

/* The ops of the guest of that kind ("memtouch"), or NULL. */
const struct colo_guest_ops *colo_guest_find(const char *kind);

/* Every known kind, comma separated, for messages such as
 * "unknown guest 'x' (known: memtouch)". */
const char *colo_guest_kinds(void);

#endif
