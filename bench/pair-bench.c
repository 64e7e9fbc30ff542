/*
 * pair-bench.c: colo-pair-bench, the replication figures of a real pair.
 *
 * Starts colo-primary and colo-secondary as processes on loopback (the
 * binaries next to this one's directory, or $COLO_BIN_DIR) and measures,
 * each against a baseline taken in the same run:
 *
 *   round trip   checkpoint round trip p50/p99 (pause to LOADED) and
 *                sustained checkpoints/s at ~1k and ~10k dirty pages per
 *                checkpoint.  Baseline: memcpy of those pages plus a
 *                loopback TCP send of the checkpoint's bytes and a 4-byte
 *                answer, timed in this process: what one checkpoint costs
 *                with no colo code at all.  With each case, where the time
 *                goes (both nodes' phases), each loop's longest busy
 *                stretch over the pair's life (its first sync included),
 *                and the secondary's resident memory against guest RAM
 *                plus its largest checkpoint's pages.
 *   throughput   memtouch writes/s with the primary alone (unprotected)
 *                and then protected, same process, same guest.
 *   failover     kill -9 of the primary; the secondary logs how long after
 *                the last heartbeat it served as primary; the overhead is
 *                that minus heartbeat-timeout-ms.  Baseline: the timeout.
 *   control      what the control socket promises, in time (these were
 *                timed assertions in make check once): checkpoints/s after
 *                `set-interval` 200 and 10 ms as the interval they give
 *                against the one asked, and the fast/slow ratio; `colo-ctl
 *                checkpoint` latency against a `status` round trip on the
 *                same socket; the wait min-interval-ms imposes on a second
 *                on-demand checkpoint against min-interval-ms; heartbeats
 *                sent and received per heartbeat-interval-ms.
 *
 * The guest for the round-trip runs: memtouch writing whole pages in
 * sequence over a RAM of exactly N pages, paced so that every page is
 * dirty by the next checkpoint; the dirty pages actually sent per
 * checkpoint are read back from the primary's stats and printed.
 *
 * Every daemon is started and stopped by this process, by pid, and dies
 * with it (PR_SET_PDEATHSIG).  Nothing is asserted: figures are printed.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "colo.pb-c.h"
#include "ctl.h"
#include "image.h"
#include "psk.h"
#include "record.h"

#define PAGE 4096u

static struct {
	bool quick, json;
	const char *only;
	bool record_both;        /* --record on the primary too */
	const char *tracking;    /* --dirty-tracking of both nodes (round trip) */
	char bin_dir[PATH_MAX];
	char tmp[64];
} opt;

static json_t *out;

/* ---- small helpers ---- */

