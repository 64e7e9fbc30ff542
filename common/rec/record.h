/*
 * record.h: recordings of checkpoints (DESIGN.md §7), written by a node and
 * read by colo-replay.
 *
 * A recording is a directory:
 *
 *   index          be32 length + RecordIndexEntry (proto/colo.proto), one
 *                  per recorded checkpoint, appended in the order written
 *   seg-NNNNNN     segment files; each begins with a keyframe and holds the
 *                  checkpoints after it, their bytes back to back
 *   lock           flock'ed by the recorder writing here: one at a time
 *   meta.json      the format, and what the node said of itself when the
 *                  recorder started (its name, role, guest and the guest's
 *                  own keys, e.g. the VM's QEMU arguments)
 *   sync-devices   the devices of the newest full stream the node gave (a
 *                  sync or a snapshot): a full stream without RAM, kept
 *                  whatever retention deletes, for what only a sync
 *                  carries (the qemu guest's description of QEMU's devices)
 *
 * A keyframe is a whole full stream (header .. EOF, vmdesc): the initial
 * sync, a later sync, or the recorder's own image of the state written out
 * every keyframe-every checkpoints (common/image.h).  Any other checkpoint
 * is recorded as the secondary receives it: the RAM continuation stream
 * that follows VMSTATE_SEND (ram_length bytes) and then the device stream
 * of VMSTATE_SIZE.  So checkpoint N is reached from its segment's keyframe
 * and at most keyframe-every - 1 checkpoints after it, and deleting whole
 * segments (oldest first) never leaves a kept checkpoint unreachable.
 *
 * Device payloads whose size changes between checkpoints: the recorder
 * walks each payload with the description the node registered
 * (colo_image_measure()) and the index entry of every record (format 2)
 * gives the payload bytes of each device section in it, so readers
 * need no description: colo_recording_step() sizes the devices of a
 * record by its entry.  Format 1 entries (older recorders) have no sizes:
 * their devices are sized by the vmdesc and cannot change size.
 *
 * Crash safety: a record's bytes are written before its index entry, and
 * an entry is believed only when its bytes are all in the segment (and, by
 * verify and by every reader that uses them, when their XXH3-64 matches the
 * entry's checksum).  A crash leaves at worst a torn last entry or a record
 * with no entry: every checkpoint before the last one stays readable.  A
 * recorder that opens a directory with a torn index tail cuts it off, and
 * starts a new segment.
 *
 * Writer: the node calls colo_recorder_* from its loop; bytes are copied
 * into a queue and written, decoded into the recorder's image and
 * keyframed on the recorder's own thread, so recording is off the
 * checkpoint's critical path.  A full disk, an I/O error, bytes that do not
 * decode, or a queue over its limit stop the recording with one logged
 * error; replication goes on untouched.
 *
 * Files: recorder.c (the writer's queue and thread) and record_dir.c (the
 * directory it writes), recording.c (the reader), record_index.c (the
 * index format both read, and sizing a record's devices by its entry).
 */
#ifndef COLO_RECORD_H
#define COLO_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "err.h"
#include "image.h"
#include "ramfmt.h"

#define COLO_REC_INDEX "index"
#define COLO_REC_SEG_FMT "seg-%06u"
#define COLO_REC_META "meta.json"
#define COLO_REC_SYNC "sync-devices"
#define COLO_REC_ENTRY_MAX (1u << 20)       /* one index entry, encoded */
/* The format this build writes, and the newest it reads (docs/replay.md). */
#define COLO_REC_FORMAT 2

struct colo_savevm;

struct colo_record_cfg {
	const char *dir;
	uint32_t keyframe_every;         /* >= 1 */
	uint64_t max_bytes;              /* 0: no limit */
	uint64_t max_checkpoints;        /* 0: no limit */
	uint64_t queue_max;              /* bytes waiting before recording stops */
	/*
	 * Where the recorder's own events go (its stop, a torn index cut), one
	 * line each, from any thread; NULL: nowhere.  error is true for a stop.
	 * rec/ sits below the node's log (common/node/log.h), so the node
	 * passes one in.
	 */
	void (*log)(void *ud, bool error, const char *line);
	void *log_ud;
	/*
	 * The node's registry: each device payload is walked with the
	 * description registered for it, so that devices whose payload size
	 * changes are followed.  Its device table is copied at start (the
	 * descriptions are static tables).  NULL: payloads keep their size.
	 */
	const struct colo_savevm *sv;
	/*
	 * What the node says of itself in meta.json: "key", "value", ...,
	 * NULL (config keys and values as text).  Copied at start; may be NULL.
	 */
	const char *const *meta;
};

/* ---- writing (nodes) ---- */

struct colo_recorder;

/*
 * Create dir if needed (mode 0700), check it is writable, cut a torn index
 * tail, and start the recorder thread.  Nothing is written until the first
 * keyframe arrives: checkpoints before it are skipped.
 */
int colo_recorder_start(const struct colo_record_cfg *cfg, struct colo_recorder **out,
			struct colo_err *err);

/*
 * A full stream (a sync, or a snapshot of the state at checkpoint seq): a
 * keyframe that starts a new segment.  The stream is the concatenation of
 * the n pieces; the bytes are copied.  r may be NULL (not recording).
 */
void colo_recorder_full(struct colo_recorder *r, uint64_t seq, uint64_t generation,
			uint64_t wall_ns, const struct iovec *iov, int n);

/*
 * A committed checkpoint as the secondary received it: the RAM stream is
 * the concatenation of ram[0..nram), the device stream of dev[0..ndev).
 */
