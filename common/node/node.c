/*
 * node.c: a running node's scaffolding (see node.h): configuration, logs,
 * the generation in state-dir, the guest, the control socket, signals and
 * hooks.  Role engines plug in with colo_node_set_engine().
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "ctl.h"
#include "fs.h"
#include "log.h"
#include "node.h"
#include "record.h"
#include "ramfmt.h"

/* ---- state-dir: the generation ---- */

static int write_generation(const char *file, uint64_t gen, struct colo_err *err)
{
	char tmp[4200], text[32];
	int fd, len;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	len = snprintf(text, sizeof(text), "%" PRIu64 "\n", gen);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return colo_err_set(err, errno, "cannot write %s: %s", tmp, strerror(errno));
	/* Write, sync, rename: a crash leaves the old or the new value. */
	if (write(fd, text, (size_t)len) != len || fsync(fd) != 0) {
		int e = errno;

		close(fd);
		unlink(tmp);
		return colo_err_set(err, e, "cannot write %s: %s", tmp, strerror(e));
	}
	close(fd);
	if (rename(tmp, file) != 0)
		return colo_err_set(err, errno, "cannot rename %s to %s: %s", tmp, file,
				    strerror(errno));
	/* ... and the rename itself survives a crash once the directory is synced. */
	{
		char dir[4200], *slash;

		snprintf(dir, sizeof(dir), "%s", file);
		slash = strrchr(dir, '/');
		if (slash == dir)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		else
			snprintf(dir, sizeof(dir), ".");
		fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0 || fsync(fd) != 0) {
			int e = errno;

			if (fd >= 0)
				close(fd);
			return colo_err_set(err, e, "cannot sync directory %s: %s", dir,
					    strerror(e));
		}
		close(fd);
	}
	return 0;
}

static int read_generation(struct colo_node *n, struct colo_err *err)
{
	char text[64];
	FILE *f;
	int r;

	r = colo_mkdir_p(n->cfg.state_dir, 0700, NULL);
	if (r)
		return colo_err_set(err, -r, "state-dir %s: %s", n->cfg.state_dir,
				    strerror(-r));
	snprintf(n->generation_file, sizeof(n->generation_file), "%s/%s.generation",
		 n->cfg.state_dir, n->cfg.name);
	f = fopen(n->generation_file, "r");
	if (!f) {
		if (errno != ENOENT)
			return colo_err_set(err, errno, "cannot read %s: %s",
					    n->generation_file, strerror(errno));
		n->generation = 1;
		return write_generation(n->generation_file, 1, err);
	}
	if (!fgets(text, sizeof(text), f) ||
	    sscanf(text, "%" SCNu64, &n->generation) != 1 || n->generation == 0) {
		fclose(f);
		return colo_err_set(err, EINVAL, "%s does not hold a generation number",
				    n->generation_file);
	}
	fclose(f);
	return 0;
}

int colo_node_set_generation(struct colo_node *n, uint64_t gen, struct colo_err *err)
{
	int r = write_generation(n->generation_file, gen, err);

	if (r)
		return r;
	colo_log_info("generation %" PRIu64 " -> %" PRIu64, n->generation, gen);
	n->generation = gen;
	colo_log_set_generation(gen);
	return 0;
}

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

/* ---- control socket ---- */

static void add_phases(struct colo_node *n, Colo__PhaseTiming *store,
		       Colo__PhaseTiming **ptrs, size_t *count)
{
	*count = 0;
	for (int ph = 0; ph < COLO_PHASES; ph++) {
		Colo__PhaseTiming *t = &store[ph];
		uint64_t cnt;

		colo__phase_timing__init(t);
		t->phase = (char *)colo_phase_name((enum colo_phase)ph);
		colo_stats_percentiles(&n->stats, (enum colo_phase)ph, &t->p50_us,
				       &t->p99_us, &cnt);
		t->count = cnt;
		ptrs[(*count)++] = t;
	}
}

static void recording_text(struct colo_node *n, char *buf, size_t len);

