/*
 * test_vmreplay.c: a recording of a real VM (the qemu guest), read back
 * with colo-replay (docs/replay.md).
 *
 * A qemu pair protects a VM under KVM (-machine pc -m 32M -nodefaults: the
 * firmware runs and halts, so its CPU state changes a little) with the
 * secondary recording, a keyframe every 4 checkpoints.  Then:
 *   - list names every checkpoint with the VM's device, and verify passes;
 *   - show N (in a later segment, so QEMU's description comes from the
 *     recording's sync-devices) decodes QEMU's "cpu" section: env.regs
 *     (16 registers), env.eip;
 *   - diff N M names QEMU device fields that changed;
 *   - serve N starts a QEMU that is paused, whose EIP is show's env.eip and
 *     whose conventional memory (the first 640 KiB, always RAM: above it
 *     the chipset may map ROM) is extract's, with a gdbstub listening; on
 *     SIGTERM colo-replay stops it by pid and exits 0.
 * Skipped without /dev/kvm or qemu-system-x86_64.
 *
 * Without QEMU: a recording of the qemu guest's device made through the
 * recorder (a blob of two QEMU-like sections, one of which grows at a
 * checkpoint, as when a subsection appears): show decodes the section
 * that fits QEMU's description and shows the other as hex with a note;
 * diff names the field that changed in the one and the bytes of the other.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/uio.h>

#include "ckptgen.h"
#include "clock.h"
#include "colomsg.h"
#include "pair.h"
#include "qemu_int.h"
#include "qmp.h"
#include "record.h"
#include "savevm.h"
#include "stream.h"
#include "testutil.h"

#define QEMU "qemu-system-x86_64"
#define VM_ARGS "-machine pc -m 32M -nodefaults -display none -accel kvm"
#define NCKPT 14
#define LOW_RAM (640 << 10)

/* ---- running colo-replay ---- */

/* Run a shell command; its stdout in *out (malloc'd), its exit status. */
static int run(char **out, const char *fmt, ...)
{
	char cmd[2048], buf[65536];
	size_t len = 0, cap = 0, n;
	va_list ap;
	FILE *f;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	f = popen(cmd, "r");
	ck_assert_msg(f != NULL, "popen %s", cmd);
	*out = NULL;
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			*out = realloc(*out, cap);
			ck_assert_ptr_nonnull(*out);
		}
		memcpy(*out + len, buf, n);
		len += n;
	}
	if (!*out)
		*out = calloc(1, 1);
	(*out)[len] = '\0';
	st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static json_t *run_json(const char *what, const char *fmt, const char *rec, ...)
{
	char cmd[1024], *out;
	json_error_t je;
	va_list ap;
	json_t *doc;
	int st;

	va_start(ap, rec);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = run(&out, "'%s' %s --json '%s' %s", pair_bin("colo-replay"), what, rec, cmd);
	ck_assert_msg(st == 0, "colo-replay %s %s: exit %d:\n%s", what, cmd, st, out);
	doc = json_loads(out, 0, &je);
	ck_assert_msg(doc != NULL, "colo-replay %s: not JSON: %s", what, je.text);
	free(out);
	return doc;
}

static const json_t *find_named(const json_t *a, const char *key, const char *name)
{
	for (size_t i = 0; i < json_array_size(a); i++)
		if (strcmp(json_string_value(json_object_get(json_array_get(a, i), key)) ?: "",
			   name) == 0)
			return json_array_get(a, i);
	return NULL;
}

/* ---- the recording ---- */

static void record_vm(const char *rec)
{
	struct proc a, b;
	struct wait_arg w;
	char listen[32], ram[300];

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(ram, sizeof(ram), "%s/b-pc.ram", pair_dir());
	proc_start(&b, pair_bin("colo-secondary"), "b", "--guest", "qemu", "--vm-args",
		   VM_ARGS, "--vm-ram-path", ram, "--listen", listen, "--record", rec,
		   "--keyframe-every", "4", NULL);
	proc_start(&a, pair_bin("colo-primary"), "a", "--guest", "qemu", "--vm-args",
		   VM_ARGS, "--peer", listen, "--checkpoint-interval-ms", "100", NULL);
	w.p = &b;
	w.n = NCKPT;
	if (!wait_for(cond_protected, &a, 60000) || !wait_for(cond_committed, &w, 60000)) {
		proc_dump_log(&a);
		proc_dump_log(&b);
		proc_stop(&b);
		proc_stop(&a);
		ck_abort_msg("the VM pair did not commit %d checkpoints", NCKPT);
	}
	/* The secondary first: a primary stopped first would be failed over. */
	if (proc_stop(&b) != 0 || proc_stop(&a) != 0) {
		proc_dump_log(&a);
		proc_dump_log(&b);
		ck_abort_msg("the pair did not stop cleanly (%d, %d)", b.exit_status,
			     a.exit_status);
	}
}

