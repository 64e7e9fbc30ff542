/*
 * node_notify.c: what a node tells the service manager that started it
 * (systemd's notify protocol), when NOTIFY_SOCKET is set: READY=1 once it
 * serves (the primary's guest runs, the secondary listens), STATUS= with
 * its role, state, peer and last committed checkpoint (on readiness, then
 * whenever it changes, looked at once a second), RELOADING=1 and READY=1
 * around a SIGHUP, STOPPING=1 when it stops, and WATCHDOG=1 from the loop
 * every half of WATCHDOG_USEC when the unit sets WatchdogSec: a loop that
 * stops turning stops the pings, and the manager restarts the node.
 * Without NOTIFY_SOCKET nothing runs.
 *
 * The datagrams are sent here, on a non-blocking socket, rather than with
 * libsystemd's sd_notify(): that one blocks while the manager's queue is
 * full (net.unix.max_dgram_qlen, 10 datagrams by default), and a node's
 * loop must not wait on its service manager (docs/operations.md).  A
 * datagram that finds the queue full is dropped (a ping or a status: the
 * next one says the same), except READY, RELOADING and STOPPING, which are
 * sent again once a second until one goes through.  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "node.h"
#include "node_int.h"

#define STATUS_EVERY_MS 1000

static const char *role_name(enum colo_role r)
{
	return r == COLO_ROLE_PRIMARY ? "primary" : "secondary";
}

/* "secondary protected, peer a (connected, alive), last committed 12,
 * generation 3" */
static void status_text(struct colo_node *n, char *out, size_t len)
{
	char state[64] = "", peer[128] = "", pstate[64] = "", enc[128] = "";
	uint64_t last = 0;

	if (!n->eops || !n->eops->status) {
		snprintf(out, len, "%s starting, generation %" PRIu64, role_name(n->role),
			 n->generation);
		return;
	}
	n->eops->status(n->engine, state, sizeof(state), peer, sizeof(peer), pstate,
			sizeof(pstate), &last, enc, sizeof(enc));
	if (!peer[0] || strcmp(peer, "-") == 0)
		snprintf(out, len, "%s %s, no peer, last committed %" PRIu64 ", generation %"
			 PRIu64, role_name(n->role), state, last, n->generation);
	else
		snprintf(out, len, "%s %s, peer %s (%s), last committed %" PRIu64
			 ", generation %" PRIu64, role_name(n->role), state, peer,
			 pstate[0] ? pstate : "unknown", last, n->generation);
}

/* One datagram; false when the manager's queue is full (or it is gone). */
static bool send_dgram(struct colo_node *n, const char *msg)
{
	ssize_t r;

	r = sendto(n->notify_fd, msg, strlen(msg), MSG_DONTWAIT | MSG_NOSIGNAL,
		   (struct sockaddr *)&n->notify_addr, n->notify_addr_len);
	if (r >= 0)
		return true;
	n->notify_dropped++;
	if (!n->notify_failed) {
		n->notify_failed = true;
		colo_log_warn("NOTIFY_SOCKET: the service manager takes no notification: %s "
			      "(dropped; READY, RELOADING and STOPPING are sent again)",
			      strerror(errno));
	}
	return false;
}

/* what ("READY=1", ...; "" for none) with the status; sent again later if
 * it must arrive and did not. */
static void send_state(struct colo_node *n, const char *what)
{
	char msg[sizeof(n->notify_status) + 80];

	status_text(n, n->notify_status, sizeof(n->notify_status));
	snprintf(msg, sizeof(msg), "%s%sSTATUS=%s", what, what[0] ? "\n" : "",
		 n->notify_status);
	if (!send_dgram(n, msg) && what[0])
		snprintf(n->notify_pending, sizeof(n->notify_pending), "%s", what);
	else if (what[0])
		n->notify_pending[0] = '\0';
}

