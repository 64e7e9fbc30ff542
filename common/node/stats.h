/*
 * stats.h: checkpoint phase timings and rates for status (DESIGN.md §5).
 *
 * Each phase keeps its last 1000 samples in a ring; percentiles are
 * computed on demand (status is rare, checkpoints are not).  Rates (dirty
 * pages/s, bytes/s) are taken over the checkpoints of the last few seconds.
 * One thread (the loop) records and reads.
 */
#ifndef COLO_STATS_H
#define COLO_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"        /* colo_now_ns(), which callers pair with stats */

enum colo_phase {
	COLO_PHASE_PAUSE,        /* stopping the guest */
	COLO_PHASE_SYNC,         /* harvesting the dirty bitmap */
	COLO_PHASE_COPY,         /* staging dirty pages and device state */
	COLO_PHASE_RESUME,       /* letting the guest go */
	COLO_PHASE_ENCODE,       /* encoding the staged pages */
	COLO_PHASE_SEND,         /* writing the checkpoint to the socket */
	COLO_PHASE_ACK,          /* sent to VMSTATE_RECEIVED */
	COLO_PHASE_ROUND_TRIP,   /* pause start to VMSTATE_LOADED */
	/* the secondary's */
	COLO_PHASE_DECODE,       /* in the decoder: the RAM part, as it arrives */
	COLO_PHASE_LOAD,         /* device stream checked and loaded */
	COLO_PHASE_COMMIT,       /* the RAM cache into committed RAM, recorded */
	COLO_PHASES
};

/* The phases a node of this role times: [first, end). */
#define COLO_PHASE_PRIMARY_FIRST COLO_PHASE_PAUSE
#define COLO_PHASE_PRIMARY_END COLO_PHASE_DECODE
#define COLO_PHASE_SECONDARY_FIRST COLO_PHASE_DECODE
#define COLO_PHASE_SECONDARY_END COLO_PHASES

/* Why a checkpoint was taken (colo-ctl stats: checkpoints by cause). */
enum colo_ckpt_cause {
	COLO_CAUSE_INTERVAL,     /* checkpoint-interval-ms passed */
	COLO_CAUSE_OUTPUT,       /* held output asked (buffer mode's group commit) */
	COLO_CAUSE_REQUEST,      /* colo-ctl checkpoint */
	COLO_CAUSE_MISMATCH,     /* compare: the secondary said something else */
	COLO_CAUSE_TIMEOUT,      /* compare: its answer was compare-timeout-ms late */
	COLO_CAUSE_UNCOMPARED,   /* compare: a unit that could not be sent */
	COLO_CAUSES
};

const char *colo_ckpt_cause_name(enum colo_ckpt_cause c);

#define COLO_STATS_SAMPLES 1000
/* Phase histograms: cumulative counts of samples at or under each bound
 * (µs), since the node started, for the metrics endpoint; the last bucket
 * is everything. */
#define COLO_STATS_BUCKETS 17
extern const uint32_t colo_stats_bucket_us[COLO_STATS_BUCKETS - 1];
#define COLO_STATS_RATE_WINDOW 64

const char *colo_phase_name(enum colo_phase p);

struct colo_phase_ring {
	uint32_t us[COLO_STATS_SAMPLES];
	uint32_t n;                 /* samples held (<= COLO_STATS_SAMPLES) */
	uint32_t next;
	uint64_t total;             /* samples ever recorded */
	uint64_t sum_us;            /* of them all */
	uint64_t buckets[COLO_STATS_BUCKETS];   /* samples <= bound (not cumulative) */
};

struct colo_stats {
	struct colo_phase_ring phases[COLO_PHASES];
	struct {
		uint64_t t_ns, pages, bytes;
	} recent[COLO_STATS_RATE_WINDOW];
	uint32_t recent_next, recent_n;
	/* counters */
	uint64_t checkpoints, checkpoints_failed;
	uint64_t pages_sent, pages_unchanged, pages_by_kind[16];
	uint64_t bytes_by_kind[16];      /* record bytes of the pages sent, by kind */
	uint64_t bytes_sent, bytes_received;
	uint64_t loop_stalls;            /* callbacks longer than a heartbeat interval */
	uint64_t loop_busy_max_ns;       /* the longest busy stretch of the loop */
	uint64_t loop_busy_over_10ms;    /* busy stretches over 10 ms */
	uint64_t loop_cpu_max_ns;        /* the loop thread's CPU in one turn, longest */
	uint64_t loop_cpu_over_10ms;     /* turns that used over 10 ms of CPU */
	uint64_t ckpt_pages_max;         /* the largest checkpoint, in pages */
	uint64_t full_syncs, failovers;
	uint64_t pipelined;              /* checkpoints started while the one
					    before awaited its acknowledgement */
	uint64_t streams_held;           /* a stream waited for a later turn */
	uint64_t heartbeats_sent, heartbeats_received, heartbeats_refused;
	uint64_t peers_refused;          /* replication peers that failed authentication */
	uint64_t by_cause[COLO_CAUSES];  /* checkpoints started, by why */
	/* output-mode compare: primary: units sent, matched, not; secondary:
	 * units run (compared) and dropped (a checkpoint held them) */
	uint64_t compared, matched, mismatches, compare_dropped;
};

void colo_stats_init(struct colo_stats *s);
void colo_stats_phase(struct colo_stats *s, enum colo_phase p, uint64_t ns);
/* p50 and p99 in microseconds; count = samples they come from. */
void colo_stats_percentiles(const struct colo_stats *s, enum colo_phase p,
			    double *p50, double *p99, uint64_t *count);
/* A checkpoint finished at now_ns with this many dirty pages and bytes. */
void colo_stats_checkpoint(struct colo_stats *s, uint64_t now_ns, uint64_t pages,
			   uint64_t bytes);
/* Rates over the recent checkpoints, as of now_ns (0 when idle > 5 s). */
void colo_stats_rates(const struct colo_stats *s, uint64_t now_ns, double *pages_per_s,
		      double *bytes_per_s);

#endif
