/*
 * qmp.h: a small QMP client: start QEMU,
 * talk to its QMP socket, stop it.
 *
 * colo_qmp_start() forks and execs QEMU (stdin from /dev/null, stdout and
 * stderr into a log file the caller names) and keeps its pid.
 * colo_qmp_connect() waits, up to a deadline, for the QMP unix socket, reads
 * the greeting and leaves capability negotiation mode.  colo_qmp_execute()
 * sends one command and returns its "return" value, or its error as a
 * message; asynchronous events that arrive meanwhile are kept, in order, in
 * q->events.  colo_qmp_stop() ends QEMU by its own pid: "quit", a bounded
 * waitpid, then SIGKILL and waitpid.  Every call that waits has a timeout.
 *
 * A QEMU whose test process dies without stopping it (a Check timeout
 * SIGKILLs the test) gets SIGKILL too: it is started with PR_SET_PDEATHSIG.
 *
 * struct colo_qmp owns its socket, input buffer, greeting and events;
 * colo_qmp_free() stops QEMU if it still runs and releases them.  One thread.
 */
#ifndef COLO_GUESTS_QMP_H
#define COLO_GUESTS_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "err.h"

struct colo_qmp {
	pid_t pid;              /* QEMU until it is reaped, then 0 */
	bool reaped;            /* status is valid */
	int status;             /* wait status of QEMU once reaped */
	int fd;                 /* QMP socket, -1 when not connected */
	char *in;               /* bytes received, not yet parsed */
	size_t inlen, incap;
	json_t *greeting;       /* {"QMP": {...}} once connected */
	json_t *events;         /* array of the events received so far */
};

/* The path of an executable `name` on $PATH (malloc'd), or NULL. */
char *colo_qmp_find_program(const char *name);

void colo_qmp_init(struct colo_qmp *q);
/* Stop QEMU if it runs (colo_qmp_stop) and free what q holds. */
void colo_qmp_free(struct colo_qmp *q);

/* Start `path` with argv (argv[0] included, NULL-terminated). */
int colo_qmp_start(struct colo_qmp *q, const char *path, const char *const argv[],
		   const char *log_path, struct colo_err *err);

/* Connect to QEMU's QMP socket, read the greeting, run qmp_capabilities. */
int colo_qmp_connect(struct colo_qmp *q, const char *sock_path, int timeout_ms,
		     struct colo_err *err);

/*
 * Execute cmd with args (a JSON object, reference stolen; may be NULL).
 * On success *ret (when not NULL) gets a new reference to the "return"
 * value.  A QMP error returns -EREMOTEIO with "CLASS: desc" in err; a lost
 * connection -ECONNRESET, naming how QEMU ended if it did.
 */
int colo_qmp_execute(struct colo_qmp *q, const char *cmd, json_t *args, json_t **ret,
		     int timeout_ms, struct colo_err *err);

/*
 * Connect to a unix stream socket that may not exist yet (QEMU's listening
 * socket for an incoming migration): retries every 2 ms up to timeout_ms.
 * The descriptor (CLOEXEC), or a negative errno with err set.
 */
int colo_unix_connect(const char *path, int timeout_ms, struct colo_err *err);

/* Has QEMU exited?  Reaps it (without blocking) if so. */
bool colo_qmp_exited(struct colo_qmp *q);
/* Wait up to timeout_ms for QEMU to exit on its own; true if it did. */
bool colo_qmp_wait_exit(struct colo_qmp *q, int timeout_ms);

/*
 * Stop QEMU: "quit" over QMP (SIGTERM when not connected), wait up to
 * timeout_ms, then SIGKILL and wait.  Returns 0 when QEMU exited by itself,
 * -ETIMEDOUT when it had to be killed.  No-op once QEMU is reaped.
 */
int colo_qmp_stop(struct colo_qmp *q, int timeout_ms);

/* "exited with status N" / "killed by signal N" for q->status. */
const char *colo_qmp_describe_exit(const struct colo_qmp *q, char *buf, size_t n);

#endif
