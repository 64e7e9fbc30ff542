/*
 * node_sec.c: what a node believes of its peers (DESIGN.md §8,
 * docs/security.md).
 *
 * With [security] psk-file the node loads the shared key once, at start
 * (also for --check-config, so a bad key file is found before a failover
 * needs it), and its engines authenticate every replication connection
 * and heartbeat with it.  Without one a node believes anyone who reaches
 * it, so it starts only when every address it uses is loopback: the
 * primary's peer; the secondary's listen address (its heartbeats share it)
 * and its peer (where it connects after a takeover).  --insecure lifts
 * that, and then the node says so at start and once a minute, so that a
 * node left that way is noticed in its log.
 *
 * The key lives in struct colo_node and is wiped by colo__node_security_fini.
 * Loop thread only.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "node.h"
#include "node_int.h"

#define INSECURE_LOG_MS 60000

bool colo_addr_is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) != 1)
		return false;
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return true;
	return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* The first address of this role that is not loopback, or NULL. */
static const struct colo_addr *open_address(const struct colo_node *n, const char **what)
{
	if (!colo_addr_is_loopback(n->cfg.peer.host)) {
		*what = "peer";
		return &n->cfg.peer;
	}
	if (n->cfg.role == COLO_ROLE_SECONDARY && !colo_addr_is_loopback(n->cfg.listen.host)) {
		*what = "listen";
		return &n->cfg.listen;
	}
	return NULL;
}

int colo__node_security_init(struct colo_node *n, struct colo_err *err)
{
	const struct colo_addr *open;
	const char *what = NULL;

	if (n->cfg.psk_file[0]) {
		if (colo_sodium_init(err) != 0)
			return -EINVAL;
		if (colo_psk_load(n->cfg.psk_file, n->psk, err) != 0)
			return -EINVAL;
		n->have_psk = true;
	} else {
		open = open_address(n, &what);
		if (open && !n->cfg.insecure)
			return colo_err_set(err, EPERM, "%s %s:%u is not loopback and there "
					    "is no psk-file: anyone who reaches it would be "
					    "believed (set [security] psk-file, or --insecure to "
					    "run so anyway)", what, open->host, open->port);
	}
	/* A secondary that takes over while its primary lives is a split brain:
	 * off loopback, something must stop that (docs/arbiter.md). */
	if (n->cfg.role == COLO_ROLE_SECONDARY && n->cfg.arbiter == COLO_ARBITER_NONE &&
	    !n->cfg.fence_command[0] && !n->cfg.allow_split_brain &&
	    (open = open_address(n, &what)) != NULL)
		return colo_err_set(err, EPERM, "%s %s:%u is not loopback and there is "
				    "neither an arbiter nor a fence-command: a partition "
				    "would let both nodes serve (set [arbiter] arbiter = etcd, "
				    "or fence-command, or --allow-split-brain)", what,
				    open->host, open->port);
	return 0;
}

static void insecure_warn(uv_timer_t *t)
{
	struct colo_node *n = t->data;
	const char *what = NULL;
	const struct colo_addr *open = open_address(n, &what);

	colo_log_warn("insecure: no psk-file, and %s %s:%u is not loopback: anyone who "
		      "reaches this node's replication and heartbeat ports is believed", what,
		      open->host, open->port);
}

void colo__node_security_start(struct colo_node *n)
{
	const char *what = NULL;

	if (n->have_psk) {
		colo_log_info("peers authenticate with the key in %s%s", n->cfg.psk_file,
			      n->cfg.encrypt ? "; the replication connection is encrypted" :
			      "");
		return;
	}
	if (!open_address(n, &what)) {
		colo_log_warn("no psk-file: peers are not authenticated, so this node "
			      "uses loopback addresses only");
		return;
	}
	/* --insecure on an open address: now, and once a minute. */
	uv_timer_init(n->loop, &n->insecure_timer);
	n->insecure_timer.data = n;
	n->insecure_on = true;
	insecure_warn(&n->insecure_timer);
	uv_timer_start(&n->insecure_timer, insecure_warn, INSECURE_LOG_MS, INSECURE_LOG_MS);
	uv_unref((uv_handle_t *)&n->insecure_timer);
}

void colo__node_security_stop(struct colo_node *n)
{
	if (n->insecure_on) {
		n->insecure_on = false;
		uv_close((uv_handle_t *)&n->insecure_timer, NULL);
	}
}

void colo__node_security_fini(struct colo_node *n)
{
	sodium_memzero(n->psk, sizeof(n->psk));
	n->have_psk = false;
}
