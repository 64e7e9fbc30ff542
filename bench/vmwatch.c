/*
 * vmwatch.c: colo-vmwatch, the end-to-end failover clock of bench/vm.sh.
 *
 *   colo-vmwatch QMP_SOCK PID [RAM_FILE]
 *
 * Connects to QMP_SOCK, a QMP socket of the bench's own in the secondary's
 * vm-args (tests/vmguest.h's boot-sector guest): the secondary's standby
 * QEMU serves it before the failover, and the same QEMU runs the VM after
 * it.  Then sends SIGKILL to PID (the primary's QEMU) and times, from that
 * kill, when the watched QEMU says "running" and when the guest's counter
 * first moves after that: the VM is not only started but executing.  The
 * clock is this process's, so the kill and the observations share it.
 *
 * With RAM_FILE (the secondary's vm-ram-path) the committed counter is read
 * from it just before the kill, and the counter the VM resumed from is
 * printed beside it: a VM that took over from its committed state resumes
 * at or above it.
 *
 * Prints one line of key=value pairs:
 *   running_ms=N moving_ms=N resumed=C committed=C
 * Exit 0, or 1 with a message when the VM did not run within 30 s, 2 on
 * usage errors.  The QMP connection is re-made if it drops (a secondary
 * whose standby QEMU had died starts another on the same socket path).
 * QEMU is not this program's: it only disconnects.  One thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "qmp.h"
#include "vmguest.h"

#define CONNECT_MS 10000
#define DEADLINE_MS 30000
#define CALL_MS 2000
#define POLL_US 1000 /* 1 ms resolution without keeping QEMU's loop busy */

static const char *sock_path;

/* Drop the connection (QEMU is not ours to stop) and connect again. */
static int reconnect(struct colo_qmp *q, int timeout_ms, struct colo_err *err)
{
	q->pid = 0;
	colo_qmp_free(q);
	colo_qmp_init(q);
	return colo_qmp_connect(q, sock_path, timeout_ms, err);
}

/* 1 running, 0 not yet, <0 no answer (the connection is re-made). */
static int vm_running(struct colo_qmp *q, struct colo_err *err)
{
	json_t *ret = NULL;
	const char *st;
	int r = colo_qmp_execute(q, "query-status", NULL, &ret, CALL_MS, err);

	if (r) {
		(void)reconnect(q, CALL_MS, err);
		return r;
	}
	st = json_string_value(json_object_get(ret, "status"));
	r = st && strcmp(st, "running") == 0;
	json_decref(ret);
	return r;
}

static int committed_counter(const char *path, uint64_t *c)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = pread(fd, c, sizeof(*c), COLO_VMGUEST_COUNTER_ADDR);
	close(fd);
	return n == (ssize_t)sizeof(*c) ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	struct colo_qmp q;
	struct colo_err err;
	uint64_t t0, deadline, t_run = 0, t_move = 0, committed = 0, resumed = 0, c;
	bool have_resumed = false;
	long pid;
	int r;

	if (argc < 3 || argc > 4 || (pid = strtol(argv[2], NULL, 10)) <= 1) {
		fprintf(stderr, "usage: colo-vmwatch QMP_SOCK PID [RAM_FILE]\n");
		return 2;
	}
	sock_path = argv[1];
	colo_err_clear(&err);
	colo_qmp_init(&q);
	if (colo_qmp_connect(&q, sock_path, CONNECT_MS, &err) != 0) {
		fprintf(stderr, "colo-vmwatch: %s\n", err.msg);
		colo_qmp_free(&q);
		return 1;
	}
	if (argc == 4 && (r = committed_counter(argv[3], &committed)) != 0) {
		fprintf(stderr, "colo-vmwatch: %s: %s\n", argv[3], strerror(-r));
		goto fail;
	}
	t0 = colo_now_ns();
	if (kill((pid_t)pid, SIGKILL) != 0) {
		fprintf(stderr, "colo-vmwatch: kill %ld: %s\n", pid, strerror(errno));
		goto fail;
	}
	deadline = colo_now_ms() + DEADLINE_MS;
	while (!t_run && colo_now_ms() < deadline) {
		colo_err_clear(&err); /* the last error is the one to show */
		if (vm_running(&q, &err) == 1)
			t_run = colo_now_ns();
		else
			usleep(POLL_US);
	}
	/* The counter the VM runs from, then the first tick after it. */
	while (t_run && !t_move && colo_now_ms() < deadline) {
		colo_err_clear(&err);
		if (colo_vmguest_qmp_counter(&q, &c, &err) != 0) {
			(void)reconnect(&q, CALL_MS, &err);
		} else if (!have_resumed) {
			resumed = c;
			have_resumed = true;
		} else if (c != resumed) {
			t_move = colo_now_ns();
			break;
		}
		usleep(POLL_US);
	}
	if (!t_move) {
		fprintf(stderr, "colo-vmwatch: the VM on %s was not %s %d ms after the kill%s%s\n",
			sock_path, t_run ? "ticking" : "running", DEADLINE_MS,
			err.msg[0] ? ": " : "", err.msg);
		goto fail;
	}
	printf("running_ms=%.1f moving_ms=%.1f resumed=%" PRIu64 " committed=%" PRIu64 "\n",
	       (double)(t_run - t0) / 1e6, (double)(t_move - t0) / 1e6, resumed, committed);
	q.pid = 0;
	colo_qmp_free(&q);
	return 0;
fail:
	q.pid = 0;
	colo_qmp_free(&q);
	return 1;
}