static double now_s(void)
{
	return (double)colo_now_ns() / 1e9;
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* The daemons of the running case: their logs are shown when it fails. */
struct daemon;
static struct daemon *live[2];
static void d_dump_log(const struct daemon *d);

static void die(const char *fmt, ...)
{
	va_list ap;

	for (int i = 0; i < 2; i++)
		if (live[i])
			d_dump_log(live[i]);

	fputs("colo-pair-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

/* A TCP port free for both TCP and UDP (the secondary binds both). */
static uint16_t free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t len = sizeof(a);
		int t = socket(AF_INET, SOCK_STREAM, 0), u = -1;
		uint16_t port = 0;

		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (t >= 0 && bind(t, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		    getsockname(t, (struct sockaddr *)&a, &len) == 0) {
			u = socket(AF_INET, SOCK_DGRAM, 0);
			if (u >= 0 && bind(u, (struct sockaddr *)&a, sizeof(a)) == 0)
				port = ntohs(a.sin_port);
		}
		if (u >= 0)
			close(u);
		if (t >= 0)
			close(t);
		if (port)
			return port;
	}
	die("no free loopback port");
	return 0;
}

/* ---- daemons ---- */

struct daemon {
	pid_t pid;
	bool exited;
	char name[32];
	char sock[128];
	char log[128];
};

#define MAX_ARGS 48

static void d_start(struct daemon *d, const char *prog, const char *name, ...)
{
	const char *argv[MAX_ARGS + 8];
	char bin[PATH_MAX + 32], state[128];
	int argc = 0;
	va_list ap;
	pid_t parent = getpid();

	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", opt.tmp, name);
	snprintf(d->log, sizeof(d->log), "%s/%s.log", opt.tmp, name);
	/* a fresh state dir per daemon: a generation must not carry over */
	static unsigned runs;

	snprintf(state, sizeof(state), "%s/%s.%u.state", opt.tmp, name, ++runs);
	snprintf(bin, sizeof(bin), "%s/%s", opt.bin_dir, prog);
	unlink(d->log);
	live[name[0] == 'a' ? 0 : 1] = d;
	argv[argc++] = bin;
	argv[argc++] = "--name";
	argv[argc++] = name;
	argv[argc++] = "--control";
	argv[argc++] = d->sock;
	argv[argc++] = "--state-dir";
	argv[argc++] = state;
	va_start(ap, name);
	for (const char *a; (a = va_arg(ap, const char *)) && argc < MAX_ARGS;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	d->pid = fork();
	if (d->pid < 0)
		die("fork: %s", strerror(errno));
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

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

static bool d_wait(struct daemon *d, double timeout_s)
{
	double end = now_s() + timeout_s;
	int st;

	while (!d->exited) {
		pid_t r = waitpid(d->pid, &st, WNOHANG);

		if (r == d->pid) {
			d->exited = true;
			break;
		}
		if (now_s() >= end)
			return false;
		sleep_s(0.002);
	}
	return true;
}

static void d_stop(struct daemon *d)
{
	for (int i = 0; i < 2; i++)
		if (live[i] == d)
			live[i] = NULL;
	if (d->pid <= 0 || d->exited)
		return;
	kill(d->pid, SIGTERM);
	if (!d_wait(d, 10)) {
		kill(d->pid, SIGKILL);
		d_wait(d, 10);
	}
}

static void d_dump_log(const struct daemon *d)
{
	char line[1024];
	FILE *f = fopen(d->log, "r");

	if (!f)
		return;
	fprintf(stderr, "---- log of %s ----\n", d->name);
	while (fgets(line, sizeof(line), f))
		fputs(line, stderr);
	fclose(f);
}

static Colo__ControlResponse *d_ctl_arg(const struct daemon *d,
					Colo__ControlRequest__CmdCase cmd, uint32_t arg,
					struct colo_err *err);

/* A request; NULL (and the reason in err) if the node does not answer. */
static Colo__ControlResponse *d_ctl(const struct daemon *d, Colo__ControlRequest__CmdCase cmd,
				    struct colo_err *err)
{
	return d_ctl_arg(d, cmd, 0, err);
}

/* A request with an argument (set-interval's ms); NULL and why in err. */
static Colo__ControlResponse *d_ctl_arg(const struct daemon *d,
					Colo__ControlRequest__CmdCase cmd, uint32_t arg,
					struct colo_err *err)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest st = COLO__STATUS_REQUEST__INIT;
	Colo__StatsRequest ss = COLO__STATS_REQUEST__INIT;
	Colo__SetIntervalRequest si = COLO__SET_INTERVAL_REQUEST__INIT;
	Colo__CheckpointRequest cp = COLO__CHECKPOINT_REQUEST__INIT;
	Colo__ControlResponse *resp = NULL;

	req.version = COLO_CTL_VERSION;
	req.cmd_case = cmd;
	if (cmd == COLO__CONTROL_REQUEST__CMD_STATUS) {
		req.status = &st;
	} else if (cmd == COLO__CONTROL_REQUEST__CMD_SET_INTERVAL) {
		si.ms = arg;
		req.set_interval = &si;
	} else if (cmd == COLO__CONTROL_REQUEST__CMD_CHECKPOINT) {
		req.checkpoint = &cp;
	} else {
		req.stats = &ss;
	}
	colo_err_clear(err);
	if (colo_ctl_call(d->sock, &req, &resp, 5000, err) != 0)
		return NULL;
	if (!resp->ok) {
		colo_err_set(err, EINVAL, "%s", resp->error ? resp->error : "refused");
		colo__control_response__free_unpacked(resp, NULL);
		return NULL;
	}
	return resp;
}

static Colo__ControlResponse *d_status(const struct daemon *d)
{
	struct colo_err err;

	return d_ctl(d, COLO__CONTROL_REQUEST__CMD_STATUS, &err);
}

/* Wait until the node reports `state` (and `role` unless < 0). */
static bool d_wait_state(struct daemon *d, const char *state, int role, double timeout_s)
{
	double end = now_s() + timeout_s;

	do {
		Colo__ControlResponse *r = d_status(d);
		bool ok = r && r->status && (!state || strcmp(r->status->state, state) == 0) &&
			  (role < 0 || (int)r->status->role == role);

		if (r)
			colo__control_response__free_unpacked(r, NULL);
		if (ok)
			return true;
		if (d_wait(d, 0))
			return false;
		sleep_s(0.005);
	} while (now_s() < end);
	return false;
}

static uint64_t d_last_committed(struct daemon *d)
{
	Colo__ControlResponse *r = d_status(d);
	uint64_t v = 0;

	if (!r)
		die("%s does not answer", d->name);
	v = r->status->last_committed;
	colo__control_response__free_unpacked(r, NULL);
	return v;
}

/* Total writes of a memtouch guest, from "memtouch: R writes/s, N writes". */
static uint64_t d_guest_writes(struct daemon *d)
{
	Colo__ControlResponse *r = d_status(d);
	const char *p;
	uint64_t v = 0;

	if (!r)
		die("%s does not answer", d->name);
	p = strstr(r->status->guest, "writes/s, ");
	if (!p || sscanf(p + 10, "%" SCNu64, &v) != 1)
		die("%s: cannot read the guest's writes from '%s'", d->name, r->status->guest);
	colo__control_response__free_unpacked(r, NULL);
	return v;
}

/* ---- baseline: memcpy of the pages + loopback TCP of the bytes ---- */

struct echo {
	int lfd;
	size_t bytes;
	int reps;
};

static void *echo_main(void *arg)
{
	struct echo *e = arg;
	int fd = accept(e->lfd, NULL, NULL);
	char *buf = malloc(1 << 16);
	uint32_t ack = 0;

	for (int i = 0; fd >= 0 && buf && i < e->reps; i++) {
		size_t got = 0;

		while (got < e->bytes) {
			size_t want = e->bytes - got;
			ssize_t n = read(fd, buf, want < (1u << 16) ? want : 1u << 16);

			if (n <= 0)
				goto out;
			got += (size_t)n;
		}
		if (write(fd, &ack, sizeof(ack)) != (ssize_t)sizeof(ack))
			break;
	}
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Median µs of: copy `pages` pages, send `bytes` over loopback TCP, read
 * a 4-byte answer. */
/*
 * guest_mb 0: the pages are one block of exactly their size, copied again
 * and again (after the first time from the CPU's cache): the "hot"
 * baseline, as the figures before 2026-12-07 were read.  Otherwise they
 * are `pages` pages picked at random, each time others, from a guest RAM
 * of guest_mb MiB, as a checkpoint finds them: the baseline the ratios
 * use (docs/BENCHMARKS.md, "The baseline's pages").
 */
static double baseline_us(uint64_t pages, uint64_t bytes, unsigned guest_mb)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	struct echo e = { .bytes = bytes ? bytes : 1, .reps = opt.quick ? 30 : 100 };
	pthread_t th;
	int fd, one = 1;
	size_t ram = (size_t)(pages ? pages : 1) * PAGE;
	size_t gram = (size_t)guest_mb << 20 > ram ? (size_t)guest_mb << 20 : ram;
	char *src = malloc(guest_mb ? gram : ram), *dst = malloc(ram), *buf = malloc(e.bytes);
	size_t *pick = calloc(pages ? pages : 1, sizeof(size_t));
	double *t = calloc((size_t)e.reps, sizeof(double)), med;
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	if (!src || !dst || !buf || !t || !pick)
		die("out of memory");
	memset(src, 1, guest_mb ? gram : ram);
	memset(dst, 2, ram);
	memset(buf, 3, e.bytes);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	e.lfd = socket(AF_INET, SOCK_STREAM, 0);
	if (e.lfd < 0 || bind(e.lfd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    getsockname(e.lfd, (struct sockaddr *)&a, &len) != 0 || listen(e.lfd, 1) != 0)
		die("baseline socket: %s", strerror(errno));
	pthread_create(&th, NULL, echo_main, &e);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		die("baseline connect: %s", strerror(errno));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < e.reps; i++) {
		double t0;
		size_t sent = 0;
		uint32_t ack;

		/* The picking is not timed. */
		for (uint64_t k = 0; guest_mb && k < pages; k++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			pick[k] = (size_t)(rng % (gram / PAGE)) * PAGE;
		}
		t0 = now_s();
		if (guest_mb) {
			for (uint64_t k = 0; k < pages; k++)
				memcpy(dst + k * PAGE, src + pick[k], PAGE);
		} else {
			memcpy(dst, src, ram);
			src[(size_t)i % ram]++;
		}
		while (sent < e.bytes) {
			ssize_t n = write(fd, buf + sent, e.bytes - sent);

			if (n <= 0)
				die("baseline write: %s", strerror(errno));
			sent += (size_t)n;
		}
		if (read(fd, &ack, sizeof(ack)) != (ssize_t)sizeof(ack))
			die("baseline read failed");
		t[i] = (now_s() - t0) * 1e6;
	}
	close(fd);
	pthread_join(th, NULL);
	close(e.lfd);
	med = percentile(t, (size_t)e.reps, 0.5);
	free(src);
	free(dst);
	free(buf);
	free(pick);
	free(t);
	return med;
}

/* ---- round trip and sustained rate ---- */

struct rt_result {
	bool rec_ok;
	double cps, p50_us, p99_us, pages, bytes, base_us, base_hot_us;
	char phases[160];
	char sec_phases[96];            /* the secondary's decode, load, commit */
	double busy_a_ms, busy_b_ms;    /* each loop's longest busy stretch */
	double cpu_a_ms, cpu_b_ms;      /* and its thread's CPU in its longest turn */
	double rss_b_mib, hwm_b_mib;    /* the secondary's resident memory, peak */
	double pages_max;               /* the largest checkpoint (the secondary's) */
	double cpu_all, cpu_rec;        /* CPUs both daemons used while timed; of
					   it, their recorder threads */
};

/* CPU seconds the threads of pid named `name` (all of them: NULL) used. */
static double threads_cpu_s(pid_t pid, const char *name)
{
	char path[320], comm[32], line[1024];
	double ticks = 0;
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d)) != NULL) {
		unsigned long ut, st;
		char *p;
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)pid, e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(line, sizeof(line), f))
			line[0] = '\0';
		fclose(f);
		/* pid (comm) state ...: utime and stime are fields 14 and 15 */
		p = strrchr(line, ')');
		if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
				 &ut, &st) != 2)
			continue;
		if (name) {
			char *open = strchr(line, '(');
			size_t n = open && p > open ? (size_t)(p - open - 1) : 0;

			snprintf(comm, sizeof(comm), "%.*s", (int)(n < sizeof(comm) ? n : 0),
				 open ? open + 1 : "");
			if (strcmp(comm, name) != 0)
				continue;
		}
		ticks += (double)(ut + st);
	}
	closedir(d);
	return ticks / (double)sysconf(_SC_CLK_TCK);
}

