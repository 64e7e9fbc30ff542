/*
 * metrics.c: the node's figures for Prometheus ([node] metrics-listen):
 * GET /metrics over HTTP/1.x answers the text exposition format (0.0.4),
 * made on the loop from the node's statistics, its engine's status, its
 * recorder and its guest's own figures (docs/operations.md, "Metrics").
 *
 * The server is small on purpose: one request per connection, answered
 * and closed; a request must arrive whole within METRICS_TIMEOUT_MS and
 * METRICS_REQUEST_MAX bytes; at most METRICS_CONNS_MAX connections at a
 * time (more are closed at once).  What is not a GET of /metrics gets a
 * status and a one-line reason: 400 (not HTTP), 404 (another path), 405
 * (another method, HEAD included), 431 (too long), 408 (too slow).
 * Nothing it hears changes the node.
 * Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "hb.h"
#include "log.h"
#include "node.h"
#include "node_int.h"
#include "ramfmt.h"
#include "record.h"

#define METRICS_REQUEST_MAX 8192
#define METRICS_TIMEOUT_MS 5000
#define METRICS_CONNS_MAX 16

struct mconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	struct colo_metrics *m;
	struct mconn *prev, *next;
	char req[METRICS_REQUEST_MAX];
	size_t len;
	bool answered;
	int closing;                      /* handles still to close */
	uv_write_t wr;
	struct colo_buf out;
};

struct colo_metrics {
	struct colo_node *n;
	uv_tcp_t listener;
	struct mconn *conns;
	size_t nconns;
	uint64_t served, refused;
};

/* ---- the text ---- */

