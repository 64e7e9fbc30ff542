/*
 * fuzz_etcd.c: libFuzzer target for what etcd (a hostile or broken one) can
 * answer to the arbiter's etcd client: colo__etcd_parse (the HTTP status and
 * body), then the call's decoder (etcd_int.h: range, txn, lease grant and
 * keepalive; a revoke reads nothing past the parse), and what the arbiter
 * makes of a key's value (colo__arb_seen, arbiter_int.h).  No socket and
 * no loop: the decoders take a body as libcurl would have collected it.
 *
 * Input: one selector byte, then the body.
 *   bits 0-2  the call, modulo 6: 0 range, 1 txn, 2 grant, 3 keepalive,
 *             4 revoke, 5 the body is a key's value handed to colo__arb_seen
 *   bits 3-4  the HTTP status's class: 0 is 200, 1 a 4xx, 2 a 5xx, 3 another
 *             (0 for no status line read, 1xx, 2xx but 200, 3xx, 1000)
 *   bits 5-7  which status within its class (the tables below); for a txn,
 *             bits 5-6 are also how many else-ranges it asked for (0-3)
 *
 * Promises checked (abort() with a message, so libFuzzer keeps the input):
 *   - colo__etcd_parse gives 0 and a JSON object only for HTTP 200, or a
 *     negative errno that etcd.h lists, no root, and a `why`;
 *   - a decoder either calls its callback exactly once, with rc 0 and why
 *     NULL, and returns 0, or returns a negative errno etcd.h lists with a
 *     `why` and no callback;
 *   - every `why` is one line: not empty, NUL-terminated within its buffer,
 *     naming the endpoint, no control character (it goes to the log and to
 *     colo-ctl status as it is);
 *   - a kv handed to a callback has a NUL-terminated key and a value that is
 *     NUL-terminated at value_len, every byte readable (ASan); a txn's
 *     callback gets as many kvs as else-ranges asked, all NULL when it
 *     succeeded; a granted lease has an ID and a TTL within 0 and etcd's
 *     longest, a renewed one no longer (the arbiter counts it in ms);
 *   - colo__arb_seen keeps within its fields: raw is the value's start (at
 *     most 500 bytes), node NUL-terminated, the revision copied;
 *   - no crash, leak or undefined behaviour (the sanitizers).
 * FUZZ_VERBOSE=1 prints a line per run.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "arbiter_int.h"
#include "err.h"
#include "etcd_int.h"
#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EP "http://127.0.0.1:2379"

enum call { C_RANGE, C_TXN, C_GRANT, C_KEEPALIVE, C_REVOKE, C_VALUE, C_CALLS };

static const char *const call_names[C_CALLS] = {
	"range", "txn", "grant", "keepalive", "revoke", "value"
};

static const long statuses[4][8] = {
	{ 200, 200, 200, 200, 200, 200, 200, 200 },
	{ 400, 401, 403, 404, 405, 408, 413, 429 },
	{ 500, 501, 502, 503, 504, 507, 511, 599 },
	{ 0, 100, 199, 201, 204, 302, 304, 1000 },
};

/* What the callbacks saw. */
struct seen_cb {
	unsigned calls;
	size_t n_else;          /* txn: asked */
	size_t kvs;             /* kvs present */
	int64_t id;             /* grant */
	bool succeeded;
};

static bool errno_listed(int r, bool parse)
{
	switch (-r) {
	case EPROTO: case EBADMSG: case ENOMEM:
		return true;
	case ENOENT: case EINVAL: case ETIMEDOUT: case EAGAIN: case EACCES: case ENOSPC:
	case EIO:
		/* etcd's own errors: only colo__etcd_parse reads them. */
		return parse;
	default:
		return false;
	}
}

