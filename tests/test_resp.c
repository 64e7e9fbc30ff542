/*
 * test_resp.c: the RESP2 parser (every path, every error text, limits, the
 * same commands whatever the read boundaries) and the reply writers' bytes.
 * Expected texts and splits were checked against redis-server 7.0.15.
 */
#include "config.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resp.h"
#include "testutil.h"

/* A connection: input buffer, parser, and a transcript of what came out. */
struct sim {
	struct colo_resp_parser p;
	struct colo_buf in;
	struct colo_buf log;             /* "argc[len:bytes]...;" per command, "E:text" */
	bool keep_on_more;               /* ignore *used when 0 is returned (kv.c does) */
	bool failed;
	size_t commands;
};

static void sim_init(struct sim *s, bool keep_on_more)
{
	memset(s, 0, sizeof(*s));
	colo_resp_parser_init(&s->p);
	colo_buf_init(&s->in);
	colo_buf_init(&s->log);
	s->keep_on_more = keep_on_more;
}

static void sim_free(struct sim *s)
{
	colo_resp_parser_free(&s->p);
	colo_buf_free(&s->in);
	colo_buf_free(&s->log);
}

static void sim_drop(struct sim *s, size_t n)
{
	ck_assert_uint_le(n, s->in.len);
	memmove(s->in.data, s->in.data + n, s->in.len - n);
	s->in.len -= n;
}

static void log_command(struct colo_buf *log, const struct colo_resp_parser *p)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%d", p->argc);

	colo_buf_put(log, tmp, (size_t)n);
	for (int i = 0; i < p->argc; i++) {
		n = snprintf(tmp, sizeof(tmp), "[%zu:", p->argl[i]);
		colo_buf_put(log, tmp, (size_t)n);
		colo_buf_put(log, p->argv[i], p->argl[i]);
		colo_buf_put_u8(log, ']');
	}
	colo_buf_put_u8(log, ';');
}

static void sim_feed(struct sim *s, const void *data, size_t n)
{
	colo_buf_put(&s->in, data, n);
	while (!s->failed && s->in.len) {
		size_t used = SIZE_MAX;
		int r = colo_resp_parse(&s->p, s->in.data, s->in.len, &used);

		ck_assert_uint_le(used, s->in.len);
		if (r == 1) {
			ck_assert_int_ge(s->p.argc, 1);
			log_command(&s->log, &s->p);
			s->commands++;
			sim_drop(s, used);
		} else if (r == 0) {
			if (!s->keep_on_more)
				sim_drop(s, used);
			return;
		} else {
			ck_assert_int_eq(r, -1);
			colo_buf_put(&s->log, "E:", 2);
			colo_buf_put(&s->log, s->p.error, strlen(s->p.error));
			s->failed = true;
		}
	}
}

/*
 * The transcript of `in` fed in pieces (fixed size, or random up to max, or
 * whole when both are 0), NUL-terminated; *n is its length without the NUL.
 */
static char *transcript(const void *in, size_t len, size_t fixed, size_t max, uint64_t seed,
			bool keep_on_more, size_t *n_out)
{
	struct colo_pieces pcs = { fixed, max, { seed } };
	const uint8_t *b = in;
	struct sim s;
	char *out;

	sim_init(&s, keep_on_more);
	for (size_t at = 0; at < len;) {
		size_t n = fixed || max ? colo_pieces_next(&pcs) : len;

		if (n > len - at)
			n = len - at;
		sim_feed(&s, b + at, n);
		at += n;
	}
	*n_out = s.log.len;
	colo_buf_put_u8(&s.log, '\0');
	ck_assert(colo_buf_ok(&s.log));
	out = (char *)colo_buf_steal(&s.log, NULL);
	sim_free(&s);
	return out;
}

static void same_text(const char *got, size_t got_len, const char *want, size_t want_len)
{
	ck_assert_msg(got_len == want_len && memcmp(got, want, want_len) == 0,
		      "got \"%s\" (%zu bytes), want \"%s\" (%zu bytes)", got, got_len, want,
		      want_len);
}

