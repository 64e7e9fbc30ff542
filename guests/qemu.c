/*
 * qemu.c: the qemu guest's ops and keys, and its supervisor thread (see
 * qemu.h, qemu_int.h).
 *
 * The supervisor owns QMP once the guest runs: every SUP_TICK_MS it asks
 * QEMU query-status (QMP silent for vm-qmp-timeout-ms: the VM is taken for
 * dead), reads the events that came meanwhile (COLO_EXIT, SHUTDOWN: dead
 * too), notices QEMU's exit, and sets x-checkpoint-delay when the interval
 * changed.  "Dead" stops the node (guest.h watch), so its heartbeats stop
 * and the secondary takes over from the last committed checkpoint.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cfgopt.h"
#include "clock.h"
#include "colomsg.h"
#include "fs.h"
#include "log.h"
#include "nodecfg.h"
#include "qemu_int.h"
#include "ram.h"
#include "savevm.h"
#include "vmstate.h"

#define SUP_TICK_MS 250
#define RELAY_BEGIN_MS 30000

static bool vmdesc_needed(void *opaque)
{
	const struct qemu_vm_dev *d = opaque;

	return d->vmdesc_due && d->vmdesc_len > 0;
}

static const struct colo_vmstate_desc qemu_vmdesc_vmsd = {
	.name = COLO_QEMU_DEVICE "/vmdesc",
	.version_id = 1,
	.minimum_version_id = 1,
	.needed = vmdesc_needed,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(vmdesc_len, struct qemu_vm_dev),
		COLO_VMSTATE_VBUFFER_ALLOC_UINT32(vmdesc, struct qemu_vm_dev, vmdesc_len),
		COLO_VMSTATE_END
	},
};

const struct colo_vmstate_desc qemu_vm_vmsd = {
	.name = COLO_QEMU_DEVICE,
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_BUFFER(machine, struct qemu_vm_dev),
		COLO_VMSTATE_UINT32(ram_section_id, struct qemu_vm_dev),
		COLO_VMSTATE_UINT32(blob_len, struct qemu_vm_dev),
		COLO_VMSTATE_VBUFFER_ALLOC_UINT32(blob, struct qemu_vm_dev, blob_len),
		COLO_VMSTATE_END
	},
	.subsections = (const struct colo_vmstate_desc *const[]) { &qemu_vmdesc_vmsd, NULL },
};

/* The loader allocates these fields: they hold colo_vmstate_alloc memory
 * only, freed by colo_vmstate_free_allocs (which frees all of them). */
void qemu_dev_set_blob(struct qemu_guest *q, uint8_t *blob, size_t len)
{
	uint8_t *keep = q->dev.vmdesc;

	q->dev.vmdesc = NULL;
	colo_vmstate_free_allocs(&qemu_vm_vmsd, &q->dev);
	q->dev.vmdesc = keep;
	q->dev.blob = blob;
	q->dev.blob_len = (uint32_t)len;
}

void qemu_dev_set_vmdesc(struct qemu_guest *q, uint8_t *json, size_t len)
{
	uint8_t *keep = q->dev.blob;

	q->dev.blob = NULL;
	colo_vmstate_free_allocs(&qemu_vm_vmsd, &q->dev);
	q->dev.blob = keep;
	q->dev.vmdesc = json;
	q->dev.vmdesc_len = (uint32_t)len;
}

/* ---- what the threads tell the node ---- */

void qemu_died(struct qemu_guest *q, const char *fmt, ...)
{
	void (*fn)(void *, const char *);
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&q->lock);
	fn = q->died_said || q->stopping ? NULL : q->died;
	q->died_said = true;
	pthread_mutex_unlock(&q->lock);
	if (fn)
		fn(q->died_ud, why);
}

void qemu_notify(struct qemu_guest *q)
{
	void (*fn)(void *);
	void *ud;

	pthread_mutex_lock(&q->lock);
	fn = q->notify;
	ud = q->notify_ud;
	pthread_mutex_unlock(&q->lock);
	if (fn)
		fn(ud);
}

/* ---- the supervisor ---- */

