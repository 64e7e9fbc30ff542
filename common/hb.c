/* hb.c: see hb.h. */
#include "config.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "colo.pb-c.h"
#include "hb.h"
#include "log.h"

#define HB_MAX 512               /* a heartbeat is ~60 bytes */

struct colo_hb {
	uv_udp_t udp;
	uv_timer_t send_timer;
	uv_timer_t dead_timer;
	struct colo_hb_cb cb;
	struct colo_stats *stats;
	char node[256];
	int role;
	uint64_t generation;
	uint64_t seq;
	uint64_t committed;
	struct sockaddr_storage peer;
	bool have_peer;
	char watch_node[256];
	bool watch_any;
	uint32_t timeout_ms;
	uint64_t last_valid_ns;
	uint64_t last_refusal_log_ns;
	bool closing;
	int open_handles;
	uint8_t rxbuf[HB_MAX];
};

int colo_addr_sockaddr(const struct colo_addr *a, struct sockaddr_storage *ss,
		       struct colo_err *err)
{
	memset(ss, 0, sizeof(*ss));
	if (uv_ip4_addr(a->host, a->port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(a->host, a->port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return colo_err_set(err, EINVAL, "'%s' is not a numeric IPv4 or IPv6 address",
			    a->host);
}

static void fmt_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[64] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		uv_ip4_name((const struct sockaddr_in *)sa, host, sizeof(host));
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)sa, host, sizeof(host));
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	}
	snprintf(buf, len, "%s:%d", host, port);
}

static void on_send_done(uv_udp_send_t *req, int status)
{
	(void)status;     /* a lost heartbeat is what heartbeats are for */
	free(req);
}

static void send_one(uv_timer_t *t)
{
	struct colo_hb *hb = t->data;
	Colo__Heartbeat msg = COLO__HEARTBEAT__INIT;
	uv_udp_send_t *req;
	uint8_t *p;
	uv_buf_t b;
	size_t len;

	if (!hb->have_peer || hb->closing)
		return;
	msg.node_id = hb->node;
	msg.role = hb->role;
	msg.generation = hb->generation;
	msg.seq = ++hb->seq;
	msg.committed_checkpoint = hb->committed;
	msg.sent_ns = colo_now_ns();
	len = colo__heartbeat__get_packed_size(&msg);
	req = malloc(sizeof(*req) + len);
	if (!req)
		return;
	p = (uint8_t *)(req + 1);
	colo__heartbeat__pack(&msg, p);
	b = uv_buf_init((char *)p, (unsigned)len);
	if (uv_udp_send(req, &hb->udp, &b, 1, (const struct sockaddr *)&hb->peer,
			on_send_done) != 0) {
		free(req);
		return;
	}
	if (hb->stats)
		hb->stats->heartbeats_sent++;
}

static void on_dead(uv_timer_t *t)
{
	struct colo_hb *hb = t->data;

	if (hb->cb.peer_dead && !hb->closing)
		hb->cb.peer_dead(hb->cb.ud);
}

static void alloc_rx(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct colo_hb *hb = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)hb->rxbuf, sizeof(hb->rxbuf));
}

/* At most one refusal line a second: a stale peer sends 20 a second. */
static void refuse(struct colo_hb *hb, const struct sockaddr *from, const char *fmt,
		   const char *node, uint64_t gen)
{
	uint64_t now = colo_now_ns();
	char addr[80];

	if (hb->stats)
		hb->stats->heartbeats_refused++;
	if (now - hb->last_refusal_log_ns < 1000000000ull && hb->last_refusal_log_ns)
		return;
	hb->last_refusal_log_ns = now;
	fmt_addr(from, addr, sizeof(addr));
	colo_log_warn(fmt, node, addr, gen, hb->generation);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
		    const struct sockaddr *from, unsigned flags)
{
	struct colo_hb *hb = h->data;
	Colo__Heartbeat *msg;

	(void)flags;
	if (n <= 0 || !from || hb->closing)
		return;
	msg = colo__heartbeat__unpack(NULL, (size_t)n, (const uint8_t *)buf->base);
	if (!msg || !msg->node_id) {
		if (hb->stats)
			hb->stats->heartbeats_refused++;
		if (msg)
			colo__heartbeat__free_unpacked(msg, NULL);
		return;
	}
	if (msg->generation < hb->generation) {
		refuse(hb, from, "refusing heartbeat from node %s (%s): generation %"
		       PRIu64 " is older than ours (%" PRIu64 ")", msg->node_id,
		       msg->generation);
		goto out;
	}
	if (!hb->watch_any && strcmp(msg->node_id, hb->watch_node) != 0) {
		if (hb->stats)
			hb->stats->heartbeats_refused++;
		goto out;
	}
	if (msg->generation > hb->generation && hb->cb.newer_generation) {
		hb->cb.newer_generation(hb->cb.ud, msg->node_id, msg->generation);
		if (hb->closing)
			goto out;
	}
	if (hb->stats)
		hb->stats->heartbeats_received++;
	hb->last_valid_ns = colo_now_ns();
	if (hb->timeout_ms)
		uv_timer_start(&hb->dead_timer, on_dead, hb->timeout_ms, 0);
out:
	colo__heartbeat__free_unpacked(msg, NULL);
}

