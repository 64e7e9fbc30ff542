/*
 * test_record.c: recordings made by real nodes (common/rec/record.h).
 *
 * A memtouch pair runs with checkpoints only on demand (colo-ctl
 * checkpoint), so the secondary's committed RAM holds still between them;
 * its verify reports each RAM block's XXH3 at that checkpoint.  The state a
 * recording rebuilds for checkpoint N (its keyframe, then the checkpoints
 * after it) must hash the same, whichever node recorded it and however the
 * recording started.  Retention must keep the newest checkpoints
 * reachable, a node killed while recording must leave every checkpoint
 * before the last one readable, and a full disk must stop only the
 * recording.
 */
#include "config.h"

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxhash.h>

#include "ctl.h"
#include "image.h"
#include "pair.h"
#include "ram.h"
#include "ramenc.h"
#include "record.h"
#include "testutil.h"

#define MAXN 64

struct pair {
	struct proc a, b;
	char rec_a[300], rec_b[300];
};

/* Hashes of the secondary's committed RAM, by checkpoint. */
struct hashes {
	uint64_t seq[MAXN];
	char hash[MAXN][300];        /* "BLOCK HASH" of the one RAM block */
	int n;
};

/* memtouch's writes: 64 random bytes (DELTA records, mostly), or whole
 * pages in sequence (LZ4 records: the recorders copy the pages the nodes
 * decoded instead of decoding them again). */
static const char *mt_pattern = "random", *mt_bytes = "64";

static void start_pair_bytes(struct pair *pr, const char *rec_a_flag, const char *rec_b_flag,
			     const char *keyframe_every, const char *max_ckpt,
			     const char *max_bytes)
{
	char listen[32];

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", pair_free_port());
	snprintf(pr->rec_a, sizeof(pr->rec_a), "%s/rec-a", pair_dir());
	snprintf(pr->rec_b, sizeof(pr->rec_b), "%s/rec-b", pair_dir());
	proc_start(&pr->b, pair_bin("colo-secondary"), "b", "--guest", "memtouch",
		   "--listen", listen, "--ram-mb", "8", "--record", rec_b_flag ? pr->rec_b : "",
		   "--keyframe-every", keyframe_every, "--record-max-checkpoints", max_ckpt,
		   "--record-max-bytes", max_bytes, NULL);
	proc_start(&pr->a, pair_bin("colo-primary"), "a", "--guest", "memtouch",
		   "--peer", listen, "--ram-mb", "8", "--memtouch-rate", "5000",
		   "--memtouch-pattern", mt_pattern, "--memtouch-bytes", mt_bytes,
		   "--checkpoint-interval-ms", "60000", "--record", rec_a_flag ? pr->rec_a : "",
		   "--keyframe-every", keyframe_every, "--record-max-checkpoints", max_ckpt, NULL);
	if (!wait_for(cond_protected, &pr->a, 20000)) {
		proc_dump_log(&pr->a);
		proc_dump_log(&pr->b);
		ck_abort_msg("the pair did not get protected");
	}
}

static void start_pair(struct pair *pr, const char *rec_a_flag, const char *rec_b_flag,
		       const char *keyframe_every, const char *max_ckpt)
{
	start_pair_bytes(pr, rec_a_flag, rec_b_flag, keyframe_every, max_ckpt, "0");
}

static void stop_pair(struct pair *pr)
{
	ck_assert_int_eq(proc_stop(&pr->a), 0);
	ck_assert_int_eq(proc_stop(&pr->b), 0);
}

/* colo-ctl checkpoint on a; returns its sequence. */
static uint64_t checkpoint(struct pair *pr)
{
	Colo__ControlResponse *r = ctl(&pr->a, COLO__CONTROL_REQUEST__CMD_CHECKPOINT, 0, NULL, 0);
	uint64_t seq = 0;

	ck_assert_msg(r && r->ok, "checkpoint refused: %s", r ? r->error : "no answer");
	ck_assert_int_eq(sscanf(r->message, "checkpoint %" SCNu64 " committed", &seq), 1);
	colo__control_response__free_unpacked(r, NULL);
	return seq;
}