static void ctl_status(struct colo_node *n, struct colo_ctl_pending *p)
{
	Colo__ControlResponse resp = COLO__CONTROL_RESPONSE__INIT;
	Colo__Status st = COLO__STATUS__INIT;
	Colo__PhaseTiming phases[COLO_PHASES], *pp[COLO_PHASES];
	char state[64] = "", peer[320] = "", peer_state[64] = "", enc[128] = "";
	char guest[256] = "", rec[4200];
	uint64_t last = 0, now = colo_now_ns();
	size_t np;

	if (n->eops)
		n->eops->status(n->engine, state, sizeof(state), peer, sizeof(peer),
				peer_state, sizeof(peer_state), &last, enc, sizeof(enc));
	st.node = n->cfg.name;
	st.role = n->role == COLO_ROLE_PRIMARY ? COLO__ROLE__ROLE_PRIMARY :
		  COLO__ROLE__ROLE_SECONDARY;
	st.generation = n->generation;
	st.state = state;
	st.peer = peer;
	st.peer_state = peer_state;
	st.last_committed = last;
	st.interval_ms = n->cfg.checkpoint_interval_ms;
	st.min_interval_ms = n->cfg.min_interval_ms;
	colo_stats_rates(&n->stats, now, &st.dirty_pages_per_s, &st.bytes_per_s);
	add_phases(n, phases, pp, &np);
	st.n_phases = np;
	st.phases = pp;
	if (n->gops->describe)
		n->gops->describe(n->guest, guest, sizeof(guest));
	else
		snprintf(guest, sizeof(guest), "%s", n->machine);
	st.guest = guest;
	st.tracking = (char *)colo_ram_tracking_reason(n->ram);
	st.uptime_ms = (now - n->started_ns) / 1000000;
	st.encodings = enc;
	recording_text(n, rec, sizeof(rec));
	st.recording = rec;
	resp.ok = true;
	resp.result_case = COLO__CONTROL_RESPONSE__RESULT_STATUS;
	resp.status = &st;
	colo_ctl_reply(p, &resp);
}

static void ctl_stats(struct colo_node *n, struct colo_ctl_pending *p)
{
	Colo__ControlResponse resp = COLO__CONTROL_RESPONSE__INIT;
	Colo__Stats st = COLO__STATS__INIT;
	Colo__Stats__PagesByKindEntry kinds[COLO_PAGE_KINDS], *kp[COLO_PAGE_KINDS];
	Colo__PhaseTiming phases[COLO_PHASES], *pp[COLO_PHASES];
	size_t np, nk = 0;

	st.checkpoints = n->stats.checkpoints;
	st.checkpoints_failed = n->stats.checkpoints_failed;
	st.pages_sent = n->stats.pages_sent;
	st.pages_unchanged = n->stats.pages_unchanged;
	st.bytes_sent = n->stats.bytes_sent;
	st.bytes_received = n->stats.bytes_received;
	st.full_syncs = n->stats.full_syncs;
	st.failovers = n->stats.failovers;
	st.heartbeats_sent = n->stats.heartbeats_sent;
	st.heartbeats_received = n->stats.heartbeats_received;
	st.heartbeats_refused = n->stats.heartbeats_refused;
	for (int k = 0; k < COLO_PAGE_KINDS; k++) {
		if (!n->stats.pages_by_kind[k])
			continue;
		colo__stats__pages_by_kind_entry__init(&kinds[nk]);
		kinds[nk].key = (char *)colo_page_kind_name((enum colo_page_kind)k);
		kinds[nk].value = n->stats.pages_by_kind[k];
		kp[nk] = &kinds[nk];
		nk++;
	}
	st.n_pages_by_kind = nk;
	st.pages_by_kind = kp;
	add_phases(n, phases, pp, &np);
	st.n_phases = np;
	st.phases = pp;
	resp.ok = true;
	resp.result_case = COLO__CONTROL_RESPONSE__RESULT_STATS;
	resp.stats = &st;
	colo_ctl_reply(p, &resp);
}

#define HASHES_MAX 16

