/*
 * test_kvcmd.c: every command's reply bytes, normal and error, on a real
 * store, and the QUIT and WROTE flags.  Error texts were checked against
 * redis-server 7.0.15; where we answer differently on purpose (kvcmd.h) the
 * test says so.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvcmd.h"
#include "resp.h"
#include "testutil.h"

#define MAX_WORDS 64

static struct {
	uint8_t *region;
	struct colo_kv_meta meta;
	struct colo_kvstore kv;
	struct colo_kvcmd_client client;
	struct colo_kvcmd_ctx ctx;
	struct colo_buf out;
	int flags;                      /* of the last command */
} t;

static void store_setup(size_t size)
{
	struct colo_err err;

	colo_err_clear(&err);
	t.region = malloc(size);
	ck_assert_ptr_nonnull(t.region);
	ck_assert_msg(colo_kv_format(&t.kv, t.region, size, &t.meta, 7, &err) == 0, "%s",
		      err.msg);
	memset(&t.client, 0, sizeof(t.client));
	t.client.id = 7;
	memset(&t.ctx, 0, sizeof(t.ctx));
	t.ctx.kv = &t.kv;
	t.ctx.client = &t.client;
	t.ctx.tcp_port = 6379;
	t.ctx.uptime_s = 90061;
	t.ctx.connected_clients = 3;
	t.ctx.commands_processed = 12;
	t.ctx.total_connections = 5;
	t.ctx.role = "master";
	t.ctx.maxmemory = size;
	colo_buf_init(&t.out);
}

static void setup(void)
{
	store_setup(8u << 20);
}

static void teardown(void)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_kv_check(&t.kv, &err) == 0, "%s", err.msg);
	colo_buf_free(&t.out);
	free(t.region);
	t.region = NULL;
}

/* Run a command; the reply, NUL-terminated (t.out.len is its length). */
static const char *runv(int argc, uint8_t *const *argv, const size_t *argl)
{
	colo_buf_reset(&t.out);
	t.flags = colo_kvcmd_exec(&t.ctx, argc, argv, argl, &t.out);
	colo_buf_put_u8(&t.out, '\0');
	ck_assert(colo_buf_ok(&t.out));
	t.out.len--;
	return (const char *)t.out.data;
}

/* A command as words split at single spaces; "\\s" in a word is a space,
 * "\\e" makes the word empty. */
static const char *run(const char *line)
{
	char copy[16384];
	uint8_t *argv[MAX_WORDS];
	size_t argl[MAX_WORDS];
	int argc = 0;
	char *save = NULL;

	ck_assert_uint_lt(strlen(line), sizeof(copy));
	strcpy(copy, line);
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		ck_assert_int_lt(argc, MAX_WORDS);
		for (char *c = w; (c = strstr(c, "\\s")); ) {
			*c = ' ';
			memmove(c + 1, c + 2, strlen(c + 2) + 1);
		}
		if (strcmp(w, "\\e") == 0)
			*w = '\0';
		argv[argc] = (uint8_t *)w;
		argl[argc] = strlen(w);
		argc++;
	}
	return runv(argc, argv, argl);
}

#define EXPECT(line, want) ck_assert_str_eq(run(line), want)
#define EXPECT_PREFIX(line, want) ck_assert_msg(strncmp(run(line), want, strlen(want)) == 0, \
						"%s: %s", line, (const char *)t.out.data)
#define EXPECT_FLAGS(line, want, f) do { \
	EXPECT(line, want); \
	ck_assert_msg(t.flags == (f), "%s: flags %d, want %d", line, t.flags, f); \
} while (0)