/* why was filled with 0xff before the call: one line, NUL inside. */
static void check_why(const char *why, size_t whylen, int r, const char *what)
{
	size_t n = strnlen(why, whylen);

	CHECK(n < whylen, "%s returned %d with a why that is not NUL-terminated", what, r);
	CHECK(n > 0, "%s returned %d with an empty why", what, r);
	CHECK(strncmp(why, "etcd " EP ": ", strlen("etcd " EP ": ")) == 0,
	      "%s returned %d with a why that does not name the endpoint: %s", what, r, why);
	for (size_t i = 0; i < n; i++)
		CHECK((unsigned char)why[i] >= 0x20 && why[i] != 0x7f,
		      "%s returned %d with a why holding byte 0x%02x at %zu: %s", what, r,
		      (unsigned char)why[i], i, why);
}

/* Every byte of kv readable, the promised NULs there; then what the
 * arbiter makes of its value. */
static void check_kv(const struct colo_etcd_kv *kv, const char *what)
{
	volatile unsigned sum = 0;
	struct seen s;
	size_t raw;

	CHECK(kv->key != NULL && kv->value != NULL, "%s: a kv with a NULL key or value", what);
	for (const char *k = kv->key; *k != '\0'; k++)
		sum += (unsigned char)*k;
	for (size_t i = 0; i < kv->value_len; i++)
		sum += kv->value[i];
	CHECK(kv->value[kv->value_len] == '\0', "%s: a value of %zu bytes not NUL-terminated",
	      what, kv->value_len);
	(void)sum;

	colo__arb_seen(&s, kv);
	CHECK(s.present && s.mod_rev == kv->mod_revision, "%s: colo__arb_seen lost the kv", what);
	CHECK(strnlen(s.node, sizeof(s.node)) < sizeof(s.node), "%s: seen node unterminated",
	      what);
	raw = strnlen(s.raw, sizeof(s.raw));
	CHECK(raw <= 500 && raw <= kv->value_len && memcmp(s.raw, kv->value, raw) == 0,
	      "%s: seen raw (%zu bytes) is not the value's start", what, raw);
	CHECK(s.ttl_ms < 3600000, "%s: seen ttl_ms %" PRIu32 " out of range", what, s.ttl_ms);
}

static void on_get(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t revision,
		   const char *why)
{
	struct seen_cb *c = ud;

	(void)revision;
	c->calls++;
	CHECK(rc == 0 && why == NULL, "range callback with rc %d, why %s", rc, why);
	if (kv != NULL) {
		c->kvs++;
		check_kv(kv, "range");
	}
}

static void on_txn(void *ud, int rc, bool succeeded, int64_t revision,
		   const struct colo_etcd_kv *const *kvs, size_t n, const char *why)
{
	struct seen_cb *c = ud;

	(void)revision;
	c->calls++;
	c->succeeded = succeeded;
	CHECK(rc == 0 && why == NULL, "txn callback with rc %d, why %s", rc, why);
	CHECK(n == c->n_else, "txn callback with %zu kvs for %zu else-ranges", n, c->n_else);
	CHECK(n == 0 || kvs != NULL, "txn callback with %zu kvs in a NULL array", n);
	for (size_t i = 0; i < n; i++) {
		if (kvs[i] == NULL)
			continue;
		CHECK(!succeeded, "txn succeeded, but kv %zu of %zu is not NULL", i, n);
		c->kvs++;
		check_kv(kvs[i], "txn");
	}
}

static void on_grant(void *ud, int rc, int64_t id, int64_t ttl_s, const char *why)
{
	struct seen_cb *c = ud;

	c->calls++;
	c->id = id;
	CHECK(rc == 0 && why == NULL, "grant callback with rc %d, why %s", rc, why);
	CHECK(id != 0, "a lease granted without an ID");
	CHECK(ttl_s >= 0 && ttl_s <= COLO_ETCD_MAX_TTL_S, "a lease granted for %" PRId64 " s",
	      ttl_s);
}

