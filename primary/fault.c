/*
 * fault.c: fault injection for the tests (`--fault abort-at=PHASE[,after=N]`,
 * a hidden option): the primary kills itself with SIGKILL at a named point
 * of a checkpoint, as a crash would, with no cleanup and no last words on
 * the wire.  tests/test_pair and tests/test_kv_loss kill it at every point.
 * `stop-at=PHASE` stops it instead (SIGSTOP, once), as a freeze would:
 * tests/test_arbiter wakes it after its secondary took over.
 * `hold-stream` makes every checkpoint's stream hold back after each part,
 * as a loop's turn that ran long does (ckpt.c, stream_ready): each chunk
 * and the tail then go at a later turn, from a part's write callback.
 * Loop thread only.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "primary_int.h"

static const char *const fault_names[] = {
	[F_NONE] = "", [F_PAUSED] = "paused", [F_STAGED] = "staged",
	[F_REQUEST] = "request", [F_ENCODED] = "encoded", [F_MID_SEND] = "mid-send",
	[F_SENT] = "sent", [F_RECEIVED] = "received", [F_SYNC] = "mid-sync",
};

#define NFAULTS (sizeof(fault_names) / sizeof(fault_names[0]))

int primary_fault_parse(struct primary_fault_cfg *f, const char *spec, struct colo_err *err)
{
	char buf[128], *save = NULL;

	f->at = F_NONE;
	f->after = 5;
	f->stop = false;
	f->hold_stream = false;
	if (!spec || !*spec)
		return 0;
	snprintf(buf, sizeof(buf), "%s", spec);
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "abort-at=", 9) == 0 || strncmp(tok, "stop-at=", 8) == 0) {
			const char *phase = strchr(tok, '=') + 1;

			f->stop = tok[0] == 's';
			for (size_t i = 1; i < NFAULTS; i++)
				if (strcmp(phase, fault_names[i]) == 0)
					f->at = (enum primary_fault)i;
			if (f->at == F_NONE)
				return colo_err_set(err, EINVAL, "fault: unknown phase '%s'",
						    phase);
		} else if (strncmp(tok, "after=", 6) == 0) {
			f->after = strtoull(tok + 6, NULL, 10);
		} else if (strcmp(tok, "hold-stream") == 0) {
			f->hold_stream = true;
		} else {
			return colo_err_set(err, EINVAL, "fault: cannot parse '%s'", tok);
		}
	}
	if (f->at != F_NONE)
		colo_log_warn("fault injection armed: %s at %s after checkpoint %" PRIu64,
			      f->stop ? "stop" : "abort", fault_names[f->at], f->after);
	if (f->hold_stream)
		colo_log_warn("fault injection armed: every stream holds back after each part");
	return 0;
}

void primary_fault_at(const struct primary_fault_cfg *f, enum primary_fault where,
		      uint64_t seq)
{
	static bool stopped;

	if (f->at != where || (where != F_SYNC && seq < f->after))
		return;
	if (f->stop) {
		if (stopped)
			return;
		stopped = true;
		colo_log_warn("fault injection: stopping this process at %s (checkpoint %"
			      PRIu64 ")", fault_names[where], seq);
		kill(getpid(), SIGSTOP);
		return;
	}
	colo_log_warn("fault injection: killing this process at %s (checkpoint %" PRIu64
		      ")", fault_names[where], seq);
	kill(getpid(), SIGKILL);
}

bool primary_fault_mid_send(const struct primary_fault_cfg *f, bool full, uint64_t seq)
{
	return full ? f->at == F_SYNC : f->at == F_MID_SEND && seq >= f->after;
}

void primary_fault_half_send(const struct primary_fault_cfg *f, struct colo_repl_conn *c,
			     const uv_buf_t *bufs, int n, bool full, uint64_t seq)
{
	size_t total = 0, half, done = 0;

	for (int i = 0; i < n; i++)
		total += bufs[i].len;
	half = total / 2;
	for (int i = 0; i < n && done < half; i++) {
		size_t off = 0;

		while (off < bufs[i].len && done < half) {
			size_t want = bufs[i].len - off < half - done ? bufs[i].len - off :
				      half - done;
			int w = colo_repl_try_write(c, bufs[i].base + off, want);

			if (w == UV_EAGAIN) {
				usleep(100);
				continue;
			}
			if (w < 0)
				break;
			off += (size_t)w;
			done += (size_t)w;
		}
	}
	primary_fault_at(f, full ? F_SYNC : F_MID_SEND, seq);
}
