/* pair.c: see pair.h. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ctl.h"
#include "pair.h"
#include "psk.h"
#include "testutil.h"

static char *dir;

static void rm_dir(void)
{
	char cmd[512];

	/* Scratch dirs hold sockets and subdirectories: rm -r is simplest. */
	if (dir && !getenv("COLO_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "# could not remove %s\n", dir);
	}
}

const char *pair_dir(void)
{
	if (!dir) {
		dir = colo_test_tmpdir();
		ck_assert_ptr_nonnull(dir);
		atexit(rm_dir);
	}
	return dir;
}

uint16_t pair_free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a;
		socklen_t len = sizeof(a);
		int t = socket(AF_INET, SOCK_STREAM, 0), u;
		uint16_t port;

		memset(&a, 0, sizeof(a));
		a.sin_family = AF_INET;
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (t < 0 || bind(t, (struct sockaddr *)&a, sizeof(a)) != 0 ||
		    getsockname(t, (struct sockaddr *)&a, &len) != 0) {
			if (t >= 0)
				close(t);
			continue;
		}
		port = ntohs(a.sin_port);
		/* The secondary binds UDP on the same number: check it too. */
		u = socket(AF_INET, SOCK_DGRAM, 0);
		if (u >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(u);
			close(t);
			return port;
		}
		if (u >= 0)
			close(u);
		close(t);
	}
	ck_abort_msg("no free port");
	return 0;
}

const char *pair_bin(const char *name)
{
	static char buf[4][512];
	static int k;
	const char *top = getenv("top_builddir");

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", top && *top ? top : ".", name);
	return buf[k];
}

