/*
 * node.c: a running node's core (see node.h): building it from argv and
 * tearing it down, the guest's start, pause and resume, the engine that
 * plugs in, the node's stop, and recording.  The rest of the node lives
 * beside it: the generation in node_gen.c, control socket requests in
 * node_ctl.c, signals and the loop watchdog in node_signal.c, hooks in
 * node_hook.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbiter.h"
#include "clock.h"
#include "log.h"
#include "node.h"
#include "node_int.h"
#include "record.h"

/* ---- guest ---- */

void colo_node_pause_guest(struct colo_node *n)
{
	if (n->guest_running)
		n->gops->pause(n->guest);
}

void colo_node_resume_guest(struct colo_node *n)
{
	if (n->guest_running)
		n->gops->resume(n->guest);
}

int colo_node_start_guest(struct colo_node *n, struct colo_err *err)
{
	int r;

	if (n->guest_running)
		return 0;
	r = colo_ram_start(n->ram, err);
	if (r == 0)
		r = n->gops->start(n->guest, err);
	if (r == 0) {
		n->guest_running = true;
		colo_log_info("guest %s running", n->machine);
	}
	return r;
}

/* The guest is gone for good: stop, so the heartbeats stop and the
 * secondary takes over from the last committed checkpoint. */
static void on_died_async(uv_async_t *a)
{
	struct colo_node *n = a->data;

	colo_log_error("guest %s died: %s; stopping, so that the secondary takes over",
		       n->machine, n->died_why);
	colo_node_exit(n, COLO_EXIT_GUEST);
}

static void on_guest_died(void *ud, const char *why)
{
	struct colo_node *n = ud;

	if (n->died_why[0])
		return;
	snprintf(n->died_why, sizeof(n->died_why), "%s", why && *why ? why : "no reason given");
	uv_async_send(&n->died_async);
}

/* The guest's RAM, all blocks (a VM's size comes from QEMU, not ram-mb). */
static uint64_t ram_bytes(const struct colo_node *n)
{
	uint64_t sum = 0;

	for (size_t i = 0; n->ram && i < colo_ram_nblocks(n->ram); i++)
		sum += colo_ram_block_at(n->ram, i)->length;
	return sum;
}

/* ---- recording ---- */

/* The recorder's own events (rec/ has no log of its own), from its thread. */
static void record_log(void *ud, bool error, const char *line)
{
	(void)ud;
	if (error)
		colo_log_error("%s", line);
	else
		colo_log_warn("%s", line);
}

/* A recording's meta.json: name, role, guest and the guest's own keys, as
 * text ("key", "value", ..., NULL; NULL when out of memory). */
static char **record_meta(const struct colo_node *n)
{
	const struct colo_guest_ops *g = n->gops;
	const char *set = g ? colo_config_guest(&n->cfg, g) : NULL;
	size_t nopts = set ? g->nopts : 0, k = 0;
	char **m = calloc(2 * (3 + nopts) + 1, sizeof(*m)), num[32];
	bool ok = m != NULL;

	for (size_t i = 0; ok && i < 3 + nopts; i++) {
		const struct colo_opt *o = i < 3 ? NULL : &g->opts[i - 3];
		const char *key = i == 0 ? "name" : i == 1 ? "role" : i == 2 ? "guest" : o->key;
		const char *v = i == 0 ? n->cfg.name : i == 1 ? colo_role_name(n->cfg.role) :
				i == 2 ? (g ? g->kind : "") : NULL;

		if (o && (o->type == COLO_OPT_STR || o->type == COLO_OPT_CHOICE))
			v = *(char *const *)(set + o->off);
		else if (o && o->type == COLO_OPT_ENUM)
			v = o->values[*(const int *)(set + o->off)];
		else if (o && o->type == COLO_OPT_UINT) {
			snprintf(num, sizeof(num), "%" PRIu32, *(const uint32_t *)(set + o->off));
			v = num;
		}
		if (!v)
			continue;
		m[k] = strdup(key);
		m[k + 1] = strdup(v);
		ok = m[k] && m[k + 1];
		k += 2;
	}
	if (!ok && m) {
		for (size_t i = 0; i < k; i++)
			free(m[i]);
		free(m);
		m = NULL;
	}
	return m;
}

