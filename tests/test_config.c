/*
 * test_config.c: configuration from defaults, INI file and flags (every
 * key, type and error message), --help against golden files, reload, and
 * the log line format.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nodecfg.h"
#include "cfgopt.h"
#include "guest.h"
#include "log.h"
#include "memtouch.h"
#include "ramfmt.h"
#include "registry.h"
#include "testutil.h"

#define ARGS_MAX 64
#define KIND(k) COLO_PAGE_KIND_BIT(COLO_PAGE_##k)
#define DEFAULT_ENCODINGS (KIND(ZERO) | KIND(RAW) | KIND(LZ4) | KIND(DELTA) | \
			   KIND(DELTA_LZ4))

/* ---- helpers ---- */

/* colo_config_load with argv = { prog, args..., NULL }. */
static int vload(struct colo_config *cfg, enum colo_role role, bool *check,
		 struct colo_err *err, FILE *out, va_list ap)
{
	char *argv[ARGS_MAX];
	int argc = 0;
	const char *a;

	argv[argc++] = role == COLO_ROLE_PRIMARY ? "colo-primary" : "colo-secondary";
	while ((a = va_arg(ap, const char *)) != NULL) {
		ck_assert_int_lt(argc, ARGS_MAX - 1);
		argv[argc++] = (char *)a;
	}
	argv[argc] = NULL;
	colo_err_clear(err);
	return colo_config_load(cfg, role, colo_guest_list(), argc, argv,
				out ? out : stdout, check, err);
}

/* Load and require success. */
static void load_ok(struct colo_config *cfg, enum colo_role role, ...)
{
	struct colo_err err;
	bool check;
	va_list ap;
	int rc;

	va_start(ap, role);
	rc = vload(cfg, role, &check, &err, NULL, ap);
	va_end(ap);
	ck_assert_msg(rc == 0, "load failed (%d): %s", rc, err.msg);
	ck_assert(!check);
}

/* Load, require an error with exactly this message. */
static void load_err(const char *want, enum colo_role role, ...)
{
	struct colo_config cfg;
	struct colo_err err;
	bool check;
	va_list ap;
	int rc;

	va_start(ap, role);
	rc = vload(&cfg, role, &check, &err, NULL, ap);
	va_end(ap);
	ck_assert_msg(rc < 0, "expected error '%s', got rc %d", want, rc);
	ck_assert_str_eq(err.msg, want);
	/* A failed load leaves nothing to free. */
	ck_assert_ptr_null(cfg.name);
	ck_assert_ptr_null(cfg.priv_argv);
	colo_config_free(&cfg);
}

static char *tmp;

static void setup(void)
{
	tmp = colo_test_tmpdir();
	ck_assert_ptr_nonnull(tmp);
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	setenv("HOME", "/home/tester", 1);
}

static void teardown(void)
{
	colo_test_rmdir(tmp);
	tmp = NULL;
}

/* Write tmp/name; returns its path (static buffer, one at a time). */
static const char *write_ini(const char *name, const char *text)
{
	static char path[512];

	snprintf(path, sizeof(path), "%s/%s", tmp, name);
	ck_assert_int_eq(colo_test_write_file(path, text, strlen(text)), 0);
	return path;
}

static char *expected_control(const char *name)
{
	static char buf[256];

	if (geteuid() == 0)
		snprintf(buf, sizeof(buf), "/run/colo/%s.sock", name);
	else
		snprintf(buf, sizeof(buf), "/run/user/4242/colo/%s.sock", name);
	return buf;
}

static const char *expected_state_dir(void)
{
	return geteuid() == 0 ? "/var/lib/colo" : "/home/tester/.local/state/colo";
}

/* ---- defaults ---- */

static void check_defaults(const struct colo_config *c, enum colo_role role)
{
	const char *name = role == COLO_ROLE_PRIMARY ? "primary" : "secondary";
	const struct colo_memtouch_settings *mt = colo_memtouch_settings(c);

	ck_assert_ptr_nonnull(mt);
	ck_assert_int_eq(c->role, role);
	ck_assert_str_eq(c->name, name);
	ck_assert_str_eq(c->control, expected_control(name));
	ck_assert_str_eq(c->state_dir, expected_state_dir());
	ck_assert_int_eq(c->log_level, COLO_LOG_INFO);
	ck_assert_str_eq(c->listen.host, "127.0.0.1");
	ck_assert_uint_eq(c->listen.port, 7070);
	ck_assert_str_eq(c->peer.host, "127.0.0.1");
	ck_assert_uint_eq(c->peer.port, 7070);
	ck_assert_uint_eq(c->checkpoint_interval_ms, 100);
	ck_assert_uint_eq(c->min_interval_ms, 0);
	ck_assert_int_eq(c->output_mode, COLO_OUTPUT_BUFFER);
	ck_assert_uint_eq(c->encodings, DEFAULT_ENCODINGS);
	ck_assert_uint_eq(c->encode_threads, 0);
	ck_assert_int_eq(c->dirty_tracking, COLO_DIRTY_AUTO);
	ck_assert_uint_eq(c->heartbeat_interval_ms, 50);
	ck_assert_uint_eq(c->heartbeat_timeout_ms, 300);
	ck_assert_str_eq(c->fence_command, "");
	ck_assert_str_eq(c->promote_command, "");
	ck_assert_str_eq(c->guest, "kv");
	ck_assert_str_eq(c->guest_listen.host, "127.0.0.1");
	ck_assert_uint_eq(c->guest_listen.port, 6379);
	ck_assert_uint_eq(c->ram_mb, 64);
	ck_assert_uint_eq(mt->rate, 20000);
	ck_assert_int_eq(mt->pattern, COLO_MEMTOUCH_RANDOM);
	ck_assert_uint_eq(mt->bytes, 64);
	ck_assert_uint_eq(mt->threads, 1);
	ck_assert_uint_eq(mt->seed, 1);
	ck_assert_str_eq(c->record, "");
	ck_assert_uint_eq(c->keyframe_every, 100);
	ck_assert_uint_eq(c->record_max_bytes, 0);
	ck_assert_uint_eq(c->record_max_checkpoints, 0);
	ck_assert_str_eq(c->fault, "");
	ck_assert_ptr_null(c->file);
}

START_TEST(defaults_primary)
{
	struct colo_config c;

	load_ok(&c, COLO_ROLE_PRIMARY, NULL);
	check_defaults(&c, COLO_ROLE_PRIMARY);
	colo_config_free(&c);
	/* Freeing twice is harmless. */
	colo_config_free(&c);
}
END_TEST

START_TEST(defaults_secondary)
{
	struct colo_config c;

	load_ok(&c, COLO_ROLE_SECONDARY, NULL);
	check_defaults(&c, COLO_ROLE_SECONDARY);
	colo_config_free(&c);
}
END_TEST

/* argc 0 (no argv at all) is the defaults too. */
START_TEST(defaults_without_argv)
{
	struct colo_config c;
	struct colo_err err;
	bool check = true;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_load(&c, COLO_ROLE_PRIMARY, colo_guest_list(), 0,
					  NULL, stdout, &check, &err), 0);
	ck_assert(!check);
	check_defaults(&c, COLO_ROLE_PRIMARY);
	colo_config_free(&c);
}
END_TEST

/* Not root: $XDG_RUNTIME_DIR, else /tmp/colo-UID; $HOME for state. */
START_TEST(defaults_not_root)
{
	bool was_root = geteuid() == 0;
	struct colo_config c;
	char want[128];

	if (was_root)
		ck_assert_int_eq(seteuid(65534), 0);
	setenv("XDG_RUNTIME_DIR", "/run/user/77", 1);
	load_ok(&c, COLO_ROLE_PRIMARY, "--name", "n1", NULL);
	ck_assert_str_eq(c.control, "/run/user/77/colo/n1.sock");
	ck_assert_str_eq(c.state_dir, "/home/tester/.local/state/colo");
	colo_config_free(&c);

	unsetenv("XDG_RUNTIME_DIR");
	load_ok(&c, COLO_ROLE_SECONDARY, NULL);
	snprintf(want, sizeof(want), "/tmp/colo-%u/secondary.sock", (unsigned)geteuid());
	ck_assert_str_eq(c.control, want);
	colo_config_free(&c);

	setenv("XDG_RUNTIME_DIR", "", 1);     /* empty counts as unset */
	load_ok(&c, COLO_ROLE_SECONDARY, NULL);
	ck_assert_str_eq(c.control, want);
	colo_config_free(&c);
	if (was_root)
		ck_assert_int_eq(seteuid(0), 0);
}
END_TEST