/* b's committed RAM: "NAME HASH" of its one block, at checkpoint *seq. */
static void committed_hash(struct proc *b, uint64_t *seq, char *out, size_t len)
{
	Colo__ControlResponse *r = ctl(b, COLO__CONTROL_REQUEST__CMD_VERIFY, 0, NULL, 0);

	ck_assert(r && r->ok && r->verify);
	ck_assert_uint_eq(r->verify->n_block_hashes, 1);
	snprintf(out, len, "%s", r->verify->block_hashes[0]);
	*seq = r->verify->last_committed;
	colo__control_response__free_unpacked(r, NULL);
}

static void take(struct pair *pr, struct hashes *h, int count)
{
	for (int i = 0; i < count && h->n < MAXN; i++) {
		uint64_t seq, at;
		int tries = 0;

		/* Every state kept is new (memtouch writes between checkpoints;
		 * if none landed yet, take another), so a rebuild that lands on
		 * the wrong checkpoint cannot match. */
		do {
			if (tries++)
				usleep(10000);
			seq = checkpoint(pr);
			committed_hash(&pr->b, &at, h->hash[h->n], sizeof(h->hash[0]));
			ck_assert_uint_eq(at, seq);
		} while (h->n > 0 && strcmp(h->hash[h->n], h->hash[h->n - 1]) == 0 && tries < 100);
		if (h->n > 0)
			ck_assert_str_ne(h->hash[h->n], h->hash[h->n - 1]);
		h->seq[h->n++] = seq;
	}
}

/* record start/stop; want_err: NULL for success, else text the refusal holds */
static void record_ctl_err(struct proc *p, bool start, const char *dir, const char *want_err)
{
	Colo__ControlRequest req = COLO__CONTROL_REQUEST__INIT;
	Colo__RecordRequest rr = COLO__RECORD_REQUEST__INIT;
	Colo__ControlResponse *resp = NULL;
	struct colo_err err;

	req.version = COLO_CTL_VERSION;
	req.cmd_case = COLO__CONTROL_REQUEST__CMD_RECORD;
	rr.start = start;
	rr.dir = (char *)(dir ? dir : "");
	req.record = &rr;
	colo_err_clear(&err);
	ck_assert_msg(colo_ctl_call(p->sock, &req, &resp, 10000, &err) == 0, "%s", err.msg);
	ck_assert_msg(resp->ok == !want_err, "record %s: %s", start ? "start" : "stop",
		      resp->ok ? resp->message : resp->error);
	if (want_err)
		ck_assert_msg(strstr(resp->error, want_err), "record %s: '%s' lacks '%s'",
			      start ? "start" : "stop", resp->error, want_err);
	colo__control_response__free_unpacked(resp, NULL);
}

static void record_ctl(struct proc *p, bool start, const char *dir, bool want_ok)
{
	record_ctl_err(p, start, dir, want_ok ? NULL : "");
}

/* LZ4 page records in the checkpoints (not keyframes) check_recording saw. */
static uint64_t lz4_records;

