/*
 * ram_softdirty.c: the soft-dirty dirty-page backend (see ram.h): the
 * kernel sets a page's soft-dirty bit when it is written
 * (CONFIG_MEM_SOFT_DIRTY); /proc/self/pagemap shows it (bit 55 of a page's
 * entry) and writing "4" to /proc/self/clear_refs clears every bit of the
 * process and write-protects its pages, so that the next write to each
 * faults in the kernel and sets the bit again.  For kernels that have no
 * PAGEMAP_SCAN (Linux < 6.7, such as Debian 12's 6.1), where uffd-wp
 * cannot be harvested: no signal and no mprotect per written page, no
 * mapping split per page as with mprotect.
 *
 * The probe opens pagemap and clear_refs (kept by the colo_ram), takes a
 * reference on the SIGSEGV handler of ram_mprotect.c and really tries a
 * write on a scratch mapping.  Blocks sit in that handler's table, marked
 * `sd`, from their add to their free.
 *
 * Process-wide state: the fence generation, read by the handler.  The
 * slot lock of ram_mprotect.c serialises collections over all colo_ram.
 *
 * Threads: collections run on a control thread (of any colo_ram in this
 * mode); guest threads write at any time, and those that fault on a fence
 * wait in the handler (colo__ram_sd_fault) until it is down.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ram.h"
#include "ram_int.h"

/* Bit 55 of a pagemap entry: the page is soft-dirty
 * (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_SOFT_DIRTY (1ull << 55)
/* Pagemap entries read per pread: 64 KiB, 256 MiB of block. */
#define SD_CHUNK 8192

/* Odd while a fence is up; the handler waits for it to change. */
static atomic_ulong sd_gen;

/* ---- the handler's part ---- */

/*
 * A write fault on a soft-dirty block.  Outside a fence such a block is as
 * writable as its owner mapped it, so a fault while the generation is odd
 * is the fence's: wait for it to come down, and the retried write lands
 * after the clear (its bit is set for the next harvest).  A fault seen
 * with the generation even may still be the fence's (it came down while
 * the signal was delivered): retry once.  The same thread faulting at the
 * same address in the same generation again is not ours (someone else
 * made the block read-only): chained, as any foreign fault.
 */
bool colo__ram_sd_fault(uintptr_t addr)
{
	static _Thread_local uintptr_t last_addr;
	static _Thread_local unsigned long last_gen = 1;
	unsigned long g = atomic_load(&sd_gen);

	if (g & 1) {
		while (atomic_load(&sd_gen) == g)
			sched_yield();
		last_gen = 1;
		return true;
	}
	if (last_gen == g && last_addr == addr) {
		last_gen = 1;
		return false;
	}
	last_gen = g;
	last_addr = addr;
	return true;
}

/* ---- reading the bits ---- */

/* OR the soft-dirty pages of block `b` into its `written`; 0 or -errno. */
static int read_block(int pagemap, uint64_t *buf, struct ram_block *b,
		      struct colo_err *err)
{
	off_t base = (off_t)((uintptr_t)b->pub.host >> SHIFT) * 8;

	for (uint64_t first = 0; first < b->pub.npages; first += SD_CHUNK) {
		uint64_t n = b->pub.npages - first < SD_CHUNK ? b->pub.npages - first : SD_CHUNK;
		size_t want = (size_t)n * 8, got = 0;

		while (got < want) {
			ssize_t r = pread(pagemap, (char *)buf + got, want - got,
					  base + (off_t)((first * 8) + got));

			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0) {
				int e = r < 0 ? errno : EIO;

				return colo_err_set(err, e, "RAM block \"%s\": harvest: reading "
						    "/proc/self/pagemap at page %llu: %s",
						    b->pub.name, (unsigned long long)(first + got / 8),
						    r < 0 ? strerror(e) : "short read");
			}
			got += (size_t)r;
		}
		for (uint64_t i = 0; i < n; i += 64) {
			uint64_t word = 0, m = n - i < 64 ? n - i : 64;

			for (uint64_t j = 0; j < m; j++)
				word |= ((buf[i + j] & PM_SOFT_DIRTY) ? 1ull : 0) << j;
			/* first is a multiple of 64: whole words. */
			if (word)
				atomic_fetch_or(&b->written[(first + i) / 64], word);
		}
	}
	return 0;
}

