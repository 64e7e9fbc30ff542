/*
 * gen_kvunit_seeds.c: write the seeds of the kv compare-mode fuzz target
 * (fuzz_kvunit.c) into DIR, each file `u8 mode, u8 seed, bytes`
 * (fuzz_kvunit.h):
 *
 *   gen_kvunit_seeds DIR
 *
 *   seed-round-NAME   client sessions (ROUND): pipelines, client names,
 *                     INFO, a protocol error, QUIT with bytes after it,
 *                     empty commands, a store that runs out of memory, one
 *                     whose table doubles;
 *   seed-unit-NAME-K  the units the primary's own batch code made of those
 *                     sessions arriving in one read (UNIT), as a secondary
 *                     receives them;
 *   seed-cut-WHAT     one unit with a client name and its commands, cut
 *                     where the reader's checks change: in the fixed
 *                     header, at the name's length, in the name, in the
 *                     RESP length, before and inside the RESP bytes (raw,
 *                     and with the RESP length made to agree), one byte
 *                     short; and with a flag, the version or a name byte
 *                     changed.
 *
 * The units are what a primary sends but for uptime_s, 0 here.  The
 * committed tests/fuzz/kvunit-regress/seed-* were written by this program;
 * regress-kvunit.sh runs fresh ones too, so the target and the format stay
 * in step.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_kvunit.h"

/* The unit's layout (kv_compare.c). */
#define U_FLAGS 1
#define U_NAMELEN 44
#define U_NAME 45
#define U_FIXED 45
#define UNITS_PER_SESSION 4

static const char *out_dir;

static void die(const char *what, const char *why)
{
	fprintf(stderr, "gen_kvunit_seeds: %s: %s\n", what, why);
	exit(1);
}

static void write_seed(const char *name, uint8_t mode, uint8_t seed, const uint8_t *b,
		       size_t n)
{
	char path[4096];
	uint8_t head[KVU_HEADER_LEN] = { mode, seed };
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(head, 1, sizeof(head), f) != sizeof(head) ||
	    (n && fwrite(b, 1, n, f) != n) || fclose(f) != 0)
		die(path, strerror(errno));
}

struct session {
	const char *name;
	uint8_t seed;                  /* pieces and store, as ROUND reads it */
	const char *bytes;
	size_t len;                    /* 0: strlen(bytes) */
};

#define STORE(s) ((uint8_t)((s) << KVU_SEED_STORE_SHIFT))
#define BYTES(lit) lit, sizeof(lit) - 1   /* bytes with a NUL in them */

static const struct session sessions[] = {
	{ "pipeline", 0x06 | STORE(KVU_STORE_NAMED),
	  "SET k1 one\r\nGET k1\r\nINCR counter\r\nINCRBY counter 100\r\nMSET a 1 b 2\r\n"
	  "MGET a b k2 nope\r\nAPPEND k2 \" and more\"\r\nDEL a\r\nEXISTS a b\r\n"
	  "GETSET b 3\r\nSTRLEN k2\r\nDBSIZE\r\nKEYS key:1*\r\nSCAN 0 COUNT 5\r\n", 0 },
	{ "multibulk", 0x05 | STORE(KVU_STORE_NAMED),
	  BYTES("*3\r\n$3\r\nSET\r\n$3\r\nbin\r\n$4\r\n\x00\xff\r\n\r\n*2\r\n$3\r\nGET\r\n"
		"$3\r\nbin\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n") },
	{ "client-state", 0x04 | STORE(KVU_STORE_EMPTY),
	  "CLIENT SETNAME fuzz-client\r\nCLIENT GETNAME\r\nCLIENT ID\r\nHELLO 2\r\n"
	  "CONFIG GET port\r\nCONFIG GET maxmemory\r\nINFO server\r\nINFO stats\r\n"
	  "INFO clients\r\nCLIENT SETNAME other\r\nINFO\r\nSET after-info 1\r\n", 0 },
	{ "protocol-error", 0x03 | STORE(KVU_STORE_NAMED),
	  "SET x 1\r\nGET x\r\n*2\r\n$3\r\nGET\r\n$x\r\nSET y 2\r\n", 0 },
	{ "quit", 0x07 | STORE(KVU_STORE_NAMED),
	  "SET q 1\r\nINCR q\r\nQUIT\r\nSET after-quit 1\r\n", 0 },
	{ "empty-commands", 0x00 | STORE(KVU_STORE_EMPTY),
	  "*0\r\n\r\n*-1\r\nPING\r\n\r\n\r\n*0\r\nSET e 1\r\n*0\r\n", 0 },
	{ "inline-quotes", 0x02 | STORE(KVU_STORE_NAMED),
	  "SET \"quoted key\" 'single \\' quote'\r\nGET \"quoted key\"\r\n"
	  "SET esc \"\\x41\\n\\t\"\r\nGET esc\r\nSET unbalanced \"oops\r\n", 0 },
	{ "tight-oom", 0x06 | STORE(KVU_STORE_TIGHT),
	  "APPEND log 0123456789012345678901234567890123456789012345678901234567890123\r\n"
	  "APPEND log 0123456789012345678901234567890123456789012345678901234567890123\r\n"
	  "SET big 0123456789012345678901234567890123456789012345678901234567890123456789"
	  "0123456789012345678901234567890123456789012345678901234567890123456789\r\n"
	  "MSET m1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa m2 bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n"
	  "DEL ballast:2\r\nSET fits 1\r\nINFO memory\r\n", 0 },
	{ "full-growth", 0x01 | STORE(KVU_STORE_FULL),
	  "SET new:1 1\r\nSET new:2 2\r\nGET key:7\r\nDBSIZE\r\nSCAN 0 COUNT 3\r\n"
	  "DEL key:1 key:2\r\nFLUSHALL\r\nDBSIZE\r\n", 0 },
};

