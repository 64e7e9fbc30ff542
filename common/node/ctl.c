/*
 * ctl.c: the control socket's server (see ctl.h): the listener, its
 * connections, the framing of requests and replies, and what server and
 * client share (the socket's address, the default path, the peer check).
 * The blocking client is ctl_client.c.
 */
#include "config.h"
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1            /* struct ucred, SOCK_CLOEXEC */
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "buf.h"
#include "ctl.h"
#include "ctl_int.h"
#include "fs.h"

#define CTL_BACKLOG 16
#define CTL_READ_CHUNK 65536

struct ctl_conn {
	uv_pipe_t pipe;                 /* first: the handle points at us */
	struct colo_ctl_server *srv;
	struct ctl_conn *prev, *next;
	unsigned long id;               /* for log lines */
	uint8_t *rbuf;                  /* received, not yet consumed: [rpos, rlen) */
	size_t rpos, rlen, rcap;
	struct colo_ctl_pending *busy;  /* request handed out, not replied */
	bool reading;
	bool dispatching;               /* inside ctl_conn_process() */
	bool doomed;                    /* bad frame: close once the error is written */
	bool closing;
};

struct colo_ctl_server {
	uv_loop_t *loop;
	uv_pipe_t listener;
	char *path;
	dev_t dev;                      /* of the socket file we bound */
	ino_t ino;
	colo_ctl_handler_fn fn;
	void *ud;
	colo_ctl_log_fn log;
	void *log_ud;
	struct ctl_conn *conns;
	unsigned long next_id;
	unsigned handles;               /* open uv handles: listener + conns */
	bool stopping;
};

struct colo_ctl_pending {
	struct ctl_conn *conn;          /* NULL once the client is gone */
	Colo__ControlRequest *req;
};

struct ctl_write {
	uv_write_t req;
	struct ctl_conn *conn;
	bool close_after;
	size_t len;
	uint8_t data[];
};

/* ---- helpers ---- */

static void ctl_log(struct colo_ctl_server *s, const char *fmt, ...)
	COLO_PRINTF(2, 3);

static void ctl_log(struct colo_ctl_server *s, const char *fmt, ...)
{
	char line[COLO_ERR_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (s->log)
		s->log(s->log_ud, line);
	else
		fprintf(stderr, "colo: control: %s\n", line);
}

/*
 * Is someone serving `path`?  0: nothing there (or a stale socket, now
 * removed); otherwise refuse with the reason.
 */
static int check_existing(const struct sockaddr_un *sa, struct colo_err *err)
{
	const char *path = sa->sun_path;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) != 0) {
		if (errno == ENOENT)
			return 0;
		return colo_err_set(err, errno, "cannot check control socket %s: %s",
				    path, strerror(errno));
	}
	if (!S_ISSOCK(st.st_mode))
		return colo_err_set(err, EEXIST, "%s exists and is not a socket", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return colo_err_set(err, errno, "socket: %s", strerror(errno));
	rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	/* EAGAIN: a live listener whose backlog is full. */
	if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		return colo_err_set(err, EADDRINUSE,
				    "control socket %s is in use by another process", path);
	}
	rc = errno;
	close(fd);
	if (rc != ECONNREFUSED)
		return colo_err_set(err, rc, "cannot check control socket %s: %s",
				    path, strerror(rc));
	if (unlink(path) != 0 && errno != ENOENT)
		return colo_err_set(err, errno, "cannot remove stale control socket %s: %s",
				    path, strerror(errno));
	return 0;
}

/* ---- connections ---- */

static void ctl_server_maybe_free(struct colo_ctl_server *s)
{
	if (s->stopping && s->handles == 0) {
		free(s->path);
		free(s);
	}
}

static void on_conn_closed(uv_handle_t *h)
{
	struct ctl_conn *c = (struct ctl_conn *)h;
	struct colo_ctl_server *s = c->srv;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->rbuf);
	free(c);
	s->handles--;
	ctl_server_maybe_free(s);
}

static void ctl_conn_close(struct ctl_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->busy) {
		/* The token outlives us: colo_ctl_reply() will just free it. */
		c->busy->conn = NULL;
		c->busy = NULL;
	}
	uv_close((uv_handle_t *)&c->pipe, on_conn_closed);
}

static void on_write(uv_write_t *req, int status)
{
	struct ctl_write *w = (struct ctl_write *)req;
	struct ctl_conn *c = w->conn;

	/* Write callbacks run before the handle's close callback: c is alive. */
	if (status < 0 && status != UV_ECANCELED && !c->closing) {
		/* A client that hung up before its reply is routine. */
		if (status != UV_EPIPE && status != UV_ECONNRESET)
			ctl_log(c->srv, "connection %lu: writing a reply: %s", c->id,
				uv_strerror(status));
		ctl_conn_close(c);
	} else if (w->close_after) {
		ctl_conn_close(c);
	}
	free(w);
}