/* Whole, byte by byte, random pieces, with and without dropping on 0: same. */
static void check_transcript(const char *in, size_t len, const char *want, size_t want_len)
{
	for (int keep = 0; keep < 2; keep++)
		for (uint64_t seed = 0; seed <= 20; seed++) {
			size_t n;
			char *t = transcript(in, len, seed == 1, seed > 1 ? 1 + seed % 9 : 0, seed,
					     keep, &n);

			same_text(t, n, want, want_len);
			free(t);
		}
}

/* Both are literals: their sizes hold any NUL bytes inside. */
#define CHECK(in, want) check_transcript(in, sizeof(in) - 1, want, sizeof(want) - 1)

/* One call on the whole input. */
static int parse_once(struct colo_resp_parser *p, const void *in, size_t len, size_t *used)
{
	colo_resp_parser_init(p);
	return colo_resp_parse(p, in, len, used);
}

START_TEST(multibulk_whole)
{
	static const char in[] = "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n";
	struct colo_resp_parser p;
	size_t used;

	ck_assert_int_eq(parse_once(&p, in, sizeof(in) - 1, &used), 1);
	ck_assert_uint_eq(used, sizeof(in) - 1);
	ck_assert_int_eq(p.argc, 3);
	ck_assert_uint_eq(p.argl[0], 3);
	ck_assert_mem_eq(p.argv[0], "SET", 3);
	ck_assert_mem_eq(p.argv[1], "a", 1);
	ck_assert_mem_eq(p.argv[2], "1", 1);
	/* Multibulk arguments are the caller's bytes, not copies. */
	ck_assert_ptr_eq(p.argv[0], (const uint8_t *)in + 8);
	colo_resp_parser_free(&p);
}
END_TEST

START_TEST(partial_and_want)
{
	static const char in[] = "*2\r\n$4\r\nECHO\r\n$10\r\n0123456789\r\n";
	struct colo_resp_parser p;
	size_t used;

	colo_resp_parser_init(&p);
	for (size_t n = 0; n < sizeof(in) - 1; n++) {
		ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)in, n, &used), 0);
		ck_assert_uint_eq(used, 0);
		/* Once "$10\r\n" is in, the parser knows where the command ends. */
		if (n >= 19)
			ck_assert_uint_eq(p.want, sizeof(in) - 1);
		else if (n >= 8 && n < 14)
			ck_assert_uint_eq(p.want, 14);
		else
			ck_assert_uint_eq(p.want, 0);
	}
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)in, sizeof(in) - 1, &used), 1);
	ck_assert_uint_eq(used, sizeof(in) - 1);
	ck_assert_int_eq(p.argc, 2);
	ck_assert_mem_eq(p.argv[1], "0123456789", 10);
	colo_resp_parser_free(&p);
}
END_TEST

START_TEST(pipelined)
{
	static const char in[] = "*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
	struct colo_resp_parser p;
	const uint8_t *b = (const uint8_t *)in;
	size_t len = sizeof(in) - 1, used;

	colo_resp_parser_init(&p);
	ck_assert_int_eq(colo_resp_parse(&p, b, len, &used), 1);
	ck_assert_uint_eq(used, 14);
	b += used, len -= used;
	ck_assert_int_eq(colo_resp_parse(&p, b, len, &used), 1);
	ck_assert_uint_eq(used, 6);
	ck_assert_int_eq(p.argc, 1);
	ck_assert_mem_eq(p.argv[0], "PING", 4);
	b += used, len -= used;
	ck_assert_int_eq(colo_resp_parse(&p, b, len, &used), 1);
	ck_assert_uint_eq(used, len);
	ck_assert_int_eq(p.argc, 2);
	ck_assert_mem_eq(p.argv[1], "k", 1);
	ck_assert_int_eq(colo_resp_parse(&p, b + used, 0, &used), 0);
	ck_assert_uint_eq(used, 0);
	colo_resp_parser_free(&p);
	CHECK("*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
	      "1[4:PING];1[4:PING];2[3:GET][1:k];");
}
END_TEST

