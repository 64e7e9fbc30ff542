/*
 * colo-primary: runs the guest and keeps it protected by a secondary.
 * Everything is in the node scaffolding (common/node/node*.c) and the primary
 * engine (primary/primary.c); see `colo-primary --help`.
 */
#include "config.h"

#include <stdio.h>

#include "log.h"
#include "node.h"
#include "primary.h"
#include "registry.h"

int main(int argc, char **argv)
{
	struct colo_primary *p = NULL;
	struct colo_node n;
	struct colo_err err;
	bool done;
	int r;

	r = colo_node_init(&n, "colo-primary", COLO_ROLE_PRIMARY, argc, argv,
			   colo_guest_list(), &done);
	if (r == 0 && !done) {
		colo_err_clear(&err);
		if (colo_primary_start(&n, 0, &p, &err) != 0) {
			colo_log_error("%s", err.msg);
			colo_node_exit(&n, COLO_EXIT_SETUP);
		} else {
			colo_node_notify_ready(&n);       /* the guest runs */
		}
		uv_run(n.loop, UV_RUN_DEFAULT);
		r = n.exit_status;
	}
	colo_primary_free(p);
	colo_node_fini(&n);
	uv_loop_close(uv_default_loop());
	return r;
}