/* Every checkpoint in h must rebuild from dir to the hash b reported. */
static int check_recording(const char *dir, const struct hashes *h, size_t *entries,
			   size_t *keyframes)
{
	struct colo_recording *rec;
	struct colo_err err;
	int found = 0;

	colo_err_clear(&err);
	ck_assert_msg(colo_recording_open(dir, &rec, &err) == 0, "%s", err.msg);
	ck_assert_msg(rec->unreachable == 0 && rec->torn_bytes == 0, "%s", rec->note);
	for (int i = 0; i < h->n; i++) {
		const struct colo_rec_entry *e = colo_recording_find(rec, h->seq[i]);
		struct colo_image img;
		char got[300];

		if (!e)
			continue;
		found++;
		ck_assert_msg(colo_recording_state(rec, e, &img, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(img.nblocks, 1);
		snprintf(got, sizeof(got), "%s %016" PRIx64, img.blocks[0].name,
			 colo_image_block_hash(&img.blocks[0]));
		ck_assert_msg(strcmp(got, h->hash[i]) == 0, "%s: checkpoint %" PRIu64
			      " rebuilds to %s, the secondary had %s", dir, h->seq[i], got,
			      h->hash[i]);
		colo_image_free(&img);
	}
	*entries = rec->n;
	*keyframes = 0;
	lz4_records = 0;
	for (size_t i = 0; i < rec->n; i++) {
		*keyframes += rec->e[i].keyframe;
		if (!rec->e[i].keyframe)
			lz4_records += rec->e[i].pages[COLO_PAGE_LZ4];
	}
	colo_recording_close(rec);
	return found;
}

/* Both nodes record from the start; both recordings rebuild every checkpoint. */
START_TEST(both_nodes_record_what_the_secondary_committed)
{
	struct pair pr;
	struct hashes h = { 0 };
	size_t n, keys;
	uint64_t last;

	if (_i == 1) {
		mt_pattern = "sequential";
		mt_bytes = "4096";
	}
	start_pair(&pr, "a", "b", "3", "0");
	take(&pr, &h, 8);
	mt_pattern = "random";
	mt_bytes = "64";
	stop_pair(&pr);
	last = h.seq[h.n - 1];
	ck_assert_int_eq(check_recording(pr.rec_b, &h, &n, &keys), 8);
	/* the sync (0), then every checkpoint: a keyframe at the sync and every third */
	ck_assert_uint_eq(n, last + 1);
	ck_assert_uint_eq(keys, 1 + last / 3);
	if (_i == 1)
		ck_assert_uint_gt(lz4_records, 0);
	ck_assert_int_eq(check_recording(pr.rec_a, &h, &n, &keys), 8);
	ck_assert_uint_eq(n, last + 1);
	ck_assert_uint_eq(keys, 1 + last / 3);
	if (_i == 1)
		ck_assert_uint_gt(lz4_records, 0);
}
END_TEST

/* colo-ctl record start on running nodes: the first keyframe is a snapshot. */
START_TEST(recording_starts_at_run_time)
{
	struct pair pr;
	struct hashes h = { 0 };
	size_t n, keys;
	uint64_t recorded;

	start_pair(&pr, NULL, NULL, "4", "0");
	take(&pr, &h, 2);
	record_ctl(&pr.b, true, pr.rec_b, true);
	/* one recorder per directory; a file is no directory */
	record_ctl_err(&pr.a, true, pr.rec_b, "is in use by another recorder");
	{
		char file[400];
		FILE *f;

		snprintf(file, sizeof(file), "%s/lock", pr.rec_b);
		f = fopen(file, "r");
		ck_assert_ptr_nonnull(f);
		fclose(f);
		record_ctl_err(&pr.a, true, file, "is not a directory");
	}
	record_ctl(&pr.a, true, pr.rec_a, true);
	record_ctl_err(&pr.b, true, pr.rec_b, "already recording to");
	take(&pr, &h, 6);
	record_ctl(&pr.a, false, NULL, true);
	record_ctl(&pr.b, false, NULL, true);
	record_ctl(&pr.b, false, NULL, false);        /* not recording */
	ck_assert(proc_log_has(&pr.b, "recording: a keyframe of the whole state"));
	ck_assert(proc_log_has(&pr.a, "recording: a keyframe of the whole state"));
	stop_pair(&pr);
	/* the checkpoints after the start, from a snapshot keyframe, then one
	 * every fourth */
	recorded = h.seq[h.n - 1] - h.seq[1];
	ck_assert_int_eq(check_recording(pr.rec_b, &h, &n, &keys), 6);
	ck_assert_uint_eq(n, recorded);
	ck_assert_uint_eq(keys, 1 + (recorded - 1) / 4);
	ck_assert_int_eq(check_recording(pr.rec_a, &h, &n, &keys), 6);
	ck_assert_uint_eq(n, recorded);
}
END_TEST

static int count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		n += strncmp(de->d_name, "seg-", 4) == 0;
	closedir(d);
	return n;
}

/* record-max-checkpoints: whole old segments go; what is kept rebuilds. */
START_TEST(retention_keeps_the_newest_reachable)
{
	struct pair pr;
	struct hashes h = { 0 };
	size_t n, keys;
	struct colo_recording *rec;
	struct colo_err err;

	start_pair(&pr, NULL, "b", "2", "5");
	take(&pr, &h, 12);
	stop_pair(&pr);
	/* segments of 2 (a keyframe and one more): at most 5 kept, the newest */
	ck_assert_int_ge(check_recording(pr.rec_b, &h, &n, &keys), 4);
	ck_assert_uint_le(n, 5);
	ck_assert_uint_ge(n, 4);
	ck_assert_int_le(count_segments(pr.rec_b), 3);
	colo_err_clear(&err);
	ck_assert_msg(colo_recording_open(pr.rec_b, &rec, &err) == 0, "%s", err.msg);
	ck_assert_uint_eq(rec->e[rec->n - 1].seq, h.seq[h.n - 1]);
	ck_assert(rec->e[0].keyframe);
	colo_recording_close(rec);
}
END_TEST

static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t t = 0;
	char path[600];
	struct stat st;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d))) {
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (de->d_name[0] != '.' && stat(path, &st) == 0)
			t += (uint64_t)st.st_size;
	}
	closedir(d);
	return t;
}