/* The control default follows the name, whether flag or file set it. */
START_TEST(control_follows_name)
{
	struct colo_config c;
	const char *f = write_ini("n.ini", "[node]\nname = from-file\n");

	load_ok(&c, COLO_ROLE_PRIMARY, "--name", "a", NULL);
	ck_assert_str_eq(c.control, expected_control("a"));
	colo_config_free(&c);

	load_ok(&c, COLO_ROLE_SECONDARY, "-c", f, NULL);
	ck_assert_str_eq(c.name, "from-file");
	ck_assert_str_eq(c.control, expected_control("from-file"));
	colo_config_free(&c);

	load_ok(&c, COLO_ROLE_SECONDARY, "-c", f, "--name", "b", NULL);
	ck_assert_str_eq(c.control, expected_control("b"));
	colo_config_free(&c);

	/* An explicit control wins over the derived one. */
	load_ok(&c, COLO_ROLE_PRIMARY, "--name", "a", "--control", "/tmp/t/x.sock", NULL);
	ck_assert_str_eq(c.control, "/tmp/t/x.sock");
	colo_config_free(&c);
}
END_TEST

/* ---- every key from a file and from flags ---- */

static const char all_ini[] =
	"; every key, none at its default\n"
	"[node]\n"
	"name = node-7\n"
	"control = /tmp/t/ctl.sock\n"
	"state-dir = /tmp/t/state\n"
	"log-level = debug\n"
	"fault = after-send\n"
	"\n"
	"[replication]\n"
	"listen = 10.0.0.2:17070\n"
	"peer = [fe80::1]:17071\n"
	"checkpoint-interval-ms = 250\n"
	"min-interval-ms = 20\n"
	"output-mode = none\n"
	"encodings = delta, xbzrle\n"
	"encode-threads = 8\n"
	"dirty-tracking = mprotect\n"
	"# heartbeat\n"
	"[heartbeat]\n"
	"heartbeat-interval-ms = 10\n"
	"heartbeat-timeout-ms = 11\n"
	"fence-command = ssh b poweroff; true\n"
	"promote-command = ip addr add 10.0.0.9/24 dev eth0\n"
	"[guest]\n"
	"guest = memtouch\n"
	"guest-listen = [::1]:16379\n"
	"ram-mb = 65536\n"
	"memtouch-rate = 0\n"
	"memtouch-pattern = hotset\n"
	"memtouch-bytes = 4096\n"
	"memtouch-threads = 64\n"
	"memtouch-seed = 18446744073709551615\n"
	"[record]\n"
	"record = /tmp/t/rec\n"
	"keyframe-every = 7\n"
	"record-max-bytes = 1099511627776\n"
	"record-max-checkpoints = 5000\n";

static void check_all(const struct colo_config *c)
{
	const struct colo_memtouch_settings *mt = colo_memtouch_settings(c);

	ck_assert_ptr_nonnull(mt);
	ck_assert_str_eq(c->name, "node-7");
	ck_assert_str_eq(c->control, "/tmp/t/ctl.sock");
	ck_assert_str_eq(c->state_dir, "/tmp/t/state");
	ck_assert_int_eq(c->log_level, COLO_LOG_DEBUG);
	ck_assert_str_eq(c->fault, "after-send");
	ck_assert_str_eq(c->listen.host, "10.0.0.2");
	ck_assert_uint_eq(c->listen.port, 17070);
	ck_assert_str_eq(c->peer.host, "fe80::1");
	ck_assert_uint_eq(c->peer.port, 17071);
	ck_assert_uint_eq(c->checkpoint_interval_ms, 250);
	ck_assert_uint_eq(c->min_interval_ms, 20);
	ck_assert_int_eq(c->output_mode, COLO_OUTPUT_NONE);
	ck_assert_uint_eq(c->encodings, KIND(RAW) | KIND(DELTA) | KIND(XBZRLE));
	ck_assert_uint_eq(c->encode_threads, 8);
	ck_assert_int_eq(c->dirty_tracking, COLO_DIRTY_MPROTECT);
	ck_assert_uint_eq(c->heartbeat_interval_ms, 10);
	ck_assert_uint_eq(c->heartbeat_timeout_ms, 11);
	ck_assert_str_eq(c->fence_command, "ssh b poweroff; true");
	ck_assert_str_eq(c->promote_command, "ip addr add 10.0.0.9/24 dev eth0");
	ck_assert_str_eq(c->guest, "memtouch");
	ck_assert_str_eq(c->guest_listen.host, "::1");
	ck_assert_uint_eq(c->guest_listen.port, 16379);
	ck_assert_uint_eq(c->ram_mb, 65536);
	ck_assert_uint_eq(mt->rate, 0);
	ck_assert_int_eq(mt->pattern, COLO_MEMTOUCH_HOTSET);
	ck_assert_str_eq(c->record, "/tmp/t/rec");
	ck_assert_uint_eq(c->keyframe_every, 7);
	ck_assert_uint_eq(c->record_max_bytes, 1099511627776ull);
	ck_assert_uint_eq(c->record_max_checkpoints, 5000);
	ck_assert_uint_eq(mt->bytes, 4096);
	ck_assert_uint_eq(mt->threads, 64);
	ck_assert_uint_eq(mt->seed, UINT64_MAX);
}

START_TEST(every_key_from_file)
{
	const char *f = write_ini("all.ini", all_ini);
	struct colo_config c;

	char *abs = realpath(f, NULL);

	load_ok(&c, COLO_ROLE_PRIMARY, "-c", f, NULL);
	check_all(&c);
	ck_assert_str_eq(c.file, abs);
	free(abs);
	colo_config_free(&c);
}
END_TEST

START_TEST(every_key_from_flags)
{
	struct colo_config c;

	/* Both spellings: "--key value" and "--key=value". */
	load_ok(&c, COLO_ROLE_SECONDARY,
		"--name", "node-7", "--control=/tmp/t/ctl.sock",
		"--state-dir", "/tmp/t/state", "--log-level=debug", "--fault", "after-send",
		"--listen", "10.0.0.2:17070", "--peer=[fe80::1]:17071",
		"--checkpoint-interval-ms", "250", "--min-interval-ms=20",
		"--output-mode", "none", "--encodings=delta,xbzrle",
		"--encode-threads", "8", "--dirty-tracking=mprotect",
		"--heartbeat-interval-ms", "10", "--heartbeat-timeout-ms=11",
		"--fence-command", "ssh b poweroff; true",
		"--promote-command=ip addr add 10.0.0.9/24 dev eth0",
		"--guest", "memtouch", "--guest-listen=[::1]:16379", "--ram-mb", "65536",
		"--memtouch-rate=0", "--memtouch-pattern", "hotset",
		"--memtouch-bytes=4096", "--memtouch-threads", "64",
		"--memtouch-seed=18446744073709551615", "--record", "/tmp/t/rec",
		"--keyframe-every=7", "--record-max-bytes", "1099511627776",
		"--record-max-checkpoints=5000", NULL);
	check_all(&c);
	ck_assert_ptr_null(c.file);
	colo_config_free(&c);
}
END_TEST

/* ---- precedence ---- */

START_TEST(flags_win_over_file)
{
	const char *f = write_ini("p.ini", "[replication]\ncheckpoint-interval-ms = 50\n"
				  "min-interval-ms = 5\n[guest]\nram-mb = 32\n");
	struct colo_config c;

	/* File over defaults. */
	load_ok(&c, COLO_ROLE_PRIMARY, "-c", f, NULL);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 50);
	ck_assert_uint_eq(c.min_interval_ms, 5);
	ck_assert_uint_eq(c.ram_mb, 32);
	ck_assert_uint_eq(c.heartbeat_interval_ms, 50);       /* default */
	colo_config_free(&c);

	/* Flags over the file, before and after -c. */
	load_ok(&c, COLO_ROLE_PRIMARY, "--ram-mb", "128", "-c", f,
		"--checkpoint-interval-ms=20", NULL);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 20);
	ck_assert_uint_eq(c.min_interval_ms, 5);
	ck_assert_uint_eq(c.ram_mb, 128);
	colo_config_free(&c);

	/* --config=FILE, in the middle; the last of a repeated flag wins. */
	load_ok(&c, COLO_ROLE_SECONDARY, "--ram-mb=8", "--ram-mb=9", "--config", f,
		"--min-interval-ms", "7", NULL);
	ck_assert_uint_eq(c.ram_mb, 9);
	ck_assert_uint_eq(c.min_interval_ms, 7);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 50);
	colo_config_free(&c);
}
END_TEST

START_TEST(config_equals_form)
{
	const char *f = write_ini("q.ini", "[guest]\nram-mb = 3\n");
	char arg[600];
	struct colo_config c;

	snprintf(arg, sizeof(arg), "--config=%s", f);
	load_ok(&c, COLO_ROLE_PRIMARY, "--name", "x", arg, "--guest", "memtouch", NULL);
	ck_assert_uint_eq(c.ram_mb, 3);
	ck_assert_str_eq(c.name, "x");
	colo_config_free(&c);
}
END_TEST

