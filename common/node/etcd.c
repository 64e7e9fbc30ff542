/*
 * etcd.c: the etcd v3 JSON gateway client (etcd.h): libcurl's multi
 * interface driven by the loop (curl_multi_socket_action from one uv_poll
 * per socket and one uv_timer), the calls, and their answers.  The JSON of
 * the requests and of the transaction's answer is in etcd_json.c.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "etcd.h"
#include "etcd_int.h"

struct colo_etcd {
	uv_loop_t *loop;
	CURLM *multi;
	uv_timer_t timer;
	char **eps;                 /* "http://HOST:PORT", no trailing slash */
	size_t n_eps;
	size_t cur;                 /* where the next call goes */
	size_t last;                /* where the last call went */
	uint32_t timeout_ms;
	struct etcd_call *calls;    /* in flight (doubly linked) */
	unsigned open_handles;      /* the timer and the polls not yet closed */
	bool closing;
};

enum etcd_kind { CALL_GRANT, CALL_KEEPALIVE, CALL_REVOKE, CALL_GET, CALL_TXN };

struct etcd_call {
	struct etcd_call *next, *prev;
	struct colo_etcd *e;
	CURL *easy;
	struct curl_slist *hdrs;
	char *req;
	char *buf;                  /* the answer so far */
	size_t len, cap;
	bool too_big;
	size_t ep;
	size_t n_else;              /* txn: how many else_gets */
	enum etcd_kind kind;
	union {
		colo_etcd_grant_cb grant;
		colo_etcd_keepalive_cb keepalive;
		colo_etcd_done_cb done;
		colo_etcd_get_cb get;
		colo_etcd_txn_cb txn;
	} cb;
	void *ud;
	char errbuf[CURL_ERROR_SIZE];
};

/* ---- the loop side of libcurl ---- */

static void etcd_handle_closed(uv_handle_t *h)
{
	struct colo_etcd *e = h->data;

	if (h->type == UV_POLL)
		free(h);            /* a socket's, from etcd_sock_cb */
	assert(e->open_handles > 0);
	if (--e->open_handles == 0 && e->closing) {
		for (size_t i = 0; i < e->n_eps; i++)
			free(e->eps[i]);
		free(e->eps);
		free(e);
		curl_global_cleanup();
	}
}

static void etcd_check_done(struct colo_etcd *e);

static void etcd_sock_ready(uv_poll_t *p, int status, int events)
{
	struct colo_etcd *e = p->data;
	int flags = 0, running;
	uv_os_fd_t fd;

	if (e->closing || uv_fileno((uv_handle_t *)p, &fd) != 0)
		return;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	curl_multi_socket_action(e->multi, fd, flags, &running);
	etcd_check_done(e);
}

/* CURLMOPT_SOCKETFUNCTION: watch s for what curl waits on, or stop. */
static int etcd_sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct colo_etcd *e = userp;
	uv_poll_t *p = socketp;
	int events = 0;

	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (p != NULL) {
			/* Before curl closes fd: uv_close stops the watch now. */
			uv_close((uv_handle_t *)p, etcd_handle_closed);
			curl_multi_assign(e->multi, fd, NULL);
		}
		return 0;
	}
	if (p == NULL) {
		p = calloc(1, sizeof(*p));
		if (p == NULL)
			return -1;
		if (uv_poll_init_socket(e->loop, p, fd) != 0) {
			free(p);
			return -1;
		}
		p->data = e;
		e->open_handles++;
		curl_multi_assign(e->multi, fd, p);
	}
	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= UV_READABLE;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= UV_WRITABLE;
	return uv_poll_start(p, events, etcd_sock_ready) == 0 ? 0 : -1;
}

static void etcd_timer_fired(uv_timer_t *t)
{
	struct colo_etcd *e = t->data;
	int running;

	if (e->closing)
		return;
	curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	etcd_check_done(e);
}

/* CURLMOPT_TIMERFUNCTION: curl's one timeout, on the loop (even a 0 ms one,
 * so that no callback ever runs inside a starter). */
