/* qmp.c: see qmp.h. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "qmp.h"

/* QEMU's replies are small; a larger backlog means something is wrong. */
#define QMP_INPUT_MAX (16u << 20)
#define QMP_POLL_MS 10

static int ms_left(long long deadline)
{
	long long left = deadline - (long long)colo_now_ms();

	return left < 0 ? 0 : (int)left;
}

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

char *colo_qmp_find_program(const char *name)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL, *found = NULL;

	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	copy = strdup(path);
	for (dir = copy ? strtok_r(copy, ":", &save) : NULL; dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		struct stat st;
		char *p;

		if (asprintf(&p, "%s/%s", *dir ? dir : ".", name) < 0)
			break;
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
			found = p;
		else
			free(p);
	}
	free(copy);
	return found;
}

void colo_qmp_init(struct colo_qmp *q)
{
	memset(q, 0, sizeof(*q));
	q->fd = -1;
}

static void disconnect(struct colo_qmp *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->inlen = 0;
}

void colo_qmp_free(struct colo_qmp *q)
{
	colo_qmp_stop(q, 5000);
	disconnect(q);
	free(q->in);
	json_decref(q->greeting);
	json_decref(q->events);
	colo_qmp_init(q);
}

int colo_qmp_start(struct colo_qmp *q, const char *path, const char *const argv[],
		   const char *log_path, struct colo_err *err)
{
	pid_t parent = getpid(), pid;
	int devnull, log, fork_errno;

	if (q->pid > 0)
		return colo_err_set(err, EBUSY, "a QEMU is already running (pid %ld)",
				    (long)q->pid);
	/* Everything the child needs is made before fork: between fork and
	 * exec it only calls async-signal-safe functions. */
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0)
		return colo_err_set(err, errno, "/dev/null: %s", strerror(errno));
	log = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (log < 0) {
		int e = errno;

		close(devnull);
		return colo_err_set(err, e, "%s: %s", log_path, strerror(e));
	}
	pid = fork();
	if (pid == 0) {
		/* Die with the test process, even when it is SIGKILLed. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		if (dup2(devnull, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
			_exit(127);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	fork_errno = errno;
	close(devnull);
	close(log);
	if (pid < 0)
		return colo_err_set(err, fork_errno, "fork: %s", strerror(fork_errno));
	q->pid = pid;
	q->reaped = false;
	q->status = 0;
	return 0;
}

static bool reap(struct colo_qmp *q, int flags)
{
	int st;
	pid_t r;

	if (q->pid <= 0)
		return q->reaped;
	do
		r = waitpid(q->pid, &st, flags);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	/* r < 0 (ECHILD) cannot happen for our own child unless someone
	 * else reaped it: treat it as gone, there is nothing left to kill. */
	q->status = r > 0 ? st : 0;
	q->reaped = true;
	q->pid = 0;
	return true;
}

bool colo_qmp_exited(struct colo_qmp *q)
{
	return reap(q, WNOHANG);
}

bool colo_qmp_wait_exit(struct colo_qmp *q, int timeout_ms)
{
	long long deadline = (long long)colo_now_ms() + timeout_ms;

	for (;;) {
		if (reap(q, WNOHANG))
			return true;
		if ((long long)colo_now_ms() >= deadline)
			return false;
		sleep_ms(QMP_POLL_MS);
	}
}

const char *colo_qmp_describe_exit(const struct colo_qmp *q, char *buf, size_t n)
{
	if (!q->reaped)
		snprintf(buf, n, "still running");
	else if (WIFEXITED(q->status))
		snprintf(buf, n, "exited with status %d", WEXITSTATUS(q->status));
	else if (WIFSIGNALED(q->status))
		snprintf(buf, n, "killed by signal %d", WTERMSIG(q->status));
	else
		snprintf(buf, n, "ended with wait status 0x%x", (unsigned)q->status);
	return buf;
}

