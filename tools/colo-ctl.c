/*
 * colo-ctl: talk to a running node over its control socket (DESIGN.md §6).
 *
 *   colo-ctl [-s SOCK | --name NAME] [--json] VERB [ARGS]
 *   colo-ctl keygen FILE
 *
 * One request, one response (common/node/ctl.h).  Text output is for people;
 * --json prints the response's result with the field names of
 * proto/colo.proto, for scripts and exporters.  keygen is the one verb that
 * needs no node: it writes a new pre-shared key file (common/node/psk.h).
 *
 * Exit status: 0 success; 1 the node refused the request (its one-line
 * error on stderr), could not be reached, or verify found differing pages;
 * 2 usage error.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "colo.pb-c.h"
#include "ctl.h"
#include "psk.h"

#define EXIT_REFUSED 1
#define EXIT_USAGE 2
#define DEFAULT_TIMEOUT_MS 30000
#define KEY_WIDTH 25            /* "last committed checkpoint" */

static const char usage_text[] =
"Usage: colo-ctl [OPTIONS] VERB [ARGS] [--json]\n"
"\n"
"Ask a running colo node (colo-primary or colo-secondary) over its control\n"
"socket.\n"
"\n"
"Verbs:\n"
"  status            role, generation, state, peer, last committed checkpoint,\n"
"                    interval, dirty rate, and p50/p99 of each checkpoint phase\n"
"  stats             counters since the node started\n"
"  failover          promote the secondary now (a primary refuses)\n"
"  set-interval MS   set the checkpoint interval to MS milliseconds (1..60000)\n"
"  checkpoint        take a checkpoint now; answers once it has committed\n"
"  verify            check this node's RAM (committed RAM on a secondary)\n"
"                    against what the guest's own state says it must hold\n"
"  record start DIR  record every checkpoint into DIR (for colo-replay)\n"
"  record stop       stop recording (what is queued is written first)\n"
"  keygen FILE       write a new random pre-shared key to FILE (mode 0600;\n"
"                    an existing FILE is never overwritten); needs no node\n"
"\n"
"Options:\n"
"  -s, --socket SOCK   control socket of the node\n"
"  -n, --name NAME     use the default socket of node NAME (default primary):\n"
"                      /run/colo/NAME.sock as root, otherwise\n"
"                      $XDG_RUNTIME_DIR/colo/NAME.sock, or\n"
"                      /tmp/colo-UID/NAME.sock when XDG_RUNTIME_DIR is unset\n"
"  -j, --json          print the result as JSON (also accepted after the verb)\n"
"  -t, --timeout MS    give up after MS milliseconds (default 30000)\n"
"  -h, --help          show this help\n"
"  -V, --version       show the version\n"
"\n"
"Exit status: 0 success; 1 the node refused the request, could not be\n"
"reached, or verify found differing pages; 2 usage error.\n";

static int usage_error(const char *fmt, ...) COLO_PRINTF(1, 2);

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("colo-ctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'colo-ctl --help'.\n", stderr);
	return EXIT_USAGE;
}

static int parse_ms(const char *s, unsigned long lo, unsigned long hi,
		    unsigned long *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] < '0' || s[0] > '9' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

/* ---- JSON: the result messages, field names as in colo.proto ---- */

static const char *role_name(Colo__Role r)
{
	switch (r) {
	case COLO__ROLE__ROLE_PRIMARY:
		return "primary";
	case COLO__ROLE__ROLE_SECONDARY:
		return "secondary";
	default:
		return "unknown";
	}
}

/* uint64 counters: a JSON integer while it fits jansson's json_int_t. */
static json_t *json_u64(uint64_t v)
{
	return v <= (uint64_t)LLONG_MAX ? json_integer((json_int_t)v)
					       : json_real((double)v);
}

static json_t *phases_json(Colo__PhaseTiming **ph, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:f, s:f, s:o}",
						   "phase", ph[i]->phase,
						   "p50_us", ph[i]->p50_us,
						   "p99_us", ph[i]->p99_us,
						   "count", json_u64(ph[i]->count)));
	return a;
}