/* ---- bad values from flags ---- */

START_TEST(bad_integers)
{
	const enum colo_role P = COLO_ROLE_PRIMARY;

	load_err("checkpoint-interval-ms: 'fast' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", "fast", NULL);
	load_err("compare-timeout-ms: '0' is not an integer from 1 to 60000", P,
		 "--compare-timeout-ms=0", NULL);
	load_err("checkpoint-interval-ms: '60001' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", "60001", NULL);
	load_err("checkpoint-interval-ms: '-1' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", "-1", NULL);
	load_err("checkpoint-interval-ms: '+5' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", "+5", NULL);
	load_err("checkpoint-interval-ms: ' 5' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", " 5", NULL);
	load_err("checkpoint-interval-ms: '5ms' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", "5ms", NULL);
	load_err("checkpoint-interval-ms: '' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms=", NULL);
	load_err("checkpoint-interval-ms: '0x10' is not an integer from 0 to 60000", P,
		 "--checkpoint-interval-ms", "0x10", NULL);
	load_err("min-interval-ms: '60001' is not an integer from 0 to 60000", P,
		 "--min-interval-ms", "60001", NULL);
	load_err("encode-threads: '65' is not an integer from 0 to 64", P,
		 "--encode-threads", "65", NULL);
	load_err("heartbeat-interval-ms: '10001' is not an integer from 1 to 10000", P,
		 "--heartbeat-interval-ms", "10001", NULL);
	load_err("heartbeat-timeout-ms: '60001' is not an integer from 1 to 60000", P,
		 "--heartbeat-timeout-ms", "60001", NULL);
	load_err("ram-mb: '0' is not an integer from 1 to 65536", P, "--ram-mb", "0", NULL);
	load_err("ram-mb: '65537' is not an integer from 1 to 65536", P,
		 "--ram-mb", "65537", NULL);
	load_err("memtouch-rate: '4294967296' is not an integer from 0 to 4294967295", P,
		 "--memtouch-rate", "4294967296", NULL);
	load_err("memtouch-bytes: '4097' is not an integer from 1 to 4096", P,
		 "--memtouch-bytes", "4097", NULL);
	load_err("memtouch-threads: '0' is not an integer from 1 to 64", P,
		 "--memtouch-threads", "0", NULL);
	load_err("memtouch-seed: '18446744073709551616' is not an integer from 0 to "
		 "18446744073709551615", P, "--memtouch-seed", "18446744073709551616", NULL);
	load_err("memtouch-seed: 'x' is not an integer from 0 to 18446744073709551615",
		 P, "--memtouch-seed", "x", NULL);
}
END_TEST

START_TEST(bad_enums)
{
	const enum colo_role S = COLO_ROLE_SECONDARY;

	load_err("log-level: 'verbose' is not one of error, warn, info, debug", S,
		 "--log-level", "verbose", NULL);
	load_err("log-level: 'INFO' is not one of error, warn, info, debug", S,
		 "--log-level", "INFO", NULL);
	load_err("output-mode: 'fast' is not one of buffer, none, compare", S,
		 "--output-mode", "fast", NULL);
	load_err("dirty-tracking: 'uffd' is not one of auto, uffd-wp, mprotect, manual, "
		 "soft-dirty", S,
		 "--dirty-tracking", "uffd", NULL);
	load_err("memtouch-pattern: 'zigzag' is not one of sequential, random, hotset", S,
		 "--memtouch-pattern", "zigzag", NULL);
	load_err("guest: 'vm' is not one of kv, memtouch, qemu", S, "--guest", "vm", NULL);
	load_err("encodings: 'compress' is not one of zero, raw, lz4, delta, delta-lz4, "
		 "xbzrle", S, "--encodings", "delta,compress", NULL);
	load_err("encodings: 'delta,,lz4' has an empty name (names are zero, raw, lz4, "
		 "delta, delta-lz4, xbzrle)", S, "--encodings", "delta,,lz4", NULL);
	load_err("encodings: '' is empty (raw is always on: write 'raw' for raw pages "
		 "only)", S, "--encodings", "", NULL);
}
END_TEST

START_TEST(bad_strings)
{
	const enum colo_role P = COLO_ROLE_PRIMARY;
	char longpath[200], want[300];

	load_err("name: 'a b' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, not "
		 "starting with . or -)", P, "--name", "a b", NULL);
	load_err("name: '' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, not "
		 "starting with . or -)", P, "--name=", NULL);
	load_err("name: '../x' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, not "
		 "starting with . or -)", P, "--name", "../x", NULL);
	load_err("name: 'a?b' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, not "
		 "starting with . or -)", P, "--name", "a\nb", NULL);
	/* A value that looks like a flag is still the value. */
	load_err("name: '-h' is not a node name (1 to 63 of A-Z a-z 0-9 . _ -, not "
		 "starting with . or -)", P, "--name", "-h", NULL);
	load_err("control: '' is empty", P, "--control", "", NULL);
	load_err("state-dir: '' is empty", P, "--state-dir", "", NULL);
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = '\0';
	/* Quoted values are cut at 124 bytes. */
	snprintf(want, sizeof(want), "control: '%.124s...' is too long for a unix "
		 "socket path (at most 107 bytes)", longpath);
	load_err(want, P, "--control", longpath, NULL);
}
END_TEST

START_TEST(bad_addresses)
{
	const enum colo_role S = COLO_ROLE_SECONDARY;

	load_err("listen: '127.0.0.1' has no port (expected a.b.c.d:PORT or [IPv6]:PORT)",
		 S, "--listen", "127.0.0.1", NULL);
	load_err("listen: '127.0.0.1:' has no port (expected a.b.c.d:PORT or [IPv6]:PORT)",
		 S, "--listen", "127.0.0.1:", NULL);
	load_err("listen: '127.0.0.1:0': port '0' is not an integer from 1 to 65535",
		 S, "--listen", "127.0.0.1:0", NULL);
	load_err("listen: '127.0.0.1:70000': port '70000' is not an integer from 1 to 65535",
		 S, "--listen", "127.0.0.1:70000", NULL);
	load_err("listen: '127.0.0.1:http': port 'http' is not an integer from 1 to 65535",
		 S, "--listen", "127.0.0.1:http", NULL);
	load_err("peer: 'localhost:7070': 'localhost' is not a numeric IPv4 address "
		 "a.b.c.d or [IPv6] (no DNS)", S, "--peer", "localhost:7070", NULL);
	load_err("peer: '1.2.3:7070': '1.2.3' is not a numeric IPv4 address a.b.c.d or "
		 "[IPv6] (no DNS)", S, "--peer", "1.2.3:7070", NULL);
	load_err("peer: '256.1.1.1:7070': '256.1.1.1' is not a numeric IPv4 address "
		 "a.b.c.d or [IPv6] (no DNS)", S, "--peer", "256.1.1.1:7070", NULL);
	load_err("peer: ':7070': '' is not a numeric IPv4 address a.b.c.d or [IPv6] "
		 "(no DNS)", S, "--peer", ":7070", NULL);
	load_err("guest-listen: '::1:6379': an IPv6 address goes in brackets, e.g. "
		 "[::1]:7070", S, "--guest-listen", "::1:6379", NULL);
	load_err("guest-listen: '[::1:6379' has no ']' after the IPv6 address", S,
		 "--guest-listen", "[::1:6379", NULL);
	load_err("guest-listen: '[::1]' has no port (expected a.b.c.d:PORT or "
		 "[IPv6]:PORT)", S, "--guest-listen", "[::1]", NULL);
	load_err("guest-listen: '[::g]:1': '::g' is not a numeric IPv6 address", S,
		 "--guest-listen", "[::g]:1", NULL);
	load_err("guest-listen: '[1.2.3.4]:1': '1.2.3.4' is not a numeric IPv6 address", S,
		 "--guest-listen", "[1.2.3.4]:1", NULL);
}
END_TEST

START_TEST(good_addresses)
{
	struct colo_config c;

	load_ok(&c, COLO_ROLE_SECONDARY, "--listen", "[::]:1", "--peer",
		"[2001:db8::17]:65535", "--guest-listen", "0.0.0.0:6380", NULL);
	ck_assert_str_eq(c.listen.host, "::");
	ck_assert_uint_eq(c.listen.port, 1);
	ck_assert_str_eq(c.peer.host, "2001:db8::17");
	ck_assert_uint_eq(c.peer.port, 65535);
	ck_assert_str_eq(c.guest_listen.host, "0.0.0.0");
	ck_assert_uint_eq(c.guest_listen.port, 6380);
	colo_config_free(&c);
}
END_TEST