int colo_node_record_start(struct colo_node *n, const char *dir, struct colo_err *err)
{
	struct colo_record_cfg rc;
	uint64_t ram = ram_bytes(n);
	char **meta;
	int r;

	if (n->rec)
		return colo_err_set(err, EBUSY, "already recording to %s",
				    colo_recorder_dir(n->rec));
	memset(&rc, 0, sizeof(rc));
	rc.dir = dir;
	rc.keyframe_every = n->cfg.keyframe_every;
	rc.max_bytes = n->cfg.record_max_bytes;
	rc.max_checkpoints = n->cfg.record_max_checkpoints;
	/* A full sync must fit, with room for the checkpoints behind it. */
	rc.queue_max = 2 * ram + (256ull << 20);
	rc.log = record_log;
	/* Devices are walked with their descriptions: their sizes may change. */
	rc.sv = &n->sv;
	meta = record_meta(n);
	rc.meta = (const char *const *)meta;
	r = colo_recorder_start(&rc, &n->rec, err);
	for (size_t i = 0; meta && meta[i]; i++)
		free(meta[i]);
	free(meta);
	if (r)
		return r;
	colo_log_info("recording checkpoints to %s (a keyframe every %u, max %" PRIu64
		      " bytes, max %" PRIu64 " checkpoints; 0 = no limit)", dir,
		      rc.keyframe_every, rc.max_bytes, rc.max_checkpoints);
	return 0;
}

void colo_node_record_stop(struct colo_node *n)
{
	char dir[4096];

	if (!n->rec)
		return;
	snprintf(dir, sizeof(dir), "%s", colo_recorder_dir(n->rec));
	colo_recorder_stop(n->rec);         /* writes what is queued */
	n->rec = NULL;
	colo_log_info("recording to %s stopped", dir);
}

int colo_node_snapshot(struct colo_node *n, struct colo_buf *out, struct colo_err *err)
{
	uint64_t t0 = colo_now_ns();
	int r;

	/* A keyframe is a full stream: what a guest sends with a sync only
	 * (the qemu guest's description of QEMU's devices) belongs in it. */
	if (n->gops->full_sync && n->guest_running)
		n->gops->full_sync(n->guest);
	r = colo_savevm_save(&n->sv, out, COLO_SAVEVM_ENABLE_COLO, err);

	if (r == 0)
		colo_log_info("recording: a keyframe of the whole state (%zu bytes) took %.1f ms",
			      out->len, (double)(colo_now_ns() - t0) / 1e6);
	return r;
}

/* ---- life ---- */