/* ---- serve ---- */

struct served {
	pid_t pid;              /* colo-replay */
	int out;                /* its stdout */
	char text[4096];
	long qemu;
	unsigned port;
	char qmp[256];
};

/* colo-replay serve REC N, until it printed where QEMU is. */
static void serve_start(struct served *s, const char *rec, uint64_t n)
{
	char seq[32];
	int fds[2];
	size_t len = 0;
	uint64_t end = colo_now_ms() + 60000;
	pid_t parent = getpid();
	const char *p;

	memset(s, 0, sizeof(*s));
	snprintf(seq, sizeof(seq), "%" PRIu64, n);
	ck_assert_int_eq(pipe(fds), 0);
	s->pid = fork();
	ck_assert_int_ge(s->pid, 0);
	if (s->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(pair_bin("colo-replay"), "colo-replay", "serve", rec, seq, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	s->out = fds[0];
	while (!strstr(s->text, "  log ")) {
		struct pollfd pf = { .fd = s->out, .events = POLLIN };
		ssize_t r;

		ck_assert_msg(colo_now_ms() < end, "serve said only: %s", s->text);
		if (poll(&pf, 1, 500) != 1)
			continue;
		r = read(s->out, s->text + len, sizeof(s->text) - 1 - len);
		ck_assert_msg(r > 0, "serve ended, having said: %s", s->text);
		len += (size_t)r;
		s->text[len] = '\0';
	}
	p = strstr(s->text, "QEMU pid ");
	ck_assert_msg(p && sscanf(p, "QEMU pid %ld", &s->qemu) == 1, "%s", s->text);
	p = strstr(s->text, "target remote 127.0.0.1:");
	ck_assert_msg(p && sscanf(p, "target remote 127.0.0.1:%u", &s->port) == 1, "%s",
		      s->text);
	p = strstr(s->text, "  qmp   ");
	ck_assert_msg(p && sscanf(p, "  qmp   %255s", s->qmp) == 1, "%s", s->text);
}

/* SIGTERM: colo-replay stops QEMU by its pid and exits 0. */
static void serve_stop(struct served *s)
{
	uint64_t end = colo_now_ms() + 20000;
	char rest[512] = "";
	ssize_t r;
	int st = 0;

	ck_assert_int_eq(kill(s->pid, SIGTERM), 0);
	while (waitpid(s->pid, &st, WNOHANG) == 0) {
		if (colo_now_ms() >= end) {
			kill(s->pid, SIGKILL);
			waitpid(s->pid, &st, 0);
			ck_abort_msg("colo-replay serve did not stop on SIGTERM");
		}
		usleep(5000);
	}
	r = read(s->out, rest, sizeof(rest) - 1);
	rest[r > 0 ? r : 0] = '\0';
	close(s->out);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "serve: status %d", st);
	ck_assert_msg(strstr(rest, "stopped QEMU pid"), "serve said at the end: %s", rest);
	ck_assert_msg(kill((pid_t)s->qemu, 0) != 0 && errno == ESRCH, "QEMU pid %ld still "
		      "there", s->qemu);
}

static json_t *qmp_do(struct colo_qmp *q, const char *cmd, json_t *args)
{
	struct colo_err err;
	json_t *ret = NULL;

	colo_err_clear(&err);
	ck_assert_msg(colo_qmp_execute(q, cmd, args, &ret, 10000, &err) == 0, "QMP %s: %s",
		      cmd, err.msg);
	return ret;
}

/* QEMU's instruction pointer, from `info registers`. */
static uint64_t qemu_ip(struct colo_qmp *q)
{
	json_t *ret = qmp_do(q, "human-monitor-command",
			     json_pack("{s:s}", "command-line", "info registers"));
	const char *t = json_string_value(ret), *p;
	unsigned long long ip = 0;

	ck_assert_ptr_nonnull(t);
	p = strstr(t, "RIP=");
	if (!p)
		p = strstr(t, "EIP=");
	ck_assert_msg(p && sscanf(p + 4, "%llx", &ip) == 1, "%s", t);
	json_decref(ret);
	return ip;
}

static bool port_listens(unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bool ok;

	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* ---- a VM device made by hand ---- */

/* QEMU's description of the two sections below, as a sync carries it. */
static const char qemu_desc[] =
	"{\"page_size\": 4096, \"devices\": ["
	"{\"name\": \"timer\", \"instance_id\": 0, \"vmsd_name\": \"timer\", "
	"\"version\": 2, \"fields\": [{\"name\": \"ticks\", \"type\": \"int64\", "
	"\"size\": 8}]}, "
	"{\"name\": \"cpu\", \"instance_id\": 0, \"vmsd_name\": \"cpu\", "
	"\"version\": 12, \"fields\": [{\"name\": \"env.eip\", \"type\": \"uint64\", "
	"\"size\": 8}]}]}";

/* One QEMU device section with its footer. */
static void qemu_section(struct colo_buf *b, uint32_t id, const char *idstr,
			 uint32_t version, const uint8_t *payload, size_t len)
{
	colo_buf_put_u8(b, COLO_SEC_FULL);
	colo_buf_put_be32(b, id);
	colo_buf_put_u8(b, (uint8_t)strlen(idstr));
	colo_buf_put(b, idstr, strlen(idstr));
	colo_buf_put_be32(b, 0);
	colo_buf_put_be32(b, version);
	colo_buf_put(b, payload, len);
	colo_buf_put_u8(b, COLO_SEC_FOOTER);
	colo_buf_put_be32(b, id);
}

/* The blob: timer (ticks), cpu (eip, then `extra` bytes more), EOF. */
static void set_blob(struct qemu_vm_dev *dev, uint64_t ticks, uint64_t eip, size_t extra)
{
	struct colo_buf b = COLO_BUF_INIT;
	uint8_t p[32] = { 0 };

	colo_store_be64(p, ticks);
	qemu_section(&b, 3, "timer", 2, p, 8);
	colo_store_be64(p, eip);
	qemu_section(&b, 4, "cpu", 12, p, 8 + extra);
	colo_buf_put_u8(&b, COLO_SEC_EOF);
	colo_vmstate_free_allocs(&qemu_vm_vmsd, dev);
	dev->blob = colo_vmstate_alloc(b.len, 1);
	memcpy(dev->blob, b.data, b.len);
	dev->blob_len = (uint32_t)b.len;
	dev->vmdesc = colo_vmstate_alloc(sizeof(qemu_desc) - 1, 1);
	memcpy(dev->vmdesc, qemu_desc, sizeof(qemu_desc) - 1);
	dev->vmdesc_len = sizeof(qemu_desc) - 1;
	colo_buf_free(&b);
}

/* A sync (the description in it), then checkpoint 1, in which cpu grew. */
static void record_by_hand(const char *rec)
{
	static const char *const meta[] = { "guest", "qemu", "vm-args", VM_ARGS, NULL };
	static uint8_t ram[4 * 4096];
	struct colo_buf full = COLO_BUF_INIT, r = COLO_BUF_INIT, d = COLO_BUF_INIT;
	struct colo_record_cfg cfg;
	struct colo_recorder *recorder;
	struct qemu_vm_dev dev;
	struct colo_savevm sv;
	struct colo_err err;
	struct iovec v[2];

	colo_err_clear(&err);
	memset(&dev, 0, sizeof(dev));
	memcpy(dev.machine, "pc-i440fx-7.2", 13);
	dev.ram_section_id = 2;
	ram[5] = 1;
	ck_assert_int_eq(colo_savevm_init(&sv, "colo-qemu-1", &err), 0);
	ck_assert_int_eq(colo_savevm_add_ram(&sv, "pc.ram", ram, sizeof(ram), &err), 0);
	ck_assert_int_eq(colo_savevm_add_device(&sv, "qemu/vm", 0, &qemu_vm_vmsd, &dev,
						&err), 0);
	memset(&cfg, 0, sizeof(cfg));
	cfg.dir = rec;
	cfg.keyframe_every = 100;
	cfg.queue_max = 1u << 30;
	cfg.sv = &sv;
	cfg.meta = meta;
	ck_assert_msg(colo_recorder_start(&cfg, &recorder, &err) == 0, "%s", err.msg);
	set_blob(&dev, 1000, 0xfff0, 0);
	dev.vmdesc_due = true;
	ck_assert_int_eq(colo_savevm_save(&sv, &full, COLO_SAVEVM_ENABLE_COLO, &err), 0);
	v[0] = (struct iovec){ full.data, full.len };
	colo_recorder_full(recorder, 0, 1, 0, v, 1);
	dev.vmdesc_due = false;
	set_blob(&dev, 2000, 0xfff0, 4);
	colo_test_ckpt_streams(&sv, 1, &r, &d);
	v[0] = (struct iovec){ r.data, r.len };
	v[1] = (struct iovec){ d.data, d.len };
	colo_recorder_checkpoint(recorder, 1, 1, 1001, &v[0], 1, &v[1], 1);
	colo_recorder_stop(recorder);
	colo_vmstate_free_allocs(&qemu_vm_vmsd, &dev);
	colo_savevm_free(&sv);
	colo_buf_free(&full);
	colo_buf_free(&r);
	colo_buf_free(&d);
}

START_TEST(qemu_sections_that_do_not_fit_show_as_hex)
{
	const json_t *vm, *timer, *cpu, *f, *secs;
	json_t *show, *diff;
	char rec[300], *out;

	snprintf(rec, sizeof(rec), "%s/rec", pair_dir());
	record_by_hand(rec);
	ck_assert_msg(run(&out, "'%s' verify '%s'", pair_bin("colo-replay"), rec) == 0, "%s",
		      out);
	free(out);
	/* The sync: both sections fit its own description. */
	show = run_json("show", "0", rec);
	vm = json_object_get(find_named(json_object_get(show, "devices"), "name", "qemu/vm"),
			     "vm");
	ck_assert_str_eq(json_string_value(json_object_get(vm, "vmdesc")),
			 "this checkpoint (a full sync)");
	cpu = find_named(json_object_get(vm, "devices"), "name", "cpu");
	f = find_named(json_object_get(json_object_get(cpu, "fields"), "fields"), "name",
		       "env.eip");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "value")), 0xfff0);
	json_decref(show);
	/* Checkpoint 1: timer decodes (sync-devices' description), cpu is raw. */
	show = run_json("show", "1", rec);
	vm = json_object_get(find_named(json_object_get(show, "devices"), "name", "qemu/vm"),
			     "vm");
	ck_assert_str_eq(json_string_value(json_object_get(vm, "vmdesc")), "sync-devices");
	timer = find_named(json_object_get(vm, "devices"), "name", "timer");
	f = find_named(json_object_get(json_object_get(timer, "fields"), "fields"), "name",
		       "ticks");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "value")), 2000);
	ck_assert(json_is_true(json_object_get(timer, "changed")));
	cpu = find_named(json_object_get(vm, "devices"), "name", "cpu");
	ck_assert_int_eq(json_integer_value(json_object_get(cpu, "bytes")), 12);
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(cpu, "fields"),
							       "note")) ?: "",
			     "12 bytes, QEMU's VMDESCRIPTION (of sync-devices) describes 8"),
		      "no note");
	f = find_named(json_object_get(json_object_get(cpu, "fields"), "fields"), "name",
		       "(payload)");
	ck_assert_str_eq(json_string_value(json_object_get(f, "value")),
			 "000000000000fff000000000");
	json_decref(show);
	ck_assert_int_eq(run(&out, "'%s' show '%s' 1", pair_bin("colo-replay"), rec), 0);
	ck_assert_msg(strstr(out, "(not decoded: 12 bytes"), "%s", out);
	free(out);
	/* diff: the timer's field, the cpu's bytes. */
	diff = run_json("diff", "0 1", rec);
	secs = json_object_get(find_named(json_object_get(diff, "devices"), "name", "qemu/vm"),
			       "vm_devices");
	ck_assert_int_eq(json_array_size(secs), 2);
	timer = find_named(secs, "name", "timer");
	f = json_array_get(json_object_get(timer, "fields"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(f, "path")), "ticks");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "from")), 1000);
	ck_assert_int_eq(json_integer_value(json_object_get(f, "to")), 2000);
	ck_assert_ptr_nonnull(find_named(secs, "name", "cpu"));
	json_decref(diff);
}
END_TEST