/* The connection is gone: say how QEMU ended, giving it a moment to. */
static int lost(struct colo_qmp *q, const char *what, struct colo_err *err)
{
	char how[64];

	disconnect(q);
	colo_qmp_wait_exit(q, 2000);
	return colo_err_set(err, ECONNRESET, "QMP connection lost %s: QEMU %s", what,
			    colo_qmp_describe_exit(q, how, sizeof(how)));
}

/* One message (a line of JSON); empty lines are skipped. */
static int read_message(struct colo_qmp *q, long long deadline, json_t **msg,
			struct colo_err *err)
{
	for (;;) {
		char *nl = q->in ? memchr(q->in, '\n', q->inlen) : NULL;
		struct pollfd pfd = { q->fd, POLLIN, 0 };
		json_error_t jerr;
		ssize_t got;
		int r;

		if (nl) {
			size_t line = (size_t)(nl - q->in), len = line;

			/* QEMU ends its lines with "\r\n". */
			if (len && q->in[len - 1] == '\r')
				len--;
			*msg = len ? json_loadb(q->in, len, 0, &jerr) : NULL;
			memmove(q->in, nl + 1, q->inlen - line - 1);
			q->inlen -= line + 1;
			if (!len)
				continue;
			if (!*msg || !json_is_object(*msg)) {
				json_decref(*msg);
				*msg = NULL;
				return colo_err_set(err, EPROTO, "QMP sent a line that "
						    "is no JSON object: %s", jerr.text);
			}
			return 0;
		}
		if (q->inlen == q->incap) {
			size_t cap = q->incap ? q->incap * 2 : 4096;
			char *p;

			if (cap > QMP_INPUT_MAX)
				return colo_err_set(err, E2BIG, "QMP sent a line of "
						    "more than %u bytes", QMP_INPUT_MAX);
			p = realloc(q->in, cap);
			if (!p)
				return colo_err_set(err, ENOMEM, "out of memory");
			q->in = p;
			q->incap = cap;
		}
		r = poll(&pfd, 1, ms_left(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return colo_err_set(err, errno, "poll: %s", strerror(errno));
		if (r == 0)
			return colo_err_set(err, ETIMEDOUT, "no answer from QMP in time");
		got = recv(q->fd, q->in + q->inlen, q->incap - q->inlen, 0);
		if (got < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (got < 0 && errno != ECONNRESET)
			return colo_err_set(err, errno, "QMP read: %s", strerror(errno));
		if (got <= 0)
			return lost(q, "while reading", err);
		q->inlen += (size_t)got;
	}
}

static int send_all(struct colo_qmp *q, const char *s, size_t len, long long deadline,
		    struct colo_err *err)
{
	while (len) {
		struct pollfd pfd = { q->fd, POLLOUT, 0 };
		/* MSG_NOSIGNAL: a QEMU that went away must not SIGPIPE the test. */
		ssize_t n = send(q->fd, s, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n > 0) {
			s += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EPIPE)
			return lost(q, "while writing", err);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return colo_err_set(err, errno, "QMP write: %s", strerror(errno));
		if (poll(&pfd, 1, ms_left(deadline)) == 0)
			return colo_err_set(err, ETIMEDOUT, "QMP socket not writable in time");
	}
	return 0;
}

static int try_connect(const char *path, int *fd)
{
	struct sockaddr_un sa;
	int s;

	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;

		close(s);
		return -e;
	}
	*fd = s;
	return 0;
}

int colo_unix_connect(const char *path, int timeout_ms, struct colo_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	long long deadline = (long long)colo_now_ms() + timeout_ms;

	if (strlen(path) >= sizeof(sa.sun_path))
		return colo_err_set(err, ENAMETOOLONG, "%s: too long for a unix socket", path);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	for (;;) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0)
			return colo_err_set(err, errno, "socket: %s", strerror(errno));
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			return fd;
		close(fd);
		if (ms_left(deadline) == 0)
			return colo_err_set(err, ETIMEDOUT, "cannot connect to %s: %s", path,
					    strerror(errno));
		sleep_ms(2);
	}
}

int colo_qmp_connect(struct colo_qmp *q, const char *sock_path, int timeout_ms,
		     struct colo_err *err)
{
	long long deadline = (long long)colo_now_ms() + timeout_ms;
	json_t *msg = NULL;
	int r;

