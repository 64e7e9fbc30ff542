/*
 * test_vm.c: a real QEMU/KVM virtual machine under colo (DESIGN.md §9):
 * the boot-sector guest (tests/vm/bootsec.S, tests/vmguest.h) protected
 * by a pair, killed in its different ways, taken over and protected again.
 *
 * Each node's VM also has a QMP socket of the test's own in its vm-args
 * (an operator's monitor, which colo allows), through which the test reads
 * the guest's counter and checks the guest's RAM while it runs.  The
 * committed counter is read from the secondary's RAM file (vm-ram-path):
 * the checkpoint it holds is at least that far.  A VM that took over must
 * go on from at least there, with every ring page consistent: a rolled
 * back or lost page, or a reboot, fails the check.
 *
 * Needs /dev/kvm and qemu-system-x86_64: skipped where either is missing.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "pair.h"
#include "qmp.h"
#include "testutil.h"
#include "vmguest.h"

#define WAIT_MS 30000

struct node {
	struct proc p;
	char name[8];
	char listen[32];
	char ram[512];              /* vm-ram-path */
	char qmp[512];              /* the test's own QMP socket on its VM */
	char args[2048];            /* vm-args */
};

static char skip_why[256];
static char *image;

static bool vm_usable(void)
{
	static int usable = -1;

	if (usable < 0) {
		usable = colo_vmguest_kvm_usable(skip_why, sizeof(skip_why));
		if (usable) {
			image = colo_vmguest_image_path();
			if (!image || access(image, R_OK) != 0) {
				snprintf(skip_why, sizeof(skip_why), "boot-sector image %s missing",
					 image ? image : "?");
				usable = 0;
			}
		}
	}
	return usable;
}

#define REQUIRE_VM() do {                                   \
		if (!vm_usable())                            \
			colo_test_skip("%s", skip_why);      \
	} while (0)

static void node_init(struct node *n, const char *name)
{
	char *line;

	memset(n, 0, sizeof(*n));
	snprintf(n->name, sizeof(n->name), "%s", name);
	snprintf(n->listen, sizeof(n->listen), "127.0.0.1:%u", pair_free_port());
	snprintf(n->ram, sizeof(n->ram), "%s/%s.ram", pair_dir(), name);
	snprintf(n->qmp, sizeof(n->qmp), "%s/%s-test.qmp", pair_dir(), name);
	line = colo_vmguest_vm_args_line(image, NULL);
	ck_assert_ptr_nonnull(line);
	snprintf(n->args, sizeof(n->args), "%s -qmp unix:%s,server=on,wait=off", line, n->qmp);
	free(line);
}

static void start_secondary(struct node *n, const struct node *peer)
{
	proc_start(&n->p, pair_bin("colo-secondary"), n->name, "--guest", "qemu",
		   "--vm-args", n->args, "--vm-ram-path", n->ram, "--listen", n->listen,
		   "--peer", peer->listen, "--heartbeat-timeout-ms", "500",
		   "--checkpoint-interval-ms", "50", NULL);
}

static void start_primary(struct node *n, const struct node *peer, const char *sync_ack)
{
	proc_start(&n->p, pair_bin("colo-primary"), n->name, "--guest", "qemu",
		   "--vm-args", n->args, "--vm-ram-path", n->ram, "--listen", n->listen,
		   "--peer", peer->listen, "--heartbeat-timeout-ms", "500",
		   "--checkpoint-interval-ms", "50", "--vm-sync-ack", sync_ack, NULL);
}

static void dump(struct node *a, struct node *b)
{
	proc_dump_log(&a->p);
	proc_dump_log(&b->p);
}

static uint64_t committed_counter(struct node *n);

static bool cond_booted(void *ud)
{
	return committed_counter(ud) > 0;
}

/* Wait until both say protected, n checkpoints are committed on s and the
 * committed guest has booted (SeaBIOS takes a second or so). */
static void wait_protected(struct node *pri, struct node *sec, uint64_t n)
{
	struct wait_arg w = { .p = &sec->p, .n = n };

	if (!wait_for(cond_protected, &sec->p, WAIT_MS) ||
	    !wait_for(cond_protected, &pri->p, WAIT_MS) || !wait_for(cond_committed, &w, WAIT_MS) ||
	    !wait_for(cond_booted, sec, WAIT_MS)) {
		dump(pri, sec);
		ck_abort_msg("%s did not get protected by %s", pri->name, sec->name);
	}
}