/* Frame and queue one response; the caller keeps `resp`. */
static void ctl_conn_send(struct ctl_conn *c, Colo__ControlResponse *resp,
			  bool close_after)
{
	Colo__ControlResponse r = *resp, big = COLO__CONTROL_RESPONSE__INIT;
	char msg[160];
	struct ctl_write *w;
	uv_buf_t buf;
	size_t len;
	int rc;

	r.version = COLO_CTL_VERSION;
	len = colo__control_response__get_packed_size(&r);
	if (len > COLO_CTL_MAX_FRAME) {
		snprintf(msg, sizeof(msg),
			 "the response of %zu bytes exceeds the control protocol's limit of %u bytes",
			 len, COLO_CTL_MAX_FRAME);
		big.version = COLO_CTL_VERSION;
		big.error = msg;
		r = big;
		len = colo__control_response__get_packed_size(&r);
	}
	w = malloc(sizeof(*w) + 4 + len);
	if (!w) {
		ctl_log(c->srv, "connection %lu: out of memory for a reply", c->id);
		ctl_conn_close(c);
		return;
	}
	w->conn = c;
	w->close_after = close_after;
	w->len = 4 + len;
	colo_store_be32(w->data, (uint32_t)len);
	colo__control_response__pack(&r, w->data + 4);
	buf = uv_buf_init((char *)w->data, (unsigned)w->len);
	rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, on_write);
	if (rc < 0) {
		free(w);
		ctl_log(c->srv, "connection %lu: writing a reply: %s", c->id,
			uv_strerror(rc));
		ctl_conn_close(c);
	}
}

static void ctl_conn_send_error(struct ctl_conn *c, bool close_after,
				const char *fmt, ...) COLO_PRINTF(3, 4);

static void ctl_conn_send_error(struct ctl_conn *c, bool close_after,
				const char *fmt, ...)
{
	Colo__ControlResponse r = COLO__CONTROL_RESPONSE__INIT;
	char msg[COLO_ERR_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r.ok = false;
	r.error = msg;
	if (close_after) {
		ctl_log(c->srv, "connection %lu: %s; closing it", c->id, msg);
		c->doomed = true;
	}
	ctl_conn_send(c, &r, close_after);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct ctl_conn *c = (struct ctl_conn *)h;

	(void)suggested;
	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rcap - c->rlen < CTL_READ_CHUNK) {
		size_t cap = c->rlen + CTL_READ_CHUNK;
		uint8_t *p = realloc(c->rbuf, cap);

		if (!p) {
			*buf = uv_buf_init(NULL, 0);    /* read_cb gets UV_ENOBUFS */
			return;
		}
		c->rbuf = p;
		c->rcap = cap;
	}
	*buf = uv_buf_init((char *)c->rbuf + c->rlen, (unsigned)(c->rcap - c->rlen));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf);

/*
 * Read while there is room: a connection holds at most one frame beyond
 * the request being served, so a client cannot make us buffer without end.
 */
static void ctl_conn_update_reading(struct ctl_conn *c)
{
	bool want = !c->closing && !c->doomed &&
		    !(c->busy && c->rlen - c->rpos >= 4 + (size_t)COLO_CTL_MAX_FRAME);

	if (want && !c->reading) {
		int rc = uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);

		if (rc < 0) {
			ctl_log(c->srv, "connection %lu: %s", c->id, uv_strerror(rc));
			ctl_conn_close(c);
			return;
		}
		c->reading = true;
	} else if (!want && c->reading) {
		if (!c->closing)
			uv_read_stop((uv_stream_t *)&c->pipe);
		c->reading = false;
	}
}