int colo_node_init(struct colo_node *n, const char *prog, enum colo_role role,
		   int argc, char **argv, const struct colo_guest_ops *const *guests,
		   bool *done)
{
	struct colo_err err;
	bool check_only = false;
	int r;

	memset(n, 0, sizeof(*n));
	n->release_fd = -1;
	*done = false;
	n->prog = prog;
	n->loop = uv_default_loop();
	n->started_ns = colo_now_ns();
	colo_stats_init(&n->stats);
	colo_err_clear(&err);
	r = colo_config_load(&n->cfg, role, guests, argc, argv, stdout, &check_only, &err);
	if (r == 1) {
		*done = true;
		return COLO_EXIT_OK;
	}
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return COLO_EXIT_USAGE;
	}
	n->gops = colo_config_guest_ops(&n->cfg);
	if (!n->gops) {
		fprintf(stderr, "%s: guest: unknown guest '%s'\n", prog, n->cfg.guest);
		return COLO_EXIT_USAGE;
	}
	/* What only the guest can judge (a VM's arguments), before anything
	 * starts: with --check-config too. */
	if (n->gops->check && n->gops->check(&n->cfg, &err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return COLO_EXIT_USAGE;
	}
	if (colo__node_security_init(n, &err) != 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return COLO_EXIT_USAGE;
	}
	if (check_only) {
		printf("%s: configuration OK\n", prog);
		*done = true;
		return COLO_EXIT_OK;
	}
	colo_log_init(prog, n->cfg.name, role, n->cfg.log_level);
	if (colo__node_read_generation(n, &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_STATE;
	}
	colo_log_set_generation(n->generation);
	if (n->cfg.release_log[0]) {
		n->release_fd = open(n->cfg.release_log, O_WRONLY | O_CREAT | O_APPEND |
				     O_CLOEXEC, 0644);
		if (n->release_fd < 0) {
			colo_log_error("release-log %s: %s", n->cfg.release_log,
				       strerror(errno));
			return COLO_EXIT_SETUP;
		}
	}
	colo_guest_machine_name(n->gops, n->machine, sizeof(n->machine));
	if (colo_ram_new(n->gops->manual_dirty ? COLO_DIRTY_MANUAL : n->cfg.dirty_tracking,
			 &n->ram, &err) != 0 ||
	    n->gops->create(&n->cfg, &n->guest, &err) != 0 ||
	    colo_savevm_init(&n->sv, n->machine, &err) != 0 ||
	    n->gops->attach(n->guest, n->ram, &n->sv, &err) != 0) {
		colo_log_error("guest %s: %s", n->machine, err.msg);
		return COLO_EXIT_SETUP;
	}
	if (n->gops->watch) {
		uv_async_init(n->loop, &n->died_async, on_died_async);
		n->died_async.data = n;
		n->died_on = true;
		n->gops->watch(n->guest, on_guest_died, n);
	}
	if (colo__node_ctl_start(n, &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_SETUP;
	}
	if (colo__node_metrics_start(n, &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_SETUP;
	}
	if (n->cfg.record && n->cfg.record[0] &&
	    colo_node_record_start(n, n->cfg.record, &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_SETUP;
	}
	/* Last of what can fail: nothing after it needs undoing. */
	if (n->cfg.arbiter == COLO_ARBITER_ETCD &&
	    colo_arbiter_new(n, &n->arb, &err) != 0) {
		colo_log_error("arbiter: %s", err.msg);
		return COLO_EXIT_SETUP;
	}
	colo__node_signals_start(n);
	colo__node_notify_start(n);
	n->role = role;
	colo_log_info("%s %s: guest %s, %.1f MiB, dirty tracking: %s, control %s",
		      prog, PACKAGE_VERSION, n->machine, (double)ram_bytes(n) / 1048576.0,
		      colo_ram_tracking_reason(n->ram), n->cfg.control);
	colo__node_security_start(n);
	return 0;
}

void colo_node_set_engine(struct colo_node *n, const struct colo_engine_ops *ops,
			  void *eng)
{
	n->eops = ops;
	n->engine = eng;
	n->role = ops->role;
	colo_log_set_role(ops->role);
}

void colo_node_add_stop_hook(struct colo_node *n, void (*fn)(void *ud), void *ud)
{
	if (n->nstop_hooks < (int)(sizeof(n->stop_hooks) / sizeof(n->stop_hooks[0]))) {
		n->stop_hooks[n->nstop_hooks].fn = fn;
		n->stop_hooks[n->nstop_hooks].ud = ud;
		n->nstop_hooks++;
	}
}

void colo_node_exit(struct colo_node *n, int status)
{
	if (n->stopping)
		return;
	n->stopping = true;
	n->exit_status = status;
	colo__node_notify_stop(n);
	if (n->eops && n->eops->stop)
		n->eops->stop(n->engine);
	colo_node_release_event(n, "stop", 0);
	colo_arbiter_close(n->arb);
	n->arb = NULL;
	for (int i = 0; i < n->nstop_hooks; i++)
		n->stop_hooks[i].fn(n->stop_hooks[i].ud);
	if (n->guest_running) {
		n->gops->stop(n->guest);
		n->guest_running = false;
	}
	colo__node_ctl_stop(n);
	colo__node_metrics_stop(n);
	colo_node_record_stop(n);
	colo__node_signals_stop(n);
	colo__node_security_stop(n);
	if (n->died_on) {
		n->died_on = false;
		uv_close((uv_handle_t *)&n->died_async, NULL);
	}
}

void colo_node_fini(struct colo_node *n)
{
	colo_node_record_stop(n);
	if (n->guest)
		n->gops->destroy(n->guest);
	n->guest = NULL;
	colo_ram_free(n->ram);
	n->ram = NULL;
	colo_savevm_free(&n->sv);
	colo_config_free(&n->cfg);
	colo__node_security_fini(n);
	if (n->release_fd >= 0)
		close(n->release_fd);
	n->release_fd = -1;
}

void colo_node_release_event(struct colo_node *n, const char *what, uint64_t seq)
{
	char line[400];
	int len;

	if (n->release_fd < 0)
		return;
	/* One write per line, appended: lines of several runs never mix. */
	len = snprintf(line, sizeof(line), "%" PRIu64 " %s %" PRIu64 " %s %" PRIu64 "\n",
		       colo_wall_ns(), n->cfg.name, n->generation, what, seq);
	if (len > 0 && write(n->release_fd, line, (size_t)len) != len)
		colo_log_warn("release-log %s: %s", n->cfg.release_log, strerror(errno));
}
