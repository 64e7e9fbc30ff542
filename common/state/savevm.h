/*
 * savevm.h: a guest's sections (RAM blocks and devices) as one savevm
 * stream: the full save QEMU calls a migration, and the loader for it.
 *
 * A struct colo_savevm is the registry of what a guest exposes: the machine
 * name that goes into the configuration section, RAM blocks (memory the
 * caller owns, addressed on the wire by name + offset, never by pointer)
 * and devices (vmstate description + opaque struct, with an idstr and an
 * instance id).  Section ids are given in registration order from 1: QEMU
 * cannot load a PART/END section with id 0 (see savevm.c).
 *
 * colo_savevm_save() writes what QEMU writes for a precopy migration:
 * header, configuration, [ENABLE_COLO], RAM START (MEM_SIZE) / PART (pages)
 * / END, one FULL section per device, EOF and the vmdesc.
 *
 * The loader reads such a stream, in any pieces, into the registered
 * blocks and devices with QEMU's checks: machine name, known capabilities,
 * RAM block names and sizes, device idstr/instance and versions.  Device
 * fields are stored as they are read; a stream that fails half way leaves
 * the guest half loaded, as with QEMU, so load into a guest that is not
 * running.  One thread.
 */
#ifndef COLO_SAVEVM_H
#define COLO_SAVEVM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"
#include "ramfmt.h"
#include "stream.h"
#include "vmstate.h"

struct colo_savevm_device {
	char idstr[COLO_IDSTR_MAX + 1];
	uint32_t instance_id;
	uint32_t section_id;
	const struct colo_vmstate_desc *vmsd;
	void *opaque;
};

struct colo_savevm_block {
	struct colo_ram_block_info info;
	uint8_t *host;
};

struct colo_savevm {
	struct colo_stream_config config;
	uint32_t next_section_id;
	uint32_t ram_section_id;
	struct colo_savevm_device *devs;
	size_t ndevs;
	struct colo_savevm_block *blocks;
	size_t nblocks;
};

int colo_savevm_init(struct colo_savevm *sv, const char *machine, struct colo_err *err);
void colo_savevm_free(struct colo_savevm *sv);
int colo_savevm_add_ram(struct colo_savevm *sv, const char *name, void *host,
			uint64_t length, struct colo_err *err);
int colo_savevm_add_device(struct colo_savevm *sv, const char *idstr,
			   uint32_t instance_id, const struct colo_vmstate_desc *vmsd,
			   void *opaque, struct colo_err *err);
struct colo_savevm_block *colo_savevm_find_block(struct colo_savevm *sv,
						 const char *name);

enum {
	COLO_SAVEVM_ENABLE_COLO = 1u << 0,   /* COMMAND ENABLE_COLO after config */
	COLO_SAVEVM_NO_VMDESC = 1u << 1,
};

/* Pages per RAM PART section in a full save. */
#define COLO_SAVEVM_PART_PAGES 4096

/*
 * A whole RAM as a full save writes it: START (MEM_SIZE), PARTs of
 * COLO_SAVEVM_PART_PAGES pages, END.  A page is a ZERO record when it is
 * zero and kinds has ZERO, LZ4 when kinds has LZ4 and that is smaller, else
 * raw.  hosts[i] holds blocks[i].length bytes.
 */
int colo_savevm_write_ram(struct colo_stream_writer *w, uint32_t section_id,
			  const struct colo_ram_block_info *blocks, const uint8_t *const *hosts,
			  size_t n, uint32_t kinds, struct colo_err *err);

/*
 * What a writer of repeated full saves of the same blocks keeps so that a
 * page unchanged since its last save is not encoded again (the recorder's
 * keyframes): one entry per page of all blocks in order, saying how the
 * page was written last time and, for an LZ4 page, where its compressed
 * bytes are in that output.  A page whose bit is set in changed[block], or
 * every page when prev is NULL, is encoded from its bytes; any other is
 * written as its entry says (LZ4 bytes copied from prev, a zero page as a
 * zero record, a raw page from its bytes).  Every entry is then rewritten
 * for this output, whose bytes the caller keeps as the next prev.  The
 * output is the same, byte for byte, as without a memo, as long as the
 * pages not marked changed are the ones saved last time.
 */
struct colo_ram_memo {
	const uint8_t *prev;                 /* the last output; NULL: none */
	uint64_t *ent;                       /* one per page, all blocks */
	const uint64_t *const *changed;      /* per block, a bit per page */
};

/* colo_savevm_write_ram() with a memo (may be NULL: the same call). */
int colo_savevm_write_ram_memo(struct colo_stream_writer *w, uint32_t section_id,
			       const struct colo_ram_block_info *blocks,
			       const uint8_t *const *hosts, size_t n, uint32_t kinds,
			       struct colo_ram_memo *memo, struct colo_err *err);

int colo_savevm_save(struct colo_savevm *sv, struct colo_buf *out, unsigned flags,
		     struct colo_err *err);

/*
 * Pieces of the loader for engines that read streams themselves: the
 * configuration check (machine name, page bits, capabilities; *ignore_shared
 * says whether MEM_SIZE carries addresses), the device of a FULL section,
 * and its payload handler (struct colo_section_handler with ctx = device).
 */
int colo_savevm_check_config(const struct colo_savevm *sv,
			     const struct colo_stream_config *c, uint64_t offset,
			     bool *ignore_shared, struct colo_err *err);
struct colo_savevm_device *colo_savevm_find_device(struct colo_savevm *sv,
						   const char *idstr, uint32_t instance_id);
int colo_savevm_device_payload(void *device, const struct colo_section_info *s,
			       struct colo_in *in, struct colo_err *err);

struct colo_savevm_loader;

/* codecs: decoders for encoded pages (NULL-terminated, may be NULL). */
struct colo_savevm_loader *colo_savevm_loader_new(struct colo_savevm *sv,
						  const struct colo_page_codec *const *codecs,
						  uint32_t allowed_page_kinds);
void colo_savevm_loader_free(struct colo_savevm_loader *l);
ssize_t colo_savevm_loader_feed(struct colo_savevm_loader *l, const void *data,
				size_t len);
int colo_savevm_loader_finish(struct colo_savevm_loader *l);
const char *colo_savevm_loader_error(const struct colo_savevm_loader *l);

/* What the loaded stream said besides state. */
struct colo_savevm_load_info {
	bool enable_colo;
	bool open_return_path;
	uint32_t pings;
	uint32_t last_ping;
	uint64_t pages[COLO_PAGE_KINDS];
	uint32_t devices;
	bool vmdesc;
};
struct colo_savevm_load_info colo_savevm_loader_info(const struct colo_savevm_loader *l);

#endif