START_TEST(bad_flags)
{
	const enum colo_role P = COLO_ROLE_PRIMARY;

	load_err("unknown option '--foo' (see --help)", P, "--foo", "1", NULL);
	load_err("unknown option '--foo' (see --help)", P, "--foo=1", NULL);
	load_err("unknown option '-x' (see --help)", P, "-x", NULL);
	load_err("option '--name' needs a value", P, "--name", NULL);
	load_err("option '-c' needs a value", P, "-c", NULL);
	load_err("option '--config' needs a value", P, "--config", NULL);
	load_err("option '--help' takes no value", P, "--help=yes", NULL);
	load_err("unexpected argument 'start' (options only; see --help)", P,
		 "--name", "a", "start", NULL);
	/* Keys are spelled out: no getopt abbreviations. */
	load_err("unknown option '--checkpoint-interval' (did you mean "
		 "--checkpoint-interval-ms?)", P, "--checkpoint-interval", "5", NULL);
	load_err("unknown option '--check-c' (did you mean --check-config?)", P,
		 "--check-c", NULL);
	/* The file key "fault" is a flag too; "config" is not a file key. */
	load_err("unknown option '--pskfile' (see --help)", P, "--pskfile", "/tmp/k", NULL);
	load_err("option '--psk-file' needs a value", P, "--psk-file", NULL);
	/* A switch takes a value only after "=". */
	load_err("unexpected argument 'yes' (options only; see --help)", P, "--insecure",
		 "yes", NULL);
	load_err("insecure: 'maybe' is not one of no, yes", P, "--insecure=maybe", NULL);
}
END_TEST

/* output-mode compare: its key, the interval's default by mode, and the
 * guests that cannot run it. */
START_TEST(compare_keys)
{
	const enum colo_role P = COLO_ROLE_PRIMARY;
	struct colo_config c;

	load_ok(&c, P, NULL);
	ck_assert_int_eq(c.output_mode, COLO_OUTPUT_BUFFER);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 100);
	ck_assert_uint_eq(c.compare_timeout_ms, 200);
	colo_config_free(&c);
	/* kv, the default guest, runs it; its checkpoints are 20 s apart. */
	load_ok(&c, P, "--output-mode", "compare", NULL);
	ck_assert_int_eq(c.output_mode, COLO_OUTPUT_COMPARE);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 20000);
	ck_assert_str_eq(colo_output_mode_name(c.output_mode), "compare");
	colo_config_free(&c);
	/* An interval said is kept; 0 says "the mode's". */
	load_ok(&c, COLO_ROLE_SECONDARY, "--output-mode", "compare",
		"--checkpoint-interval-ms", "500", "--compare-timeout-ms", "50", NULL);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 500);
	ck_assert_uint_eq(c.compare_timeout_ms, 50);
	colo_config_free(&c);
	load_ok(&c, P, "--checkpoint-interval-ms", "0", NULL);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 100);
	colo_config_free(&c);
	load_err("output-mode compare: the memtouch guest cannot run it (its copy on the "
		 "secondary would not say the same; it is for guests that answer clients "
		 "deterministically, e.g. kv): use buffer", P, "--guest", "memtouch",
		 "--output-mode", "compare", NULL);
	load_err("output-mode: 'compared' is not one of buffer, none, compare", P,
		 "--output-mode", "compared", NULL);
	load_err("compare-timeout-ms: '60001' is not an integer from 1 to 60000", P,
		 "--compare-timeout-ms", "60001", NULL);
}
END_TEST

START_TEST(arbiter_keys)
{
	struct colo_config c;
	const char *f;

	load_ok(&c, COLO_ROLE_PRIMARY, NULL);
	ck_assert_int_eq(c.arbiter, COLO_ARBITER_NONE);
	ck_assert_str_eq(c.etcd_endpoints, "");
	ck_assert_uint_eq(c.lease_ttl_ms, 2000);
	ck_assert_str_eq(c.cluster, "colo");
	ck_assert_str_eq(c.release_log, "");
	ck_assert_int_eq(c.allow_split_brain, 0);
	colo_config_free(&c);
	f = write_ini("arb.ini", "[arbiter]\narbiter = etcd\netcd-endpoints = "
		      "http://10.0.0.5:2379,http://[::1]:2379\nlease-ttl-ms = 3000\n"
		      "cluster = shop-db\nrelease-log = /tmp/r.log\n");
	load_ok(&c, COLO_ROLE_SECONDARY, "-c", f, "--allow-split-brain", NULL);
	ck_assert_int_eq(c.arbiter, COLO_ARBITER_ETCD);
	ck_assert_str_eq(c.etcd_endpoints, "http://10.0.0.5:2379,http://[::1]:2379");
	ck_assert_uint_eq(c.lease_ttl_ms, 3000);
	ck_assert_str_eq(c.cluster, "shop-db");
	ck_assert_str_eq(c.release_log, "/tmp/r.log");
	ck_assert_int_eq(c.allow_split_brain, 1);
	colo_config_free(&c);
	load_err("arbiter = etcd needs etcd-endpoints (http://HOST:PORT, comma-separated)",
		 COLO_ROLE_PRIMARY, "--arbiter", "etcd", NULL);
	load_err("lease-ttl-ms (2500) must be a multiple of 1000: etcd counts leases in "
		 "seconds", COLO_ROLE_PRIMARY, "--lease-ttl-ms", "2500", NULL);
	load_err("arbiter = etcd needs output-mode = buffer or compare: with none, "
		 "replies leave before anything is checked", COLO_ROLE_PRIMARY, "--arbiter", "etcd",
		 "--etcd-endpoints", "http://127.0.0.1:2379", "--output-mode", "none", NULL);
	load_err("etcd-endpoints: 'https://h:1' is not a list of http://HOST:PORT, "
		 "comma-separated", COLO_ROLE_PRIMARY, "--etcd-endpoints", "https://h:1", NULL);
	load_err("etcd-endpoints: 'http://h:1,' is not a list of http://HOST:PORT, "
		 "comma-separated", COLO_ROLE_PRIMARY, "--etcd-endpoints", "http://h:1,", NULL);
	load_err("etcd-endpoints: 'http://h:99999' is not a list of http://HOST:PORT, "
		 "comma-separated", COLO_ROLE_PRIMARY, "--etcd-endpoints", "http://h:99999",
		 NULL);
	load_err("etcd-endpoints: 'http://h:1/v3' is not a list of http://HOST:PORT, "
		 "comma-separated", COLO_ROLE_PRIMARY, "--etcd-endpoints", "http://h:1/v3",
		 NULL);
	load_err("cluster: 'a/b' is not a cluster name (1 to 63 of A-Z a-z 0-9 . _ -, not "
		 "starting with . or -)", COLO_ROLE_PRIMARY, "--cluster", "a/b", NULL);
	load_err("arbiter: 'zk' is not one of none, etcd", COLO_ROLE_PRIMARY, "--arbiter",
		 "zk", NULL);
}
END_TEST

START_TEST(security_keys)
{
	struct colo_config c;
	const char *f;

	load_ok(&c, COLO_ROLE_PRIMARY, NULL);
	ck_assert_str_eq(c.psk_file, "");
	ck_assert_int_eq(c.encrypt, 0);
	ck_assert_int_eq(c.insecure, 0);
	colo_config_free(&c);
	load_ok(&c, COLO_ROLE_SECONDARY, "--insecure", NULL);
	ck_assert_int_eq(c.insecure, 1);
	colo_config_free(&c);
	load_ok(&c, COLO_ROLE_SECONDARY, "--insecure", "--insecure=no", NULL);
	ck_assert_int_eq(c.insecure, 0);
	colo_config_free(&c);
	f = write_ini("sec.ini", "[security]\npsk-file = /etc/colo/key\nencrypt = yes\n"
		      "insecure = yes\n");
	load_ok(&c, COLO_ROLE_PRIMARY, "-c", f, NULL);
	ck_assert_str_eq(c.psk_file, "/etc/colo/key");
	ck_assert_int_eq(c.encrypt, 1);
	ck_assert_int_eq(c.insecure, 1);
	colo_config_free(&c);
	/* The connection's keys come from the shared one. */
	load_err("encrypt = yes needs a psk-file: the connection's keys come from it",
		 COLO_ROLE_PRIMARY, "--encrypt", "yes", NULL);
}
END_TEST

