/*
 * guest.c: colo-bench --only guest: how the memtouch guest keeps to what it
 * is asked, measured here rather than asserted in make check (a loaded
 * machine slows it, which a test must not mistake for a bug).
 *
 *   pacing   writes per second per thread against the rate asked
 *            (memtouch-rate), as a ratio: 1.00 is exact
 *   stop     how long stop() takes while the threads sleep between writes
 *            at 1 write/s (they sleep in short pieces so that it is prompt),
 *            against one pause()/resume() of the same guest
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "clock.h"
#include "memtouch.h"
#include "nodecfg.h"
#include "ram.h"
#include "registry.h"
#include "savevm.h"

struct mt {
	struct colo_config cfg;
	struct colo_ram *ram;
	struct colo_savevm sv;
	struct colo_guest *g;
	const struct colo_memtouch_state *st;
};

static void die(const char *what, const struct colo_err *err)
{
	fprintf(stderr, "colo-bench: %s: %s\n", what, err->msg);
	exit(1);
}

static void mt_start(struct mt *m, uint32_t threads, uint32_t rate)
{
	char *argv[] = { "colo-bench", "--guest", "memtouch", "--ram-mb", "4", NULL };
	struct colo_memtouch_settings *set;
	char machine[64];
	struct colo_err err;

	memset(m, 0, sizeof(*m));
	colo_err_clear(&err);
	if (colo_config_load(&m->cfg, COLO_ROLE_PRIMARY, colo_guest_list(), 5, argv, stdout,
			     NULL, &err) != 0)
		die("config", &err);
	set = colo_memtouch_settings(&m->cfg);
	set->threads = threads;
	set->rate = rate;
	colo_guest_machine_name(&colo_memtouch_ops, machine, sizeof(machine));
	if (colo_ram_new(COLO_DIRTY_MANUAL, &m->ram, &err) != 0 ||
	    colo_savevm_init(&m->sv, machine, &err) != 0 ||
	    colo_memtouch_ops.create(&m->cfg, &m->g, &err) != 0 ||
	    m->g->ops->attach(m->g, m->ram, &m->sv, &err) != 0 ||
	    colo_ram_start(m->ram, &err) != 0 || m->g->ops->start(m->g, &err) != 0)
		die("memtouch", &err);
	m->st = colo_memtouch_state(m->g);
}

static void mt_free(struct mt *m)
{
	m->g->ops->stop(m->g);
	m->g->ops->destroy(m->g);
	colo_savevm_free(&m->sv);
	colo_ram_free(m->ram);
	colo_config_free(&m->cfg);
}

static void sleep_s(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

/* Writes per second per thread over `secs`, as a ratio to `rate`. */
static double pacing(uint32_t threads, uint32_t rate, double secs)
{
	struct mt m;
	uint64_t n = 0;
	double t0, t1;

	mt_start(&m, threads, rate);
	t0 = bench_now();
	m.g->ops->pause(m.g);
	for (uint32_t t = 0; t < threads; t++)
		n -= m.st->writes[t];
	m.g->ops->resume(m.g);
	sleep_s(secs);
	m.g->ops->pause(m.g);
	t1 = bench_now();
	for (uint32_t t = 0; t < threads; t++)
		n += m.st->writes[t];
	m.g->ops->resume(m.g);
	mt_free(&m);
	return (double)n / threads / (t1 - t0) / rate;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void bench_guest(json_t *out)
{
	static const struct { uint32_t threads, rate; } runs[] = {
		{ 1, 2000 }, { 3, 20000 },
	};
	double secs = bench_opts.quick ? 0.5 : 2.0, stop[5], cycle[5];
	json_t *o = json_object(), *jp = json_array();

	if (!bench_opts.json)
		printf("\n== memtouch: pacing (writes/s per thread / rate asked) and stop\n");
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		double r = pacing(runs[i].threads, runs[i].rate, secs);
		json_t *e = json_object();

		json_object_set_new(e, "threads", json_integer(runs[i].threads));
		json_object_set_new(e, "rate", json_integer(runs[i].rate));
		json_object_set_new(e, "achieved_vs_asked", json_real(r));
		json_array_append_new(jp, e);
		if (!bench_opts.json)
			printf("  %" PRIu32 " thread%s at %6" PRIu32 "/s: %.3fx the rate over "
			       "%.1f s\n", runs[i].threads, runs[i].threads == 1 ? " " : "s",
			       runs[i].rate, r, secs);
	}
	/* Stop at 1 write/s, and a pause/resume cycle of the same guest. */
	for (int i = 0; i < 5; i++) {
		struct mt m;
		double t0;

		mt_start(&m, 3, 1);
		sleep_s(0.02);
		t0 = bench_now();
		m.g->ops->pause(m.g);
		m.g->ops->resume(m.g);
		cycle[i] = bench_now() - t0;
		t0 = bench_now();
		m.g->ops->stop(m.g);
		stop[i] = bench_now() - t0;
		m.g->ops->destroy(m.g);
		colo_savevm_free(&m.sv);
		colo_ram_free(m.ram);
		colo_config_free(&m.cfg);
	}
	qsort(stop, 5, sizeof(stop[0]), cmp_double);
	qsort(cycle, 5, sizeof(cycle[0]), cmp_double);
	json_object_set_new(o, "pacing", jp);
	json_object_set_new(o, "stop_ms_p50", json_real(stop[2] * 1e3));
	json_object_set_new(o, "stop_ms_max", json_real(stop[4] * 1e3));
	json_object_set_new(o, "stop_vs_pause_resume", json_real(stop[2] / cycle[2]));
	json_object_set_new(out, "guest", o);
	if (!bench_opts.json)
		printf("  stop at 1 write/s: p50 %.2f ms, max %.2f ms (%.1fx one pause+resume, "
		       "%.3f ms)\n", stop[2] * 1e3, stop[4] * 1e3, stop[2] / cycle[2],
		       cycle[2] * 1e3);
}