/* The guest line of colo-ctl status (malloc'd). */
static char *guest_line(struct node *n)
{
	char err[256];
	Colo__ControlResponse *r = ctl(&n->p, COLO__CONTROL_REQUEST__CMD_STATUS, 0, err,
				       sizeof(err));
	char *s;

	if (!r || !r->status)
		proc_dump_log(&n->p);
	ck_assert_msg(r && r->status, "%s: status: %s", n->name, r ? "no status" : err);
	s = strdup(r->status->guest);
	colo__control_response__free_unpacked(r, NULL);
	return s;
}

static pid_t qemu_pid(struct node *n)
{
	char *g = guest_line(n), *at = strstr(g, "QEMU pid ");
	long pid = at ? strtol(at + 9, NULL, 10) : 0;

	ck_assert_msg(pid > 0, "no QEMU pid in '%s'", g);
	free(g);
	return (pid_t)pid;
}

/* The counter in the secondary's committed RAM. */
static uint64_t committed_counter(struct node *n)
{
	uint64_t c = 0;
	int fd = open(n->ram, O_RDONLY);

	ck_assert_msg(fd >= 0, "%s: %s", n->ram, strerror(errno));
	ck_assert_int_eq(pread(fd, &c, sizeof(c), COLO_VMGUEST_COUNTER_ADDR), (ssize_t)sizeof(c));
	close(fd);
	return c;
}

/* Read and check the guest of n's VM through the test's QMP socket. */
static uint64_t vm_counter(struct node *n)
{
	struct colo_qmp q;
	struct colo_err err;
	char path[600];
	uint64_t c = 0;
	int r;

	colo_qmp_init(&q);
	colo_err_clear(&err);
	snprintf(path, sizeof(path), "%s/%s.pmem", pair_dir(), n->name);
	r = colo_qmp_connect(&q, n->qmp, 5000, &err);
	if (r == 0)
		r = colo_vmguest_qmp_read(&q, path, &c, &err);
	q.pid = 0;                 /* not ours to stop: just disconnect */
	colo_qmp_free(&q);
	unlink(path);
	ck_assert_msg(r == 0, "%s's VM: %s", n->name, err.msg);
	return c;
}

static bool cond_counter_above(void *ud)
{
	struct wait_arg *w = ud;
	struct node *n = (struct node *)w->p;

	return vm_counter(n) > w->n;
}

/*
 * s takes over from p, which dies (its VM killed, or colo itself): s's VM
 * runs on from at least `before` and its guest keeps ticking.
 */
static void check_took_over(struct node *dead, struct node *s, uint64_t before,
			    int want_status)
{
	struct wait_arg w;
	uint64_t c;

	if (!proc_wait(&dead->p, WAIT_MS)) {
		dump(dead, s);
		ck_abort_msg("%s did not stop", dead->name);
	}
	if (want_status >= 0)
		ck_assert_int_eq(dead->p.exit_status, want_status);
	if (!wait_for(cond_primary, &s->p, WAIT_MS)) {
		dump(dead, s);
		ck_abort_msg("%s did not take over", s->name);
	}
	c = vm_counter(s);
	ck_assert_msg(c >= before, "%s's VM counter %" PRIu64 " < committed %" PRIu64,
		      s->name, c, before);
	w.p = (struct proc *)s;
	w.n = c;
	ck_assert_msg(wait_for(cond_counter_above, &w, WAIT_MS), "%s's VM does not run",
		      s->name);
	ck_assert(proc_log_has(&s->p, "VM running on the committed state"));
}

static void stop_all(struct node *a, struct node *b)
{
	if (!a->p.exited && a->p.pid > 0)
		proc_stop(&a->p);
	if (!b->p.exited && b->p.pid > 0)
		proc_stop(&b->p);
}

/* ---- cases ---- */

START_TEST(vm_checkpoints_flow)
{
	struct node a, b;
	char *g;

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	start_secondary(&b, &a);
	start_primary(&a, &b, "no");
	wait_protected(&a, &b, 10);
	g = guest_line(&a);
	ck_assert_msg(strstr(g, "VM pc-i440fx-7.2 (QEMU pid ") && strstr(g, "checkpoints from QEMU"),
		      "%s", g);
	free(g);
	g = guest_line(&b);
	ck_assert_msg(strstr(g, "standby QEMU pid "), "%s", g);
	free(g);
	/* The committed RAM is the guest's, and it moves. */
	ck_assert(committed_counter(&b) > 0);
	stop_all(&a, &b);
	/* Stopped nodes leave no QEMU and no RAM file behind. */
	ck_assert_int_ne(access(b.ram, F_OK), 0);
}
END_TEST

