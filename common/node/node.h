/*
 * node.h: what a running node is made of, whatever its role (DESIGN.md §1,
 * §5, §6): the configuration, the guest with its RAM and devices, the
 * generation persisted in state-dir, statistics, the control socket, the
 * signals, and the role engine that currently drives it.
 *
 * The mains (primary/, secondary/) build a node, start an engine on it and
 * run the loop.  A promoted secondary starts the primary engine on the same
 * node: the guest, its RAM and the control socket carry over.  Engines plug
 * in through struct colo_engine_ops so that the control socket and signals
 * are handled here once.
 *
 * Where each part lives: node.c builds and stops the node, runs the guest,
 * plugs engines in and records; node_gen.c keeps the generation in
 * state-dir; node_ctl.c answers the control socket; node_signal.c handles
 * signals and watches the loop; node_notify.c tells the service manager
 * (systemd) how the node is; metrics.c serves its figures to Prometheus;
 * node_hook.c (node_hook.h) runs hooks.
 *
 * Everything runs on the node's loop thread.
 */
#ifndef COLO_NODE_H
#define COLO_NODE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <uv.h>

#include "nodecfg.h"
#include "err.h"
#include "guest.h"
#include "node_hook.h"        /* colo_node_run_hook() */
#include "psk.h"
#include "ram.h"
#include "savevm.h"
#include "stats.h"

/* Exit statuses of the daemons (documented in --help and docs/operations.md). */
enum {
	COLO_EXIT_OK = 0,
	COLO_EXIT_RUNTIME = 1,        /* a failure while running */
	COLO_EXIT_USAGE = 2,          /* bad flag or configuration */
	COLO_EXIT_SETUP = 3,          /* cannot listen, bind or start the guest */
	COLO_EXIT_STATE = 4,          /* state-dir unusable */
	COLO_EXIT_SUPERSEDED = 5,     /* a newer generation took over: fenced */
	COLO_EXIT_FENCE = 6,          /* fence-command failed: not taking over */
	COLO_EXIT_GUEST = 7,          /* the guest died (a VM's QEMU exited or hung) */
};

struct colo_node;
struct colo_ctl_pending;

/* A role engine, as the control socket and signals see it. */
struct colo_engine_ops {
	enum colo_role role;
	/* Role-specific status: state, peer, peer state, last committed, encodings. */
	void (*status)(void *eng, char *state, size_t slen, char *peer, size_t plen,
		       char *peer_state, size_t pslen, uint64_t *last_committed,
		       char *encodings, size_t elen);
	/* Requests; a refusal fills err ("not a secondary", ...). */
	int (*failover)(void *eng, char *msg, size_t len, struct colo_err *err);
	int (*set_interval)(void *eng, uint32_t ms, char *msg, size_t len,
			    struct colo_err *err);
	/* Take a checkpoint now; the reply is deferred until it committed. */
	int (*checkpoint)(void *eng, struct colo_ctl_pending *p, struct colo_err *err);
	/* The configuration was reloaded (SIGHUP). */
	void (*reloaded)(void *eng);
	/* SIGTERM: close connections, stop timers; the loop then ends. */
	void (*stop)(void *eng);
	/* Around a synchronous read of the guest's RAM that must see the
	 * committed state (verify): on true the RAM shows it, on false it goes
	 * back to what is in flight.  NULL: the RAM always shows it. */
	void (*committed_view)(void *eng, bool on);
};

struct colo_node {
	uv_loop_t *loop;
	const char *prog;
	struct colo_config cfg;
	const struct colo_guest_ops *gops;
	struct colo_guest *guest;
	bool guest_running;
	struct colo_ram *ram;
	struct colo_savevm sv;
	char machine[64];              /* configuration name on the wire */
	uint64_t generation;
	char generation_file[4096];
	struct colo_stats stats;
	uint64_t started_ns;
	struct colo_ctl_server *ctl;
	struct colo_recorder *rec;     /* NULL: not recording */
	const struct colo_engine_ops *eops;
	void *engine;
	uv_signal_t sig_term, sig_int, sig_hup;
	bool signals_on;
	/* Loop watchdog: time spent in callbacks per loop iteration. */
	uv_prepare_t stall_prepare;
	uint64_t stall_from_ns, stall_idle_ns, stall_logged_ns;
	uint64_t stall_cpu_ns;           /* the loop thread's CPU time, read ... */
	uint64_t stall_cpu_at_ns;        /* ... then (at most 1 ms before a turn) */
	enum colo_role role;           /* of the engine running now */
	int exit_status;
	bool stopping;
	/* The guest died (guest.h watch): from its thread to the loop. */
	uv_async_t died_async;
	bool died_on;
	char died_why[256];            /* set once, before the async is sent */
	/* [security] (node_sec.c): the shared key, when psk-file is set */
	uint8_t psk[COLO_PSK_BYTES];
	bool have_psk;
	uv_timer_t insecure_timer;     /* --insecure off loopback: a warning a minute */
	bool insecure_on;
	/* [arbiter] (arbiter.h): NULL with arbiter none */
	struct colo_arbiter *arb;
	int release_fd;                /* release-log, or -1 */
	struct {
		void (*fn)(void *ud);
		void *ud;
	} stop_hooks[4];
	int nstop_hooks;
	struct colo_metrics *metrics;    /* metrics-listen's server (metrics.c) */
	/* the service manager (node_notify.c): on when NOTIFY_SOCKET is set */
	bool notify_on, notify_dog_on, notify_failed;
	int notify_fd;
	struct sockaddr_un notify_addr;
	socklen_t notify_addr_len;
	uv_timer_t notify_timer, notify_dog;
	char notify_status[400];         /* the last STATUS= sent */
	char notify_pending[80];         /* READY=1 etc. not taken yet: again */
	uint64_t notify_dropped;
};

