/*
 * ram_uffd.c: the uffd-wp dirty-page backend (see ram.h): userfaultfd
 * write-protect in async mode, harvested with PAGEMAP_SCAN on
 * /proc/self/pagemap (Linux >= 6.7).
 *
 * The probe opens the userfaultfd and pagemap descriptors and really tries
 * them on a scratch mapping; on success they belong to the colo_ram
 * (colo_ram_free closes them), as does the scan vector.  Each block is
 * registered when it is added and protected at start; a harvest reports
 * the written pages and protects them again in the same ioctl.  A block
 * that is a shared mapping of a file is really tried when it is added
 * (colo__ram_uffd_shared_selftest).
 *
 * Threads: called from the control thread only.  Guest threads write block
 * memory at any time; the kernel records those writes in the page tables,
 * and no code of ours runs on them.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/fs.h>
#include <linux/userfaultfd.h>

#include "ram.h"
#include "ram_int.h"

/*
 * The build headers (Debian 12: Linux 6.1) predate what uffd-wp mode needs
 * (Linux 6.7); the running kernel decides.  Values from the kernel's
 * include/uapi/linux/userfaultfd.h and include/uapi/linux/fs.h.
 */
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
struct page_region {
	__u64 start;
	__u64 end;              /* exclusive */
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;         /* out: where the walk stopped */
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Regions per PAGEMAP_SCAN call: 384 KiB, so a harvest of 100k scattered
 * pages takes a handful of calls. */
#define RAM_SCAN_VEC 16384

/* ---- userfaultfd and PAGEMAP_SCAN ---- */

/*
 * WP_HUGETLBFS_SHMEM says write-protect works on shmem (shared blocks in a
 * memfd or under /dev/shm).  Every kernel with WP_ASYNC has it (both need
 * CONFIG_PTE_MARKER_UFFD_WP, and it is older), so asking for it costs no
 * fallback; whether a shared block really works is tried when it is added
 * (colo__ram_uffd_shared_selftest).
 */
static int uffd_open(int *fdp, bool *unpopulated, char *why, size_t whylen)
{
	static const uint64_t want[] = {
		UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
			UFFD_FEATURE_WP_UNPOPULATED,
		UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
	};

	for (size_t i = 0; i < 2; i++) {
		struct uffdio_api api = { .api = UFFD_API, .features = want[i] };
		int fd;

		int e;

		/* User-mode faults only where vm.unprivileged_userfaultfd
		 * refuses more to us: async write-protect faults are
		 * resolved before that distinction, so writes by the kernel
		 * (read(2) into a block) are tracked either way. */
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		if (fd < 0 && errno == EPERM)
			fd = (int)syscall(SYS_userfaultfd,
					  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		if (fd < 0) {
			e = errno;
			snprintf(why, whylen, "userfaultfd: %s", strerror(e));
			return -e;
		}
		if (ioctl(fd, UFFDIO_API, &api) == 0) {
			*fdp = fd;
			*unpopulated = want[i] & UFFD_FEATURE_WP_UNPOPULATED;
			return 0;
		}
		/* EINVAL: a feature is missing; a failed UFFDIO_API leaves
		 * the descriptor unusable, so the retry takes a new one. */
		e = errno;
		snprintf(why, whylen, "UFFDIO_API with UFFD_FEATURE_WP_ASYNC: %s", strerror(e));
		close(fd);
		if (e != EINVAL)
			break;
	}
	return -ENOTSUP;
}

int colo__ram_uffd_register(int uffd, void *addr, uint64_t len, char *why, size_t whylen)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
		int e = errno;

		snprintf(why, whylen, "UFFDIO_REGISTER (write-protect mode): %s", strerror(e));
		return -e;
	}
	if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
		snprintf(why, whylen, "UFFDIO_REGISTER: no UFFDIO_WRITEPROTECT on this memory");
		return -ENOTSUP;
	}
	return 0;
}

static int uffd_protect(int uffd, void *addr, uint64_t len, char *why, size_t whylen)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};

	if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) {
		int e = errno;

		snprintf(why, whylen, "UFFDIO_WRITEPROTECT: %s", strerror(e));
		return -e;
	}
	return 0;
}

/*
 * One PAGEMAP_SCAN over [start, end): report the written pages and protect
 * them again.  Returns the number of regions in `vec`, or -errno.
 */