/* Is page `p`'s soft-dirty bit set?  -errno on a failed read. */
static int page_bit(int pagemap, const void *p)
{
	uint64_t e;

	if (pread(pagemap, &e, 8, (off_t)((uintptr_t)p >> SHIFT) * 8) != 8)
		return -(errno ? errno : EIO);
	return (e & PM_SOFT_DIRTY) != 0;
}

/* ---- harvest ----
 *
 * clear_refs clears the bits of the whole process, so a collection takes
 * the bits of every soft-dirty block of every colo_ram into their
 * `written` before it clears them; each colo_ram's harvest then moves its
 * own `written` into `dirty`, as manual mode does.
 *
 * Why no write is missed.  Between reading a page's bit and clearing it, a
 * write would set a bit that the clear then wipes: nothing in the kernel
 * makes "read and clear" one step (a frozen task is what other users of
 * soft-dirty rely on).  So the collection fences: every soft-dirty block
 * is made read-only (the generation odd first, so a write that faults on
 * it waits in the handler), then read, then cleared, then made writable
 * again (and the generation even).  mprotect returns after the TLBs are
 * flushed, so from the fence on no write to a block completes until it is
 * down.  A write W that completed before the fence set its page's bit
 * (the kernel sets it in the fault that made the page writable, or the
 * page was written since the last clear and the bit is still set): the
 * read sees it.  A write after the fence finds its page write-protected
 * by the clear (making the block writable again keeps clean pages
 * write-protected where soft-dirty tracks them), faults in the kernel,
 * which sets the bit: the next collection sees it.  The kernel's own
 * writes to a block go through the same faults; while the fence is up
 * they fail with EFAULT.
 *
 * A fence that cannot go up (mprotect fails: out of memory) takes down
 * what it put up and clears nothing: the bits stay for the next try.
 */
int colo__ram_sd_collect(struct colo_ram *ram, struct colo_err *err)
{
	size_t n, fenced = 0;
	int ret = 0;

	colo__ram_slots_lock();
	n = colo__ram_slots_used();
	atomic_fetch_add(&sd_gen, 1);
	for (; fenced < n; fenced++) {
		struct ram_block *b = colo__ram_slot_at(fenced);

		if (!b || !atomic_load(&b->sd))
			continue;
		if (mprotect(b->pub.host, b->pub.length, PROT_READ) != 0) {
			int e = errno;

			ret = colo_err_set(err, e, "RAM block \"%s\": harvest: soft-dirty "
					   "fence: mprotect: %s (nothing cleared)",
					   b->pub.name, strerror(e));
			break;
		}
	}
	for (size_t i = 0; i < n && ret == 0; i++) {
		struct ram_block *b = colo__ram_slot_at(i);

		if (b && atomic_load(&b->sd))
			ret = read_block(ram->pagemap, ram->pmbuf, b, err);
	}
	if (ret == 0 && write(ram->clear_refs, "4", 1) != 1) {
		int e = errno;

		ret = colo_err_set(err, e, "harvest: soft-dirty: writing 4 to "
				   "/proc/self/clear_refs: %s", strerror(e));
	}
	for (size_t i = 0; i < fenced; i++) {
		struct ram_block *b = colo__ram_slot_at(i);

		if (!b || !atomic_load(&b->sd))
			continue;
		if (mprotect(b->pub.host, b->pub.length, PROT_READ | PROT_WRITE) != 0 &&
		    ret == 0) {
			int e = errno;

			/* Its writers will fault: the handler sends that on
			 * as a foreign fault rather than hang. */
			ret = colo_err_set(err, e, "RAM block \"%s\": harvest: soft-dirty: "
					   "making the block writable again: %s",
					   b->pub.name, strerror(e));
		}
	}
	atomic_fetch_add(&sd_gen, 1);
	colo__ram_slots_unlock();
	return ret;
}

/* ---- probe ---- */

/*
 * Really try it on a 4-page scratch mapping: after a collection, a page
 * written before it must read clean; a page written after it must read
 * soft-dirty, and its neighbour clean.  A kernel built without
 * CONFIG_MEM_SOFT_DIRTY accepts the clear and never sets a bit.
 */
