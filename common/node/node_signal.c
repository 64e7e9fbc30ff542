/*
 * node_signal.c: a node's signals and its loop watchdog.  SIGTERM and
 * SIGINT stop the node, SIGHUP re-reads the configuration file and keeps
 * the running one when the new one is bad; uv_signal_t handlers, so the
 * work happens on the loop, not in a signal handler.  The watchdog counts
 * loop iterations whose callbacks ran longer than a heartbeat interval.
 * Loop thread only.
 */
#include "config.h"

#include <signal.h>

#include "log.h"
#include "node.h"
#include "node_int.h"

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
	colo__node_notify_reloading(n);
	if (colo_config_reload(&n->cfg, &err) != 0) {
		colo_log_error("SIGHUP: %s: keeping the running configuration", err.msg);
		colo_node_notify_ready(n);
		return;
	}
	colo_log_set_level(n->cfg.log_level);
	colo_log_info("SIGHUP: configuration re-read from %s (interval %u ms)",
		      n->cfg.file, n->cfg.checkpoint_interval_ms);
	if (n->eops && n->eops->reloaded)
		n->eops->reloaded(n->engine);
	colo_node_notify_ready(n);
}

/*
 * The loop watchdog.  The control socket and the checkpoint protocol live
 * on this loop (heartbeats have their own thread, but stop when the loop
 * stalls for a heartbeat timeout): say so when one iteration's callbacks
 * ran for longer than a heartbeat interval.  uv_prepare runs once per
 * iteration, just before the poll; the iteration's busy time is the time
 * since the last one minus what the loop spent idle in the poll.  Its CPU
 * time (the loop thread's own) tells work on the loop from waiting for a
 * CPU the host gave to others.  Reading that clock is a system call (1-2
 * us on a paravirtual host, as much as a short turn's work), so it is read
 * at most once a millisecond: a turn that ran for longer always gets a
 * reading at its end, and one taken at most 1 ms before its start, so its
 * CPU time counts at most 1 ms of the turns before it.
 */
#define STALL_CPU_EVERY_NS 1000000ull

static void on_stall_prepare(uv_prepare_t *h)
{
	struct colo_node *n = h->data;
	uint64_t now = colo_now_ns(), idle = uv_metrics_idle_time(n->loop), busy;
	bool read_cpu = now - n->stall_cpu_at_ns >= STALL_CPU_EVERY_NS;
	uint64_t cpu = read_cpu ? colo_thread_cpu_ns() : n->stall_cpu_ns;

	if (n->stall_from_ns) {
		uint64_t used = cpu - n->stall_cpu_ns;

		if (used > n->stats.loop_cpu_max_ns)
			n->stats.loop_cpu_max_ns = used;
		if (used > 10000000ull)
			n->stats.loop_cpu_over_10ms++;
		busy = now - n->stall_from_ns;
		busy = idle - n->stall_idle_ns < busy ? busy - (idle - n->stall_idle_ns) : 0;
		if (busy > n->stats.loop_busy_max_ns)
			n->stats.loop_busy_max_ns = busy;
		if (busy > 10000000ull)
			n->stats.loop_busy_over_10ms++;
		if (busy > (uint64_t)n->cfg.heartbeat_interval_ms * 1000000ull) {
			n->stats.loop_stalls++;
			if (now - n->stall_logged_ns > 1000000000ull) {
				n->stall_logged_ns = now;
				colo_log_warn("the event loop was busy for %.1f ms in one go, "
					      "%.1f ms of it on a CPU (heartbeat interval %u ms)",
					      (double)busy / 1e6, (double)used / 1e6,
					      n->cfg.heartbeat_interval_ms);
			}
		}
	}
	n->stall_from_ns = now;
	n->stall_idle_ns = idle;
	if (read_cpu) {
		n->stall_cpu_ns = cpu;
		n->stall_cpu_at_ns = now;
	}
}

/* Wall time, not CPU time: its clock is read without a system call, so a
 * caller may ask after every small step; and it bounds the CPU time too. */
bool colo_node_turn_spent(const struct colo_node *n, uint64_t budget_ns)
{
	uint64_t ran, idle;

	if (!n->signals_on || !n->stall_from_ns)
		return false;
	ran = colo_now_ns() - n->stall_from_ns;
	idle = uv_metrics_idle_time(n->loop) - n->stall_idle_ns;
	return ran > idle && ran - idle > budget_ns;
}

void colo__node_signals_start(struct colo_node *n)
{
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
}

void colo__node_signals_stop(struct colo_node *n)
{
	if (!n->signals_on)
		return;
	n->signals_on = false;
	uv_close((uv_handle_t *)&n->sig_term, NULL);
	uv_close((uv_handle_t *)&n->sig_int, NULL);
	uv_close((uv_handle_t *)&n->sig_hup, NULL);
	uv_close((uv_handle_t *)&n->stall_prepare, NULL);
}