/* record-max-bytes: the directory stays under it (or one segment is left). */
START_TEST(retention_by_bytes)
{
	struct pair pr;
	struct hashes h = { 0 };
	size_t n, keys;
	uint64_t bytes;

	start_pair_bytes(&pr, NULL, "b", "3", "0", "250000");
	take(&pr, &h, 15);
	stop_pair(&pr);
	bytes = dir_bytes(pr.rec_b);
	fprintf(stderr, "# %" PRIu64 " bytes in %d segments\n", bytes, count_segments(pr.rec_b));
	ck_assert(bytes <= 250000 || count_segments(pr.rec_b) == 1);
	ck_assert_int_ge(check_recording(pr.rec_b, &h, &n, &keys), 1);
	{
		struct colo_recording *rec;
		struct colo_err err;

		colo_err_clear(&err);
		ck_assert_msg(colo_recording_open(pr.rec_b, &rec, &err) == 0, "%s", err.msg);
		ck_assert_uint_eq(rec->e[rec->n - 1].seq, h.seq[h.n - 1]);
		colo_recording_close(rec);
	}
}
END_TEST

/* kill -9 while checkpoints stream in: all but the last stay readable. */
START_TEST(a_killed_recorder_leaves_a_readable_recording)
{
	struct pair pr;
	struct colo_recording *rec;
	struct colo_err err;
	struct colo_image img;
	size_t bad = 0;

	start_pair(&pr, NULL, "b", "10", "0");
	{
		Colo__ControlResponse *r = ctl(&pr.a, COLO__CONTROL_REQUEST__CMD_SET_INTERVAL, 5,
					       NULL, 0);

		ck_assert(r && r->ok);
		colo__control_response__free_unpacked(r, NULL);
	}
	{
		struct wait_arg w = { &pr.b, 60, NULL };

		ck_assert(wait_for(cond_committed, &w, 20000));
	}
	proc_signal(&pr.b, SIGKILL);
	ck_assert(proc_wait(&pr.b, 10000));
	proc_stop(&pr.a);
	colo_err_clear(&err);
	ck_assert_msg(colo_recording_open(pr.rec_b, &rec, &err) == 0, "%s", err.msg);
	ck_assert_uint_ge(rec->n, 10);
	for (size_t i = 0; i + 1 < rec->n; i++) {
		if (colo_recording_state(rec, &rec->e[i], &img, &err) != 0) {
			fprintf(stderr, "# entry %zu: %s\n", i, err.msg);
			bad++;
		}
		colo_image_free(&img);
	}
	ck_assert_uint_eq(bad, 0);
	colo_recording_close(rec);
}
END_TEST

