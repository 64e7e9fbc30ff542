/*
 * qemu_vm.c: QEMU's command lines and lives under the qemu guest (see
 * qemu.h, qemu_int.h): started as a COLO primary, probed for its RAM
 * blocks on the secondary, and started on the committed RAM at a failover.
 *
 * The failover stream (DESIGN.md §9): header; configuration with QEMU's
 * machine name and capability x-ignore-shared; RAM START (MEM_SIZE with
 * addresses) and END with the pages of every block that is not in the
 * shared file; QEMU's device sections as the last checkpoint had them; EOF.
 * pc.ram is not sent: QEMU maps the file the committed checkpoints were
 * written to, so the failover does not grow with the VM's size.
 *
 * Loop thread only.  QEMU is forked from the loop thread, so that
 * PR_SET_PDEATHSIG (the VM dies with this process, never running on
 * unprotected beside a secondary that takes over) follows the process.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "fs.h"
#include "log.h"
#include "qemu_int.h"
#include "ram.h"
#include "savevm.h"

#define QMP_CONNECT_MS 10000
#define ACCEPT_MS 10000
#define RUNNING_MS 10000
#define QUIT_MS 3000

/* ---- paths and arguments ---- */

static int set_path(char *dst, size_t cap, const char *dir, const char *name,
		    struct colo_err *err)
{
	int n = snprintf(dst, cap, "%s/%s", dir, name);

	if (n < 0 || (size_t)n >= cap)
		return colo_err_set(err, ENAMETOOLONG, "%s/%s: too long for a unix socket "
				    "(%zu bytes at most): use a shorter state-dir", dir, name,
				    cap - 1);
	return 0;
}

int qemu_vm_paths(struct qemu_guest *q, const char *state_dir, struct colo_err *err)
{
	int r;

	if (snprintf(q->dir, sizeof(q->dir), "%s/vm", state_dir && *state_dir ? state_dir :
		     ".") >= (int)sizeof(q->dir))
		return colo_err_set(err, ENAMETOOLONG, "state-dir too long");
	r = set_path(q->qmp_path, sizeof(q->qmp_path), q->dir, "qmp.sock", err);
	if (r == 0)
		r = set_path(q->mig_path, sizeof(q->mig_path), q->dir, "colo.sock", err);
	if (r == 0)
		r = set_path(q->in_path, sizeof(q->in_path), q->dir, "incoming.sock", err);
	if (r == 0)
		r = set_path(q->net_path, sizeof(q->net_path), q->dir, "net.sock", err);
	if (r)
		return r;
	if (snprintf(q->log_path, sizeof(q->log_path), "%s/qemu.log", q->dir) >=
	    (int)sizeof(q->log_path))
		return colo_err_set(err, ENAMETOOLONG, "state-dir too long");
	if (q->set->vm_ram_path && *q->set->vm_ram_path)
		snprintf(q->ram_path, sizeof(q->ram_path), "%s", q->set->vm_ram_path);
	else
		snprintf(q->ram_path, sizeof(q->ram_path), "/dev/shm/colo-%s-%s", q->node,
			 q->args.ram_block);
	return 0;
}

int qemu_vm_parse_args(struct qemu_guest *q, struct colo_err *err)
{
	struct colo_qemu_args_policy pol;
	char warn[256];
	int r;

	qemu_policy_of(q->set, &pol);
	r = colo_qemu_args_parse(q->set->vm_args, &q->args, err);
	if (r)
		return r;
	r = colo_qemu_args_check(&q->args, &pol, err);
	if (r)
		return r;
	if (colo_qemu_args_tcg_warning(&q->args, warn, sizeof(warn)))
		colo_log_warn("%s", warn);
	if (q->args.writable_disk)
		colo_log_warn("vm-args: %s is writable and vm-disk-unprotected is set: a "
			      "failover rolls the VM's RAM back but not this disk",
			      q->args.writable_disk);
	q->binary = strchr(q->set->binary, '/') ? strdup(q->set->binary) :
		    colo_qmp_find_program(q->set->binary);
	if (!q->binary)
		return colo_err_set(err, ENOENT, "qemu-binary %s: not found%s", q->set->binary,
				    strchr(q->set->binary, '/') ? "" : " on PATH");
	if (access(q->binary, X_OK) != 0)
		return colo_err_set(err, errno, "qemu-binary %s: %s", q->binary,
				    strerror(errno));
	return 0;
}