static json_t *status_json(const Colo__Status *st)
{
	json_t *o = json_object();

	json_object_set_new(o, "node", json_string(st->node));
	json_object_set_new(o, "role", json_string(role_name(st->role)));
	json_object_set_new(o, "generation", json_u64(st->generation));
	json_object_set_new(o, "state", json_string(st->state));
	json_object_set_new(o, "peer", json_string(st->peer));
	json_object_set_new(o, "peer_state", json_string(st->peer_state));
	json_object_set_new(o, "last_committed", json_u64(st->last_committed));
	json_object_set_new(o, "interval_ms", json_integer(st->interval_ms));
	json_object_set_new(o, "min_interval_ms", json_integer(st->min_interval_ms));
	json_object_set_new(o, "dirty_pages_per_s", json_real(st->dirty_pages_per_s));
	json_object_set_new(o, "bytes_per_s", json_real(st->bytes_per_s));
	json_object_set_new(o, "phases", phases_json(st->phases, st->n_phases));
	json_object_set_new(o, "guest", json_string(st->guest));
	json_object_set_new(o, "tracking", json_string(st->tracking));
	json_object_set_new(o, "uptime_ms", json_u64(st->uptime_ms));
	json_object_set_new(o, "encodings", json_string(st->encodings));
	json_object_set_new(o, "recording", json_string(st->recording));
	json_object_set_new(o, "arbiter", json_string(*st->arbiter ? st->arbiter : "none"));
	json_object_set_new(o, "lease_holder", json_string(st->lease_holder));
	json_object_set_new(o, "lease_left_ms", json_integer(st->lease_left_ms));
	json_object_set_new(o, "takeover", json_string(st->takeover));
	return o;
}

static json_t *stats_json(const Colo__Stats *st)
{
	json_t *o = json_object(), *kinds = json_object();

	for (size_t i = 0; i < st->n_pages_by_kind; i++)
		json_object_set_new(kinds, st->pages_by_kind[i]->key,
				    json_u64(st->pages_by_kind[i]->value));
	json_object_set_new(o, "checkpoints", json_u64(st->checkpoints));
	json_object_set_new(o, "checkpoints_failed", json_u64(st->checkpoints_failed));
	json_object_set_new(o, "pages_sent", json_u64(st->pages_sent));
	json_object_set_new(o, "pages_by_kind", kinds);
	json_object_set_new(o, "pages_unchanged", json_u64(st->pages_unchanged));
	json_object_set_new(o, "bytes_sent", json_u64(st->bytes_sent));
	json_object_set_new(o, "bytes_received", json_u64(st->bytes_received));
	json_object_set_new(o, "full_syncs", json_u64(st->full_syncs));
	json_object_set_new(o, "failovers", json_u64(st->failovers));
	json_object_set_new(o, "heartbeats_sent", json_u64(st->heartbeats_sent));
	json_object_set_new(o, "heartbeats_received", json_u64(st->heartbeats_received));
	json_object_set_new(o, "heartbeats_refused", json_u64(st->heartbeats_refused));
	json_object_set_new(o, "peers_refused", json_u64(st->peers_refused));
	{
		json_t *c = json_object();

		for (size_t i = 0; i < st->n_checkpoints_by_cause; i++)
			json_object_set_new(c, st->checkpoints_by_cause[i]->key,
					    json_u64(st->checkpoints_by_cause[i]->value));
		json_object_set_new(o, "checkpoints_by_cause", c);
	}
	json_object_set_new(o, "compared", json_u64(st->compared));
	json_object_set_new(o, "matched", json_u64(st->matched));
	json_object_set_new(o, "mismatches", json_u64(st->mismatches));
	json_object_set_new(o, "compare_dropped", json_u64(st->compare_dropped));
	json_object_set_new(o, "loop_busy_max_us", json_u64(st->loop_busy_max_us));
	json_object_set_new(o, "loop_busy_over_10ms", json_u64(st->loop_busy_over_10ms));
	json_object_set_new(o, "loop_cpu_max_us", json_u64(st->loop_cpu_max_us));
	json_object_set_new(o, "loop_cpu_over_10ms", json_u64(st->loop_cpu_over_10ms));
	json_object_set_new(o, "pipelined", json_u64(st->pipelined));
	json_object_set_new(o, "streams_held", json_u64(st->streams_held));
	json_object_set_new(o, "loop_stalls", json_u64(st->loop_stalls));
	json_object_set_new(o, "checkpoint_pages_max", json_u64(st->checkpoint_pages_max));
	json_object_set_new(o, "phases", phases_json(st->phases, st->n_phases));
	{
		json_t *g = json_object();

		for (size_t i = 0; i < st->n_guest; i++)
			json_object_set_new(g, st->guest[i]->key, json_real(st->guest[i]->value));
		json_object_set_new(o, "guest", g);
	}
	return o;
}