/* A "Vm...:" line of /proc/PID/status in MiB (0: not there). */
static double proc_mib(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	double kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, kl) == 0) {
			kib = strtod(line + kl, NULL);
			break;
		}
	fclose(f);
	return kib / 1024;
}

static const Colo__PhaseTiming *phase(const Colo__ControlResponse *r, const char *name)
{
	for (size_t i = 0; i < r->stats->n_phases; i++)
		if (strcmp(r->stats->phases[i]->phase, name) == 0)
			return r->stats->phases[i];
	return NULL;
}

/* p50 of the named phases of r, "name X.XX, ..." in ms, into buf. */
static void phases_text(const Colo__ControlResponse *r, const char *const *names, size_t n,
			char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		const Colo__PhaseTiming *ph = phase(r, names[i]);

		if (ph && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s %.2f", i ? ", " : "",
						names[i], ph->p50_us / 1000);
	}
}

/*
 * One round-trip case: the guest's workload and the checkpoint interval.
 * "sparse": random 64-byte writes over a RAM much larger than the target,
 * at `rate` writes/s, so each checkpoint sees about that many pages with a
 * few bytes changed (what delta encoding is for).  "full": whole pages
 * rewritten in sequence over a RAM of exactly the target, so every page is
 * new in every checkpoint (delta's worst case; LZ4 does the work).
 */
struct rt_case {
	const char *workload;
	uint64_t pages;                 /* dirty pages per checkpoint wanted */
	unsigned interval_ms;           /* 1: as fast as it goes */
	unsigned ram_mb;
	const char *pattern, *bytes;
	uint64_t rate;                  /* writes/s */
};

static const struct rt_case rt_cases[] = {
	{ "sparse", 1024, 10, 64, "random", "64", 1024 * 100 },
	{ "sparse", 1024, 1, 64, "random", "64", 1024 * 600 },
	{ "full", 1024, 10, 4, "sequential", "4096", 1024 * 150 },
	{ "full", 1024, 1, 4, "sequential", "4096", 1024 * 1000 },
	{ "sparse", 10240, 50, 256, "random", "64", 10240 * 20 },
	{ "sparse", 10240, 1, 256, "random", "64", 10240 * 60 },
	{ "full", 10240, 50, 40, "sequential", "4096", 10240 * 30 },
	{ "full", 10240, 1, 40, "sequential", "4096", 10240 * 100 },
};

/* How the pair's peers authenticate (docs/security.md). */
enum rt_sec { SEC_NONE, SEC_AUTH, SEC_ENCRYPT };

/* The key file every keyed pair of this run shares. */
static const char *psk_path(void)
{
	static char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/psk", opt.tmp);
	if (stat(path, &st) != 0) {
		struct colo_err err;

		colo_err_clear(&err);
		if (colo_psk_generate(path, &err) != 0)
			die("%s", err.msg);
	}
	return path;
}

/* Run one case for `secs` after a warm-up; rec: both nodes record there;
 * sec: with a key (and encryption). */
static void run_rt_sec(const struct rt_case *c, double secs, const char *rec,
		       enum rt_sec sec, struct rt_result *res)
{
	const char *psk = sec == SEC_NONE ? "" : psk_path();
	const char *enc = sec == SEC_ENCRYPT ? "yes" : "no";
	struct daemon a, b;
	char listen[32], ram[16], rate[24], interval[16], rec_a[200], rec_b[200];
	uint64_t c0, c1, ck0, ck1, pg0, pg1, by0, by1;
	Colo__ControlResponse *r;
	const Colo__PhaseTiming *rt;
	struct colo_err err;
	double t0, t1, cpu0, rec0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
	snprintf(ram, sizeof(ram), "%u", c->ram_mb);
	snprintf(rate, sizeof(rate), "%" PRIu64, c->rate);
	snprintf(interval, sizeof(interval), "%u", c->interval_ms);
	if (rec) {
		snprintf(rec_a, sizeof(rec_a), "%s/a", rec);
		snprintf(rec_b, sizeof(rec_b), "%s/b", rec);
	}
	d_start(&b, "colo-secondary", "b", "--guest", "memtouch",
		"--listen", listen, "--ram-mb", ram, "--record", rec ? rec_b : "",
		"--psk-file", psk, "--encrypt", enc, "--dirty-tracking", opt.tracking, NULL);
	d_start(&a, "colo-primary", "a", "--guest", "memtouch",
		"--peer", listen, "--ram-mb", ram, "--dirty-tracking", opt.tracking,
		"--memtouch-pattern", c->pattern, "--memtouch-bytes", c->bytes,
		"--memtouch-rate", rate, "--checkpoint-interval-ms", interval,
		"--min-interval-ms", "0", "--record", rec && opt.record_both ? rec_a : "",
		"--psk-file", psk, "--encrypt", enc, NULL);
	if (!d_wait_state(&a, "protected", -1, 60)) {
		die("the pair did not get protected");
	}
	sleep_s(opt.quick ? 0.5 : 1.0);
	r = d_ctl(&a, COLO__CONTROL_REQUEST__CMD_STATS, &err);
	if (!r)
		die("stats: %s", err.msg);
	ck0 = r->stats->checkpoints;
	pg0 = r->stats->pages_sent;
	by0 = r->stats->bytes_sent;
	colo__control_response__free_unpacked(r, NULL);
	c0 = d_last_committed(&a);
	cpu0 = threads_cpu_s(a.pid, NULL) + threads_cpu_s(b.pid, NULL);
	rec0 = threads_cpu_s(a.pid, "colo-recorder") + threads_cpu_s(b.pid, "colo-recorder");
	t0 = now_s();
	sleep_s(secs);
	c1 = d_last_committed(&a);
	t1 = now_s();
	res->cpu_all = (threads_cpu_s(a.pid, NULL) + threads_cpu_s(b.pid, NULL) - cpu0) /
		       (t1 - t0);
	res->cpu_rec = (threads_cpu_s(a.pid, "colo-recorder") +
			threads_cpu_s(b.pid, "colo-recorder") - rec0) / (t1 - t0);
	r = d_ctl(&a, COLO__CONTROL_REQUEST__CMD_STATS, &err);
	if (!r)
		die("stats: %s", err.msg);
	ck1 = r->stats->checkpoints;
	pg1 = r->stats->pages_sent;
	by1 = r->stats->bytes_sent;
	rt = phase(r, "round-trip");
	res->p50_us = rt ? rt->p50_us : 0;
	res->p99_us = rt ? rt->p99_us : 0;
	{
		static const char *const names[] = { "pause", "copy", "encode", "send", "ack" };

		phases_text(r, names, 5, res->phases, sizeof(res->phases));
	}
	res->busy_a_ms = (double)r->stats->loop_busy_max_us / 1000;
	res->cpu_a_ms = (double)r->stats->loop_cpu_max_us / 1000;
	colo__control_response__free_unpacked(r, NULL);
	r = d_ctl(&b, COLO__CONTROL_REQUEST__CMD_STATS, &err);
	if (!r)
		die("stats of the secondary: %s", err.msg);
	{
		static const char *const names[] = { "decode", "load", "commit" };

		phases_text(r, names, 3, res->sec_phases, sizeof(res->sec_phases));
	}
	res->busy_b_ms = (double)r->stats->loop_busy_max_us / 1000;
	res->cpu_b_ms = (double)r->stats->loop_cpu_max_us / 1000;
	res->pages_max = (double)r->stats->checkpoint_pages_max;
	colo__control_response__free_unpacked(r, NULL);
	res->rss_b_mib = proc_mib(b.pid, "VmRSS:");
	res->hwm_b_mib = proc_mib(b.pid, "VmHWM:");
	res->rec_ok = true;
	if (rec) {
		/* the recording must still be running on both nodes */
		struct daemon *ds[2] = { &a, &b };

		for (int i = 0; i < 2; i++) {
			Colo__ControlResponse *st = d_status(ds[i]);

			if (!st || strstr(st->status->recording, "stopped"))
				res->rec_ok = false;
			if (st)
				colo__control_response__free_unpacked(st, NULL);
		}
	}
	res->cps = (double)(c1 - c0) / (t1 - t0);
	res->pages = ck1 > ck0 ? (double)(pg1 - pg0) / (double)(ck1 - ck0) : 0;
	res->bytes = ck1 > ck0 ? (double)(by1 - by0) / (double)(ck1 - ck0) : 0;
	d_stop(&a);
	d_stop(&b);
	res->base_us = baseline_us((uint64_t)res->pages, (uint64_t)res->bytes, c->ram_mb);
	res->base_hot_us = baseline_us((uint64_t)res->pages, (uint64_t)res->bytes, 0);
}

