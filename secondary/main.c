/*
 * colo-secondary: holds the last committed checkpoint of a primary's guest
 * and takes over when the primary stops.  Everything is in the node
 * scaffolding (common/node/node*.c) and the secondary engine
 * (secondary/secondary.c), which starts the primary engine on promotion;
 * see `colo-secondary --help`.
 */
#include "config.h"

#include <stdio.h>

#include "log.h"
#include "node.h"
#include "registry.h"
#include "secondary.h"

int main(int argc, char **argv)
{
	struct colo_secondary *s = NULL;
	struct colo_node n;
	struct colo_err err;
	bool done;
	int r;

	r = colo_node_init(&n, "colo-secondary", COLO_ROLE_SECONDARY, argc, argv,
			   colo_guest_list(), &done);
	if (r == 0 && !done) {
		colo_err_clear(&err);
		if (colo_secondary_start(&n, &s, &err) != 0) {
			colo_log_error("%s", err.msg);
			colo_node_exit(&n, COLO_EXIT_SETUP);
		} else {
			colo_node_notify_ready(&n);       /* it listens */
		}
		uv_run(n.loop, UV_RUN_DEFAULT);
		r = n.exit_status;
	}
	colo_secondary_free(s);
	colo_node_fini(&n);
	uv_loop_close(uv_default_loop());
	return r;
}