/* Hand out the complete frames received, one request at a time. */
static void ctl_conn_process(struct ctl_conn *c)
{
	struct colo_ctl_server *s = c->srv;

	c->dispatching = true;
	while (!c->busy && !c->closing && !c->doomed && !s->stopping) {
		size_t avail = c->rlen - c->rpos;
		const uint8_t *f = c->rbuf + c->rpos;
		Colo__ControlRequest *req;
		struct colo_ctl_pending *p;
		uint32_t len;

		if (avail < 4)
			break;
		len = colo_load_be32(f);
		if (len == 0 || len > COLO_CTL_MAX_FRAME) {
			ctl_conn_send_error(c, true,
					    "control frame of %" PRIu32 " bytes: a ControlRequest is 1 to %u bytes",
					    len, COLO_CTL_MAX_FRAME);
			break;
		}
		if (avail - 4 < len)
			break;
		req = colo__control_request__unpack(NULL, len, f + 4);
		c->rpos += 4 + (size_t)len;
		if (!req) {
			ctl_conn_send_error(c, true,
					    "control frame of %" PRIu32 " bytes is not a ControlRequest",
					    len);
			break;
		}
		if (req->version != COLO_CTL_VERSION) {
			ctl_conn_send_error(c, false,
					    "control protocol version %" PRIu32 ", this node speaks %d",
					    req->version, COLO_CTL_VERSION);
			colo__control_request__free_unpacked(req, NULL);
			continue;
		}
		if (req->cmd_case == COLO__CONTROL_REQUEST__CMD__NOT_SET) {
			/* Empty, or a command added without a version bump. */
			ctl_conn_send_error(c, false, "the request names no command");
			colo__control_request__free_unpacked(req, NULL);
			continue;
		}
		p = malloc(sizeof(*p));
		if (!p) {
			colo__control_request__free_unpacked(req, NULL);
			ctl_conn_send_error(c, true, "out of memory");
			break;
		}
		p->conn = c;
		p->req = req;
		c->busy = p;
		s->fn(p, req, s->ud);
	}
	c->dispatching = false;
	ctl_conn_update_reading(c);
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct ctl_conn *c = (struct ctl_conn *)st;

	(void)buf;
	if (nread == 0)
		return;                 /* EAGAIN */
	if (nread < 0) {
		/*
		 * EOF: the client is gone (clients keep their end open until
		 * they have read their replies).  A request being served keeps
		 * its token; its reply goes nowhere.
		 */
		if (nread != UV_EOF)
			ctl_log(c->srv, "connection %lu: %s", c->id, uv_strerror((int)nread));
		ctl_conn_close(c);
		return;
	}
	c->rlen += (size_t)nread;
	ctl_conn_process(c);
}

int colo_ctl_check_peer(uid_t peer_uid, pid_t peer_pid, uid_t euid,
			struct colo_err *err)
{
	if (peer_uid == euid || peer_uid == 0)
		return 0;
	return colo_err_set(err, EPERM,
			    "peer uid %lu (pid %ld) is neither the node's uid %lu nor root",
			    (unsigned long)peer_uid, (long)peer_pid, (unsigned long)euid);
}

static void on_connection(uv_stream_t *ls, int status)
{
	struct colo_ctl_server *s = ls->data;
	struct colo_err err;
	struct ucred cred;
	socklen_t clen = sizeof(cred);
	struct ctl_conn *c;
	uv_os_fd_t fd;
	int rc;

	if (status < 0) {
		ctl_log(s, "accepting a connection: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		ctl_log(s, "out of memory for a connection");
		return;     /* it stays in the backlog; next time, maybe */
	}
	c->srv = s;
	c->id = ++s->next_id;
	uv_pipe_init(s->loop, &c->pipe, 0);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->handles++;
	rc = uv_accept(ls, (uv_stream_t *)&c->pipe);
	if (rc < 0) {
		ctl_log(s, "accepting a connection: %s", uv_strerror(rc));
		ctl_conn_close(c);
		return;
	}
	colo_err_clear(&err);
	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0) {
		ctl_log(s, "connection %lu refused: cannot read its credentials: %s",
			c->id, strerror(errno));
		ctl_conn_close(c);
		return;
	}
	if (colo_ctl_check_peer(cred.uid, cred.pid, geteuid(), &err) != 0) {
		ctl_log(s, "connection %lu refused: %s", c->id, err.msg);
		ctl_conn_close(c);
		return;
	}
	ctl_conn_update_reading(c);
}

/* ---- server ---- */

int colo_ctl_server_start(uv_loop_t *loop, const char *path,
			  colo_ctl_handler_fn fn, void *ud,
			  struct colo_ctl_server **out, struct colo_err *err)
{
	struct colo_ctl_server *s;
	struct sigaction sa_pipe;
	struct sockaddr_un sa;
	struct stat st;
	int fd = -1, rc;

