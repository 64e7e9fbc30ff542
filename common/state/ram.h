/*
 * ram.h: guest RAM blocks and dirty-page tracking (DESIGN.md §5).
 *
 * A struct colo_ram holds a guest's named RAM blocks.  Each block is
 * page-aligned memory (mmap), its size rounded up to whole 4 KiB pages,
 * between two inaccessible guard pages (an overrun faults), and is
 * addressed on the wire by name + offset, never by pointer.  A block is
 * anonymous memory, or a MAP_SHARED mapping of a file (a memfd or a file
 * under /dev/shm, colo_ram_add_block_fd) that another process maps too: a
 * secondary keeps a VM's committed RAM there for the VM process started
 * on failover, so nothing is copied then.  Each block has a dirty bitmap,
 * one bit per page.  The colo_ram owns the blocks' memory and bitmaps;
 * colo_ram_free() unmaps them, and no thread may touch block memory from
 * then on.  It never owns a shared block's file descriptor.
 *
 * Tracking finds the pages the guest wrote since the last harvest.  One
 * interface, four backends, chosen when the colo_ram is made:
 *   uffd-wp   userfaultfd write-protect in async mode: the kernel notes the
 *             first write to a protected page without a fault reaching user
 *             space; a harvest is one PAGEMAP_SCAN ioctl on /proc/self/pagemap
 *             that returns the written pages and protects them again
 *             (Linux >= 6.7).
 *   soft-dirty the kernel's soft-dirty bits (CONFIG_MEM_SOFT_DIRTY, e.g.
 *             Debian's kernels): a harvest reads the blocks' bits from
 *             /proc/self/pagemap and clears them with /proc/self/clear_refs;
 *             a first write after it takes a fault the kernel resolves
 *             itself.  For kernels without PAGEMAP_SCAN (Linux < 6.7).
 *   mprotect  pages are read-only after a harvest; the first write faults,
 *             a SIGSEGV handler marks the page and makes it writable.  A
 *             thread of the colo_ram's own protects the pages a harvest
 *             reported again while the guest runs, not in the harvest.
 *   manual    the guest calls colo_ram_mark_dirty() for what it writes.
 *   auto      probes at start and takes the first that works, in the order
 *             above (uffd-wp, soft-dirty, mprotect, manual), and says which and why (colo_ram_tracking_reason(),
 *             e.g. "mprotect: uffd-wp unavailable (PAGEMAP_SCAN: Invalid
 *             argument)").  The probes really try: a write to a protected
 *             test page must be reported.
 *
 * Contract: a write that completes before colo_ram_harvest() returns is
 * reported by that harvest or the next one; no written page is ever missed.
 * (uffd-wp and manual use "or the next" for writes racing the harvest;
 * mprotect and soft-dirty always report a write in the first harvest that
 * returns after it.)  Pages may be reported that were not written (false positives),
 * never the reverse.  mprotect reports every page of a harvest once more in
 * the next one: a write to it before the thread protected it again leaves
 * no trace.  colo_ram_mark_dirty() works in every mode (e.g. for
 * memory the guest changes by other means than CPU writes).
 *
 * Shared blocks are tracked as anonymous ones, by every backend; what is
 * tracked is this process's writes through its own mapping.  Writes by
 * another process through its mapping of the same file are seen in the
 * memory at once but never reported: the page tables (uffd-wp) and the
 * protections (mprotect) are per process.  A backend that cannot track a
 * shared mapping of a file on this kernel (it is really tried on the
 * block when it is added) fails the add with a message that says so.
 *
 * soft-dirty and shared blocks: a file page's soft-dirty bit is lost when
 * the kernel unmaps the page (reclaim), so the add tries that and fails
 * where it is lost (every kernel to date); with auto, the colo_ram then
 * goes over to mprotect (before colo_ram_start(), so nothing was tracked
 * yet) and says so in colo_ram_tracking_reason().
 *
 * soft-dirty and the process: clear_refs clears the bits of the whole
 * process, so every harvest of any colo_ram in this mode first notes the
 * bits of all of them (in the process), and while it reads and clears them
 * every such block is read-only for a moment (the "fence"): a write that
 * faults then waits in the SIGSEGV handler for the harvest to end.  Other
 * memory of the process pays one minor fault per page first written after
 * each harvest.
 *
 * Writes by the kernel (read(2) or recv(2) into block memory): uffd-wp
 * and soft-dirty track them (soft-dirty: such a system call made while a
 * harvest's fence is up fails with EFAULT, as with mprotect).  With mprotect such a system call fails with EFAULT on a
 * protected page (no signal is involved): read into a buffer and copy, or
 * use manual marking.  In manual mode the guest marks what it wrote after
 * writing it.
 *
 * mprotect costs: a first write to a page after a harvest takes a signal
 * and an mprotect (several microseconds), and each isolated writable page
 * splits the block's mapping.  When the process runs out of mappings
 * (vm.max_map_count), the handler opens the whole block and that round
 * (and, carried, the next) reports all of it; the thread then protects it
 * in one piece again.  Re-protecting scattered pages costs the kernel about
 * 2 us each (merging mappings): the thread does it while the guest runs
 * (colo_ram_rearm()), and the next harvest waits for it only if it is not
 * done by then.
 *
 * Threads: guest threads may write block memory at any time, including
 * during a harvest (in mprotect and soft-dirty modes a write that faults
 * during a harvest waits for it to end).  Harvest, start, add/free are
 * called from one control thread; colo_ram_mark_dirty() is safe from any
 * thread.  The mprotect and soft-dirty backends install one process-wide
 * SIGSEGV handler while any colo_ram in those modes exists (at most 1024
 * blocks in all; a write to a soft-dirty block only waits there while a
 * harvest's fence is up), and put the previous action back when the last
 * one is freed; faults that are not writes to its blocks go to the action
 * that was there before (by default: the process dies as it would have).
 */
