/*
 * test_ctl.c: the control socket (common/node/ctl.h).  A server runs on a libuv
 * loop in a thread with a fake handler; clients talk to it with
 * colo_ctl_call() or raw frames: values round-trip, deferred replies,
 * several requests on one connection, damaged frames, the version check,
 * file modes, a second server, stale sockets, the peer uid check, and the
 * client's errors.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "colo.pb-c.h"
#include "ctl.h"
#include "testutil.h"

/* ---- the fake node ---- */

struct deferred {
	uv_timer_t timer;
	struct colo_ctl_pending *p;
	struct deferred *next;
};

static struct {
	char *dir;
	char path[200];
	uv_loop_t loop;
	uv_async_t stop;
	uv_thread_t thread;
	bool running;
	struct colo_ctl_server *srv;
	struct deferred *deferred;          /* checkpoints waiting for their timer */
	struct colo_ctl_pending *stuck;     /* verify: never answered until stop */
	uv_mutex_t lock;                    /* guards the two below */
	char last_log[600];
	int logs;
	int checkpoints_answered;
} fx;

static void on_log(void *ud, const char *line)
{
	(void)ud;
	uv_mutex_lock(&fx.lock);
	snprintf(fx.last_log, sizeof(fx.last_log), "%s", line);
	fx.logs++;
	uv_mutex_unlock(&fx.lock);
}

static void on_deferred_closed(uv_handle_t *h)
{
	free(h);        /* the timer is the first member */
}

static void unlink_deferred(struct deferred *d)
{
	for (struct deferred **pp = &fx.deferred; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			return;
		}
}

static void on_checkpoint_done(uv_timer_t *t)
{
	struct deferred *d = (struct deferred *)t;

	/* Counted before the reply leaves, so a client holding the reply
	 * sees the count. */
	uv_mutex_lock(&fx.lock);
	fx.checkpoints_answered++;
	uv_mutex_unlock(&fx.lock);
	colo_ctl_reply_message(d->p, "checkpoint 42 committed");
	unlink_deferred(d);
	uv_close((uv_handle_t *)t, on_deferred_closed);
}

static void reply_status(struct colo_ctl_pending *p)
{
	Colo__ControlResponse r = COLO__CONTROL_RESPONSE__INIT;
	Colo__Status st = COLO__STATUS__INIT;
	Colo__PhaseTiming ph0 = COLO__PHASE_TIMING__INIT, ph1 = COLO__PHASE_TIMING__INIT;
	Colo__PhaseTiming *phases[2] = { &ph0, &ph1 };

	st.node = "a";
	st.role = COLO__ROLE__ROLE_PRIMARY;
	st.generation = 3;
	st.state = "protected";
	st.peer = "127.0.0.1:17070";
	st.peer_state = "connected";
	st.last_committed = 1234;
	st.interval_ms = 100;
	st.min_interval_ms = 1;
	st.dirty_pages_per_s = 1520.5;
	st.bytes_per_s = 6225920;
	st.guest = "kv";
	st.tracking = "uffd-wp";
	st.uptime_ms = 3723400;
	st.encodings = "delta,lz4,zero";
	ph0.phase = "pause";
	ph0.p50_us = 12.5;
	ph0.p99_us = 40.25;
	ph0.count = 1000;
	ph1.phase = "send";
	ph1.p50_us = 310;
	ph1.p99_us = 900;
	ph1.count = 999;
	st.n_phases = 2;
	st.phases = phases;
	r.ok = true;
	r.result_case = COLO__CONTROL_RESPONSE__RESULT_STATUS;
	r.status = &st;
	colo_ctl_reply(p, &r);
}