void proc_start(struct proc *p, const char *bin, const char *name, ...)
{
	const char *argv[64];
	int argc = 0;
	va_list ap;
	pid_t parent = getpid();

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	snprintf(p->sock, sizeof(p->sock), "%s/%s.sock", pair_dir(), name);
	snprintf(p->log, sizeof(p->log), "%s/%s.log", pair_dir(), name);
	snprintf(p->state_dir, sizeof(p->state_dir), "%s/%s.state", pair_dir(), name);
	argv[argc++] = bin;
	argv[argc++] = "--name";
	argv[argc++] = name;
	argv[argc++] = "--control";
	argv[argc++] = p->sock;
	argv[argc++] = "--state-dir";
	argv[argc++] = p->state_dir;
	va_start(ap, name);
	for (const char *a; (a = va_arg(ap, const char *)) && argc < 62;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	p->pid = fork();
	ck_assert_int_ge(p->pid, 0);
	if (p->pid == 0) {
		int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		/* Dies with the test, whatever happens to the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		execv(bin, (char *const *)argv);
		fprintf(stderr, "cannot run %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
}

void proc_signal(struct proc *p, int sig)
{
	if (p->pid > 0 && !p->exited)
		kill(p->pid, sig);
}

bool proc_wait(struct proc *p, int ms)
{
	uint64_t end = colo_now_ms() + (uint64_t)ms;
	int st;

	if (p->exited)
		return true;
	if (p->pid <= 0)
		return false;
	for (;;) {
		pid_t r = waitpid(p->pid, &st, WNOHANG);

		if (r == p->pid) {
			p->exited = true;
			p->exit_status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return true;
		}
		if (colo_now_ms() >= end)
			return false;
		usleep(2000);
	}
}

int proc_stop(struct proc *p)
{
	if (p->pid <= 0)
		return -1;
	if (!p->exited) {
		proc_signal(p, SIGTERM);
		if (!proc_wait(p, 10000)) {
			proc_signal(p, SIGKILL);
			proc_wait(p, 10000);
		}
	}
	return p->exit_status;
}

bool proc_log_has(const struct proc *p, const char *text)
{
	size_t len;
	uint8_t *data = colo_test_read_file(p->log, &len);
	bool found;

	if (!data)
		return false;
	data[len] = '\0';
	found = strstr((char *)data, text) != NULL;
	free(data);
	return found;
}

void proc_dump_log(const struct proc *p)
{
	size_t len;
	uint8_t *data = colo_test_read_file(p->log, &len);

	fprintf(stderr, "# ---- log of %s ----\n", p->name);
	if (data) {
		fwrite(data, 1, len, stderr);
		free(data);
	}
}

Colo__ControlResponse *ctl(const struct proc *p, Colo__ControlRequest__CmdCase cmd,
			   uint32_t arg, char *errbuf, size_t errlen)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest st = COLO__STATUS_REQUEST__INIT;
	Colo__FailoverRequest fo = COLO__FAILOVER_REQUEST__INIT;
	Colo__SetIntervalRequest si = COLO__SET_INTERVAL_REQUEST__INIT;
	Colo__CheckpointRequest cp = COLO__CHECKPOINT_REQUEST__INIT;
	Colo__StatsRequest ss = COLO__STATS_REQUEST__INIT;
	Colo__VerifyRequest vr = COLO__VERIFY_REQUEST__INIT;
	Colo__ControlResponse *resp = NULL;
	struct colo_err err;

	req.version = COLO_CTL_VERSION;
	req.cmd_case = cmd;
	switch (cmd) {
	case COLO__CONTROL_REQUEST__CMD_STATUS: req.status = &st; break;
	case COLO__CONTROL_REQUEST__CMD_FAILOVER: req.failover = &fo; break;
	case COLO__CONTROL_REQUEST__CMD_SET_INTERVAL: si.ms = arg; req.set_interval = &si; break;
	case COLO__CONTROL_REQUEST__CMD_CHECKPOINT: req.checkpoint = &cp; break;
	case COLO__CONTROL_REQUEST__CMD_STATS: req.stats = &ss; break;
	case COLO__CONTROL_REQUEST__CMD_VERIFY: req.verify = &vr; break;
	default: break;
	}
	colo_err_clear(&err);
	if (colo_ctl_call(p->sock, &req, &resp, 5000, &err) != 0) {
		if (errbuf)
			snprintf(errbuf, errlen, "%s", err.msg);
		return NULL;
	}
	return resp;
}

bool ctl_status(const struct proc *p, Colo__Role *role, char *state, size_t slen,
		uint64_t *last, uint64_t *gen)
{
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_STATUS, 0, NULL, 0);
	bool ok = r && r->ok && r->result_case == COLO__CONTROL_RESPONSE__RESULT_STATUS;

	if (ok) {
		if (role)
			*role = r->status->role;
		if (state)
			snprintf(state, slen, "%s", r->status->state);
		if (last)
			*last = r->status->last_committed;
		if (gen)
			*gen = r->status->generation;
	}
	if (r)
		colo__control_response__free_unpacked(r, NULL);
	return ok;
}

bool ctl_verify_clean(const struct proc *p, uint64_t *checked, char *why, size_t len)
{
	char err[256] = "";
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_VERIFY, 0, err,
				       sizeof(err));
	bool ok = false;

	if (!r) {
		snprintf(why, len, "%s", err);
		return false;
	}
	if (!r->ok || r->result_case != COLO__CONTROL_RESPONSE__RESULT_VERIFY) {
		snprintf(why, len, "%s", r->error ? r->error : "no verify result");
	} else {
		if (checked)
			*checked = r->verify->pages_checked;
		ok = r->verify->supported && r->verify->pages_bad == 0 &&
		     r->verify->pages_checked > 0;
		snprintf(why, len, "%" PRIu64 " of %" PRIu64 " pages bad (%s)%s%s",
			 r->verify->pages_bad, r->verify->pages_checked,
			 r->verify->summary ? r->verify->summary : "",
			 r->verify->n_bad_pages ? ", first: " : "",
			 r->verify->n_bad_pages ? r->verify->bad_pages[0] : "");
	}
	colo__control_response__free_unpacked(r, NULL);
	return ok;
}

bool wait_for(bool (*cond)(void *ud), void *ud, int ms)
{
	return colo_test_wait(cond, ud, ms);
}

bool cond_protected(void *ud)
{
	char state[64];

	return ctl_status(ud, NULL, state, sizeof(state), NULL, NULL) &&
	       strcmp(state, "protected") == 0;
}

bool cond_primary(void *ud)
{
	Colo__Role role;

	return ctl_status(ud, &role, NULL, 0, NULL, NULL) && role == COLO__ROLE__ROLE_PRIMARY;
}

bool cond_committed(void *ud)
{
	struct wait_arg *w = ud;
	uint64_t last;

	return ctl_status(w->p, NULL, NULL, 0, &last, NULL) && last >= w->n;
}

bool cond_log(void *ud)
{
	struct wait_arg *w = ud;

	return proc_log_has(w->p, w->text);
}

/* Is the process stopped (state T in /proc/PID/stat)? */
static bool is_stopped(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'T' || p[2] == 't');
}

bool cond_stopped(void *proc)
{
	return is_stopped(((struct proc *)proc)->pid);
}

bool cond_exited(void *ud)
{
	return proc_wait(ud, 0);
}

/* ---- additions for the authentication tests (issue 11) ---- */

void proc_startv(struct proc *p, const char *bin, const char *name,
		 const char *const *args)
{
	const char *a[PROC_ARGS_MAX + 1] = { NULL };

	for (size_t i = 0; args && args[i]; i++) {
		ck_assert_uint_lt(i, PROC_ARGS_MAX);
		a[i] = args[i];
	}
	/* proc_start stops at the first NULL: the unused slots end the list. */
	proc_start(p, bin, name, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
		   a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17], a[18], a[19], a[20],
		   a[21], a[22], a[23], a[24], a[25], a[26], a[27], a[28], a[29], a[30], a[31],
		   (const char *)NULL);
}

int proc_log_count(const struct proc *p, const char *text)
{
	size_t len;
	uint8_t *data = colo_test_read_file(p->log, &len);
	int count = 0;

	if (!data)
		return 0;
	data[len] = '\0';
	for (const char *at = (char *)data; (at = strstr(at, text)); at += strlen(text))
		count++;
	free(data);
	return count;
}

/* The inodes of the sockets a process holds: /proc/PID/fd links "socket:[N]". */
static size_t socket_inodes(pid_t pid, unsigned long *out, size_t max)
{
	char path[64], link[64];
	size_t n = 0;

	for (int fd = 0; fd < 1024 && n < max; fd++) {
		ssize_t l;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		l = readlink(path, link, sizeof(link) - 1);
		if (l <= 0)
			continue;
		link[l] = '\0';
		if (sscanf(link, "socket:[%lu]", &out[n]) == 1)
			n++;
	}
	return n;
}

uint16_t proc_udp_port(const struct proc *p)
{
	unsigned long inodes[256];
	size_t n = socket_inodes(p->pid, inodes, 256);
	char path[64], line[512];
	uint16_t port = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/net/udp", (int)p->pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* "sl local_address rem_address st ... uid timeout inode": addresses in hex */
	while (!port && fgets(line, sizeof(line), f)) {
		unsigned addr, lport;
		unsigned long inode;

		if (sscanf(line, " %*u: %x:%x %*x:%*x %*x %*x:%*x %*x:%*x %*x %*u %*u %lu",
			   &addr, &lport, &inode) != 3)
			continue;
		for (size_t i = 0; i < n; i++)
			if (inodes[i] == inode)
				port = (uint16_t)lport;
	}
	fclose(f);
	return port;
}

const char *pair_keyfile(const char *name)
{
	static char paths[4][300];
	static int k;
	struct colo_err err;

	k = (k + 1) % 4;
	snprintf(paths[k], sizeof(paths[k]), "%s/%s", pair_dir(), name);
	colo_err_clear(&err);
	ck_assert_msg(colo_psk_generate(paths[k], &err) == 0, "%s", err.msg);
	return paths[k];
}

bool ctl_refusals(const struct proc *p, uint64_t *peers, uint64_t *heartbeats)
{
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_STATS, 0, NULL, 0);
	bool ok = r && r->ok && r->result_case == COLO__CONTROL_RESPONSE__RESULT_STATS;

	if (ok) {
		if (peers)
			*peers = r->stats->peers_refused;
		if (heartbeats)
			*heartbeats = r->stats->heartbeats_refused;
	}
	if (r)
		colo__control_response__free_unpacked(r, NULL);
	return ok;
}