START_TEST(strings)
{
	EXPECT_FLAGS("SET a 1", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT_FLAGS("GET a", "$1\r\n1\r\n", 0);
	EXPECT_FLAGS("INCR a", ":2\r\n", COLO_KVCMD_WROTE);
	EXPECT("GET missing", "$-1\r\n");
	EXPECT("MGET a missing", "*2\r\n$1\r\n2\r\n$-1\r\n");
	EXPECT("INCRBY a 10", ":12\r\n");
	EXPECT("DECR a", ":11\r\n");
	EXPECT("DECRBY a 20", ":-9\r\n");
	EXPECT("INCR counter", ":1\r\n");
	EXPECT("DECRBY fresh 5", ":-5\r\n");
	EXPECT("APPEND s hello", ":5\r\n");
	EXPECT("APPEND s \\sworld", ":11\r\n");
	EXPECT("GET s", "$11\r\nhello world\r\n");
	EXPECT("STRLEN s", ":11\r\n");
	EXPECT("STRLEN missing", ":0\r\n");
	EXPECT_FLAGS("GETSET s new", "$11\r\nhello world\r\n", COLO_KVCMD_WROTE);
	EXPECT("GETSET g 1", "$-1\r\n");
	EXPECT("GET s", "$3\r\nnew\r\n");
	EXPECT("set empty \\e", "+OK\r\n");
	EXPECT("get empty", "$0\r\n\r\n");
	EXPECT("EXISTS a a missing s", ":3\r\n");
	EXPECT("TYPE a", "+string\r\n");
	EXPECT("TYPE missing", "+none\r\n");
	EXPECT("DBSIZE", ":6\r\n");
	EXPECT_FLAGS("DEL a a missing", ":1\r\n", COLO_KVCMD_WROTE);
	EXPECT_FLAGS("DEL a", ":0\r\n", 0);
	EXPECT_FLAGS("MSET x 1 y 2 x 3", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT("MGET x y", "*2\r\n$1\r\n3\r\n$1\r\n2\r\n");
	EXPECT("PING", "+PONG\r\n");
	EXPECT("ping hello", "$5\r\nhello\r\n");
	EXPECT("ECHO hi\\sthere", "$8\r\nhi there\r\n");
	EXPECT("gEt x", "$1\r\n3\r\n");
}
END_TEST

START_TEST(binary_values)
{
	static const uint8_t key[] = { 'k', 0, '\r', '\n' }, val[] = { 0, 1, '\r', '\n', 0xff };
	uint8_t *argv[3] = { (uint8_t *)"SET", (uint8_t *)key, (uint8_t *)val };
	size_t argl[3] = { 3, sizeof(key), sizeof(val) };
	static const char want[] = "$5\r\n\0\1\r\n\xff\r\n";

	ck_assert_str_eq(runv(3, argv, argl), "+OK\r\n");
	argv[0] = (uint8_t *)"GET";
	runv(2, argv, argl);
	ck_assert_uint_eq(t.out.len, sizeof(want) - 1);
	ck_assert_mem_eq(t.out.data, want, sizeof(want) - 1);
}
END_TEST

START_TEST(set_options)
{
	EXPECT_FLAGS("SET k v NX", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT_FLAGS("SET k w NX", "$-1\r\n", 0);
	EXPECT_FLAGS("SET k w XX", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT_FLAGS("SET nokey v XX", "$-1\r\n", 0);
	EXPECT("SET k x GET", "$1\r\nw\r\n");
	EXPECT("SET k y nx get", "$1\r\nx\r\n");           /* not set: old value */
	EXPECT("GET k", "$1\r\nx\r\n");
	EXPECT("SET k2 v xx get", "$-1\r\n");
	EXPECT("EXISTS k2", ":0\r\n");
	EXPECT("SET k3 v nx get", "$-1\r\n");
	EXPECT("GET k3", "$1\r\nv\r\n");
	EXPECT("SET k v nx nx", "$-1\r\n");
	EXPECT("SET k v get get", "$1\r\nx\r\n");
	EXPECT_FLAGS("SET k v NX XX", "-ERR syntax error\r\n", 0);
	EXPECT("SET k v XX NX", "-ERR syntax error\r\n");
	EXPECT("SET k v foo", "-ERR syntax error\r\n");
	EXPECT("SET k v EX", "-ERR syntax error\r\n");
	EXPECT("SET k v px 10 ex 1", "-ERR syntax error\r\n");
	EXPECT("SET k v keepttl ex 1", "-ERR syntax error\r\n");
	EXPECT("SET k v nxx", "-ERR syntax error\r\n");
	/* Ours: no expiry (Redis would set a TTL, or check the number first). */
	EXPECT_FLAGS("SET k v EX 10", "-ERR expiry is not supported by this server\r\n", 0);
	EXPECT("SET k v px 10", "-ERR expiry is not supported by this server\r\n");
	EXPECT("SET k v exat 10", "-ERR expiry is not supported by this server\r\n");
	EXPECT("SET k v pxat 10", "-ERR expiry is not supported by this server\r\n");
	EXPECT("SET k v ex 1 ex 2", "-ERR expiry is not supported by this server\r\n");
	EXPECT("SET k v keepttl", "-ERR expiry is not supported by this server\r\n");
	EXPECT("SET k v ex abc", "-ERR expiry is not supported by this server\r\n");
	EXPECT("GET k", "$1\r\nv\r\n");
}
END_TEST

START_TEST(integers)
{
	EXPECT("SET n abc", "+OK\r\n");
	EXPECT_FLAGS("INCR n", "-ERR value is not an integer or out of range\r\n", 0);
	EXPECT("INCRBY n 1", "-ERR value is not an integer or out of range\r\n");
	EXPECT("INCRBY c x", "-ERR value is not an integer or out of range\r\n");
	EXPECT("INCRBY c 01", "-ERR value is not an integer or out of range\r\n");
	EXPECT("INCRBY c +1", "-ERR value is not an integer or out of range\r\n");
	EXPECT("INCRBY c -0", "-ERR value is not an integer or out of range\r\n");
	EXPECT("INCRBY c 1.5", "-ERR value is not an integer or out of range\r\n");
	EXPECT("DECRBY c 99999999999999999999", "-ERR value is not an integer or out of range\r\n");
	EXPECT("EXISTS c", ":0\r\n");
	EXPECT("SET w 01", "+OK\r\n");
	EXPECT("INCR w", "-ERR value is not an integer or out of range\r\n");
	EXPECT("SET w \\s1", "+OK\r\n");
	EXPECT("INCR w", "-ERR value is not an integer or out of range\r\n");
	EXPECT("SET w 1111111111111111111111111", "+OK\r\n");
	EXPECT("DECR w", "-ERR value is not an integer or out of range\r\n");
	EXPECT("SET m 9223372036854775807", "+OK\r\n");
	EXPECT_FLAGS("INCR m", "-ERR increment or decrement would overflow\r\n", 0);
	EXPECT("DECRBY c -9223372036854775808", "-ERR decrement would overflow\r\n");
	EXPECT("DECRBY c 9223372036854775807", ":-9223372036854775807\r\n");
	EXPECT("DECR c", ":-9223372036854775808\r\n");
	EXPECT("DECR c", "-ERR increment or decrement would overflow\r\n");
	EXPECT("INCRBY d -9223372036854775808", ":-9223372036854775808\r\n");
	EXPECT("INCRBY d 9223372036854775807", ":-1\r\n");
	EXPECT("GET d", "$2\r\n-1\r\n");
}
END_TEST

START_TEST(arity)
{
	static const char *const cases[][2] = {
		{ "GET", "get" }, { "GET a b", "get" }, { "SET k", "set" }, { "GETSET k", "getset" },
		{ "DEL", "del" }, { "EXISTS", "exists" }, { "INCR", "incr" }, { "INCR a b", "incr" },
		{ "INCRBY k", "incrby" }, { "DECR", "decr" }, { "DECRBY k", "decrby" },
		{ "APPEND k", "append" }, { "STRLEN", "strlen" }, { "MGET", "mget" },
		{ "MSET a", "mset" }, { "MSET a 1 b", "mset" }, { "DBSIZE x", "dbsize" },
		{ "KEYS", "keys" }, { "SCAN", "scan" }, { "TYPE", "type" }, { "SELECT", "select" },
		{ "ECHO", "echo" }, { "ECHO a b", "echo" }, { "PING a b", "ping" },
		{ "RESET x", "reset" }, { "AUTH", "auth" },
		{ "CONFIG", "config" }, { "config get", "config|get" },
		{ "CONFIG SET a", "config|set" }, { "CLIENT", "client" },
		{ "CLIENT ID x", "client|id" }, { "client setname", "client|setname" },
		{ "COMMAND COUNT x", "command|count" }, { "command help x", "command|help" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char want[128];

		snprintf(want, sizeof(want), "-ERR wrong number of arguments for '%s' command\r\n",
			 cases[i][1]);
		ck_assert_msg(strcmp(run(cases[i][0]), want) == 0, "%s: %s", cases[i][0],
			      (const char *)t.out.data);
		ck_assert_int_eq(t.flags, 0);
	}
}
END_TEST

START_TEST(unknown_commands)
{
	char line[600], want[600];
	uint8_t *argv[3];
	size_t argl[3];

	EXPECT("foo", "-ERR unknown command 'foo', with args beginning with: \r\n");
	EXPECT("FOO a b", "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
	/* argv[0] shown up to 128 bytes, the arguments until 128 bytes are out. */
	snprintf(line, sizeof(line), "foo %0200d y", 0);
	snprintf(want, sizeof(want),
		 "-ERR unknown command 'foo', with args beginning with: '%0128d' \r\n", 0);
	EXPECT(line, want);
	snprintf(line, sizeof(line), "%0200d", 0);
	snprintf(want, sizeof(want),
		 "-ERR unknown command '%0128d', with args beginning with: \r\n", 0);
	EXPECT(line, want);
	snprintf(line, sizeof(line), "foo %0100d %0100d c", 1, 2);
	snprintf(want, sizeof(want), "-ERR unknown command 'foo', with args beginning with: "
		 "'%0100d' '%025d' \r\n", 1, 0);
	EXPECT(line, want);
	/* CR and LF become spaces; an argument ends at a NUL (Redis's C strings). */
	argv[0] = (uint8_t *)"foo";
	argl[0] = 3;
	argv[1] = (uint8_t *)"a\r\nb";
	argl[1] = 4;
	argv[2] = (uint8_t *)"a\0b";
	argl[2] = 3;
	ck_assert_str_eq(runv(3, argv, argl), "-ERR unknown command 'foo', with args beginning "
			 "with: 'a  b' 'a' \r\n");
	argv[0] = (uint8_t *)"\r\nfoo";
	argl[0] = 5;
	ck_assert_str_eq(runv(1, argv, argl), "-ERR unknown command '  foo', with args beginning "
			 "with: \r\n");
	EXPECT("config foo", "-ERR unknown subcommand 'foo'. Try CONFIG HELP.\r\n");
	EXPECT("Client Foo x", "-ERR unknown subcommand 'Foo'. Try CLIENT HELP.\r\n");
	EXPECT("command foo", "-ERR unknown subcommand 'foo'. Try COMMAND HELP.\r\n");
	ck_assert_int_eq(t.flags, 0);
}
END_TEST

/* A SCAN reply: its cursor, and each key marked in seen[] (keys "key:<i>"). */
static uint64_t scan_reply(const char *r, unsigned *seen, size_t nkeys, size_t *got)
{
	unsigned long long cursor;
	size_t n, clen;
	int used;

	ck_assert_int_eq(sscanf(r, "*2\r\n$%zu\r\n%llu\r\n*%zu\r\n%n", &clen, &cursor, &n, &used),
			 3);
	r += used;
	*got = n;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		unsigned k;

		ck_assert_int_eq(sscanf(r, "$%zu\r\nkey:%u\r\n%n", &len, &k, &used), 2);
		ck_assert_uint_lt(k, nkeys);
		seen[k]++;
		r += used;
	}
	ck_assert_str_eq(r, "");
	return cursor;
}

START_TEST(scan_walk)
{
	enum { N = 1000 };
	static unsigned seen[N];
	char line[64];
	uint64_t cursor = 0;
	size_t got, calls = 0;

	for (int i = 0; i < N; i++) {
		snprintf(line, sizeof(line), "SET key:%d %d", i, i);
		EXPECT(line, "+OK\r\n");
	}
	memset(seen, 0, sizeof(seen));
	do {
		snprintf(line, sizeof(line), "SCAN %llu COUNT 10", (unsigned long long)cursor);
		cursor = scan_reply(run(line), seen, N, &got);
		calls++;
	} while (cursor);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(seen[i], 1);
	ck_assert_uint_gt(calls, 10);

	/* MATCH: key:1, key:10..19, key:100..199. */
	memset(seen, 0, sizeof(seen));
	do {
		snprintf(line, sizeof(line), "scan %llu match key:1* count 100 type STRING",
			 (unsigned long long)cursor);
		cursor = scan_reply(run(line), seen, N, &got);
	} while (cursor);
	for (int i = 0; i < N; i++)
		ck_assert_uint_eq(seen[i], i == 1 || (i >= 10 && i < 20) || (i >= 100 && i < 200));

	/* TYPE of another kind: the walk goes on, nothing comes out. */
	do {
		snprintf(line, sizeof(line), "SCAN %llu TYPE list", (unsigned long long)cursor);
		cursor = scan_reply(run(line), seen, N, &got);
		ck_assert_uint_eq(got, 0);
	} while (cursor);
}
END_TEST

START_TEST(scan_arguments)
{
	static unsigned seen[1];
	size_t got;

	EXPECT("SET key:0 v", "+OK\r\n");
	EXPECT("SCAN x", "-ERR invalid cursor\r\n");
	EXPECT("SCAN \\s1", "-ERR invalid cursor\r\n");
	EXPECT("SCAN 1x", "-ERR invalid cursor\r\n");
	EXPECT("SCAN +", "-ERR invalid cursor\r\n");
	EXPECT("SCAN 18446744073709551616", "-ERR invalid cursor\r\n");
	/* strtoul() lets these through, so Redis does. */
	scan_reply(run("SCAN \\e COUNT 1000"), seen, 1, &got);
	ck_assert_uint_eq(got, 1);
	scan_reply(run("SCAN -1"), seen, 1, &got);
	scan_reply(run("SCAN +0"), seen, 1, &got);
	scan_reply(run("SCAN 18446744073709551615"), seen, 1, &got);
	EXPECT("SCAN 0 COUNT 0", "-ERR syntax error\r\n");
	EXPECT("SCAN 0 COUNT -1", "-ERR syntax error\r\n");
	EXPECT("SCAN 0 COUNT x", "-ERR value is not an integer or out of range\r\n");
	EXPECT("SCAN 0 MATCH", "-ERR syntax error\r\n");
	EXPECT("SCAN 0 foo bar", "-ERR syntax error\r\n");
	EXPECT("SCAN 0 match * count", "-ERR syntax error\r\n");
	EXPECT("SCAN 0 MATCH nothing* COUNT 100000", "*2\r\n$1\r\n0\r\n*0\r\n");
}
END_TEST

START_TEST(keys)
{
	EXPECT("KEYS *", "*0\r\n");
	EXPECT("MSET big 1 bag 2 bg 3", "+OK\r\n");
	ck_assert(strcmp(run("KEYS b?g"), "*2\r\n$3\r\nbig\r\n$3\r\nbag\r\n") == 0 ||
		  strcmp(run("KEYS b?g"), "*2\r\n$3\r\nbag\r\n$3\r\nbig\r\n") == 0);
	EXPECT("KEYS bg", "*1\r\n$2\r\nbg\r\n");
	EXPECT_PREFIX("KEYS *", "*3\r\n");
	EXPECT("KEYS x*", "*0\r\n");
}
END_TEST

START_TEST(flush_and_select)
{
	EXPECT("MSET a 1 b 2", "+OK\r\n");
	EXPECT_FLAGS("FLUSHALL", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT("DBSIZE", ":0\r\n");
	EXPECT("SET a 1", "+OK\r\n");
	EXPECT_FLAGS("flushdb async", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT("EXISTS a", ":0\r\n");
	EXPECT("FLUSHALL SYNC", "+OK\r\n");
	EXPECT_FLAGS("FLUSHALL foo", "-ERR syntax error\r\n", 0);
	EXPECT("FLUSHALL async x", "-ERR syntax error\r\n");
	EXPECT("SELECT 0", "+OK\r\n");
	EXPECT("SELECT 1", "-ERR DB index is out of range\r\n");
	EXPECT("SELECT -1", "-ERR DB index is out of range\r\n");
	EXPECT("SELECT x", "-ERR value is not an integer or out of range\r\n");
	EXPECT("SELECT 00", "-ERR value is not an integer or out of range\r\n");
	EXPECT("SELECT 99999999999", "-ERR value is out of range, value must between "
	       "-2147483648 and 2147483647\r\n");
}
END_TEST

START_TEST(quit_and_reset)
{
	EXPECT_FLAGS("QUIT", "+OK\r\n", COLO_KVCMD_QUIT);
	EXPECT_FLAGS("quit now", "+OK\r\n", COLO_KVCMD_QUIT);
	EXPECT("CLIENT SETNAME me", "+OK\r\n");
	EXPECT_FLAGS("RESET", "+RESET\r\n", 0);
	EXPECT("CLIENT GETNAME", "$-1\r\n");
}
END_TEST

/* Lengths past 512 MB: argl says so, the bytes are never read (the limit is
 * checked first). */
START_TEST(too_big)
{
	uint8_t *argv[3] = { (uint8_t *)"APPEND", (uint8_t *)"k", (uint8_t *)"x" };
	size_t argl[3] = { 6, 1, COLO_RESP_MAX_BULK };

	EXPECT("SET k x", "+OK\r\n");
	ck_assert_str_eq(runv(3, argv, argl),
			 "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n");
	ck_assert_int_eq(t.flags, 0);
	argv[0] = (uint8_t *)"SET";
	argl[0] = 3;
	argl[2] = COLO_RESP_MAX_BULK + 1;
	ck_assert_str_eq(runv(3, argv, argl),
			 "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n");
	EXPECT("GET k", "$1\r\nx\r\n");
}
END_TEST

START_TEST(out_of_memory)
{
	static char val[4096];
	char line[4200];
	int i;

	teardown();
	store_setup(COLO_KV_MIN_REGION);
	memset(val, 'v', sizeof(val) - 1);
	EXPECT("SET keep old", "+OK\r\n");
	for (i = 0; i < 100; i++) {
		snprintf(line, sizeof(line), "SET k%d %s", i, val);
		if (strcmp(run(line), "+OK\r\n") != 0)
			break;
	}
	ck_assert_int_lt(i, 100);
	ck_assert_str_eq((const char *)t.out.data,
			 "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
	ck_assert_int_eq(t.flags, 0);
	snprintf(line, sizeof(line), "EXISTS k%d", i);
	EXPECT(line, ":0\r\n");
	/* With GET the old value is not sent when the write fails. */
	snprintf(line, sizeof(line), "SET keep %s GET", val);
	EXPECT(line, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
	snprintf(line, sizeof(line), "GETSET keep %s", val);
	EXPECT(line, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
	snprintf(line, sizeof(line), "APPEND keep %s", val);
	EXPECT_FLAGS(line, "-OOM command not allowed when used memory > 'maxmemory'.\r\n", 0);
	EXPECT("GET keep", "$3\r\nold\r\n");
	/* MSET: what fitted before the failure stays (kvcmd.h).  A small block
	 * is freed first so that "small" surely fits. */
	EXPECT("SET probe 1", "+OK\r\n");
	EXPECT("DEL probe", ":1\r\n");
	snprintf(line, sizeof(line), "MSET small 1 big %s after 2", val);
	EXPECT_FLAGS(line, "-OOM command not allowed when used memory > 'maxmemory'.\r\n",
		     COLO_KVCMD_WROTE);
	EXPECT("MGET small big after", "*3\r\n$1\r\n1\r\n$-1\r\n$-1\r\n");
}
END_TEST

START_TEST(info)
{
	const char *r;
	char want[256];

	EXPECT("MSET a 1 b 2", "+OK\r\n");
	EXPECT("INFO keyspace", "$44\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n\r\n");
	EXPECT("INFO foo", "$0\r\n\r\n");
	EXPECT("INFO CLUSTER", "$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n");
	EXPECT("INFO replication", "$48\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
	/* One order whatever was asked, sections joined by an empty line. */
	r = run("INFO keyspace clients");
	ck_assert_ptr_nonnull(strstr(r, "\r\n# Clients\r\nconnected_clients:3\r\nblocked_clients:0"
				     "\r\n\r\n# Keyspace\r\ndb0:keys=2"));
	r = run("INFO");
	ck_assert_int_eq(r[0], '$');
	for (size_t i = 0; i < 13; i++) {
		static const char *const fields[] = {
			"\r\n# Server\r\nredis_version:7.0.0\r\n", "\r\nredis_mode:standalone\r\n",
			"\r\ntcp_port:6379\r\n", "\r\nuptime_in_seconds:90061\r\n",
			"\r\nuptime_in_days:1\r\n", "\r\nconnected_clients:3\r\n",
			"\r\nmaxmemory:8388608\r\n", "\r\nmaxmemory_human:8.00M\r\n",
			"\r\nrole:master\r\n", "\r\ntotal_commands_processed:12\r\n",
			"\r\ntotal_connections_received:5\r\n", "\r\nloading:0\r\n",
			"\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n\r\n",
		};

		ck_assert_msg(strstr(r, fields[i]), "no %s", fields[i]);
	}
	snprintf(want, sizeof(want), "\r\nused_memory:%llu\r\n",
		 (unsigned long long)t.meta.used);
	ck_assert_ptr_nonnull(strstr(r, want));
	/* The bulk's length is right. */
	ck_assert_uint_eq(strtoul(r + 1, NULL, 10) + (size_t)(strstr(r, "\r\n") - r) + 4,
			  t.out.len);
	EXPECT("FLUSHALL", "+OK\r\n");
	EXPECT("INFO keyspace", "$12\r\n# Keyspace\r\n\r\n");
}
END_TEST

START_TEST(config)
{
	EXPECT("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
	EXPECT("config get appendonly", "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	EXPECT("CONFIG GET maxmemory", "*2\r\n$9\r\nmaxmemory\r\n$7\r\n8388608\r\n");
	EXPECT("CONFIG GET MAXMEMORY", "*2\r\n$9\r\nMAXMEMORY\r\n$7\r\n8388608\r\n");
	EXPECT("CONFIG GET databases", "*2\r\n$9\r\ndatabases\r\n$1\r\n1\r\n");
	EXPECT("CONFIG GET nosuch", "*0\r\n");
	EXPECT("CONFIG GET save appendonly",
	       "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	EXPECT("CONFIG GET *MAX* maxmemory port",
	       "*8\r\n$9\r\nmaxmemory\r\n$7\r\n8388608\r\n"
	       "$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n"
	       "$18\r\nproto-max-bulk-len\r\n$9\r\n536870912\r\n"
	       "$4\r\nport\r\n$4\r\n6379\r\n");
	EXPECT("CONFIG SET save x", "-ERR CONFIG SET is not supported by this server\r\n");
	EXPECT("CONFIG REWRITE", "-ERR The server is running without a config file\r\n");
	EXPECT("CONFIG RESETSTAT",
	       "-ERR CONFIG RESETSTAT is not supported by this server\r\n");
	EXPECT_PREFIX("CONFIG HELP", "*5\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. "
		      "Subcommands are:\r\n+GET <pattern>\r\n");
	ck_assert_ptr_nonnull(strstr(run("CONFIG HELP"), "+HELP\r\n+    Prints this help.\r\n"));
}
END_TEST

START_TEST(client_hello_command)
{
	char name[COLO_KVCMD_NAME_MAX + 32], *hello;

	EXPECT("CLIENT ID", ":7\r\n");
	EXPECT("CLIENT GETNAME", "$-1\r\n");
	EXPECT("CLIENT SETNAME a\\sb", "-ERR Client names cannot contain spaces, newlines or "
	       "special characters.\r\n");
	EXPECT("CLIENT SETNAME ab", "+OK\r\n");
	EXPECT("CLIENT GETNAME", "$2\r\nab\r\n");
	EXPECT("CLIENT SETNAME \\e", "+OK\r\n");
	EXPECT("CLIENT GETNAME", "$-1\r\n");
	memset(name, 'n', sizeof(name));
	memcpy(name, "CLIENT SETNAME ", 15);
	name[15 + COLO_KVCMD_NAME_MAX] = '\0';
	EXPECT(name, "+OK\r\n");
	name[15 + COLO_KVCMD_NAME_MAX] = 'n';
	name[15 + COLO_KVCMD_NAME_MAX + 1] = '\0';
	EXPECT(name, "-ERR Client names are limited to 255 bytes here\r\n");
	EXPECT("CLIENT SETINFO lib-name redis-py", "+OK\r\n");
	EXPECT("CLIENT SETINFO LIB-VER 5.0.1", "+OK\r\n");
	EXPECT("CLIENT SETINFO foo x", "-ERR Unrecognized option 'foo'\r\n");
	EXPECT("HELLO", "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n"
	       "$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n"
	       "$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
	hello = strdup(run("HELLO"));
	ck_assert_str_eq(run("HELLO 2"), hello);
	free(hello);
	EXPECT("HELLO 3", "-NOPROTO unsupported protocol version\r\n");
	EXPECT("HELLO 1", "-NOPROTO unsupported protocol version\r\n");
	EXPECT("HELLO x", "-ERR Protocol version is not an integer or out of range\r\n");
	EXPECT("HELLO 2 foo", "-ERR Syntax error in HELLO option 'foo'\r\n");
	EXPECT("HELLO 2 setname", "-ERR Syntax error in HELLO option 'setname'\r\n");
	EXPECT("HELLO 2 AUTH default", "-ERR Syntax error in HELLO option 'AUTH'\r\n");
	EXPECT("HELLO 2 AUTH bob pw", "-WRONGPASS invalid username-password pair or user is "
	       "disabled.\r\n");
	EXPECT_PREFIX("HELLO 2 AUTH default pw SETNAME hi", "*14\r\n");
	EXPECT("CLIENT GETNAME", "$2\r\nhi\r\n");
	EXPECT("AUTH pw", "-ERR AUTH <password> called without any password configured for "
	       "the default user. Are you sure your configuration is correct?\r\n");
	EXPECT("AUTH default pw", "+OK\r\n");
	EXPECT("AUTH bob pw", "-WRONGPASS invalid username-password pair or user is "
	       "disabled.\r\n");
	EXPECT("AUTH a b c", "-ERR syntax error\r\n");
	EXPECT("COMMAND", "*0\r\n");
	EXPECT("COMMAND DOCS", "*0\r\n");
	EXPECT("command docs get set", "*0\r\n");
	EXPECT("COMMAND COUNT", ":30\r\n");
	EXPECT("COMMAND INFO get nosuch", "*2\r\n$-1\r\n$-1\r\n");
	EXPECT("COMMAND LIST x", "-ERR syntax error\r\n");
	EXPECT_PREFIX("COMMAND LIST", "*30\r\n$3\r\nget\r\n$3\r\nset\r\n");

	/* Without a connection: id 0, names not kept. */
	t.ctx.client = NULL;
	EXPECT("CLIENT ID", ":0\r\n");
	EXPECT("CLIENT SETNAME x", "+OK\r\n");
	EXPECT("CLIENT GETNAME", "$-1\r\n");
	EXPECT("RESET", "+RESET\r\n");
}
END_TEST

/* What redis-benchmark and redis-cli send on connect and in their tests. */
START_TEST(client_tools)
{
	EXPECT_FLAGS("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n", 0);
	EXPECT("PING", "+PONG\r\n");
	EXPECT_FLAGS("SET key:__rand_int__ xxx", "+OK\r\n", COLO_KVCMD_WROTE);
	EXPECT("GET key:__rand_int__", "$3\r\nxxx\r\n");
	EXPECT("INCR counter:__rand_int__", ":1\r\n");
	EXPECT("MSET key:__rand_int__ xxx key:__rand_int__ xxx", "+OK\r\n");
	EXPECT("SELECT 0", "+OK\r\n");
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("kvcmd");
	TCase *tc = tcase_create("kvcmd");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, strings);
	tcase_add_test(tc, binary_values);
	tcase_add_test(tc, set_options);
	tcase_add_test(tc, integers);
	tcase_add_test(tc, arity);
	tcase_add_test(tc, unknown_commands);
	tcase_add_test(tc, scan_walk);
	tcase_add_test(tc, scan_arguments);
	tcase_add_test(tc, keys);
	tcase_add_test(tc, flush_and_select);
	tcase_add_test(tc, quit_and_reset);
	tcase_add_test(tc, too_big);
	tcase_add_test(tc, out_of_memory);
	tcase_add_test(tc, info);
	tcase_add_test(tc, config);
	tcase_add_test(tc, client_hello_command);
	tcase_add_test(tc, client_tools);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
