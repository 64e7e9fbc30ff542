/*
 * test_vmguest.c: the boot-sector test guest (tests/vm/bootsec.S) and its
 * helpers (tests/vmguest.h):
 *   - the checker, on images built by a model of the guest: every instant of
 *     its first 3 laps of the ring passes, including between the two writes
 *     of a tick; stale, early, torn and zeroed slots, a missing magic and a
 *     counter outside the bounds fail with a message naming what is wrong;
 *   - under KVM: the image boots, its counter moves, two reads of the
 *     running VM (no pause) pass the checker;
 *   - the VM stopped: a pmemsave of its whole RAM passes the strict check,
 *     the counter stays put while it is stopped and moves on after cont; the
 *     same buffer with one slot rolled back (a page lost) fails naming it.
 * Cases that need a VM skip without /dev/kvm or qemu-system-x86_64.  Timing
 * figures go to stderr as TAP diagnostics ("# ..."); nothing asserts them.
 *
 * Check runs each test in a forked process that _exits on a failed
 * assertion, skipping teardown: VG_ASSERT stops QEMU and empties the temp
 * dir before it fails.  QEMU also dies with the test process (qmp.h).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "qmp.h"
#include "testutil.h"
#include "vmguest.h"

/* Generous bounds for a loaded 2-core machine, under ASan too. */
#define CONNECT_MS 20000
#define BOOT_MS 60000           /* QEMU start to the first tick: ~2 s here */
#define TICKS_MS 30000          /* for the counter to move by what a test waits for */
#define STOP_MS 10000
#define TEST_TIMEOUT_S 180

#define N COLO_VMGUEST_RING_PAGES
#define SLOT(j) (COLO_VMGUEST_RING_ADDR + (j) * COLO_VMGUEST_PAGE_SIZE)

static struct {
	char *dir;
	char *qemu;
	char *image;
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
	free(T.image);
	T.qemu = T.image = NULL;
}