static void run_rt_rec(const struct rt_case *c, double secs, const char *rec,
		       struct rt_result *res)
{
	run_rt_sec(c, secs, rec, SEC_NONE, res);
}

static void run_rt(const struct rt_case *c, double secs, struct rt_result *res)
{
	run_rt_rec(c, secs, NULL, res);
}

/* ---- the cost of recording ---- */

/*
 * Checkpoints per second back to back, without and with --record on both
 * nodes, alternating, ROUNDS each; the medians and their ratio.  Then the
 * cost of reaching a checkpoint in a recording of a 1 GiB guest: its
 * keyframe plus keyframe-every - 1 checkpoints (the worst case).
 */
static int cmp_dbl(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* Time to rebuild a checkpoint of a recorded 1 GiB guest. */
static void bench_replay_cost(void)
{
	struct daemon a, b;
	char listen[32], rec[128], rec_b[160];
	struct colo_recording *r;
	struct colo_err err;
	struct colo_image img;
	size_t worst = 0, key = 0;
	double t0, t_worst, t_key, t_copy;
	uint8_t *x, *y;

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
	snprintf(rec, sizeof(rec), "%s/rec-1g", opt.tmp);
	snprintf(rec_b, sizeof(rec_b), "%s", rec);
	d_start(&b, "colo-secondary", "b", "--guest", "memtouch", "--listen", listen,
		"--ram-mb", "1024", "--record", rec_b, "--keyframe-every", "100", NULL);
	d_start(&a, "colo-primary", "a", "--guest", "memtouch", "--peer", listen,
		"--ram-mb", "1024", "--memtouch-rate", "100000", "--checkpoint-interval-ms", "10",
		NULL);
	if (!d_wait_state(&a, "protected", -1, 120))
		die("the 1 GiB pair did not get protected");
	for (double end = now_s() + 120; d_last_committed(&b) < 230; sleep_s(0.1))
		if (d_wait(&a, 0) || now_s() > end)
			die("the 1 GiB pair did not reach checkpoint 230 (the primary %s)",
			    d_wait(&a, 0) ? "stopped" : "still runs, after 120 s");
	d_stop(&a);
	d_stop(&b);
	colo_err_clear(&err);
	if (colo_recording_open(rec, &r, &err) != 0)
		die("%s", err.msg);
	for (size_t i = 0; i < r->n; i++) {
		if (i - r->e[i].key > worst - r->e[worst].key)
			worst = i;
		if (r->e[i].keyframe && i > 0)
			key = i;
	}
	t0 = now_s();
	if (colo_recording_state(r, &r->e[worst], &img, &err) != 0)
		die("%s", err.msg);
	t_worst = now_s() - t0;
	colo_image_free(&img);
	t0 = now_s();
	if (colo_recording_state(r, &r->e[key], &img, &err) != 0)
		die("%s", err.msg);
	t_key = now_s() - t0;
	colo_image_free(&img);
	/* baseline: copying 1 GiB once */
	x = malloc(1u << 30);
	y = malloc(1u << 30);
	if (!x || !y)
		die("out of memory");
	memset(x, 1, 1u << 30);
	memset(y, 2, 1u << 30);
	t0 = now_s();
	memcpy(y, x, 1u << 30);
	t_copy = now_s() - t0;
	if (y[(size_t)rand() % (1u << 30)] != 1)
		die("memcpy baseline: wrong bytes");
	free(x);
	free(y);
	if (!opt.json)
		printf("\nReaching a checkpoint of a recorded 1 GiB guest (keyframe-every 100,\n"
		       "memtouch, 100k random 64-byte writes/s, 10 ms interval):\n"
		       "  a keyframe alone            %8.0f ms (%.1fx a 1 GiB memcpy, %.0f ms)\n"
		       "  keyframe + %3zu checkpoints  %8.0f ms (%.1fx)\n",
		       t_key * 1e3, t_key / t_copy, t_copy * 1e3, worst - r->e[worst].key,
		       t_worst * 1e3, t_worst / t_copy);
	json_object_set_new(out, "replay_1g", json_pack("{s:f, s:f, s:I, s:f}", "keyframe_ms",
							t_key * 1e3, "worst_ms", t_worst * 1e3,
							"worst_deltas",
							(json_int_t)(worst - r->e[worst].key),
							"memcpy_1g_ms", t_copy * 1e3));
	colo_recording_close(r);
}

static void bench_record(void)
{
	static const struct rt_case cases[] = {
		{ "sparse", 1024, 1, 64, "random", "64", 1024 * 600 },
		{ "full", 1024, 1, 4, "sequential", "4096", 1024 * 1000 },
	};
	const int rounds = opt.quick ? 1 : 3;
	double secs = opt.quick ? 2 : 4;
	json_t *arr = json_array();
	char rec[128];

	if (!opt.json)
		printf("\nRecording: checkpoints/s back to back, without and with --record on %s\n"
		       "(%d rounds each, alternating; medians)\n\n%-7s %8s %12s %12s %8s  %s\n",
		       opt.record_both ? "both nodes" : "the secondary", rounds, "guest",
		       "pages/ck", "ck/s plain", "ck/s record", "ratio",
		       "CPUs used: plain / record (recorders)");
	if (!opt.json)
		printf("(pages/ck: plain / recording, in the last round; CPUs: both daemons, "
		       "every thread, in the last round, of the host's %ld)\n",
		       sysconf(_SC_NPROCESSORS_ONLN));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double plain[8], with[8], pages = 0, pages_plain = 0;
		double cpu_plain = 0, cpu_with = 0, cpu_rec = 0;
		bool ok = true;

		for (int r = 0; r < rounds; r++) {
			struct rt_result res;

			run_rt_rec(&cases[i], secs, NULL, &res);
			plain[r] = res.cps;
			pages_plain = res.pages;
			cpu_plain = res.cpu_all;
			snprintf(rec, sizeof(rec), "%s/rec-%zu-%d", opt.tmp, i, r);
			run_rt_rec(&cases[i], secs, rec, &res);
			with[r] = res.cps;
			pages = res.pages;
			cpu_with = res.cpu_all;
			cpu_rec = res.cpu_rec;
			ok = ok && res.rec_ok;
		}
		qsort(plain, (size_t)rounds, sizeof(double), cmp_dbl);
		qsort(with, (size_t)rounds, sizeof(double), cmp_dbl);
		if (!opt.json)
			printf("%-7s %4.0f/%-4.0f %12.0f %12.0f %7.2fx  %.2f / %.2f (%.2f)%s\n",
			       cases[i].workload, pages_plain, pages,
			       plain[rounds / 2], with[rounds / 2],
			       with[rounds / 2] / plain[rounds / 2], cpu_plain, cpu_with, cpu_rec,
			       ok ? "" : "  (a recording stopped: see the logs)");
		json_array_append_new(arr, json_pack("{s:s, s:f, s:f, s:f, s:b, s:f, s:f, s:f}",
						     "workload", cases[i].workload,
						     "pages_per_checkpoint", pages, "cps_plain",
						     plain[rounds / 2], "cps_record",
						     with[rounds / 2], "recording_ok", ok,
						     "cpus_plain", cpu_plain, "cpus_record",
						     cpu_with, "cpus_recorders", cpu_rec));
	}
	json_object_set_new(out, "record", arr);
	bench_replay_cost();
}