/* The unit that has everything: a client name, a multibulk and an inline
 * command, run on the named store. */
static const char rich_input[] =
	"CLIENT SETNAME seed\r\nSET k1 x\r\n*2\r\n$3\r\nGET\r\n$2\r\nk1\r\nINCR counter\r\n";

static void sessions_write(void)
{
	char name[128];

	for (size_t s = 0; s < sizeof(sessions) / sizeof(sessions[0]); s++) {
		const struct session *se = &sessions[s];
		size_t len = se->len ? se->len : strlen(se->bytes);
		struct kvu_primary p;

		snprintf(name, sizeof(name), "seed-round-%s", se->name);
		write_seed(name, KVU_MODE_ROUND, se->seed, (const uint8_t *)se->bytes, len);
		/* In one read: the session's commands make one unit (two when
		 * QUIT or a protocol error ends it), not one each. */
		kvu_primary_init(&p, kvu_store_of(se->seed));
		kvu_primary_feed(&p, (const uint8_t *)se->bytes, len);
		if (p.n == 0)
			die(se->name, "the session made no unit");
		for (size_t i = 0; i < p.n && i < UNITS_PER_SESSION; i++) {
			if (!p.u[i].has_data)
				die(se->name, "a unit without its bytes");
			snprintf(name, sizeof(name), "seed-unit-%s-%zu", se->name, i + 1);
			write_seed(name, KVU_MODE_UNIT, se->seed & KVU_SEED_STORE,
				   kvu_unit_data(&p, i), p.u[i].len);
		}
		kvu_primary_free(&p);
	}
}

static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* The rich unit's first `keep` bytes; `fix`: its RESP length says what is
 * left of the RESP bytes (when its length field is whole). */
static void cut(const char *what, const uint8_t *u, size_t len, size_t keep, bool fix)
{
	uint8_t buf[512];
	size_t resp_at = U_FIXED + u[U_NAMELEN] + 4;
	char name[128];

	if (keep > len || keep > sizeof(buf))
		die(what, "cut beyond the unit");
	memcpy(buf, u, keep);
	if (fix && keep >= resp_at)
		put_be32(buf + resp_at - 4, (uint32_t)(keep - resp_at));
	snprintf(name, sizeof(name), "seed-cut-%s", what);
	write_seed(name, KVU_MODE_UNIT, STORE(KVU_STORE_NAMED), buf, keep);
}

static void changed(const char *what, const uint8_t *u, size_t len, size_t at, uint8_t v)
{
	uint8_t buf[512];
	char name[128];

	if (len > sizeof(buf) || at >= len)
		die(what, "change beyond the unit");
	memcpy(buf, u, len);
	buf[at] = v;
	snprintf(name, sizeof(name), "seed-cut-%s", what);
	write_seed(name, KVU_MODE_UNIT, STORE(KVU_STORE_NAMED), buf, len);
}

static void cuts_write(void)
{
	struct kvu_primary p;
	const uint8_t *u;
	size_t len, nl, resp_at, first_cmd;

	kvu_primary_init(&p, KVU_STORE_NAMED);
	/* One read with the name set: the second unit carries it. */
	kvu_primary_feed(&p, (const uint8_t *)"CLIENT SETNAME seed\r\n", 21);
	kvu_primary_feed(&p, (const uint8_t *)rich_input + 21, sizeof(rich_input) - 1 - 21);
	if (p.n != 2 || !p.u[1].has_data)
		die("rich unit", "expected two units with bytes");
	u = kvu_unit_data(&p, 1);
	len = p.u[1].len;
	nl = u[U_NAMELEN];
	if (nl != 4)
		die("rich unit", "the client name is not in it");
	resp_at = U_FIXED + nl + 4;
	first_cmd = strlen("SET k1 x\r\n");
	cut("whole", u, len, len, false);
	cut("fixed-header", u, len, 20, false);
	cut("before-name-length", u, len, U_NAMELEN, false);
	cut("in-name", u, len, U_NAME + 2, false);
	cut("in-resp-length", u, len, resp_at - 2, false);
	cut("no-resp", u, len, resp_at, false);
	cut("no-resp-fixed", u, len, resp_at, true);
	cut("in-first-command", u, len, resp_at + 4, false);
	cut("in-first-command-fixed", u, len, resp_at + 4, true);
	cut("after-first-command-fixed", u, len, resp_at + first_cmd, true);
	cut("in-multibulk-fixed", u, len, resp_at + first_cmd + 9, true);
	cut("one-byte-short", u, len, len - 1, false);
	cut("one-byte-short-fixed", u, len, len - 1, true);
	changed("flag-protocol-error", u, len, U_FLAGS, 0x01);
	changed("flag-unknown", u, len, U_FLAGS, 0x80);
	changed("version-2", u, len, 0, 2);
	changed("name-space", u, len, U_NAME + 1, ' ');
	changed("name-length-long", u, len, U_NAMELEN, 0xff);
	kvu_primary_free(&p);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_kvunit_seeds DIR\n");
		return 2;
	}
	out_dir = argv[1];
	unsetenv("COLO_KV_TEST_NONDET");
	sessions_write();
	cuts_write();
	return 0;
}
