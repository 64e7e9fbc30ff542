/*
 * hbcap.h: one heartbeat exactly as a node sends it, for tests.
 *
 * A heartbeat sender (hb.c) on its own loop sends one heartbeat to a
 * plain UDP socket of the caller's, which catches it: node, role,
 * generation, signed with key (NULL: unsigned).  Its seq starts at the
 * wall clock now, as a node's does when it starts.  Check assertions;
 * the caller owns the datagram.
 */
#ifndef COLO_TEST_HBCAP_H
#define COLO_TEST_HBCAP_H

#include <stddef.h>
#include <stdint.h>

struct dgram {
	uint8_t data[512];
	size_t len;
};

void hb_capture(const char *node, int role, uint64_t gen, const uint8_t *key,
		struct dgram *d);

#endif