/*
 * What peer authentication costs: the round trip and checkpoints/s back
 * to back of a pair without a key, with one (proofs, tags, signed
 * heartbeats) and with one and encrypt = yes, alternating, ROUNDS each;
 * the medians and their ratios to the pair without a key.
 */
static void bench_auth(void)
{
	static const struct rt_case cases[] = {
		{ "sparse", 1024, 10, 64, "random", "64", 1024 * 100 },
		{ "full", 1024, 1, 4, "sequential", "4096", 1024 * 1000 },
		{ "full", 10240, 1, 40, "sequential", "4096", 10240 * 100 },
	};
	static const char *const names[] = { "plain", "auth", "encrypt" };
	const int rounds = opt.quick ? 1 : 3;
	double secs = opt.quick ? 2 : 4;
	json_t *arr = json_array();

	if (!opt.json)
		printf("\nPeer authentication: round trip p50 and checkpoints/s, without a key,\n"
		       "with psk-file, with psk-file and encrypt = yes (%d rounds each, "
		       "alternating; medians)\n\n%-7s %6s %-9s %-8s %8s %8s %8s %8s %8s\n", rounds,
		       "guest", "pages", "interval", "peers", "KiB/ck", "p50 ms", "ratio", "ck/s",
		       "ratio");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		double p50[3][8], cps[3][8], kib[3] = { 0, 0, 0 }, m50[3], mcps[3];
		json_t *o = json_object();

		for (int r = 0; r < rounds; r++)
			for (int s = 0; s < 3; s++) {
				struct rt_result res;

				run_rt_sec(&cases[i], secs, NULL, (enum rt_sec)s, &res);
				p50[s][r] = res.p50_us / 1000;
				cps[s][r] = res.cps;
				kib[s] = res.bytes / 1024;
			}
		for (int s = 0; s < 3; s++) {
			qsort(p50[s], (size_t)rounds, sizeof(double), cmp_dbl);
			qsort(cps[s], (size_t)rounds, sizeof(double), cmp_dbl);
			m50[s] = p50[s][rounds / 2];
			mcps[s] = cps[s][rounds / 2];
			if (!opt.json)
				printf("%-7s %6" PRIu64 " %-9s %-8s %8.0f %8.2f %7.2fx %8.0f %7.2fx\n",
				       s ? "" : cases[i].workload, cases[i].pages,
				       cases[i].interval_ms == 1 ? "max" : "10 ms", names[s], kib[s],
				       m50[s], m50[0] > 0 ? m50[s] / m50[0] : 0, mcps[s],
				       mcps[0] > 0 ? mcps[s] / mcps[0] : 0);
			json_object_set_new(o, names[s], json_pack("{s:f, s:f, s:f}", "rtt_p50_ms",
								   m50[s], "checkpoints_per_s",
								   mcps[s], "kib_per_checkpoint",
								   kib[s]));
		}
		json_object_set_new(o, "workload", json_string(cases[i].workload));
		json_object_set_new(o, "target_pages", json_integer((json_int_t)cases[i].pages));
		json_object_set_new(o, "interval_ms", json_integer(cases[i].interval_ms));
		json_array_append_new(arr, o);
	}
	json_object_set_new(out, "auth", arr);
	if (!opt.json)
		printf("(ratio: to the same pair without a key, in this run.  p50 ratio above\n"
		       " 1 is slower; ck/s ratio below 1 is slower.)\n");
}

/* The secondary's peak resident memory against guest RAM plus its largest
 * checkpoint's pages (often the first after the sync, which holds what the
 * guest wrote during it). */
static double mem_ratio(const struct rt_case *c, const struct rt_result *res)
{
	double want = c->ram_mb + res->pages_max * COLO_PAGE_SIZE / 1048576.0;

	return want > 0 ? res->hwm_b_mib / want : 0;
}