/* The message is formatted first: it may quote files cleanup removes. */
#define VG_ASSERT(cond, ...) do {                                       \
	if (!(cond)) {                                                  \
		char *vg_msg_;                                          \
		if (asprintf(&vg_msg_, __VA_ARGS__) < 0)                \
			vg_msg_ = NULL;                                 \
		cleanup();                                              \
		ck_abort_msg("%s", vg_msg_ ? vg_msg_ : "out of memory"); \
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

/* ---- the checker, on a model of the guest ---- */

static void put64(uint8_t *ram, uint64_t addr, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		ram[addr + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *ram, uint64_t addr)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | ram[addr + i];
	return v;
}

/* RAM as the guest leaves it after booting (bootsec.S, `norm`). */
static uint8_t *model_boot(void)
{
	uint8_t *ram = calloc(1, COLO_VMGUEST_SPAN);

	ck_assert_ptr_nonnull(ram);
	memcpy(ram + COLO_VMGUEST_HDR_ADDR, COLO_VMGUEST_MAGIC, 8);
	ram[COLO_VMGUEST_HDR_ADDR + 24 + 2] = 0x02;             /* u32 0x20000 */
	ram[COLO_VMGUEST_HDR_ADDR + 28] = N;
	return ram;
}

/* The guest's tick in its two writes; `half` stops after the first. */
static void model_tick(uint8_t *ram, bool half)
{
	uint64_t c = get64(ram, COLO_VMGUEST_COUNTER_ADDR) + 1;

	put64(ram, SLOT(c % N), c);
	if (!half)
		put64(ram, COLO_VMGUEST_COUNTER_ADDR, c);
}

static int check(const uint8_t *ram, uint64_t *c, struct colo_err *err)
{
	colo_err_clear(err);
	return colo_vmguest_check(ram, COLO_VMGUEST_SPAN, c, err);
}

START_TEST(checker_accepts_every_instant)
{
	uint8_t *ram = model_boot(), *half = malloc(COLO_VMGUEST_SPAN);
	struct colo_err err;
	uint64_t c = UINT64_MAX, lo;

	ck_assert_ptr_nonnull(half);
	for (uint64_t t = 0; t <= 3 * N; t++) {
		ck_assert_msg(check(ram, &c, &err) == 0 && c == t, "after %" PRIu64 " ticks: %s",
			      t, err.msg);
		memcpy(half, ram, COLO_VMGUEST_SPAN);
		model_tick(half, true);
		ck_assert_msg(check(half, &c, &err) == 0 && c == t,
			      "between the writes of tick %" PRIu64 ": %s", t + 1, err.msg);
		model_tick(ram, false);
	}
	/*
	 * A copy taken while the guest ran: from counter lo, one tick per slot
	 * copied, each slot copied between the two writes of a tick, the
	 * header after 10 ticks.  Its slots are ahead of its counter, so only
	 * the check that knows the counters read around it passes it.
	 */
	lo = get64(ram, COLO_VMGUEST_COUNTER_ADDR);
	memcpy(half, ram, COLO_VMGUEST_SPAN);
	for (unsigned j = 0; j < N; j++) {
		if (j == 10)
			memcpy(half + COLO_VMGUEST_HDR_ADDR, ram + COLO_VMGUEST_HDR_ADDR, 32);
		model_tick(ram, true);
		memcpy(half + SLOT(j), ram + SLOT(j), 8);
		model_tick(ram, false);
	}
	colo_err_clear(&err);
	ck_assert_msg(colo_vmguest_check_range(half, COLO_VMGUEST_SPAN, lo,
					       get64(ram, COLO_VMGUEST_COUNTER_ADDR), &c, &err) == 0
		      && c == lo + 10, "a copy of a running guest: %s", err.msg);
	ck_assert_int_eq(check(half, &c, &err), -EBADMSG);
	free(half);
	free(ram);
}
END_TEST

/* err's message contains every one of the NULL-terminated words. */
static void assert_says(const struct colo_err *err, const char *const *words)
{
	for (; *words; words++)
		ck_assert_msg(strstr(err->msg, *words), "'%s' does not say '%s'", err->msg,
			      *words);
}

START_TEST(checker_names_what_is_wrong)
{
	uint8_t *ram = model_boot(), *bad = malloc(COLO_VMGUEST_SPAN);
	struct colo_err err;
	uint64_t c;

	ck_assert_ptr_nonnull(bad);
	for (int t = 0; t < 1000; t++)                          /* c = 1000 */
		model_tick(ram, false);
	ck_assert_msg(check(ram, &c, &err) == 0 && c == 1000, "%s", err.msg);

	/* Slot 1000 % 64 = 40 rolled back one lap: a lost page. */
	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	put64(bad, SLOT(40), 1000 - N);
	ck_assert_int_eq(check(bad, &c, &err), -EBADMSG);
	assert_says(&err, (const char *const[]){ "slot 40 ", "(0x48000)", "holds 936",
						  "expected 1000", "counter 1000", NULL });

	/* Slot 42 ahead by two ticks (only c + 1 may be there early). */
	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	put64(bad, SLOT(42), 1002);
	ck_assert_int_eq(check(bad, &c, &err), -EBADMSG);
	assert_says(&err, (const char *const[]){ "slot 42 ", "holds 1002", "expected 938",
						  NULL });

	/* The first bad slot is named when several are. */
	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	put64(bad, SLOT(7), 0);
	put64(bad, SLOT(3), 3);
	ck_assert_int_eq(check(bad, &c, &err), -EBADMSG);
	assert_says(&err, (const char *const[]){ "slot 3 ", "holds 3", "expected 963", NULL });

	/* Half of a value (the guest writes each with one instruction). */
	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	bad[SLOT(63) + 4] = 1;
	ck_assert_int_eq(check(bad, &c, &err), -EBADMSG);
	assert_says(&err, (const char *const[]){ "slot 63 ", NULL });

	/* The counter rolled back without its slots. */
	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	put64(bad, COLO_VMGUEST_COUNTER_ADDR, 990);
	ck_assert_int_eq(check(bad, &c, &err), -EBADMSG);
	assert_says(&err, (const char *const[]){ "counter 990", NULL });

	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	bad[COLO_VMGUEST_HDR_ADDR + 3] ^= 0x20;
	ck_assert_int_eq(check(bad, &c, &err), -ENOENT);
	assert_says(&err, (const char *const[]){ "no magic", "0x10000", NULL });

	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	bad[COLO_VMGUEST_HDR_ADDR + 28] = 32;
	ck_assert_int_eq(check(bad, &c, &err), -EPROTO);
	assert_says(&err, (const char *const[]){ "32 pages", NULL });

	colo_err_clear(&err);
	ck_assert_int_eq(colo_vmguest_check(ram, COLO_VMGUEST_SPAN - 1, &c, &err), -EINVAL);

	/* A copy of a running guest: the counter must lie between the reads,
	 * every slot at a value it had meanwhile. */
	colo_err_clear(&err);
	ck_assert_int_eq(colo_vmguest_check_range(ram, COLO_VMGUEST_SPAN, 1001, 1100, &c, &err),
			 -ERANGE);
	assert_says(&err, (const char *const[]){ "counter 1000", "[1001, 1100]", NULL });
	memcpy(bad, ram, COLO_VMGUEST_SPAN);
	put64(bad, SLOT(40), 1000 + N);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_vmguest_check_range(bad, COLO_VMGUEST_SPAN, 1000, 1010, &c, &err),
			 -EBADMSG);
	assert_says(&err, (const char *const[]){ "slot 40 ", "holds 1064", "1000..1000", NULL });
	free(bad);
	free(ram);
}
END_TEST