/* Run argv (from the qemu_args builders; freed here) and connect QMP. */
static int start_qemu(struct qemu_guest *q, char **argv, struct colo_err *err)
{
	int r;

	if (!argv)
		return -err->code;
	r = colo_mkdir_p(q->dir, 0700, err);
	if (r) {
		colo_qemu_args_argv_free(argv);
		return r;
	}
	unlink(q->qmp_path);
	colo_qmp_init(&q->qmp);
	r = colo_qmp_start(&q->qmp, q->binary, (const char *const *)argv, q->log_path, err);
	colo_qemu_args_argv_free(argv);
	if (r == 0)
		r = colo_qmp_connect(&q->qmp, q->qmp_path, QMP_CONNECT_MS, err);
	if (r) {
		char how[64];

		if (colo_qmp_wait_exit(&q->qmp, 200))
			colo_err_set(err, err->code ? err->code : EIO, "QEMU %s (see %s)",
				     colo_qmp_describe_exit(&q->qmp, how, sizeof(how)),
				     q->log_path);
		colo_qmp_free(&q->qmp);
		colo_qmp_init(&q->qmp);
	}
	return r;
}

static char **primary_argv(struct qemu_guest *q, struct colo_err *err)
{
	char **v = NULL;

	return colo_qemu_args_primary(&q->args, q->binary, q->qmp_path, &v, err) ? NULL : v;
}

static char **failover_argv(struct qemu_guest *q, struct colo_err *err)
{
	char **v = NULL;

	return colo_qemu_args_failover(&q->args, q->binary, q->qmp_path, q->ram_path, &v,
				       err) ? NULL : v;
}

static int qmp_do(struct qemu_guest *q, const char *cmd, json_t *args, json_t **ret,
		  struct colo_err *err)
{
	struct colo_err e;
	int r;

	colo_err_clear(&e);
	r = colo_qmp_execute(&q->qmp, cmd, args, ret, (int)q->set->qmp_timeout_ms, &e);
	if (r)
		colo_err_set(err, e.code, "QMP %s: %s", cmd, e.msg);
	return r;
}

static int set_cap(struct qemu_guest *q, const char *cap, bool on, struct colo_err *err)
{
	return qmp_do(q, "migrate-set-capabilities",
		      json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", cap,
				"state", on), NULL, err);
}

/* ---- the primary ---- */

static int listen_unix(const char *path, struct colo_err *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return colo_err_set(err, errno, "socket: %s", strerror(errno));
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 1) != 0) {
		int e = errno;

		close(fd);
		return colo_err_set(err, e, "%s: %s", path, strerror(e));
	}
	return fd;
}

