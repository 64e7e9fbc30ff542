/* registry.c: see registry.h. */
#include "config.h"

#include <pthread.h>
#include <stddef.h>
#include <string.h>

#include "kv.h"
#include "memtouch.h"
#include "qemu.h"
#include "registry.h"

/* The first is the default guest. */
static const struct colo_guest_ops *const guests[] = {
	&colo_kv_ops,
	&colo_memtouch_ops,
	&colo_qemu_ops,
	NULL
};

#define NGUESTS (sizeof(guests) / sizeof(guests[0]) - 1)

static char kinds[256];
static pthread_once_t kinds_once = PTHREAD_ONCE_INIT;

const struct colo_guest_ops *const *colo_guest_list(void)
{
	return guests;
}

const struct colo_guest_ops *colo_guest_find(const char *kind)
{
	if (!kind)
		return NULL;
	for (size_t i = 0; i < NGUESTS; i++)
		if (strcmp(guests[i]->kind, kind) == 0)
			return guests[i];
	return NULL;
}

/* Built from the table, so the list in messages cannot drift from it. */
static void kinds_build(void)
{
	size_t at = 0;

	for (size_t i = 0; i < NGUESTS; i++) {
		size_t n = strlen(guests[i]->kind);

		if (at + n + 3 > sizeof(kinds))
			break;
		if (i) {
			memcpy(kinds + at, ", ", 2);
			at += 2;
		}
		memcpy(kinds + at, guests[i]->kind, n);
		at += n;
	}
	kinds[at] = '\0';
}

const char *colo_guest_kinds(void)
{
	pthread_once(&kinds_once, kinds_build);
	return kinds;
}