/* ---- the guest under KVM ---- */

static void start_vm(void)
{
	char why[200];
	struct colo_err err;
	int r;

	if (!colo_vmguest_kvm_usable(why, sizeof(why)))
		colo_test_skip("%s", why);
	T.qemu = colo_qmp_find_program(COLO_VMGUEST_QEMU);
	T.image = colo_vmguest_image_path();
	VG_ASSERT(T.dir && T.qemu && T.image, "no temp dir, QEMU or image path");
	colo_err_clear(&err);
	r = colo_vmguest_start(&T.q, T.qemu, T.image, T.dir, CONNECT_MS, &err);
	VG_ASSERT(r == 0, "starting the VM: %s\nQEMU stderr:\n%s", err.msg, qemu_log());
}

struct counter_wait {
	uint64_t above;         /* wait for a counter above this */
	uint64_t counter;       /* the last one read */
	int r;                  /* the last read's result */
	struct colo_err err;
};

static bool counter_above(void *ud)
{
	struct counter_wait *w = ud;

	colo_err_clear(&w->err);
	w->r = colo_vmguest_qmp_counter(&T.q, &w->counter, &w->err);
	/* Before the guest booted there is no magic yet: keep waiting. */
	return (w->r == 0 && w->counter > w->above) || (w->r && w->r != -ENOENT);
}

/* Wait until the guest's counter exceeds `above`; returns the counter. */
static uint64_t wait_counter(uint64_t above, int ms)
{
	struct counter_wait w = { .above = above };

	colo_test_wait(counter_above, &w, ms);
	VG_ASSERT(w.r == 0 && w.counter > above,
		  "counter %" PRIu64 " not above %" PRIu64 " after %d ms (%s)\nQEMU stderr:\n%s",
		  w.counter, above, ms, w.r ? w.err.msg : "no error", qemu_log());
	return w.counter;
}

static void stop_vm(void)
{
	int r = colo_qmp_stop(&T.q, STOP_MS);

	VG_ASSERT(r == 0, "QEMU did not quit; it was killed");
}

START_TEST(vm_counter_moves)
{
	char path[PATH_MAX];
	struct colo_err err;
	uint64_t first, c1, c2;
	uint64_t t0 = colo_now_ms(), t1, t2;
	int r;

	start_vm();
	first = wait_counter(0, BOOT_MS);
	t1 = colo_now_ms();
	fprintf(stderr, "# QEMU start to the first tick seen: %" PRIu64 " ms\n", t1 - t0);

	/* Two reads of the running VM, the second after the ring went round. */
	colo_err_clear(&err);
	r = colo_vmguest_qmp_read(&T.q, tpath(path, "ram1.bin"), &c1, &err);
	VG_ASSERT(r == 0, "first read: %s", err.msg);
	VG_ASSERT(c1 >= first, "counter went back from %" PRIu64 " to %" PRIu64, first, c1);
	t1 = colo_now_ms();
	wait_counter(c1 + COLO_VMGUEST_HZ, TICKS_MS);
	r = colo_vmguest_qmp_read(&T.q, tpath(path, "ram2.bin"), &c2, &err);
	VG_ASSERT(r == 0, "second read: %s", err.msg);
	t2 = colo_now_ms();
	VG_ASSERT(c2 > c1 + COLO_VMGUEST_HZ, "counter %" PRIu64 " then %" PRIu64, c1, c2);
	fprintf(stderr, "# %.0f ticks/s over %" PRIu64 " ms\n",
		(double)(c2 - c1) * 1000.0 / (double)(t2 - t1), t2 - t1);
	stop_vm();
}
END_TEST

static void qmp_ok(const char *cmd)
{
	struct colo_err err;
	int r;

	colo_err_clear(&err);
	r = colo_qmp_execute(&T.q, cmd, NULL, NULL, COLO_VMGUEST_QMP_MS, &err);
	VG_ASSERT(r == 0, "%s: %s", cmd, err.msg);
}

static const char *run_status(void)
{
	static char status[32];
	struct colo_err err;
	json_t *st = NULL;
	int r;

	colo_err_clear(&err);
	r = colo_qmp_execute(&T.q, "query-status", NULL, &st, COLO_VMGUEST_QMP_MS, &err);
	VG_ASSERT(r == 0, "query-status: %s", err.msg);
	snprintf(status, sizeof(status), "%s",
		 json_string_value(json_object_get(st, "status")) ?
		 json_string_value(json_object_get(st, "status")) : "?");
	json_decref(st);
	return status;
}