static void bench_roundtrip(void)
{
	double secs = opt.quick ? 2 : 5;
	json_t *arr = json_array();

	if (!opt.json) {
		printf("\nCheckpoint round trip (pause to LOADED) and sustained rate; baseline:\n"
		       "memcpy of as many pages picked at random in a RAM of the guest's size\n"
		       "+ loopback TCP of the checkpoint's bytes and an answer (hot: the pages\n"
		       "as one block, copied again and again from the cache); dirty tracking %s\n\n",
		       opt.tracking);
		printf("%-7s %6s %-9s %8s %7s %7s %7s %8s %9s %9s %6s %9s\n", "guest", "target",
		       "interval", "pages/ck", "KiB/ck", "p50 ms", "p99 ms", "base ms",
		       "p50/base", "p50/hot", "ck/s", "ck/s*base");
	}
	for (size_t i = 0; i < sizeof(rt_cases) / sizeof(rt_cases[0]); i++) {
		const struct rt_case *c = &rt_cases[i];
		struct rt_result res;
		double ratio, use;
		char iv[16];
		json_t *o;

		run_rt(c, secs, &res);
		ratio = res.base_us > 0 ? res.p50_us / res.base_us : 0;
		use = res.cps * res.base_us / 1e6;
		if (c->interval_ms == 1)
			snprintf(iv, sizeof(iv), "max");
		else
			snprintf(iv, sizeof(iv), "%u ms", c->interval_ms);
		if (!opt.json) {
			printf("%-7s %6" PRIu64 " %-9s %8.0f %7.0f %7.2f %7.2f %8.3f %8.1fx %8.1fx "
			       "%6.0f %9.2f\n", c->workload, c->pages, iv, res.pages, res.bytes / 1024,
			       res.p50_us / 1000, res.p99_us / 1000, res.base_us / 1000, ratio,
			       res.base_hot_us > 0 ? res.p50_us / res.base_hot_us : 0, res.cps, use);
			printf("        p50 ms by phase: %s; secondary: %s\n", res.phases,
			       res.sec_phases);
			printf("        longest loop stall (its CPU time): primary %.1f ms (%.1f), "
			       "secondary %.1f ms (%.1f); secondary RSS %.0f MiB (peak %.0f) = "
			       "%.2fx RAM + the largest checkpoint (%.0f pages)\n", res.busy_a_ms,
			       res.cpu_a_ms, res.busy_b_ms, res.cpu_b_ms, res.rss_b_mib,
			       res.hwm_b_mib, mem_ratio(c, &res), res.pages_max);
		}
		o = json_pack("{s:s, s:I, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:s, "
			      "s:f, s:f, s:f, s:f, s:f, s:f, s:f}",
			      "workload", c->workload, "target_pages", (json_int_t)c->pages,
			      "interval_ms", c->interval_ms, "pages_per_checkpoint", res.pages,
			      "bytes_per_checkpoint", res.bytes, "rtt_p50_us", res.p50_us,
			      "rtt_p99_us", res.p99_us, "baseline_us", res.base_us,
			      "checkpoints_per_s", res.cps, "rtt_p50_vs_baseline", ratio,
			      "phases_p50_ms", res.phases, "secondary_phases_p50_ms",
			      res.sec_phases, "loop_stall_max_ms_primary", res.busy_a_ms,
			      "loop_stall_max_ms_secondary", res.busy_b_ms,
			      "loop_cpu_max_ms_primary", res.cpu_a_ms,
			      "loop_cpu_max_ms_secondary", res.cpu_b_ms,
			      "secondary_rss_mib", res.rss_b_mib, "secondary_rss_peak_mib",
			      res.hwm_b_mib, "secondary_peak_vs_ram_and_checkpoint",
			      mem_ratio(c, &res));
		json_object_set_new(o, "baseline_hot_us", json_real(res.base_hot_us));
		json_array_append_new(arr, o);
	}
	json_object_set_new(out, "roundtrip", arr);
	if (!opt.json)
		printf("(interval max: checkpoint-interval-ms 1, i.e. back to back.  ck/s*base:\n"
		       " the share of each second the baseline alone would take at that rate.)\n");
}

/* ---- guest throughput, unprotected vs protected ---- */

static double writes_per_s(struct daemon *a, double secs)
{
	uint64_t w0 = d_guest_writes(a), w1;
	double t0 = now_s(), t1;

	sleep_s(secs);
	w1 = d_guest_writes(a);
	t1 = now_s();
	return (double)(w1 - w0) / (t1 - t0);
}

static void bench_throughput(void)
{
	static const unsigned intervals[] = { 100, 20 };
	double secs = opt.quick ? 2 : 5;
	json_t *arr = json_array();

	if (!opt.json) {
		printf("\nGuest throughput: memtouch, 1 thread, random 64 B writes, no rate limit,\n"
		       "64 MiB; the primary alone (unprotected) then with its secondary\n\n");
		printf("%-10s %14s %14s %8s %9s\n", "interval", "alone w/s", "protected w/s",
		       "ratio", "ck/s");
	}
	for (size_t i = 0; i < sizeof(intervals) / sizeof(intervals[0]); i++) {
		struct daemon a, b;
		char listen[32], interval[16];
		double alone, prot, cps;
		uint64_t c0;

		snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
		snprintf(interval, sizeof(interval), "%u", intervals[i]);
		d_start(&a, "colo-primary", "a", "--guest", "memtouch",
			"--peer", listen, "--memtouch-rate", "0",
			"--checkpoint-interval-ms", interval, NULL);
		if (!d_wait_state(&a, "degraded", -1, 30)) {
			die("the primary did not start");
		}
		sleep_s(0.5);
		alone = writes_per_s(&a, secs);
		d_start(&b, "colo-secondary", "b", "--guest", "memtouch",
			"--listen", listen, NULL);
		if (!d_wait_state(&a, "protected", -1, 30)) {
			die("the pair did not get protected");
		}
		sleep_s(0.5);
		c0 = d_last_committed(&a);
		{
			double t0 = now_s();

			prot = writes_per_s(&a, secs);
			cps = (double)(d_last_committed(&a) - c0) / (now_s() - t0);
		}
		d_stop(&a);
		d_stop(&b);
		if (!opt.json)
			printf("%-10s %14.0f %14.0f %7.2fx %9.1f\n", interval, alone, prot,
			       alone > 0 ? prot / alone : 0, cps);
		json_array_append_new(arr, json_pack("{s:i, s:f, s:f, s:f, s:f}",
			"interval_ms", intervals[i], "unprotected_writes_per_s", alone,
			"protected_writes_per_s", prot, "ratio", alone > 0 ? prot / alone : 0,
			"checkpoints_per_s", cps));
	}
	json_object_set_new(out, "throughput", arr);
}

/* ---- failover ---- */

/* "serving as primary X ms after the last heartbeat (timeout T ms, overhead Y ms)" */
static bool read_takeover(const struct daemon *d, double *since_hb, double *overhead)
{
	char line[1024];
	FILE *f = fopen(d->log, "r");
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "serving as primary ");
		const char *o = p ? strstr(p, "overhead ") : NULL;

		found = p && o && sscanf(p, "serving as primary %lf", since_hb) == 1 &&
			sscanf(o, "overhead %lf", overhead) == 1;
	}
	fclose(f);
	return found;
}

static void bench_failover(void)
{
	int runs = opt.quick ? 3 : 10;
	const unsigned timeout = 300;
	double *over = calloc((size_t)runs, sizeof(double));
	double *kill_to_role = calloc((size_t)runs, sizeof(double));
	double maxo = 0;
	json_t *o = json_object();

	if (!over || !kill_to_role)
		die("out of memory");
	for (int i = 0; i < runs; i++) {
		struct daemon a, b;
		char listen[32];
		double t0, since;

		snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
		d_start(&b, "colo-secondary", "b", "--guest", "memtouch",
			"--listen", listen, "--heartbeat-timeout-ms",
			"300", NULL);
		d_start(&a, "colo-primary", "a", "--guest", "memtouch",
			"--peer", listen, "--heartbeat-timeout-ms", "300",
			"--checkpoint-interval-ms", "20", NULL);
		if (!d_wait_state(&b, "protected", -1, 30)) {
			die("the pair did not get protected");
		}
		/* a random point in the checkpoint cycle */
		sleep_s(0.3 + 0.05 * (double)(rand() % 20) / 20.0);
		kill(a.pid, SIGKILL);
		t0 = now_s();
		d_wait(&a, 10);
		if (!d_wait_state(&b, NULL, COLO__ROLE__ROLE_PRIMARY, 10)) {
			die("the secondary did not take over");
		}
		kill_to_role[i] = (now_s() - t0) * 1000;
		if (!read_takeover(&b, &since, &over[i])) {
			die("no 'serving as primary' line in the secondary's log");
		}
		if (over[i] > maxo)
			maxo = over[i];
		d_stop(&b);
	}
	json_object_set_new(o, "heartbeat_timeout_ms", json_integer(timeout));
	json_object_set_new(o, "runs", json_integer(runs));
	json_object_set_new(o, "overhead_max_ms", json_real(maxo));
	json_object_set_new(o, "overhead_p50_ms", json_real(percentile(over, (size_t)runs, 0.5)));
	json_object_set_new(o, "kill_to_primary_p50_ms",
			    json_real(percentile(kill_to_role, (size_t)runs, 0.5)));
	json_object_set_new(out, "failover", o);
	if (!opt.json) {
		printf("\nFailover: kill -9 of the primary, heartbeat-timeout-ms %u, %d runs\n\n",
		       timeout, runs);
		printf("  last heartbeat -> serving as primary, minus the timeout: p50 %.2f ms, "
		       "max %.2f ms\n", percentile(over, (size_t)runs, 0.5), maxo);
		printf("  kill -> 'colo-ctl status' says primary (polled every 5 ms): p50 %.0f ms "
		       "(%.2fx the timeout)\n", percentile(kill_to_role, (size_t)runs, 0.5),
		       percentile(kill_to_role, (size_t)runs, 0.5) / timeout);
	}
	free(over);
	free(kill_to_role);
}