static int etcd_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct colo_etcd *e = userp;

	(void)multi;
	if (timeout_ms < 0)
		uv_timer_stop(&e->timer);
	else
		uv_timer_start(&e->timer, etcd_timer_fired, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- the client ---- */

static int etcd_parse_endpoints(struct colo_etcd *e, const char *list, struct colo_err *err)
{
	const char *p = list;

	while (*p != '\0') {
		const char *end = strchr(p, ',');
		size_t n = end == NULL ? strlen(p) : (size_t)(end - p);
		char **eps;

		while (n > 0 && (*p == ' ' || *p == '\t'))
			p++, n--;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '/'))
			n--;
		if (n <= 7 || strncmp(p, "http://", 7) != 0 || memchr(p, '\n', n) != NULL)
			return colo_err_set(err, EINVAL,
					    "etcd endpoint \"%.*s\": not http://HOST:PORT",
					    (int)n, p);
		eps = realloc(e->eps, (e->n_eps + 1) * sizeof(*eps));
		if (eps == NULL)
			return colo_err_set(err, ENOMEM, "etcd endpoints: out of memory");
		e->eps = eps;
		e->eps[e->n_eps] = strndup(p, n);
		if (e->eps[e->n_eps] == NULL)
			return colo_err_set(err, ENOMEM, "etcd endpoints: out of memory");
		e->n_eps++;
		if (end == NULL)
			break;
		p = end + 1;
	}
	if (e->n_eps == 0)
		return colo_err_set(err, EINVAL, "etcd endpoints: none given");
	return 0;
}

int colo_etcd_new(uv_loop_t *loop, const char *endpoints, uint32_t timeout_ms,
		  struct colo_etcd **out, struct colo_err *err)
{
	struct colo_etcd *e;
	int r;

	*out = NULL;
	if (timeout_ms == 0)
		return colo_err_set(err, EINVAL, "etcd: a timeout of 0 ms");
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return colo_err_set(err, ENOMEM, "etcd: out of memory");
	e->loop = loop;
	e->timeout_ms = timeout_ms;
	r = etcd_parse_endpoints(e, endpoints, err);
	if (r == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		r = colo_err_set(err, ENOMEM, "etcd: cannot initialise libcurl");
	if (r < 0) {
		for (size_t i = 0; i < e->n_eps; i++)
			free(e->eps[i]);
		free(e->eps);
		free(e);
		return r;
	}
	e->multi = curl_multi_init();
	if (e->multi == NULL) {
		for (size_t i = 0; i < e->n_eps; i++)
			free(e->eps[i]);
		free(e->eps);
		free(e);
		curl_global_cleanup();
		return colo_err_set(err, ENOMEM, "etcd: out of memory");
	}
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, etcd_sock_cb);
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, etcd_timer_cb);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
	uv_timer_init(loop, &e->timer);
	e->timer.data = e;
	e->open_handles = 1;
	*out = e;
	return 0;
}

const char *colo_etcd_endpoint(const struct colo_etcd *e)
{
	return e->eps[e->last];
}

static void etcd_call_free(struct etcd_call *c)
{
	if (c->easy != NULL)
		curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->hdrs);
	free(c->req);
	free(c->buf);
	free(c);
}

static void etcd_unlink(struct etcd_call *c)
{
	struct colo_etcd *e = c->e;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		e->calls = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

void colo_etcd_close(struct colo_etcd *e)
{
	if (e == NULL)
		return;
	assert(!e->closing);
	e->closing = true;
	while (e->calls != NULL) {
		struct etcd_call *c = e->calls;

		etcd_unlink(c);
		curl_multi_remove_handle(e->multi, c->easy);
		etcd_call_free(c);
	}
	/* Closes the cached connections: their sockets' polls close through
	 * etcd_sock_cb, so every handle is closing once this returns. */
	curl_multi_cleanup(e->multi);
	e->multi = NULL;
	uv_close((uv_handle_t *)&e->timer, etcd_handle_closed);
}

/* ---- one call ---- */

static size_t etcd_write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	struct etcd_call *c = userp;
	size_t n = size * nmemb;

	if (n > COLO_ETCD_MAX_REPLY - c->len) {
		c->too_big = true;
		return 0;           /* CURLE_WRITE_ERROR ends the transfer */
	}
	if (c->len + n + 1 > c->cap) {
		size_t cap = c->cap == 0 ? 4096 : c->cap;
		char *b;

		while (cap < c->len + n + 1)
			cap *= 2;
		b = realloc(c->buf, cap);
		if (b == NULL)
			return 0;
		c->buf = b;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, data, n);
	c->len += n;
	c->buf[c->len] = '\0';
	return n;
}