static long pagemap_scan(int pagemap, uintptr_t start, uintptr_t end,
			 struct page_region *vec, size_t vec_len, uintptr_t *walk_end)
{
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		.start = start,
		.end = end,
		.vec = (uintptr_t)vec,
		.vec_len = vec_len,
		.category_mask = PAGE_IS_WRITTEN,
		.return_mask = PAGE_IS_WRITTEN,
	};
	long n;

	do
		n = ioctl(pagemap, PAGEMAP_SCAN, &arg);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	*walk_end = (uintptr_t)arg.walk_end;
	return n;
}

/* ---- probe ---- */

/*
 * Really try uffd-wp on a 4-page mapping: write page 1 of a protected
 * mapping, PAGEMAP_SCAN must report exactly it, and a second scan nothing
 * (the first one protected it again).
 */
static int uffd_selftest(int uffd, int pagemap, char *why, size_t whylen)
{
	struct page_region vec[4];
	uintptr_t walk_end;
	uint8_t *p;
	long n;
	int ret;

	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return colo__ram_why_errno(why, whylen, "mmap");
	memset(p, 1, 4 * PAGE);        /* no dependence on WP_UNPOPULATED here */
	ret = colo__ram_uffd_register(uffd, p, 4 * PAGE, why, whylen);
	if (ret == 0)
		ret = uffd_protect(uffd, p, 4 * PAGE, why, whylen);
	if (ret == 0) {
		*(volatile uint8_t *)(p + PAGE + 7) = 2;
		n = pagemap_scan(pagemap, (uintptr_t)p, (uintptr_t)p + 4 * PAGE,
				 vec, 4, &walk_end);
		if (n < 0) {
			ret = (int)n;
			snprintf(why, whylen, "PAGEMAP_SCAN: %s", strerror(-ret));
		} else if (n != 1 || vec[0].start != (uintptr_t)p + PAGE ||
			   vec[0].end != (uintptr_t)p + 2 * PAGE) {
			ret = -ENOTSUP;
			snprintf(why, whylen, "PAGEMAP_SCAN did not report exactly the written page");
		} else if ((n = pagemap_scan(pagemap, (uintptr_t)p, (uintptr_t)p + 4 * PAGE,
					     vec, 4, &walk_end)) != 0) {
			ret = n < 0 ? (int)n : -ENOTSUP;
			snprintf(why, whylen, "PAGEMAP_SCAN did not protect the page again");
		}
	}
	munmap(p, 4 * PAGE);
	return ret;
}

/* uffd-wp: open and check everything, keep the descriptors on success. */
int colo__ram_uffd_probe(struct colo_ram *ram, char *why, size_t whylen)
{
	int ret;

	if (colo__ram_probe_forced(COLO_DIRTY_UFFD_WP, why, whylen))
		return -ENOTSUP;
	ret = uffd_open(&ram->uffd, &ram->wp_unpopulated, why, whylen);
	if (ret < 0)
		return ret;
	ram->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (ram->pagemap < 0) {
		ret = colo__ram_why_errno(why, whylen, "/proc/self/pagemap");
	} else {
		ret = uffd_selftest(ram->uffd, ram->pagemap, why, whylen);
	}
	if (ret < 0) {
		close(ram->uffd);
		if (ram->pagemap >= 0)
			close(ram->pagemap);
		ram->uffd = ram->pagemap = -1;
	}
	return ret;
}

struct page_region *colo__ram_uffd_vec_new(void)
{
	return malloc(RAM_SCAN_VEC * sizeof(struct page_region));
}

/* ---- shared blocks ---- */

/*
 * A shared block is tried on its own page 0, because what works depends on
 * the file (shmem, or a regular file of some file system) and on the
 * kernel.  Beyond what the probe checks, a file's page table entries can
 * be dropped at any time (reclaim, writeback and eviction of a regular
 * file's page, swap-out of shmem) while the page stays in the file; an
 * entry dropped after a write and before the next harvest must still read
 * as written.  MADV_DONTNEED drops the entry as reclaim does (the content
 * stays in the file), so the test does that between write and scan.  The
 * write is an atomic add of zero: the content is unchanged even if
 * another process writes the file meanwhile.
 */