static void handler(struct colo_ctl_pending *p, const Colo__ControlRequest *req,
		    void *ud)
{
	struct deferred *d;

	ck_assert_ptr_eq(ud, &fx);
	switch (req->cmd_case) {
	case COLO__CONTROL_REQUEST__CMD_STATUS:
		reply_status(p);
		break;
	case COLO__CONTROL_REQUEST__CMD_CHECKPOINT:
		d = calloc(1, sizeof(*d));
		ck_assert_ptr_nonnull(d);
		d->p = p;
		d->next = fx.deferred;
		fx.deferred = d;
		uv_timer_init(&fx.loop, &d->timer);
		uv_timer_start(&d->timer, on_checkpoint_done, 50, 0);
		break;
	case COLO__CONTROL_REQUEST__CMD_FAILOVER:
		colo_ctl_reply_error(p, "not a secondary");
		break;
	case COLO__CONTROL_REQUEST__CMD_SET_INTERVAL:
		colo_ctl_reply_message(p, "interval %u ms", req->set_interval->ms);
		break;
	case COLO__CONTROL_REQUEST__CMD_VERIFY:
		fx.stuck = p;
		break;
	default:
		colo_ctl_reply_error(p, "not here");
		break;
	}
}

/* On the loop: stop serving, answer what waits, close our handles. */
static void on_stop(uv_async_t *a)
{
	colo_ctl_server_stop(fx.srv);
	fx.srv = NULL;
	while (fx.deferred) {
		struct deferred *d = fx.deferred;

		fx.deferred = d->next;
		colo_ctl_reply_error(d->p, "stopping");
		uv_close((uv_handle_t *)&d->timer, on_deferred_closed);
	}
	if (fx.stuck) {
		colo_ctl_reply_error(fx.stuck, "stopping");
		fx.stuck = NULL;
	}
	uv_close((uv_handle_t *)a, NULL);
}

static void run_loop(void *arg)
{
	(void)arg;
	uv_run(&fx.loop, UV_RUN_DEFAULT);
}

static void set_path(const char *name)
{
	snprintf(fx.path, sizeof(fx.path), "%s/%s", fx.dir, name);
}

/* Serve fx.path on the loop thread. */
static void server_start(void)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_int_eq(uv_loop_init(&fx.loop), 0);
	ck_assert_int_eq(uv_async_init(&fx.loop, &fx.stop, on_stop), 0);
	if (colo_ctl_server_start(&fx.loop, fx.path, handler, &fx, &fx.srv, &err) != 0)
		ck_abort_msg("server start: %s", err.msg);
	colo_ctl_server_set_log(fx.srv, on_log, NULL);
	ck_assert_int_eq(uv_thread_create(&fx.thread, run_loop, NULL), 0);
	fx.running = true;
}

static void server_stop(void)
{
	if (!fx.running)
		return;
	fx.running = false;
	uv_async_send(&fx.stop);
	uv_thread_join(&fx.thread);
	/* Every handle closed, the server freed itself. */
	ck_assert_int_eq(uv_loop_close(&fx.loop), 0);
}

static void setup(void)
{
	memset(&fx, 0, sizeof(fx));
	uv_mutex_init(&fx.lock);
	fx.dir = colo_test_tmpdir();
	ck_assert_ptr_nonnull(fx.dir);
	set_path("n.sock");
}

static void teardown(void)
{
	char p[256];

	server_stop();
	unlink(fx.path);
	snprintf(p, sizeof(p), "%s/run/colo", fx.dir);
	rmdir(p);
	snprintf(p, sizeof(p), "%s/run", fx.dir);
	rmdir(p);
	colo_test_rmdir(fx.dir);
	uv_mutex_destroy(&fx.lock);
}

/* ---- clients ---- */

static Colo__ControlResponse *call(Colo__ControlRequest__CmdCase cmd, uint32_t version)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest status = COLO__STATUS_REQUEST__INIT;
	Colo__CheckpointRequest cp = COLO__CHECKPOINT_REQUEST__INIT;
	Colo__FailoverRequest fo = COLO__FAILOVER_REQUEST__INIT;
	Colo__ControlResponse *resp;
	struct colo_err err;

	req.version = version;
	req.cmd_case = cmd;
	if (cmd == COLO__CONTROL_REQUEST__CMD_STATUS)
		req.status = &status;
	else if (cmd == COLO__CONTROL_REQUEST__CMD_CHECKPOINT)
		req.checkpoint = &cp;
	else
		req.failover = &fo;
	colo_err_clear(&err);
	if (colo_ctl_call(fx.path, &req, &resp, 2000, &err) != 0)
		ck_abort_msg("call: %s", err.msg);
	ck_assert_uint_eq(resp->version, COLO_CTL_VERSION);
	return resp;
}