int colo_hb_start(uv_loop_t *loop, const struct colo_addr *bind,
		  const struct colo_hb_cb *cb, struct colo_stats *stats,
		  struct colo_hb **out, struct colo_err *err)
{
	struct sockaddr_storage ss;
	struct colo_hb *hb;
	int r;

	*out = NULL;
	r = colo_addr_sockaddr(bind, &ss, err);
	if (r)
		return r;
	hb = calloc(1, sizeof(*hb));
	if (!hb)
		return colo_err_set(err, ENOMEM, "out of memory");
	hb->cb = *cb;
	hb->stats = stats;
	hb->last_valid_ns = UINT64_MAX;
	hb->watch_any = true;
	uv_udp_init(loop, &hb->udp);
	uv_timer_init(loop, &hb->send_timer);
	uv_timer_init(loop, &hb->dead_timer);
	hb->udp.data = hb->send_timer.data = hb->dead_timer.data = hb;
	r = uv_udp_bind(&hb->udp, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_udp_recv_start(&hb->udp, alloc_rx, on_recv);
	if (r) {
		colo_err_set(err, -r, "cannot listen on %s:%u/udp for heartbeats: %s", bind->host,
			     bind->port, uv_strerror(r));
		colo_hb_stop(hb);
		return -err->code;
	}
	*out = hb;
	return 0;
}

static void on_closed(uv_handle_t *h)
{
	struct colo_hb *hb = h->data;

	if (--hb->open_handles == 0)
		free(hb);
}

void colo_hb_stop(struct colo_hb *hb)
{
	if (!hb || hb->closing)
		return;
	hb->closing = true;
	hb->open_handles = 3;
	uv_close((uv_handle_t *)&hb->udp, on_closed);
	uv_close((uv_handle_t *)&hb->send_timer, on_closed);
	uv_close((uv_handle_t *)&hb->dead_timer, on_closed);
}

uint16_t colo_hb_port(const struct colo_hb *hb)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_udp_getsockname(&hb->udp, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void colo_hb_set_identity(struct colo_hb *hb, const char *node, int role,
			  uint64_t generation)
{
	snprintf(hb->node, sizeof(hb->node), "%s", node);
	hb->role = role;
	hb->generation = generation;
}

void colo_hb_set_committed(struct colo_hb *hb, uint64_t seq)
{
	hb->committed = seq;
}

void colo_hb_send_to(struct colo_hb *hb, const struct sockaddr *peer, uint32_t interval_ms)
{
	if (!peer) {
		hb->have_peer = false;
		uv_timer_stop(&hb->send_timer);
		return;
	}
	memcpy(&hb->peer, peer, peer->sa_family == AF_INET6 ?
	       sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	hb->have_peer = true;
	/* The first one goes at once: the peer starts its watch now. */
	uv_timer_start(&hb->send_timer, send_one, 0, interval_ms ? interval_ms : 50);
}

void colo_hb_watch(struct colo_hb *hb, const char *peer_node, uint32_t timeout_ms)
{
	hb->watch_any = peer_node == NULL;
	snprintf(hb->watch_node, sizeof(hb->watch_node), "%s", peer_node ? peer_node : "");
	hb->timeout_ms = timeout_ms;
	if (timeout_ms)
		uv_timer_start(&hb->dead_timer, on_dead, timeout_ms, 0);
	else
		uv_timer_stop(&hb->dead_timer);
}

uint64_t colo_hb_since_last(const struct colo_hb *hb)
{
	if (hb->last_valid_ns == UINT64_MAX)
		return UINT64_MAX;
	return colo_now_ns() - hb->last_valid_ns;
}
