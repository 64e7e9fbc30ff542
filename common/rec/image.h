/*
 * image.h: a guest's state as plain data, with no guest code: what a
 * recording holds at one checkpoint (DESIGN.md §7).
 *
 * An image is the stream's configuration name, its RAM blocks (name and
 * bytes), its device sections (idstr, instance, version and the raw payload
 * bytes as they were on the wire) and its vmdesc (the JSON verbatim, and
 * parsed).  It is built from a full stream (a sync, or a recording's
 * keyframe), moved forward by COLO checkpoints exactly as the secondary
 * receives them (the RAM continuation stream and the device stream of
 * VMSTATE_SIZE), and written back out as a full stream that a secondary,
 * colo-replay and colo_savevm's loader accept (QEMU's loader too when it is
 * written with QEMU's page kinds only: colo_image_save_full_kinds()).
 *
 * Device payloads are not self-delimiting.  By default their sizes come
 * from the vmdesc (colo_vmdesc_*), which a full stream carries at its end
 * and which the image keeps for the checkpoints that follow; a checkpoint's
 * device stream has no vmdesc, so there a device must keep the payload
 * size it had before, and a payload of another size is refused.  Devices
 * whose size changes (counted arrays, optional subsections, the qemu
 * guest's device sections) need a sizer (struct colo_image_sizer): one
 * that walks the payload with the device's vmstate description
 * (colo_image_measure(), what a recording node has), or one that knows
 * the sizes from elsewhere (a recording's index).  Pages are decoded with
 * every codec colo writes (zero, raw, LZ4, XBZRLE, DELTA, DELTA-LZ4),
 * against the image's own copy of the page, as the secondary decodes them
 * against its RAM cache.
 *
 * Section ids are kept (RAM's and each device's) and written back, so a
 * full stream written from an image is interchangeable with the one it was
 * loaded from for the checkpoints that follow it.
 *
 * Every length and offset in the input is checked; bad input gets -EINVAL
 * (or -ENOMEM) and a one-line error naming what and where (the byte offset
 * in the stream given).  colo_image_load_full() changes the image only on
 * success.  colo_image_apply() checks both streams whole (framing, block
 * names and page offsets, devices and payload sizes, colo/checkpoint and
 * its checksum) before it changes anything; only a page whose encoded
 * bytes do not decode can leave the image partly moved: callers that must
 * keep a good image then rebuild it, or apply to a copy.
 *
 * Memory: the image owns everything it points to (block data is mmap'd);
 * colo_image_free() releases it.  Not thread-safe; an image belongs to one
 * thread at a time.
 *
 * Files: image_load.c reads streams into an image (load, apply);
 * image_size.c walks a payload with its vmstate description; image.c holds
 * the rest (blocks and devices, saving, copies, comparisons).
 */
#ifndef COLO_IMAGE_H
#define COLO_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "err.h"
#include "ramenc.h"
#include "ramfmt.h"
#include "vmdesc.h"
#include "vmstate.h"

#define COLO_IMAGE_NAME_MAX 256
/* Largest RAM block an image takes (colo_ram's limit too). */
#define COLO_IMAGE_BLOCK_MAX (64ull << 40)

struct colo_image_block {
	char name[COLO_IMAGE_NAME_MAX];
	uint64_t length;                 /* bytes, a multiple of the page size */
	uint8_t *data;
	/* Pages written by the last load or apply, one bit per page (bit i of
	 * word i / 64 is page i, as in colo_ram's dirty bitmaps). */
	uint64_t *touched;
};

struct colo_image_device {
	char idstr[COLO_IMAGE_NAME_MAX];
	uint32_t instance_id;
	uint32_t version;
	uint32_t section_id;             /* as in the full stream */
	uint8_t *payload;
	size_t len;
	bool touched;                    /* in the last load or apply */
};

/* The colo/checkpoint section of the last checkpoint applied (if any). */
struct colo_image_ckpt {
	bool valid;
	uint64_t seq, generation, wall_ns, pages, checksum;
};

struct colo_image {
	char config[COLO_IMAGE_NAME_MAX];        /* "colo-<kind>-<version>"; "" none */
	uint32_t ram_section_id;                 /* 0: no RAM section seen */
	struct colo_image_block *blocks;         /* in MEM_SIZE order */
	size_t nblocks;
	struct colo_image_device *devs;          /* in stream order */
	size_t ndevs;
	char *vmdesc_json;                       /* verbatim, NUL-terminated */
	size_t vmdesc_len;
	struct colo_vmdesc *vmdesc;
	struct colo_image_ckpt ckpt;
	/* Page records by kind (COLO_PAGE_*) in the last load or apply. */
	uint64_t pages[COLO_PAGE_KINDS];
	/* The devices of the last load or apply in the order of their
	 * sections: indexes into devs. */
	size_t *sent;
	size_t nsent;
	/* One more with every load and apply; loaded: the last was a load
	 * (a whole new state).  For struct colo_image_memo. */
	uint64_t serial;
	bool loaded;
};