/* Make the easy handle for a POST of body (taken) to path and add it. */
static int etcd_call_start(struct colo_etcd *e, struct etcd_call *c, const char *path,
			   json_t *body)
{
	char url[1024];
	struct curl_slist *h;
	CURLMcode mr;

	assert(!e->closing);
	c->e = e;
	c->ep = e->cur;
	if (body != NULL) {
		c->req = json_dumps(body, JSON_COMPACT);
		json_decref(body);
	}
	if (c->req == NULL || (c->easy = curl_easy_init()) == NULL)
		goto nomem;
	if ((size_t)snprintf(url, sizeof(url), "%s%s", e->eps[c->ep], path) >= sizeof(url)) {
		etcd_call_free(c);
		return -ENAMETOOLONG;
	}
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h == NULL)
		goto nomem;
	c->hdrs = h;
	/* No "Expect: 100-continue" round trip, whatever the body's size. */
	h = curl_slist_append(c->hdrs, "Expect:");
	if (h == NULL)
		goto nomem;
	c->hdrs = h;
	if (curl_easy_setopt(c->easy, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_NOPROXY, "*") != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)e->timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)e->timeout_ms) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->req) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(c->req)) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, etcd_write_cb) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c) != CURLE_OK ||
	    curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf) != CURLE_OK)
		goto nomem;
	mr = curl_multi_add_handle(e->multi, c->easy);
	if (mr != CURLM_OK) {
		etcd_call_free(c);
		return mr == CURLM_OUT_OF_MEMORY ? -ENOMEM : -EIO;
	}
	e->last = c->ep;
	c->next = e->calls;
	if (e->calls != NULL)
		e->calls->prev = c;
	e->calls = c;
	return 0;
nomem:
	etcd_call_free(c);
	return -ENOMEM;
}

static struct etcd_call *etcd_call_new(enum etcd_kind kind, void *ud)
{
	struct etcd_call *c = calloc(1, sizeof(*c));

	if (c != NULL) {
		c->kind = kind;
		c->ud = ud;
	}
	return c;
}

/* The transport's verdict: 0 when an HTTP answer came whole. */
static int etcd_transport_rc(struct etcd_call *c, CURLcode res, char *why, size_t whylen)
{
	const char *ep = c->e->eps[c->ep];
	long oserr = 0;

	switch (res) {
	case CURLE_OK:
		return 0;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(why, whylen, "etcd %s: timed out after %u ms", ep, c->e->timeout_ms);
		return -ETIMEDOUT;
	case CURLE_WRITE_ERROR:
		if (c->too_big) {
			snprintf(why, whylen, "etcd %s: answered more than %d bytes", ep,
				 COLO_ETCD_MAX_REPLY);
			return -EMSGSIZE;
		}
		snprintf(why, whylen, "etcd %s: out of memory for the answer", ep);
		return -ENOMEM;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &oserr);
		if (oserr == ECONNREFUSED) {
			snprintf(why, whylen, "etcd %s: connection refused", ep);
			return -ECONNREFUSED;
		}
		snprintf(why, whylen, "etcd %s: cannot connect: %s", ep,
			 c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(res));
		return oserr > 0 ? -(int)oserr : -EHOSTUNREACH;
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(why, whylen, "etcd %s: cannot resolve the host", ep);
		return -EHOSTUNREACH;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_WEIRD_SERVER_REPLY:
		snprintf(why, whylen, "etcd %s: answered something that is not HTTP", ep);
		return -EPROTO;
	case CURLE_GOT_NOTHING:
		snprintf(why, whylen, "etcd %s: closed the connection without answering", ep);
		return -ECONNRESET;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		snprintf(why, whylen, "etcd %s: connection lost: %s", ep,
			 c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(res));
		return -ECONNRESET;
	case CURLE_OUT_OF_MEMORY:
		snprintf(why, whylen, "etcd %s: out of memory", ep);
		return -ENOMEM;
	default:
		snprintf(why, whylen, "etcd %s: %s", ep,
			 c->errbuf[0] != '\0' ? c->errbuf : curl_easy_strerror(res));
		return -EIO;
	}
}

static void etcd_fail(struct etcd_call *c, int rc, const char *why)
{
	switch (c->kind) {
	case CALL_GRANT:
		c->cb.grant(c->ud, rc, 0, 0, why);
		break;
	case CALL_KEEPALIVE:
		c->cb.keepalive(c->ud, rc, 0, why);
		break;
	case CALL_REVOKE:
		if (c->cb.done != NULL)
			c->cb.done(c->ud, rc, why);
		break;
	case CALL_GET:
		c->cb.get(c->ud, rc, NULL, 0, why);
		break;
	case CALL_TXN:
		c->cb.txn(c->ud, rc, false, 0, NULL, 0, why);
		break;
	}
}