int colo__ram_uffd_shared_selftest(struct colo_ram *ram, struct ram_block *b,
				   char *why, size_t whylen)
{
	uintptr_t p = (uintptr_t)b->pub.host, walk_end;
	struct page_region vec[1];
	long n;
	int ret;

	ret = uffd_protect(ram->uffd, b->pub.host, PAGE, why, whylen);
	if (ret < 0)
		return ret;
	n = pagemap_scan(ram->pagemap, p, p + PAGE, vec, 1, &walk_end);
	if (n != 0) {
		snprintf(why, whylen, "PAGEMAP_SCAN: %s", n < 0 ? strerror((int)-n) :
			 "a protected page nobody wrote was reported");
		return n < 0 ? (int)n : -ENOTSUP;
	}
	__atomic_fetch_add(b->pub.host, 0, __ATOMIC_RELAXED);
	if (madvise(b->pub.host, PAGE, MADV_DONTNEED) != 0)
		return colo__ram_why_errno(why, whylen, "madvise(MADV_DONTNEED)");
	n = pagemap_scan(ram->pagemap, p, p + PAGE, vec, 1, &walk_end);
	if (n < 0) {
		snprintf(why, whylen, "PAGEMAP_SCAN: %s", strerror((int)-n));
		return (int)n;
	}
	if (n != 1 || vec[0].start != p || vec[0].end != p + PAGE) {
		snprintf(why, whylen, "a write was not reported once the kernel had "
			 "unmapped the page (as reclaim does)");
		return -ENOTSUP;
	}
	n = pagemap_scan(ram->pagemap, p, p + PAGE, vec, 1, &walk_end);
	if (n != 0) {
		snprintf(why, whylen, "PAGEMAP_SCAN: %s", n < 0 ? strerror((int)-n) :
			 "the page was not protected again");
		return n < 0 ? (int)n : -ENOTSUP;
	}
	return 0;
}

/* ---- start ---- */

int colo__ram_uffd_start(struct colo_ram *ram, struct ram_block *b, struct colo_err *err)
{
	char why[200];
	int ret;

	if (!ram->wp_unpopulated && !b->shared) {
		/*
		 * Without WP_UNPOPULATED, protecting an anonymous page that
		 * has no page table entry yet does nothing, and its first
		 * write would go unseen: give every page an entry first.  The
		 * atomic add of zero (the fallback) cannot undo a concurrent
		 * write.  (Shared blocks need none of it: the kernel protects
		 * a file's missing entries with markers in any case.)
		 */
		if (madvise(b->pub.host, b->pub.length, MADV_POPULATE_WRITE) != 0) {
			for (uint64_t p = 0; p < b->pub.npages; p++)
				__atomic_fetch_add(b->pub.host + (p << SHIFT), 0,
						   __ATOMIC_RELAXED);
		}
	}
	ret = uffd_protect(ram->uffd, b->pub.host, b->pub.length, why, sizeof(why));
	if (ret < 0)
		return colo_err_set(err, -ret, "RAM block \"%s\": start tracking: %s",
				    b->pub.name, why);
	return 0;
}

/* ---- harvest ---- */

/*
 * uffd-wp.  Why no write is missed: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING
 * tests and sets each page's uffd-wp bit under the page-table lock and
 * flushes the TLB before the ioctl returns.  A write that reached a page
 * before the scan tested it cleared the bit (the async fault, or the page
 * was never protected since the last scan): this scan reports it.  A write
 * after the bit is set takes the async fault, which clears it again: the
 * next scan reports it.  A write through a stale TLB entry between the two
 * can only land before the flush, i.e. before this harvest returns, and on
 * a page this scan reported (it only re-protects pages it reports), so the
 * caller's copy, made after we return, sees it.  When the output vector
 * fills, the kernel stops at walk_end without protecting what it did not
 * report, and the loop goes on from there.
 */
int colo__ram_uffd_harvest(struct colo_ram *ram, struct ram_block *b, uint64_t *added,
			   struct colo_err *err)
{
	uintptr_t host = (uintptr_t)b->pub.host;
	uintptr_t end = host + b->pub.length;
	uintptr_t at = host;

	while (at < end) {
		uintptr_t walk_end = at;
		long n = pagemap_scan(ram->pagemap, at, end, ram->vec, RAM_SCAN_VEC,
				      &walk_end);

		if (n < 0)
			return colo_err_set(err, (int)-n, "RAM block \"%s\": harvest: "
					    "PAGEMAP_SCAN at offset %llu: %s", b->pub.name,
					    (unsigned long long)(at - host), strerror((int)-n));
		for (long i = 0; i < n; i++) {
			const struct page_region *r = &ram->vec[i];

			assert(r->start >= host && r->end <= end && r->start < r->end);
			*added += colo__ram_bitmap_set_range(b->pub.dirty,
							     (r->start - host) >> SHIFT,
							     (r->end - r->start) >> SHIFT);
		}
		if (walk_end <= at || walk_end > end)
			return colo_err_set(err, EIO, "RAM block \"%s\": harvest: "
					    "PAGEMAP_SCAN made no progress at offset %llu",
					    b->pub.name, (unsigned long long)(at - host));
		at = walk_end;
	}
	*added += colo__ram_take_written(b, NULL, NULL);
	return 0;
}