/* ---- control: set-interval, on-demand checkpoints, heartbeats ---- */

/* One request that must succeed; its reply is freed.  Returns seconds. */
static double d_ctl_ok(struct daemon *d, Colo__ControlRequest__CmdCase cmd, uint32_t arg)
{
	struct colo_err err;
	double t0 = now_s();
	Colo__ControlResponse *r = d_ctl_arg(d, cmd, arg, &err);

	if (!r)
		die("%s: control request %d: %s", d->name, (int)cmd, err.msg);
	t0 = now_s() - t0;
	colo__control_response__free_unpacked(r, NULL);
	return t0;
}

/* Checkpoints/s over secs, after a settling pause at the new interval. */
static double cps_at(struct daemon *a, unsigned interval_ms, double secs)
{
	uint64_t c0;
	double t0;

	d_ctl_ok(a, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, interval_ms);
	sleep_s(0.3);
	c0 = d_last_committed(a);
	t0 = now_s();
	sleep_s(secs);
	return (double)(d_last_committed(a) - c0) / (now_s() - t0);
}

static void stats_hb(struct daemon *d, uint64_t *sent, uint64_t *received)
{
	struct colo_err err;
	Colo__ControlResponse *r = d_ctl(d, COLO__CONTROL_REQUEST__CMD_STATS, &err);

	if (!r)
		die("stats: %s", err.msg);
	*sent = r->stats->heartbeats_sent;
	*received = r->stats->heartbeats_received;
	colo__control_response__free_unpacked(r, NULL);
}

static void bench_control(void)
{
	const unsigned slow_ms = 200, fast_ms = 10, hb_ms = 20, min_ms = 300;
	const int reps = opt.quick ? 20 : 100;
	double secs = opt.quick ? 1.0 : 3.0, slow, fast, t0, hb_secs;
	double *ck = calloc((size_t)reps, sizeof(double));
	double *st = calloc((size_t)reps, sizeof(double));
	double ck50, ck99, st50, second;     /* second: two on-demand, in ms */
	uint64_t s0, r0, s1, r1, x;
	struct daemon a, b;
	char listen[32], hb[16];
	json_t *o = json_object();

	if (!ck || !st)
		die("out of memory");
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
	snprintf(hb, sizeof(hb), "%u", hb_ms);
	d_start(&b, "colo-secondary", "b", "--guest", "memtouch", "--listen", listen,
		"--ram-mb", "16", "--heartbeat-interval-ms", hb, NULL);
	d_start(&a, "colo-primary", "a", "--guest", "memtouch", "--peer", listen,
		"--ram-mb", "16", "--memtouch-rate", "20000", "--heartbeat-interval-ms", hb,
		"--checkpoint-interval-ms", "20", "--min-interval-ms", "0", NULL);
	if (!d_wait_state(&a, "protected", -1, 60))
		die("the pair did not get protected");

	/* the interval set at run time, as the rate it gives */
	slow = cps_at(&a, slow_ms, secs * 2);
	fast = cps_at(&a, fast_ms, secs);

	/* heartbeats per interval, over the same kind of while */
	stats_hb(&a, &s0, &x);
	stats_hb(&b, &x, &r0);
	t0 = now_s();
	sleep_s(secs);
	stats_hb(&a, &s1, &x);
	stats_hb(&b, &x, &r1);
	hb_secs = now_s() - t0;

	/* on-demand checkpoints (interval 60 s, min-interval 0) against a
	 * status round trip on the same socket */
	d_ctl_ok(&a, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, 60000);
	for (int i = 0; i < reps; i++) {
		st[i] = d_ctl_ok(&a, COLO__CONTROL_REQUEST__CMD_STATUS, 0) * 1e6;
		ck[i] = d_ctl_ok(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0) * 1e6;
	}
	st50 = percentile(st, (size_t)reps, 0.5);
	ck50 = percentile(ck, (size_t)reps, 0.5);
	ck99 = percentile(ck, (size_t)reps, 0.99);
	d_stop(&a);
	d_stop(&b);

	/* min-interval-ms: two on-demand checkpoints back to back */
	{
		char mins[16];

		snprintf(mins, sizeof(mins), "%u", min_ms);
		snprintf(listen, sizeof(listen), "127.0.0.1:%u", free_port());
		d_start(&b, "colo-secondary", "b", "--guest", "memtouch", "--listen", listen,
			"--ram-mb", "16", NULL);
		d_start(&a, "colo-primary", "a", "--guest", "memtouch", "--peer", listen,
			"--ram-mb", "16", "--checkpoint-interval-ms", "60000",
			"--min-interval-ms", mins, NULL);
		if (!d_wait_state(&a, "protected", -1, 60))
			die("the pair did not get protected");
		/* one to take the full sync's spacing, then a pause longer than
		 * min-interval-ms: of the two timed, only the second may wait */
		d_ctl_ok(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0);
		sleep_s(min_ms / 1000.0 + 0.1);
		second = d_ctl_ok(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0) * 1000;
		second += d_ctl_ok(&a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0) * 1000;
		d_stop(&a);
		d_stop(&b);
	}

	json_object_set_new(o, "interval_slow_ms", json_integer(slow_ms));
	json_object_set_new(o, "checkpoints_per_s_slow", json_real(slow));
	json_object_set_new(o, "interval_fast_ms", json_integer(fast_ms));
	json_object_set_new(o, "checkpoints_per_s_fast", json_real(fast));
	json_object_set_new(o, "fast_over_slow", json_real(slow > 0 ? fast / slow : 0));
	json_object_set_new(o, "on_demand_p50_us", json_real(ck50));
	json_object_set_new(o, "on_demand_p99_us", json_real(ck99));
	json_object_set_new(o, "status_p50_us", json_real(st50));
	json_object_set_new(o, "min_interval_ms", json_integer(min_ms));
	json_object_set_new(o, "two_on_demand_ms", json_real(second));
	json_object_set_new(o, "heartbeat_interval_ms", json_integer(hb_ms));
	json_object_set_new(o, "heartbeats_sent_per_interval",
			    json_real((double)(s1 - s0) / (hb_secs * 1000 / hb_ms)));
	json_object_set_new(o, "heartbeats_received_per_interval",
			    json_real((double)(r1 - r0) / (hb_secs * 1000 / hb_ms)));
	json_object_set_new(out, "control", o);
	if (!opt.json) {
		printf("\nControl: set-interval, on-demand checkpoints, heartbeats "
		       "(16 MiB memtouch)\n\n");
		printf("  set-interval %3u ms: %6.1f checkpoints/s, one per %.1f ms "
		       "(%.2fx the interval)\n", slow_ms, slow, slow > 0 ? 1000 / slow : 0,
		       slow > 0 ? 1000 / slow / slow_ms : 0);
		printf("  set-interval %3u ms: %6.1f checkpoints/s, one per %.1f ms "
		       "(%.2fx the interval)\n", fast_ms, fast, fast > 0 ? 1000 / fast : 0,
		       fast > 0 ? 1000 / fast / fast_ms : 0);
		printf("  rate at %u ms over rate at %u ms: %.1fx (the intervals: %.0fx)\n",
		       fast_ms, slow_ms, slow > 0 ? fast / slow : 0, (double)slow_ms / fast_ms);
		printf("  colo-ctl checkpoint: p50 %.0f us, p99 %.0f us (%.1fx a status round trip, "
		       "%.0f us)\n", ck50, ck99, st50 > 0 ? ck50 / st50 : 0, st50);
		printf("  two on-demand checkpoints back to back, min-interval-ms %u: %.0f ms "
		       "(%.2fx min-interval-ms)\n", min_ms, second, second / min_ms);
		printf("  heartbeats per %u ms interval: %.2f sent (primary), %.2f received "
		       "(secondary)\n", hb_ms, (double)(s1 - s0) / (hb_secs * 1000 / hb_ms),
		       (double)(r1 - r0) / (hb_secs * 1000 / hb_ms));
	}
	free(ck);
	free(st);
}

