/*
 * arbiter_int.h: what arbiter.c (the lease, claiming and holding the
 * leader key, the sync key) and arbiter_take.c (a secondary taking the
 * cluster over, and watching the keys until then) share.  Not API: see
 * arbiter.h.  Loop thread only.
 */
#ifndef COLO_ARBITER_INT_H
#define COLO_ARBITER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "arbiter.h"
#include "etcd.h"

#define RETRY_MS 200             /* after an error, the next try */
#define WATCH_MS 1000            /* a secondary looks at the keys this often */

/*
 * Where the arbiter stands.
 *   IDLE  -> TAKE     a secondary takes over (colo_arbiter_take)
 *   TAKE  -> HOLD     won: the leader key and a lease are ours
 *   TAKE  -> IDLE     refused, lost, or etcd did not answer
 *   IDLE  -> GRANT    a primary leads (colo_arbiter_lead)
 *   GRANT -> CLAIM    a lease granted
 *   CLAIM -> HOLD     the leader key written
 *   HOLD  -> GRANT    the lease expired in etcd
 *   HOLD  -> CLAIM    the leader key vanished under a live lease
 *   CLAIM, HOLD -> LOST
 *                     another node holds a newer generation
 */
enum arb_state { A_IDLE, A_TAKE, A_GRANT, A_CLAIM, A_HOLD, A_LOST };

extern const char *const colo__arb_names[];

/* A key as read: present or not, its revision, its fields. */
struct seen {
	bool present;
	int64_t mod_rev;
	char node[128];
	uint64_t gen;
	uint32_t ttl_ms;
	char raw[512];
};

struct colo_arbiter {
	struct colo_node *n;
	struct colo_etcd *etcd;
	uv_timer_t timer;
	bool timer_open, closing, busy;
	enum arb_state state;
	int step;                        /* within CLAIM / TAKE */
	char key_leader[160], key_sync[160];
	char endpoints[512];
	uint32_t ttl_ms, margin_ms, renew_ms;
	/* the lease */
	int64_t lease;
	uint64_t t_call;                 /* when the call in flight was sent */
	uint64_t lease_sent_ns;          /* the grant or last renewal sent */
	uint64_t valid_until_ns;         /* may serve alone before this */
	uint64_t next_renew_ns;
	bool ever_held;
	bool lapse_logged;
	char my_leader[256];             /* our leader key's value */
	/* the sync key */
	char sync_want[128], sync_have[128];
	char pending_sync[128];          /* what the write in flight says */
	bool have_known;
	/* what was read */
	struct seen leader, sync;
	/* the engine leading */
	struct colo_arbiter_cb cb;
	void *ud;
	char lost_why[384];
	/* taking over */
	colo_arbiter_take_cb take_done;
	void *take_ud;
	char from[128];
	/* etcd errors, logged when new or now and then */
	char last_err[256];
	uint64_t last_err_ns;
};

/* arbiter.c */
void colo__arb_step(struct colo_arbiter *a);
void colo__arb_to(struct colo_arbiter *a, enum arb_state s);
void colo__arb_arm(struct colo_arbiter *a, uint64_t ms);
/* An etcd error: logged when new, or now and then. */
void colo__arb_etcd_error(struct colo_arbiter *a, const char *what, const char *why);
void colo__arb_etcd_ok(struct colo_arbiter *a);
/* The keys' values, byte for byte what a compare expects. */
int colo__arb_leader_value(char *buf, size_t len, const char *node, uint64_t gen, uint32_t ttl);
int colo__arb_sync_value(char *buf, size_t len, uint64_t gen, const char *secondary);
void colo__arb_seen(struct seen *s, const struct colo_etcd_kv *kv);
/* The lease was renewed by a call sent at `sent` (monotonic ns). */
void colo__arb_renewed(struct colo_arbiter *a, uint64_t sent);
void colo__arb_on_granted(void *ud, int rc, int64_t id, int64_t ttl_s, const char *why);

/* arbiter_take.c */
void colo__arb_take_step(struct colo_arbiter *a);
void colo__arb_take_end(struct colo_arbiter *a, int rc, uint64_t gen, uint32_t wait_ms,
		  const char *msg);
void colo__arb_on_watch_read(void *ud, int rc, const struct colo_etcd_kv *kv, int64_t rev,
		       const char *why);

#endif
