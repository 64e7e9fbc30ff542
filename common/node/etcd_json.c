/*
 * etcd_json.c: the JSON of the etcd v3 gateway (etcd_int.h): requests as
 * proto3 JSON (bytes in base64, int64 as strings), the transaction builder,
 * and answers read back, where a field at its default value (0, false, "",
 * none) is left out by the server and so reads as that default.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "etcd_int.h"

#define B64 sodium_base64_VARIANT_ORIGINAL

json_t *colo__etcd_i64_json(int64_t v)
{
	char s[24];

	snprintf(s, sizeof(s), "%" PRId64, v);
	return json_string(s);
}

json_t *colo__etcd_b64_json(const void *p, size_t n)
{
	size_t len = sodium_base64_ENCODED_LEN(n, B64);
	char *s = malloc(len);
	json_t *j;

	if (s == NULL)
		return NULL;
	sodium_bin2base64(s, len, p, n, B64);
	j = json_string(s);
	free(s);
	return j;
}

json_t *colo__etcd_obj1(const char *name, json_t *value)
{
	json_t *o = json_object();

	/* json_object_set_new takes value even when it fails (o NULL). */
	if (json_object_set_new(o, name, value) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* gRPC's status codes as errnos (etcd.h lists them). */
static int etcd_grpc_errno(json_int_t code)
{
	switch (code) {
	case 3: case 9: case 11:     /* invalid argument, failed precondition, out of range */
		return -EINVAL;
	case 4:                      /* deadline exceeded */
		return -ETIMEDOUT;
	case 5:                      /* not found */
		return -ENOENT;
	case 7: case 16:             /* permission denied, unauthenticated */
		return -EACCES;
	case 8:                      /* resource exhausted */
		return -ENOSPC;
	case 14:                     /* unavailable */
		return -EAGAIN;
	default:
		return -EIO;
	}
}

/* etcd's error: {"error": "...", "message": "...", "code": N} from a unary
 * call, {"error": {"grpc_code": N, "message": "..."}} inside a stream. */
static bool etcd_error_of(json_t *root, const char **msg, json_int_t *code)
{
	json_t *er = json_object_get(root, "error");
	json_t *m = json_object_get(root, "message");

	if (er == NULL && m == NULL)
		return false;
	*code = json_integer_value(json_object_get(root, "code"));
	if (json_is_object(er)) {
		m = json_object_get(er, "message");
		*code = json_integer_value(json_object_get(er, "grpc_code"));
	} else if (!json_is_string(m)) {
		m = er;
	}
	*msg = json_is_string(m) ? json_string_value(m) : "(no message)";
	return true;
}

int colo__etcd_parse(const char *ep, long status, const char *buf, size_t len, json_t **root,
		     char *why, size_t whylen)
{
	json_t *j = len > 0 ? json_loadb(buf, len, 0, NULL) : NULL;
	const char *msg;
	json_int_t code;

	*root = NULL;
	if (j != NULL && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	if (j != NULL && (status != 200 || json_object_get(j, "error") != NULL) &&
	    etcd_error_of(j, &msg, &code)) {
		snprintf(why, whylen, "etcd %s: answered HTTP %ld: %s", ep, status, msg);
		json_decref(j);
		return etcd_grpc_errno(code);
	}
	if (status != 200) {
		/* Not etcd's error: show the start of what came, printable. */
		char line[121];
		size_t n = 0;

		for (; n < len && n < sizeof(line) - 1 && buf[n] != '\n' && buf[n] != '\r'; n++)
			line[n] = isprint((unsigned char)buf[n]) ? buf[n] : '?';
		line[n] = '\0';
		snprintf(why, whylen, "etcd %s: answered HTTP %ld%s%s", ep, status,
			 n > 0 ? ": " : "", line);
		json_decref(j);
		return -EPROTO;
	}
	if (j == NULL) {
		snprintf(why, whylen, "etcd %s: answered something that is not JSON", ep);
		return -EBADMSG;
	}
	*root = j;
	return 0;
}

int colo__etcd_i64(json_t *obj, const char *name, int64_t *out, const char *ep, char *why,
		   size_t whylen)
{
	json_t *v = json_object_get(obj, name);

	*out = 0;
	if (v == NULL)
		return 0;
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		long long x;

		errno = 0;
		x = strtoll(s, &end, 10);
		if (errno == 0 && end != s && *end == '\0') {
			*out = x;
			return 0;
		}
	}
	snprintf(why, whylen, "etcd %s: answered a %s that is not an int64", ep, name);
	return -EBADMSG;
}

/* A kv decoded; key and value malloc'd, NUL-terminated. */
struct etcd_kvbuf {
	struct colo_etcd_kv kv;
	char *key;
	uint8_t *value;
};

static int etcd_b64_decode(json_t *v, uint8_t **out, size_t *len)
{
	const char *s = json_is_string(v) ? json_string_value(v) : "";
	size_t n = json_is_string(v) ? json_string_length(v) : 0;
	size_t max = n / 4 * 3 + 3;

	*out = malloc(max + 1);
	if (*out == NULL)
		return -ENOMEM;
	if (v != NULL && !json_is_string(v))
		return -EBADMSG;
	if (sodium_base642bin(*out, max, s, n, NULL, len, NULL, B64) != 0)
		return -EBADMSG;
	(*out)[*len] = '\0';
	return 0;
}

static int etcd_kv_decode(json_t *o, struct etcd_kvbuf *kb, const char *ep, char *why,
			  size_t whylen)
{
	struct colo_etcd_kv *kv = &kb->kv;
	size_t klen;
	int r;

	if (!json_is_object(o)) {
		snprintf(why, whylen, "etcd %s: answered a kv that is not an object", ep);
		return -EBADMSG;
	}
	r = etcd_b64_decode(json_object_get(o, "key"), (uint8_t **)&kb->key, &klen);
	if (r == 0)
		r = etcd_b64_decode(json_object_get(o, "value"), &kb->value, &kv->value_len);
	if (r < 0) {
		snprintf(why, whylen, "etcd %s: %s", ep,
			 r == -ENOMEM ? "out of memory" : "answered a key or value not in base64");
		return r;
	}
	kv->key = kb->key;
	kv->value = kb->value;
	if ((r = colo__etcd_i64(o, "create_revision", &kv->create_revision, ep, why, whylen)) < 0 ||
	    (r = colo__etcd_i64(o, "mod_revision", &kv->mod_revision, ep, why, whylen)) < 0 ||
	    (r = colo__etcd_i64(o, "version", &kv->version, ep, why, whylen)) < 0 ||
	    (r = colo__etcd_i64(o, "lease", &kv->lease, ep, why, whylen)) < 0)
		return r;
	return 0;
}

static void etcd_kv_clear(struct etcd_kvbuf *kb)
{
	free(kb->key);
	free(kb->value);
}

/* The first of obj.kvs into kb; *found false when there is none. */
static int etcd_first_kv(json_t *obj, struct etcd_kvbuf *kb, bool *found, const char *ep,
			 char *why, size_t whylen)
{
	json_t *kvs = json_object_get(obj, "kvs");

	*found = false;
	if (kvs == NULL || (json_is_array(kvs) && json_array_size(kvs) == 0))
		return 0;
	if (!json_is_array(kvs)) {
		snprintf(why, whylen, "etcd %s: answered kvs that are not an array", ep);
		return -EBADMSG;
	}
	*found = true;
	return etcd_kv_decode(json_array_get(kvs, 0), kb, ep, why, whylen);
}

static int etcd_revision(json_t *root, int64_t *rev, const char *ep, char *why, size_t whylen)
{
	return colo__etcd_i64(json_object_get(root, "header"), "revision", rev, ep, why, whylen);
}

int colo__etcd_get_answer(colo_etcd_get_cb cb, void *ud, json_t *root, const char *ep,
			  char *why, size_t whylen)
{
	struct etcd_kvbuf kb = { 0 };
	int64_t rev;
	bool found;
	int r;

	r = etcd_revision(root, &rev, ep, why, whylen);
	if (r == 0)
		r = etcd_first_kv(root, &kb, &found, ep, why, whylen);
	if (r == 0)
		cb(ud, 0, found ? &kb.kv : NULL, rev, NULL);
	etcd_kv_clear(&kb);
	return r;
}

int colo__etcd_txn_answer(colo_etcd_txn_cb cb, void *ud, json_t *root, size_t n_else,
			  const char *ep, char *why, size_t whylen)
{
	json_t *ok = json_object_get(root, "succeeded");
	json_t *resps = json_object_get(root, "responses");
	struct etcd_kvbuf *kbs = calloc(n_else + 1, sizeof(*kbs));
	const struct colo_etcd_kv **kvs = calloc(n_else + 1, sizeof(*kvs));
	bool succeeded = json_is_true(ok);
	int64_t rev;
	int r;

	if (kbs == NULL || kvs == NULL) {
		snprintf(why, whylen, "etcd %s: out of memory", ep);
		r = -ENOMEM;
		goto out;
	}
	r = etcd_revision(root, &rev, ep, why, whylen);
	if (r == 0 && ok != NULL && !json_is_boolean(ok)) {
		snprintf(why, whylen, "etcd %s: answered a succeeded that is not a boolean", ep);
		r = -EBADMSG;
	}
	if (r == 0 && !succeeded && n_else > 0 &&
	    (!json_is_array(resps) || json_array_size(resps) != n_else)) {
		snprintf(why, whylen, "etcd %s: answered %zu responses to %zu reads", ep,
			 json_array_size(resps), n_else);
		r = -EBADMSG;
	}
	for (size_t i = 0; r == 0 && !succeeded && i < n_else; i++) {
		json_t *rr = json_object_get(json_array_get(resps, i), "response_range");
		bool found;

		if (!json_is_object(rr)) {
			snprintf(why, whylen, "etcd %s: answered response %zu that is not a range",
				 ep, i);
			r = -EBADMSG;
			break;
		}
		r = etcd_first_kv(rr, &kbs[i], &found, ep, why, whylen);
		kvs[i] = found ? &kbs[i].kv : NULL;
	}
	if (r == 0)
		cb(ud, 0, succeeded, rev, (const struct colo_etcd_kv *const *)kvs, n_else, NULL);
out:
	for (size_t i = 0; kbs != NULL && i < n_else; i++)
		etcd_kv_clear(&kbs[i]);
	free(kbs);
	free(kvs);
	return r;
}

/* ---- the transaction builder ---- */

struct colo_etcd_txn {
	json_t *compare, *success, *failure;
	size_t n_else;
	bool nomem;
};

struct colo_etcd_txn *colo_etcd_txn_new(void)
{
	struct colo_etcd_txn *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->compare = json_array();
	t->success = json_array();
	t->failure = json_array();
	if (t->compare == NULL || t->success == NULL || t->failure == NULL) {
		colo_etcd_txn_free(t);
		return NULL;
	}
	return t;
}

void colo_etcd_txn_free(struct colo_etcd_txn *t)
{
	if (t == NULL)
		return;
	json_decref(t->compare);
	json_decref(t->success);
	json_decref(t->failure);
	free(t);
}

/* Append item (taken, NULL: out of memory) to arr. */
static int etcd_txn_add(struct colo_etcd_txn *t, json_t *arr, json_t *item)
{
	if (json_array_append_new(arr, item) != 0) {
		t->nomem = true;
		return -ENOMEM;
	}
	return 0;
}

static json_t *etcd_key_obj(const char *key)
{
	return colo__etcd_obj1("key", colo__etcd_b64_json(key, strlen(key)));
}

/* {key, target, result: EQUAL, field: v}; v taken.  Each set_new takes its
 * value even when it fails, so all run (|, not ||) and nothing leaks. */
static json_t *etcd_compare(const char *key, const char *target, const char *field, json_t *v)
{
	json_t *o = etcd_key_obj(key);

	if ((json_object_set_new(o, "target", json_string(target)) |
	     json_object_set_new(o, "result", json_string("EQUAL")) |
	     json_object_set_new(o, field, v)) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int colo_etcd_txn_value_eq(struct colo_etcd_txn *t, const char *key, const void *v, size_t len)
{
	return etcd_txn_add(t, t->compare,
			    etcd_compare(key, "VALUE", "value", colo__etcd_b64_json(v, len)));
}

int colo_etcd_txn_create_rev_eq(struct colo_etcd_txn *t, const char *key, int64_t rev)
{
	return etcd_txn_add(t, t->compare, etcd_compare(key, "CREATE", "create_revision",
							colo__etcd_i64_json(rev)));
}

int colo_etcd_txn_mod_rev_eq(struct colo_etcd_txn *t, const char *key, int64_t rev)
{
	return etcd_txn_add(t, t->compare, etcd_compare(key, "MOD", "mod_revision",
							colo__etcd_i64_json(rev)));
}

int colo_etcd_txn_put(struct colo_etcd_txn *t, const char *key, const void *v, size_t len,
		      int64_t lease)
{
	json_t *o = etcd_key_obj(key);
	int r = json_object_set_new(o, "value", colo__etcd_b64_json(v, len));

	if (lease != 0)
		r |= json_object_set_new(o, "lease", colo__etcd_i64_json(lease));
	if (r != 0) {
		json_decref(o);
		o = NULL;
	}
	return etcd_txn_add(t, t->success, colo__etcd_obj1("requestPut", o));
}

int colo_etcd_txn_delete(struct colo_etcd_txn *t, const char *key)
{
	return etcd_txn_add(t, t->success, colo__etcd_obj1("requestDeleteRange", etcd_key_obj(key)));
}

int colo_etcd_txn_else_get(struct colo_etcd_txn *t, const char *key)
{
	int r = etcd_txn_add(t, t->failure, colo__etcd_obj1("requestRange", etcd_key_obj(key)));

	/* Counted even on failure: the transaction must not run anyway. */
	t->n_else++;
	return r;
}

size_t colo__etcd_txn_take(struct colo_etcd_txn *t, json_t **body)
{
	size_t n = t->n_else;

	*body = NULL;
	if (!t->nomem)
		*body = json_pack("{s:O,s:O,s:O}", "compare", t->compare, "success", t->success,
				  "failure", t->failure);
	colo_etcd_txn_free(t);
	return n;
}