#ifndef COLO_RAM_H
#define COLO_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define COLO_RAM_PAGE_SIZE 4096u
#define COLO_RAM_PAGE_SHIFT 12

enum colo_dirty_mode {
	COLO_DIRTY_AUTO,
	COLO_DIRTY_UFFD_WP,
	COLO_DIRTY_MPROTECT,
	COLO_DIRTY_MANUAL,
	COLO_DIRTY_SOFT_DIRTY,
};

/* "auto", "uffd-wp", "mprotect", "manual", "soft-dirty"; parse returns
 * -EINVAL otherwise. */
const char *colo_dirty_mode_name(enum colo_dirty_mode m);
int colo_dirty_mode_parse(const char *s, enum colo_dirty_mode *m);

struct colo_ram;

struct colo_ram_block {
	char name[256];
	uint8_t *host;              /* page-aligned, length bytes */
	uint64_t length;            /* a multiple of COLO_RAM_PAGE_SIZE */
	uint64_t npages;
	/*
	 * Pages reported dirty and not yet cleared: colo_ram_harvest() ORs
	 * into it, the consumer clears what it took (colo_ram_block_clear_dirty
	 * or by hand).  npages bits, 64 per word, bit i = page i.
	 */
	uint64_t *dirty;
	struct colo_ram *ram;
};

/*
 * Make an empty set of blocks tracked by `mode`.  With AUTO the probe runs
 * here.  Fails with a message when the requested backend cannot work on this
 * machine (e.g. uffd-wp on a kernel without PAGEMAP_SCAN).
 */
int colo_ram_new(enum colo_dirty_mode mode, struct colo_ram **out, struct colo_err *err);
void colo_ram_free(struct colo_ram *ram);

/* The backend in use and why it was chosen (one line). */
enum colo_dirty_mode colo_ram_tracking(const struct colo_ram *ram);
const char *colo_ram_tracking_reason(const struct colo_ram *ram);

/*
 * Add a block of `size` bytes (rounded up to pages), zero-filled.  Before
 * colo_ram_start() only (-EBUSY after).  Names are 1 to 255 bytes
 * (-EINVAL, -ENAMETOOLONG) and unique in the colo_ram (-EEXIST); sizes are
 * 1 byte to 64 TiB (-EINVAL).
 */
int colo_ram_add_block(struct colo_ram *ram, const char *name, uint64_t size,
		       struct colo_ram_block **out, struct colo_err *err);

