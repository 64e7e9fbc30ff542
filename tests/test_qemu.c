/*
 * test_qemu.c: interop with a real QEMU (qemu-system-x86_64, 7.2 on Debian
 * 12), both ways (DESIGN.md §3: "colo must read real QEMU migration files"
 * and QEMU must read colo's streams):
 *   - QEMU migrates a pc machine to a file; colo's dump reads it to its last
 *     byte and decodes every device, however the bytes are split;
 *   - colo writes a stream for `-machine none -m 16`; QEMU loads it, and its
 *     RAM (pmemsave) and run state are what colo wrote;
 *   - the same stream with a wrong machine name makes QEMU fail, so the
 *     previous test can fail.
 * Without qemu-system-x86_64 on PATH the program reports a TAP skip.
 *
 * Check runs each test in a forked process that _exits on a failed
 * assertion, skipping teardown: QT_ASSERT stops QEMU and empties the temp
 * dir before it fails.  QEMU also dies with the test process (qmp.h), and
 * Check kills the test's process group when the test ends.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "dump.h"
#include "qmp.h"
#include "savevm.h"
#include "testutil.h"

#define QEMU "qemu-system-x86_64"

/* Bounds for one test on a loaded 2-core machine, under ASan too. */
#define CONNECT_MS 20000
#define COMMAND_MS 10000
#define MIGRATE_MS 30000
#define STOP_MS 10000
#define TEST_TIMEOUT_S 60

#define NONE_RAM_SIZE (16u << 20)      /* -machine none -m 16 */
#define PC_RAM_SIZE (32u << 20)        /* -machine pc -m 32 */

/*
 * The temp dir is made and removed by the runner process (unchecked
 * fixture), so it goes even when Check kills a test that timed out; each
 * test, in its forked process, starts at most one QEMU at a time and
 * empties the dir when it ends.
 */
static struct {
	char *dir;
	char *qemu;
	struct colo_qmp q;
} T;

static void clear_dir(void)
{
	DIR *d = T.dir ? opendir(T.dir) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d))) {
		char *p;

		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
		    asprintf(&p, "%s/%s", T.dir, e->d_name) >= 0) {
			unlink(p);
			free(p);
		}
	}
	if (d)
		closedir(d);
}

static void cleanup(void)
{
	colo_qmp_free(&T.q);
	clear_dir();
	free(T.qemu);
	T.qemu = NULL;
}

/* The message is formatted first: it may quote files cleanup removes.
 * (It is not freed: the failing test process ends here.) */
#define QT_ASSERT(cond, ...) do {                                       \
	if (!(cond)) {                                                  \
		char *qt_msg_;                                          \
		if (asprintf(&qt_msg_, __VA_ARGS__) < 0)                \
			qt_msg_ = NULL;                                 \
		cleanup();                                              \
		ck_abort_msg("%s", qt_msg_ ? qt_msg_ : "out of memory"); \
	}                                                               \
} while (0)

static void make_dir(void)
{
	T.dir = colo_test_tmpdir();
}

static void remove_dir(void)
{
	colo_test_rmdir(T.dir);
	T.dir = NULL;
}

static void setup(void)
{
	colo_qmp_init(&T.q);
	T.qemu = colo_qmp_find_program(QEMU);
	QT_ASSERT(T.dir && T.qemu, "no temp dir or no " QEMU);
}

static void teardown(void)
{
	cleanup();
}

static const char *tpath(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX, "%s/%s", T.dir, name);
	return buf;
}

/* The tail of QEMU's stderr, for failure messages (static buffer). */
static const char *qemu_log(void)
{
	static char tail[1500];
	char path[PATH_MAX];
	size_t len = 0;
	uint8_t *data = colo_test_read_file(tpath(path, "qemu.log"), &len);
	size_t from = len > sizeof(tail) - 1 ? len - (sizeof(tail) - 1) : 0;

	tail[0] = '\0';
	if (data) {
		memcpy(tail, data + from, len - from);
		tail[len - from] = '\0';
	}
	free(data);
	return tail;
}

/* 'path' for /bin/sh, which QEMU runs exec: URIs with. */
static char *shell_quote(const char *s)
{
	char *out = malloc(4 * strlen(s) + 3), *p = out;

	if (!out)
		return NULL;
	*p++ = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *s;
		}
	}
	*p++ = '\'';
	*p = '\0';
	return out;
}