/* set-interval reaches QEMU as x-checkpoint-delay. */
START_TEST(vm_set_interval)
{
	struct node a, b;
	char err[256];
	Colo__ControlResponse *r;
	char *g = NULL;
	uint64_t deadline;

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	start_secondary(&b, &a);
	start_primary(&a, &b, "no");
	wait_protected(&a, &b, 3);
	r = ctl(&a.p, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, 20, err, sizeof(err));
	ck_assert_msg(r != NULL, "%s", err);
	colo__control_response__free_unpacked(r, NULL);
	deadline = colo_now_ms() + WAIT_MS;
	do {
		free(g);
		g = guest_line(&a);
		if (strstr(g, "x-checkpoint-delay 20 ms"))
			break;
		usleep(20000);
	} while (colo_now_ms() < deadline);
	ck_assert_msg(strstr(g, "x-checkpoint-delay 20 ms"), "%s", g);
	free(g);
	stop_all(&a, &b);
}
END_TEST

/*
 * kill -9 of the primary's QEMU: the primary stops (status 7) and the
 * secondary runs the VM on; a new secondary protects it; then kill -9 of
 * the new primary's colo itself (its QEMU dies with it): back again.
 */
static void kill_and_back(const char *sync_ack)
{
	struct node a, b;
	uint64_t before;
	struct colo_rng rng = { colo_test_seed_random(sync_ack) };

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	start_secondary(&b, &a);
	start_primary(&a, &b, sync_ack);
	wait_protected(&a, &b, 5);
	usleep((useconds_t)(1000 * colo_rng_below(&rng, 400)));
	before = committed_counter(&b);
	ck_assert_int_eq(kill(qemu_pid(&a), SIGKILL), 0);
	check_took_over(&a, &b, before, 7);
	ck_assert(proc_log_has(&a.p, "died: QEMU"));

	/* a comes back as the secondary; b's VM is protected again. */
	start_secondary(&a, &b);
	wait_protected(&b, &a, 5);
	usleep((useconds_t)(1000 * colo_rng_below(&rng, 400)));
	before = committed_counter(&a);
	proc_signal(&b.p, SIGKILL);
	check_took_over(&b, &a, before, 128 + SIGKILL);
	stop_all(&a, &b);
}

START_TEST(vm_kill_qemu_then_colo)
{
	kill_and_back("no");
}
END_TEST

START_TEST(vm_kill_with_sync_ack)
{
	kill_and_back("yes");
}
END_TEST

/* The secondary dies: the VM runs on unprotected; a new one gets a full
 * sync and protects it. */
START_TEST(vm_secondary_dies)
{
	struct node a, b;
	struct wait_arg w;

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	start_secondary(&b, &a);
	start_primary(&a, &b, "yes");
	wait_protected(&a, &b, 5);
	proc_signal(&b.p, SIGKILL);
	ck_assert(proc_wait(&b.p, WAIT_MS));
	w.p = &a.p;
	w.text = "running unprotected";
	ck_assert_msg(wait_for(cond_log, &w, WAIT_MS), "a did not notice");
	/* The VM runs (vm-sync-ack does not hold it without a secondary). */
	w.p = (struct proc *)&a;
	w.n = vm_counter(&a);
	ck_assert(wait_for(cond_counter_above, &w, WAIT_MS));
	start_secondary(&b, &a);
	wait_protected(&a, &b, 3);
	ck_assert(committed_counter(&b) >= w.n);
	stop_all(&a, &b);
}
END_TEST

/* QEMU stops answering QMP (SIGSTOP): the primary takes it for dead. */
START_TEST(vm_qmp_silent)
{
	struct node a, b;
	uint64_t before;
	pid_t qp;

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	start_secondary(&b, &a);
	start_primary(&a, &b, "no");
	wait_protected(&a, &b, 5);
	before = committed_counter(&b);
	qp = qemu_pid(&a);
	ck_assert_int_eq(kill(qp, SIGSTOP), 0);
	check_took_over(&a, &b, before, 7);
	ck_assert(proc_log_has(&a.p, "QMP silent") || proc_log_has(&a.p, "sent nothing"));
	/* a stopped it with SIGKILL on its way out (and it dies with a). */
	kill(qp, SIGKILL);
	stop_all(&a, &b);
}
END_TEST