static void check_status(const Colo__ControlResponse *r)
{
	const Colo__Status *st;

	ck_assert(r->ok);
	ck_assert_int_eq(r->result_case, COLO__CONTROL_RESPONSE__RESULT_STATUS);
	st = r->status;
	ck_assert_str_eq(st->node, "a");
	ck_assert_int_eq(st->role, COLO__ROLE__ROLE_PRIMARY);
	ck_assert_uint_eq(st->generation, 3);
	ck_assert_str_eq(st->state, "protected");
	ck_assert_str_eq(st->peer, "127.0.0.1:17070");
	ck_assert_str_eq(st->peer_state, "connected");
	ck_assert_uint_eq(st->last_committed, 1234);
	ck_assert_uint_eq(st->interval_ms, 100);
	ck_assert_uint_eq(st->min_interval_ms, 1);
	ck_assert_double_eq(st->dirty_pages_per_s, 1520.5);
	ck_assert_double_eq(st->bytes_per_s, 6225920);
	ck_assert_str_eq(st->guest, "kv");
	ck_assert_str_eq(st->tracking, "uffd-wp");
	ck_assert_uint_eq(st->uptime_ms, 3723400);
	ck_assert_str_eq(st->encodings, "delta,lz4,zero");
	ck_assert_uint_eq(st->n_phases, 2);
	ck_assert_str_eq(st->phases[0]->phase, "pause");
	ck_assert_double_eq(st->phases[0]->p50_us, 12.5);
	ck_assert_double_eq(st->phases[0]->p99_us, 40.25);
	ck_assert_uint_eq(st->phases[0]->count, 1000);
	ck_assert_str_eq(st->phases[1]->phase, "send");
	ck_assert_uint_eq(st->phases[1]->count, 999);
}

static void status_ok(void)
{
	Colo__ControlResponse *r = call(COLO__CONTROL_REQUEST__CMD_STATUS, 1);

	check_status(r);
	colo__control_response__free_unpacked(r, NULL);
}

static void path_sa(struct sockaddr_un *sa)
{
	size_t n = strlen(fx.path);

	ck_assert_uint_lt(n, sizeof(sa->sun_path));
	memcpy(sa->sun_path, fx.path, n + 1);
}

static int raw_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 2 };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	path_sa(&sa);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	/* A server that fails to answer fails the test, not hangs it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Frame a request into buf; returns its length. */
static size_t frame_request(uint8_t *buf, size_t size, Colo__ControlRequest__CmdCase cmd)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest status = COLO__STATUS_REQUEST__INIT;
	Colo__CheckpointRequest cp = COLO__CHECKPOINT_REQUEST__INIT;
	Colo__FailoverRequest fo = COLO__FAILOVER_REQUEST__INIT;
	Colo__VerifyRequest v = COLO__VERIFY_REQUEST__INIT;
	size_t len;

	req.version = COLO_CTL_VERSION;
	req.cmd_case = cmd;
	if (cmd == COLO__CONTROL_REQUEST__CMD_STATUS)
		req.status = &status;
	else if (cmd == COLO__CONTROL_REQUEST__CMD_CHECKPOINT)
		req.checkpoint = &cp;
	else if (cmd == COLO__CONTROL_REQUEST__CMD_VERIFY)
		req.verify = &v;
	else
		req.failover = &fo;
	len = colo__control_request__get_packed_size(&req);
	ck_assert_uint_le(len + 4, size);
	buf[0] = buf[1] = buf[2] = 0;
	buf[3] = (uint8_t)len;
	colo__control_request__pack(&req, buf + 4);
	return len + 4;
}

