/* guest.c: see guest.h. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>

#include "guest.h"

void colo_guest_machine_name(const struct colo_guest_ops *ops, char *buf, size_t len)
{
	snprintf(buf, len, "colo-%s-%" PRIu32, ops->kind, ops->version);
}