static char mounted[200];

/* A failed assertion exits the test: the mount must not outlive it. */
static void unmount_small(void)
{
	if (mounted[0])
		umount2(mounted, MNT_DETACH);
}

/*
 * A full disk (a 256 KiB tmpfs this test mounts; skipped where it cannot)
 * stops the recording with one error, and replication goes on.
 */
START_TEST(a_full_disk_stops_recording_not_replication)
{
	struct pair pr;
	struct hashes h = { 0 };
	char small[200];
	Colo__ControlResponse *r;

	snprintf(small, sizeof(small), "%s/small", pair_dir());
	ck_assert_int_eq(mkdir(small, 0700), 0);
	if (mount("tmpfs", small, "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700") != 0)
		colo_test_skip("cannot mount a tmpfs here (%s)", strerror(errno));
	snprintf(mounted, sizeof(mounted), "%s", small);
	atexit(unmount_small);
	start_pair(&pr, NULL, NULL, "1", "0");
	snprintf(pr.rec_b, sizeof(pr.rec_b), "%s/rec", small);
	record_ctl(&pr.b, true, pr.rec_b, true);
	take(&pr, &h, 12);
	r = ctl(&pr.b, COLO__CONTROL_REQUEST__CMD_STATUS, 0, NULL, 0);
	ck_assert(r && r->ok);
	ck_assert_msg(strstr(r->status->recording, "stopped: ") &&
		      strstr(r->status->recording, "No space left on device"), "%s",
		      r->status->recording);
	colo__control_response__free_unpacked(r, NULL);
	ck_assert(proc_log_has(&pr.b, "stopped: "));
	ck_assert(proc_log_has(&pr.b, "(replication goes on)"));
	/* replication went on: every checkpoint committed on b */
	ck_assert_uint_eq(h.n, 12);
	ck_assert(wait_for(cond_protected, &pr.b, 1000));
	record_ctl(&pr.b, false, NULL, true);
	stop_pair(&pr);
	ck_assert_int_eq(umount2(small, MNT_DETACH), 0);
	mounted[0] = '\0';
}
END_TEST

/* Wait (5 s at most) until the recorder has dropped n checkpoints and
 * has nothing queued. */
static void wait_dropped(struct colo_recorder *r, uint64_t n)
{
	struct colo_recorder_stats st;

	for (int i = 0; i < 500; i++) {
		colo_recorder_stats(r, &st);
		if (st.dropped == n && st.queued_bytes == 0)
			break;
		usleep(10000);
	}
	ck_assert_uint_eq(st.dropped, n);
	ck_assert_uint_eq(st.queued_bytes, 0);
}

/* Hand the recorder checkpoint seq with a fresh stage of npages pages;
 * the capacity of the stage that came back (0: none). */
static size_t hand_over(struct colo_recorder *r, uint64_t seq, uint32_t npages)
{
	static const uint8_t page[4096] = { 1 };
	struct colo_ram_block blk = { .name = "ram" }, *blocks[1] = { &blk };
	struct iovec v = { (void *)"x", 1 };
	struct colo_ram_stage pages;
	struct colo_err err;
	size_t cap;

	colo_err_clear(&err);
	colo_ram_stage_init(&pages);
	for (uint32_t i = 0; i < npages; i++)
		ck_assert_int_eq(colo_ram_stage_add(&pages, 0, i, page, &err), 0);
	colo_recorder_checkpoint_decoded(r, seq, 1, 0, &v, 1, &v, 1, &pages, blocks, 1);
	cap = pages.cap;
	colo_ram_stage_free(&pages);
	return cap;
}