static const char *fatal_event(json_t *ev, char *buf, size_t len);

/*
 * The relay lost QEMU's migration connection: say why if QEMU can.  QEMU
 * closes it when it ends COLO (COLO_EXIT, whose event may not have been
 * read yet) and when it dies; one QMP call tells which, at once when QEMU
 * is gone (its socket is closed too).
 */
void qemu_explain_end(struct qemu_guest *q, struct colo_err *err)
{
	char why[200], ex[64];
	struct colo_err e;
	int r = 0;

	pthread_mutex_lock(&q->qmp_lock);
	/* QEMU alive: its COLO_EXIT comes a moment after it closed the
	 * connection.  Dead: the first call fails at once. */
	for (int tries = 0; r == 0 && tries < 10; tries++) {
		if (tries)
			usleep(50000);
		colo_err_clear(&e);
		r = colo_qmp_execute(&q->qmp, "query-status", NULL, NULL, 500, &e);
		for (size_t i = 0; q->qmp.events && i < json_array_size(q->qmp.events); i++)
			if (fatal_event(json_array_get(q->qmp.events, i), why, sizeof(why))) {
				colo_err_clear(err);
				colo_err_set(err, EPIPE, "%s", why);
				goto out;
			}
	}
	if (r && colo_qmp_wait_exit(&q->qmp, 100)) {
		colo_err_clear(err);
		colo_err_set(err, EPIPE, "QEMU %s",
			     colo_qmp_describe_exit(&q->qmp, ex, sizeof(ex)));
	}
out:
	pthread_mutex_unlock(&q->qmp_lock);
}

static int set_delay(struct qemu_guest *q, uint32_t ms, struct colo_err *err)
{
	json_t *args = json_pack("{s:I}", "x-checkpoint-delay", (json_int_t)ms);

	return colo_qmp_execute(&q->qmp, "migrate-set-parameters", args, NULL,
				(int)q->set->qmp_timeout_ms, err);
}

/* An event that means the VM is gone for colo: its reason, else NULL. */
static const char *fatal_event(json_t *ev, char *buf, size_t len)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	json_t *data = json_object_get(ev, "data");

	if (!name)
		return NULL;
	if (strcmp(name, "COLO_EXIT") == 0) {
		snprintf(buf, len, "QEMU ended COLO (COLO_EXIT, reason %s)",
			 json_string_value(json_object_get(data, "reason")) ?
			 json_string_value(json_object_get(data, "reason")) : "?");
		return buf;
	}
	if (strcmp(name, "SHUTDOWN") == 0) {
		snprintf(buf, len, "the VM shut down (SHUTDOWN, reason %s)",
			 json_string_value(json_object_get(data, "reason")) ?
			 json_string_value(json_object_get(data, "reason")) : "?");
		return buf;
	}
	return NULL;
}

/* Wait on q->cond (q->lock held) until `until` (colo_now_ns) at most. */
static void wait_until_ns(struct qemu_guest *q, uint64_t until)
{
	uint64_t now = colo_now_ns(), rel = until > now ? until - now : 0;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	rel += (uint64_t)ts.tv_nsec;
	ts.tv_sec += (time_t)(rel / 1000000000ull);
	ts.tv_nsec = (long)(rel % 1000000000ull);
	pthread_cond_timedwait(&q->cond, &q->lock, &ts);
}

/*
 * When a checkpoint held frames ask for may start (caller holds lock): not
 * before min-interval-ms after QEMU's last began, and not before the VM ran
 * as long as it was last stopped.  Asked for at once, QEMU 7.2 under TCG
 * had the VM stopped most of the time (4-5 ms pauses, a few hundred us
 * running between them): 1,222 SETs/s at 50 clients against 2,598 with
 * checkpoints 10 ms apart (bench/vmnet.sh measures it).
 */
static uint64_t kick_earliest(const struct qemu_guest *q)
{
	uint64_t a = q->last_request_ns + (uint64_t)q->min_interval_ms * 1000000ull;
	uint64_t b = q->last_loaded_ns + q->pause_last_ns;

	return a > b ? a : b;
}