static void head(struct colo_buf *b, const char *name, const char *type, const char *help)
{
	colo_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void counter(struct colo_buf *b, const char *name, const char *help, uint64_t v)
{
	head(b, name, "counter", help);
	colo_buf_printf(b, "%s %" PRIu64 "\n", name, v);
}

static void gauge(struct colo_buf *b, const char *name, const char *help, double v)
{
	head(b, name, "gauge", help);
	colo_buf_printf(b, "%s %.17g\n", name, v);
}

/* A label value: backslash, quote and newline escaped. */
static void label_value(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			out[o++] = '\\';
			out[o++] = *in;
		} else if (*in == '\n') {
			out[o++] = '\\';
			out[o++] = 'n';
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

static void phases(struct colo_buf *b, const struct colo_stats *st)
{
	head(b, "colo_checkpoint_phase_seconds", "histogram",
	     "Time of each checkpoint phase this node timed (colo-ctl status names them).");
	for (int p = 0; p < COLO_PHASES; p++) {
		const struct colo_phase_ring *r = &st->phases[p];
		const char *name = colo_phase_name((enum colo_phase)p);
		uint64_t cum = 0;

		for (int k = 0; k < COLO_STATS_BUCKETS - 1; k++) {
			cum += r->buckets[k];
			colo_buf_printf(b, "colo_checkpoint_phase_seconds_bucket{phase=\"%s\",le=\"%g\"} %"
			    PRIu64 "\n", name, colo_stats_bucket_us[k] / 1e6, cum);
		}
		colo_buf_printf(b, "colo_checkpoint_phase_seconds_bucket{phase=\"%s\",le=\"+Inf\"} %" PRIu64
		    "\n", name, r->total);
		colo_buf_printf(b, "colo_checkpoint_phase_seconds_sum{phase=\"%s\"} %.6f\n", name,
		    r->sum_us / 1e6);
		colo_buf_printf(b, "colo_checkpoint_phase_seconds_count{phase=\"%s\"} %" PRIu64 "\n", name,
		    r->total);
	}
}

struct guest_put {
	struct colo_buf *b;
};

/* colo_guest_NAME: the guest's own figures (guest.h metrics), as gauges. */
static void guest_put(void *ud, const char *name, double value)
{
	struct guest_put *g = ud;
	char clean[80];
	size_t i;

	for (i = 0; name[i] && i + 1 < sizeof(clean); i++)
		clean[i] = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
			   (name[i] >= '0' && name[i] <= '9') ? name[i] : '_';
	clean[i] = '\0';
	colo_buf_printf(g->b, "# HELP colo_guest_%s The guest's own figure %s (colo-ctl stats).\n"
	    "# TYPE colo_guest_%s gauge\ncolo_guest_%s %.17g\n", clean, clean, clean, clean,
	    value);
}

void colo_node_metrics_text(struct colo_node *n, struct colo_buf *b)
{
	const struct colo_stats *st = &n->stats;
	char state[64] = "starting", peer[128] = "", pstate[64] = "", enc[128] = "";
	char lv[160];
	uint64_t last = 0;
	struct guest_put gp = { b };

	if (n->eops && n->eops->status)
		n->eops->status(n->engine, state, sizeof(state), peer, sizeof(peer), pstate,
				sizeof(pstate), &last, enc, sizeof(enc));
	head(b, "colo_build_info", "gauge", "This node's program and version.");
	colo_buf_printf(b, "colo_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
	head(b, "colo_role", "gauge", "1 for the role this node has now.");
	colo_buf_printf(b, "colo_role{role=\"primary\"} %d\ncolo_role{role=\"secondary\"} %d\n",
	    n->role == COLO_ROLE_PRIMARY, n->role != COLO_ROLE_PRIMARY);
	head(b, "colo_state", "gauge", "1 for the state this node's engine is in now.");
	label_value(state, lv, sizeof(lv));
	colo_buf_printf(b, "colo_state{state=\"%s\"} 1\n", lv);
	gauge(b, "colo_generation", "The node's generation (grows at each takeover).",
	      (double)n->generation);
	gauge(b, "colo_last_committed_checkpoint", "Sequence number of the last checkpoint "
	      "committed.", (double)last);
	counter(b, "colo_checkpoints_total", "Checkpoints committed.", st->checkpoints);
	counter(b, "colo_checkpoints_failed_total", "Checkpoints that failed.",
		st->checkpoints_failed);
	head(b, "colo_checkpoints_started_total", "counter", "Checkpoints started, by why.");
	for (int c = 0; c < COLO_CAUSES; c++)
		colo_buf_printf(b, "colo_checkpoints_started_total{cause=\"%s\"} %" PRIu64 "\n",
		    colo_ckpt_cause_name((enum colo_ckpt_cause)c), st->by_cause[c]);
	phases(b, st);
	head(b, "colo_pages_sent_total", "counter", "Dirty pages sent, by encoding.");
	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		colo_buf_printf(b, "colo_pages_sent_total{encoding=\"%s\"} %" PRIu64 "\n",
		    colo_page_kind_name((enum colo_page_kind)k), st->pages_by_kind[k]);
	head(b, "colo_page_bytes_sent_total", "counter", "Bytes of the page records sent, by "
	     "encoding.");
	for (int k = 0; k < COLO_PAGE_KINDS; k++)
		colo_buf_printf(b, "colo_page_bytes_sent_total{encoding=\"%s\"} %" PRIu64 "\n",
		    colo_page_kind_name((enum colo_page_kind)k), st->bytes_by_kind[k]);
	counter(b, "colo_pages_unchanged_total", "Dirty pages found equal to what the "
		"secondary holds, not sent.", st->pages_unchanged);
	gauge(b, "colo_checkpoint_pages_max", "The largest checkpoint, in pages.",
	      (double)st->ckpt_pages_max);
	counter(b, "colo_replication_sent_bytes_total", "Bytes sent on the replication "
		"connection.", st->bytes_sent);
	counter(b, "colo_replication_received_bytes_total", "Bytes received on the "
		"replication connection.", st->bytes_received);
	counter(b, "colo_checkpoints_pipelined_total", "Checkpoints that left the next one "
		"free to start while they awaited their acknowledgement.", st->pipelined);
	counter(b, "colo_checkpoint_streams_held_total", "Times a checkpoint's stream "
		"waited for a later turn of the event loop.", st->streams_held);
	counter(b, "colo_full_syncs_total", "Full syncs.", st->full_syncs);
	counter(b, "colo_failovers_total", "Takeovers by this node.", st->failovers);
	counter(b, "colo_heartbeats_sent_total", "Heartbeats sent.", st->heartbeats_sent);
	counter(b, "colo_heartbeats_received_total", "Heartbeats received.",
		st->heartbeats_received);
	counter(b, "colo_heartbeats_refused_total", "Heartbeats refused (not the peer, a "
		"bad tag, an old generation).", st->heartbeats_refused);
	counter(b, "colo_peers_refused_total", "Replication peers refused.",
		st->peers_refused);
	counter(b, "colo_compare_units_total", "Output units compared (output-mode "
		"compare).", st->compared);
	counter(b, "colo_compare_matched_total", "Output units that matched.", st->matched);
	counter(b, "colo_compare_mismatches_total", "Output units that did not match.",
		st->mismatches);
	counter(b, "colo_loop_stalls_total", "Turns of the event loop longer than a "
		"heartbeat interval.", st->loop_stalls);
	gauge(b, "colo_loop_busy_max_seconds", "The longest turn of the event loop.",
	      st->loop_busy_max_ns / 1e9);
	gauge(b, "colo_loop_cpu_max_seconds", "The most CPU one turn of the event loop "
	      "used.", st->loop_cpu_max_ns / 1e9);
	head(b, "colo_recording", "gauge", "1 for the recording's state: off, running or "
	     "stopped (by an error; colo-ctl status says which).");
	if (!n->rec) {
		colo_buf_printf(b, "colo_recording{state=\"off\"} 1\n");
	} else {
		struct colo_recorder_stats rs;

		colo_recorder_stats(n->rec, &rs);
		colo_buf_printf(b, "colo_recording{state=\"%s\"} 1\n", rs.running ? "running" : "stopped");
		counter(b, "colo_recorded_checkpoints_total", "Checkpoints recorded.",
			rs.checkpoints);
		gauge(b, "colo_recording_bytes", "Bytes of the recording directory.",
		      (double)rs.bytes);
		gauge(b, "colo_recording_queued_bytes", "Bytes waiting for the recorder.",
		      (double)rs.queued_bytes);
	}
	if (n->metrics) {
		head(b, "colo_metrics_requests_total", "counter", "Requests to this endpoint, "
		     "answered (this one counts once answered) or refused.");
		colo_buf_printf(b, "colo_metrics_requests_total{result=\"answered\"} %" PRIu64 "\n"
				"colo_metrics_requests_total{result=\"refused\"} %" PRIu64 "\n",
				n->metrics->served, n->metrics->refused);
	}
	if (n->gops->metrics && n->guest)
		n->gops->metrics(n->guest, guest_put, &gp);
}

/* ---- the server ---- */

static void conn_closed(uv_handle_t *h)
{
	struct mconn *c = h->data;

	if (--c->closing == 0) {
		colo_buf_free(&c->out);
		free(c);
	}
}

static void conn_close(struct mconn *c)
{
	struct colo_metrics *m = c->m;

	if (c->closing)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		m->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	m->nconns--;
	c->closing = 2;
	uv_close((uv_handle_t *)&c->timer, conn_closed);
	uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_written(uv_write_t *w, int status)
{
	(void)status;
	conn_close(w->data);
}

static void respond(struct mconn *c, int code, const char *reason, const char *ctype,
		    const void *body, size_t blen, const char *extra)
{
	char hdr[512];
	uv_buf_t bufs[2];
	int n;

	c->answered = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
		     "Content-Length: %zu\r\n%sConnection: close\r\n\r\n", code, reason, ctype,
		     blen, extra ? extra : "");
	colo_buf_reset(&c->out);
	colo_buf_put(&c->out, hdr, (size_t)n);
	colo_buf_put(&c->out, body, blen);
	if (!colo_buf_ok(&c->out)) {
		conn_close(c);
		return;
	}
	bufs[0] = uv_buf_init((char *)c->out.data, (unsigned)c->out.len);
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, 1, on_written) != 0)
		conn_close(c);
}

static void refuse(struct mconn *c, int code, const char *reason, const char *why,
		   const char *extra)
{
	char body[256];
	int n = snprintf(body, sizeof(body), "%s\n", why);

	c->m->refused++;
	respond(c, code, reason, "text/plain; charset=utf-8", body, (size_t)n, extra);
}

/* A whole request head is in: answer it. */
static void handle(struct mconn *c)
{
	struct colo_buf body;
	char *sp1, *sp2, *eol;

	c->req[c->len] = '\0';
	eol = strstr(c->req, "\r\n");
	sp1 = strchr(c->req, ' ');
	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!eol || !sp1 || !sp2 || sp2 > eol || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		refuse(c, 400, "Bad Request", "not an HTTP/1.x request line", NULL);
		return;
	}
	*sp1 = *sp2 = '\0';
	if (strcmp(c->req, "GET") != 0) {
		refuse(c, 405, "Method Not Allowed", "only GET /metrics is served",
		       "Allow: GET\r\n");
		return;
	}
	if (strcmp(sp1 + 1, "/metrics") != 0 && strncmp(sp1 + 1, "/metrics?", 9) != 0) {
		refuse(c, 404, "Not Found", "only /metrics is served", NULL);
		return;
	}
	colo_buf_init(&body);
	colo_node_metrics_text(c->m->n, &body);
	if (!colo_buf_ok(&body)) {
		colo_buf_free(&body);
		refuse(c, 500, "Internal Server Error", "out of memory", NULL);
		return;
	}
	c->m->served++;
	respond(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body.data, body.len,
		NULL);
	colo_buf_free(&body);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct mconn *c = h->data;

	(void)hint;
	*buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof(c->req) - 1 - c->len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct mconn *c = s->data;

	(void)buf;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
		handle(c);
	else if (c->len >= sizeof(c->req) - 1)
		refuse(c, 431, "Request Header Fields Too Large",
		       "the request is over 8 KiB", NULL);
}