/* QEMU with a QMP socket and stderr in the temp dir, plus `extra` args. */
static int start_qemu(const char *machine, const char *mem, const char *const *extra,
		      struct colo_err *err)
{
	char sock[PATH_MAX], log[PATH_MAX], qmp[PATH_MAX + 32];
	const char *argv[32] = {
		QEMU, "-machine", machine, "-accel", "tcg", "-m", mem,
		"-nographic", "-nodefaults", "-qmp", qmp,
	};
	size_t n = 11;
	int r;

	snprintf(qmp, sizeof(qmp), "unix:%s,server=on,wait=off", tpath(sock, "qmp.sock"));
	for (; extra && *extra && n < 31; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	r = colo_qmp_start(&T.q, T.qemu, argv, tpath(log, "qemu.log"), err);
	if (r == 0)
		r = colo_qmp_connect(&T.q, sock, CONNECT_MS, err);
	return r;
}

/* Poll query-migrate until the migration completed or failed. */
static int wait_migration(char *status, size_t n, struct colo_err *err)
{
	struct timespec pause = { 0, 20 * 1000000 };
	long long deadline = (long long)colo_now_ms() + MIGRATE_MS;

	for (;;) {
		json_t *ret;
		const char *s;
		int r = colo_qmp_execute(&T.q, "query-migrate", NULL, &ret, COMMAND_MS, err);

		if (r)
			return r;
		s = json_string_value(json_object_get(ret, "status"));
		snprintf(status, n, "%s", s ? s : "none");
		if (s && strcmp(s, "failed") == 0) {
			s = json_string_value(json_object_get(ret, "error-desc"));
			colo_err_set(err, EIO, "migration failed: %s", s ? s : "(no error-desc)");
		}
		json_decref(ret);
		if (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0)
			return 0;
		if ((long long)colo_now_ms() > deadline)
			return colo_err_set(err, ETIMEDOUT, "migration still '%s' after %d s",
					    status, MIGRATE_MS / 1000);
		nanosleep(&pause, NULL);
	}
}

static bool wait_file(const char *path, int timeout_ms)
{
	struct timespec pause = { 0, 20 * 1000000 };
	long long deadline = (long long)colo_now_ms() + timeout_ms;
	struct stat st;

	while (stat(path, &st) < 0) {
		if ((long long)colo_now_ms() > deadline)
			return false;
		nanosleep(&pause, NULL);
	}
	return true;
}

/* ---- QEMU's file, read by colo ---- */

static json_int_t jint(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *jstr(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s ? s : "";
}

static json_t *find_section(const json_t *items, const char *type, const char *idstr)
{
	for (size_t i = 0; i < json_array_size(items); i++) {
		json_t *it = json_array_get(items, i);

		if (strcmp(jstr(it, "kind"), "section") == 0 &&
		    strcmp(jstr(it, "type"), type) == 0 && strcmp(jstr(it, "idstr"), idstr) == 0)
			return it;
	}
	return NULL;
}

static json_t *find_named(const json_t *arr, const char *name)
{
	for (size_t i = 0; i < json_array_size(arr); i++) {
		json_t *o = json_array_get(arr, i);
		const char *n = json_string_value(json_object_get(o, "name"));

		if (n && strcmp(n, name) == 0)
			return o;
	}
	return NULL;
}

static void check_pc_dump(const json_t *doc, size_t file_size)
{
	const json_t *items = json_object_get(doc, "items");
	const json_t *sum = json_object_get(doc, "summary");
	const json_t *ram, *pcram, *blocks, *gs, *runstate, *last, *vmdesc;
	const char *name = jstr(json_object_get(doc, "configuration"), "name");
	static const char prelaunch[] = "prelaunch";
	char want[2 * 100 + 1];
	json_int_t pages = 0, full = 0;
	size_t n = json_array_size(items);
	const char *k;
	json_t *v;

	QT_ASSERT(strncmp(name, "pc-i440fx-", 10) == 0, "machine '%s'", name);
	QT_ASSERT(json_is_true(json_object_get(doc, "footers")), "no footers");
	QT_ASSERT(jint(sum, "bytes_read") == (json_int_t)file_size,
		  "read %" JSON_INTEGER_FORMAT " of %zu bytes", jint(sum, "bytes_read"),
		  file_size);

	ram = find_section(items, "START", "ram");
	QT_ASSERT(ram && jint(ram, "version_id") == 4, "no RAM START section version 4");
	blocks = json_object_get(json_object_get(ram, "mem_size"), "blocks");
	pcram = find_named(blocks, "pc.ram");
	QT_ASSERT(pcram && jint(pcram, "length") == PC_RAM_SIZE,
		  "MEM_SIZE has no pc.ram of %u bytes", PC_RAM_SIZE);
	pcram = find_named(json_object_get(doc, "ram_blocks"), "pc.ram");
	QT_ASSERT(pcram, "no pc.ram in ram_blocks");
	json_object_foreach(json_object_get(pcram, "pages"), k, v)
		pages += json_integer_value(v);
	QT_ASSERT(pages == PC_RAM_SIZE / COLO_PAGE_SIZE,
		  "pc.ram: %" JSON_INTEGER_FORMAT " pages", pages);

	/* Every device section was decoded through the vmdesc. */
	for (size_t i = 0; i < n; i++) {
		const json_t *it = json_array_get(items, i);

		if (strcmp(jstr(it, "type"), "FULL") == 0) {
			full++;
			QT_ASSERT(json_is_object(json_object_get(it, "device")),
				  "device '%s' not decoded", jstr(it, "idstr"));
		}
	}
	QT_ASSERT(n >= 2, "%zu items", n);
	last = json_array_get(items, n - 2);
	vmdesc = json_array_get(items, n - 1);
	QT_ASSERT(strcmp(jstr(last, "kind"), "eof") == 0 &&
		  strcmp(jstr(vmdesc, "kind"), "vmdesc") == 0,
		  "stream ends with '%s', '%s'", jstr(last, "kind"), jstr(vmdesc, "kind"));
	QT_ASSERT(full > 0 && jint(vmdesc, "devices") == full && jint(sum, "devices") == full,
		  "%" JSON_INTEGER_FORMAT " FULL sections, vmdesc lists %" JSON_INTEGER_FORMAT
		  ", %" JSON_INTEGER_FORMAT " decoded", full, jint(vmdesc, "devices"),
		  jint(sum, "devices"));
	QT_ASSERT(find_section(items, "FULL", "timer") && find_section(items, "FULL", "cpu") &&
		  find_section(items, "FULL", "globalstate"),
		  "timer, cpu or globalstate missing");

	/* QEMU was started with -S: its global state says so. */
	gs = json_object_get(find_section(items, "FULL", "globalstate"), "device");
	runstate = find_named(json_object_get(gs, "fields"), "runstate");
	QT_ASSERT(runstate && jint(runstate, "size") == 100, "no runstate[100] field");
	for (size_t i = 0; i < 100; i++)
		snprintf(want + 2 * i, 3, "%02x",
			 i < sizeof(prelaunch) - 1 ? (unsigned char)prelaunch[i] : 0);
	QT_ASSERT(strcmp(jstr(runstate, "value"), want) == 0, "runstate %s",
		  jstr(runstate, "value"));
}

START_TEST(qemu_file_dumps_to_its_end)
{
	static const char *const extra[] = { "-S", NULL };
	char part[PATH_MAX], file[PATH_MAX], status[32] = "";
	struct colo_pieces ones = { .fixed = 1 };
	struct colo_pieces random = { .max = 9000, .rng = { COLO_TEST_SEED(0x5eed) } };
	json_t *doc, *split;
	struct colo_err err;
	char *qpart, *qfile, *uri;
	uint8_t *data;
	size_t len = 0;
	int r;

	colo_err_clear(&err);
	r = start_qemu("pc", "32", extra, &err);
	QT_ASSERT(r == 0, "%s\nQEMU stderr:\n%s", err.msg, qemu_log());
	/* Renamed once cat is done: the file is whole when it appears. */
	qpart = shell_quote(tpath(part, "pc.part"));
	qfile = shell_quote(tpath(file, "pc.mig"));
	QT_ASSERT(qpart && qfile && asprintf(&uri, "exec:cat > %s && mv %s %s", qpart,
					     qpart, qfile) > 0, "out of memory");
	r = colo_qmp_execute(&T.q, "migrate", json_pack("{s:s}", "uri", uri), NULL,
			     COMMAND_MS, &err);
	free(uri);
	free(qpart);
	free(qfile);
	if (r == 0)
		r = wait_migration(status, sizeof(status), &err);
	QT_ASSERT(r == 0 && strcmp(status, "completed") == 0, "migrate: %s\nQEMU stderr:\n%s",
		  err.msg, qemu_log());
	r = colo_qmp_stop(&T.q, STOP_MS);
	QT_ASSERT(r == 0, "QEMU did not quit");
	QT_ASSERT(wait_file(file, MIGRATE_MS), "%s never appeared", file);

	r = colo_dump_file(file, &doc, &err);
	QT_ASSERT(r == 0, "dump: %s", err.msg);
	data = colo_test_read_file(file, &len);
	QT_ASSERT(data && len > 0, "cannot read %s", file);
	check_pc_dump(doc, len);

	/* The same description however the reader is fed. */
	r = colo_dump_buffer(data, len, colo_pieces_next, &ones, &split, &err);
	QT_ASSERT(r == 0, "1-byte pieces: %s", err.msg);
	QT_ASSERT(json_equal(doc, split), "1-byte pieces give another description");
	json_decref(split);
	r = colo_dump_buffer(data, len, colo_pieces_next, &random, &split, &err);
	QT_ASSERT(r == 0, "random pieces: %s", err.msg);
	QT_ASSERT(json_equal(doc, split), "random pieces give another description");
	json_decref(split);
	json_decref(doc);
	free(data);
}
END_TEST

/* ---- colo's stream, read by QEMU ---- */

/* QEMU 7.2's "timer" and "globalstate" as `-machine none` sends them. */
struct qemu_timers {
	int64_t cpu_ticks_offset;
	int64_t cpu_clock_offset;
};

static const struct colo_vmstate_desc timers_vmsd = {
	.name = "timer",
	.version_id = 2,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_INT64(cpu_ticks_offset, struct qemu_timers),
		COLO_VMSTATE_UNUSED(8),
		COLO_VMSTATE_INT64_V(cpu_clock_offset, struct qemu_timers, 2),
		COLO_VMSTATE_END,
	},
};

struct qemu_global_state {
	uint32_t size;
	uint8_t runstate[100];
};

static const struct colo_vmstate_desc global_state_vmsd = {
	.name = "globalstate",
	.version_id = 1,
	.minimum_version_id = 1,
	.fields = (const struct colo_vmstate_field[]) {
		COLO_VMSTATE_UINT32(size, struct qemu_global_state),
		COLO_VMSTATE_BUFFER(runstate, struct qemu_global_state),
		COLO_VMSTATE_END,
	},
};

/*
 * Page i: all zero when i % 8 == 3, one repeated non-zero byte when
 * i % 8 == 5 (QEMU's loader treats both specially), else bytes from a
 * generator seeded with i, so a page in the wrong place shows.
 */
static void fill_pattern(uint8_t *ram, size_t size)
{
	for (size_t i = 0; i < size / COLO_PAGE_SIZE; i++) {
		uint8_t *page = ram + i * COLO_PAGE_SIZE;
		struct colo_rng rng = { i + 1 };

		if (i % 8 == 3)
			memset(page, 0, COLO_PAGE_SIZE);
		else if (i % 8 == 5)
			memset(page, 1 + (int)(i % 255), COLO_PAGE_SIZE);
		else
			colo_rng_fill(&rng, page, COLO_PAGE_SIZE);
	}
}

/* The whole stream for `-machine none -m 16`, configuration name `machine`. */
static int write_stream(const char *machine, const uint8_t *ram, const char *path,
			struct colo_err *err)
{
	struct qemu_timers timers = { 123456789, 1000000000 };
	struct qemu_global_state gs = { sizeof("running"), "running" };
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_savevm sv;
	int r;