START_TEST(inline_words)
{
	CHECK("PING\r\n", "1[4:PING];");
	CHECK("PING\n", "1[4:PING];");
	CHECK(" \t PING  \r\n", "1[4:PING];");
	CHECK("set  a   b \r\nget a\n", "3[3:set][1:a][1:b];2[3:get][1:a];");
	/* \v and \f separate words only between them (sdssplitargs). */
	CHECK("\vECHO\f  x\r\n", "2[5:ECHO\f][1:x];");
	CHECK("ECHO a\vb\r\n", "2[4:ECHO][3:a\vb];");
	/* A CR inside the line ends a word. */
	CHECK("ECHO a\rb\r\n", "3[4:ECHO][1:a][1:b];");
	/* Words after a NUL are not seen. */
	CHECK("ECHO a\0b c\r\nPING\r\n", "2[4:ECHO][1:a];1[4:PING];");
}
END_TEST

START_TEST(inline_quotes)
{
	CHECK("ECHO 'a\\'b'\r\n", "2[4:ECHO][3:a'b];");
	CHECK("ECHO \"\\x41\\n\\q\\x4\"\r\n", "2[4:ECHO][5:A\nqx4];");
	CHECK("ECHO \"\\x4G\"\r\n", "2[4:ECHO][3:x4G];");
	CHECK("ECHO \"\\xfF\"\r\n", "2[4:ECHO][1:\xff];");
	CHECK("ECHO \"\\a\\b\\t\\r\"\r\n", "2[4:ECHO][4:\a\b\t\r];");
	CHECK("ECHO \"a\\\\b\"\r\n", "2[4:ECHO][3:a\\b];");
	CHECK("ECHO \"x\\\"y\"\r\n", "2[4:ECHO][3:x\"y];");
	CHECK("ECHO 'a\\nb'\r\n", "2[4:ECHO][4:a\\nb];");
	CHECK("ECHO \"\" ''\r\n", "3[4:ECHO][0:][0:];");
	CHECK("ECHO \"a\" \r\n", "2[4:ECHO][1:a];");
	CHECK("ECHO \"a\"\t\r\n", "2[4:ECHO][1:a];");
	CHECK("ECHO ab\"c d\"\r\n", "2[4:ECHO][5:abc d];");
	CHECK("SET \"k 1\" 'v 2'\r\n", "3[3:SET][3:k 1][3:v 2];");
}
END_TEST

START_TEST(inline_unbalanced)
{
	CHECK("ECHO \"a\"b\r\n", "E:Protocol error: unbalanced quotes in request");
	CHECK("ECHO 'a'b\r\n", "E:Protocol error: unbalanced quotes in request");
	CHECK("ECHO ab\"cd ef\"gh\r\n", "E:Protocol error: unbalanced quotes in request");
	CHECK("ECHO \"abc\r\n", "E:Protocol error: unbalanced quotes in request");
	CHECK("ECHO 'abc\n", "E:Protocol error: unbalanced quotes in request");
	CHECK("ECHO \"abc\\\"\r\n", "E:Protocol error: unbalanced quotes in request");
	/* The commands before the bad one came out. */
	CHECK("PING\r\n\"\r\n", "1[4:PING];E:Protocol error: unbalanced quotes in request");
}
END_TEST

START_TEST(empty_commands_skipped)
{
	struct colo_resp_parser p;
	size_t used;

	CHECK("\r\n\n   \r\n*0\r\n*-1\r\n*-5\r\nPING\r\n", "1[4:PING];");
	ck_assert_int_eq(parse_once(&p, "\r\n\r\n*0\r\nPI", 10, &used), 0);
	ck_assert_uint_eq(used, 8);                    /* the caller may drop them */
	/* ...or keep them: the parser starts over and skips them again. */
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)"\r\n\r\n*0\r\nPING\r\n", 14,
					 &used), 1);
	ck_assert_uint_eq(used, 14);
	ck_assert_int_eq(p.argc, 1);
	colo_resp_parser_free(&p);
}
END_TEST

START_TEST(redis_skips_two_bytes)
{
	/* Redis looks for '\r' and skips the next byte unseen, and the two bytes
	 * after a payload: so do we. */
	CHECK("*1\rX$4\r\nPING\r\n", "1[4:PING];");
	CHECK("*1\r\n$4\r\nPINGabPING\r\n", "1[4:PING];1[4:PING];");
}
END_TEST