static void on_keepalive(void *ud, int rc, int64_t ttl_s, const char *why)
{
	struct seen_cb *c = ud;

	c->calls++;
	CHECK(rc == 0 && why == NULL, "keepalive callback with rc %d, why %s", rc, why);
	CHECK(ttl_s <= COLO_ETCD_MAX_TTL_S, "a lease renewed for %" PRId64 " s", ttl_s);
}

/* The body as a key's value, straight to the arbiter (no base64 to get
 * through first). */
static void fuzz_value(const uint8_t *p, size_t n)
{
	struct colo_etcd_kv kv = { .key = "/colo/colo/leader", .mod_revision = 7 };
	uint8_t *v = malloc(n + 1);

	CHECK(v != NULL, "out of memory");
	memcpy(v, p, n);
	v[n] = '\0';
	kv.value = v;
	kv.value_len = n;
	check_kv(&kv, "value");
	free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum call call;
	long status;
	const char *body;
	size_t len;
	char why[COLO_ERR_MAX];
	struct seen_cb c = { 0 };
	json_t *root = NULL;
	int r;

	if (size < 1)
		return 0;
	call = (enum call)((data[0] & 7) % C_CALLS);
	status = statuses[(data[0] >> 3) & 3][data[0] >> 5];
	c.n_else = (data[0] >> 5) & 3;
	body = (const char *)data + 1;
	len = size - 1;
	if (call == C_VALUE) {
		fuzz_value(data + 1, len);
		if (fuzz_verbose())
			fprintf(stderr, "value of %zu bytes: seen\n", len);
		return 0;
	}

	memset(why, 0xff, sizeof(why));
	r = colo__etcd_parse(EP, status, body, len, &root, why, sizeof(why));
	if (r < 0) {
		CHECK(root == NULL, "parse returned %d and a root", r);
		CHECK(errno_listed(r, true), "parse returned %d, not an errno etcd.h lists", r);
		check_why(why, sizeof(why), r, "parse");
		if (fuzz_verbose())
			fprintf(stderr, "%s, HTTP %ld, %zu bytes: %d %s\n", call_names[call], status,
				len, r, why);
		return 0;
	}
	CHECK(r == 0 && json_is_object(root), "parse returned %d, root %p", r, (void *)root);
	CHECK(status == 200, "parse accepted HTTP %ld", status);

	memset(why, 0xff, sizeof(why));
	switch (call) {
	case C_RANGE:
		r = colo__etcd_get_answer(on_get, &c, root, EP, why, sizeof(why));
		break;
	case C_TXN:
		r = colo__etcd_txn_answer(on_txn, &c, root, c.n_else, EP, why, sizeof(why));
		break;
	case C_GRANT:
		r = colo__etcd_grant_answer(on_grant, &c, root, EP, why, sizeof(why));
		break;
	case C_KEEPALIVE:
		r = colo__etcd_keepalive_answer(on_keepalive, &c, root, EP, why, sizeof(why));
		break;
	case C_REVOKE:            /* etcd.c calls back on the parse alone */
		c.calls++;
		r = 0;
		break;
	case C_VALUE:
	case C_CALLS:
		break;
	}
	json_decref(root);
	if (r == 0) {
		CHECK(c.calls == 1, "%s decoded, callback called %u times", call_names[call],
		      c.calls);
	} else {
		CHECK(r < 0 && errno_listed(r, false), "%s decoder returned %d", call_names[call],
		      r);
		CHECK(c.calls == 0, "%s decoder returned %d after %u callbacks", call_names[call],
		      r, c.calls);
		check_why(why, sizeof(why), r, call_names[call]);
	}
	if (fuzz_verbose())
		fprintf(stderr, "%s, HTTP %ld, %zu bytes: %s%s%s\n", call_names[call], status, len,
			r == 0 ? "decoded" : why, r == 0 && c.kvs ? ", kvs" : "",
			r == 0 && call == C_TXN ? (c.succeeded ? ", succeeded" : ", failed") : "");
	return 0;
}
