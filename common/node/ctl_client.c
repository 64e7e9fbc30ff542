/*
 * ctl_client.c: the control socket's blocking client (colo_ctl_call(), see
 * ctl.h), for colo-ctl, tests and benches.  One call is one connection:
 * connect, send one request, read one response, all within one deadline
 * on the monotonic clock.  No state between calls: usable from any thread.
 */
#include "config.h"
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1            /* SOCK_CLOEXEC */
#endif

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "ctl.h"
#include "ctl_int.h"

/* Milliseconds left for poll(): -1 no limit, 0 expired. */
static int left_ms(int64_t deadline)
{
	int64_t d;

	if (deadline < 0)
		return -1;
	d = deadline - (int64_t)colo_now_ms();
	return d <= 0 ? 0 : d > INT32_MAX ? INT32_MAX : (int)d;
}

/* Wait for `ev` on fd: 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, short ev, int64_t deadline)
{
	struct pollfd pfd = { .fd = fd, .events = ev };
	int rc;

	for (;;) {
		int t = left_ms(deadline);

		if (t == 0)
			return 0;
		rc = poll(&pfd, 1, t);
		if (rc > 0)
			return 1;
		if (rc == 0)
			continue;       /* loop re-checks the deadline */
		if (errno != EINTR)
			return -errno;
	}
}

static int client_connect(int fd, const struct sockaddr_un *sa, int64_t deadline,
			  int timeout_ms, struct colo_err *err)
{
	const char *path = sa->sun_path;

	for (;;) {
		if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			/* Backlog full: unix sockets cannot be polled for it; retry. */
			if (left_ms(deadline) == 0)
				return colo_err_set(err, ETIMEDOUT,
						    "cannot connect to %s: no room in its backlog within %d ms",
						    path, timeout_ms);
			poll(NULL, 0, 10);
			continue;
		}
		if (errno == ENOENT || errno == ECONNREFUSED)
			return colo_err_set(err, errno,
					    "cannot connect to %s: %s (is the node running?)",
					    path, strerror(errno));
		return colo_err_set(err, errno, "cannot connect to %s: %s", path,
				    strerror(errno));
	}
}

static int client_send(int fd, const char *path, const uint8_t *p, size_t n,
		       int64_t deadline, int timeout_ms, struct colo_err *err)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		int rc;

		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EPIPE)
			return colo_err_set(err, ECONNRESET,
					    "%s closed the connection before replying", path);
		if (w < 0 && errno != EAGAIN)
			return colo_err_set(err, errno, "sending to %s: %s", path,
					    strerror(errno));
		rc = wait_fd(fd, POLLOUT, deadline);
		if (rc == 0)
			return colo_err_set(err, ETIMEDOUT,
					    "no reply from %s within %d ms", path, timeout_ms);
		if (rc < 0)
			return colo_err_set(err, -rc, "sending to %s: %s", path,
					    strerror(-rc));
	}
	return 0;
}

static int client_recv(int fd, const char *path, uint8_t *p, size_t n,
		       int64_t deadline, int timeout_ms, struct colo_err *err)
{
	while (n > 0) {
		ssize_t r = recv(fd, p, n, 0);
		int rc;

		if (r > 0) {
			p += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return colo_err_set(err, ECONNRESET,
					    "%s closed the connection before replying", path);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return colo_err_set(err, errno, "reading from %s: %s", path,
					    strerror(errno));
		rc = wait_fd(fd, POLLIN, deadline);
		if (rc == 0)
			return colo_err_set(err, ETIMEDOUT,
					    "no reply from %s within %d ms", path, timeout_ms);
		if (rc < 0)
			return colo_err_set(err, -rc, "reading from %s: %s", path,
					    strerror(-rc));
	}
	return 0;
}

int colo_ctl_call(const char *path, const Colo__ControlRequest *req,
		  Colo__ControlResponse **resp, int timeout_ms,
		  struct colo_err *err)
{
	int64_t deadline = timeout_ms > 0 ? (int64_t)colo_now_ms() + timeout_ms : -1;
	struct sockaddr_un sa;
	uint8_t *buf = NULL, hdr[4];
	size_t len;
	uint32_t rlen;
	int fd = -1, rc;

	*resp = NULL;
	rc = colo__ctl_sockaddr(&sa, path, err);
	if (rc)
		return rc;
	len = colo__control_request__get_packed_size(req);
	if (len > COLO_CTL_MAX_FRAME)
		return colo_err_set(err, EMSGSIZE,
				    "request of %zu bytes exceeds the limit of %u bytes",
				    len, COLO_CTL_MAX_FRAME);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return colo_err_set(err, errno, "socket: %s", strerror(errno));
	rc = client_connect(fd, &sa, deadline, timeout_ms, err);
	if (rc)
		goto out;
	buf = malloc(4 + len);
	if (!buf) {
		rc = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	colo_store_be32(buf, (uint32_t)len);
	colo__control_request__pack(req, buf + 4);
	rc = client_send(fd, path, buf, 4 + len, deadline, timeout_ms, err);
	free(buf);
	buf = NULL;
	if (rc)
		goto out;
	rc = client_recv(fd, path, hdr, 4, deadline, timeout_ms, err);
	if (rc)
		goto out;
	rlen = colo_load_be32(hdr);
	if (rlen == 0 || rlen > COLO_CTL_MAX_FRAME) {
		rc = colo_err_set(err, EBADMSG,
				  "bad reply from %s: a frame of %" PRIu32 " bytes (expected 1 to %u)",
				  path, rlen, COLO_CTL_MAX_FRAME);
		goto out;
	}
	buf = malloc(rlen);
	if (!buf) {
		rc = colo_err_set(err, ENOMEM, "out of memory");
		goto out;
	}
	rc = client_recv(fd, path, buf, rlen, deadline, timeout_ms, err);
	if (rc)
		goto out;
	*resp = colo__control_response__unpack(NULL, rlen, buf);
	if (!*resp)
		rc = colo_err_set(err, EBADMSG,
				  "bad reply from %s: %" PRIu32 " bytes that are not a ControlResponse",
				  path, rlen);
out:
	free(buf);
	close(fd);
	return rc;
}