	if (strlen(sock_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return colo_err_set(err, ENAMETOOLONG, "socket path too long: %s", sock_path);
	disconnect(q);
	/* QEMU creates the socket during start-up: retry until it listens,
	 * and stop early if QEMU exits instead. */
	while ((r = try_connect(sock_path, &q->fd)) < 0) {
		char how[64];

		if (r != -ENOENT && r != -ECONNREFUSED)
			return colo_err_set(err, -r, "connect %s: %s", sock_path,
					    strerror(-r));
		if (colo_qmp_exited(q))
			return colo_err_set(err, ECONNREFUSED, "QEMU %s before its "
					    "QMP socket accepted a connection",
					    colo_qmp_describe_exit(q, how, sizeof(how)));
		if ((long long)colo_now_ms() >= deadline)
			return colo_err_set(err, ETIMEDOUT, "QMP socket %s: no "
					    "connection within %d ms", sock_path,
					    timeout_ms);
		sleep_ms(QMP_POLL_MS);
	}
	if ((r = read_message(q, deadline, &msg, err)))
		return r;
	if (!json_is_object(json_object_get(msg, "QMP"))) {
		json_decref(msg);
		disconnect(q);
		return colo_err_set(err, EPROTO, "QMP greeting expected");
	}
	json_decref(q->greeting);
	q->greeting = msg;
	return colo_qmp_execute(q, "qmp_capabilities", NULL, NULL, ms_left(deadline) + 1,
				err);
}

int colo_qmp_execute(struct colo_qmp *q, const char *cmd, json_t *args, json_t **ret,
		     int timeout_ms, struct colo_err *err)
{
	long long deadline = (long long)colo_now_ms() + timeout_ms;
	json_t *req = json_object(), *msg;
	char *line;
	int r;

	if (ret)
		*ret = NULL;
	json_object_set_new(req, "execute", json_string(cmd));
	if (args)
		json_object_set_new(req, "arguments", args);
	line = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!line)
		return colo_err_set(err, ENOMEM, "out of memory");
	if (q->fd < 0) {
		free(line);
		return colo_err_set(err, ENOTCONN, "QMP is not connected");
	}
	r = send_all(q, line, strlen(line), deadline, err);
	free(line);
	if (r == 0)
		r = send_all(q, "\n", 1, deadline, err);
	while (r == 0 && (r = read_message(q, deadline, &msg, err)) == 0) {
		json_t *v, *e = json_object_get(msg, "error");

		if (json_object_get(msg, "event")) {
			if (!q->events)
				q->events = json_array();
			json_array_append_new(q->events, msg);
			continue;
		}
		if ((v = json_object_get(msg, "return"))) {
			if (ret)
				*ret = json_incref(v);
			json_decref(msg);
			return 0;
		}
		if (json_is_object(e))
			r = colo_err_set(err, EREMOTEIO, "%s: %s",
					 json_string_value(json_object_get(e, "class")),
					 json_string_value(json_object_get(e, "desc")));
		else
			r = colo_err_set(err, EPROTO, "unexpected QMP message");
		json_decref(msg);
	}
	colo_err_prefix(err, "QMP %s", cmd);
	return r;
}

int colo_qmp_stop(struct colo_qmp *q, int timeout_ms)
{
	struct colo_err err;

	if (q->pid <= 0) {
		disconnect(q);
		return 0;
	}
	colo_err_clear(&err);
	if (q->fd < 0 || colo_qmp_execute(q, "quit", NULL, NULL, timeout_ms, &err) < 0) {
		/* A lost connection may have reaped QEMU already: never pass
		 * pid 0 to kill(), that would signal the whole group. */
		if (q->pid > 0)
			kill(q->pid, SIGTERM);
	}
	disconnect(q);
	if (colo_qmp_wait_exit(q, timeout_ms))
		return 0;
	kill(q->pid, SIGKILL);
	reap(q, 0);
	return -ETIMEDOUT;
}