	*out = NULL;
	rc = colo__ctl_sockaddr(&sa, path, err);
	if (rc)
		return rc;
	s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	s->loop = loop;
	s->fn = fn;
	s->ud = ud;
	rc = colo_mkdir_parent(path, 0700, err);
	if (rc == 0)
		rc = check_existing(&sa, err);
	if (rc)
		goto fail;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = colo_err_set(err, errno, "socket: %s", strerror(errno));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		rc = colo_err_set(err, errno, "cannot bind control socket %s: %s",
				  path, strerror(errno));
		goto fail;
	}
	/* Owner-only before anyone can connect: listen() comes after. */
	if (chmod(path, 0600) != 0 || lstat(path, &st) != 0) {
		rc = colo_err_set(err, errno, "control socket %s: %s", path,
				  strerror(errno));
		unlink(path);
		goto fail;
	}
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	if (listen(fd, CTL_BACKLOG) != 0) {
		rc = colo_err_set(err, errno, "cannot listen on control socket %s: %s",
				  path, strerror(errno));
		unlink(path);
		goto fail;
	}
	uv_pipe_init(loop, &s->listener, 0);
	s->listener.data = s;
	s->handles = 1;
	rc = uv_pipe_open(&s->listener, fd);
	if (rc < 0)
		close(fd);
	else
		rc = uv_listen((uv_stream_t *)&s->listener, CTL_BACKLOG, on_connection);
	if (rc < 0) {
		colo_err_set(err, -rc, "cannot listen on control socket %s: %s",
			     path, uv_strerror(rc));
		/* Closing the handle frees s on the next loop turn. */
		colo_ctl_server_stop(s);
		return rc;
	}
	if (sigaction(SIGPIPE, NULL, &sa_pipe) == 0 && sa_pipe.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	*out = s;
	return 0;

fail:
	if (fd >= 0)
		close(fd);
	free(s->path);
	free(s);
	return rc;
}

void colo_ctl_server_set_log(struct colo_ctl_server *srv, colo_ctl_log_fn fn,
			     void *ud)
{
	srv->log = fn;
	srv->log_ud = ud;
}

const char *colo_ctl_server_path(const struct colo_ctl_server *srv)
{
	return srv->path;
}

static void on_listener_closed(uv_handle_t *h)
{
	struct colo_ctl_server *s = h->data;

	s->handles--;
	ctl_server_maybe_free(s);
}

void colo_ctl_server_stop(struct colo_ctl_server *s)
{
	struct stat st;

	if (!s || s->stopping)
		return;
	s->stopping = true;
	/* Remove the file only if it is still ours, not a successor's. */
	if (lstat(s->path, &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
		unlink(s->path);
	uv_close((uv_handle_t *)&s->listener, on_listener_closed);
	for (struct ctl_conn *c = s->conns; c; c = c->next)
		ctl_conn_close(c);
}

/* ---- replies ---- */

void colo_ctl_reply(struct colo_ctl_pending *p, Colo__ControlResponse *resp)
{
	struct ctl_conn *c = p->conn;

	colo__control_request__free_unpacked(p->req, NULL);
	free(p);
	if (!c)
		return;                 /* client gone or server stopped */
	c->busy = NULL;
	ctl_conn_send(c, resp, false);
	/* The next request waits in rbuf; the dispatch loop takes it itself. */
	if (!c->dispatching && !c->closing)
		ctl_conn_process(c);
}

/* One line of text as the reply: an error (ok=false) or a message. */
static void reply_text(struct colo_ctl_pending *p, bool ok, const char *fmt, va_list ap)
{
	Colo__ControlResponse r = COLO__CONTROL_RESPONSE__INIT;
	char msg[COLO_ERR_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	r.ok = ok;
	if (ok) {
		r.result_case = COLO__CONTROL_RESPONSE__RESULT_MESSAGE;
		r.message = msg;
	} else {
		r.error = msg;
	}
	colo_ctl_reply(p, &r);
}

void colo_ctl_reply_error(struct colo_ctl_pending *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_text(p, false, fmt, ap);
	va_end(ap);
}

void colo_ctl_reply_message(struct colo_ctl_pending *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_text(p, true, fmt, ap);
	va_end(ap);
}

bool colo_ctl_pending_connected(const struct colo_ctl_pending *p)
{
	return p->conn != NULL;
}

/* ---- what server and client share ---- */

int colo__ctl_sockaddr(struct sockaddr_un *sa, const char *path, struct colo_err *err)
{
	size_t n = strlen(path);

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (n == 0)
		return colo_err_set(err, EINVAL, "control socket path is empty");
	/* libuv and the kernel would cut it short: say so instead. */
	if (n >= sizeof(sa->sun_path))
		return colo_err_set(err, ENAMETOOLONG,
				    "control socket path %s is too long (%zu bytes, at most %zu)",
				    path, n, sizeof(sa->sun_path) - 1);
	memcpy(sa->sun_path, path, n + 1);
	return 0;
}

int colo_ctl_default_path(const char *name, char *buf, size_t size)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	uid_t uid = geteuid();
	int n;

	if (uid == 0)
		n = snprintf(buf, size, "/run/colo/%s.sock", name);
	else if (xdg && *xdg)
		n = snprintf(buf, size, "%s/colo/%s.sock", xdg, name);
	else
		n = snprintf(buf, size, "/tmp/colo-%lu/%s.sock", (unsigned long)uid, name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}