START_TEST(cross_checks)
{
	const enum colo_role P = COLO_ROLE_PRIMARY;
	const char *f;
	struct colo_config c;

	load_err("heartbeat-timeout-ms (50) must be greater than heartbeat-interval-ms (50)",
		 P, "--heartbeat-timeout-ms", "50", NULL);
	load_err("heartbeat-timeout-ms (300) must be greater than heartbeat-interval-ms "
		 "(400)", P, "--heartbeat-interval-ms", "400", NULL);
	load_err("min-interval-ms (101) must not be greater than checkpoint-interval-ms "
		 "(100)", P, "--min-interval-ms", "101", NULL);
	/* Checked on the result: a file value and a flag combine. */
	f = write_ini("x.ini", "[replication]\ncheckpoint-interval-ms = 10\n");
	load_err("min-interval-ms (20) must not be greater than checkpoint-interval-ms "
		 "(10)", P, "-c", f, "--min-interval-ms", "20", NULL);
	load_ok(&c, P, "-c", f, "--min-interval-ms", "10", "--heartbeat-interval-ms", "299",
		NULL);
	colo_config_free(&c);
}
END_TEST

/* ---- the file ---- */

/* Write text to bad.ini, load it, require "PATH:" + want. */
static void file_err(const char *text, const char *want)
{
	const char *f = write_ini("bad.ini", text);
	char full[1024];

	snprintf(full, sizeof(full), "%s:%s", f, want);
	load_err(full, COLO_ROLE_PRIMARY, "-c", f, NULL);
}

START_TEST(file_errors)
{
	file_err("[replication]\n\ncheckpoint-interval-ms = fast\n",
		 "3: [replication] checkpoint-interval-ms: 'fast' is not an integer "
		 "from 0 to 60000");
	file_err("[node]\nnmae = a\n", "2: [node] nmae: unknown key");
	file_err("[node]\nconfig = x.ini\n", "2: [node] config: unknown key");
	file_err("[node]\ncheckpoint-interval-ms = 5\n",
		 "2: [node] checkpoint-interval-ms: belongs in [replication]");
	file_err("[record]\nkeyframe-every = 0\n",
		 "2: [record] keyframe-every: '0' is not an integer from 1 to 1000000");
	file_err("[security]\ninsecure = true\n",
		 "2: [security] insecure: 'true' is not one of no, yes");
	/* A section with no keys is still checked. */
	file_err("[node]\nname = a\n[Guest]\n",
		 "3: unknown section [Guest] (sections: [node] [replication] "
		 "[heartbeat] [guest] [qemu] [record] [security] [arbiter])");
	file_err("name = a\n", "1: name: outside any section (before the first [section])");
	file_err("[node]\nname\n", "2: syntax error (expected [section] or key = value)");
	file_err("[node\nname = a\n", "1: syntax error (expected [section] or key = value)");
	file_err("[node]\nname = a\n; fine\nname = b\n",
		 "4: [node] name: set twice (also on line 2)");
	file_err("[heartbeat]\nfence-command = a\n  b\n",
		 "3: [heartbeat] fence-command: an indented line continues the value of "
		 "the key above (line 2)");
	file_err("[replication]\npeer = localhost:7070\n",
		 "2: [replication] peer: 'localhost:7070': 'localhost' is not a numeric "
		 "IPv4 address a.b.c.d or [IPv6] (no DNS)");
	file_err("[replication]\nencodings = lz4,lzo\n",
		 "2: [replication] encodings: 'lzo' is not one of zero, raw, lz4, delta, "
		 "delta-lz4, xbzrle");
	/* The first error wins, syntax or ours. */
	file_err("[node]\nbad line\nnmae = x\n",
		 "2: syntax error (expected [section] or key = value)");
	file_err("[node]\nnmae = x\nbad line\n", "2: [node] nmae: unknown key");
}
END_TEST

START_TEST(file_long_line)
{
	char text[400];

	snprintf(text, sizeof(text), "[heartbeat]\nfence-command = %0250d\n", 0);
	file_err(text, "2: line longer than 198 characters");
}
END_TEST

START_TEST(file_comments_and_bom)
{
	const char *f = write_ini("ok.ini",
		"\xef\xbb\xbf# comment\n"
		"[node]  ; inline\n"
		"name=a\n"
		"  \n"
		"[replication]\n"
		"checkpoint-interval-ms = 30 ; thirty\n"
		"peer : 10.1.1.1:9\n"
		"[heartbeat]\n"
		"fence-command =\n");
	struct colo_config c;

	load_ok(&c, COLO_ROLE_SECONDARY, "-c", f, NULL);
	ck_assert_str_eq(c.name, "a");
	ck_assert_uint_eq(c.checkpoint_interval_ms, 30);
	ck_assert_str_eq(c.peer.host, "10.1.1.1");
	ck_assert_uint_eq(c.peer.port, 9);
	ck_assert_str_eq(c.fence_command, "");
	colo_config_free(&c);
}
END_TEST

START_TEST(file_missing)
{
	char want[600], path[512];

	snprintf(path, sizeof(path), "%s/none.ini", tmp);
	snprintf(want, sizeof(want), "config file '%s': %s", path, strerror(ENOENT));
	load_err(want, COLO_ROLE_PRIMARY, "--name", "a", "-c", path, NULL);
	snprintf(want, sizeof(want), "config file '%s': %s", tmp, strerror(EISDIR));
	load_err(want, COLO_ROLE_PRIMARY, "-c", tmp, NULL);
}
END_TEST

/* ---- --help, --version, --check-config ---- */

static char *golden_path(const char *name)
{
	const char *top = getenv("top_srcdir");
	static const char *const tries[] = { ".", ".." };
	static char path[1024];

	if (top && *top) {
		snprintf(path, sizeof(path), "%s/tests/golden/%s", top, name);
		return path;
	}
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/tests/golden/%s", tries[i], name);
		if (access(path, R_OK) == 0)
			break;
	}
	return path;
}

static void check_help(enum colo_role role, const char *golden)
{
	const char *path = golden_path(golden);
	struct colo_config c;
	struct colo_err err;
	char *text = NULL, *got = NULL;
	size_t len = 0, glen = 0;
	bool check;
	FILE *out;
	int rc;

	text = (char *)colo_test_read_file(path, &len);
	ck_assert_msg(text != NULL, "cannot read %s (set top_srcdir)", path);
	text[len] = '\0';

	/* colo_config_usage and --help print the same. */
	out = open_memstream(&got, &glen);
	colo_config_usage(role, colo_guest_list(), out);
	fclose(out);
	ck_assert_str_eq(got, text);
	free(got);

	/* -h and --help, anywhere among the flags: printed, returns 1. */
	for (int i = 0; i < 2; i++) {
		got = NULL;
		out = open_memstream(&got, &glen);
		colo_err_clear(&err);
		rc = colo_config_load(&c, role, colo_guest_list(), 4,
				      (char *[]){ "x", "--name", "a", i ? "-h" : "--help",
						  NULL }, out, &check, &err);
		fclose(out);
		ck_assert_int_eq(rc, 1);
		ck_assert_str_eq(got, text);
		ck_assert_ptr_null(c.name);
		free(got);
	}
	free(text);
}

START_TEST(help_primary)
{
	check_help(COLO_ROLE_PRIMARY, "help-primary.txt");
}
END_TEST

START_TEST(help_secondary)
{
	check_help(COLO_ROLE_SECONDARY, "help-secondary.txt");
}
END_TEST

START_TEST(help_lists_every_key)
{
	static const char *const keys[] = {
		"name", "control", "state-dir", "log-level", "listen", "peer",
		"checkpoint-interval-ms", "min-interval-ms", "output-mode", "encodings",
		"encode-threads", "dirty-tracking", "heartbeat-interval-ms",
		"heartbeat-timeout-ms", "fence-command", "promote-command", "guest",
		"guest-listen", "ram-mb", "memtouch-rate", "memtouch-pattern",
		"memtouch-bytes", "memtouch-threads", "memtouch-seed", "record",
		"keyframe-every", "record-max-bytes", "record-max-checkpoints",
		"psk-file", "encrypt",
	};
	char *got = NULL, want[64];
	size_t len = 0;
	FILE *out = open_memstream(&got, &len);

	colo_config_usage(COLO_ROLE_PRIMARY, colo_guest_list(), out);
	fclose(out);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(want, sizeof(want), "\n  --%s ", keys[i]);
		ck_assert_msg(strstr(got, want), "--help lacks %s", keys[i]);
	}
	ck_assert_ptr_null(strstr(got, "--fault"));
	ck_assert_ptr_nonnull(strstr(got, "\n[node]\n"));
	ck_assert_ptr_nonnull(strstr(got, "\n[guest]\n"));
	ck_assert_ptr_nonnull(strstr(got, "  6  fence-command failed\n"));
	/* Lines fit in 79 columns. */
	for (char *p = got, *nl; (nl = strchr(p, '\n')); p = nl + 1)
		ck_assert_msg(nl - p <= 79, "long line: %.*s", (int)(nl - p), p);
	free(got);
}
END_TEST

