/*
 * node_hook.c: the operator's commands a node runs on events (see
 * node_hook.h).  Each run owns a small struct, freed when its process
 * handle has closed.  Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "node.h"

struct hook {
	uv_process_t proc;
	void (*done)(void *ud, int status);
	void *ud;
	char event[32];
};

static void on_hook_closed(uv_handle_t *h)
{
	free(h->data);
}

static void on_hook_exit(uv_process_t *proc, int64_t status, int sig)
{
	struct hook *hk = proc->data;
	int st = sig ? -1 : (int)status;

	if (hk->done)
		hk->done(hk->ud, st);
	uv_close((uv_handle_t *)proc, on_hook_closed);
}

int colo_node_run_hook(struct colo_node *n, const char *event, const char *cmd,
		       void (*done)(void *ud, int status), void *ud,
		       struct colo_err *err)
{
	extern char **environ;
	struct uv_process_options_s opt;
	uv_stdio_container_t stdio[3];
	char e_node[300], e_role[64], e_gen[64], e_event[64];
	char *args[] = { "sh", "-c", (char *)cmd, NULL };
	char **env;
	size_t ne = 0;
	struct hook *hk;
	int r;

	while (environ[ne])
		ne++;
	env = calloc(ne + 5, sizeof(*env));
	hk = calloc(1, sizeof(*hk));
	if (!env || !hk) {
		free(env);
		free(hk);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	memcpy(env, environ, ne * sizeof(*env));
	snprintf(e_node, sizeof(e_node), "COLO_NODE=%s", n->cfg.name);
	snprintf(e_role, sizeof(e_role), "COLO_ROLE=%s", colo_role_name(n->role));
	snprintf(e_gen, sizeof(e_gen), "COLO_GENERATION=%" PRIu64, n->generation);
	snprintf(e_event, sizeof(e_event), "COLO_EVENT=%s", event);
	env[ne++] = e_node;
	env[ne++] = e_role;
	env[ne++] = e_gen;
	env[ne++] = e_event;
	hk->done = done;
	hk->ud = ud;
	snprintf(hk->event, sizeof(hk->event), "%s", event);
	memset(&opt, 0, sizeof(opt));
	stdio[0].flags = UV_IGNORE;
	stdio[1].flags = UV_INHERIT_FD;
	stdio[1].data.fd = 1;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	opt.file = "/bin/sh";
	opt.args = args;
	opt.env = env;
	opt.stdio = stdio;
	opt.stdio_count = 3;
	opt.exit_cb = on_hook_exit;
	hk->proc.data = hk;
	colo_log_info("running %s-command: %s", event, cmd);
	r = uv_spawn(n->loop, &hk->proc, &opt);
	free(env);
	if (r) {
		uv_close((uv_handle_t *)&hk->proc, on_hook_closed);
		return colo_err_set(err, -r, "cannot run %s-command: %s", event,
				    uv_strerror(r));
	}
	return 0;
}
