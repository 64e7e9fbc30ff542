/*
 * stream.h: the savevm v3 section stream (DESIGN.md §3), writer and reader.
 *
 *   stream  := be32 "QEVM" be32 3 [configuration] item*
 *   item    := section | command | EOF | vmdesc (after EOF)
 *
 * Writer: struct colo_stream_writer appends to a caller-owned colo_buf and
 * builds the vmdesc JSON of the device sections it writes.
 *
 * Reader: struct colo_stream_reader is a push parser.  Feed it bytes in any
 * pieces (whole files, socket reads, one byte at a time): it calls back at
 * each complete item and hands section payloads to a per-section handler
 * chosen by the caller.  Results do not depend on how the bytes were split.
 * It copies only the unfinished tail of a piece; callbacks may get pointers
 * into the caller's buffer, valid during the callback only.
 *
 * The same reader reads continuation streams (no header, as in a COLO
 * checkpoint: `RAM END section, EOF`) and can stop at EOF leaving what
 * follows to the caller.  A reader and a writer are used by one thread.
 */
#ifndef COLO_STREAM_H
#define COLO_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"
#include "in.h"
#include "vmstate.h"

#define COLO_STREAM_MAGIC 0x5145564du      /* "QEVM" */
#define COLO_STREAM_VERSION 3u
#define COLO_STREAM_VERSION_OBSOLETE 2u

enum colo_sec_type {
	COLO_SEC_EOF = 0x00,
	COLO_SEC_START = 0x01,
	COLO_SEC_PART = 0x02,
	COLO_SEC_END = 0x03,
	COLO_SEC_FULL = 0x04,
	COLO_SEC_SUBSECTION = 0x05,
	COLO_SEC_VMDESC = 0x06,
	COLO_SEC_CONFIGURATION = 0x07,
	COLO_SEC_COMMAND = 0x08,
	COLO_SEC_FOOTER = 0x7e,
};

/* QEMU's command numbers; colo reads and writes 1, 2, 7 and 8. */
enum colo_cmd {
	COLO_CMD_OPEN_RETURN_PATH = 1,
	COLO_CMD_PING = 2,
	COLO_CMD_POSTCOPY_ADVISE = 3,
	COLO_CMD_POSTCOPY_LISTEN = 4,
	COLO_CMD_POSTCOPY_RUN = 5,
	COLO_CMD_POSTCOPY_RAM_DISCARD = 6,
	COLO_CMD_PACKAGED = 7,
	COLO_CMD_ENABLE_COLO = 8,
	COLO_CMD_POSTCOPY_RESUME = 9,
	COLO_CMD_RECV_BITMAP = 10,
};

#define COLO_PACKAGED_MAX (1u << 24)   /* QEMU's MAX_VM_CMD_PACKAGED_SIZE */
#define COLO_VMDESC_MAX (16u << 20)    /* QEMU writes ~100 KiB for a PC */
#define COLO_IDSTR_MAX 255              /* u8 length on the wire */
#define COLO_SECTIONS_MAX 4096          /* distinct section ids in one stream */

const char *colo_stream_section_type_name(unsigned type);
const char *colo_stream_command_name(unsigned cmd);

/*
 * The configuration section: QEMU's vmstate "configuration" (machine type
 * name, then optional subsections for target page bits, capabilities that
 * both sides must agree on, and the source's UUID).
 */
#define COLO_CONFIG_NAME_MAX 255
#define COLO_CONFIG_CAPS_MAX 32

struct colo_stream_capability {
	uint8_t len;
	char str[256];
};

struct colo_stream_config {
	uint32_t len;
	char name[COLO_CONFIG_NAME_MAX + 1];      /* NUL-terminated copy */
	bool has_page_bits;
	uint32_t target_page_bits;
	uint32_t caps_count;
	struct colo_stream_capability caps[COLO_CONFIG_CAPS_MAX];
	bool has_uuid;
	uint8_t uuid[16];
};

/* Fill a configuration with just a machine name. */
int colo_stream_config_init(struct colo_stream_config *c, const char *name,
			    struct colo_err *err);
int colo_stream_config_add_cap(struct colo_stream_config *c, const char *cap,
			       struct colo_err *err);
bool colo_stream_config_has_cap(const struct colo_stream_config *c, const char *cap);

/* ---- writer ---- */

struct json_t;

struct colo_stream_writer {
	struct colo_buf *out;
	struct json_t *vmdesc;        /* {"page_size":4096,"devices":[...]} or NULL */
	bool footers;                 /* write section footers (QEMU's default) */
	bool in_section;
	uint32_t section_id;
};

/* with_vmdesc: collect device descriptions for colo_sw_vmdesc(). */
void colo_sw_init(struct colo_stream_writer *w, struct colo_buf *out, bool with_vmdesc);
void colo_sw_free(struct colo_stream_writer *w);

void colo_sw_header(struct colo_stream_writer *w);
int colo_sw_configuration(struct colo_stream_writer *w,
			  const struct colo_stream_config *c, struct colo_err *err);
/* START/FULL carry idstr, instance and version; PART/END only the id. */
int colo_sw_section_begin(struct colo_stream_writer *w, enum colo_sec_type type,
			  uint32_t section_id, const char *idstr,
			  uint32_t instance_id, uint32_t version_id,
			  struct colo_err *err);
void colo_sw_section_end(struct colo_stream_writer *w);
/* A whole FULL section for one device, and its vmdesc entry. */
int colo_sw_device(struct colo_stream_writer *w, uint32_t section_id,
		   const char *idstr, uint32_t instance_id,
		   const struct colo_vmstate_desc *vmsd, void *opaque,
		   struct colo_err *err);