START_TEST(vm_stopped_image_is_whole)
{
	char path[PATH_MAX];
	struct colo_err err;
	uint8_t *ram = NULL, *again = NULL;
	uint64_t c, c_xp, c_again;
	unsigned j;
	int r;

	start_vm();
	/* More than two laps of the ring: every slot has been overwritten. */
	wait_counter(2 * N + 1, BOOT_MS);
	qmp_ok("stop");
	VG_ASSERT(strcmp(run_status(), "paused") == 0, "status '%s' after stop", run_status());

	colo_err_clear(&err);
	r = colo_vmguest_qmp_pmemsave(&T.q, tpath(path, "ram.bin"), COLO_VMGUEST_RAM_SIZE,
				      &ram, &err);
	VG_ASSERT(r == 0, "pmemsave: %s", err.msg);
	r = colo_vmguest_check(ram, COLO_VMGUEST_RAM_SIZE, &c, &err);
	VG_ASSERT(r == 0, "the stopped VM's RAM: %s", err.msg);
	VG_ASSERT(c > 2 * N, "counter %" PRIu64, c);

	/* Stopped means stopped: the counter and the ring stay as they were. */
	r = colo_vmguest_qmp_counter(&T.q, &c_xp, &err);
	VG_ASSERT(r == 0 && c_xp == c, "xp says %" PRIu64 ", the image %" PRIu64 " (%s)", c_xp,
		  c, err.msg);
	r = colo_vmguest_qmp_pmemsave(&T.q, tpath(path, "ram2.bin"), COLO_VMGUEST_SPAN,
				      &again, &err);
	VG_ASSERT(r == 0, "second pmemsave: %s", err.msg);
	VG_ASSERT(memcmp(again, ram, COLO_VMGUEST_SPAN) == 0,
		  "the guest's state changed while the VM was stopped");
	free(again);

	/* The slot the counter wrote last, rolled back one lap as a lost
	 * page would leave it: the checker names it. */
	j = (unsigned)(c % N);
	put64(ram, SLOT(j), c - N);
	colo_err_clear(&err);
	r = colo_vmguest_check(ram, COLO_VMGUEST_RAM_SIZE, NULL, &err);
	{
		char want[32];

		snprintf(want, sizeof(want), "slot %u ", j);
		VG_ASSERT(r == -EBADMSG && strstr(err.msg, want),
			  "rolled-back slot %u: check returned %d, '%s'", j, r, err.msg);
	}
	free(ram);

	/* cont: the guest goes on from where it stopped. */
	qmp_ok("cont");
	c_again = wait_counter(c, TICKS_MS);
	r = colo_vmguest_qmp_read(&T.q, tpath(path, "ram3.bin"), &c_again, &err);
	VG_ASSERT(r == 0 && c_again > c, "after cont: counter %" PRIu64 " (stopped at %" PRIu64
		  "): %s", c_again, c, err.msg);
	stop_vm();
}
END_TEST

START_TEST(vm_args_line)
{
	char *line = colo_vmguest_vm_args_line("/x/b.img", NULL);
	char **argv = colo_vmguest_argv("/q", "/x/b.img", "/d/qmp.sock", "/d/serial.log");

	ck_assert_ptr_nonnull(line);
	ck_assert_str_eq(line, "-machine pc -accel kvm -cpu qemu64,pni=off -m 16M -nodefaults "
			 "-display none -drive file=/x/b.img,format=raw,if=ide,snapshot=on");
	ck_assert_ptr_nonnull(argv);
	ck_assert_str_eq(argv[0], "/q");
	ck_assert_str_eq(argv[14], "-serial");
	ck_assert_str_eq(argv[15], "file:/d/serial.log");
	ck_assert_str_eq(argv[16], "-qmp");
	ck_assert_str_eq(argv[17], "unix:/d/qmp.sock,server=on,wait=off");
	ck_assert_ptr_null(argv[18]);
	colo_vmguest_argv_free(argv);
	free(line);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vmguest");
	TCase *model = tcase_create("checker");
	TCase *vm = tcase_create("vm");

	tcase_add_test(model, checker_accepts_every_instant);
	tcase_add_test(model, checker_names_what_is_wrong);
	tcase_add_test(model, vm_args_line);
	suite_add_tcase(s, model);

	tcase_add_unchecked_fixture(vm, make_dir, remove_dir);
	tcase_add_checked_fixture(vm, setup, teardown);
	tcase_set_timeout(vm, TEST_TIMEOUT_S);
	tcase_add_test(vm, vm_counter_moves);
	tcase_add_test(vm, vm_stopped_image_is_whole);
	suite_add_tcase(s, vm);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