static void ctl_verify(struct colo_node *n, struct colo_ctl_pending *p)
{
	Colo__ControlResponse resp = COLO__CONTROL_RESPONSE__INIT;
	Colo__VerifyResult vr = COLO__VERIFY_RESULT__INIT;
	struct colo_verify_report rep;
	char bad[COLO_VERIFY_LIST_MAX][300], *badp[COLO_VERIFY_LIST_MAX];
	char hashes[HASHES_MAX][300], *hashp[HASHES_MAX];
	char state[64], peer[320], pst[64], enc[128];
	size_t nb = 0, nh;

	memset(&rep, 0, sizeof(rep));
	/* The guest holds still while its RAM is recomputed; on a secondary
	 * the loop thread is also where commits happen, so this sees one. */
	colo_node_pause_guest(n);
	if (n->gops->verify)
		n->gops->verify(n->guest, &rep);
	nh = colo_ram_nblocks(n->ram);
	if (nh > HASHES_MAX)
		nh = HASHES_MAX;
	for (size_t i = 0; i < nh; i++) {
		const struct colo_ram_block *b = colo_ram_block_at(n->ram, i);

		snprintf(hashes[i], sizeof(hashes[i]), "%s %016" PRIx64, b->name,
			 (uint64_t)XXH3_64bits(b->host, b->length));
		hashp[i] = hashes[i];
	}
	colo_node_resume_guest(n);
	if (n->eops)
		n->eops->status(n->engine, state, sizeof(state), peer, sizeof(peer), pst,
				sizeof(pst), &vr.last_committed, enc, sizeof(enc));
	vr.n_block_hashes = nh;
	vr.block_hashes = hashp;
	vr.supported = rep.supported;
	vr.pages_checked = rep.pages_checked;
	vr.pages_bad = rep.pages_bad;
	for (uint64_t i = 0; i < rep.pages_bad && nb < COLO_VERIFY_LIST_MAX; i++) {
		snprintf(bad[nb], sizeof(bad[nb]), "%s+0x%" PRIx64, rep.bad[nb].block,
			 rep.bad[nb].offset);
		badp[nb] = bad[nb];
		nb++;
	}
	vr.n_bad_pages = nb;
	vr.bad_pages = badp;
	vr.summary = rep.supported ? rep.summary : (char *)"this guest cannot verify itself";
	resp.ok = true;
	resp.result_case = COLO__CONTROL_RESPONSE__RESULT_VERIFY;
	resp.verify = &vr;
	colo_ctl_reply(p, &resp);
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

int colo_node_record_start(struct colo_node *n, const char *dir, struct colo_err *err)
{
	struct colo_record_cfg rc;
	uint64_t ram = (uint64_t)n->cfg.ram_mb << 20;
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
	r = colo_recorder_start(&rc, &n->rec, err);
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
	int r = colo_savevm_save(&n->sv, out, COLO_SAVEVM_ENABLE_COLO, err);

	if (r == 0)
		colo_log_info("recording: a keyframe of the whole state (%zu bytes) took %.1f ms",
			      out->len, (double)(colo_now_ns() - t0) / 1e6);
	return r;
}

static void recording_text(struct colo_node *n, char *buf, size_t len)
{
	struct colo_recorder_stats st;

	buf[0] = '\0';
	if (!n->rec)
		return;
	colo_recorder_stats(n->rec, &st);
	if (!st.running)
		snprintf(buf, len, "%s: stopped: %s", colo_recorder_dir(n->rec), st.error);
	else if (!st.have_keyframe)
		snprintf(buf, len, "%s: waiting for a full state to start from",
			 colo_recorder_dir(n->rec));
	else
		snprintf(buf, len, "%s: %" PRIu64 " checkpoints (%" PRIu64 " keyframes), last %"
			 PRIu64 ", %" PRIu64 " bytes", colo_recorder_dir(n->rec), st.checkpoints,
			 st.keyframes, st.last_seq, st.bytes);
}

static void ctl_record(struct colo_node *n, struct colo_ctl_pending *p,
		       const Colo__RecordRequest *rq)
{
	struct colo_err err;
	char text[4200];

	colo_err_clear(&err);
	if (rq->start) {
		if (!rq->dir || !rq->dir[0]) {
			colo_ctl_reply_error(p, "record start needs a directory");
			return;
		}
		if (colo_node_record_start(n, rq->dir, &err) != 0) {
			colo_ctl_reply_error(p, "%s", err.msg);
			return;
		}
		colo_ctl_reply_message(p, "recording to %s", rq->dir);
		return;
	}
	if (!n->rec) {
		colo_ctl_reply_error(p, "not recording");
		return;
	}
	recording_text(n, text, sizeof(text));
	colo_node_record_stop(n);
	colo_ctl_reply_message(p, "stopped recording %s", text);
}

static void ctl_handler(struct colo_ctl_pending *p, const Colo__ControlRequest *req,
			void *ud)
{
	struct colo_node *n = ud;
	struct colo_err err;
	char msg[256] = "";

	colo_err_clear(&err);
	if (n->stopping || !n->eops) {
		colo_ctl_reply_error(p, "the node is stopping");
		return;
	}
	switch (req->cmd_case) {
	case COLO__CONTROL_REQUEST__CMD_STATUS:
		ctl_status(n, p);
		return;
	case COLO__CONTROL_REQUEST__CMD_STATS:
		ctl_stats(n, p);
		return;
	case COLO__CONTROL_REQUEST__CMD_VERIFY:
		ctl_verify(n, p);
		return;
	case COLO__CONTROL_REQUEST__CMD_FAILOVER:
		if (n->eops->failover(n->engine, msg, sizeof(msg), &err))
			colo_ctl_reply_error(p, "%s", err.msg);
		else
			colo_ctl_reply_message(p, "%s", msg);
		return;
	case COLO__CONTROL_REQUEST__CMD_SET_INTERVAL:
		if (!req->set_interval ||
		    n->eops->set_interval(n->engine, req->set_interval->ms, msg, sizeof(msg),
					  &err))
			colo_ctl_reply_error(p, "%s", err.msg[0] ? err.msg : "no interval");
		else
			colo_ctl_reply_message(p, "%s", msg);
		return;
	case COLO__CONTROL_REQUEST__CMD_CHECKPOINT:
		if (n->eops->checkpoint(n->engine, p, &err))
			colo_ctl_reply_error(p, "%s", err.msg);
		return;      /* otherwise the engine replies when it committed */
	case COLO__CONTROL_REQUEST__CMD_RECORD:
		if (!req->record)
			colo_ctl_reply_error(p, "no record request");
		else
			ctl_record(n, p, req->record);
		return;
	default:
		colo_ctl_reply_error(p, "unknown request");
		return;
	}
}

void colo_node_reply_checkpoint(struct colo_ctl_pending *p, bool ok, const char *msg)
{
	if (ok)
		colo_ctl_reply_message(p, "%s", msg);
	else
		colo_ctl_reply_error(p, "%s", msg);
}

static void ctl_log(void *ud, const char *line)
{
	(void)ud;
	colo_log_warn("control socket: %s", line);
}

/* ---- signals ---- */

static void on_term(uv_signal_t *h, int sig)
{
	struct colo_node *n = h->data;

	colo_log_info("%s: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
	colo_node_exit(n, COLO_EXIT_OK);
}

static void on_hup(uv_signal_t *h, int sig)
{
	struct colo_node *n = h->data;
	struct colo_err err;

	(void)sig;
	colo_err_clear(&err);
	if (!n->cfg.file) {
		colo_log_warn("SIGHUP: no configuration file (-c) to re-read");
		return;
	}
	if (colo_config_reload(&n->cfg, &err) != 0) {
		colo_log_error("SIGHUP: %s: keeping the running configuration", err.msg);
		return;
	}
	colo_log_set_level(n->cfg.log_level);
	colo_log_info("SIGHUP: configuration re-read from %s (interval %u ms)",
		      n->cfg.file, n->cfg.checkpoint_interval_ms);
	if (n->eops && n->eops->reloaded)
		n->eops->reloaded(n->engine);
}

/* ---- life ---- */

/*
 * The loop watchdog.  The control socket and the checkpoint protocol live
 * on this loop (heartbeats have their own thread, but stop when the loop
 * stalls for a heartbeat timeout): say so when one iteration's callbacks
 * ran for longer than a heartbeat interval.  uv_prepare runs once per
 * iteration, just before the poll; the iteration's busy time is the time
 * since the last one minus what the loop spent idle in the poll.
 */
static void on_stall_prepare(uv_prepare_t *h)
{
	struct colo_node *n = h->data;
	uint64_t now = colo_now_ns(), idle = uv_metrics_idle_time(n->loop), busy;

	if (n->stall_from_ns) {
		busy = now - n->stall_from_ns;
		busy = idle - n->stall_idle_ns < busy ? busy - (idle - n->stall_idle_ns) : 0;
		if (busy > (uint64_t)n->cfg.heartbeat_interval_ms * 1000000ull) {
			n->stats.loop_stalls++;
			if (now - n->stall_logged_ns > 1000000000ull) {
				n->stall_logged_ns = now;
				colo_log_warn("the event loop was busy for %.1f ms in one go "
					      "(heartbeat interval %u ms)", (double)busy / 1e6,
					      n->cfg.heartbeat_interval_ms);
			}
		}
	}
	n->stall_from_ns = now;
	n->stall_idle_ns = idle;
}

int colo_node_init(struct colo_node *n, const char *prog, enum colo_role role,
		   int argc, char **argv, colo_guest_lookup_fn lookup, bool *done)
{
	struct colo_err err;
	bool check_only = false;
	int r;

	memset(n, 0, sizeof(*n));
	*done = false;
	n->prog = prog;
	n->loop = uv_default_loop();
	n->started_ns = colo_now_ns();
	colo_stats_init(&n->stats);
	colo_err_clear(&err);
	r = colo_config_load(&n->cfg, role, argc, argv, stdout, &check_only, &err);
	if (r == 1) {
		*done = true;
		return COLO_EXIT_OK;
	}
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", prog, err.msg);
		return COLO_EXIT_USAGE;
	}
	n->gops = lookup(n->cfg.guest);
	if (!n->gops) {
		fprintf(stderr, "%s: guest: unknown guest '%s'\n", prog, n->cfg.guest);
		return COLO_EXIT_USAGE;
	}
	if (check_only) {
		printf("%s: configuration OK\n", prog);
		*done = true;
		return COLO_EXIT_OK;
	}
	colo_log_init(prog, n->cfg.name, role, n->cfg.log_level);
	if (read_generation(n, &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_STATE;
	}
	colo_log_set_generation(n->generation);
	colo_guest_machine_name(n->gops, n->machine, sizeof(n->machine));
	if (colo_ram_new(n->cfg.dirty_tracking, &n->ram, &err) != 0 ||
	    n->gops->create(&n->cfg, &n->guest, &err) != 0 ||
	    colo_savevm_init(&n->sv, n->machine, &err) != 0 ||
	    n->gops->attach(n->guest, n->ram, &n->sv, &err) != 0) {
		colo_log_error("guest %s: %s", n->machine, err.msg);
		return COLO_EXIT_SETUP;
	}
	if (colo_ctl_server_start(n->loop, n->cfg.control, ctl_handler, n, &n->ctl,
				  &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_SETUP;
	}
	colo_ctl_server_set_log(n->ctl, ctl_log, n);
	if (n->cfg.record && n->cfg.record[0] &&
	    colo_node_record_start(n, n->cfg.record, &err) != 0) {
		colo_log_error("%s", err.msg);
		return COLO_EXIT_SETUP;
	}
	uv_signal_init(n->loop, &n->sig_term);
	uv_signal_init(n->loop, &n->sig_int);
	uv_signal_init(n->loop, &n->sig_hup);
	n->sig_term.data = n->sig_int.data = n->sig_hup.data = n;
	uv_signal_start(&n->sig_term, on_term, SIGTERM);
	uv_signal_start(&n->sig_int, on_term, SIGINT);
	uv_signal_start(&n->sig_hup, on_hup, SIGHUP);
	n->signals_on = true;
	uv_loop_configure(n->loop, UV_METRICS_IDLE_TIME);
	uv_prepare_init(n->loop, &n->stall_prepare);
	n->stall_prepare.data = n;
	uv_prepare_start(&n->stall_prepare, on_stall_prepare);
	n->role = role;
	colo_log_info("%s %s: guest %s, %u MiB, dirty tracking: %s, control %s",
		      prog, PACKAGE_VERSION, n->machine, n->cfg.ram_mb,
		      colo_ram_tracking_reason(n->ram), n->cfg.control);
	/* DESIGN.md §8: until peer authentication exists, say so at start. */
	colo_log_warn("running without peer authentication (not built yet): anyone who "
		      "can reach this node's replication and heartbeat ports is believed; "
		      "use loopback or a trusted network");
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
	if (n->eops && n->eops->stop)
		n->eops->stop(n->engine);
	for (int i = 0; i < n->nstop_hooks; i++)
		n->stop_hooks[i].fn(n->stop_hooks[i].ud);
	if (n->guest_running) {
		n->gops->stop(n->guest);
		n->guest_running = false;
	}
	colo_ctl_server_stop(n->ctl);
	n->ctl = NULL;
	colo_node_record_stop(n);
	if (n->signals_on) {
		n->signals_on = false;
		uv_close((uv_handle_t *)&n->sig_term, NULL);
		uv_close((uv_handle_t *)&n->sig_int, NULL);
		uv_close((uv_handle_t *)&n->sig_hup, NULL);
		uv_close((uv_handle_t *)&n->stall_prepare, NULL);
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
}

/* ---- hooks ---- */

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
