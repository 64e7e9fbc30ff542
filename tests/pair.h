/*
 * pair.h: running real colo-primary / colo-secondary processes in tests.
 *
 * A struct proc is one daemon started by the test: its pid, its control
 * socket, its log file.  Daemons get PR_SET_PDEATHSIG(SIGKILL), so when a
 * test process dies (a failed assertion exits at once) its daemons die with
 * it; tests still stop them by pid (proc_stop) on the normal path.  Waiting
 * is on observable state (the control socket, the log, exit), never on
 * sleeps alone.  Ports are free loopback ports found at run time.
 */
#ifndef COLO_TEST_PAIR_H
#define COLO_TEST_PAIR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "colo.pb-c.h"

struct proc {
	pid_t pid;
	char name[32];
	char sock[256];
	char log[256];
	char state_dir[256];
	int exit_status;       /* after proc_wait: exit code, or 128 + signal */
	bool exited;
};

/* The test's scratch directory (made on first use, removed at exit). */
const char *pair_dir(void);
/* A loopback port nothing listens on (TCP and UDP) right now. */
uint16_t pair_free_port(void);
/* Path of a built program: $top_builddir/NAME. */
const char *pair_bin(const char *name);

/*
 * Start `bin` (colo-primary / colo-secondary) as node `name` with control
 * socket, state-dir and log in the scratch dir, plus the extra flags (NULL-
 * terminated).  Fails the test if it cannot start.
 */
void proc_start(struct proc *p, const char *bin, const char *name, ...);
/* Send a signal. */
void proc_signal(struct proc *p, int sig);
/* Wait for exit up to ms; true if it exited (exit_status set). */
bool proc_wait(struct proc *p, int ms);
/* SIGTERM, wait, then SIGKILL if it would not stop; returns exit_status. */
int proc_stop(struct proc *p);
/* Does its log contain this text? */
bool proc_log_has(const struct proc *p, const char *text);
/* Print its log to stderr (diagnosing a failure). */
void proc_dump_log(const struct proc *p);

/* One control request; NULL (and why in err) if the node did not answer. */
Colo__ControlResponse *ctl(const struct proc *p, Colo__ControlRequest__CmdCase cmd,
			   uint32_t arg, char *err, size_t errlen);
/* Status fields, or false if the node did not answer. */
bool ctl_status(const struct proc *p, Colo__Role *role, char *state, size_t slen,
		uint64_t *last_committed, uint64_t *generation);
/* Verify: true when clean (pages_bad == 0, supported); *checked pages. */
bool ctl_verify_clean(const struct proc *p, uint64_t *checked, char *why, size_t len);

/* Poll every 5 ms until cond(ud) or ms pass; returns cond's last value. */
bool wait_for(bool (*cond)(void *ud), void *ud, int ms);

/* Conditions for wait_for (ud is a struct proc *, or struct wait_arg *). */
struct wait_arg {
	struct proc *p;
	uint64_t n;
	const char *text;
};
bool cond_protected(void *proc);            /* state "protected" */
bool cond_primary(void *proc);              /* role primary */
bool cond_committed(void *wait_arg);        /* last_committed >= n */
bool cond_log(void *wait_arg);              /* log has text */
bool cond_exited(void *proc);
bool cond_stopped(void *proc);              /* stopped (SIGSTOP) */

/* ---- additions for the authentication tests (issue 11) ---- */

/* proc_start with the extra flags in a NULL-terminated array (at most
 * PROC_ARGS_MAX of them). */
#define PROC_ARGS_MAX 32
void proc_startv(struct proc *p, const char *bin, const char *name,
		 const char *const *args);
/* How many times its log contains this text. */
int proc_log_count(const struct proc *p, const char *text);
/* The local port of its UDP socket (its heartbeats), from /proc; 0: none. */
uint16_t proc_udp_port(const struct proc *p);

/* A new key file (colo_psk_generate) in the scratch dir; the path. */
const char *pair_keyfile(const char *name);

/* Counters of `colo-ctl stats`; false if the node did not answer. */
bool ctl_refusals(const struct proc *p, uint64_t *peers_refused,
		  uint64_t *heartbeats_refused);
/* Status: the peer it names (a secondary: its primary's node). */
bool ctl_peer(const struct proc *p, char *peer, size_t len);
/* One figure of colo-ctl stats: checkpoints, compared, matched, mismatches,
 * compare_dropped, loop_busy_max_us, loop_cpu_max_us, pipelined,
 * streams_held, or
 * cause:NAME (checkpoints by cause); 0 if absent. */
bool ctl_stat(const struct proc *p, const char *name, uint64_t *value);
/* Verify: "NAME XXH3" of its first RAM block (a secondary: committed RAM)
 * and the checkpoint that RAM holds. */
bool ctl_block_hash(const struct proc *p, char *out, size_t len, uint64_t *last_committed);
/* Wait up to ms for its state to be `state`; false (log dumped) if not. */
bool proc_wait_state(struct proc *p, const char *state, int ms);


#endif
