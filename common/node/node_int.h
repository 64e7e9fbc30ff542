/*
 * node_int.h: what the files of a node (node.c and node_*.c) share and
 * nothing outside them uses.  Loop thread only, like the node.
 */
#ifndef COLO_NODE_INT_H
#define COLO_NODE_INT_H

#include "err.h"
#include "node.h"

/* node_gen.c: create state-dir, read the generation (1 and written, if new). */
int colo__node_read_generation(struct colo_node *n, struct colo_err *err);

/* node_ctl.c: serve the control socket at cfg.control; stop serving. */
int colo__node_ctl_start(struct colo_node *n, struct colo_err *err);
void colo__node_ctl_stop(struct colo_node *n);

/* node_signal.c: SIGTERM, SIGINT, SIGHUP and the loop watchdog; their end. */
/* node_sec.c: the key, the loopback rule, the insecure warnings. */
int colo__node_security_init(struct colo_node *n, struct colo_err *err);
void colo__node_security_start(struct colo_node *n);
void colo__node_security_stop(struct colo_node *n);
void colo__node_security_fini(struct colo_node *n);

void colo__node_signals_start(struct colo_node *n);
void colo__node_signals_stop(struct colo_node *n);

/* metrics.c: serve metrics-listen (nothing when empty); stop. */
int colo__node_metrics_start(struct colo_node *n, struct colo_err *err);
void colo__node_metrics_stop(struct colo_node *n);

/* node_notify.c: the service manager's notifications (NOTIFY_SOCKET): the
 * status and watchdog timers; RELOADING=1; STOPPING=1 and the timers' end. */
void colo__node_notify_start(struct colo_node *n);
void colo__node_notify_reloading(struct colo_node *n);
void colo__node_notify_stop(struct colo_node *n);

#endif