static int sd_selftest(struct colo_ram *ram, char *why, size_t whylen)
{
	struct colo_err err;
	uint8_t *p;
	int ret, b1, b2;

	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return colo__ram_why_errno(why, whylen, "mmap");
	memset(p, 1, 4 * PAGE);
	colo_err_clear(&err);
	ret = colo__ram_sd_collect(ram, &err);
	if (ret < 0) {
		snprintf(why, whylen, "%s", err.msg);
	} else if ((b1 = page_bit(ram->pagemap, p + PAGE)) != 0) {
		ret = b1 < 0 ? b1 : -ENOTSUP;
		snprintf(why, whylen, b1 < 0 ? "reading /proc/self/pagemap: %s" :
			 "writing 4 to /proc/self/clear_refs did not clear a page%s",
			 b1 < 0 ? strerror(-b1) : "");
	} else {
		*(volatile uint8_t *)(p + PAGE + 7) = 2;
		b1 = page_bit(ram->pagemap, p + PAGE);
		b2 = page_bit(ram->pagemap, p + 2 * PAGE);
		if (b1 < 0 || b2 < 0) {
			ret = b1 < 0 ? b1 : b2;
			snprintf(why, whylen, "reading /proc/self/pagemap: %s", strerror(-ret));
		} else if (b1 != 1 || b2 != 0) {
			ret = -ENOTSUP;
			snprintf(why, whylen, "a written page was not reported soft-dirty (a "
				 "kernel without CONFIG_MEM_SOFT_DIRTY)");
		}
	}
	munmap(p, 4 * PAGE);
	return ret;
}

int colo__ram_sd_probe(struct colo_ram *ram, char *why, size_t whylen)
{
	_Atomic uint64_t word = 0;
	int ret;

	if (colo__ram_probe_forced(COLO_DIRTY_SOFT_DIRTY, why, whylen))
		return -ENOTSUP;
	if (!atomic_is_lock_free(&word)) {
		snprintf(why, whylen, "64-bit atomics are not lock-free on this CPU");
		return -ENOTSUP;
	}
	ram->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (ram->pagemap < 0)
		return colo__ram_why_errno(why, whylen, "/proc/self/pagemap");
	ram->clear_refs = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
	if (ram->clear_refs < 0)
		ret = colo__ram_why_errno(why, whylen, "/proc/self/clear_refs");
	else if (!(ram->pmbuf = colo__ram_sd_buf_new()))
		ret = -ENOMEM, snprintf(why, whylen, "out of memory");
	else
		ret = colo__ram_segv_ref(why, whylen);
	if (ret == 0) {
		ram->segv_user = true;
		ret = sd_selftest(ram, why, whylen);
		if (ret < 0) {
			colo__ram_segv_unref();
			ram->segv_user = false;
		}
	}
	if (ret < 0) {
		close(ram->pagemap);
		if (ram->clear_refs >= 0)
			close(ram->clear_refs);
		ram->pagemap = ram->clear_refs = -1;
		free(ram->pmbuf);
		ram->pmbuf = NULL;
	}
	return ret;
}

uint64_t *colo__ram_sd_buf_new(void)
{
	return malloc(SD_CHUNK * sizeof(uint64_t));
}

/* ---- shared blocks ---- */

/*
 * As the uffd-wp test does (ram_uffd.c): a write, the page's entry dropped
 * as reclaim drops it (MADV_DONTNEED; the content stays in the file), and
 * the write must still read as soft-dirty.  The write is an atomic add of
 * zero.  Before colo_ram_start: the bits it leaves do not count.
 */
int colo__ram_sd_shared_selftest(struct colo_ram *ram, struct ram_block *b,
				 char *why, size_t whylen)
{
	struct colo_err err;
	int bit, ret;

	colo_err_clear(&err);
	ret = colo__ram_sd_collect(ram, &err);
	if (ret < 0) {
		snprintf(why, whylen, "%s", err.msg);
		return ret;
	}
	__atomic_fetch_add(b->pub.host, 0, __ATOMIC_RELAXED);
	if (madvise(b->pub.host, PAGE, MADV_DONTNEED) != 0)
		return colo__ram_why_errno(why, whylen, "madvise(MADV_DONTNEED)");
	bit = page_bit(ram->pagemap, b->pub.host);
	if (bit < 0) {
		snprintf(why, whylen, "reading /proc/self/pagemap: %s", strerror(-bit));
		return bit;
	}
	if (!bit) {
		snprintf(why, whylen, "a write was not reported once the kernel had "
			 "unmapped the page (as reclaim does)");
		return -ENOTSUP;
	}
	return 0;
}
