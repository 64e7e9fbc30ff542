/* hello.c: the replication handshake (see hello.h). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colo.pb-c.h"
#include "hello.h"
#include "nodecfg.h"
#include "ramfmt.h"

static Colo__Role role_to_pb(enum colo_role r)
{
	return r == COLO_ROLE_PRIMARY ? COLO__ROLE__ROLE_PRIMARY : COLO__ROLE__ROLE_SECONDARY;
}

int colo_hello_send(struct colo_repl_conn *c, const struct colo_hello *h)
{
	Colo__Hello pb = COLO__HELLO__INIT;
	char names[128], *list[COLO_PAGE_KINDS], *save = NULL, *tok;
	size_t count = 0, len;
	uint8_t *buf;
	int r;

	/* Encodings travel by name, so a peer that knows fewer ignores the rest. */
	colo_encodings_format(h->encodings, names, sizeof(names));
	for (tok = strtok_r(names, ",", &save); tok && count < COLO_PAGE_KINDS;
	     tok = strtok_r(NULL, ",", &save))
		list[count++] = tok;
	pb.protocol = h->protocol;
	pb.node_id = (char *)h->node;
	pb.role = role_to_pb(h->role);
	pb.generation = h->generation;
	pb.n_encodings = count;
	pb.encodings = list;
	pb.guest = (char *)h->guest;
	pb.heartbeat_port = h->heartbeat_port;
	pb.sync_seq = h->sync_seq;
	pb.accepted = h->accepted;
	pb.refusal = (char *)(h->refusal ? h->refusal : "");
	len = colo__hello__get_packed_size(&pb);
	buf = malloc(4 + len);
	if (!buf)
		return -ENOMEM;
	colo_store_be32(buf, (uint32_t)len);
	colo__hello__pack(&pb, buf + 4);
	r = colo_repl_send(c, buf, 4 + len);
	free(buf);
	return r;
}

int colo_hello_take(struct colo_repl_conn *c, struct colo_hello *h, struct colo_err *err)
{
	Colo__Hello *pb;
	struct colo_err ignored;
	uint32_t len;

	memset(h, 0, sizeof(*h));
	if (colo_repl_rx_len(c) < 4)
		return 0;
	len = colo_load_be32(colo_repl_rx(c));
	if (len == 0 || len > COLO_HELLO_MAX)
		return colo_err_set(err, EPROTO, "a Hello of %u bytes (at most %u)", len,
				    COLO_HELLO_MAX);
	if (colo_repl_rx_len(c) < 4 + (size_t)len)
		return 0;
	pb = colo__hello__unpack(NULL, len, colo_repl_rx(c) + 4);
	colo_repl_consume(c, 4 + (size_t)len);
	if (!pb || !pb->node_id) {
		if (pb)
			colo__hello__free_unpacked(pb, NULL);
		return colo_err_set(err, EPROTO, "a Hello that does not unpack");
	}
	h->priv = pb;
	h->protocol = pb->protocol;
	h->node = pb->node_id;
	h->role = pb->role == COLO__ROLE__ROLE_PRIMARY ? COLO_ROLE_PRIMARY :
		  COLO_ROLE_SECONDARY;
	h->generation = pb->generation;
	colo_err_clear(&ignored);
	for (size_t i = 0; i < pb->n_encodings; i++) {
		uint32_t one;

		if (colo_encodings_parse(pb->encodings[i], &one, &ignored) == 0)
			h->encodings |= one;
	}
	h->guest = pb->guest ? pb->guest : "";
	h->heartbeat_port = pb->heartbeat_port;
	h->sync_seq = pb->sync_seq;
	h->accepted = pb->accepted;
	h->refusal = pb->refusal && pb->refusal[0] ? pb->refusal : NULL;
	return 1;
}

void colo_hello_release(struct colo_hello *h)
{
	if (h->priv)
		colo__hello__free_unpacked(h->priv, NULL);
	memset(h, 0, sizeof(*h));
}

int colo_hello_check(const struct colo_hello *peer, const char *my_node,
		     const char *my_guest, char *why, size_t len)
{
	if (peer->protocol != COLO_REPL_VERSION)
		snprintf(why, len, "replication protocol %u, this node speaks %d",
			 peer->protocol, COLO_REPL_VERSION);
	else if (strcmp(peer->node, my_node) == 0)
		snprintf(why, len, "node '%s' is this node: check --peer", peer->node);
	else if (strcmp(peer->guest, my_guest) != 0)
		snprintf(why, len, "%s %s runs guest '%s', this node '%s'",
			 colo_role_name(peer->role), peer->node, peer->guest, my_guest);
	else
		return 0;
	return -EPROTO;
}

uint32_t colo_hello_agree(uint32_t offered, uint32_t mine)
{
	return (offered & mine) | COLO_PAGE_KIND_BIT(COLO_PAGE_RAW);
}