static json_t *verify_json(const Colo__VerifyResult *v)
{
	json_t *o = json_object(), *bad = json_array();

	for (size_t i = 0; i < v->n_bad_pages; i++)
		json_array_append_new(bad, json_string(v->bad_pages[i]));
	json_object_set_new(o, "supported", json_boolean(v->supported));
	json_object_set_new(o, "pages_checked", json_u64(v->pages_checked));
	json_object_set_new(o, "pages_bad", json_u64(v->pages_bad));
	json_object_set_new(o, "bad_pages", bad);
	json_object_set_new(o, "summary", json_string(v->summary));
	{
		json_t *h = json_object();

		/* "NAME HASH": the name may hold spaces, the hash never does */
		for (size_t i = 0; i < v->n_block_hashes; i++) {
			const char *sp = strrchr(v->block_hashes[i], ' ');
			char name[300];

			if (!sp)
				continue;
			snprintf(name, sizeof(name), "%.*s", (int)(sp - v->block_hashes[i]),
				 v->block_hashes[i]);
			json_object_set_new(h, name, json_string(sp + 1));
		}
		json_object_set_new(o, "block_xxh3", h);
		json_object_set_new(o, "last_committed", json_u64(v->last_committed));
	}
	return o;
}

static json_t *result_json(const Colo__ControlResponse *r)
{
	switch (r->result_case) {
	case COLO__CONTROL_RESPONSE__RESULT_STATUS:
		return status_json(r->status);
	case COLO__CONTROL_RESPONSE__RESULT_STATS:
		return stats_json(r->stats);
	case COLO__CONTROL_RESPONSE__RESULT_VERIFY:
		return verify_json(r->verify);
	case COLO__CONTROL_RESPONSE__RESULT_MESSAGE:
		return json_pack("{s:s}", "message", r->message);
	default:
		return json_object();
	}
}

/* ---- text ---- */

static void kv(const char *key, const char *fmt, ...) COLO_PRINTF(2, 3);