static void raw_send_request(int fd, Colo__ControlRequest__CmdCase cmd)
{
	uint8_t buf[64];

	raw_send(fd, buf, frame_request(buf, sizeof(buf), cmd));
}

static void raw_recv_all(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = recv(fd, p, n, 0);

		ck_assert_msg(r > 0, "recv: %zd (%s)", r, r < 0 ? strerror(errno) : "EOF");
		p += r;
		n -= (size_t)r;
	}
}

static Colo__ControlResponse *raw_recv_response(int fd)
{
	Colo__ControlResponse *r;
	uint8_t hdr[4], *body;
	uint32_t len;

	raw_recv_all(fd, hdr, 4);
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	ck_assert_uint_gt(len, 0);
	ck_assert_uint_le(len, COLO_CTL_MAX_FRAME);
	body = malloc(len);
	ck_assert_ptr_nonnull(body);
	raw_recv_all(fd, body, len);
	r = colo__control_response__unpack(NULL, len, body);
	free(body);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->version, COLO_CTL_VERSION);
	return r;
}

/* Closed by the server: EOF, or ECONNRESET if it left our bytes unread. */
static void expect_eof(int fd)
{
	ssize_t r;
	char c;

	r = recv(fd, &c, 1, 0);
	ck_assert_msg(r == 0 || (r < 0 && errno == ECONNRESET), "recv: %zd (%s)", r,
		      r < 0 ? strerror(errno) : "data");
}

static int checkpoints_answered(void)
{
	int n;

	uv_mutex_lock(&fx.lock);
	n = fx.checkpoints_answered;
	uv_mutex_unlock(&fx.lock);
	return n;
}

static bool cond_checkpoint_answered(void *ud)
{
	(void)ud;
	return checkpoints_answered() > 0;
}

/* ---- tests ---- */

START_TEST(status_round_trip)
{
	server_start();
	status_ok();
}
END_TEST

/* The handler answers from a timer, later: the reply is the timer's. */
START_TEST(deferred_reply)
{
	Colo__ControlResponse *r;

	server_start();
	ck_assert_int_eq(checkpoints_answered(), 0);
	r = call(COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 1);
	ck_assert_int_eq(checkpoints_answered(), 1);
	ck_assert(r->ok);
	ck_assert_int_eq(r->result_case, COLO__CONTROL_RESPONSE__RESULT_MESSAGE);
	ck_assert_str_eq(r->message, "checkpoint 42 committed");
	colo__control_response__free_unpacked(r, NULL);
}
END_TEST

START_TEST(refused_request)
{
	Colo__ControlResponse *r;

	server_start();
	r = call(COLO__CONTROL_REQUEST__CMD_FAILOVER, 1);
	ck_assert(!r->ok);
	ck_assert_str_eq(r->error, "not a secondary");
	ck_assert_int_eq(r->result_case, COLO__CONTROL_RESPONSE__RESULT__NOT_SET);
	colo__control_response__free_unpacked(r, NULL);
}
END_TEST

/* Sent in one write; the deferred first one still answers first. */
START_TEST(several_requests_in_order)
{
	Colo__ControlResponse *r;
	int fd;

	server_start();
	fd = raw_connect();
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_CHECKPOINT);
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_STATUS);
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_FAILOVER);
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_CHECKPOINT);

	r = raw_recv_response(fd);
	ck_assert(r->ok);
	ck_assert_str_eq(r->message, "checkpoint 42 committed");
	colo__control_response__free_unpacked(r, NULL);
	r = raw_recv_response(fd);
	check_status(r);
	colo__control_response__free_unpacked(r, NULL);
	r = raw_recv_response(fd);
	ck_assert(!r->ok);
	ck_assert_str_eq(r->error, "not a secondary");
	colo__control_response__free_unpacked(r, NULL);
	r = raw_recv_response(fd);
	ck_assert_str_eq(r->message, "checkpoint 42 committed");
	colo__control_response__free_unpacked(r, NULL);

	/* And later requests on the same connection. */
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_STATUS);
	r = raw_recv_response(fd);
	check_status(r);
	colo__control_response__free_unpacked(r, NULL);
	close(fd);
}
END_TEST

