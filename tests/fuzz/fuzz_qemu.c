/*
 * fuzz_qemu.c: libFuzzer target for colo-primary's reading of QEMU's COLO
 * stream (guests/qemu_relay.c, DESIGN.md §9): the bytes QEMU sends on its
 * migration socket, the initial migration then checkpoints, read by the
 * relay under tests/qemu_harness.h (a real socket, the relay's own
 * thread-free entry points, its answers collected).
 *
 *   input := u8 split_seed, bytes from QEMU
 *
 * The bytes are written as fast as the relay reads them and, when
 * split_seed is not 0, again in pieces that the relay reads one at a time
 * (qemu_harness.h).  Beyond the sanitizers the target checks what the
 * relay promises, and abort()s when a promise is broken:
 *   - it ends with a message saying why (closing the input ends every
 *     run), never "out of memory" on a small input;
 *   - its answers follow the protocol: READY, then REPLY, RECEIVED, LOADED
 *     per checkpoint, one per checkpoint taken, maybe a last REPLY;
 *   - once ready, the mirror and the device are exactly as at the last
 *     notification (the end of the initial migration or of a checkpoint):
 *     a checkpoint that breaks off applies nothing; the device state runs
 *     from a FULL section to EOF and the vmdesc is kept;
 *   - the end, the answers and the state do not depend on how the bytes
 *     arrived.
 * Inputs whose first MEM_SIZE announces more than FUZZ_RAM_MAX are
 * skipped: the mirror would be that big (the relay takes QEMU's word for
 * its RAM size).  FUZZ_VERBOSE=1 prints how each run ended, for triage.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "colomsg.h"
#include "fuzz_check.h"
#include "fuzz_stream.h"
#include "qemu_harness.h"
#include "qemu_int.h"
#include "ramfmt.h"
#include "stream.h"

#define FUZZ_RAM_MAX (1ull << 30)

/* ---- the RAM an input asks for ---- */

struct pre {
	struct colo_ram_reader rr;
	uint64_t total;
};

static int pre_mem_size(void *ud, const struct colo_ram_block_info *b, size_t n,
			uint64_t total, struct colo_err *err)
{
	struct pre *p = ud;

	(void)total;
	for (size_t i = 0; i < n; i++)
		p->total += b[i].length;
	return colo_err_set(err, ECANCELED, "seen");
}

static int pre_section(void *ud, const struct colo_section_info *s,
		       struct colo_section_handler *h, struct colo_err *err)
{
	struct pre *p = ud;

	if (strcmp(s->idstr, COLO_RAM_IDSTR) != 0)
		return colo_err_set(err, ECANCELED, "devices");
	h->payload = colo_ram_reader_payload;
	h->ctx = &p->rr;
	return 0;
}

static const struct colo_stream_ops pre_ops = { .section = pre_section };

/* The first MEM_SIZE, read more leniently than the relay reads it (any RAM
 * section, any command): the blocks the relay would make, or fewer. */
static bool ram_too_big(const uint8_t *d, size_t n)
{
	struct colo_ram_sink sink = { pre_mem_size, NULL, NULL };
	struct colo_stream_reader *r;
	struct pre p;

	memset(&p, 0, sizeof(p));
	sink.ud = &p;
	colo_ram_reader_init(&p.rr, &sink, COLO_PAGE_KINDS_ALL);
	r = colo_stream_reader_new(&pre_ops, &p, COLO_SR_NO_VMDESC);
	CHECK(r != NULL, "cannot make a reader");
	(void)colo_stream_reader_feed(r, d, n);
	colo_stream_reader_free(r);
	colo_ram_reader_free(&p.rr);
	return p.total > FUZZ_RAM_MAX;
}

/* ---- one run ---- */

/*
 * The message with every "offset N" made "offset #".  The offsets the
 * relay reports in a checkpoint are its stream reader's, which stopped
 * counting at the first device section of the initial migration somewhere
 * in the piece that held it (colo_stream_reader_feed() does not count a
 * call that fails): they depend on how the bytes arrived.  Everything else
 * in the message must not.
 */
static void without_offsets(const char *in, char *out, size_t cap)
{
	static const char word[] = "offset ";
	size_t o = 0;

	while (*in && o + 1 < cap) {
		if (strncmp(in, word, sizeof(word) - 1) == 0 && in[sizeof(word) - 1] >= '0' &&
		    in[sizeof(word) - 1] <= '9' && o + sizeof(word) < cap) {
			memcpy(out + o, word, sizeof(word) - 1);
			o += sizeof(word) - 1;
			out[o++] = '#';
			in += sizeof(word) - 1;
			while (*in >= '0' && *in <= '9')
				in++;
			continue;
		}
		out[o++] = *in++;
	}
	out[o] = '\0';
}