static void kv(const char *key, const char *fmt, ...)
{
	va_list ap;

	printf("%-*s  ", KEY_WIDTH, key);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static const char *or_dash(const char *s)
{
	return s && *s ? s : "-";
}

static void print_rate(const char *key, double v)
{
	static const char *const units[] = { "B/s", "KiB/s", "MiB/s", "GiB/s" };
	double h = v;
	size_t u = 0;

	while (h >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		h /= 1024;
		u++;
	}
	if (u == 0)
		kv(key, "%.0f", v);
	else
		kv(key, "%.0f (%.1f %s)", v, h, units[u]);
}

static void print_uptime(uint64_t ms)
{
	uint64_t s = ms / 1000;

	if (s >= 86400)
		kv("uptime", "%" PRIu64 "d %02" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s",
		   s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
	else if (s >= 3600)
		kv("uptime", "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s",
		   s / 3600, s / 60 % 60, s % 60);
	else if (s >= 60)
		kv("uptime", "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
	else
		kv("uptime", "%.1fs", (double)ms / 1000);
}

static void print_phases(Colo__PhaseTiming **ph, size_t n)
{
	if (n == 0)
		return;
	printf("\n%-10s %10s %10s %10s\n", "phase", "p50 us", "p99 us", "count");
	for (size_t i = 0; i < n; i++)
		printf("%-10s %10.1f %10.1f %10" PRIu64 "\n", ph[i]->phase,
		       ph[i]->p50_us, ph[i]->p99_us, ph[i]->count);
}

static void print_status(const Colo__Status *st)
{
	kv("node", "%s", or_dash(st->node));
	kv("role", "%s", role_name(st->role));
	kv("generation", "%" PRIu64, st->generation);
	kv("state", "%s", or_dash(st->state));
	kv("peer", "%s", or_dash(st->peer));
	kv("peer state", "%s", or_dash(st->peer_state));
	kv("last committed checkpoint", "%" PRIu64, st->last_committed);
	kv("interval", "%" PRIu32 " ms", st->interval_ms);
	kv("min interval", "%" PRIu32 " ms", st->min_interval_ms);
	kv("dirty pages/s", "%.0f", st->dirty_pages_per_s);
	print_rate("bytes/s", st->bytes_per_s);
	kv("tracking", "%s", or_dash(st->tracking));
	kv("encodings", "%s", or_dash(st->encodings));
	kv("guest", "%s", or_dash(st->guest));
	kv("recording", "%s", *st->recording ? st->recording : "no");
	kv("arbiter", "%s", *st->arbiter ? st->arbiter : "none");
	if (*st->arbiter && strcmp(st->arbiter, "none") != 0) {
		kv("lease holder", "%s", or_dash(st->lease_holder));
		if (st->lease_left_ms >= 0)
			kv("lease left", "%.1f s", (double)st->lease_left_ms / 1000.0);
		else
			kv("lease left", "%s", "- (held by another node, or none)");
		kv("may take over", "%s", or_dash(st->takeover));
	}
	print_uptime(st->uptime_ms);
	print_phases(st->phases, st->n_phases);
}

static void print_stats(const Colo__Stats *st)
{
	kv("checkpoints", "%" PRIu64, st->checkpoints);
	for (size_t i = 0; i < st->n_checkpoints_by_cause; i++) {
		char key[64];

		snprintf(key, sizeof(key), "  %s", st->checkpoints_by_cause[i]->key);
		kv(key, "%" PRIu64, st->checkpoints_by_cause[i]->value);
	}
	kv("checkpoints failed", "%" PRIu64, st->checkpoints_failed);
	if (st->compared || st->compare_dropped) {
		kv("units compared", "%" PRIu64, st->compared);
		kv("  matched", "%" PRIu64, st->matched);
		kv("  mismatches", "%" PRIu64, st->mismatches);
		kv("  dropped", "%" PRIu64, st->compare_dropped);
	}
	kv("pages sent", "%" PRIu64, st->pages_sent);
	for (size_t i = 0; i < st->n_pages_by_kind; i++) {
		char key[64];

		snprintf(key, sizeof(key), "  %s", st->pages_by_kind[i]->key);
		kv(key, "%" PRIu64, st->pages_by_kind[i]->value);
	}
	kv("pages unchanged", "%" PRIu64, st->pages_unchanged);
	kv("bytes sent", "%" PRIu64, st->bytes_sent);
	kv("bytes received", "%" PRIu64, st->bytes_received);
	kv("pipelined", "%" PRIu64, st->pipelined);
	kv("full syncs", "%" PRIu64, st->full_syncs);
	kv("failovers", "%" PRIu64, st->failovers);
	kv("heartbeats sent", "%" PRIu64, st->heartbeats_sent);
	kv("heartbeats received", "%" PRIu64, st->heartbeats_received);
	kv("heartbeats refused", "%" PRIu64, st->heartbeats_refused);
	kv("peers refused", "%" PRIu64, st->peers_refused);
	kv("largest checkpoint", "%" PRIu64 " pages", st->checkpoint_pages_max);
	kv("loop busy max", "%.1f ms", (double)st->loop_busy_max_us / 1000.0);
	kv("loop busy > 10 ms", "%" PRIu64, st->loop_busy_over_10ms);
	kv("loop cpu max", "%.1f ms", (double)st->loop_cpu_max_us / 1000.0);
	kv("loop cpu > 10 ms", "%" PRIu64, st->loop_cpu_over_10ms);
	kv("loop stalls", "%" PRIu64, st->loop_stalls);
	kv("pipelined checkpoints", "%" PRIu64, st->pipelined);
	kv("streams held a turn", "%" PRIu64, st->streams_held);
	print_phases(st->phases, st->n_phases);
	for (size_t i = 0; i < st->n_guest; i++) {
		char key[80];

		snprintf(key, sizeof(key), "guest %s", st->guest[i]->key);
		kv(key, "%.15g", st->guest[i]->value);
	}
}

/* Returns the exit status: differing pages are a failure. */
static int print_verdict(const Colo__VerifyResult *v)
{
	if (!v->supported) {
		printf("verify: not supported%s%s\n", *v->summary ? ": " : "", v->summary);
		return EXIT_REFUSED;
	}
	if (v->pages_bad == 0) {
		printf("verify: clean, %" PRIu64 " pages checked", v->pages_checked);
		if (*v->summary)
			printf(" (%s)", v->summary);
		putchar('\n');
		return 0;
	}
	printf("verify: %" PRIu64 " of %" PRIu64 " pages differ", v->pages_bad,
	       v->pages_checked);
	for (size_t i = 0; i < v->n_bad_pages; i++)
		printf("%s%s", i ? ", " : ": ", v->bad_pages[i]);
	if (v->n_bad_pages > 0 && v->n_bad_pages < v->pages_bad)
		fputs(", ...", stdout);
	putchar('\n');
	return EXIT_REFUSED;
}

static int print_verify(const Colo__VerifyResult *v)
{
	int rc = print_verdict(v);

	for (size_t i = 0; i < v->n_block_hashes; i++)
		printf("RAM block %s (xxh3), checkpoint %" PRIu64 "\n", v->block_hashes[i],
		       v->last_committed);
	return rc;
}

/* ---- verbs ---- */

struct verb {
	const char *name;
	Colo__ControlRequest__CmdCase cmd;
	Colo__ControlResponse__ResultCase result;   /* expected */
};

static const struct verb verbs[] = {
	{ "status", COLO__CONTROL_REQUEST__CMD_STATUS, COLO__CONTROL_RESPONSE__RESULT_STATUS },
	{ "stats", COLO__CONTROL_REQUEST__CMD_STATS, COLO__CONTROL_RESPONSE__RESULT_STATS },
	{ "failover", COLO__CONTROL_REQUEST__CMD_FAILOVER, COLO__CONTROL_RESPONSE__RESULT_MESSAGE },
	{ "set-interval", COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, COLO__CONTROL_RESPONSE__RESULT_MESSAGE },
	{ "checkpoint", COLO__CONTROL_REQUEST__CMD_CHECKPOINT, COLO__CONTROL_RESPONSE__RESULT_MESSAGE },
	{ "verify", COLO__CONTROL_REQUEST__CMD_VERIFY, COLO__CONTROL_RESPONSE__RESULT_VERIFY },
	{ "record", COLO__CONTROL_REQUEST__CMD_RECORD, COLO__CONTROL_RESPONSE__RESULT_MESSAGE },
};

static const struct verb *find_verb(const char *name)
{
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strcmp(verbs[i].name, name) == 0)
			return &verbs[i];
	return NULL;
}

/* keygen FILE: no socket, no request; args are what follows the verb. */
static int keygen(int argc, char **argv)
{
	const char *file = NULL;
	struct colo_err err;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage_text, stdout);
			return 0;
		}
		if (argv[i][0] == '-' && argv[i][1] != '\0')
			return usage_error("keygen: unknown option '%s'", argv[i]);
		if (file)
			return usage_error("keygen takes one FILE, not '%s %s'", file, argv[i]);
		file = argv[i];
	}
	if (!file)
		return usage_error("keygen needs a FILE to write the key to");
	colo_err_clear(&err);
	if (colo_psk_generate(file, &err) != 0) {
		fprintf(stderr, "colo-ctl: %s\n", err.msg);
		return EXIT_REFUSED;
	}
	printf("new key written to %s (mode 0600)\n", file);
	return 0;
}