static const struct {
	const char *name;
	const uint8_t *bytes;
	size_t len;
	const char *error;
} garbage[] = {
	{ "length 0", (const uint8_t *)"\0\0\0\0", 4,
	  "control frame of 0 bytes: a ControlRequest is 1 to 1048576 bytes" },
	{ "length 2 GiB", (const uint8_t *)"\x80\0\0\0", 4,
	  "control frame of 2147483648 bytes: a ControlRequest is 1 to 1048576 bytes" },
	{ "not protobuf", (const uint8_t *)"\0\0\0\x03\xff\xff\xff", 7,
	  "control frame of 3 bytes is not a ControlRequest" },
	{ "an HTTP request", (const uint8_t *)"GET / HTTP/1.0\r\n\r\n", 18,
	  "control frame of 1195725856 bytes: a ControlRequest is 1 to 1048576 bytes" },
};

START_TEST(garbage_frame)
{
	Colo__ControlResponse *r;
	uint8_t buf[128];
	size_t n = garbage[_i].len;
	int fd, other;

	server_start();
	other = raw_connect();
	fd = raw_connect();
	/* In the same write, a good request after the bad frame: never served. */
	memcpy(buf, garbage[_i].bytes, n);
	n += frame_request(buf + n, sizeof(buf) - n, COLO__CONTROL_REQUEST__CMD_STATUS);
	raw_send(fd, buf, n);
	r = raw_recv_response(fd);
	ck_assert_msg(!r->ok, "%s", garbage[_i].name);
	ck_assert_str_eq(r->error, garbage[_i].error);
	colo__control_response__free_unpacked(r, NULL);
	expect_eof(fd);
	close(fd);

	/* Others are still served: a connection open before, and a new one. */
	raw_send_request(other, COLO__CONTROL_REQUEST__CMD_STATUS);
	r = raw_recv_response(other);
	check_status(r);
	colo__control_response__free_unpacked(r, NULL);
	close(other);
	status_ok();
	uv_mutex_lock(&fx.lock);
	ck_assert_msg(strstr(fx.last_log, garbage[_i].error) != NULL, "log: %s", fx.last_log);
	uv_mutex_unlock(&fx.lock);
}
END_TEST

START_TEST(version_refused)
{
	Colo__ControlResponse *r;
	int fd;
	/* version 2, status: what a newer colo-ctl would send */
	static const uint8_t v2[] = { 0, 0, 0, 4, 0x08, 0x02, 0x12, 0x00 };

	server_start();
	r = call(COLO__CONTROL_REQUEST__CMD_STATUS, 2);
	ck_assert(!r->ok);
	ck_assert_str_eq(r->error, "control protocol version 2, this node speaks 1");
	colo__control_response__free_unpacked(r, NULL);

	/* The connection stays usable after a refused version. */
	fd = raw_connect();
	raw_send(fd, v2, sizeof(v2));
	r = raw_recv_response(fd);
	ck_assert_str_eq(r->error, "control protocol version 2, this node speaks 1");
	colo__control_response__free_unpacked(r, NULL);
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_STATUS);
	r = raw_recv_response(fd);
	check_status(r);
	colo__control_response__free_unpacked(r, NULL);
	close(fd);

	/* Version 0: a client that forgot to set it. */
	r = call(COLO__CONTROL_REQUEST__CMD_STATUS, 0);
	ck_assert_str_eq(r->error, "control protocol version 0, this node speaks 1");
	colo__control_response__free_unpacked(r, NULL);
}
END_TEST