static void note(const char *who, const struct qh_run *run)
{
	static int verbose = -1;

	if (verbose < 0)
		verbose = getenv("FUZZ_VERBOSE") != NULL;
	if (verbose)
		fprintf(stderr, "%s: %zu answers, %zu checkpoints, %zu turns (%zu stalled), "
			"ended: %s\n", who, run->nanswers, (size_t)run->q->ckpts, run->gates,
			run->stalls, run->ended);
}

static struct qh_run *run_relay(const uint8_t *d, size_t n, uint8_t split, const char *who)
{
	static const char oom[] = "out of memory";
	static const char stream_oom[] = "QEMU's migration stream: out of memory";
	struct qh_opts o = { .split_seed = split };
	struct qh_run *run = NULL;
	struct colo_err err;
	const struct qemu_guest *q;
	size_t ckpts = 0;
	bool ready;

	colo_err_clear(&err);
	CHECK(qh_run(d, n, &o, &run, &err) == 0, "%s: harness: %s", who, err.msg);
	q = run->q;
	note(who, run);
	CHECK(run->ended[0] != '\0', "%s: the relay ended without a reason", who);
	/* (Names quoted from the stream may hold any byte, "out of memory" or a
	 * newline too: the log keeps the first line.  Only a message that is
	 * out of memory starts so.) */
	CHECK(strncmp(run->ended, oom, strlen(oom)) != 0 &&
	      strncmp(run->ended, stream_oom, strlen(stream_oom)) != 0,
	      "%s: %s on a small input", who, run->ended);
	CHECK(qh_answers_ok(run, &ckpts), "%s: %zu answers out of protocol order", who,
	      run->nanswers);
	CHECK(ckpts == q->ckpts, "%s: %zu checkpoints answered, %zu taken", who, ckpts,
	      (size_t)q->ckpts);
	ready = run->nanswers > 0;
	CHECK(ready == q->ready && ready == (run->notified > 0) && (ready || !q->ckpts),
	      "%s: READY %d, ready %d, %zu notifications", who, ready, q->ready,
	      run->notified);
	CHECK(run->begun || !ready, "%s: ready without its RAM blocks", who);
	/* Where the stream says QEMU waits for an answer, one must come. */
	CHECK(run->stalls == 0, "%s: the relay waits for bytes where QEMU waits for its "
	      "answer (%zu answers; ended: %s)", who, run->nanswers, run->ended);
	if (ready) {
		CHECK(run->notified == 1 + q->ckpts && run->notify_ckpts == q->ckpts,
		      "%s: %zu notifications for %zu checkpoints", who, run->notified,
		      (size_t)q->ckpts);
		/* Nothing of a checkpoint that broke off reached the state. */
		CHECK(run->notify_hash == qh_state_hash(q),
		      "%s: the mirror or the device changed after the last checkpoint "
		      "(ended: %s)", who, run->ended);
		CHECK(q->dev.blob_len >= 1 && q->dev.blob[q->dev.blob_len - 1] == COLO_SEC_EOF &&
		      (!q->ckpts || q->dev.blob[0] == COLO_SEC_FULL),
		      "%s: device state of %u bytes not FULL..EOF", who, q->dev.blob_len);
		CHECK(q->dev.vmdesc_len > 0 && q->vd && q->nblocks > 0,
		      "%s: ready without vmdesc or blocks", who);
	}
	return run;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qh_run *whole, *split;
	const uint8_t *d = data + 1;
	size_t n;

	if (size < 1)
		return 0;
	n = size - 1;
	if (ram_too_big(d, n))
		return 0;
	whole = run_relay(d, n, 0, "whole");
	if (data[0]) {
		char a[COLO_ERR_MAX], b[COLO_ERR_MAX];

		split = run_relay(d, n, data[0], "pieces");
		without_offsets(whole->ended, a, sizeof(a));
		without_offsets(split->ended, b, sizeof(b));
		CHECK(strcmp(a, b) == 0,
		      "whole and split input end differently:\n  whole:  %s\n  pieces: %s",
		      whole->ended, split->ended);
		CHECK(whole->nanswers == split->nanswers &&
		      memcmp(whole->answers, split->answers,
			     whole->nanswers * sizeof(*whole->answers)) == 0,
		      "whole and split input: %zu and %zu answers", whole->nanswers,
		      split->nanswers);
		CHECK(qh_state_hash(whole->q) == qh_state_hash(split->q),
		      "whole and split input: different mirror or device");
		qh_run_free(split);
	}
	qh_run_free(whole);
	return 0;
}
