/*
 * etcd_int.h: what etcd.c (the transport and the calls) and etcd_json.c (the
 * JSON of requests and answers) share.  Not for use outside those two.
 *
 * The builders return new references (NULL: out of memory).  The answer
 * decoders read an answer parsed by colo__etcd_parse, call the call's
 * callback on success and return 0, or return a negative errno with `why`
 * filled ("etcd EP: ...") and leave the callback to the caller.  Loop
 * thread only, like the client.
 */
#ifndef COLO_ETCD_INT_H
#define COLO_ETCD_INT_H

#include <jansson.h>

#include "etcd.h"

/* An int64 as proto3 JSON has it: a decimal string. */
json_t *colo__etcd_i64_json(int64_t v);
/* Bytes as a base64 string (the gateway's encoding of proto bytes). */
json_t *colo__etcd_b64_json(const void *p, size_t n);
/* {name: value}, value taken (also when NULL or on error). */
json_t *colo__etcd_obj1(const char *name, json_t *value);

/* The answer's HTTP status and body as a JSON object, or etcd's error. */
int colo__etcd_parse(const char *ep, long status, const char *buf, size_t len, json_t **root,
		     char *why, size_t whylen);
/* obj.name as int64: absent is 0 (proto3 leaves defaults out). */
int colo__etcd_i64(json_t *obj, const char *name, int64_t *out, const char *ep, char *why,
		   size_t whylen);
int colo__etcd_get_answer(colo_etcd_get_cb cb, void *ud, json_t *root, const char *ep,
			  char *why, size_t whylen);
int colo__etcd_txn_answer(colo_etcd_txn_cb cb, void *ud, json_t *root, size_t n_else,
			  const char *ep, char *why, size_t whylen);
/* Free t; *body: the TxnRequest (NULL if any builder ran out of memory).
 * Returns the number of else_gets. */
size_t colo__etcd_txn_take(struct colo_etcd_txn *t, json_t **body);

#endif
