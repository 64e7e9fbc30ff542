/* hb.c: see hb.h. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "clock.h"
#include "thread.h"
#include "colo.pb-c.h"
#include "hb.h"
#include "log.h"
#include "psk.h"

#define HB_MAX 512               /* a heartbeat is ~60 bytes */
#define HB_NODE_MAX 255          /* longest node id (hb->node's size) */
/* What the MAC covers: a length-prefixed node id and five be64 fields. */
#define HB_CANON_MAX (8 + HB_NODE_MAX + 5 * 8)
#define HB_SENDERS 4             /* senders whose last seq is remembered */

/* The highest seq accepted from one sender, against replays. */
struct hb_sender {
	char node[HB_NODE_MAX + 1];
	uint64_t seq;
	uint64_t used_ns;            /* the least recently used goes first */
};

struct colo_hb {
	uv_udp_t udp;
	uv_timer_t alive_timer;      /* stamps loop_alive_ns */
	uv_timer_t dead_timer;
	struct colo_hb_cb cb;
	struct colo_stats *stats;
	/*
	 * The sender thread and what it sends, under mu.  Heartbeats leave from
	 * their own thread so a long callback on the loop (a big checkpoint's
	 * copy or apply) does not hold them back; they stop when the loop has
	 * made no progress for stall_ms, so a hung node still looks dead.
	 */
	pthread_t tx;
	bool tx_started, tx_stop, tx_kick;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int fd;
	_Atomic uint64_t loop_alive_ns;
	uint32_t interval_ms, stall_ms;
	char node[HB_NODE_MAX + 1];
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
	uint64_t alive_ns;           /* last valid heartbeat, or the watch's start */
	uint64_t last_refusal_log_ns;
	/*
	 * Authentication (DESIGN.md §8): the heartbeat subkey of the shared key,
	 * written on the loop thread under mu, read by the sender under mu and by
	 * the receiver on the loop thread.  Wiped before the struct is freed.
	 */
	bool have_key;
	uint8_t key[crypto_auth_KEYBYTES];
	struct hb_sender senders[HB_SENDERS];
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

static uint8_t *put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

/*
 * The bytes a heartbeat's MAC covers: the fields themselves, not their
 * protobuf encoding, so an encoder that orders or sizes them differently
 * still agrees.  The node id is at most HB_NODE_MAX bytes (checked by the
 * caller).  Returns the length written to canon.
 */
static size_t canon_len(const Colo__Heartbeat *msg, uint8_t canon[HB_CANON_MAX])
{
	size_t n = strlen(msg->node_id);
	uint8_t *p = put_be64(canon, n);

	memcpy(p, msg->node_id, n);
	p += n;
	p = put_be64(p, (uint64_t)(int64_t)msg->role);
	p = put_be64(p, msg->generation);
	p = put_be64(p, msg->seq);
	p = put_be64(p, msg->committed_checkpoint);
	p = put_be64(p, msg->sent_ns);
	return (size_t)(p - canon);
}

/* colo_hb_encode with mu held. */
static size_t encode_locked(const struct colo_hb *hb, const struct colo_hb_fields *f,
			    uint8_t *buf, size_t cap)
{
	Colo__Heartbeat msg = COLO__HEARTBEAT__INIT;
	uint8_t mac[crypto_auth_BYTES];
	size_t len;

	if (strlen(f->node) > HB_NODE_MAX)
		return 0;
	msg.node_id = (char *)f->node;
	msg.role = f->role;
	msg.generation = f->generation;
	msg.seq = f->seq;
	msg.committed_checkpoint = f->committed;
	msg.sent_ns = f->sent_ns;
	if (hb->have_key) {
		uint8_t canon[HB_CANON_MAX];

		crypto_auth(mac, canon, canon_len(&msg, canon), hb->key);
		msg.mac.data = mac;
		msg.mac.len = sizeof(mac);
	}
	len = colo__heartbeat__get_packed_size(&msg);
	if (len > cap)
		return 0;
	colo__heartbeat__pack(&msg, buf);
	return len;
}

size_t colo_hb_encode(struct colo_hb *hb, const struct colo_hb_fields *f, uint8_t *buf,
		      size_t cap)
{
	size_t len;

	pthread_mutex_lock(&hb->mu);
	len = encode_locked(hb, f, buf, cap);
	pthread_mutex_unlock(&hb->mu);
	return len;
}

/* One heartbeat to the peer; called with mu held. */
static void send_locked(struct colo_hb *hb)
{
	struct colo_hb_fields f = {
		.node = hb->node,
		.role = hb->role,
		.generation = hb->generation,
		.seq = ++hb->seq,
		.committed = hb->committed,
		.sent_ns = colo_now_ns(),
	};
	uint8_t buf[HB_MAX];
	size_t len = encode_locked(hb, &f, buf, sizeof(buf));

	if (!len)
		return;
	/* A lost heartbeat is what heartbeats are for: errors are not retried. */
	if (sendto(hb->fd, buf, len, MSG_DONTWAIT, (const struct sockaddr *)&hb->peer,
		   hb->peer.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
		   sizeof(struct sockaddr_in)) == (ssize_t)len && hb->stats)
		__atomic_fetch_add(&hb->stats->heartbeats_sent, 1, __ATOMIC_RELAXED);
}

static void *tx_main(void *arg)
{
	struct colo_hb *hb = arg;
	/* Absolute deadlines: hb->cv waits on CLOCK_MONOTONIC, colo_now_ns()'s clock. */
	struct timespec next = colo_mono_timespec(colo_now_ns());

	pthread_setname_np(pthread_self(), "colo-heartbeat");
	pthread_mutex_lock(&hb->mu);
	while (!hb->tx_stop) {
		uint64_t alive, now;
		int r = 0;

		while (!hb->tx_stop && !hb->tx_kick && r != ETIMEDOUT)
			r = pthread_cond_timedwait(&hb->cv, &hb->mu, &next);
		if (hb->tx_stop)
			break;
		hb->tx_kick = false;
		alive = atomic_load(&hb->loop_alive_ns);
		now = colo_now_ns();            /* after alive: never behind it */
		if (hb->have_peer && now - alive < (uint64_t)hb->stall_ms * COLO_NSEC_PER_MS)
			send_locked(hb);
		next = colo_mono_timespec(now + (uint64_t)hb->interval_ms * COLO_NSEC_PER_MS);
	}
	pthread_mutex_unlock(&hb->mu);
	return NULL;
}

static void on_alive(uv_timer_t *t)
{
	struct colo_hb *hb = t->data;

	atomic_store(&hb->loop_alive_ns, colo_now_ns());
}

static void on_dead(uv_timer_t *t);

static void alloc_rx(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct colo_hb *hb = h->data;

	(void)suggested;
	*buf = uv_buf_init((char *)hb->rxbuf, sizeof(hb->rxbuf));
}

/* At most one refusal line a second: a stale peer sends 20 a second. */
static bool refusal_counted(struct colo_hb *hb)
{
	uint64_t now = colo_now_ns();

	if (hb->stats)
		hb->stats->heartbeats_refused++;
	if (now - hb->last_refusal_log_ns < 1000000000ull && hb->last_refusal_log_ns)
		return false;
	hb->last_refusal_log_ns = now;
	return true;
}

static void refuse(struct colo_hb *hb, const struct sockaddr *from, const char *fmt,
		   const char *node, uint64_t gen)
{
	char addr[80];

	if (!refusal_counted(hb))
		return;
	fmt_addr(from, addr, sizeof(addr));
	colo_log_warn(fmt, node, addr, gen, hb->generation);
}

static void refuse_auth(struct colo_hb *hb, const struct sockaddr *from, const char *why)
{
	char addr[80];

	if (!refusal_counted(hb))
		return;
	fmt_addr(from, addr, sizeof(addr));
	colo_log_warn("refusing heartbeat from %s: %s", addr, why);
}

/*
 * With a key: is msg genuine and newer than anything accepted from its
 * sender?  A refusal is counted and logged; the caller then drops msg
 * without believing any of it.  The sender's seq starts at its wall clock
 * (colo_hb_set_key), so it grows across restarts without any saved state.
 */
static bool authentic(struct colo_hb *hb, const Colo__Heartbeat *msg,
		      const struct sockaddr *from)
{
	uint8_t canon[HB_CANON_MAX];
	struct hb_sender *s = NULL, *lru = &hb->senders[0];
	char why[128];

	if (msg->mac.len == 0) {
		refuse_auth(hb, from, "no MAC");
		return false;
	}
	if (msg->mac.len != crypto_auth_BYTES || strlen(msg->node_id) > HB_NODE_MAX ||
	    crypto_auth_verify(msg->mac.data, canon, canon_len(msg, canon), hb->key) != 0) {
		refuse_auth(hb, from, "wrong MAC");
		return false;
	}
	for (int i = 0; i < HB_SENDERS; i++) {
		if (hb->senders[i].used_ns && strcmp(hb->senders[i].node, msg->node_id) == 0)
			s = &hb->senders[i];
		if (hb->senders[i].used_ns < lru->used_ns)
			lru = &hb->senders[i];
	}
	if (s && msg->seq <= s->seq) {
		snprintf(why, sizeof(why), "replayed: seq %" PRIu64 " not above %" PRIu64
			 " (or the sender's clock went back)", msg->seq, s->seq);
		refuse_auth(hb, from, why);
		return false;
	}
	if (!s) {
		/* Only senders holding the key get here: the table cannot be flooded. */
		s = lru;
		snprintf(s->node, sizeof(s->node), "%s", msg->node_id);
	}
	s->seq = msg->seq;
	s->used_ns = colo_now_ns();
	return true;
}

void colo_hb_receive(struct colo_hb *hb, const uint8_t *data, size_t len,
		     const struct sockaddr *from)
{
	Colo__Heartbeat *msg;

	if (len == 0 || !from || hb->closing)
		return;
	msg = colo__heartbeat__unpack(NULL, len, data);
	if (!msg || !msg->node_id) {
		if (hb->stats)
			hb->stats->heartbeats_refused++;
		if (msg)
			colo__heartbeat__free_unpacked(msg, NULL);
		return;
	}
	if (hb->have_key && !authentic(hb, msg, from))
		goto out;
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
	hb->last_valid_ns = hb->alive_ns = colo_now_ns();
	if (hb->timeout_ms) {
		/* the loop's clock may be stale after a long callback */
		uv_update_time(hb->udp.loop);
		uv_timer_start(&hb->dead_timer, on_dead, hb->timeout_ms, 0);
	}
out:
	colo__heartbeat__free_unpacked(msg, NULL);
}

static void on_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf,
		    const struct sockaddr *from, unsigned flags)
{
	(void)flags;
	if (n > 0)
		colo_hb_receive(h->data, (const uint8_t *)buf->base, (size_t)n, from);
}