/*
 * How big a device payload is, when its size may change.  size() is given
 * the section's device and the bytes from its payload on (avail of them,
 * to the end of the stream); it returns 0 with *bytes set, 1 when it does
 * not know the device (the default applies: the vmdesc in a full stream,
 * the image's size in a checkpoint), or a negative errno with err set when
 * the payload cannot be what it says.  What it says is checked: the
 * bytes must be there and, in streams with footers, the footer must follow.
 */
struct colo_image_sizer {
	int (*size)(void *ud, const char *idstr, uint32_t instance_id, uint32_t version,
		    const uint8_t *p, size_t avail, uint64_t *bytes, struct colo_err *err);
	void *ud;
};

void colo_image_init(struct colo_image *img);
void colo_image_free(struct colo_image *img);

/*
 * Replace the image with the state in a whole full stream (header,
 * configuration, RAM START/PART/END, device FULL sections, EOF, vmdesc).
 * A stream without a vmdesc is refused when it has device sections.  Every
 * page record is counted in pages[] and marks its page touched; every
 * device is touched; ckpt is cleared.
 */
int colo_image_load_full(struct colo_image *img, const void *stream, size_t len,
			 struct colo_err *err);
/* The same, devices sized by sz first (may be NULL); a device it sizes
 * needs no vmdesc entry. */
int colo_image_load_full_sized(struct colo_image *img, const void *stream, size_t len,
			       const struct colo_image_sizer *sz, struct colo_err *err);

/*
 * Move the image forward by one checkpoint: ram is the continuation stream
 * after VMSTATE_SEND (RAM END section: records, EOS, footer; then EOF), dev
 * the VMSTATE_SIZE bytes (device FULL sections, colo/checkpoint, EOF).
 * Blocks must match the image's; devices must be ones the image has, with
 * the same version and payload size (or the size a sizer gives); the RAM
 * section's id must be the image's; colo/checkpoint's checksum must match
 * the bytes (XXH3-64 of ram and of dev up to that section,
 * docs/protocol.md).  touched, sent and pages[] describe this checkpoint
 * only; ckpt is set from colo/checkpoint.  Sequence and generation are the
 * caller's to check.
 */
int colo_image_apply(struct colo_image *img, const void *ram, size_t ram_len,
		     const void *dev, size_t dev_len, struct colo_err *err);
/* The same, devices sized by sz first (may be NULL): a device's payload
 * may then change size. */
int colo_image_apply_sized(struct colo_image *img, const void *ram, size_t ram_len,
			   const void *dev, size_t dev_len, const struct colo_image_sizer *sz,
			   struct colo_err *err);

/*
 * Pages of a checkpoint that a node has decoded already (the primary's
 * staged pages, the pages the secondary decoded): refs[i] names page i of
 * data, its block as names[refs[i].block].  They are in the order of the
 * records they stand for; pages without a record may come in between
 * (the primary stages pages equal to their base, and sends none for
 * them).
 */
struct colo_image_given {
	const uint8_t *data;                 /* n pages of 4096 bytes */
	const struct colo_stage_ref *refs;
	size_t n;
	const char *const *names;
	size_t nnames;
};

/*
 * Records worth a given page: those whose decoding writes a whole page
 * from a few bytes (LZ4, zlib), where copying the page decoded already is
 * cheaper.  A delta's decoding writes only what changed, a raw page's is
 * a copy anyway, a zero page's a fill: those are decoded.
 */
static inline bool colo_image_worth_giving(enum colo_page_kind k)
{
	return k == COLO_PAGE_LZ4 || k == COLO_PAGE_COMPRESS;
}

/*
 * colo_image_apply_sized() with pages decoded already (g may be NULL):
 * the record of a page worth giving (above) takes the next page given
 * for that page instead of being decoded; the records are still read and
 * checked whole first.  The caller vouches that each page given is the
 * page's content after the record it stands for.  If one is missing,
 * that record and those after it are decoded.  A page given outside the
 * image's blocks is refused before anything changes.
 */