START_TEST(binary_bulks)
{
	static const char in[] = "*3\r\n$3\r\nSET\r\n$3\r\n\0\r\n\r\n$6\r\na\r\n\0\nb\r\n";
	static const char want[] = "3[3:SET][3:\0\r\n][6:a\r\n\0\nb];";

	CHECK(in, want);
	for (size_t piece = 2; piece < 8; piece++) {
		size_t n;
		char *t = transcript(in, sizeof(in) - 1, piece, 0, 0, false, &n);

		same_text(t, n, want, sizeof(want) - 1);
		free(t);
	}
	/* An empty bulk. */
	CHECK("*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", "2[4:ECHO][0:];");
}
END_TEST

START_TEST(multibulk_errors)
{
	CHECK("*x\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*01\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*+1\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("* 1\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*-0\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*3000000000\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*99999999999999999999\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*1048577\r\n", "E:Protocol error: invalid multibulk length");
	CHECK("*1\r\nx\r\n", "E:Protocol error: expected '$', got 'x'");
	CHECK("*1\r\n\r\n\r\n", "E:Protocol error: expected '$', got ' '");
	CHECK("*1\r\n\nx\r\n", "E:Protocol error: expected '$', got ' '");
	CHECK("*2\r\n$4\r\nECHO\r\n:1\r\n", "E:Protocol error: expected '$', got ':'");
	CHECK("*1\r\n$-1\r\n", "E:Protocol error: invalid bulk length");
	CHECK("*1\r\n$\r\n", "E:Protocol error: invalid bulk length");
	CHECK("*1\r\n$ 4\r\nPING\r\n", "E:Protocol error: invalid bulk length");
	CHECK("*1\r\n$4 \r\nPING\r\n", "E:Protocol error: invalid bulk length");
	CHECK("*1\r\n$04\r\nPING\r\n", "E:Protocol error: invalid bulk length");
	CHECK("*1\r\n$536870913\r\n", "E:Protocol error: invalid bulk length");
	/* The same error whatever came before it in the stream. */
	CHECK("PING\r\n*1\r\n$x\r\n", "1[4:PING];E:Protocol error: invalid bulk length");
}
END_TEST

START_TEST(limits)
{
	struct colo_resp_parser p;
	uint8_t *big = malloc(COLO_RESP_MAX_INLINE + 64);
	size_t used, n;

	ck_assert_ptr_nonnull(big);
	/* A bulk of exactly 512 MB is fine: we wait for it, knowing its end. */
	ck_assert_int_eq(parse_once(&p, "*1\r\n$536870912\r\n", 16, &used), 0);
	ck_assert_uint_eq(p.want, 16 + 536870912ull + 2);
	colo_resp_parser_free(&p);
	ck_assert_int_eq(parse_once(&p, "*1048576\r\n", 10, &used), 0);
	colo_resp_parser_free(&p);

	/* Inline: a '\n' at most COLO_RESP_MAX_INLINE bytes in. */
	memset(big, 'A', COLO_RESP_MAX_INLINE + 64);
	ck_assert_int_eq(parse_once(&p, big, COLO_RESP_MAX_INLINE, &used), 0);
	ck_assert_int_eq(colo_resp_parse(&p, big, COLO_RESP_MAX_INLINE + 1, &used), -1);
	ck_assert_str_eq(p.error, "Protocol error: too big inline request");
	colo_resp_parser_free(&p);
	big[COLO_RESP_MAX_INLINE] = '\n';
	ck_assert_int_eq(parse_once(&p, big, COLO_RESP_MAX_INLINE + 1, &used), 1);
	ck_assert_uint_eq(p.argl[0], COLO_RESP_MAX_INLINE);
	colo_resp_parser_free(&p);
	big[COLO_RESP_MAX_INLINE] = '\r';
	big[COLO_RESP_MAX_INLINE + 1] = '\n';
	ck_assert_int_eq(parse_once(&p, big, COLO_RESP_MAX_INLINE + 2, &used), -1);
	ck_assert_str_eq(p.error, "Protocol error: too big inline request");
	colo_resp_parser_free(&p);

	/* Count lines: a '\r' at most COLO_RESP_MAX_INLINE bytes in. */
	memset(big, '1', COLO_RESP_MAX_INLINE + 64);
	big[0] = '*';
	ck_assert_int_eq(parse_once(&p, big, COLO_RESP_MAX_INLINE, &used), 0);
	ck_assert_int_eq(colo_resp_parse(&p, big, COLO_RESP_MAX_INLINE + 1, &used), -1);
	ck_assert_str_eq(p.error, "Protocol error: too big mbulk count string");
	colo_resp_parser_free(&p);
	memcpy(big, "*1\r\n$", 5);
	n = 4 + COLO_RESP_MAX_INLINE;
	ck_assert_int_eq(parse_once(&p, big, n, &used), 0);
	ck_assert_int_eq(colo_resp_parse(&p, big, n + 1, &used), -1);
	ck_assert_str_eq(p.error, "Protocol error: too big bulk count string");
	colo_resp_parser_free(&p);
	free(big);
}
END_TEST

/* 1M arguments (the most), built up as they arrive. */
START_TEST(most_arguments)
{
	struct colo_buf in = COLO_BUF_INIT;
	struct colo_resp_parser p;
	size_t used;
	char head[32];
	int n = snprintf(head, sizeof(head), "*%d\r\n", COLO_RESP_MAX_ARGS);

	colo_buf_put(&in, head, (size_t)n);
	for (int i = 0; i < COLO_RESP_MAX_ARGS; i++)
		colo_buf_put(&in, "$1\r\nx\r\n", 7);
	ck_assert(colo_buf_ok(&in));
	colo_resp_parser_init(&p);
	ck_assert_int_eq(colo_resp_parse(&p, in.data, in.len - 1, &used), 0);
	ck_assert_int_eq(colo_resp_parse(&p, in.data, in.len, &used), 1);
	ck_assert_uint_eq(used, in.len);
	ck_assert_int_eq(p.argc, COLO_RESP_MAX_ARGS);
	ck_assert_mem_eq(p.argv[COLO_RESP_MAX_ARGS - 1], "x", 1);
	/* The next command starts small again. */
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)"PING\r\n", 6, &used), 1);
	ck_assert_int_eq(p.argc, 1);
	colo_resp_parser_free(&p);
	colo_buf_free(&in);
}
END_TEST