START_TEST(file_modes)
{
	char dir[256];
	struct stat st;

	set_path("run/colo/n.sock");
	server_start();
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	snprintf(dir, sizeof(dir), "%s/run/colo", fx.dir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	snprintf(dir, sizeof(dir), "%s/run", fx.dir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0700);
	status_ok();
}
END_TEST

START_TEST(second_server_refused)
{
	struct colo_ctl_server *srv2 = NULL;
	struct colo_err err;
	char want[400];
	uv_loop_t loop2;

	server_start();
	ck_assert_int_eq(uv_loop_init(&loop2), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_server_start(&loop2, fx.path, handler, &fx, &srv2, &err),
			 -EADDRINUSE);
	ck_assert_ptr_null(srv2);
	snprintf(want, sizeof(want), "control socket %s is in use by another process", fx.path);
	ck_assert_str_eq(err.msg, want);
	ck_assert_int_eq(uv_loop_close(&loop2), 0);
	/* The first one still serves, from the same file. */
	status_ok();
}
END_TEST

START_TEST(not_a_socket_refused)
{
	struct colo_ctl_server *srv2 = NULL;
	struct colo_err err;
	char want[400];
	uv_loop_t loop2;

	ck_assert_int_eq(colo_test_write_file(fx.path, "x", 1), 0);
	ck_assert_int_eq(uv_loop_init(&loop2), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_server_start(&loop2, fx.path, handler, &fx, &srv2, &err),
			 -EEXIST);
	snprintf(want, sizeof(want), "%s exists and is not a socket", fx.path);
	ck_assert_str_eq(err.msg, want);
	ck_assert_int_eq(uv_loop_close(&loop2), 0);
}
END_TEST

START_TEST(stale_socket_replaced)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	/* What a node killed with SIGKILL leaves: a socket file, no listener. */
	path_sa(&sa);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	server_start();
	status_ok();
}
END_TEST

START_TEST(stop_unlinks)
{
	struct stat st;

	server_start();
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	server_stop();
	ck_assert_int_eq(lstat(fx.path, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

/* A successor's socket at the same path is not ours to remove. */
START_TEST(stop_leaves_a_successors_socket)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	server_start();
	ck_assert_int_eq(unlink(fx.path), 0);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	path_sa(&sa);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	server_stop();
	ck_assert_int_eq(lstat(fx.path, &st), 0);
	close(fd);
}
END_TEST

START_TEST(client_goes_away_before_deferred_reply)
{
	int fd;

	server_start();
	fd = raw_connect();
	raw_send_request(fd, COLO__CONTROL_REQUEST__CMD_CHECKPOINT);
	close(fd);
	/* The reply finds no client (ASan watches); the server carries on. */
	ck_assert(colo_test_wait(cond_checkpoint_answered, NULL, 5000));
	ck_assert_int_eq(checkpoints_answered(), 1);
	status_ok();
}
END_TEST

START_TEST(stop_with_requests_outstanding)
{
	int fd1, fd2;

	server_start();
	fd1 = raw_connect();
	fd2 = raw_connect();
	raw_send_request(fd1, COLO__CONTROL_REQUEST__CMD_STATUS);
	raw_send_request(fd1, COLO__CONTROL_REQUEST__CMD_VERIFY);
	colo__control_response__free_unpacked(raw_recv_response(fd1), NULL);
	/* fd1 waits for its verify, fd2 sent nothing: stop closes both. */
	server_stop();
	expect_eof(fd1);
	expect_eof(fd2);
	close(fd1);
	close(fd2);
}
END_TEST

START_TEST(client_timeout)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__VerifyRequest v = COLO__VERIFY_REQUEST__INIT;
	Colo__ControlResponse *resp = (void *)&req;
	struct colo_err err;
	char want[400];

	server_start();
	req.version = COLO_CTL_VERSION;
	req.cmd_case = COLO__CONTROL_REQUEST__CMD_VERIFY;
	req.verify = &v;
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_call(fx.path, &req, &resp, 100, &err), -ETIMEDOUT);
	ck_assert_ptr_null(resp);
	snprintf(want, sizeof(want), "no reply from %s within 100 ms", fx.path);
	ck_assert_str_eq(err.msg, want);
}
END_TEST