/*
 * The pages a node hands over with a checkpoint are taken, not copied:
 * the node's stage comes back empty, and once the recorder is done with
 * them (here: dropped, no keyframe yet) their memory comes back at the
 * next hand-over, so a node that stages every checkpoint reuses it.
 */
START_TEST(decoded_pages_are_taken_and_given_back)
{
	struct colo_record_cfg cfg = { 0 };
	struct colo_recorder *r;
	struct colo_ram_stage pages;
	struct colo_ram_block blk = { .name = "ram" }, *blocks[1] = { &blk };
	struct iovec v = { (void *)"x", 1 };
	struct colo_err err;
	uint8_t page[4096] = { 1 };
	uint8_t *first;
	unsigned got_big = 0;
	char dir[300];

	snprintf(dir, sizeof(dir), "%s/rec-taken", pair_dir());
	cfg.dir = dir;
	cfg.keyframe_every = 10;
	cfg.queue_max = 64 << 20;
	colo_err_clear(&err);
	ck_assert_msg(colo_recorder_start(&cfg, &r, &err) == 0, "%s", err.msg);
	colo_ram_stage_init(&pages);
	for (uint32_t i = 0; i < 300; i++)
		ck_assert_int_eq(colo_ram_stage_add(&pages, 0, i, page, &err), 0);
	first = pages.pages;
	colo_recorder_checkpoint_decoded(r, 1, 1, 0, &v, 1, &v, 1, &pages, blocks, 1);
	/* taken: nothing to give back yet */
	ck_assert_uint_eq(pages.n, 0);
	ck_assert_uint_eq(pages.cap, 0);
	ck_assert_ptr_null(pages.pages);
	wait_dropped(r, 1);
	ck_assert_int_eq(colo_ram_stage_add(&pages, 0, 0, page, &err), 0);
	colo_recorder_checkpoint_decoded(r, 2, 1, 0, &v, 1, &v, 1, &pages, blocks, 1);
	/* the first stage, back and empty */
	ck_assert_ptr_eq(pages.pages, first);
	ck_assert_uint_eq(pages.n, 0);
	ck_assert_uint_ge(pages.cap, 300);

	/* Checkpoints handed over faster than the recorder takes them (it
	 * takes them in batches): each stage comes back, not just one. */
	colo_ram_stage_free(&pages);
	for (uint64_t seq = 3; seq < 3 + 6; seq++)
		hand_over(r, seq, 4);
	wait_dropped(r, 8);
	for (uint64_t seq = 9; seq < 9 + 6; seq++)
		ck_assert_msg(hand_over(r, seq, 1) > 0, "hand-over %" PRIu64 " got no stage back",
			      seq - 8);

	/* Big stages are not hoarded: past the first, the recorder frees them. */
	wait_dropped(r, 14);
	for (uint64_t seq = 15; seq < 15 + 8; seq++)
		hand_over(r, seq, 300);
	wait_dropped(r, 22);
	for (uint64_t seq = 23; seq < 23 + 3; seq++)
		got_big += hand_over(r, seq, 1) >= 300;
	ck_assert_uint_le(got_big, 1);
	colo_recorder_stop(r);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("record");
	TCase *tc = tcase_create("record");

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, both_nodes_record_what_the_secondary_committed, 0, 2);
	tcase_add_test(tc, recording_starts_at_run_time);
	tcase_add_test(tc, decoded_pages_are_taken_and_given_back);
	tcase_add_test(tc, retention_keeps_the_newest_reachable);
	tcase_add_test(tc, retention_by_bytes);
	tcase_add_test(tc, a_killed_recorder_leaves_a_readable_recording);
	tcase_add_test(tc, a_full_disk_stops_recording_not_replication);
	suite_add_tcase(s, tc);
	return colo_test_main(s);
}