/*
 * Every SUP_TICK_MS: query-status and the events.  At once: a new interval,
 * and the checkpoint held frames ask for (setting x-checkpoint-delay starts
 * one in QEMU's COLO), no sooner than min-interval-ms after QEMU's last.
 */
static void *sup_main(void *arg)
{
	struct qemu_guest *q = arg;
	uint64_t tick_ns = (uint64_t)SUP_TICK_MS * 1000000ull;
	uint64_t next_tick = colo_now_ns() + tick_ns;
	struct colo_err err;
	char why[200], ex[64];

	pthread_setname_np(pthread_self(), "vm-supervisor");
	pthread_mutex_lock(&q->lock);
	while (!q->stopping) {
		uint64_t now = colo_now_ns();
		uint64_t kick_at = kick_earliest(q);
		bool kick = q->kick && now >= kick_at, set = q->interval_dirty, tick;
		uint32_t ms = q->interval_ms;
		int r = 0;

		tick = now >= next_tick;
		if (!kick && !set && !tick) {
			wait_until_ns(q, q->kick && kick_at < next_tick ? kick_at : next_tick);
			continue;
		}
		if (kick)
			q->kick = false;
		q->interval_dirty = false;
		if (tick)
			next_tick = now + tick_ns;
		pthread_mutex_unlock(&q->lock);
		colo_err_clear(&err);
		pthread_mutex_lock(&q->qmp_lock);
		if (set || kick)
			r = set_delay(q, ms, &err);
		if ((set || kick) && r == 0) {
			pthread_mutex_lock(&q->lock);
			q->delay_set_ms = ms;
			pthread_mutex_unlock(&q->lock);
		}
		if (r == 0 && tick)
			r = colo_qmp_execute(&q->qmp, "query-status", NULL, NULL,
					     (int)q->set->qmp_timeout_ms, &err);
		for (size_t i = 0; q->qmp.events && i < json_array_size(q->qmp.events); i++)
			if (fatal_event(json_array_get(q->qmp.events, i), why, sizeof(why))) {
				qemu_died(q, "%s", why);
				r = 0;
			}
		if (q->qmp.events)
			json_array_clear(q->qmp.events);
		if (colo_qmp_exited(&q->qmp))
			qemu_died(q, "QEMU %s", colo_qmp_describe_exit(&q->qmp, ex, sizeof(ex)));
		else if (r == -ETIMEDOUT)
			qemu_died(q, "QEMU's QMP silent for %u ms", q->set->qmp_timeout_ms);
		else if (r)
			qemu_died(q, "QMP: %s", err.msg);
		pthread_mutex_unlock(&q->qmp_lock);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* Frames the VM sent wait for a checkpoint (qemu_net.c, its thread). */
static void on_net_kick(void *ud)
{
	struct qemu_guest *q = ud;

	pthread_mutex_lock(&q->lock);
	q->kick = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* ---- ops ---- */

static bool has_nic(const struct colo_qemu_settings *set)
{
	return set->vm_nics && *set->vm_nics;
}

void qemu_policy_of(const struct colo_qemu_settings *set, struct colo_qemu_args_policy *pol)
{
	memset(pol, 0, sizeof(*pol));
	pol->disk_unprotected = set->disk_unprotected;
	pol->tcg_ok = set->tcg_ok;
	pol->net_unprotected = set->net_unprotected;
	pol->colo_nic = has_nic(set);
}

/* vm-nics and vm-tap come together; vm-bridge needs a tap. */
static int net_keys_check(const struct colo_qemu_settings *set, struct colo_err *err)
{
	bool tap = set->vm_tap && *set->vm_tap;

	if (has_nic(set) && !tap)
		return colo_err_set(err, EINVAL, "vm-nics needs vm-tap: the tap the VM's "
				    "frames go out on");
	if (tap && !has_nic(set))
		return colo_err_set(err, EINVAL, "vm-tap needs vm-nics: the NIC whose frames "
				    "go out on it");
	if (set->vm_bridge && *set->vm_bridge && !tap)
		return colo_err_set(err, EINVAL, "vm-bridge needs vm-tap and vm-nics");
	return 0;
}

/* vm-args read and held to the policy keys, without starting anything. */
static int qemu_check(const struct colo_config *cfg, struct colo_err *err)
{
	const struct colo_qemu_settings *set = colo_qemu_settings(cfg);
	struct colo_qemu_args_policy pol;
	struct colo_qemu_args a;
	int r;

	if (!set)
		return colo_err_set(err, EINVAL, "qemu settings not loaded");
	if (!set->vm_args || !*set->vm_args)
		return colo_err_set(err, EINVAL, "guest qemu needs vm-args: the VM's own QEMU "
				    "arguments (machine, memory, kernel or disk, NICs)");
	r = net_keys_check(set, err);
	if (r)
		return r;
	qemu_policy_of(set, &pol);
	r = colo_qemu_args_parse(set->vm_args, &a, err);
	if (r)
		return r;
	r = colo_qemu_args_check(&a, &pol, err);
	if (r == 0 && has_nic(set))
		r = colo_qemu_args_set_nic(&a, set->vm_nics, "net.sock", err);
	colo_qemu_args_free(&a);
	return r;
}

static int qemu_create(const struct colo_config *cfg, struct colo_guest **out,
		       struct colo_err *err)
{
	const struct colo_qemu_settings *set = colo_qemu_settings(cfg);
	struct qemu_guest *q;
	int r;

	if (!set)
		return colo_err_set(err, EINVAL, "qemu settings not loaded");
	if (!set->vm_args || !*set->vm_args)
		return colo_err_set(err, EINVAL, "guest qemu needs vm-args: the VM's own QEMU "
				    "arguments (machine, memory, kernel or disk, NICs)");
	q = calloc(1, sizeof(*q));
	if (!q)
		return colo_err_set(err, ENOMEM, "out of memory");
	q->base.ops = &colo_qemu_ops;
	q->set = set;
	q->role = cfg->role;
	q->listen_fd = q->mig_fd = -1;
	q->wake[0] = q->wake[1] = -1;
	q->dev_at = -1;
	q->interval_ms = cfg->checkpoint_interval_ms;
	snprintf(q->node, sizeof(q->node), "%s", cfg->name);
	colo_qmp_init(&q->qmp);
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->qmp_lock, NULL);
	pthread_cond_init(&q->cond, NULL);
	*out = &q->base;
	if (pipe2(q->wake, O_CLOEXEC) != 0)
		return colo_err_set(err, errno, "pipe: %s", strerror(errno));
	q->min_interval_ms = cfg->min_interval_ms;
	r = net_keys_check(set, err);
	if (r == 0)
		r = qemu_vm_parse_args(q, err);
	if (r == 0)
		r = qemu_vm_paths(q, cfg->state_dir, err);
	if (r == 0 && has_nic(set))
		r = colo_qemu_args_set_nic(&q->args, set->vm_nics, q->net_path, err);
	return r;
}

static int qemu_attach(struct colo_guest *g, struct colo_ram *ram, struct colo_savevm *sv,
		       struct colo_err *err)
{
	struct qemu_guest *q = qg(g);
	int r;

	q->ram = ram;
	q->sv = sv;
	r = colo_savevm_add_device(sv, COLO_QEMU_DEVICE, 0, &qemu_vm_vmsd, &q->dev, err);
	if (r)
		return r;
	/* The NIC's socket and tap before QEMU, which connects as it starts. */
	if (has_nic(q->set)) {
		r = colo_mkdir_p(q->dir, 0700, err);
		if (r == 0)
			r = qemu_net_open(q->net_path, q->set->vm_tap, q->set->vm_bridge,
					  q->role == COLO_ROLE_PRIMARY, &q->net, err);
		if (r)
			return r;
		qemu_net_set_kick(q->net, on_net_kick, q);
	}
	if (q->role == COLO_ROLE_SECONDARY)
		return qemu_vm_probe(q, err);
	r = qemu_vm_start_primary(q, err);
	if (r == 0)
		r = qemu_relay_begin(q, RELAY_BEGIN_MS, err);
	return r;
}

static int qemu_start(struct colo_guest *g, struct colo_err *err)
{
	struct qemu_guest *q = qg(g);
	int r;

	if (q->role == COLO_ROLE_SECONDARY) {
		/* The failover: the VM runs from the committed state.  Then the
		 * relay thread starts QEMU's COLO to take its checkpoints as a
		 * primary does, while the VM already serves.  Its frames flow
		 * from now on (announce-self's among them). */
		if (q->net) {
			r = qemu_net_check(q->net, err);
			if (r)
				return r;
			qemu_net_serve(q->net);
		}
		r = qemu_vm_failover(q, err);
		if (r)
			return r;
		q->role = COLO_ROLE_PRIMARY;
		q->promoted = true;
		q->colo_pending = true;
	}
	if (pthread_create(&q->relay_thr, NULL, qemu_relay_main, q) != 0)
		return colo_err_set(err, EAGAIN, "cannot start the relay thread");
	q->relay_on = true;
	if (pthread_create(&q->sup_thr, NULL, sup_main, q) != 0)
		return colo_err_set(err, EAGAIN, "cannot start the supervisor thread");
	q->sup_on = true;
	q->running = true;
	return 0;
}

static void qemu_pause(struct colo_guest *g)
{
	struct qemu_guest *q = qg(g);

	/* Returns once no checkpoint is being copied into the mirror. */
	pthread_mutex_lock(&q->lock);
	q->paused = true;
	pthread_mutex_unlock(&q->lock);
}

static void qemu_full_sync(struct colo_guest *g)
{
	struct qemu_guest *q = qg(g);

	/* called paused, before the devices are saved; resume clears it */
	pthread_mutex_lock(&q->lock);
	q->dev.vmdesc_due = true;
	pthread_mutex_unlock(&q->lock);
}

static void qemu_resume(struct colo_guest *g)
{
	struct qemu_guest *q = qg(g);

	pthread_mutex_lock(&q->lock);
	q->dev.vmdesc_due = false;
	q->paused = false;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

static void qemu_stop(struct colo_guest *g)
{
	struct qemu_guest *q = qg(g);
	ssize_t w;

	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (q->wake[1] >= 0)
		w = write(q->wake[1], "x", 1);
	(void)w;
	if (q->relay_on)
		pthread_join(q->relay_thr, NULL);
	if (q->sup_on)
		pthread_join(q->sup_thr, NULL);
	q->relay_on = q->sup_on = q->running = false;
	/* The NIC's relay first: QEMU's going is then no news to log. */
	qemu_net_free(q->net);
	q->net = NULL;
	qemu_vm_stop(q);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* p50 and p90 of the VM's last pauses, in ms (caller holds lock). */
static void pause_pcts(struct qemu_guest *q, double *p50, double *p90)
{
	uint32_t s[QEMU_PAUSE_RING];
	size_t n = q->pauses < QEMU_PAUSE_RING ? (size_t)q->pauses : QEMU_PAUSE_RING;

	*p50 = *p90 = 0;
	if (!n)
		return;
	memcpy(s, q->pause_us, n * sizeof(s[0]));
	qsort(s, n, sizeof(s[0]), cmp_u32);
	*p50 = s[n / 2] / 1000.0;
	*p90 = s[n * 9 / 10] / 1000.0;
}

/* "; NIC ..." after what describe() wrote. */
static void describe_net(struct qemu_guest *q, char *buf, size_t len)
{
	struct qemu_net_stats st;
	size_t at = strlen(buf);

	qemu_net_stats(q->net, &st);
	if (at + 1 >= len)
		return;
	snprintf(buf + at, len - at, "; NIC on vm-tap %s (%s%s): held %" PRIu64 " frames, %"
		 PRIu64 " bytes (max %" PRIu64 "); out %" PRIu64 " frames, %" PRIu64 " bytes, "
		 "release p50 %.2f ms, p99 %.2f ms; in %" PRIu64 " frames (%" PRIu64 " waited "
		 "for the VM to run); %" PRIu64 " epochs, %" PRIu64 " checkpoints asked for, %"
		 PRIu64 " dropped", q->set->vm_tap, st.connected ? "connected" : "QEMU not "
		 "connected", st.serving ? "" : ", standby", st.held_frames, st.held_bytes,
		 st.held_max_bytes, st.out_frames, st.out_bytes, st.release_p50_ms,
		 st.release_p99_ms, st.in_frames, st.in_waited, st.epochs, st.kicks,
		 st.dropped);
}

static void qemu_describe(struct colo_guest *g, char *buf, size_t len)
{
	struct qemu_guest *q = qg(g);
	double p50, p90;

	pthread_mutex_lock(&q->lock);
	if (q->role == COLO_ROLE_SECONDARY) {
		snprintf(buf, len, "VM %s, %u device bytes committed, RAM in %s; standby QEMU "
			 "pid %ld", q->dev.machine[0] ? (const char *)q->dev.machine :
			 "(none yet)", q->dev.blob_len, q->ram_path,
			 q->standby ? (long)q->qmp.pid : 0L);
	} else {
		pause_pcts(q, &p50, &p90);
		snprintf(buf, len, "VM %s (QEMU pid %ld), x-checkpoint-delay %u ms, %" PRIu64
			 " checkpoints from QEMU, %" PRIu64 " pages, %" PRIu64 " bytes in; VM "
			 "pause p50 %.2f ms, p90 %.2f ms, mean %.2f ms, max %.2f ms%s",
			 (const char *)q->dev.machine, (long)q->qmp.pid, q->delay_set_ms,
			 q->ckpts, q->pages_in, q->bytes_in, p50, p90,
			 q->pauses ? (double)q->pause_sum_ns / (double)q->pauses / 1e6 : 0.0,
			 (double)q->pause_max_ns / 1e6, q->ready ? "" : ", initial migration");
	}
	pthread_mutex_unlock(&q->lock);
	if (q->net)
		describe_net(q, buf, len);
}

/* colo-ctl stats: the VM's checkpoints and, with vm-nics, its frames. */
static void qemu_metrics(struct colo_guest *g, void (*put)(void *, const char *, double),
			 void *ud)
{
	struct qemu_guest *q = qg(g);
	struct qemu_net_stats st;
	double p50, p90;

	pthread_mutex_lock(&q->lock);
	pause_pcts(q, &p50, &p90);
	put(ud, "vm_checkpoints", (double)q->ckpts);
	put(ud, "vm_pages_in", (double)q->pages_in);
	put(ud, "vm_bytes_in", (double)q->bytes_in);
	put(ud, "vm_pause_p50_ms", p50);
	put(ud, "vm_pause_p90_ms", p90);
	put(ud, "vm_pause_max_ms", (double)q->pause_max_ns / 1e6);
	pthread_mutex_unlock(&q->lock);
	if (!q->net)
		return;
	qemu_net_stats(q->net, &st);
	put(ud, "vm_net_connected", st.connected);
	put(ud, "vm_net_held_frames", (double)st.held_frames);
	put(ud, "vm_net_held_bytes", (double)st.held_bytes);
	put(ud, "vm_net_held_max_bytes", (double)st.held_max_bytes);
	put(ud, "vm_net_out_frames", (double)st.out_frames);
	put(ud, "vm_net_out_bytes", (double)st.out_bytes);
	put(ud, "vm_net_release_p50_ms", st.release_p50_ms);
	put(ud, "vm_net_release_p99_ms", st.release_p99_ms);
	put(ud, "vm_net_in_frames", (double)st.in_frames);
	put(ud, "vm_net_in_bytes", (double)st.in_bytes);
	put(ud, "vm_net_in_waited", (double)st.in_waited);
	put(ud, "vm_net_epochs", (double)st.epochs);
	put(ud, "vm_net_checkpoints_asked", (double)st.kicks);
	put(ud, "vm_net_dropped", (double)st.dropped);
}

static void qemu_output_epoch(struct colo_guest *g, uint64_t seq)
{
	struct qemu_guest *q = qg(g);

	pthread_mutex_lock(&q->lock);
	q->epoch = seq;
	/* "Everything released" (UINT64_MAX, while unprotected) covers the
	 * epochs before this one only: vm-sync-ack must wait for this one. */
	if (seq && q->released == UINT64_MAX)
		q->released = seq - 1;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (q->net)
		qemu_net_epoch(q->net, seq);
}

static void qemu_output_release(struct colo_guest *g, uint64_t seq)
{
	struct qemu_guest *q = qg(g);

	pthread_mutex_lock(&q->lock);
	if (seq > q->released)
		q->released = seq;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (q->net)
		qemu_net_release(q->net, seq);
}

static void qemu_output_notify(struct colo_guest *g, void (*fn)(void *ud), void *ud)
{
	struct qemu_guest *q = qg(g);

	pthread_mutex_lock(&q->lock);
	q->notify = fn;
	q->notify_ud = ud;
	pthread_mutex_unlock(&q->lock);
}

/* A secondary about to take over: can anyone reach the VM it would run? */
static int qemu_can_serve(struct colo_guest *g, struct colo_err *err)
{
	struct qemu_guest *q = qg(g);

	return q->net ? qemu_net_check(q->net, err) : 0;
}

static bool qemu_ready(struct colo_guest *g)
{
	struct qemu_guest *q = qg(g);
	bool r;

	pthread_mutex_lock(&q->lock);
	r = q->ready;
	pthread_mutex_unlock(&q->lock);
	/* the relay's qemu_notify() after the next checkpoint asks again */
	return r && (!q->net || qemu_net_sync_ready(q->net));
}

static void qemu_set_interval(struct colo_guest *g, uint32_t ms)
{
	struct qemu_guest *q = qg(g);

	pthread_mutex_lock(&q->lock);
	if (ms != q->interval_ms || !q->running) {
		q->interval_ms = ms;
		q->interval_dirty = true;
		pthread_cond_broadcast(&q->cond);
	}
	pthread_mutex_unlock(&q->lock);
}

static void qemu_watch(struct colo_guest *g, void (*died)(void *ud, const char *why),
		       void *ud)
{
	struct qemu_guest *q = qg(g);

	pthread_mutex_lock(&q->lock);
	q->died = died;
	q->died_ud = ud;
	pthread_mutex_unlock(&q->lock);
}

static void qemu_destroy(struct colo_guest *g)
{
	struct qemu_guest *q = qg(g);

	if (q->running)
		qemu_stop(g);
	qemu_vm_stop(q);
	qemu_net_free(q->net);
	/* The committed RAM means nothing once this node is gone; a VM that
	 * runs on it (after a failover) was stopped with the node. */
	if (q->nblocks && q->ram_path[0] && (q->role == COLO_ROLE_SECONDARY || q->promoted))
		unlink(q->ram_path);
	qemu_relay_free(q);
	colo_qmp_free(&q->qmp);
	colo_qemu_args_free(&q->args);
	free(q->binary);
	free(q->blocks);
	free(q->binfo);
	colo_vmstate_free_allocs(&qemu_vm_vmsd, &q->dev);
	if (q->wake[0] >= 0)
		close(q->wake[0]);
	if (q->wake[1] >= 0)
		close(q->wake[1]);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->qmp_lock);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* ---- keys ---- */

static const char *const no_yes[] = { "no", "yes", NULL };

#define F(field) offsetof(struct colo_qemu_settings, field)

static const struct colo_opt qemu_opts[] = {
	{ "qemu-binary", COLO_SEC_QEMU, COLO_OPT_STR, F(binary),
	  .def = "qemu-system-x86_64", .meta = "PATH",
	  .help = "qemu: the QEMU to run the VM with (a name is looked up on PATH)" },
	{ "vm-args", COLO_SEC_QEMU, COLO_OPT_STR, F(vm_args), .def = "", .meta = "ARGS",
	  .help = "qemu: the VM's own QEMU arguments (machine, -m, kernel or disk, "
		  "NICs); colo adds QMP, the migration and the RAM backend" },
	{ "vm-ram-path", COLO_SEC_QEMU, COLO_OPT_STR, F(vm_ram_path), .def = "",
	  .meta = "FILE", .help = "qemu: secondary: the file holding the committed RAM "
				  "that QEMU maps on failover, on a tmpfs or "
				  "hugetlbfs; empty: /dev/shm/colo-NODE-pc.ram" },
	{ "vm-sync-ack", COLO_SEC_QEMU, COLO_OPT_ENUM, F(sync_ack), .values = no_yes,
	  .def = "no", .meta = "yes|no",
	  .help = "qemu: primary: let the VM run on only once the secondary has each "
		  "checkpoint (QEMU's own behaviour; slower), not once colo-primary has it" },
	{ "vm-disk-unprotected", COLO_SEC_QEMU, COLO_OPT_ENUM, F(disk_unprotected),
	  .values = no_yes, .def = "no", .meta = "yes|no",
	  .help = "qemu: allow writable disks, which a failover does not roll back" },
	{ "qemu-tcg-ok", COLO_SEC_QEMU, COLO_OPT_ENUM, F(tcg_ok), .values = no_yes,
	  .def = "no", .meta = "yes|no",
	  .help = "qemu: allow TCG with vCPUs (QEMU 7.2's COLO is broken under TCG; say "
		  "yes only for a fixed QEMU)" },
	{ "vm-qmp-timeout-ms", COLO_SEC_QEMU, COLO_OPT_UINT, F(qmp_timeout_ms), 100, 600000,
	  .def = "3000", .meta = "MS",
	  .help = "qemu: QEMU's QMP silent this long: the VM is taken for dead" },
	{ "vm-nics", COLO_SEC_QEMU, COLO_OPT_STR, F(vm_nics), .def = "", .meta = "DEVICE",
	  .help = "qemu: the VM's NIC, a model and its options (virtio-net-pci,mac=..); "
		  "colo adds its backend and holds its output until the secondary has "
		  "the checkpoint that follows it (output commit; needs vm-tap)" },
	{ "vm-tap", COLO_SEC_QEMU, COLO_OPT_STR, F(vm_tap), .def = "", .meta = "NAME",
	  .help = "qemu: the tap the NIC's frames go out on, in this node's network "
		  "namespace (created if missing; CAP_NET_ADMIN)" },
	{ "vm-bridge", COLO_SEC_QEMU, COLO_OPT_STR, F(vm_bridge), .def = "", .meta = "NAME",
	  .help = "qemu: a bridge colo adds vm-tap to; empty: the operator attaches it" },
	{ "vm-net-unprotected", COLO_SEC_QEMU, COLO_OPT_ENUM, F(net_unprotected),
	  .values = no_yes, .def = "no", .meta = "yes|no",
	  .help = "qemu: allow the VM's own NICs in vm-args, whose output a failover "
		  "can roll back after a client saw it" },
};

#undef F

_Static_assert(sizeof(int) == sizeof(((struct colo_qemu_settings *)0)->sync_ack),
	       "an enum key writes an int");

struct colo_qemu_settings *colo_qemu_settings(const struct colo_config *cfg)
{
	return colo_config_guest(cfg, &colo_qemu_ops);
}

const struct colo_guest_ops colo_qemu_ops = {
	.kind = "qemu",
	.version = 1,
	.opts = qemu_opts,
	.nopts = sizeof(qemu_opts) / sizeof(qemu_opts[0]),
	.settings_size = sizeof(struct colo_qemu_settings),
	.manual_dirty = true,
	.drives_checkpoints = true,
	.check = qemu_check,
	.create = qemu_create,
	.attach = qemu_attach,
	.start = qemu_start,
	.pause = qemu_pause,
	.resume = qemu_resume,
	.full_sync = qemu_full_sync,
	.stop = qemu_stop,
	.describe = qemu_describe,
	.metrics = qemu_metrics,
	.output_epoch = qemu_output_epoch,
	.output_release = qemu_output_release,
	.output_notify = qemu_output_notify,
	.can_serve = qemu_can_serve,
	.ready = qemu_ready,
	.set_interval = qemu_set_interval,
	.watch = qemu_watch,
	.destroy = qemu_destroy,
};
