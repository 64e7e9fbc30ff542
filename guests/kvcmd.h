/*
 * kvcmd.h: the kv guest's commands: Redis 7.0's string commands, and what
 * clients send on connect, run against a kvstore with RESP2 replies.
 *
 * Replies and error texts are Redis 7.0's, byte for byte (checked against
 * redis-server 7.0.15), with these differences, all on purpose:
 *   - one database: SELECT 0 only, FLUSHDB is FLUSHALL;
 *   - no expiry: SET's EX/PX/EXAT/PXAT/KEEPTTL (once the options parse) are
 *     "ERR expiry is not supported by this server";
 *   - out of memory is found by the store when a write does not fit
 *     (-ENOMEM, the store unchanged) and answered with Redis's OOM error;
 *     Redis refuses before running the command.  So MSET is not atomic
 *     then: the pairs before the one that did not fit stay set, the reply is
 *     the OOM error, and the WROTE flag says the store changed;
 *   - RESP2 only: HELLO 3 is "NOPROTO unsupported protocol version";
 *   - COMMAND and COMMAND DOCS answer empty arrays, CONFIG SET and
 *     RESETSTAT errors, CLIENT SETINFO (Redis 7.2) OK.
 *
 * Test only: with COLO_KV_TEST_NONDET=1 in the process's environment,
 * COLOTEST.NONDET key sets the key to 16 random hex digits and answers
 * them (compare mode's tests make the nodes disagree with it); without it
 * the command is unknown like any other.
 *
 * Memory: argv and the store belong to the caller; replies are appended to
 * `out`.  Not thread-safe (the store is not): one thread at a time.
 */
#ifndef COLO_GUEST_KVCMD_H
#define COLO_GUEST_KVCMD_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "kvstore.h"

#define COLO_KVCMD_NAME_MAX 255

/* What a connection keeps between commands: the caller's, one per connection. */
struct colo_kvcmd_client {
	uint64_t id;                            /* CLIENT ID, HELLO's id */
	char name[COLO_KVCMD_NAME_MAX + 1];     /* CLIENT SETNAME; "" when none */
};

struct colo_kvcmd_ctx {
	struct colo_kvstore *kv;
	/* The connection the command came on; NULL: id 0, names refused. */
	struct colo_kvcmd_client *client;
	/* For INFO, CONFIG GET and HELLO: filled by the guest (0 / NULL if unknown). */
	uint16_t tcp_port;
	uint64_t uptime_s, connected_clients, commands_processed;
	uint64_t total_connections;
	const char *role;                       /* "master"; NULL = "master" */
	uint64_t maxmemory;                     /* the region size */
};

enum {
	COLO_KVCMD_QUIT = 1,                    /* close the connection after the reply */
	COLO_KVCMD_WROTE = 2,                   /* the store changed */
};

/*
 * Run one command (argc >= 1, as colo_resp_parse() gives it); the reply is
 * appended to out.  Returns COLO_KVCMD_* flags.
 */
int colo_kvcmd_exec(struct colo_kvcmd_ctx *ctx, int argc, uint8_t *const *argv,
		    const size_t *argl, struct colo_buf *out);

#endif