START_TEST(version)
{
	struct colo_config c;
	struct colo_err err;
	char *got = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&got, &len);
	int rc;

	colo_err_clear(&err);
	rc = colo_config_load(&c, COLO_ROLE_SECONDARY, colo_guest_list(), 2,
			      (char *[]){ "x", "-V", NULL }, out, NULL, &err);
	fclose(out);
	ck_assert_int_eq(rc, 1);
	ck_assert_str_eq(got, "colo-secondary (" PACKAGE_NAME ") " PACKAGE_VERSION "\n");
	free(got);
}
END_TEST

/* A parse that stopped inside "-Vh" does not leak into the next one: getopt
 * would otherwise resume from its pointer into the old argv (here still
 * mapped and rewritten, so the stale character is visible). */
START_TEST(getopt_state_reset)
{
	char arg[] = "-Vh";
	char *argv[3] = { "x", arg, NULL };
	struct colo_config c;
	struct colo_err err;
	FILE *out = fopen("/dev/null", "w");

	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_load(&c, COLO_ROLE_PRIMARY, colo_guest_list(), 2, argv,
					  out, NULL, &err), 1);
	fclose(out);
	memcpy(arg, "-Vx", 4);
	load_ok(&c, COLO_ROLE_PRIMARY, "--ram-mb", "2", NULL);
	ck_assert_uint_eq(c.ram_mb, 2);
	colo_config_free(&c);
}
END_TEST

START_TEST(check_config)
{
	const char *f = write_ini("c.ini", "[node]\nname = a\n");
	struct colo_config c;
	struct colo_err err;
	bool check = false;
	int rc;

	colo_err_clear(&err);
	rc = colo_config_load(&c, COLO_ROLE_PRIMARY, colo_guest_list(), 4,
			      (char *[]){ "x", "--check-config", "-c", (char *)f, NULL },
			      stdout, &check, &err);
	ck_assert_int_eq(rc, 0);
	ck_assert(check);
	ck_assert_str_eq(c.name, "a");
	colo_config_free(&c);

	/* A bad configuration is still an error, with its message. */
	f = write_ini("c.ini", "[node]\nname = a b\n");
	check = false;
	colo_err_clear(&err);
	rc = colo_config_load(&c, COLO_ROLE_PRIMARY, colo_guest_list(), 4,
			      (char *[]){ "x", "-c", (char *)f, "--check-config", NULL },
			      stdout, &check, &err);
	ck_assert_int_lt(rc, 0);
	ck_assert(check);
	ck_assert_ptr_nonnull(strstr(err.msg, "c.ini:2: [node] name: 'a b' is not a "
				     "node name"));
}
END_TEST

/* ---- reload ---- */

START_TEST(reload)
{
	const char *f = write_ini("r.ini", "[node]\nname = a\n[replication]\n"
				  "checkpoint-interval-ms = 50\n[guest]\nram-mb = 32\n");
	struct colo_config c;
	struct colo_err err;
	char want[1024], path[512], *abs = realpath(f, NULL);

	snprintf(path, sizeof(path), "%s", abs);
	free(abs);
	load_ok(&c, COLO_ROLE_PRIMARY, "-c", path, "--ram-mb", "128", NULL);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 50);
	ck_assert_uint_eq(c.ram_mb, 128);

	/* New values from the file; the flags still win. */
	write_ini("r.ini", "[node]\nname = b\n[replication]\ncheckpoint-interval-ms = 70\n"
		  "[guest]\nram-mb = 16\nmemtouch-threads = 4\n");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_reload(&c, &err), 0);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 70);
	ck_assert_uint_eq(colo_memtouch_settings(&c)->threads, 4);
	ck_assert_uint_eq(c.ram_mb, 128);
	ck_assert_str_eq(c.name, "b");
	ck_assert_str_eq(c.control, expected_control("b"));
	ck_assert_str_eq(c.file, path);

	/* A bad file: an error naming file:line, the running values kept. */
	write_ini("r.ini", "[replication]\ncheckpoint-interval-ms = 90\n"
		  "min-interval-ms = 91\n");
	colo_err_clear(&err);
	ck_assert_int_lt(colo_config_reload(&c, &err), 0);
	ck_assert_str_eq(err.msg, "min-interval-ms (91) must not be greater than "
			 "checkpoint-interval-ms (90)");
	write_ini("r.ini", "[replication]\ncheckpoint-interval-ms = 90\nbogus = 1\n");
	colo_err_clear(&err);
	ck_assert_int_lt(colo_config_reload(&c, &err), 0);
	snprintf(want, sizeof(want), "%s:3: [replication] bogus: unknown key", path);
	ck_assert_str_eq(err.msg, want);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 70);
	ck_assert_str_eq(c.name, "b");
	ck_assert_uint_eq(colo_memtouch_settings(&c)->threads, 4);

	/* The file gone: its error, values kept. */
	unlink(path);
	colo_err_clear(&err);
	ck_assert_int_lt(colo_config_reload(&c, &err), 0);
	snprintf(want, sizeof(want), "config file '%s': %s", path, strerror(ENOENT));
	ck_assert_str_eq(err.msg, want);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 70);

	/* Back: defaults for what the file no longer sets. */
	write_ini("r.ini", "[guest]\nram-mb = 1\n");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_reload(&c, &err), 0);
	ck_assert_uint_eq(c.checkpoint_interval_ms, 100);
	ck_assert_uint_eq(c.ram_mb, 128);
	ck_assert_str_eq(c.name, "primary");
	colo_config_free(&c);
}
END_TEST

/* A relative -c and a chdir between load and reload. */
START_TEST(reload_after_chdir)
{
	char cwd[1024];
	struct colo_config c;
	struct colo_err err;

	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	write_ini("rel.ini", "[guest]\nram-mb = 5\n");
	ck_assert_int_eq(chdir(tmp), 0);
	load_ok(&c, COLO_ROLE_SECONDARY, "-c", "rel.ini", NULL);
	ck_assert_int_eq(chdir("/"), 0);
	write_ini("rel.ini", "[guest]\nram-mb = 6\n");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_reload(&c, &err), 0);
	ck_assert_uint_eq(c.ram_mb, 6);
	ck_assert_int_eq(chdir(cwd), 0);
	colo_config_free(&c);
}
END_TEST

START_TEST(reload_without_file)
{
	struct colo_config c;
	struct colo_err err;

	load_ok(&c, COLO_ROLE_PRIMARY, "--ram-mb", "3", NULL);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_reload(&c, &err), 0);
	ck_assert_uint_eq(c.ram_mb, 3);
	ck_assert_ptr_null(c.file);
	colo_config_free(&c);
}
END_TEST

/* ---- a guest's own keys ---- */

/* Two guests of a test's own: one with keys, one without that listens. */
struct fake_settings {
	uint32_t level;
	char *word;
};

static const struct colo_opt fake_opts[] = {
	{ "fake-level", COLO_SEC_GUEST, COLO_OPT_UINT, offsetof(struct fake_settings, level),
	  1, 9, .def = "3", .meta = "N", .help = "fake: a level, 1 to 9" },
	{ "fake-word", COLO_SEC_GUEST, COLO_OPT_STR, offsetof(struct fake_settings, word),
	  .def = "hello", .meta = "WORD", .help = "fake: a word" },
};

static const struct colo_guest_ops fake_ops = {
	.kind = "fake", .version = 1, .opts = fake_opts,
	.nopts = sizeof(fake_opts) / sizeof(fake_opts[0]),
	.settings_size = sizeof(struct fake_settings),
};

static const struct colo_guest_ops plain_ops = {
	.kind = "plain", .version = 1, .listens = true,
};

static const struct colo_guest_ops *const fake_guests[] = { &plain_ops, &fake_ops, NULL };

/* colo_config_load with the fake guests; argv = { prog, args..., NULL }. */
static int fake_load(struct colo_config *cfg, struct colo_err *err, ...)
{
	char *argv[ARGS_MAX];
	int argc = 0;
	const char *a;
	va_list ap;

	argv[argc++] = "colo-primary";
	va_start(ap, err);
	while ((a = va_arg(ap, const char *)) != NULL) {
		ck_assert_int_lt(argc, ARGS_MAX - 1);
		argv[argc++] = (char *)a;
	}
	va_end(ap);
	argv[argc] = NULL;
	colo_err_clear(err);
	return colo_config_load(cfg, COLO_ROLE_PRIMARY, fake_guests, argc, argv, stdout,
				NULL, err);
}

/* The list decides the guest key's values and default, the keys there are
 * and the blocks they fill; a key of a guest not in the list is unknown. */