/* A 64 MiB bulk in 64 KiB reads: the header is read once, then only lengths
 * are compared (want does not move). */
START_TEST(big_bulk_in_pieces)
{
	const size_t len = 64u << 20, piece = 64u << 10;
	static const char head[] = "*2\r\n$4\r\nECHO\r\n$67108864\r\n";
	size_t total = sizeof(head) - 1 + len + 2, used;
	uint8_t *in = malloc(total);
	struct colo_resp_parser p;

	ck_assert_ptr_nonnull(in);
	memcpy(in, head, sizeof(head) - 1);
	memset(in + sizeof(head) - 1, '\r', len);
	memcpy(in + total - 2, "\r\n", 2);
	colo_resp_parser_init(&p);
	for (size_t have = piece; have < total; have += piece) {
		ck_assert_int_eq(colo_resp_parse(&p, in, have, &used), 0);
		ck_assert_uint_eq(used, 0);
		ck_assert_uint_eq(p.want, total);
	}
	ck_assert_int_eq(colo_resp_parse(&p, in, total, &used), 1);
	ck_assert_uint_eq(used, total);
	ck_assert_uint_eq(p.argl[1], len);
	ck_assert_ptr_eq(p.argv[1], in + sizeof(head) - 1);
	colo_resp_parser_free(&p);
	free(in);
}
END_TEST