/*
 * Heartbeats waiting in the socket: when this node's own loop was held up,
 * they are there although no callback has seen them yet.  Read them before
 * calling the peer dead, so a stall here is never taken for a death there.
 */
static void drain(struct colo_hb *hb)
{
	int fd;

	if (uv_fileno((const uv_handle_t *)&hb->udp, &fd) != 0)
		return;
	for (int i = 0; i < 256 && !hb->closing; i++) {
		struct sockaddr_storage from;
		socklen_t len = sizeof(from);
		ssize_t n = recvfrom(fd, hb->rxbuf, sizeof(hb->rxbuf), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &len);

		if (n < 0)
			break;
		colo_hb_receive(hb, hb->rxbuf, (size_t)n, (const struct sockaddr *)&from);
	}
}

static void on_dead(uv_timer_t *t)
{
	struct colo_hb *hb = t->data;
	uint64_t now, timeout_ns = (uint64_t)hb->timeout_ms * 1000000ull;

	if (hb->closing || !hb->timeout_ms)
		return;
	drain(hb);
	now = colo_now_ns();
	if (!hb->closing && hb->timeout_ms && now - hb->alive_ns < timeout_ns) {
		/* A heartbeat came after all (or the timer ran on a stale clock). */
		uv_update_time(t->loop);
		uv_timer_start(&hb->dead_timer, on_dead,
			       (timeout_ns - (now - hb->alive_ns) + 999999) / 1000000, 0);
		return;
	}
	if (hb->cb.peer_dead && !hb->closing && hb->timeout_ms)
		hb->cb.peer_dead(hb->cb.ud);
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
	hb->interval_ms = 50;
	hb->stall_ms = 300;
	hb->fd = -1;
	atomic_store(&hb->loop_alive_ns, colo_now_ns());
	pthread_mutex_init(&hb->mu, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&hb->cv, &ca);
		pthread_condattr_destroy(&ca);
	}
	uv_udp_init(loop, &hb->udp);
	uv_timer_init(loop, &hb->alive_timer);
	uv_timer_init(loop, &hb->dead_timer);
	hb->udp.data = hb->alive_timer.data = hb->dead_timer.data = hb;
	r = uv_udp_bind(&hb->udp, (const struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_udp_recv_start(&hb->udp, alloc_rx, on_recv);
	if (r == 0)
		r = uv_fileno((const uv_handle_t *)&hb->udp, &hb->fd);
	if (r == 0) {
		r = -colo_thread_start(&hb->tx, tx_main, hb);
		hb->tx_started = r == 0;
	}
	if (r == 0)
		uv_timer_start(&hb->alive_timer, on_alive, 10, 10);
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

	if (--hb->open_handles == 0) {
		sodium_memzero(hb->key, sizeof(hb->key));
		pthread_mutex_destroy(&hb->mu);
		pthread_cond_destroy(&hb->cv);
		free(hb);
	}
}

void colo_hb_stop(struct colo_hb *hb)
{
	if (!hb || hb->closing)
		return;
	hb->closing = true;
	if (hb->tx_started) {
		pthread_mutex_lock(&hb->mu);
		hb->tx_stop = true;
		pthread_cond_signal(&hb->cv);
		pthread_mutex_unlock(&hb->mu);
		pthread_join(hb->tx, NULL);
		hb->tx_started = false;
	}
	hb->open_handles = 3;
	uv_close((uv_handle_t *)&hb->udp, on_closed);
	uv_close((uv_handle_t *)&hb->alive_timer, on_closed);
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
	pthread_mutex_lock(&hb->mu);
	snprintf(hb->node, sizeof(hb->node), "%s", node);
	hb->role = role;
	hb->generation = generation;
	pthread_mutex_unlock(&hb->mu);
}

int colo_hb_set_key(struct colo_hb *hb, const uint8_t key[COLO_PSK_BYTES],
		    struct colo_err *err)
{
	uint8_t subkey[crypto_auth_KEYBYTES];
	struct timespec ts;
	uint64_t base;
	int r = colo_sodium_init(err);

	if (r)
		return r;
	/* Its own subkey: a MAC made for heartbeats is valid nowhere else. */
	if (crypto_kdf_derive_from_key(subkey, sizeof(subkey), 1, "colo-hb_", key) != 0)
		return colo_err_set(err, EINVAL, "cannot derive the heartbeat key");
	clock_gettime(CLOCK_REALTIME, &ts);
	base = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	pthread_mutex_lock(&hb->mu);
	memcpy(hb->key, subkey, sizeof(hb->key));
	hb->have_key = true;
	/* Wall-clock ns: above every seq this node sent before it restarted. */
	if (hb->seq < base)
		hb->seq = base;
	pthread_mutex_unlock(&hb->mu);
	sodium_memzero(subkey, sizeof(subkey));
	return 0;
}

void colo_hb_set_committed(struct colo_hb *hb, uint64_t seq)
{
	pthread_mutex_lock(&hb->mu);
	hb->committed = seq;
	pthread_mutex_unlock(&hb->mu);
}

void colo_hb_send_to(struct colo_hb *hb, const struct sockaddr *peer, uint32_t interval_ms,
		     uint32_t stall_ms)
{
	pthread_mutex_lock(&hb->mu);
	if (!peer) {
		hb->have_peer = false;
	} else {
		memcpy(&hb->peer, peer, peer->sa_family == AF_INET6 ?
		       sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
		hb->have_peer = true;
		hb->interval_ms = interval_ms ? interval_ms : 50;
		hb->stall_ms = stall_ms ? stall_ms : 300;
		/* The first one goes at once: the peer starts its watch now. */
		hb->tx_kick = true;
		pthread_cond_signal(&hb->cv);
	}
	pthread_mutex_unlock(&hb->mu);
}

void colo_hb_watch(struct colo_hb *hb, const char *peer_node, uint32_t timeout_ms)
{
	hb->watch_any = peer_node == NULL;
	snprintf(hb->watch_node, sizeof(hb->watch_node), "%s", peer_node ? peer_node : "");
	hb->timeout_ms = timeout_ms;
	hb->alive_ns = colo_now_ns();
	if (timeout_ms) {
		uv_update_time(hb->udp.loop);
		uv_timer_start(&hb->dead_timer, on_dead, timeout_ms, 0);
	}
	else
		uv_timer_stop(&hb->dead_timer);
}

uint64_t colo_hb_since_last(const struct colo_hb *hb)
{
	if (hb->last_valid_ns == UINT64_MAX)
		return UINT64_MAX;
	return colo_now_ns() - hb->last_valid_ns;
}