bool ctl_stat(const struct proc *p, const char *name, uint64_t *value)
{
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_STATS, 0, NULL, 0);
	bool ok = r && r->ok && r->result_case == COLO__CONTROL_RESPONSE__RESULT_STATS;
	const Colo__Stats *st = ok ? r->stats : NULL;

	*value = 0;
	if (!ok)
		;
	else if (strcmp(name, "checkpoints") == 0)
		*value = st->checkpoints;
	else if (strcmp(name, "compared") == 0)
		*value = st->compared;
	else if (strcmp(name, "matched") == 0)
		*value = st->matched;
	else if (strcmp(name, "mismatches") == 0)
		*value = st->mismatches;
	else if (strcmp(name, "compare_dropped") == 0)
		*value = st->compare_dropped;
	else if (strcmp(name, "loop_busy_max_us") == 0)
		*value = st->loop_busy_max_us;
	else if (strcmp(name, "loop_cpu_max_us") == 0)
		*value = st->loop_cpu_max_us;
	else if (strcmp(name, "pipelined") == 0)
		*value = st->pipelined;
	else if (strcmp(name, "streams_held") == 0)
		*value = st->streams_held;
	else if (strncmp(name, "cause:", 6) == 0) {
		for (size_t i = 0; i < st->n_checkpoints_by_cause; i++)
			if (strcmp(st->checkpoints_by_cause[i]->key, name + 6) == 0)
				*value = st->checkpoints_by_cause[i]->value;
	} else
		ok = false;
	if (r)
		colo__control_response__free_unpacked(r, NULL);
	return ok;
}