/* Everything at once, in every kind of piece. */
START_TEST(mixed_stream)
{
	static const char in[] =
		"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n"
		"\r\n"
		"GET key\r\n"
		"*0\r\n"
		"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n"
		"ECHO \"a b\\x00c\" 'd'\n"
		"*1\r\n$4\r\nPING\r\n"
		"  \r\n"
		"*2\r\n$4\r\nECHO\r\n$3\r\n\0\0\0\r\n";
	static const char want[] =
		"3[3:SET][3:key][5:va\r\nl];2[3:GET][3:key];2[4:ECHO][0:];"
		"3[4:ECHO][5:a b\0c][1:d];1[4:PING];2[4:ECHO][3:\0\0\0];";

	CHECK(in, want);
	for (int keep = 0; keep < 2; keep++)
		for (uint64_t seed = 0; seed < 200; seed++) {
			size_t n;
			char *t = transcript(in, sizeof(in) - 1, seed < 8 ? seed + 1 : 0,
					     1 + seed % 40, seed, keep, &n);

			same_text(t, n, want, sizeof(want) - 1);
			free(t);
		}
}
END_TEST

START_TEST(str2ll)
{
	static const struct {
		const char *s;
		bool ok;
		long long v;
	} cases[] = {
		{ "0", true, 0 }, { "1", true, 1 }, { "-1", true, -1 },
		{ "9223372036854775807", true, LLONG_MAX },
		{ "-9223372036854775808", true, LLONG_MIN },
		{ "9223372036854775808", false, 0 }, { "-9223372036854775809", false, 0 },
		{ "18446744073709551616", false, 0 }, { "99999999999999999999", false, 0 },
		{ "", false, 0 }, { "-", false, 0 }, { "-0", false, 0 }, { "01", false, 0 },
		{ "+1", false, 0 }, { " 1", false, 0 }, { "1 ", false, 0 }, { "1.0", false, 0 },
		{ "000000000000000000001", false, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		long long v = 42;
		bool ok = colo_resp_str2ll(cases[i].s, strlen(cases[i].s), &v);

		ck_assert_msg(ok == cases[i].ok, "%s", cases[i].s);
		if (ok)
			ck_assert_int_eq(v, cases[i].v);
	}
}
END_TEST

START_TEST(writers)
{
	static const char want[] =
		"+OK\r\n"
		"+a  b\r\n"
		"-ERR bad  thing\r\n"
		"-WRONGTYPE x 42 'y'\r\n"
		":0\r\n:-9223372036854775808\r\n:9223372036854775807\r\n"
		"$0\r\n\r\n"
		"$5\r\na\0\r\nb\r\n"
		"$3\r\nabc\r\n"
		"$-1\r\n*0\r\n*3\r\n*-1\r\n";
	struct colo_buf out = COLO_BUF_INIT;
	char long_text[1000];

	colo_resp_simple(&out, "OK");
	colo_resp_simple(&out, "a\r\nb");
	colo_resp_error_text(&out, "ERR bad\r\nthing", 14);
	colo_resp_error(&out, "WRONGTYPE x %d '%s'", 42, "y");
	colo_resp_int(&out, 0);
	colo_resp_int(&out, LLONG_MIN);
	colo_resp_int(&out, LLONG_MAX);
	colo_resp_bulk(&out, "", 0);
	colo_resp_bulk(&out, "a\0\r\nb", 5);
	colo_resp_bulk_str(&out, "abc");
	colo_resp_null(&out);
	colo_resp_array(&out, 0);
	colo_resp_array(&out, 3);
	colo_resp_null_array(&out);
	ck_assert(colo_buf_ok(&out));
	ck_assert_uint_eq(out.len, sizeof(want) - 1);
	ck_assert_mem_eq(out.data, want, sizeof(want) - 1);

	/* Longer than the writer's stack buffer. */
	colo_buf_reset(&out);
	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	colo_resp_error(&out, "ERR %s\n", long_text);
	ck_assert_uint_eq(out.len, 1 + 4 + 999 + 1 + 2);
	ck_assert_mem_eq(out.data, "-ERR xxx", 8);
	ck_assert_mem_eq(out.data + out.len - 4, "x \r\n", 4);
	colo_buf_free(&out);
}
END_TEST

/* After an error the parser starts clean (the connection should close, but
 * nothing breaks if the caller goes on). */
START_TEST(error_then_reuse)
{
	struct colo_resp_parser p;
	size_t used;

	ck_assert_int_eq(parse_once(&p, "*1\r\n$x\r\n", 8, &used), -1);
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)"PING\r\n", 6, &used), 1);
	ck_assert_int_eq(p.argc, 1);
	ck_assert_uint_eq(used, 6);
	colo_resp_parser_free(&p);
}
END_TEST