START_TEST(client_missing_socket)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest s = COLO__STATUS_REQUEST__INIT;
	Colo__ControlResponse *resp;
	struct colo_err err;
	char want[400];

	req.version = COLO_CTL_VERSION;
	req.cmd_case = COLO__CONTROL_REQUEST__CMD_STATUS;
	req.status = &s;
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_call(fx.path, &req, &resp, 1000, &err), -ENOENT);
	snprintf(want, sizeof(want),
		 "cannot connect to %s: No such file or directory (is the node running?)",
		 fx.path);
	ck_assert_str_eq(err.msg, want);
}
END_TEST

/* A fake server that reads the request, then misbehaves. */
static int fake_mode;
static int fake_listener;

static void fake_server(void *arg)
{
	uint8_t buf[256];
	int fd;

	(void)arg;
	fd = accept(fake_listener, NULL, NULL);
	if (fd < 0)
		return;
	(void)!recv(fd, buf, sizeof(buf), 0);
	if (fake_mode == 1)
		(void)!send(fd, "\x7f\0\0\0", 4, MSG_NOSIGNAL);            /* 2 GiB */
	else if (fake_mode == 2)
		(void)!send(fd, "\0\0\0\x02\xff\xff", 6, MSG_NOSIGNAL);    /* not protobuf */
	close(fd);
}

START_TEST(client_bad_replies)
{
	static const char *const want[] = {
		"%s closed the connection before replying",
		"bad reply from %s: a frame of 2130706432 bytes (expected 1 to 1048576)",
		"bad reply from %s: 2 bytes that are not a ControlResponse",
	};
	static const int codes[] = { -ECONNRESET, -EBADMSG, -EBADMSG };
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest s = COLO__STATUS_REQUEST__INIT;
	Colo__ControlResponse *resp;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct colo_err err;
	uv_thread_t th;
	char msg[400];

	path_sa(&sa);
	fake_listener = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(bind(fake_listener, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fake_listener, 4), 0);
	req.version = COLO_CTL_VERSION;
	req.cmd_case = COLO__CONTROL_REQUEST__CMD_STATUS;
	req.status = &s;
	fake_mode = _i;
	ck_assert_int_eq(uv_thread_create(&th, fake_server, NULL), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_call(fx.path, &req, &resp, 2000, &err), codes[_i]);
	uv_thread_join(&th);
	close(fake_listener);
	snprintf(msg, sizeof(msg), want[_i], fx.path);
	ck_assert_str_eq(err.msg, msg);
}
END_TEST

START_TEST(client_path_too_long)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__ControlResponse *resp;
	struct colo_ctl_server *srv = NULL;
	struct colo_err err;
	char path[200];
	uv_loop_t loop2;

	memset(path, 'x', sizeof(path));
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_call(path, &req, &resp, 100, &err), -ENAMETOOLONG);
	ck_assert_ptr_nonnull(strstr(err.msg, "is too long (199 bytes, at most 107)"));
	ck_assert_int_eq(uv_loop_init(&loop2), 0);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_server_start(&loop2, path, handler, &fx, &srv, &err),
			 -ENAMETOOLONG);
	ck_assert_int_eq(uv_loop_close(&loop2), 0);
}
END_TEST

START_TEST(peer_uid_check)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_check_peer(1000, 42, 1000, &err), 0);
	ck_assert_int_eq(colo_ctl_check_peer(0, 42, 1000, &err), 0);
	ck_assert_int_eq(colo_ctl_check_peer(0, 42, 0, &err), 0);
	ck_assert(!colo_err_isset(&err));
	ck_assert_int_eq(colo_ctl_check_peer(1001, 4242, 1000, &err), -EPERM);
	ck_assert_str_eq(err.msg,
			 "peer uid 1001 (pid 4242) is neither the node's uid 1000 nor root");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_ctl_check_peer(1000, 7, 0, &err), -EPERM);
	ck_assert_str_eq(err.msg, "peer uid 1000 (pid 7) is neither the node's uid 0 nor root");
}
END_TEST