void colo_recorder_checkpoint(struct colo_recorder *r, uint64_t seq, uint64_t generation,
			      uint64_t wall_ns, const struct iovec *ram, int nram,
			      const struct iovec *dev, int ndev);

/*
 * The same, with the pages the node has decoded already (the primary's
 * staged pages, the secondary's decoded ones): each one's content after
 * this checkpoint, pages->refs indexing blocks, covering every page the
 * checkpoint carries (struct colo_image_given).  The recorder then copies
 * them instead of decoding the records again.  It takes them rather than
 * copying: *pages is swapped with a stage it is done with (or an empty
 * one), so a node that stages every checkpoint reuses the same memory.
 * *pages comes back reset (no pages) in every case.
 */
struct colo_ram_block;
struct colo_ram_stage;
void colo_recorder_checkpoint_decoded(struct colo_recorder *r, uint64_t seq,
				      uint64_t generation, uint64_t wall_ns,
				      const struct iovec *ram, int nram, const struct iovec *dev,
				      int ndev, struct colo_ram_stage *pages,
				      struct colo_ram_block *const *blocks, size_t nblocks);

/*
 * True while the recorder runs and has no keyframe, written or queued:
 * the node should hand it a full stream of a committed state soon (the
 * checkpoints it is given until then are skipped).
 */
bool colo_recorder_wants_keyframe(struct colo_recorder *r);

struct colo_recorder_stats {
	bool running;                    /* false once stopped by an error */
	bool have_keyframe;
	char error[COLO_ERR_MAX];        /* why it stopped */
	uint64_t checkpoints;            /* recorded */
	uint64_t keyframes;
	uint64_t bytes;                  /* in the directory now */
	uint64_t dropped;                /* checkpoints skipped: no keyframe yet */
	uint64_t queued_bytes;
	uint64_t last_seq;
};
void colo_recorder_stats(struct colo_recorder *r, struct colo_recorder_stats *st);
const char *colo_recorder_dir(const struct colo_recorder *r);

/* Write what is queued, then stop the thread and close.  NULL is fine. */
void colo_recorder_stop(struct colo_recorder *r);

/* ---- reading (colo-replay) ---- */

struct colo_rec_entry {
	uint64_t seq, generation, wall_ns;
	uint32_t segment;                /* NNNNNN of seg-NNNNNN */
	uint64_t offset, length, ram_length;
	uint64_t checksum;
	bool keyframe;
	uint64_t pages[COLO_PAGE_KINDS]; /* page records by kind */
	char **devices;                  /* "idstr/instance" */
	size_t ndevices;
	/* format 2: payload bytes of the record's device sections, in their
	 * order, devices[i] naming the i-th (ndevice_bytes == ndevices) */
	uint64_t *device_bytes;
	size_t ndevice_bytes;
	uint32_t format;                 /* 1 or 2 */
	size_t key;                      /* index of its segment's keyframe entry */
	uint32_t entry_bytes;            /* of its entry in the index */
};

struct colo_recording {
	char *dir;
	struct colo_rec_entry *e;        /* in index order */
	size_t n;
	/* Progress of long calls, for a caller that shows it (NULL: none;
	 * set after open): colo_recording_state() says "rebuilding
	 * checkpoint" with the record bytes read so far of those it needs. */
	void (*progress)(void *ud, const char *what, uint64_t done, uint64_t total);
	void *progress_ud;
	/* What opening found and skipped (reported by list and verify). */
	uint64_t torn_bytes;             /* a torn index tail */
	size_t unreachable;              /* entries whose bytes are missing */
	char note[COLO_ERR_MAX];
	/* meta.json: the node's pairs ("key", "value"); none before format 2 */
	char **meta;
	size_t nmeta;
};

/*
 * Read the index (and meta.json).  Entries whose segment is missing or too
 * short, or that have no keyframe before them in their segment, are left
 * out and counted (rec->unreachable, rec->note says which first).  -ENOENT
 * when dir has no index; -EPROTONOSUPPORT for a format newer than
 * COLO_REC_FORMAT.
 */
int colo_recording_open(const char *dir, struct colo_recording **out, struct colo_err *err);
void colo_recording_close(struct colo_recording *rec);

/* The newest entry with this sequence number, or NULL. */
const struct colo_rec_entry *colo_recording_find(const struct colo_recording *rec,
						 uint64_t seq);

/* The record's bytes, checksum checked.  *data is malloc'd. */
int colo_recording_read(const struct colo_recording *rec, const struct colo_rec_entry *e,
			uint8_t **data, size_t *len, struct colo_err *err);

/* A value of meta.json's node pairs, or NULL. */
const char *colo_recording_meta(const struct colo_recording *rec, const char *key);

/*
 * Move img by record e, whose bytes (read by colo_recording_read()) are
 * data: a keyframe replaces the image, a checkpoint is applied to it; the
 * devices are sized as e says (format 2), else as the image's default.
 */
int colo_recording_step(const struct colo_rec_entry *e, struct colo_image *img,
			const uint8_t *data, size_t len, struct colo_err *err);

/* The devices of the newest full stream (sync-devices) as an image without
 * RAM; img is initialised by the call.  -ENOENT when there is none. */
int colo_recording_sync_devices(const struct colo_recording *rec, struct colo_image *img,
				struct colo_err *err);

/*
 * The state at entry e: its segment's keyframe, then every checkpoint up
 * to e applied.  img is initialised by the call.  Errors name the segment,
 * offset and sequence of the record that failed.
 */
int colo_recording_state(const struct colo_recording *rec, const struct colo_rec_entry *e,
			 struct colo_image *img, struct colo_err *err);

#endif