static void on_timeout(uv_timer_t *t)
{
	struct mconn *c = t->data;

	if (c->answered)
		conn_close(c);
	else
		refuse(c, 408, "Request Timeout", "no whole request within 5 s", NULL);
}

static void on_connection(uv_stream_t *srv, int status)
{
	struct colo_metrics *m = srv->data;
	struct mconn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->m = m;
	colo_buf_init(&c->out);
	uv_tcp_init(m->n->loop, &c->tcp);
	uv_timer_init(m->n->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->next = m->conns;
	if (m->conns)
		m->conns->prev = c;
	m->conns = c;
	m->nconns++;
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 || m->nconns > METRICS_CONNS_MAX) {
		m->refused++;
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_timeout, METRICS_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void listener_closed(uv_handle_t *h)
{
	free(h->data);
}

int colo__node_metrics_start(struct colo_node *n, struct colo_err *err)
{
	struct sockaddr_storage ss;
	struct colo_addr a;
	struct colo_metrics *m;
	char why[COLO_ERR_MAX];
	int r;

	if (!n->cfg.metrics_listen || !n->cfg.metrics_listen[0])
		return 0;
	if (colo_opt_parse_addr(n->cfg.metrics_listen, &a, why, sizeof(why)) != 0)
		return colo_err_set(err, EINVAL, "metrics-listen: %s", why);
	if (colo_addr_sockaddr(&a, &ss, err) != 0)
		return -err->code;
	m = calloc(1, sizeof(*m));
	if (!m)
		return colo_err_set(err, ENOMEM, "out of memory");
	m->n = n;
	uv_tcp_init(n->loop, &m->listener);
	m->listener.data = m;
	r = uv_tcp_bind(&m->listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&m->listener, 16, on_connection);
	if (r) {
		uv_close((uv_handle_t *)&m->listener, listener_closed);
		return colo_err_set(err, -r, "metrics-listen: cannot listen on %s: %s",
				    n->cfg.metrics_listen, uv_strerror(r));
	}
	n->metrics = m;
	colo_log_info("metrics on http://%s/metrics", n->cfg.metrics_listen);
	return 0;
}

void colo__node_metrics_stop(struct colo_node *n)
{
	struct colo_metrics *m = n->metrics;

	if (!m)
		return;
	n->metrics = NULL;
	while (m->conns)
		conn_close(m->conns);
	uv_close((uv_handle_t *)&m->listener, listener_closed);
}
