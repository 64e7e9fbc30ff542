/*
 * registry.h: the built-in guests by kind, for the [guest] guest key.
 *
 * A fixed table of struct colo_guest_ops (static, never freed); safe from
 * any thread.
 */
#ifndef COLO_GUEST_REGISTRY_H
#define COLO_GUEST_REGISTRY_H

#include "guest.h"

/* The ops of the guest of that kind ("memtouch"), or NULL. */
const struct colo_guest_ops *colo_guest_find(const char *kind);

/* Every known kind, comma separated, for messages such as
 * "unknown guest 'x' (known: memtouch)". */
const char *colo_guest_kinds(void);

#endif