/*
 * Add a block whose memory is a MAP_SHARED mapping of `fd` (a memfd or a
 * regular file opened O_RDWR, -EBADF, -EINVAL or -EACCES otherwise; a
 * hugetlbfs file fails, blocks being placed at 4 KiB alignment), between
 * the same guard pages as other blocks.  The file is made exactly `size`
 * rounded up to pages (ftruncate: a longer file loses its tail, a shorter
 * one grows with zeros) and keeps its content if it already had that size
 * (it is then not resized at all, so a memfd sealed against that works).
 * The colo_ram does not own fd: the caller closes it when it likes, the
 * mapping stays.  Same rules as colo_ram_add_block otherwise.  The file may
 * have been resized when the add fails after the checks of fd, e.g. with
 * -ENOTSUP when the backend cannot track this mapping (see above).
 * In uffd-wp and mprotect modes, adding writes page 0 once to try the
 * tracking (an atomic add of zero: the content stays as it was).
 */
int colo_ram_add_block_fd(struct colo_ram *ram, const char *name, uint64_t size, int fd,
			  struct colo_ram_block **out, struct colo_err *err);

/* Is this block a shared mapping of a file (added by colo_ram_add_block_fd
 * and not unshared since)? */
bool colo_ram_block_shared(const struct colo_ram_block *b);

/*
 * Replace a shared block's memory by private zero-filled memory at the same
 * address (MAP_FIXED: `host` and `length` stay, so do the guards; the file
 * keeps its content, and other processes that map it are not affected).
 * For a node that handed the file to another process and needs memory of
 * its own from then on.  Tracking of the block is set up again as for a
 * new block (and armed at once if colo_ram_start() was called), and every
 * page of it is marked dirty.  -EINVAL if the block is not shared.  On an
 * error after the memory was replaced the message says the block is no
 * longer tracked; free the colo_ram.  Control thread only, with no other
 * thread touching the block (its pages change under them).
 */
int colo_ram_block_unshare(struct colo_ram_block *b, struct colo_err *err);

size_t colo_ram_nblocks(const struct colo_ram *ram);
struct colo_ram_block *colo_ram_block_at(struct colo_ram *ram, size_t i);
struct colo_ram_block *colo_ram_find(struct colo_ram *ram, const char *name);

/*
 * Start tracking: from here every page counts as clean, and the next
 * harvest reports what was written since.  The dirty bitmaps are set to
 * all ones (nothing has been sent yet: a first, full sync sends all).
 * May be called again to re-arm (e.g. for a full resync).
 */
int colo_ram_start(struct colo_ram *ram, struct colo_err *err);

/*
 * Collect the pages written since the last harvest (or start) into every
 * block's dirty bitmap (OR), and arm tracking again for them.  *ndirty
 * (may be NULL) gets the number of pages newly reported by this call (not
 * already set in dirty).  -EINVAL before colo_ram_start().
 */
int colo_ram_harvest(struct colo_ram *ram, uint64_t *ndirty, struct colo_err *err);

/*
 * The pages the last harvest reported are copied (or need not be): in
 * mprotect mode a thread protects them again from now on, while the guest
 * runs; before, it would slow the copy (every protection change flushes
 * the TLBs of the threads that read them).  Optional: without it the next
 * harvest (or start, add, unshare) protects them first, in its pause.
 * Nothing in the other modes.
 */
void colo_ram_rearm(struct colo_ram *ram);

/*
 * Mark [offset, offset + len) of a block as written (manual mode; any mode),
 * after the write: a mark made before it may be harvested before the write
 * lands.  The range must lie within the block (asserted); len 0 marks
 * nothing.  Lock-free (atomic OR): safe from any thread.
 */
void colo_ram_mark_dirty(struct colo_ram_block *b, uint64_t offset, uint64_t len);

void colo_ram_block_clear_dirty(struct colo_ram_block *b);
uint64_t colo_ram_block_count_dirty(const struct colo_ram_block *b);

static inline bool colo_ram_page_dirty(const struct colo_ram_block *b, uint64_t page)
{
	return (b->dirty[page / 64] >> (page % 64)) & 1;
}

/*
 * Tests only: make the auto probe treat a backend as unavailable, so the
 * fallback can be exercised on machines that have it.  Also settable with
 * the environment variable COLO_DIRTY_PROBE_FAIL=uffd-wp[,mprotect].  In
 * that variable, "uffd-wp:shared" or "mprotect:shared" makes that backend
 * fail colo_ram_add_block_fd as if it could not track shared mappings.
 */
void colo_ram_probe_fail(enum colo_dirty_mode m, bool fail);

#endif