bool ctl_peer(const struct proc *p, char *peer, size_t len)
{
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_STATUS, 0, NULL, 0);
	bool ok = r && r->ok && r->result_case == COLO__CONTROL_RESPONSE__RESULT_STATUS;

	if (ok)
		snprintf(peer, len, "%s", r->status->peer ? r->status->peer : "");
	if (r)
		colo__control_response__free_unpacked(r, NULL);
	return ok;
}

bool ctl_block_hash(const struct proc *p, char *out, size_t len, uint64_t *last)
{
	Colo__ControlResponse *r = ctl(p, COLO__CONTROL_REQUEST__CMD_VERIFY, 0, NULL, 0);
	bool ok = r && r->ok && r->result_case == COLO__CONTROL_RESPONSE__RESULT_VERIFY &&
		  r->verify->n_block_hashes > 0;

	if (ok) {
		snprintf(out, len, "%s", r->verify->block_hashes[0]);
		if (last)
			*last = r->verify->last_committed;
	}
	if (r)
		colo__control_response__free_unpacked(r, NULL);
	return ok;
}

struct state_wait {
	struct proc *p;
	const char *state;
};

static bool state_is(void *ud)
{
	struct state_wait *w = ud;
	char state[64];

	return ctl_status(w->p, NULL, state, sizeof(state), NULL, NULL) &&
	       strcmp(state, w->state) == 0;
}

bool proc_wait_state(struct proc *p, const char *state, int ms)
{
	struct state_wait w = { p, state };

	if (wait_for(state_is, &w, ms))
		return true;
	proc_dump_log(p);
	return false;
}