void colo_sw_command(struct colo_stream_writer *w, uint16_t cmd,
		     const void *data, uint16_t len);
void colo_sw_open_return_path(struct colo_stream_writer *w);
void colo_sw_ping(struct colo_stream_writer *w, uint32_t value);
void colo_sw_enable_colo(struct colo_stream_writer *w);
/* PACKAGED: a nested stream (items, no header) of at most 16 MiB. */
int colo_sw_packaged(struct colo_stream_writer *w, const void *pkg, size_t len,
		     struct colo_err *err);
void colo_sw_eof(struct colo_stream_writer *w);
/* VMDESCRIPTION with the collected JSON (after EOF). */
int colo_sw_vmdesc(struct colo_stream_writer *w, struct colo_err *err);
/*
 * Bytes kept from another stream (common/image.c): a FULL section with a
 * payload as it was on the wire (no vmdesc entry is collected for it), and
 * a VMDESCRIPTION with the given JSON text.
 */
int colo_sw_device_raw(struct colo_stream_writer *w, uint32_t section_id,
		       const char *idstr, uint32_t instance_id, uint32_t version_id,
		       const void *payload, size_t len, struct colo_err *err);
int colo_sw_vmdesc_raw(struct colo_stream_writer *w, const char *json, size_t len,
		       struct colo_err *err);

/* ---- reader ---- */

struct colo_section_info {
	uint8_t type;                     /* START, PART, END or FULL */
	uint32_t section_id;
	char idstr[COLO_IDSTR_MAX + 1];   /* for PART/END: from the START */
	uint32_t instance_id;
	uint32_t version_id;
	uint64_t offset;                  /* of the section's type byte */
	uint64_t payload_offset;
	uint64_t payload_len;             /* known in section_done */
	int depth;                        /* 1 inside PACKAGED */
};

/*
 * Consumes one section's payload.  It is called with `in` positioned at the
 * payload (or where it stopped last time) and parses complete units, calling
 * colo_in_set_mark() at the start of each.  Returns 0 when the payload is
 * complete, -EAGAIN when the current unit has not fully arrived (the reader
 * rewinds to the mark and calls again with more bytes), or a negative errno
 * with err set.  in->final tells that no more bytes will come.
 */
struct colo_section_handler {
	int (*payload)(void *ctx, const struct colo_section_info *s,
		       struct colo_in *in, struct colo_err *err);
	void *ctx;
};

struct colo_command_info {
	uint16_t cmd;
	uint16_t len;
	const uint8_t *data;              /* len bytes */
	uint32_t value;                   /* PING value, PACKAGED length */
	uint64_t offset;
	int depth;
};

/* Callbacks; any may be NULL.  A non-zero return stops the reader (set err). */
struct colo_stream_ops {
	int (*header)(void *ud, uint32_t version, struct colo_err *err);
	int (*configuration)(void *ud, const struct colo_stream_config *c,
			     uint64_t offset, struct colo_err *err);
	/* Choose the payload handler; leaving h->payload NULL refuses the section. */
	int (*section)(void *ud, const struct colo_section_info *s,
		       struct colo_section_handler *h, struct colo_err *err);
	int (*section_done)(void *ud, const struct colo_section_info *s,
			    struct colo_err *err);
	int (*command)(void *ud, const struct colo_command_info *c, struct colo_err *err);
	int (*eof)(void *ud, int depth, uint64_t offset, struct colo_err *err);
	int (*vmdesc)(void *ud, const uint8_t *json, size_t len, uint64_t offset,
		      struct colo_err *err);
};

enum colo_sr_flags {
	COLO_SR_NO_HEADER = 1u << 0,    /* items only (continuation stream) */
	COLO_SR_NO_VMDESC = 1u << 1,    /* the stream ends at EOF */
	COLO_SR_TRAILING_OK = 1u << 2,  /* bytes after the end belong to the caller */
};

struct colo_stream_reader;

struct colo_stream_reader *colo_stream_reader_new(const struct colo_stream_ops *ops,
						  void *ud, unsigned flags);
void colo_stream_reader_free(struct colo_stream_reader *r);

/*
 * Feed bytes.  Returns how many were consumed (fewer than len only once the
 * stream has ended and COLO_SR_TRAILING_OK is set) or a negative errno; the
 * message is in colo_stream_reader_error().  After an error every call
 * returns the same error.
 */
ssize_t colo_stream_reader_feed(struct colo_stream_reader *r, const void *data,
				size_t len);
/* No more bytes will come: completes or reports a truncated stream. */
int colo_stream_reader_finish(struct colo_stream_reader *r);
bool colo_stream_reader_done(const struct colo_stream_reader *r);
const char *colo_stream_reader_error(const struct colo_stream_reader *r);
int colo_stream_reader_errcode(const struct colo_stream_reader *r);
/* Bytes of the stream consumed so far (the offset errors are relative to). */
uint64_t colo_stream_reader_offset(const struct colo_stream_reader *r);
/* The stream's configuration, or NULL if it had none (yet). */
const struct colo_stream_config *colo_stream_reader_config(const struct colo_stream_reader *r);
/* Footers: 1 present, 0 absent, -1 not known yet. */
int colo_stream_reader_footers(const struct colo_stream_reader *r);
/* Start the next stream on the same channel; section ids stay known.  An
 * error that stopped the last one (e.g. a callback's) is forgotten. */
void colo_stream_reader_restart(struct colo_stream_reader *r, unsigned flags);

#endif