/* ---- a real VM ---- */

/*
 * colo-replay export REC N -o FILE, then QEMU with the VM's arguments,
 * -S and -incoming 'exec:cat FILE': loaded (paused), N's instruction
 * pointer, and the low RAM equal to `low` (what serve showed).  colo-replay
 * dump reads the file as a plain QEMU stream: QEMU's machine, no
 * ENABLE_COLO, QEMU's page kinds only, QEMU's description after the EOF.
 */
static void export_loads_in_qemu(const char *rec, uint64_t n, uint64_t want_ip,
				 const uint8_t *low, size_t low_len)
{
	char file[300], qmp[300], log[300], incoming[340], pm[300], *out, *path;
	const char *argv[32];
	struct colo_qmp q;
	struct colo_err err;
	json_t *dump, *ret;
	const json_t *kinds, *sum, *items;
	const char *st;
	uint8_t *got;
	size_t glen;
	int i = 0;

	snprintf(file, sizeof(file), "%s/n.mig", pair_dir());
	ck_assert_msg(run(&out, "'%s' export '%s' %" PRIu64 " -o '%s'", pair_bin("colo-replay"),
			  rec, n, file) == 0, "%s", out);
	ck_assert_msg(strstr(out, "a plain migration stream of pc-i440fx") &&
		      strstr(out, "(vmdesc: the recording's newest sync's)") &&
		      strstr(out, "-incoming 'exec:cat "), "%s", out);
	free(out);
	dump = run_json("dump", "", file);
	sum = json_object_get(dump, "summary");
	items = json_object_get(dump, "items");
	ck_assert_msg(strncmp(json_string_value(json_object_get(json_object_get(dump,
			      "configuration"), "name")) ?: "", "pc-i440fx", 9) == 0,
		      "configuration");
	ck_assert_int_eq(json_integer_value(json_object_get(sum, "commands")), 0);
	kinds = json_object_get(sum, "pages");
	ck_assert_msg(json_object_size(kinds) >= 1 && json_object_size(kinds) ==
		      (size_t)(json_object_get(kinds, "zero") != NULL) +
		      (size_t)(json_object_get(kinds, "page") != NULL),
		      "page kinds of the export");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items,
			 json_array_size(items) - 1), "kind")) ?: "", "vmdesc");
	json_decref(dump);

	snprintf(qmp, sizeof(qmp), "%s/x.qmp", pair_dir());
	snprintf(log, sizeof(log), "%s/x.log", pair_dir());
	snprintf(incoming, sizeof(incoming), "exec:cat '%s'", file);
	argv[i++] = QEMU;
	argv[i++] = "-machine";
	argv[i++] = "pc";
	argv[i++] = "-m";
	argv[i++] = "32M";
	argv[i++] = "-nodefaults";
	argv[i++] = "-display";
	argv[i++] = "none";
	argv[i++] = "-accel";
	argv[i++] = "kvm";
	argv[i++] = "-S";
	argv[i++] = "-qmp";
	{
		static char spec[340];

		snprintf(spec, sizeof(spec), "unix:%s,server=on,wait=off", qmp);
		argv[i++] = spec;
	}
	argv[i++] = "-incoming";
	argv[i++] = incoming;
	argv[i] = NULL;
	colo_qmp_init(&q);
	colo_err_clear(&err);
	path = colo_qmp_find_program(QEMU);
	ck_assert_ptr_nonnull(path);
	ck_assert_msg(colo_qmp_start(&q, path, argv, log, &err) == 0, "%s", err.msg);
	free(path);
	ck_assert_msg(colo_qmp_connect(&q, qmp, 10000, &err) == 0, "%s", err.msg);
	for (int t = 0;; t++) {
		ret = qmp_do(&q, "query-status", NULL);
		st = json_string_value(json_object_get(ret, "status"));
		if (st && strcmp(st, "inmigrate") != 0)
			break;
		json_decref(ret);
		ck_assert_msg(t < 3000, "QEMU still loading the export");
		usleep(10000);
	}
	ck_assert_msg(strcmp(st, "paused") == 0, "QEMU on the export: status %s (log %s)", st,
		      log);
	json_decref(ret);
	ck_assert_uint_eq(qemu_ip(&q), want_ip);
	snprintf(pm, sizeof(pm), "%s/xpm.bin", pair_dir());
	json_decref(qmp_do(&q, "pmemsave", json_pack("{s:i,s:i,s:s}", "val", 0, "size",
						     (int)low_len, "filename", pm)));
	got = colo_test_read_file(pm, &glen);
	ck_assert_msg(got && glen == low_len && memcmp(got, low, low_len) == 0,
		      "QEMU's RAM from the export is not the checkpoint's");
	free(got);
	ck_assert_int_eq(colo_qmp_stop(&q, 10000), 0);
	colo_qmp_free(&q);
}