int qemu_vm_start_primary(struct qemu_guest *q, struct colo_err *err)
{
	struct pollfd pf;
	uint32_t ms;
	int r;

	if (!q->qmp.pid || q->qmp.reaped) {
		r = start_qemu(q, primary_argv(q, err), err);
		if (r)
			return r;
	}
	r = listen_unix(q->mig_path, err);
	if (r < 0)
		return r;
	q->listen_fd = r;
	pthread_mutex_lock(&q->lock);
	ms = q->interval_ms;
	pthread_mutex_unlock(&q->lock);
	if ((r = set_cap(q, "x-colo", true, err)) != 0 ||
	    (r = qmp_do(q, "migrate-set-parameters",
			json_pack("{s:I}", "x-checkpoint-delay", (json_int_t)ms), NULL,
			err)) != 0)
		return r;
	pthread_mutex_lock(&q->lock);
	q->delay_set_ms = ms;
	pthread_mutex_unlock(&q->lock);
	{
		char uri[QEMU_PATH_MAX + 8];

		snprintf(uri, sizeof(uri), "unix:%s", q->mig_path);
		r = qmp_do(q, "migrate", json_pack("{s:s}", "uri", uri), NULL, err);
		if (r)
			return r;
	}
	pf.fd = q->listen_fd;
	pf.events = POLLIN;
	if (poll(&pf, 1, ACCEPT_MS) != 1)
		return colo_err_set(err, ETIMEDOUT, "QEMU did not connect its migration to %s "
				    "within %d ms (see %s)", q->mig_path, ACCEPT_MS, q->log_path);
	q->mig_fd = accept4(q->listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (q->mig_fd < 0)
		return colo_err_set(err, errno, "accept %s: %s", q->mig_path, strerror(errno));
	close(q->listen_fd);
	q->listen_fd = -1;
	unlink(q->mig_path);
	return 0;
}

/* ---- the secondary's probe ---- */

/* "info ramblock": a header line, then "NAME PSIZE OFFSET USED TOTAL". */
static int parse_ramblocks(const char *text, struct colo_ram_block_info **out, size_t *n,
			   struct colo_err *err)
{
	const char *line = strchr(text, '\n');
	struct colo_ram_block_info *b = NULL;
	size_t nb = 0;

	while (line && *++line) {
		char name[COLO_IDSTR_MAX + 1], psize[32], unit[16];
		unsigned long long off, used, total;
		struct colo_ram_block_info *nbp;

		if (sscanf(line, "%255s %31s %15s 0x%llx 0x%llx 0x%llx", name, psize, unit, &off,
			   &used, &total) == 6) {
			nbp = realloc(b, (nb + 1) * sizeof(*b));
			if (!nbp) {
				free(b);
				return colo_err_set(err, ENOMEM, "out of memory");
			}
			b = nbp;
			memset(&b[nb], 0, sizeof(b[nb]));
			snprintf(b[nb].name, sizeof(b[nb].name), "%s", name);
			b[nb].length = used;
			nb++;
		}
		line = strchr(line, '\n');
	}
	if (nb == 0) {
		free(b);
		return colo_err_set(err, EPROTO, "QEMU's 'info ramblock' listed no blocks");
	}
	*out = b;
	*n = nb;
	return 0;
}

int qemu_vm_probe(struct qemu_guest *q, struct colo_err *err)
{
	struct colo_ram_block_info *b = NULL;
	json_t *ret = NULL;
	size_t n = 0;
	int r;

	/* The QEMU a failover runs in, started now: it maps the RAM file and
	 * waits (-incoming defer), so a failover does not wait for a QEMU to
	 * start.  A full sync writes every page of the file after its start. */
	r = start_qemu(q, failover_argv(q, err), err);
	if (r)
		return colo_err_set(err, err->code, "starting the VM's QEMU (standby for a "
				    "failover): %s", err->msg);
	q->standby = true;
	r = qmp_do(q, "human-monitor-command", json_pack("{s:s}", "command-line",
							 "info ramblock"), &ret, err);
	if (r == 0)
		r = parse_ramblocks(json_string_value(ret) ? json_string_value(ret) : "", &b,
				    &n, err);
	json_decref(ret);
	if (r == 0)
		r = qemu_relay_blocks(q, b, n, err);
	free(b);
	return r;
}

/* ---- failover ---- */

static bool page_zero(const uint8_t *p)
{
	static const uint8_t z[COLO_PAGE_SIZE];

	return memcmp(p, z, COLO_PAGE_SIZE) == 0;
}

static bool block_shared(const struct qemu_guest *q, size_t i)
{
	return strcmp(q->binfo[i].name, q->args.ram_block) == 0;
}

static int build_stream(struct qemu_guest *q, struct colo_buf *out, struct colo_err *err)
{
	struct colo_stream_writer w;
	struct colo_stream_config c;
	struct colo_ram_writer rw;
	uint32_t id = q->dev.ram_section_id;
	char machine[sizeof(q->dev.machine) + 1];
	int r;

	if (!q->dev.blob_len || !q->dev.blob || !id)
		return colo_err_set(err, ENODATA, "no VM state was committed");
	memcpy(machine, q->dev.machine, sizeof(q->dev.machine));
	machine[sizeof(q->dev.machine)] = '\0';
	colo_sw_init(&w, out, false);
	colo_sw_header(&w);
	r = colo_stream_config_init(&c, machine, err);
	if (r == 0)
		r = colo_stream_config_add_cap(&c, "x-ignore-shared", err);
	if (r == 0)
		r = colo_sw_configuration(&w, &c, err);
	if (r == 0)
		r = colo_sw_section_begin(&w, COLO_SEC_START, id, COLO_RAM_IDSTR, 0,
					  COLO_RAM_SECTION_VERSION, err);
	if (r)
		goto out;
	colo_ram_writer_init(&rw, out);
	colo_ram_put_mem_size(&rw, q->binfo, q->nblocks, true);
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	r = colo_sw_section_begin(&w, COLO_SEC_END, id, COLO_RAM_IDSTR, 0,
				  COLO_RAM_SECTION_VERSION, err);
	if (r)
		goto out;
	colo_ram_writer_section(&rw);
	for (size_t i = 0; i < q->nblocks; i++) {
		if (block_shared(q, i))
			continue;
		for (uint64_t off = 0; off < q->binfo[i].length; off += COLO_PAGE_SIZE) {
			const uint8_t *p = q->blocks[i]->host + off;

			if (page_zero(p))
				colo_ram_put_zero(&rw, q->binfo[i].name, off, 0);
			else
				colo_ram_put_raw(&rw, q->binfo[i].name, off, p);
		}
	}
	colo_ram_put_eos(&rw);
	colo_sw_section_end(&w);
	/* the device sections end in EOF */
	colo_buf_put(out, q->dev.blob, q->dev.blob_len);
	if (!colo_buf_ok(out))
		r = colo_err_set(err, ENOMEM, "out of memory");
out:
	colo_sw_free(&w);
	return r;
}

static int wait_running(struct qemu_guest *q, struct colo_err *err)
{
	uint64_t deadline = colo_now_ms() + RUNNING_MS;

	for (;;) {
		json_t *ret = NULL;
		const char *st;
		bool running;
		int r = qmp_do(q, "query-status", NULL, &ret, err);

		if (r)
			return r;
		st = json_string_value(json_object_get(ret, "status"));
		running = st && strcmp(st, "running") == 0;
		if (!running && st && strcmp(st, "inmigrate") != 0) {
			char s[64];

			snprintf(s, sizeof(s), "%s", st);
			json_decref(ret);
			return colo_err_set(err, EIO, "the VM did not load the committed state: "
					    "status %s (see %s)", s, q->log_path);
		}
		json_decref(ret);
		if (running)
			return 0;
		if (colo_now_ms() >= deadline)
			return colo_err_set(err, ETIMEDOUT, "the VM was not running %d ms after "
					    "its state was sent (see %s)", RUNNING_MS,
					    q->log_path);
		usleep(1000);
	}
}

int qemu_vm_failover(struct qemu_guest *q, struct colo_err *err)
{
	char uri[QEMU_PATH_MAX + 8];
	uint64_t t0 = colo_now_ns(), t1 = t0, t2 = t0, t3 = t0;
	struct colo_buf s;
	int fd, r;

	colo_buf_init(&s);
	r = build_stream(q, &s, err);
	t1 = colo_now_ns();
	if (r == 0 && (!q->standby || colo_qmp_exited(&q->qmp))) {
		char how[64];

		if (q->standby)
			colo_log_warn("the standby QEMU had %s (see %s): starting another",
				      colo_qmp_describe_exit(&q->qmp, how, sizeof(how)),
				      q->log_path);
		colo_qmp_free(&q->qmp);
		r = start_qemu(q, failover_argv(q, err), err);
	}
	q->standby = false;
	t2 = colo_now_ns();
	if (r == 0)
		r = set_cap(q, "x-ignore-shared", true, err);
	snprintf(uri, sizeof(uri), "unix:%s", q->in_path);
	unlink(q->in_path);
	if (r == 0)
		r = qmp_do(q, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err);
	if (r == 0) {
		fd = colo_unix_connect(q->in_path, ACCEPT_MS, err);
		if (fd < 0)
			r = fd;
		else {
			r = colo_write_all(fd, s.data, s.len);
			if (r)
				colo_err_set(err, -r, "sending the committed state to QEMU: %s",
					     strerror(-r));
			close(fd);
		}
	}
	if (r == 0)
		r = wait_running(q, err);
	t3 = colo_now_ns();
	if (r == 0)
		r = qmp_do(q, "announce-self", json_pack("{s:i,s:i,s:i,s:i}", "initial", 50,
							 "max", 550, "rounds", 5, "step", 100),
			   NULL, err);
	/* From here QEMU writes the RAM file: this node needs a copy of its
	 * own, which the x-colo migration fills; the relay thread makes it
	 * (qemu_vm_unshare), after the VM serves: unsharing 2 GiB took 50 ms. */
	if (r == 0)
		r = set_cap(q, "x-ignore-shared", false, err);
	q->failover_ns = colo_now_ns() - t0;
	if (r == 0)
		colo_log_info("VM running on the committed state %.1f ms after the failover "
			      "began: stream %.1f ms (%zu bytes), QEMU start %.1f ms, load %.1f "
			      "ms, announce %.1f ms", (double)q->failover_ns / 1e6,
			      (double)(t1 - t0) / 1e6, s.len, (double)(t2 - t1) / 1e6,
			      (double)(t3 - t2) / 1e6, (double)(colo_now_ns() - t3) / 1e6);
	colo_buf_free(&s);
	return r;
}

int qemu_vm_unshare(struct qemu_guest *q, struct colo_err *err)
{
	for (size_t i = 0; i < q->nblocks; i++)
		if (colo_ram_block_shared(q->blocks[i])) {
			int r = colo_ram_block_unshare(q->blocks[i], err);

			if (r)
				return r;
		}
	return 0;
}

void qemu_vm_stop(struct qemu_guest *q)
{
	if (q->mig_fd >= 0)
		close(q->mig_fd);
	q->mig_fd = -1;
	if (q->listen_fd >= 0)
		close(q->listen_fd);
	q->listen_fd = -1;
	if (q->qmp.pid > 0 && !q->qmp.reaped)
		colo_qmp_stop(&q->qmp, QUIT_MS);
	unlink(q->qmp_path);
	unlink(q->mig_path);
	unlink(q->in_path);
}