static void on_status_timer(uv_timer_t *t)
{
	struct colo_node *n = t->data;
	char now[sizeof(n->notify_status)];

	if (n->notify_pending[0]) {
		char what[sizeof(n->notify_pending)];

		snprintf(what, sizeof(what), "%s", n->notify_pending);
		send_state(n, what);
		return;
	}
	status_text(n, now, sizeof(now));
	if (strcmp(now, n->notify_status) != 0)
		send_state(n, "");
}

static void on_watchdog(uv_timer_t *t)
{
	send_dgram(t->data, "WATCHDOG=1");
}

/* WATCHDOG_USEC (and WATCHDOG_PID, if set, naming this process): the
 * period in µs, or 0. */
static uint64_t watchdog_usec(void)
{
	const char *us = getenv("WATCHDOG_USEC"), *pid = getenv("WATCHDOG_PID");
	char *end;
	unsigned long long v;

	if (!us)
		return 0;
	if (pid) {
		errno = 0;
		v = strtoull(pid, &end, 10);
		if (errno || end == pid || *end || v != (unsigned long long)getpid())
			return 0;       /* meant for another process */
	}
	errno = 0;
	v = strtoull(us, &end, 10);
	if (errno || end == us || *end || v == 0) {
		colo_log_warn("WATCHDOG_USEC '%s' is not a positive number of microseconds: "
			      "no watchdog pings", us);
		return 0;
	}
	return v;
}

void colo__node_notify_start(struct colo_node *n)
{
	const char *path = getenv("NOTIFY_SOCKET");
	uint64_t usec;
	size_t len;

	n->notify_fd = -1;
	if (!path || !path[0])
		return;
	len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(n->notify_addr.sun_path)) {
		colo_log_warn("NOTIFY_SOCKET '%s' is not a socket path (absolute, or @ for an "
			      "abstract one, under %zu bytes): not notifying", path,
			      sizeof(n->notify_addr.sun_path));
		return;
	}
	memset(&n->notify_addr, 0, sizeof(n->notify_addr));
	n->notify_addr.sun_family = AF_UNIX;
	memcpy(n->notify_addr.sun_path, path, len);
	if (path[0] == '@')
		n->notify_addr.sun_path[0] = '\0';
	n->notify_addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
					 (path[0] == '/'));
	n->notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (n->notify_fd < 0) {
		colo_log_warn("NOTIFY_SOCKET: cannot make a socket: %s: not notifying",
			      strerror(errno));
		return;
	}
	n->notify_on = true;
	uv_timer_init(n->loop, &n->notify_timer);
	n->notify_timer.data = n;
	uv_timer_start(&n->notify_timer, on_status_timer, STATUS_EVERY_MS, STATUS_EVERY_MS);
	usec = watchdog_usec();
	if (usec) {
		uint64_t ms = usec / 2000 ? usec / 2000 : 1;

		n->notify_dog_on = true;
		uv_timer_init(n->loop, &n->notify_dog);
		n->notify_dog.data = n;
		uv_timer_start(&n->notify_dog, on_watchdog, 0, ms);
		colo_log_info("service manager watchdog: a ping every %" PRIu64 " ms "
			      "(WATCHDOG_USEC %" PRIu64 ")", ms, usec);
	}
}

void colo_node_notify_ready(struct colo_node *n)
{
	if (n->notify_on)
		send_state(n, "READY=1");
}

void colo__node_notify_reloading(struct colo_node *n)
{
	struct timespec ts;
	char what[80];

	if (!n->notify_on)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(what, sizeof(what), "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
		 (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
	send_state(n, what);
}

void colo__node_notify_stop(struct colo_node *n)
{
	if (!n->notify_on)
		return;
	send_state(n, "STOPPING=1");
	n->notify_on = false;
	uv_close((uv_handle_t *)&n->notify_timer, NULL);
	if (n->notify_dog_on) {
		n->notify_dog_on = false;
		uv_close((uv_handle_t *)&n->notify_dog, NULL);
	}
	close(n->notify_fd);
	n->notify_fd = -1;
}