/* ---- main ---- */

static void usage(FILE *f)
{
	fprintf(f,
"Usage: colo-pair-bench [--quick] [--json]\n"
"                       [--only roundtrip|throughput|failover|control|record|auth]\n"
"                       [--record-both] [--dirty-tracking MODE]\n"
"\n"
"Runs colo-primary and colo-secondary on loopback and prints checkpoint round\n"
"trip and rate at ~1k and ~10k dirty pages, guest throughput unprotected vs\n"
"protected, and failover time beyond the heartbeat timeout, each next to a\n"
"baseline measured in the same run.  The daemons are taken from the directory\n"
"above this program's, or from $COLO_BIN_DIR.  ~2 minutes; --quick ~40 s.\n"
"control: checkpoints/s after set-interval 200 and 10 ms against the interval\n"
"asked, colo-ctl checkpoint latency against a status round trip, the wait\n"
"min-interval-ms imposes, heartbeats per heartbeat interval.\n"
"record: checkpoints/s without and with --record on the secondary (both nodes\n"
"with --record-both), the CPUs the daemons used (of it, the recorder threads),\n"
"and the time to rebuild a checkpoint of a recorded 1 GiB guest.\n"
"auth: round trip and checkpoints/s without a key, with psk-file and with\n"
"psk-file and encrypt = yes, as ratios to the first.\n"
"--dirty-tracking MODE: the nodes' dirty-tracking (auto, uffd-wp, soft-dirty,\n"
"mprotect or manual; default auto) in the roundtrip, record and auth parts.\n"
"manual, where memtouch marks its own writes, leaves the kernel's tracking out\n"
"of the figures: a first write costs a fault of 14-19 us on some hosts.\n");
}

static void find_bin_dir(const char *argv0)
{
	const char *env = getenv("COLO_BIN_DIR");
	char self[PATH_MAX], *slash;
	ssize_t n;

	if (env && *env) {
		snprintf(opt.bin_dir, sizeof(opt.bin_dir), "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		snprintf(self, sizeof(self), "%s", argv0);
	else
		self[n] = '\0';
	/* .../bench/colo-pair-bench -> ... */
	for (int up = 0; up < 2; up++) {
		slash = strrchr(self, '/');
		if (!slash)
			die("cannot tell where colo-primary is: set COLO_BIN_DIR");
		*slash = '\0';
	}
	snprintf(opt.bin_dir, sizeof(opt.bin_dir), "%s", self[0] ? self : "/");
}

static void rm_tmp(void)
{
	char cmd[96];

	if (opt.tmp[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", opt.tmp);
		if (system(cmd) != 0)
			fprintf(stderr, "colo-pair-bench: could not remove %s\n", opt.tmp);
	}
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "quick", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ "only", required_argument, NULL, 'o' },
		{ "record-both", no_argument, NULL, 'r' },
		{ "dirty-tracking", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char bin[PATH_MAX + 16];
	int c;

	opt.tracking = "auto";
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'q': opt.quick = true; break;
		case 'j': opt.json = true; break;
		case 'r': opt.record_both = true; break;
		case 't':
			opt.tracking = optarg;
			if (strcmp(optarg, "auto") && strcmp(optarg, "uffd-wp") &&
			    strcmp(optarg, "soft-dirty") && strcmp(optarg, "mprotect") &&
			    strcmp(optarg, "manual")) {
				fprintf(stderr, "colo-pair-bench: --dirty-tracking takes auto, uffd-wp, "
					"soft-dirty, mprotect or manual, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'o':
			opt.only = optarg;
			if (strcmp(optarg, "roundtrip") && strcmp(optarg, "throughput") &&
			    strcmp(optarg, "failover") && strcmp(optarg, "control") &&
			    strcmp(optarg, "record") && strcmp(optarg, "auth")) {
				fprintf(stderr, "colo-pair-bench: --only takes roundtrip, throughput, "
					"failover, control, record or auth, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "colo-pair-bench: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	find_bin_dir(argv[0]);
	snprintf(bin, sizeof(bin), "%s/colo-primary", opt.bin_dir);
	if (access(bin, X_OK) != 0)
		die("%s: %s (build first, or set COLO_BIN_DIR)", bin, strerror(errno));
	snprintf(opt.tmp, sizeof(opt.tmp), "/tmp/colo-pair-bench-XXXXXX");
	if (!mkdtemp(opt.tmp))
		die("mkdtemp: %s", strerror(errno));
	atexit(rm_tmp);
	signal(SIGPIPE, SIG_IGN);
	srand((unsigned)getpid());
	out = json_object();
	json_object_set_new(out, "dirty_tracking", json_string(opt.tracking));
	if (!opt.json) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		printf("colo-pair-bench: daemons from %s, %ld CPUs%s\n", opt.bin_dir, cpus,
		       opt.quick ? ", quick" : "");
	}
	if (!opt.only || !strcmp(opt.only, "roundtrip"))
		bench_roundtrip();
	if (!opt.only || !strcmp(opt.only, "throughput"))
		bench_throughput();
	if (!opt.only || !strcmp(opt.only, "failover"))
		bench_failover();
	if (!opt.only || !strcmp(opt.only, "control"))
		bench_control();
	if (!opt.only || !strcmp(opt.only, "record"))
		bench_record();
	if (!opt.only || !strcmp(opt.only, "auth"))
		bench_auth();
	if (opt.json) {
		char *s = json_dumps(out, JSON_INDENT(2));

		puts(s);
		free(s);
	}
	json_decref(out);
	return 0;
}