START_TEST(guest_keys_follow_the_list)
{
	const char *f = write_ini("g.ini", "[guest]\nfake-word = from-file\n");
	struct fake_settings *fs;
	struct colo_config c;
	struct colo_err err;

	ck_assert_int_eq(fake_load(&c, &err, NULL), 0);
	ck_assert_str_eq(c.guest, "plain");
	ck_assert_ptr_eq(colo_config_guest_ops(&c), &plain_ops);
	ck_assert_ptr_null(colo_config_guest(&c, &plain_ops));
	ck_assert_ptr_null(colo_config_guest(&c, &colo_memtouch_ops));
	fs = colo_config_guest(&c, &fake_ops);
	ck_assert_ptr_nonnull(fs);
	ck_assert_uint_eq(fs->level, 3);
	ck_assert_str_eq(fs->word, "hello");
	colo_config_free(&c);
	ck_assert_ptr_null(colo_config_guest(&c, &fake_ops));

	/* flags over the file, for a guest's keys as for the node's */
	ck_assert_int_eq(fake_load(&c, &err, "--fake-level=7", "-c", f, "--guest", "fake",
				   NULL), 0);
	ck_assert_ptr_eq(colo_config_guest_ops(&c), &fake_ops);
	fs = colo_config_guest(&c, &fake_ops);
	ck_assert_uint_eq(fs->level, 7);
	ck_assert_str_eq(fs->word, "from-file");
	/* reload makes new blocks from the file and the same flags */
	write_ini("g.ini", "[guest]\nfake-word = reloaded\nfake-level = 1\n");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_config_reload(&c, &err), 0);
	fs = colo_config_guest(&c, &fake_ops);
	ck_assert_uint_eq(fs->level, 7);
	ck_assert_str_eq(fs->word, "reloaded");
	/* a bad reload keeps them */
	write_ini("g.ini", "[guest]\nfake-level = 10\n");
	ck_assert_int_lt(colo_config_reload(&c, &err), 0);
	ck_assert_ptr_nonnull(strstr(err.msg, "g.ini:2: [guest] fake-level: '10' is not "
				     "an integer from 1 to 9"));
	fs = colo_config_guest(&c, &fake_ops);
	ck_assert_str_eq(fs->word, "reloaded");
	colo_config_free(&c);
}
END_TEST

START_TEST(guest_key_errors)
{
	const char *f;
	struct colo_config c;
	struct colo_err err;
	char want[600];

	ck_assert_int_lt(fake_load(&c, &err, "--guest", "kv", NULL), 0);
	ck_assert_str_eq(err.msg, "guest: 'kv' is not one of plain, fake");
	ck_assert_int_lt(fake_load(&c, &err, "--memtouch-rate", "1", NULL), 0);
	ck_assert_str_eq(err.msg, "unknown option '--memtouch-rate' (see --help)");
	ck_assert_int_lt(fake_load(&c, &err, "--fake-level", "0", NULL), 0);
	ck_assert_str_eq(err.msg, "fake-level: '0' is not an integer from 1 to 9");
	ck_assert_int_lt(fake_load(&c, &err, "--fake-lev=2", NULL), 0);
	ck_assert_str_eq(err.msg, "unknown option '--fake-lev' (did you mean --fake-level?)");
	f = write_ini("e.ini", "[guest]\nfake-level = 2\nfake-level = 4\n");
	ck_assert_int_lt(fake_load(&c, &err, "-c", f, NULL), 0);
	snprintf(want, sizeof(want), "%s:3: [guest] fake-level: set twice (also on line 2)", f);
	ck_assert_str_eq(err.msg, want);
	f = write_ini("s.ini", "[node]\nfake-word = x\n");
	ck_assert_int_lt(fake_load(&c, &err, "-c", f, NULL), 0);
	snprintf(want, sizeof(want), "%s:2: [node] fake-word: belongs in [guest]", f);
	ck_assert_str_eq(err.msg, want);
	/* a failed load leaves nothing to free */
	ck_assert_ptr_null(c.priv_settings);
	colo_config_free(&c);
}
END_TEST

/* --help lists each guest's keys in [guest], after the keys every guest has. */
START_TEST(guest_keys_in_help)
{
	char *got = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&got, &len);
	const char *guest_sec;

	ck_assert_ptr_nonnull(out);
	colo_config_usage(COLO_ROLE_PRIMARY, fake_guests, out);
	fclose(out);
	guest_sec = strstr(got, "\n[guest]\n"
			   "  --guest KIND                  the guest to run: plain or fake "
			   "(default plain)\n"
			   "  --guest-listen ADDR           plain: the address of the guest's "
			   "service\n"
			   "                                (default 127.0.0.1:6379)\n"
			   "  --ram-mb MB                   guest RAM in MiB, 1 to 65536; the "
			   "same on both\n"
			   "                                nodes (default 64)\n"
			   "  --fake-level N                fake: a level, 1 to 9 (default 3)\n"
			   "  --fake-word WORD              fake: a word (default hello)\n"
			   "\n[record]\n");
	if (!guest_sec)
		fprintf(stderr, "%s", got);
	ck_assert_ptr_nonnull(guest_sec);
	ck_assert_ptr_null(strstr(got, "memtouch"));
	free(got);
}
END_TEST

/* ---- names and encodings ---- */