/* A numeric host in 127.0.0.0/8, ::1 or ::ffff:127.x (the loopback rule). */
bool colo_addr_is_loopback(const char *host);

/*
 * How long this node's loop may go without turning before its heartbeats
 * stop (hb.h): a loop busy with one large checkpoint is not hung, one stuck
 * for a second (or the heartbeat timeout, if longer) is.
 */
static inline uint32_t colo_node_stall_ms(const struct colo_node *n)
{
	return n->cfg.heartbeat_timeout_ms > 1000 ? n->cfg.heartbeat_timeout_ms : 1000;
}

/*
 * Has this turn of the loop run for `budget_ns` already (wall time since
 * the loop last got ready to poll, less the time it waited in the poll)?
 * A long job on the loop asks between slices and yields when it has; the
 * check is cheap (no system call).  Never true where the loop watchdog is
 * not running (no turns are counted).
 */
bool colo_node_turn_spent(const struct colo_node *n, uint64_t budget_ns);

/*
 * Configure (argv; `guests` is the program's guest list, see nodecfg.h),
 * start logging, open state-dir and read the generation,
 * make and attach the guest, open the control socket and install signal
 * handlers.  Returns 0, or an exit status (COLO_EXIT_*, with the reason
 * printed) when the node must not run; *done is set when --help, --version
 * or --check-config was all there was to do.
 */
int colo_node_init(struct colo_node *n, const char *prog, enum colo_role role,
		   int argc, char **argv, const struct colo_guest_ops *const *guests,
		   bool *done);
void colo_node_fini(struct colo_node *n);

void colo_node_set_engine(struct colo_node *n, const struct colo_engine_ops *ops,
			  void *eng);
/* Also call fn(ud) when the node stops (handles an old engine still holds). */
void colo_node_add_stop_hook(struct colo_node *n, void (*fn)(void *ud), void *ud);

/* Persist and adopt a new generation (logs it). */
int colo_node_set_generation(struct colo_node *n, uint64_t gen, struct colo_err *err);

/*
 * Recording (DESIGN.md §7, common/record.h): start into dir with the
 * node's [record] settings, or stop (writing what is queued).  The engines
 * hand n->rec their checkpoints; colo_recorder_* take NULL.
 */
int colo_node_record_start(struct colo_node *n, const char *dir, struct colo_err *err);
void colo_node_record_stop(struct colo_node *n);
/*
 * A full stream of the guest's state as it is now, for a recording's first
 * keyframe (the caller makes sure it is a committed state: the guest
 * paused at a checkpoint, or a secondary's committed RAM between
 * checkpoints).  Logs how long it took.
 */
int colo_node_snapshot(struct colo_node *n, struct colo_buf *out, struct colo_err *err);

/* Pause / resume the guest if it runs (checkpoints, verify). */
void colo_node_pause_guest(struct colo_node *n);
void colo_node_resume_guest(struct colo_node *n);
int colo_node_start_guest(struct colo_node *n, struct colo_err *err);

/*
 * The node serves (the primary's guest runs, the secondary listens): tell
 * the service manager READY=1 with the node's status, when it started the
 * node with NOTIFY_SOCKET (node_notify.c).  Again after a reload.
 */
void colo_node_notify_ready(struct colo_node *n);

/*
 * The node's figures in Prometheus' text format (metrics.c; what
 * metrics-listen serves at /metrics), appended to out.
 */
void colo_node_metrics_text(struct colo_node *n, struct colo_buf *out);

/* Stop the node: engine, control socket, signals; the loop ends. */
void colo_node_exit(struct colo_node *n, int status);

/*
 * The release log ([arbiter] release-log; docs/arbiter.md): one line per
 * event, "<wall_ns> <node> <generation> <what> <seq>", what being ckpt
 * (replies of checkpoint seq released, acknowledged), alone (released with
 * no secondary), open (replies pass at once from now on), close (they are
 * held again) or stop.  Nothing when release-log is not set.
 */
void colo_node_release_event(struct colo_node *n, const char *what, uint64_t seq);

/* Answer a deferred control request (a checkpoint committed, or failed). */
void colo_node_reply_checkpoint(struct colo_ctl_pending *p, bool ok, const char *msg);

#endif
