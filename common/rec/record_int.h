/*
 * record_int.h: what the files of recordings share and nothing outside
 * them uses.  record_index.c names segments and parses the index (for the
 * writer and the reader); recorder.c runs the recorder's queue and thread;
 * record_dir.c writes the directory for it.  struct colo_recorder is here
 * because the last two share it: the queue and st are under mu, the rest
 * is the recorder thread's (or colo_recorder_start()'s before the thread
 * runs).
 */
#ifndef COLO_RECORD_INT_H
#define COLO_RECORD_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "image.h"
#include "ramenc.h"
#include "record.h"

/* ---- record_index.c ---- */

/* DIR/seg-NNNNNN, malloc'd; NULL when out of memory. */
char *colo__rec_seg_path(const char *dir, uint32_t seg);
/* NNNNNN of a file named seg-NNNNNN; -1 for any other name. */
int colo__rec_segment_number(const char *name, uint32_t *seg);
void colo__rec_entry_free(struct colo_rec_entry *e);
/*
 * Parse an index file's bytes into entries (*out, malloc'd).  Stops at the
 * first entry that is torn or does not decode: *good is the byte length
 * of what parsed.  -ENOMEM, else 0.
 */
int colo__rec_parse_index(const uint8_t *data, size_t len, struct colo_rec_entry **out,
			  size_t *nout, size_t *good);

/* ---- the recorder (recorder.c, record_dir.c) ---- */

/* Stages kept for the node's hand-overs: enough for the checkpoints of a
 * batch.  Past the first, only small ones (up to COLO_REC_SPARE_PAGES), so
 * that a burst of big checkpoints does not leave their memory held here. */
#define COLO_REC_SPARES 16
#define COLO_REC_SPARE_PAGES 256
/* The recorder waits this long after a wake-up so that it takes checkpoints
 * in batches: a wake-up, a write to the segment and one to the index each. */
#define COLO_REC_BATCH_NS (4 * 1000 * 1000)
/* Records up to this size wait in the batch; bigger ones are written at once. */
#define COLO_REC_BATCH_BYTES (1u << 20)

struct job;

/* A device the node registered: what the recorder walks its payloads with. */
struct rec_dev {
	char idstr[COLO_IMAGE_NAME_MAX];
	uint32_t instance_id;
	const struct colo_vmstate_desc *vmsd;
};

struct seginfo {
	uint32_t no;
	uint64_t bytes;                  /* segment file size */
	uint64_t entries;
	uint64_t index_bytes;            /* of its entries in the index */
};

struct colo_recorder {
	struct colo_record_cfg cfg;
	char *dir;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *head, *tail;
	bool quit, started;
	bool key_queued;                 /* a full stream was queued */
	/* decoded pages' memory, back for the node's next hand-overs */
	struct colo_ram_stage spare[COLO_REC_SPARES];
	size_t nspare;
	struct colo_recorder_stats st;   /* under mu */

	/* the thread's own */
	int idx_fd, seg_fd, lock_fd;
	uint64_t idx_size;
	uint64_t meta_size, sync_size;   /* meta.json and sync-devices: they count
					    against max-bytes too */
	struct seginfo *segs;
	size_t nsegs;
	uint32_t next_seg;
	uint64_t since_key;
	struct colo_image img;
	bool have_img, failed;
	struct colo_buf kbuf;            /* sync-devices */
	/* A batch's records and index entries, written at its end (records
	 * first), and what it recorded, published then (colo__rec_flush()). */
	struct colo_buf wrec, widx;
	uint64_t batch_ck, batch_key, batch_seq;
	struct colo_image_memo memo;     /* keyframes: the last, and its pages */
	struct rec_dev *devs;            /* copied from cfg.sv at start */
	size_t ndevs;
	struct colo_image_sizer sizer;   /* walks payloads with devs */
};

/* recorder.c: one line to cfg.log; stop recording (the thread cannot go on). */
void colo__rec_log(struct colo_recorder *r, bool error, const char *fmt, ...)
	COLO_PRINTF(3, 4);
void colo__rec_fail(struct colo_recorder *r, const char *fmt, ...) COLO_PRINTF(2, 3);

/* record_dir.c, before the thread runs: flock DIR/lock; adopt what is there;
 * write meta.json (the format and cfg.meta). */
int colo__rec_lock_dir(struct colo_recorder *r, struct colo_err *err);
int colo__rec_adopt_dir(struct colo_recorder *r, struct colo_err *err);
int colo__rec_write_meta(struct colo_recorder *r, struct colo_err *err);

/*
 * record_dir.c, on the recorder thread; -1 after colo__rec_fail().  A new
 * segment becomes the current one (the batch written first); a record is
 * appended to it (a, then b; its offset in *off), then its index entry,
 * which names the devices and page kinds of r->img (all devices for a
 * keyframe, the touched ones otherwise).  Both wait in the batch, but for
 * a record of COLO_REC_BATCH_BYTES or more, written at once after it.
 */
int colo__rec_new_segment(struct colo_recorder *r);
/* Write the batch (records, then their entries) and publish what it
 * recorded; -1 when the writes failed (recording stopped). */
int colo__rec_flush(struct colo_recorder *r);
int colo__rec_put_record(struct colo_recorder *r, const void *a, size_t alen,
			 const void *b, size_t blen, uint64_t *off);
int colo__rec_put_entry(struct colo_recorder *r, uint64_t seq, uint64_t gen, uint64_t wall,
			uint64_t off, uint64_t len, uint64_t ram_len, uint64_t sum, bool key);
/* Replace sync-devices by the devices of r->img (a full stream just loaded). */
int colo__rec_put_sync(struct colo_recorder *r);
/* Drop the oldest segments while over max-bytes or max-checkpoints. */
void colo__rec_retention(struct colo_recorder *r);
/* Bytes of the directory: the index and every segment. */
uint64_t colo__rec_total_bytes(const struct colo_recorder *r);

#endif