	if ((r = colo_savevm_init(&sv, machine, err)) ||
	    (r = colo_savevm_add_ram(&sv, "ram", (void *)ram, NONE_RAM_SIZE, err)) ||
	    (r = colo_savevm_add_device(&sv, "timer", 0, &timers_vmsd, &timers, err)) ||
	    (r = colo_savevm_add_device(&sv, "globalstate", 0, &global_state_vmsd, &gs,
					err)) ||
	    (r = colo_savevm_save(&sv, &out, 0, err)))
		goto out;
	if (colo_test_write_file(path, out.data, out.len) < 0)
		r = colo_err_set(err, errno, "cannot write %s", path);
out:
	colo_buf_free(&out);
	colo_savevm_free(&sv);
	return r;
}

static uint8_t *map_pattern(void)
{
	uint8_t *ram = mmap(NULL, NONE_RAM_SIZE, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (ram == MAP_FAILED)
		return NULL;
	fill_pattern(ram, NONE_RAM_SIZE);
	return ram;
}

/*
 * Start QEMU loading `stream` and wait until the incoming migration ended.
 * QEMU 7.2 exits with status 1 when an incoming migration fails, often
 * before QMP answers, so such an exit counts as "failed" (err says how).
 * After "completed" QEMU keeps running for the caller.
 */
static int run_incoming(const char *stream, char *status, size_t n, struct colo_err *err)
{
	const char *extra[] = { "-incoming", NULL, NULL };
	char *qs = shell_quote(stream), *incoming = NULL;
	int r;

	if (!qs || asprintf(&incoming, "exec:cat %s", qs) < 0) {
		free(qs);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	extra[1] = incoming;
	snprintf(status, n, "none");
	r = start_qemu("none", "16", extra, err);
	if (r == 0)
		r = wait_migration(status, n, err);
	free(incoming);
	free(qs);
	if (r && colo_qmp_exited(&T.q) && WIFEXITED(T.q.status) &&
	    WEXITSTATUS(T.q.status) != 0) {
		snprintf(status, n, "failed");
		return 0;
	}
	return r;
}

static size_t first_diff_page(const uint8_t *a, const uint8_t *b, size_t len)
{
	size_t off = 0;

	while (off < len && memcmp(a + off, b + off, COLO_PAGE_SIZE) == 0)
		off += COLO_PAGE_SIZE;
	return off / COLO_PAGE_SIZE;
}

START_TEST(qemu_reads_ours)
{
	char stream[PATH_MAX], memfile[PATH_MAX], status[32];
	json_t *st = NULL;
	struct colo_err err;
	uint8_t *ram, *mem;
	size_t len = 0;
	int r;

	colo_err_clear(&err);
	ram = map_pattern();
	QT_ASSERT(ram, "cannot map %u bytes", NONE_RAM_SIZE);
	r = write_stream("none", ram, tpath(stream, "colo.mig"), &err);
	QT_ASSERT(r == 0, "writing the stream: %s", err.msg);

	r = run_incoming(stream, status, sizeof(status), &err);
	QT_ASSERT(r == 0 && strcmp(status, "completed") == 0,
		  "incoming migration %s: %s\nQEMU stderr:\n%s", status, err.msg, qemu_log());
	r = colo_qmp_execute(&T.q, "pmemsave",
			     json_pack("{s:I,s:I,s:s}", "val", (json_int_t)0, "size",
				       (json_int_t)NONE_RAM_SIZE, "filename",
				       tpath(memfile, "ram.bin")),
			     NULL, COMMAND_MS, &err);
	if (r == 0)
		r = colo_qmp_execute(&T.q, "query-status", NULL, &st, COMMAND_MS, &err);
	QT_ASSERT(r == 0, "%s\nQEMU stderr:\n%s", err.msg, qemu_log());
	r = colo_qmp_stop(&T.q, STOP_MS);
	QT_ASSERT(r == 0, "QEMU did not quit");

	/* The globalstate section said "running", and QEMU was not started
	 * with -S: it resumed the guest. */
	QT_ASSERT(strcmp(jstr(st, "status"), "running") == 0 &&
		  json_is_true(json_object_get(st, "running")),
		  "QEMU's status is '%s'", jstr(st, "status"));
	json_decref(st);
	mem = colo_test_read_file(memfile, &len);
	QT_ASSERT(mem && len == NONE_RAM_SIZE, "pmemsave wrote %zu bytes", len);
	QT_ASSERT(memcmp(mem, ram, len) == 0, "guest RAM differs from page %zu on",
		  first_diff_page(mem, ram, len));
	free(mem);
	munmap(ram, NONE_RAM_SIZE);
}
END_TEST

START_TEST(qemu_refuses_wrong_machine)
{
	char stream[PATH_MAX], status[32];
	struct colo_err err;
	const char *log;
	uint8_t *ram;
	int r;

	colo_err_clear(&err);
	ram = map_pattern();
	QT_ASSERT(ram, "cannot map %u bytes", NONE_RAM_SIZE);
	r = write_stream("not-none", ram, tpath(stream, "colo.mig"), &err);
	munmap(ram, NONE_RAM_SIZE);
	QT_ASSERT(r == 0, "writing the stream: %s", err.msg);

	r = run_incoming(stream, status, sizeof(status), &err);
	log = qemu_log();
	QT_ASSERT(r == 0 && strcmp(status, "failed") == 0,
		  "incoming migration %s (%s), expected it to fail\nQEMU stderr:\n%s",
		  status, err.msg, log);
	QT_ASSERT(strstr(log, "Machine type") && strstr(log, "'not-none'"),
		  "QEMU's error does not name the machine type:\n%s", log);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("qemu");
	TCase *tc = tcase_create("qemu");

	tcase_add_unchecked_fixture(tc, make_dir, remove_dir);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, TEST_TIMEOUT_S);
	tcase_add_test(tc, qemu_file_dumps_to_its_end);
	tcase_add_test(tc, qemu_reads_ours);
	tcase_add_test(tc, qemu_refuses_wrong_machine);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	char *qemu = colo_qmp_find_program(QEMU);

	if (!qemu)
		colo_test_skip_all(QEMU " not installed");
	free(qemu);
	return colo_test_main(suite());
}
