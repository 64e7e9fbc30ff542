/*
 * node_hook.h: the operator's commands a node runs on events, such as
 * fence-command before a takeover and promote-command after one
 * (docs/operations.md).  A hook is `sh -c cmd` started on the node's loop
 * with the node's identity in its environment; its end is reported on the
 * loop.  The node owns each run until its process has exited.  Loop
 * thread only.
 */
#ifndef COLO_NODE_HOOK_H
#define COLO_NODE_HOOK_H

#include "err.h"

struct colo_node;

/*
 * Run `sh -c cmd` with COLO_NODE, COLO_ROLE, COLO_GENERATION and COLO_EVENT
 * in its environment; done(ud, exit status or -1) is called on the loop.
 */
int colo_node_run_hook(struct colo_node *n, const char *event, const char *cmd,
		       void (*done)(void *ud, int status), void *ud,
		       struct colo_err *err);

#endif