/* reset() forgets a command half read and an error, and keeps its arrays. */
START_TEST(reset_keeps_room)
{
	static const char set[] = "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n";
	static const char half[] = "*2\r\n$3\r\nGET\r\n";
	static const char echo[] = "ECHO x\r\n";
	static const char bad[] = "*1\r\n$x\r\n";
	struct colo_resp_parser p;
	size_t used, cap;

	colo_resp_parser_init(&p);
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)set, strlen(set), &used), 1);
	cap = p.cap;
	ck_assert_uint_ge(cap, 3);
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)half, strlen(half), &used), 0);
	colo_resp_parser_reset(&p);
	/* The half-read GET is gone: this is a command of its own. */
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)echo, strlen(echo), &used), 1);
	ck_assert_int_eq(p.argc, 2);
	ck_assert_uint_eq(used, strlen(echo));
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)bad, strlen(bad), &used), -1);
	ck_assert_str_ne(p.error, "");
	colo_resp_parser_reset(&p);
	ck_assert_str_eq(p.error, "");
	ck_assert_uint_eq(p.cap, cap);
	ck_assert_int_eq(colo_resp_parse(&p, (const uint8_t *)"PING\r\n", 6, &used), 1);
	ck_assert_int_eq(p.argc, 1);
	colo_resp_parser_free(&p);
}
END_TEST

/*
 * Robustness: 20k random inputs, biased towards the protocol's bytes, in
 * random pieces.  Nothing may crash (run it under ASan), every answer must
 * be well formed, and piecewise must equal whole.
 */
START_TEST(random_inputs)
{
	static const char alphabet[] = "*$\r\n\r\n0123456789-+ \"'\\xaZ\t\v\0";
	struct colo_rng rng = { COLO_TEST_SEED(0x5eed) };
	uint8_t in[200];

	for (int iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)colo_rng_below(&rng, sizeof(in));
		size_t wn, tn;
		char *whole, *t;

		for (size_t i = 0; i < len; i++)
			in[i] = colo_rng_below(&rng, 4) ? (uint8_t)alphabet[colo_rng_below(
						&rng, sizeof(alphabet) - 1)] : (uint8_t)colo_rng_next(&rng);
		/* Sometimes a well-formed start, to get past the first line. */
		if (len > 8 && colo_rng_below(&rng, 3) == 0)
			memcpy(in, "*2\r\n$1\r\n", 8);
		whole = transcript(in, len, 0, 0, 0, false, &wn);
		t = transcript(in, len, 0, 1 + colo_rng_below(&rng, 16), (uint64_t)iter,
			       iter & 1, &tn);
		same_text(t, tn, whole, wn);
		free(t);
		free(whole);
	}
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("resp");
	TCase *tc = tcase_create("resp");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, multibulk_whole);
	tcase_add_test(tc, partial_and_want);
	tcase_add_test(tc, pipelined);
	tcase_add_test(tc, inline_words);
	tcase_add_test(tc, inline_quotes);
	tcase_add_test(tc, inline_unbalanced);
	tcase_add_test(tc, empty_commands_skipped);
	tcase_add_test(tc, redis_skips_two_bytes);
	tcase_add_test(tc, binary_bulks);
	tcase_add_test(tc, multibulk_errors);
	tcase_add_test(tc, limits);
	tcase_add_test(tc, most_arguments);
	tcase_add_test(tc, big_bulk_in_pieces);
	tcase_add_test(tc, mixed_stream);
	tcase_add_test(tc, str2ll);
	tcase_add_test(tc, writers);
	tcase_add_test(tc, error_then_reuse);
	tcase_add_test(tc, reset_keeps_room);
	tcase_add_test(tc, random_inputs);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