int colo_image_apply_given(struct colo_image *img, const void *ram, size_t ram_len,
			   const void *dev, size_t dev_len, const struct colo_image_sizer *sz,
			   const struct colo_image_given *g, struct colo_err *err);

/*
 * The bytes of a payload saved with version `version` of vmsd: its fields
 * walked as colo_vmstate_load() reads them (count and length fields read
 * on the way, arrays and buffers skipped, structs and subsections
 * followed), without a device to load into and without its hooks.  p holds
 * avail bytes from the payload's first.  0 with *bytes set; 1 when vmsd
 * cannot be walked without its device (a field_exists test, which needs
 * the device's state); -EINVAL with err naming the field and the offset in
 * the payload when the bytes are not such a payload.
 */
int colo_image_measure(const struct colo_vmstate_desc *vmsd, int version,
		       const uint8_t *p, size_t avail, uint64_t *bytes, struct colo_err *err);

/*
 * Append the image as a full stream: header, configuration, COMMAND
 * ENABLE_COLO, RAM START (MEM_SIZE), PARTs of COLO_SAVEVM_PART_PAGES pages
 * (zero pages as ZERO records, others LZ4 when that is smaller, else raw),
 * END, device FULL sections in order, EOF, the vmdesc verbatim.
 * colo_image_load_full() of the output gives the same image.
 */
int colo_image_save_full(const struct colo_image *img, struct colo_buf *out,
			 struct colo_err *err);
/*
 * The same with the page kinds to use (COLO_PAGE_KIND_BIT set): ZERO and
 * LZ4 only when given, RAW always.  COLO_PAGE_KINDS_QEMU gives a stream
 * QEMU's loader reads.
 */
int colo_image_save_full_kinds(const struct colo_image *img, struct colo_buf *out,
			       uint32_t kinds, struct colo_err *err);
/*
 * A plain migration stream of the image, as QEMU writes one: QEMU's page
 * kinds only (zero and raw pages) and no COMMAND ENABLE_COLO; otherwise as
 * colo_image_save_full().  colo-replay export.
 */
int colo_image_save_plain(const struct colo_image *img, struct colo_buf *out,
			  struct colo_err *err);

/*
 * Keyframes of an image that moves on between them (the recorder's): the
 * last full stream saved, and what colo_savevm_write_ram_memo() needs to
 * save the next without encoding again the pages that have not changed
 * since.  colo_image_memo_note() after every load and every apply of the
 * image; a load, an apply not noted or new blocks make the next save
 * encode every page.  A save's output is the same, byte for byte, as
 * colo_image_save_full()'s.  Memory: two full streams, a word per page
 * and a bit per page.
 */
struct colo_image_memo {
	struct colo_buf out[2];          /* out[cur]: the last save */
	int cur;
	bool valid;                      /* ent describes out[cur] */
	uint64_t serial;                 /* the image's, at the last note or save */
	uint64_t *ent;                   /* per page (struct colo_ram_memo) */
	uint64_t **changed;              /* per block: pages changed since out[cur] */
	uint64_t *lengths;               /* of the blocks ent and changed are for */
	size_t nblocks;
};

void colo_image_memo_init(struct colo_image_memo *m);
void colo_image_memo_free(struct colo_image_memo *m);
/* The pages the image's last load or apply wrote. */
void colo_image_memo_note(struct colo_image_memo *m, const struct colo_image *img);
/* colo_image_save_full() of img into m->out[m->cur] (after the call). */
int colo_image_memo_save(const struct colo_image *img, struct colo_image_memo *m,
			 struct colo_err *err);

/* Deep copy (dst is initialised by the call). */
int colo_image_copy(struct colo_image *dst, const struct colo_image *src,
		    struct colo_err *err);

const struct colo_image_block *colo_image_block(const struct colo_image *img,
						const char *name);
const struct colo_image_device *colo_image_device(const struct colo_image *img,
						  const char *idstr,
						  uint32_t instance_id);
/* XXH3-64 of the block's bytes. */
uint64_t colo_image_block_hash(const struct colo_image_block *b);

static inline bool colo_image_page_touched(const struct colo_image_block *b,
					   uint64_t page)
{
	return (b->touched[page / 64] >> (page % 64)) & 1;
}

/*
 * Do two images hold the same state (configuration, blocks and their
 * bytes, devices and their payloads, vmdesc text)?  0 if so, 1 if not with
 * `why` naming the first difference.  touched, pages[] and ckpt, which
 * describe how the state was reached, are not compared.
 */
int colo_image_compare(const struct colo_image *a, const struct colo_image *b,
		       struct colo_err *why);

#endif