START_TEST(names)
{
	char buf[128];
	uint32_t k = 0;
	struct colo_err err;

	ck_assert_str_eq(colo_role_name(COLO_ROLE_PRIMARY), "primary");
	ck_assert_str_eq(colo_role_name(COLO_ROLE_SECONDARY), "secondary");
	ck_assert_str_eq(colo_output_mode_name(COLO_OUTPUT_BUFFER), "buffer");
	ck_assert_str_eq(colo_output_mode_name(COLO_OUTPUT_NONE), "none");

	colo_encodings_format(DEFAULT_ENCODINGS, buf, sizeof(buf));
	ck_assert_str_eq(buf, "zero,raw,lz4,delta,delta-lz4");
	colo_encodings_format(COLO_PAGE_KINDS_ALL, buf, sizeof(buf));
	ck_assert_str_eq(buf, "zero,raw,lz4,delta,delta-lz4,xbzrle,compress");
	colo_encodings_format(0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	colo_encodings_format(DEFAULT_ENCODINGS, buf, 8);
	ck_assert_str_eq(buf, "zero,ra");

	colo_err_clear(&err);
	ck_assert_int_eq(colo_encodings_parse("xbzrle", &k, &err), 0);
	ck_assert_uint_eq(k, KIND(RAW) | KIND(XBZRLE));        /* raw implied */
	ck_assert_int_eq(colo_encodings_parse("zero,raw,lz4,delta,delta-lz4,xbzrle", &k,
					      &err), 0);
	ck_assert_uint_eq(k, COLO_PAGE_KINDS_ALL & ~KIND(COMPRESS));
	colo_encodings_format(k, buf, sizeof(buf));
	ck_assert_int_eq(colo_encodings_parse(buf, &k, &err), 0);
	ck_assert_uint_eq(k, COLO_PAGE_KINDS_ALL & ~KIND(COMPRESS));
	k = 7;
	ck_assert_int_eq(colo_encodings_parse("page", &k, &err), -EINVAL);
	ck_assert_uint_eq(k, 7);
	ck_assert_str_eq(err.msg, "'page' is not one of zero, raw, lz4, delta, delta-lz4, "
			 "xbzrle");
}
END_TEST

/* ---- log ---- */

struct drain {
	int fd;
	char *data;
	size_t len, cap;
};

static void *drain_run(void *arg)
{
	struct drain *d = arg;
	ssize_t n;

	for (;;) {
		if (d->cap - d->len < 65536) {
			d->cap = d->cap * 2 + 65536;
			d->data = realloc(d->data, d->cap + 1);
			if (!d->data)
				return NULL;
		}
		n = read(d->fd, d->data + d->len, d->cap - d->len);
		if (n <= 0)
			break;
		d->len += (size_t)n;
	}
	d->data[d->len] = '\0';
	return NULL;
}

/* Point the log at a pipe; what is written is read by a thread. */
static int log_pipe[2];
static pthread_t drain_thread;
static struct drain drained;

static void log_capture(void)
{
	ck_assert_int_eq(pipe(log_pipe), 0);
	memset(&drained, 0, sizeof(drained));
	drained.fd = log_pipe[0];
	ck_assert_int_eq(pthread_create(&drain_thread, NULL, drain_run, &drained), 0);
	colo_log_set_fd(log_pipe[1]);
}

/* Everything logged since log_capture() (the caller frees). */
static char *log_collect(void)
{
	colo_log_set_fd(2);
	close(log_pipe[1]);
	pthread_join(drain_thread, NULL);
	close(log_pipe[0]);
	ck_assert_ptr_nonnull(drained.data);
	return drained.data;
}

static regex_t line_re;

static void compile_line_re(const char *prog)
{
	char re[512];

	snprintf(re, sizeof(re), "^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):"
		 "([0-9]{2})\\.[0-9]{3}Z %s\\[%ld\\] (ERROR|WARN|INFO|DEBUG) node=[^ ]+ "
		 "gen=[0-9]+ role=(primary|secondary): [^\n]*$", prog, (long)getpid());
	ck_assert_int_eq(regcomp(&line_re, re, REG_EXTENDED | REG_NEWLINE), 0);
}

START_TEST(log_line_format)
{
	regmatch_t m[7];
	struct tm tm = { 0 };
	char *out, *nl;
	time_t t;

	log_capture();
	colo_log_init("colo-primary", "a", COLO_ROLE_PRIMARY, COLO_LOG_INFO);
	colo_log_set_generation(3);
	errno = EAGAIN;
	colo_log_info("checkpoint %d committed", 42);
	ck_assert_int_eq(errno, EAGAIN);
	colo_log_set_role(COLO_ROLE_SECONDARY);
	colo_log_set_generation(UINT64_MAX);
	colo_log_error("two\nlines");
	out = log_collect();

	compile_line_re("colo-primary");
	nl = strchr(out, '\n');
	ck_assert_ptr_nonnull(nl);
	*nl = '\0';
	ck_assert_msg(regexec(&line_re, out, 7, m, 0) == 0, "bad line: %s", out);
	ck_assert_ptr_nonnull(strstr(out, " INFO node=a gen=3 role=primary: "
				     "checkpoint 42 committed"));
	ck_assert_str_eq(out + strlen(out) - strlen(": checkpoint 42 committed"),
			 ": checkpoint 42 committed");
	/* The time is UTC now. */
	tm.tm_year = atoi(out + m[1].rm_so) - 1900;
	tm.tm_mon = atoi(out + m[2].rm_so) - 1;
	tm.tm_mday = atoi(out + m[3].rm_so);
	tm.tm_hour = atoi(out + m[4].rm_so);
	tm.tm_min = atoi(out + m[5].rm_so);
	tm.tm_sec = atoi(out + m[6].rm_so);
	t = timegm(&tm);
	ck_assert_msg(labs((long)(t - time(NULL))) <= 5, "time %s is not now", out);

	/* A newline ends the message; the line is still one line. */
	ck_assert_msg(regexec(&line_re, nl + 1, 0, NULL, 0) == 0, "bad line: %s", nl + 1);
	ck_assert_ptr_nonnull(strstr(nl + 1, " ERROR node=a gen=18446744073709551615 "
				     "role=secondary: two\n"));
	ck_assert_ptr_null(strstr(nl + 1, "lines"));
	ck_assert_int_eq(nl[strlen(nl + 1)], '\n');
	regfree(&line_re);
	free(out);
}
END_TEST

static int evaluated;

static int side_effect(void)
{
	return ++evaluated;
}

START_TEST(log_levels)
{
	char *out, big[5000];
	size_t lines = 0;

	log_capture();
	colo_log_init("colo-secondary", "b", COLO_ROLE_SECONDARY, COLO_LOG_WARN);
	colo_log_debug("debug %d", side_effect());
	colo_log_info("info %d", side_effect());
	colo_log(COLO_LOG_INFO, "direct info");
	colo_log_warn("warn");
	colo_log_error("error");
	ck_assert_int_eq(evaluated, 0);           /* arguments not evaluated */
	colo_log_set_level(COLO_LOG_DEBUG);
	colo_log_debug("debug %d", side_effect());
	ck_assert_int_eq(evaluated, 1);
	colo_log_set_level(COLO_LOG_ERROR);
	colo_log_warn("dropped");
	colo_log_set_level(COLO_LOG_INFO);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	colo_log_info("%s", big);                 /* cut, still one line */
	out = log_collect();

	for (char *p = out, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
		ck_assert_uint_le((size_t)(nl - p) + 1, 1024);
		lines++;
	}
	ck_assert_uint_eq(lines, 4);
	ck_assert_ptr_nonnull(strstr(out, " WARN node=b gen=0 role=secondary: warn\n"));
	ck_assert_ptr_nonnull(strstr(out, " ERROR node=b gen=0 role=secondary: error\n"));
	ck_assert_ptr_nonnull(strstr(out, " DEBUG node=b gen=0 role=secondary: debug 1\n"));
	ck_assert_ptr_null(strstr(out, "info"));
	ck_assert_ptr_null(strstr(out, "dropped"));
	ck_assert_int_eq(out[strlen(out) - 1], '\n');
	ck_assert_ptr_nonnull(strstr(out, "xxxxxxxxxx\n"));
	ck_assert_str_eq(colo_log_level_name(COLO_LOG_WARN), "WARN");
	free(out);
}
END_TEST

#define LOG_THREADS 4
#define LOG_LINES 5000

static void *log_writer(void *arg)
{
	int t = (int)(intptr_t)arg;
	char pad[700];

	for (int i = 0; i < LOG_LINES; i++) {
		int n = (i * 37 + t * 101) % (int)sizeof(pad);

		memset(pad, 'a' + t, (size_t)n);
		pad[n] = '\0';
		colo_log_info("thread %d line %d %s.", t, i, pad);
	}
	return NULL;
}

START_TEST(log_threads)
{
	pthread_t th[LOG_THREADS];
	int next[LOG_THREADS] = { 0 };
	size_t lines = 0;
	char *out, *p, *nl;

	log_capture();
	colo_log_init("colo-primary", "a", COLO_ROLE_PRIMARY, COLO_LOG_INFO);
	for (int t = 0; t < LOG_THREADS; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, log_writer,
						(void *)(intptr_t)t), 0);
	for (int t = 0; t < LOG_THREADS; t++)
		pthread_join(th[t], NULL);
	out = log_collect();

	compile_line_re("colo-primary");
	for (p = out; (nl = strchr(p, '\n')); p = nl + 1) {
		int t, i, len;
		char *msg;

		*nl = '\0';
		ck_assert_msg(regexec(&line_re, p, 0, NULL, 0) == 0, "bad line %zu: %.200s",
			      lines, p);
		msg = strstr(p, "role=primary: thread ");
		ck_assert_ptr_nonnull(msg);
		ck_assert_int_eq(sscanf(msg, "role=primary: thread %d line %d %n", &t, &i,
					&len), 2);
		ck_assert(t >= 0 && t < LOG_THREADS);
		/* Each thread's lines arrive whole and in order. */
		ck_assert_int_eq(i, next[t]);
		next[t]++;
		ck_assert_int_eq(nl[-1], '.');
		for (char *q = msg + len; q < nl - 1; q++)
			ck_assert_int_eq(*q, 'a' + t);
		lines++;
	}
	ck_assert_str_eq(p, "");
	ck_assert_uint_eq(lines, LOG_THREADS * LOG_LINES);
	regfree(&line_re);
	free(out);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

	tc = tcase_create("defaults");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults_primary);
	tcase_add_test(tc, defaults_secondary);
	tcase_add_test(tc, defaults_without_argv);
	tcase_add_test(tc, defaults_not_root);
	tcase_add_test(tc, control_follows_name);
	suite_add_tcase(s, tc);

	tc = tcase_create("sources");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, every_key_from_file);
	tcase_add_test(tc, every_key_from_flags);
	tcase_add_test(tc, flags_win_over_file);
	tcase_add_test(tc, config_equals_form);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, bad_integers);
	tcase_add_test(tc, bad_enums);
	tcase_add_test(tc, bad_strings);
	tcase_add_test(tc, bad_addresses);
	tcase_add_test(tc, good_addresses);
	tcase_add_test(tc, bad_flags);
	tcase_add_test(tc, security_keys);
	tcase_add_test(tc, compare_keys);
	tcase_add_test(tc, arbiter_keys);
	tcase_add_test(tc, cross_checks);
	tcase_add_test(tc, file_errors);
	tcase_add_test(tc, file_long_line);
	tcase_add_test(tc, file_comments_and_bom);
	tcase_add_test(tc, file_missing);
	suite_add_tcase(s, tc);

	tc = tcase_create("cli");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, help_primary);
	tcase_add_test(tc, help_secondary);
	tcase_add_test(tc, help_lists_every_key);
	tcase_add_test(tc, version);
	tcase_add_test(tc, getopt_state_reset);
	tcase_add_test(tc, check_config);
	suite_add_tcase(s, tc);

	tc = tcase_create("reload");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, reload);
	tcase_add_test(tc, reload_after_chdir);
	tcase_add_test(tc, reload_without_file);
	tcase_add_test(tc, names);
	suite_add_tcase(s, tc);

	tc = tcase_create("guests");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, guest_keys_follow_the_list);
	tcase_add_test(tc, guest_key_errors);
	tcase_add_test(tc, guest_keys_in_help);
	suite_add_tcase(s, tc);

	tc = tcase_create("log");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, log_line_format);
	tcase_add_test(tc, log_levels);
	tcase_add_test(tc, log_threads);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