/* QEMU ends COLO (an operator's x-colo-lost-heartbeat on the primary's
 * QEMU: event COLO_EXIT): the VM is no longer protected by that QEMU, so
 * the primary stops and the secondary takes over. */
START_TEST(vm_colo_exit)
{
	struct node a, b;
	struct colo_qmp q;
	struct colo_err err;
	uint64_t before;
	int r;

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	start_secondary(&b, &a);
	start_primary(&a, &b, "no");
	wait_protected(&a, &b, 5);
	before = committed_counter(&b);
	colo_qmp_init(&q);
	colo_err_clear(&err);
	r = colo_qmp_connect(&q, a.qmp, 5000, &err);
	if (r == 0)
		r = colo_qmp_execute(&q, "x-colo-lost-heartbeat", NULL, NULL, 5000, &err);
	q.pid = 0;
	colo_qmp_free(&q);
	ck_assert_msg(r == 0, "x-colo-lost-heartbeat: %s", err.msg);
	check_took_over(&a, &b, before, 7);
	if (!proc_log_has(&a.p, "QEMU ended COLO (COLO_EXIT"))
		proc_dump_log(&a.p);
	ck_assert(proc_log_has(&a.p, "QEMU ended COLO (COLO_EXIT"));
	stop_all(&a, &b);
}
END_TEST

/* Bad configurations are refused at start, naming why. */
START_TEST(vm_bad_config)
{
	struct node a, b;

	REQUIRE_VM();
	node_init(&a, "a");
	node_init(&b, "b");
	proc_start(&a.p, pair_bin("colo-primary"), "a", "--guest", "qemu", "--listen", a.listen,
		   "--peer", b.listen, NULL);
	ck_assert(proc_wait(&a.p, WAIT_MS));
	ck_assert_int_eq(a.p.exit_status, 2);
	ck_assert(proc_log_has(&a.p, "guest qemu needs vm-args"));
	proc_start(&a.p, pair_bin("colo-primary"), "a", "--guest", "qemu", "--listen", a.listen,
		   "--peer", b.listen, "--vm-args", "-machine pc -drive file=/x.img,if=virtio",
		   NULL);
	ck_assert(proc_wait(&a.p, WAIT_MS));
	ck_assert_int_eq(a.p.exit_status, 2);
	ck_assert(proc_log_has(&a.p, "-drive file=/x.img,if=virtio is writable"));
	proc_start(&a.p, pair_bin("colo-primary"), "a", "--guest", "qemu", "--listen", a.listen,
		   "--peer", b.listen, "--vm-args", "-machine pc -accel tcg", NULL);
	ck_assert(proc_wait(&a.p, WAIT_MS));
	ck_assert_int_eq(a.p.exit_status, 2);
	ck_assert(proc_log_has(&a.p, "tcg"));
	proc_start(&a.p, pair_bin("colo-primary"), "a", "--guest", "qemu", "--listen", a.listen,
		   "--peer", b.listen, "--vm-args", "-machine pc -incoming defer", NULL);
	ck_assert(proc_wait(&a.p, WAIT_MS));
	ck_assert_int_eq(a.p.exit_status, 2);
	ck_assert(proc_log_has(&a.p, "-incoming"));
	/* --check-config judges vm-args too, and says OK for good ones. */
	proc_start(&a.p, pair_bin("colo-primary"), "a", "--guest", "qemu", "--check-config",
		   "--vm-args", "-machine pc -incoming defer", NULL);
	ck_assert(proc_wait(&a.p, WAIT_MS));
	ck_assert_int_eq(a.p.exit_status, 2);
	ck_assert(proc_log_has(&a.p, "vm-args: -incoming"));
	proc_start(&a.p, pair_bin("colo-primary"), "a", "--guest", "qemu", "--check-config",
		   "--vm-args", a.args, NULL);
	ck_assert(proc_wait(&a.p, WAIT_MS));
	ck_assert_int_eq(a.p.exit_status, 0);
	ck_assert(proc_log_has(&a.p, "configuration OK"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("vm");
	TCase *tc = tcase_create("vm");

	tcase_set_timeout(tc, 180);
	tcase_add_test(tc, vm_checkpoints_flow);
	tcase_add_test(tc, vm_set_interval);
	tcase_add_test(tc, vm_kill_qemu_then_colo);
	tcase_add_test(tc, vm_kill_with_sync_ack);
	tcase_add_test(tc, vm_secondary_dies);
	tcase_add_test(tc, vm_qmp_silent);
	tcase_add_test(tc, vm_colo_exit);
	tcase_add_test(tc, vm_bad_config);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