START_TEST(a_vm_recording_lists_shows_diffs_and_serves)
{
	char rec[300], ex[300], pm[300], ramf[320], *out;
	const json_t *rows, *cpu, *regs, *eip, *vm, *secs, *vmd;
	json_t *list, *show, *diff, *ret;
	uint64_t n = UINT64_MAX, m, want_ip;
	uint8_t *a, *b;
	size_t alen, blen;
	bool nonzero = false;
	struct colo_qmp q;
	struct served s;
	const char *st;

	if (!(out = colo_qmp_find_program(QEMU)))
		colo_test_skip(QEMU " not installed");
	free(out);
	if (access("/dev/kvm", R_OK | W_OK) != 0)
		colo_test_skip("no usable /dev/kvm");
	snprintf(rec, sizeof(rec), "%s/rec", pair_dir());
	record_vm(rec);

	/* list: every checkpoint, the VM's device in each, keyframes every 4 */
	list = run_json("list", "", rec);
	rows = json_object_get(list, "checkpoints");
	ck_assert_int_ge(json_array_size(rows), NCKPT);
	ck_assert_int_ge(json_integer_value(json_object_get(list, "keyframes")), 3);
	for (size_t i = 0; i < json_array_size(rows); i++) {
		const json_t *r = json_array_get(rows, i);
		const json_t *devs = json_object_get(r, "devices");

		ck_assert_str_eq(json_string_value(json_array_get(devs, 0)), "qemu/vm/0");
		/* N: a checkpoint after the second segment's keyframe */
		if (n == UINT64_MAX && i > 4 && !json_is_true(json_object_get(r, "keyframe")) &&
		    strcmp(json_string_value(json_object_get(r, "segment")),
			   json_string_value(json_object_get(json_array_get(rows, 0),
							     "segment"))) != 0)
			n = (uint64_t)json_integer_value(json_object_get(r, "seq"));
	}
	m = (uint64_t)json_integer_value(json_object_get(json_array_get(rows,
		json_array_size(rows) - 1), "seq"));
	ck_assert_msg(n != UINT64_MAX && m > n, "n %" PRIu64 " m %" PRIu64, n, m);
	json_decref(list);
	ck_assert_msg(run(&out, "'%s' verify '%s'", pair_bin("colo-replay"), rec) == 0, "%s",
		      out);
	free(out);

	/* show N: QEMU's CPU, decoded through the sync's description */
	show = run_json("show", "%" PRIu64, rec, n);
	vmd = find_named(json_object_get(show, "devices"), "name", "qemu/vm");
	ck_assert_ptr_nonnull(vmd);
	vm = json_object_get(vmd, "vm");
	ck_assert_msg(strncmp(json_string_value(json_object_get(vm, "machine")) ?: "",
			      "pc-i440fx", 9) == 0, "machine");
	ck_assert_str_eq(json_string_value(json_object_get(vm, "vmdesc")) ?: "(none)",
			 "sync-devices");
	secs = json_object_get(vm, "devices");
	ck_assert_int_ge(json_array_size(secs), 10);
	cpu = find_named(secs, "name", "cpu");
	ck_assert_msg(cpu != NULL, "no QEMU section 'cpu'");
	ck_assert_ptr_null(json_object_get(json_object_get(cpu, "fields"), "note"));
	regs = find_named(json_object_get(json_object_get(cpu, "fields"), "fields"), "name",
			  "env.regs");
	eip = find_named(json_object_get(json_object_get(cpu, "fields"), "fields"), "name",
			 "env.eip");
	ck_assert_msg(regs && eip, "cpu: no env.regs or env.eip");
	ck_assert_int_eq(json_array_size(json_object_get(regs, "values")), 16);
	ck_assert(json_is_integer(json_object_get(eip, "value")));
	want_ip = (uint64_t)json_integer_value(json_object_get(eip, "value"));
	json_decref(show);

	/* diff N M: QEMU's fields that changed, by device */
	diff = run_json("diff", "%" PRIu64 " %" PRIu64, rec, n, m);
	vmd = find_named(json_object_get(diff, "devices"), "name", "qemu/vm");
	ck_assert_msg(vmd != NULL, "diff: qemu/vm did not change");
	secs = json_object_get(vmd, "vm_devices");
	ck_assert_int_ge(json_array_size(secs), 1);
	for (size_t i = 0; i < json_array_size(secs); i++) {
		const json_t *f = json_object_get(json_array_get(secs, i), "fields");

		ck_assert(json_string_length(json_object_get(json_array_get(secs, i), "name")));
		ck_assert_int_ge(json_array_size(f), 1);
		ck_assert(json_string_length(json_object_get(json_array_get(f, 0), "path")));
	}
	json_decref(diff);
	ck_assert_int_eq(run(&out, "'%s' diff '%s' %" PRIu64 " %" PRIu64,
			     pair_bin("colo-replay"), rec, n, m), 0);
	ck_assert_msg(strstr(out, "    VM device '"), "%s", out);
	free(out);

	/* serve N: QEMU paused on N's CPU and RAM */
	snprintf(ex, sizeof(ex), "%s/ex", pair_dir());
	ck_assert_int_eq(run(&out, "'%s' extract '%s' %" PRIu64 " -o '%s'",
			     pair_bin("colo-replay"), rec, n, ex), 0);
	free(out);
	serve_start(&s, rec, n);
	colo_qmp_init(&q);
	{
		struct colo_err err;

		colo_err_clear(&err);
		ck_assert_msg(colo_qmp_connect(&q, s.qmp, 10000, &err) == 0, "%s", err.msg);
	}
	ret = qmp_do(&q, "query-status", NULL);
	st = json_string_value(json_object_get(ret, "status"));
	ck_assert_msg(st && (strcmp(st, "paused") == 0 || strcmp(st, "prelaunch") == 0),
		      "status %s", st ? st : "?");
	json_decref(ret);
	ck_assert_uint_eq(qemu_ip(&q), want_ip);
	snprintf(pm, sizeof(pm), "%s/pm.bin", pair_dir());
	json_decref(qmp_do(&q, "pmemsave", json_pack("{s:i,s:i,s:s}", "val", 0, "size",
						     LOW_RAM, "filename", pm)));
	ck_assert(port_listens(s.port));
	colo_qmp_free(&q);          /* no pid: QEMU is colo-replay's to stop */
	snprintf(ramf, sizeof(ramf), "%s/ram/pc.ram.bin", ex);
	a = colo_test_read_file(pm, &alen);
	b = colo_test_read_file(ramf, &blen);
	ck_assert_msg(a && b && alen == LOW_RAM && blen >= alen, "pmemsave %zu, extract %zu",
		      alen, blen);
	for (size_t i = 0; i < alen && !nonzero; i++)
		nonzero = a[i] != 0;
	ck_assert_msg(nonzero, "the low RAM is all zero: nothing compared");
	ck_assert_msg(memcmp(a, b, alen) == 0, "QEMU's RAM is not the checkpoint's");
	free(b);
	serve_stop(&s);

	/* export N: a plain stream that QEMU's own -incoming loads, to the
	 * same CPU and RAM as serve's */
	export_loads_in_qemu(rec, n, want_ip, a, alen);
	free(a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("vmreplay");
	TCase *tc = tcase_create("vmreplay");

	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, qemu_sections_that_do_not_fit_show_as_hex);
	tcase_add_test(tc, a_vm_recording_lists_shows_diffs_and_serves);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
