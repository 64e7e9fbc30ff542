/*
 * etcdsrv.h: a real etcd for the tests: one member on loopback, on free
 * ports, in a temporary directory of its own; started, waited for until it
 * answers, stopped by its pid, its directory removed.
 *
 * It runs with a 10 ms heartbeat and a 100 ms election timeout, so that
 * leases as short as 1 s are granted as asked (etcd raises a TTL to 1.5
 * election timeouts at least) and the member is leader at once.  The binary
 * is $COLO_ETCD, else etcd from PATH.  The child dies with the test
 * (PR_SET_PDEATHSIG).  A struct colo_etcdsrv is the caller's; not
 * thread-safe.
 */
#ifndef COLO_ETCDSRV_H
#define COLO_ETCDSRV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct colo_etcdsrv {
	pid_t pid;
	char *dir;                /* malloc'd; data and etcd.log inside */
	uint16_t client_port, peer_port;
	char endpoint[64];        /* "http://127.0.0.1:PORT" */
};

/* The etcd binary's path (static storage), or NULL when there is none. */
const char *colo_etcdsrv_binary(void);
/* Start and wait (up to 30 s) until /health says true; 0 or -1 with why. */
int colo_etcdsrv_start(struct colo_etcdsrv *s, char *why, size_t whylen);
/* SIGTERM (SIGKILL after 5 s), reap, remove the directory.  Idempotent. */
void colo_etcdsrv_stop(struct colo_etcdsrv *s);
/* A loopback TCP port nothing listens on right now (0 on error). */
uint16_t colo_etcdsrv_free_port(void);

#endif