/*
 * As root: open the socket's permissions, connect as nobody, and see the
 * server's SO_PEERCRED check close the connection and log why.
 */
START_TEST(peer_uid_refused_live)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest s = COLO__STATUS_REQUEST__INIT;
	int status;
	pid_t pid;

	if (geteuid() != 0)
		colo_test_skip("needs root to connect as another user");
	server_start();
	ck_assert_int_eq(chmod(fx.dir, 0755), 0);
	ck_assert_int_eq(chmod(fx.path, 0666), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		Colo__ControlResponse *resp;
		struct colo_err err;
		char want[400];
		int rc;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(3);
		req.version = COLO_CTL_VERSION;
		req.cmd_case = COLO__CONTROL_REQUEST__CMD_STATUS;
		req.status = &s;
		colo_err_clear(&err);
		rc = colo_ctl_call(fx.path, &req, &resp, 2000, &err);
		snprintf(want, sizeof(want), "%s closed the connection before replying",
			 fx.path);
		_exit(rc == -ECONNRESET && strcmp(err.msg, want) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	uv_mutex_lock(&fx.lock);
	ck_assert_msg(strstr(fx.last_log, "refused: peer uid 65534 (pid ") != NULL &&
		      strstr(fx.last_log, ") is neither the node's uid 0 nor root") != NULL,
		      "log: %s", fx.last_log);
	uv_mutex_unlock(&fx.lock);
	status_ok();
}
END_TEST

START_TEST(default_path)
{
	char buf[256], want[256];
	const char *old = getenv("XDG_RUNTIME_DIR");
	char *saved = old ? strdup(old) : NULL;

	setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
	ck_assert_int_eq(colo_ctl_default_path("b", buf, sizeof(buf)), 0);
	if (geteuid() == 0)
		snprintf(want, sizeof(want), "/run/colo/b.sock");
	else
		snprintf(want, sizeof(want), "/run/user/1000/colo/b.sock");
	ck_assert_str_eq(buf, want);
	unsetenv("XDG_RUNTIME_DIR");
	ck_assert_int_eq(colo_ctl_default_path("b", buf, sizeof(buf)), 0);
	if (geteuid() != 0)
		snprintf(want, sizeof(want), "/tmp/colo-%lu/b.sock", (unsigned long)geteuid());
	ck_assert_str_eq(buf, want);
	ck_assert_int_eq(colo_ctl_default_path("b", buf, 8), -ENAMETOOLONG);
	if (saved) {
		setenv("XDG_RUNTIME_DIR", saved, 1);
		free(saved);
	}
}
END_TEST

static Suite *ctl_suite(void)
{
	Suite *s = suite_create("ctl");
	TCase *tc = tcase_create("server");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, status_round_trip);
	tcase_add_test(tc, deferred_reply);
	tcase_add_test(tc, refused_request);
	tcase_add_test(tc, several_requests_in_order);
	tcase_add_loop_test(tc, garbage_frame, 0, (int)(sizeof(garbage) / sizeof(garbage[0])));
	tcase_add_test(tc, version_refused);
	tcase_add_test(tc, file_modes);
	tcase_add_test(tc, second_server_refused);
	tcase_add_test(tc, not_a_socket_refused);
	tcase_add_test(tc, stale_socket_replaced);
	tcase_add_test(tc, stop_unlinks);
	tcase_add_test(tc, stop_leaves_a_successors_socket);
	tcase_add_test(tc, client_goes_away_before_deferred_reply);
	tcase_add_test(tc, stop_with_requests_outstanding);
	tcase_add_test(tc, peer_uid_refused_live);
	suite_add_tcase(s, tc);

	tc = tcase_create("client");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, client_timeout);
	tcase_add_test(tc, client_missing_socket);
	tcase_add_loop_test(tc, client_bad_replies, 0, 3);
	tcase_add_test(tc, client_path_too_long);
	tcase_add_test(tc, peer_uid_check);
	tcase_add_test(tc, default_path);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	/* Like a daemon: a client hanging up must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	return colo_test_main(ctl_suite());
}