/* Decode a whole answer and call back; the error path is etcd_fail's. */
static int etcd_answer(struct etcd_call *c, char *why, size_t whylen)
{
	const char *ep = c->e->eps[c->ep];
	long status = 0;
	json_t *root, *res;
	int64_t a, b;
	int r;

	curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
	r = colo__etcd_parse(ep, status, c->buf, c->len, &root, why, whylen);
	if (r < 0)
		return r;
	switch (c->kind) {
	case CALL_GRANT:
		r = colo__etcd_i64(root, "ID", &a, ep, why, whylen);
		if (r == 0)
			r = colo__etcd_i64(root, "TTL", &b, ep, why, whylen);
		if (r == 0 && a == 0) {
			snprintf(why, whylen, "etcd %s: granted a lease without an ID", ep);
			r = -EBADMSG;
		}
		if (r == 0)
			c->cb.grant(c->ud, 0, a, b, NULL);
		break;
	case CALL_KEEPALIVE:
		/* A streaming call on the gateway: {"result": {...}}; a lease
		 * that is gone answers without a TTL (proto3: 0). */
		res = json_object_get(root, "result");
		if (!json_is_object(res)) {
			snprintf(why, whylen, "etcd %s: a keepalive answer without a result", ep);
			r = -EBADMSG;
			break;
		}
		r = colo__etcd_i64(res, "TTL", &a, ep, why, whylen);
		if (r == 0)
			c->cb.keepalive(c->ud, 0, a, NULL);
		break;
	case CALL_REVOKE:
		if (c->cb.done != NULL)
			c->cb.done(c->ud, 0, NULL);
		break;
	case CALL_GET:
		r = colo__etcd_get_answer(c->cb.get, c->ud, root, ep, why, whylen);
		break;
	case CALL_TXN:
		r = colo__etcd_txn_answer(c->cb.txn, c->ud, root, c->n_else, ep, why, whylen);
		break;
	}
	json_decref(root);
	return r;
}

static void etcd_check_done(struct colo_etcd *e)
{
	CURLMsg *m;
	int left;

	while (!e->closing && (m = curl_multi_info_read(e->multi, &left)) != NULL) {
		struct etcd_call *c = NULL;
		char why[COLO_ERR_MAX];
		int rc;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
		rc = (int)m->data.result;   /* m is gone once the handle is removed */
		etcd_unlink(c);
		curl_multi_remove_handle(e->multi, c->easy);
		why[0] = '\0';
		rc = etcd_transport_rc(c, (CURLcode)rc, why, sizeof(why));
		if (rc == 0)
			rc = etcd_answer(c, why, sizeof(why));
		if (rc < 0) {
			/* The next call tries the next member, unless another
			 * failed call moved on already. */
			if (e->cur == c->ep)
				e->cur = (e->cur + 1) % e->n_eps;
			etcd_fail(c, rc, why);
		}
		etcd_call_free(c);
	}
}

/* ---- the calls ---- */

int colo_etcd_grant(struct colo_etcd *e, int64_t ttl_s, colo_etcd_grant_cb cb, void *ud)
{
	struct etcd_call *c = etcd_call_new(CALL_GRANT, ud);
	json_t *body;

	if (c == NULL)
		return -ENOMEM;
	c->cb.grant = cb;
	body = json_pack("{s:o}", "TTL", colo__etcd_i64_json(ttl_s));
	return etcd_call_start(e, c, "/v3/lease/grant", body);
}

int colo_etcd_keepalive(struct colo_etcd *e, int64_t id, colo_etcd_keepalive_cb cb, void *ud)
{
	struct etcd_call *c = etcd_call_new(CALL_KEEPALIVE, ud);
	json_t *body;

	if (c == NULL)
		return -ENOMEM;
	c->cb.keepalive = cb;
	body = json_pack("{s:o}", "ID", colo__etcd_i64_json(id));
	return etcd_call_start(e, c, "/v3/lease/keepalive", body);
}

int colo_etcd_revoke(struct colo_etcd *e, int64_t id, colo_etcd_done_cb cb, void *ud)
{
	struct etcd_call *c = etcd_call_new(CALL_REVOKE, ud);
	json_t *body;

	if (c == NULL)
		return -ENOMEM;
	c->cb.done = cb;
	body = json_pack("{s:o}", "ID", colo__etcd_i64_json(id));
	return etcd_call_start(e, c, "/v3/lease/revoke", body);
}

int colo_etcd_get(struct colo_etcd *e, const char *key, colo_etcd_get_cb cb, void *ud)
{
	struct etcd_call *c = etcd_call_new(CALL_GET, ud);
	json_t *body;

	if (c == NULL)
		return -ENOMEM;
	c->cb.get = cb;
	body = json_pack("{s:o}", "key", colo__etcd_b64_json(key, strlen(key)));
	return etcd_call_start(e, c, "/v3/kv/range", body);
}

int colo_etcd_txn_run(struct colo_etcd *e, struct colo_etcd_txn *t, colo_etcd_txn_cb cb,
		      void *ud)
{
	struct etcd_call *c = etcd_call_new(CALL_TXN, ud);
	json_t *body;

	if (c == NULL) {
		colo_etcd_txn_free(t);
		return -ENOMEM;
	}
	c->cb.txn = cb;
	c->n_else = colo__etcd_txn_take(t, &body);
	return etcd_call_start(e, c, "/v3/kv/txn", body);
}