static int run(const char *sock, const struct verb *v, uint32_t ms, const char *rec_dir,
	       bool json, int timeout_ms)
{
	Colo__RecordRequest record = COLO__RECORD_REQUEST__INIT;
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__StatusRequest status = COLO__STATUS_REQUEST__INIT;
	Colo__StatsRequest stats = COLO__STATS_REQUEST__INIT;
	Colo__FailoverRequest failover = COLO__FAILOVER_REQUEST__INIT;
	Colo__SetIntervalRequest set_interval = COLO__SET_INTERVAL_REQUEST__INIT;
	Colo__CheckpointRequest checkpoint = COLO__CHECKPOINT_REQUEST__INIT;
	Colo__VerifyRequest verify = COLO__VERIFY_REQUEST__INIT;
	Colo__ControlResponse *resp;
	struct colo_err err;
	int rc = 0;

	req.version = COLO_CTL_VERSION;
	req.cmd_case = v->cmd;
	switch (v->cmd) {
	case COLO__CONTROL_REQUEST__CMD_STATUS:
		req.status = &status;
		break;
	case COLO__CONTROL_REQUEST__CMD_STATS:
		req.stats = &stats;
		break;
	case COLO__CONTROL_REQUEST__CMD_FAILOVER:
		req.failover = &failover;
		break;
	case COLO__CONTROL_REQUEST__CMD_SET_INTERVAL:
		set_interval.ms = ms;
		req.set_interval = &set_interval;
		break;
	case COLO__CONTROL_REQUEST__CMD_CHECKPOINT:
		req.checkpoint = &checkpoint;
		break;
	case COLO__CONTROL_REQUEST__CMD_VERIFY:
		req.verify = &verify;
		break;
	case COLO__CONTROL_REQUEST__CMD_RECORD:
		record.start = rec_dir != NULL;
		record.dir = (char *)(rec_dir ? rec_dir : "");
		req.record = &record;
		break;
	default:
		return EXIT_USAGE;
	}

	colo_err_clear(&err);
	if (colo_ctl_call(sock, &req, &resp, timeout_ms, &err) != 0) {
		fprintf(stderr, "colo-ctl: %s\n", err.msg);
		return EXIT_REFUSED;
	}
	if (!resp->ok) {
		fprintf(stderr, "colo-ctl: %s\n",
			*resp->error ? resp->error : "the node refused the request");
		rc = EXIT_REFUSED;
	} else if (resp->result_case != v->result &&
		   !(v->result == COLO__CONTROL_RESPONSE__RESULT_MESSAGE &&
		     resp->result_case == COLO__CONTROL_RESPONSE__RESULT__NOT_SET)) {
		fprintf(stderr, "colo-ctl: the node answered %s with another kind of result\n",
			v->name);
		rc = EXIT_REFUSED;
	} else if (json) {
		json_t *doc = result_json(resp);

		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
		fputc('\n', stdout);
		json_decref(doc);
		if (resp->result_case == COLO__CONTROL_RESPONSE__RESULT_VERIFY &&
		    (!resp->verify->supported || resp->verify->pages_bad > 0))
			rc = EXIT_REFUSED;
	} else {
		switch (resp->result_case) {
		case COLO__CONTROL_RESPONSE__RESULT_STATUS:
			print_status(resp->status);
			break;
		case COLO__CONTROL_RESPONSE__RESULT_STATS:
			print_stats(resp->stats);
			break;
		case COLO__CONTROL_RESPONSE__RESULT_VERIFY:
			rc = print_verify(resp->verify);
			break;
		case COLO__CONTROL_RESPONSE__RESULT_MESSAGE:
			puts(resp->message);
			break;
		default:
			puts("ok");
			break;
		}
	}
	colo__control_response__free_unpacked(resp, NULL);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "colo-ctl: writing the output: %s\n", strerror(errno));
		return EXIT_REFUSED;
	}
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "name", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "timeout", required_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = NULL, *name = "primary";
	const char *args[2];
	const char *rec_dir = NULL;
	char rec_abs[PATH_MAX];
	const struct verb *v;
	char defpath[PATH_MAX];
	unsigned long ms = 0, timeout = DEFAULT_TIMEOUT_MS;
	size_t nargs = 0;
	bool json = false;
	int c;

	opterr = 0;
	/* '+': options end at the verb; the verb's own are parsed below. */
	while ((c = getopt_long(argc, argv, "+:s:n:jt:hV", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			sock = optarg;
			break;
		case 'n':
			name = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 't':
			if (parse_ms(optarg, 1, 3600000, &timeout) != 0)
				return usage_error("--timeout needs milliseconds 1..3600000, not '%s'",
						   optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		case 'V':
			printf("colo-ctl %s (control protocol %d)\n", PACKAGE_VERSION,
			       COLO_CTL_VERSION);
			return 0;
		case ':':
			return usage_error("option '%s' needs an argument", argv[optind - 1]);
		default:
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		return usage_error("missing VERB (status, stats, failover, set-interval MS, checkpoint, "
				   "verify, record start DIR|stop, keygen FILE)");
	if (strcmp(argv[optind], "keygen") == 0)
		return keygen(argc - optind - 1, argv + optind + 1);
	v = find_verb(argv[optind]);
	if (!v)
		return usage_error("unknown verb '%s'", argv[optind]);
	for (int i = optind + 1; i < argc; i++) {
		const char *a = argv[i];

		if (strcmp(a, "--json") == 0 || strcmp(a, "-j") == 0) {
			json = true;
		} else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else if (a[0] == '-' && a[1] != '\0' && !(a[1] >= '0' && a[1] <= '9')) {
			return usage_error("%s: unknown option '%s'", v->name, a);
		} else {
			if (nargs == sizeof(args) / sizeof(args[0]))
				return usage_error("%s: too many arguments", v->name);
			args[nargs++] = a;
		}
	}
	if (v->cmd == COLO__CONTROL_REQUEST__CMD_SET_INTERVAL) {
		if (nargs == 0)
			return usage_error("set-interval needs MS, an integer 1..60000");
		if (nargs > 1)
			return usage_error("set-interval takes one MS, not '%s %s'",
					   args[0], args[1]);
		if (parse_ms(args[0], 1, 60000, &ms) != 0)
			return usage_error("set-interval needs an integer 1..60000, not '%s'",
					   args[0]);
	} else if (v->cmd == COLO__CONTROL_REQUEST__CMD_RECORD) {
		if (nargs == 0)
			return usage_error("record needs 'start DIR' or 'stop'");
		if (strcmp(args[0], "start") == 0 && nargs == 2) {
			if (!realpath(args[1], rec_abs)) {
				/* The node resolves nothing: give it an absolute path. */
				if (args[1][0] == '/')
					snprintf(rec_abs, sizeof(rec_abs), "%s", args[1]);
				else if (!getcwd(rec_abs, sizeof(rec_abs) - 256))
					return usage_error("record start: cannot resolve '%s'", args[1]);
				else
					snprintf(rec_abs + strlen(rec_abs), 256, "/%s", args[1]);
			}
			rec_dir = rec_abs;
		} else if (strcmp(args[0], "start") == 0) {
			return usage_error("record start needs one DIR");
		} else if (strcmp(args[0], "stop") != 0 || nargs > 1) {
			return usage_error("record needs 'start DIR' or 'stop', not '%s'", args[0]);
		}
	} else if (nargs > 0) {
		return usage_error("%s takes no arguments, not '%s'", v->name, args[0]);
	}
	if (!sock) {
		if (!*name || strchr(name, '/'))
			return usage_error("--name needs a node name without '/', not '%s'",
					   name);
		if (colo_ctl_default_path(name, defpath, sizeof(defpath)) != 0)
			return usage_error("--name '%s' is too long", name);
		sock = defpath;
	}
	return run(sock, v, (uint32_t)ms, rec_dir, json, (int)timeout);
}
