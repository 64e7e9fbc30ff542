/*
 * ram.c: guest RAM blocks and the backend-independent half of dirty-page
 * tracking (see ram.h): mode names, the probe order, block set-up
 * (anonymous or a shared file's pages, and unsharing those), the bitmaps,
 * and the dispatch of start and harvest to ram_uffd.c, ram_softdirty.c and
 * ram_mprotect.c (what they share: ram_int.h).
 *
 * Every block has two bitmaps: `dirty` (public, owned by the control
 * thread) and `written` (private, atomic words).  `written` collects what
 * was noticed between harvests (colo_ram_mark_dirty in every mode; the
 * SIGSEGV handler in mprotect mode); a harvest exchanges each word with 0
 * and ORs it into `dirty`.  In uffd-wp mode the kernel keeps the rest of the
 * record in the page tables and PAGEMAP_SCAN hands it over.
 *
 * Why each backend never misses a write is argued next to its harvest:
 * colo__ram_uffd_harvest() in ram_uffd.c, colo__ram_sd_collect() in
 * ram_softdirty.c, colo__ram_mprotect_harvest() (with ram_segv_fault()) in
 * ram_mprotect.c.
 *
 * Threads: colo_ram_mark_dirty() only ORs into `written`, from any thread;
 * the rest is called from the control thread.  The only process-wide state
 * here is what colo_ram_probe_fail() set (atomic).
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ram.h"
#include "ram_int.h"

/* Largest block: 64 TiB keeps every page count and offset far from overflow. */
#define RAM_BLOCK_MAX ((uint64_t)1 << 46)
/* A block name's buffer, its terminating NUL included. */
#define RAM_NAME_SIZE sizeof(((struct colo_ram_block *)NULL)->name)

static atomic_bool ram_fail_forced[5];  /* colo_ram_probe_fail() */

/* ---- names ---- */

static const char *const mode_names[] = {
	[COLO_DIRTY_AUTO] = "auto",
	[COLO_DIRTY_UFFD_WP] = "uffd-wp",
	[COLO_DIRTY_MPROTECT] = "mprotect",
	[COLO_DIRTY_MANUAL] = "manual",
	[COLO_DIRTY_SOFT_DIRTY] = "soft-dirty",
};

const char *colo_dirty_mode_name(enum colo_dirty_mode m)
{
	if ((unsigned)m < sizeof(mode_names) / sizeof(mode_names[0]))
		return mode_names[m];
	return "?";
}

int colo_dirty_mode_parse(const char *s, enum colo_dirty_mode *m)
{
	for (unsigned i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++) {
		if (s && strcmp(s, mode_names[i]) == 0) {
			*m = (enum colo_dirty_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}

void colo_ram_probe_fail(enum colo_dirty_mode m, bool fail)
{
	if ((unsigned)m < sizeof(ram_fail_forced) / sizeof(ram_fail_forced[0]))
		atomic_store(&ram_fail_forced[m], fail);
}

/*
 * Does COLO_DIRTY_PROBE_FAIL (a comma-separated list, names matched whole)
 * name `name` + `suffix`?
 */
static bool env_forced(const char *name, const char *suffix)
{
	const char *env = getenv("COLO_DIRTY_PROBE_FAIL");
	size_t n = strlen(name), ns = strlen(suffix);

	for (const char *p = env; p && *p;) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len == n + ns && memcmp(p, name, n) == 0 && memcmp(p + n, suffix, ns) == 0)
			return true;
		p = end ? end + 1 : NULL;
	}
	return false;
}

/* Is backend `m` forced to fail?  Says by whom in `why`. */
bool colo__ram_probe_forced(enum colo_dirty_mode m, char *why, size_t whylen)
{
	if (atomic_load(&ram_fail_forced[m])) {
		snprintf(why, whylen, "forced to fail by colo_ram_probe_fail()");
		return true;
	}
	if (env_forced(colo_dirty_mode_name(m), "")) {
		snprintf(why, whylen, "forced to fail by COLO_DIRTY_PROBE_FAIL");
		return true;
	}
	return false;
}

/* Is backend `m` forced to fail on shared blocks?  Says by whom in `why`. */
bool colo__ram_shared_forced(enum colo_dirty_mode m, char *why, size_t whylen)
{
	if (env_forced(colo_dirty_mode_name(m), ":shared")) {
		snprintf(why, whylen, "forced to fail by COLO_DIRTY_PROBE_FAIL");
		return true;
	}
	return false;
}

/* ---- bitmaps ---- */

static size_t words_for(uint64_t npages)
{
	return (size_t)((npages + 63) / 64);
}

/* Mask of the valid bits of word `w` (the last word may be partial). */
uint64_t colo__ram_word_mask(uint64_t npages, size_t w)
{
	uint64_t left = npages - (uint64_t)w * 64;

	return left >= 64 ? ~0ull : (1ull << left) - 1;
}

/* OR pages [first, first + n) into `bm`; returns how many were not set. */
uint64_t colo__ram_bitmap_set_range(uint64_t *bm, uint64_t first, uint64_t n)
{
	uint64_t added = 0;

	while (n) {
		size_t w = (size_t)(first / 64);
		unsigned bit = (unsigned)(first % 64);
		unsigned take = n < 64 - bit ? (unsigned)n : 64 - bit;
		uint64_t m = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;

		added += (uint64_t)__builtin_popcountll(m & ~bm[w]);
		bm[w] |= m;
		first += take;
		n -= take;
	}
	return added;
}

/* "<what>: <strerror(errno)>" into `why`; returns -errno. */
int colo__ram_why_errno(char *why, size_t whylen, const char *what)
{
	int e = errno;

	snprintf(why, whylen, "%s: %s", what, strerror(e));
	return -e;
}

/* ---- colo_ram ---- */

int colo_ram_new(enum colo_dirty_mode mode, struct colo_ram **out, struct colo_err *err)
{
	char why_uffd[200] = "", why_sd[200] = "", why_mp[200] = "";
	struct colo_ram *ram;
	int ret = 0;

	*out = NULL;
	if ((unsigned)mode > COLO_DIRTY_SOFT_DIRTY)
		return colo_err_set(err, EINVAL, "dirty tracking: unknown mode %d", (int)mode);
	ram = calloc(1, sizeof(*ram));
	if (!ram)
		return colo_err_set(err, ENOMEM, "dirty tracking: out of memory");
	ram->uffd = ram->pagemap = ram->clear_refs = -1;

	switch (mode) {
	case COLO_DIRTY_AUTO:
		if (colo__ram_uffd_probe(ram, why_uffd, sizeof(why_uffd)) == 0) {
			ram->mode = COLO_DIRTY_UFFD_WP;
			snprintf(ram->reason, sizeof(ram->reason),
				 "uffd-wp: userfaultfd async write-protect with PAGEMAP_SCAN works");
		} else if (colo__ram_sd_probe(ram, why_sd, sizeof(why_sd)) == 0) {
			ram->mode = COLO_DIRTY_SOFT_DIRTY;
			snprintf(ram->reason, sizeof(ram->reason),
				 "soft-dirty: uffd-wp unavailable (%s)", why_uffd);
		} else if (colo__ram_mprotect_probe(ram, why_mp, sizeof(why_mp)) == 0) {
			ram->mode = COLO_DIRTY_MPROTECT;
			snprintf(ram->reason, sizeof(ram->reason),
				 "mprotect: uffd-wp unavailable (%s); soft-dirty unavailable (%s)",
				 why_uffd, why_sd);
		} else {
			ram->mode = COLO_DIRTY_MANUAL;
			snprintf(ram->reason, sizeof(ram->reason),
				 "manual: uffd-wp unavailable (%s); soft-dirty unavailable (%s); "
				 "mprotect unavailable (%s)", why_uffd, why_sd, why_mp);
		}
		ram->auto_picked = true;
		break;
	case COLO_DIRTY_UFFD_WP:
		ret = colo__ram_uffd_probe(ram, why_uffd, sizeof(why_uffd));
		if (ret < 0)
			colo_err_set(err, -ret, "dirty tracking uffd-wp unavailable: %s "
				     "(needs Linux >= 6.7; try dirty-tracking=auto)", why_uffd);
		break;
	case COLO_DIRTY_MPROTECT:
		ret = colo__ram_mprotect_probe(ram, why_mp, sizeof(why_mp));
		if (ret < 0)
			colo_err_set(err, -ret, "dirty tracking mprotect unavailable: %s", why_mp);
		break;
	case COLO_DIRTY_SOFT_DIRTY:
		ret = colo__ram_sd_probe(ram, why_sd, sizeof(why_sd));
		if (ret < 0)
			colo_err_set(err, -ret, "dirty tracking soft-dirty unavailable: %s "
				     "(try dirty-tracking=auto)", why_sd);
		break;
	case COLO_DIRTY_MANUAL:
		break;
	}
	if (ret < 0) {
		colo_ram_free(ram);
		return ret;
	}
	if (mode != COLO_DIRTY_AUTO) {
		ram->mode = mode;
		snprintf(ram->reason, sizeof(ram->reason), "%s: requested",
			 colo_dirty_mode_name(mode));
	}
	if (ram->mode == COLO_DIRTY_UFFD_WP) {
		ram->vec = colo__ram_uffd_vec_new();
		if (!ram->vec) {
			colo_ram_free(ram);
			return colo_err_set(err, ENOMEM, "dirty tracking: out of memory");
		}
	}
	*out = ram;
	return 0;
}

static void block_free(struct ram_block *b)
{
	colo__ram_slot_del(b);
	if (b->map)
		munmap(b->map, b->maplen);
	free(b->written);
	free(b->carried);
	free(b->pub.dirty);
	free(b);
}

void colo_ram_free(struct colo_ram *ram)
{
	if (!ram)
		return;
	ram->prot.pending = false;            /* nothing to protect any more */
	colo__ram_protector_stop(ram);
	for (size_t i = 0; i < ram->nblocks; i++)
		block_free(ram->blocks[i]);
	free(ram->blocks);
	if (ram->uffd >= 0)
		close(ram->uffd);
	if (ram->pagemap >= 0)
		close(ram->pagemap);
	if (ram->clear_refs >= 0)
		close(ram->clear_refs);
	free(ram->vec);
	free(ram->pmbuf);
	if (ram->segv_user)
		colo__ram_segv_unref();
	free(ram);
}

enum colo_dirty_mode colo_ram_tracking(const struct colo_ram *ram)
{
	return ram->mode;
}

const char *colo_ram_tracking_reason(const struct colo_ram *ram)
{
	return ram->reason;
}

size_t colo_ram_nblocks(const struct colo_ram *ram)
{
	return ram->nblocks;
}

struct colo_ram_block *colo_ram_block_at(struct colo_ram *ram, size_t i)
{
	return i < ram->nblocks ? &ram->blocks[i]->pub : NULL;
}

struct colo_ram_block *colo_ram_find(struct colo_ram *ram, const char *name)
{
	for (size_t i = 0; i < ram->nblocks; i++)
		if (strcmp(ram->blocks[i]->pub.name, name) == 0)
			return &ram->blocks[i]->pub;
	return NULL;
}

/*
 * What every added block must satisfy: before start, a name of 1 to 255
 * bytes not used yet, a size in range.  Returns the name's length, or
 * -errno with `err` set.
 */
static int block_check(struct colo_ram *ram, const char *name, uint64_t size,
		       struct colo_err *err)
{
	size_t namelen = name ? strnlen(name, RAM_NAME_SIZE) : 0;

	if (namelen == 0)
		return colo_err_set(err, EINVAL, "RAM block: empty name");
	if (namelen >= RAM_NAME_SIZE)
		return colo_err_set(err, ENAMETOOLONG,
				    "RAM block \"%.32s...\": name longer than 255 bytes", name);
	if (ram->started)
		return colo_err_set(err, EBUSY,
				    "RAM block \"%s\": blocks are added before tracking starts", name);
	if (colo_ram_find(ram, name))
		return colo_err_set(err, EEXIST, "RAM block \"%s\": name already used", name);
	if (size == 0 || size > RAM_BLOCK_MAX)
		return colo_err_set(err, EINVAL, "RAM block \"%s\": size %llu out of range "
				    "(1 byte to %llu GiB)", name, (unsigned long long)size,
				    (unsigned long long)(RAM_BLOCK_MAX >> 30));
	return (int)namelen;
}

/*
 * Map a block: `fd` < 0 for anonymous memory, else a MAP_SHARED mapping of
 * the file.  An inaccessible guard page on each side: an overrun faults
 * instead of landing in a neighbour, and the block's VMAs never merge with
 * a neighbour's, so whole-block mprotect never has to split one.  The
 * guards are one anonymous reservation, the block mapped over its middle.
 */
static int block_map(struct ram_block *b, int fd, struct colo_err *err)
{
	uint64_t len = b->pub.length;
	int e;

	b->maplen = (size_t)len + 2 * PAGE;
	b->map = mmap(NULL, b->maplen, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b->map == MAP_FAILED) {
		e = errno;
		b->map = NULL;
		return colo_err_set(err, e, "RAM block \"%s\": mmap of %llu bytes: %s",
				    b->pub.name, (unsigned long long)len, strerror(e));
	}
	b->pub.host = b->map + PAGE;
	if (fd < 0) {
		if (mprotect(b->pub.host, len, PROT_READ | PROT_WRITE) == 0)
			return 0;
		e = errno;
		return colo_err_set(err, e, "RAM block \"%s\": mprotect: %s",
				    b->pub.name, strerror(e));
	}
	if (mmap(b->pub.host, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, 0) != MAP_FAILED) {
		b->shared = true;
		return 0;
	}
	e = errno;
	return colo_err_set(err, e, "RAM block \"%s\": mmap of %llu bytes of fd %d "
			    "(MAP_SHARED): %s", b->pub.name, (unsigned long long)len, fd,
			    strerror(e));
}

/*
 * auto chose soft-dirty, and the shared block `b` cannot be tracked by it:
 * the colo_ram goes over to mprotect, which can (it is tried next).  Only
 * before colo_ram_start() (blocks are added before it), so nothing was
 * tracked yet: every block is in the handler's table already and becomes
 * an mprotect block, read-only from start on.  The handler reference the
 * soft-dirty probe took serves mprotect as well.
 */
static void auto_to_mprotect(struct colo_ram *ram, struct ram_block *b, const char *why)
{
	char was[sizeof(ram->reason)];

	colo__ram_slots_lock();
	for (size_t i = 0; i < ram->nblocks; i++)
		atomic_store(&ram->blocks[i]->sd, false);
	atomic_store(&b->sd, false);
	ram->mode = COLO_DIRTY_MPROTECT;
	colo__ram_slots_unlock();
	snprintf(was, sizeof(was), "%s", ram->reason);
	snprintf(ram->reason, sizeof(ram->reason), "mprotect: soft-dirty cannot track "
		 "the shared block \"%.64s\" (%.150s); was %.200s", b->pub.name, why, was);
}

/*
 * Set up the tracking of a block's memory as it is now (new, or just
 * replaced by colo_ram_block_unshare): not yet protected, which
 * colo_ram_start() does.  A shared block is really tried first.
 */
static int block_track(struct colo_ram *ram, struct ram_block *b, struct colo_err *err)
{
	char why[200] = "";
	int ret = 0;

	if (ram->mode == COLO_DIRTY_MANUAL)
		return 0;
	/* Track 4 KiB pages, not 2 MiB ones: every dirty page is sent.
	 * Advisory: failure only costs precision. */
	(void)madvise(b->pub.host, b->pub.length, MADV_NOHUGEPAGE);
	if (b->shared && colo__ram_shared_forced(ram->mode, why, sizeof(why)))
		ret = -ENOTSUP;
	if (ret == 0 && ram->mode == COLO_DIRTY_UFFD_WP) {
		ret = colo__ram_uffd_register(ram->uffd, b->pub.host, b->pub.length,
					      why, sizeof(why));
		if (ret == 0 && b->shared)
			ret = colo__ram_uffd_shared_selftest(ram, b, why, sizeof(why));
	}
	if (ram->mode == COLO_DIRTY_MPROTECT || ram->mode == COLO_DIRTY_SOFT_DIRTY) {
		/* Published to the handler by the slot's release store. */
		atomic_store(&b->sd, ram->mode == COLO_DIRTY_SOFT_DIRTY);
		if (b->slot < 0 && colo__ram_slot_add(b) < 0)
			return colo_err_set(err, ENOSPC, "RAM block \"%s\": more than %d "
					    "blocks tracked by %s in this process", b->pub.name,
					    RAM_MAX_SLOTS, colo_dirty_mode_name(ram->mode));
	}
	if (ret == 0 && ram->mode == COLO_DIRTY_SOFT_DIRTY && b->shared)
		ret = colo__ram_sd_shared_selftest(ram, b, why, sizeof(why));
	if (ret < 0 && ram->mode == COLO_DIRTY_SOFT_DIRTY && b->shared && ram->auto_picked) {
		auto_to_mprotect(ram, b, why);
		ret = colo__ram_shared_forced(ram->mode, why, sizeof(why)) ? -ENOTSUP : 0;
	}
	if (ret == 0 && ram->mode == COLO_DIRTY_MPROTECT && b->shared)
		ret = colo__ram_mprotect_shared_selftest(b, why, sizeof(why));
	if (ret < 0 && b->shared)
		return colo_err_set(err, -ret, "RAM block \"%s\": dirty tracking %s cannot "
				    "track a shared mapping of this file: %s%s", b->pub.name,
				    colo_dirty_mode_name(ram->mode), why,
				    ram->mode == COLO_DIRTY_UFFD_WP ||
				    ram->mode == COLO_DIRTY_SOFT_DIRTY ?
				    " (try dirty-tracking=mprotect)" : "");
	if (ret < 0)
		return colo_err_set(err, -ret, "RAM block \"%s\": %s", b->pub.name, why);
	return 0;
}

/*
 * The common part of colo_ram_add_block and colo_ram_add_block_fd: `fd`
 * < 0 for anonymous memory, else a file already checked and sized.
 */
static int block_add(struct colo_ram *ram, const char *name, size_t namelen, uint64_t len,
		     int fd, struct colo_ram_block **out, struct colo_err *err)
{
	struct ram_block *b;
	int ret;

	colo__ram_protector_wait(ram);        /* it walks ram->blocks */
	if (ram->nblocks == ram->cap) {
		size_t cap = ram->cap ? ram->cap * 2 : 4;
		struct ram_block **v = realloc(ram->blocks, cap * sizeof(*v));

		if (!v)
			return colo_err_set(err, ENOMEM, "RAM block \"%s\": out of memory", name);
		ram->blocks = v;
		ram->cap = cap;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return colo_err_set(err, ENOMEM, "RAM block \"%s\": out of memory", name);
	b->slot = -1;
	b->sync = &ram->sync;
	memcpy(b->pub.name, name, namelen + 1);
	b->pub.length = len;
	b->pub.npages = len >> SHIFT;
	b->pub.ram = ram;
	b->nwords = words_for(b->pub.npages);
	b->pub.dirty = calloc(b->nwords, sizeof(uint64_t));
	b->written = calloc(b->nwords, sizeof(*b->written));
	b->carried = calloc(b->nwords, sizeof(uint64_t));
	if (!b->pub.dirty || !b->written || !b->carried) {
		block_free(b);
		return colo_err_set(err, ENOMEM, "RAM block \"%s\": out of memory "
				    "for its bitmaps", name);
	}
	ret = block_map(b, fd, err);
	if (ret == 0)
		ret = block_track(ram, b, err);
	if (ret < 0) {
		block_free(b);
		return ret;
	}
	ram->blocks[ram->nblocks++] = b;
	if (out)
		*out = &b->pub;
	return 0;
}

static uint64_t page_round(uint64_t size)
{
	return (size + PAGE - 1) & ~(uint64_t)(PAGE - 1);
}

int colo_ram_add_block(struct colo_ram *ram, const char *name, uint64_t size,
		       struct colo_ram_block **out, struct colo_err *err)
{
	int namelen;

	if (out)
		*out = NULL;
	namelen = block_check(ram, name, size, err);
	if (namelen < 0)
		return namelen;
	return block_add(ram, name, (size_t)namelen, page_round(size), -1, out, err);
}

int colo_ram_add_block_fd(struct colo_ram *ram, const char *name, uint64_t size, int fd,
			  struct colo_ram_block **out, struct colo_err *err)
{
	struct stat st;
	uint64_t len;
	int namelen, fl, e;

	if (out)
		*out = NULL;
	namelen = block_check(ram, name, size, err);
	if (namelen < 0)
		return namelen;
	len = page_round(size);
	/* Checked here, where the message can say what is wrong with the
	 * descriptor; mmap would only say EACCES or ENODEV. */
	if (fd < 0 || fstat(fd, &st) != 0) {
		e = fd < 0 ? EBADF : errno;
		return colo_err_set(err, e, "RAM block \"%s\": file descriptor %d: %s",
				    name, fd, strerror(e));
	}
	if (!S_ISREG(st.st_mode))
		return colo_err_set(err, EINVAL, "RAM block \"%s\": file descriptor %d is not "
				    "a regular file or a memfd", name, fd);
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || (fl & O_PATH) || (fl & O_ACCMODE) != O_RDWR)
		return colo_err_set(err, EACCES, "RAM block \"%s\": file descriptor %d is "
				    "not open for reading and writing (O_RDWR)", name, fd);
	/* Only when the size differs: a sealed memfd of the right size
	 * (F_SEAL_GROW, F_SEAL_SHRINK) is fine as it is. */
	if ((uint64_t)st.st_size != len && ftruncate(fd, (off_t)len) != 0) {
		e = errno;
		return colo_err_set(err, e, "RAM block \"%s\": resizing the file of fd %d "
				    "from %lld to %llu bytes: %s", name, fd,
				    (long long)st.st_size, (unsigned long long)len, strerror(e));
	}
	return block_add(ram, name, (size_t)namelen, len, fd, out, err);
}

bool colo_ram_block_shared(const struct colo_ram_block *pub)
{
	return ((const struct ram_block *)pub)->shared;
}

/* ---- start ---- */

static void block_dirty_all(struct ram_block *b)
{
	for (size_t w = 0; w < b->nwords; w++)
		b->pub.dirty[w] = colo__ram_word_mask(b->pub.npages, w);
}

int colo_ram_start(struct colo_ram *ram, struct colo_err *err)
{
	int ret = 0;

	if (ram->mode == COLO_DIRTY_MPROTECT) {
		colo__ram_protector_wait(ram);
		colo__ram_harvest_enter(&ram->sync);
	}
	/* soft-dirty: clear the bits (noting other colo_ram's first). */
	if (ram->mode == COLO_DIRTY_SOFT_DIRTY)
		ret = colo__ram_sd_collect(ram, err);
	for (size_t i = 0; i < ram->nblocks && ret == 0; i++) {
		struct ram_block *b = ram->blocks[i];

		/* Before protecting: what was noted so far is moot, every
		 * page is dirty below anyway. */
		for (size_t w = 0; w < b->nwords; w++)
			atomic_store(&b->written[w], 0);
		memset(b->carried, 0, b->nwords * sizeof(uint64_t));
		if (ram->mode == COLO_DIRTY_UFFD_WP) {
			ret = colo__ram_uffd_start(ram, b, err);
		} else if (ram->mode == COLO_DIRTY_MPROTECT &&
			   mprotect(b->pub.host, b->pub.length, PROT_READ) != 0) {
			int e = errno;

			ret = colo_err_set(err, e, "RAM block \"%s\": start tracking: "
					   "mprotect: %s", b->pub.name, strerror(e));
		}
		block_dirty_all(b);
	}
	if (ram->mode == COLO_DIRTY_MPROTECT)
		colo__ram_harvest_leave(&ram->sync);
	if (ret == 0)
		ram->started = true;
	return ret;
}

/* ---- shared blocks ---- */

/*
 * MAP_FIXED replaces the file's pages by anonymous ones in one step: the
 * guards around stay, and nothing else can land in between.  The new
 * memory is a new VMA that knows nothing of the old one's userfaultfd
 * registration, so tracking is set up again (block_track).  In mprotect
 * mode the slot stays: it holds the block by address, which is unchanged.
 * After start, the new memory is protected before anyone can write it
 * (mprotect: mapped read-only; uffd-wp: protected by colo__ram_uffd_start)
 * and every page is dirty, so the invariants of both backends hold as they
 * do after colo_ram_start().
 */
int colo_ram_block_unshare(struct colo_ram_block *pub, struct colo_err *err)
{
	struct ram_block *b = (struct ram_block *)pub;
	struct colo_ram *ram = pub->ram;
	int prot = PROT_READ | PROT_WRITE, ret, e;
	void *p;

	if (!b->shared)
		return colo_err_set(err, EINVAL, "RAM block \"%s\": unshare: not a shared "
				    "block", pub->name);
	colo__ram_protector_wait(ram);        /* it may be protecting this block */
	if (ram->started && ram->mode == COLO_DIRTY_MPROTECT)
		prot = PROT_READ;
	/* soft-dirty: not between a collection's fence and its end. */
	colo__ram_slots_lock();
	p = mmap(pub->host, pub->length, prot,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
	colo__ram_slots_unlock();
	if (p == MAP_FAILED) {
		/* MAP_FIXED may have unmapped the old pages before failing:
		 * from here the block must not be touched, only freed. */
		e = errno;
		return colo_err_set(err, e, "RAM block \"%s\": unshare: mmap of %llu bytes: "
				    "%s (the block is unusable)", pub->name,
				    (unsigned long long)pub->length, strerror(e));
	}
	b->shared = false;
	/* All of it is new and read-only (or not tracked yet): no note of
	 * the old mapping's pages counts. */
	for (size_t w = 0; w < b->nwords; w++)
		atomic_store(&b->written[w], 0);
	memset(b->carried, 0, b->nwords * sizeof(uint64_t));
	ret = block_track(ram, b, err);
	if (ret == 0 && ram->started && ram->mode == COLO_DIRTY_UFFD_WP)
		ret = colo__ram_uffd_start(ram, b, err);
	block_dirty_all(b);
	if (ret < 0)
		colo_err_prefix(err, "unshare: the block is private, its tracking lost");
	return ret;
}

/* ---- harvest ---- */

/*
 * Move `written` into `dirty`; returns the pages new to `dirty`.  With
 * `carry` (mprotect's `carried`, see colo__ram_mprotect_harvest()) what it
 * holds is reported too, and what was taken replaces it; *took is set when
 * anything was.
 */
uint64_t colo__ram_take_written(struct ram_block *b, uint64_t *carry, bool *took)
{
	uint64_t added = 0;

	for (size_t w = 0; w < b->nwords; w++) {
		uint64_t bits = 0, report;

		if (atomic_load_explicit(&b->written[w], memory_order_relaxed))
			bits = atomic_exchange(&b->written[w], 0);
		report = carry ? bits | carry[w] : bits;
		if (!report)
			continue;
		added += (uint64_t)__builtin_popcountll(report & ~b->pub.dirty[w]);
		b->pub.dirty[w] |= report;
		if (carry) {
			carry[w] = bits;
			*took |= bits != 0;
		}
	}
	return added;
}

int colo_ram_harvest(struct colo_ram *ram, uint64_t *ndirty, struct colo_err *err)
{
	uint64_t added = 0;
	bool carried = false;
	int ret = 0;

	if (ndirty)
		*ndirty = 0;
	if (!ram->started)
		return colo_err_set(err, EINVAL, "harvest: dirty tracking not started");
	if (ram->mode == COLO_DIRTY_MPROTECT) {
		/* The last harvest's pages are read-only again first (see
		 * colo__ram_mprotect_harvest()). */
		colo__ram_protector_wait(ram);
		colo__ram_harvest_enter(&ram->sync);
	}
	/* soft-dirty: the kernel's bits into `written`, which the default
	 * case below takes. */
	if (ram->mode == COLO_DIRTY_SOFT_DIRTY)
		ret = colo__ram_sd_collect(ram, err);
	for (size_t i = 0; i < ram->nblocks && ret == 0; i++) {
		struct ram_block *b = ram->blocks[i];

		switch (ram->mode) {
		case COLO_DIRTY_UFFD_WP:
			ret = colo__ram_uffd_harvest(ram, b, &added, err);
			break;
		case COLO_DIRTY_MPROTECT:
			carried |= colo__ram_mprotect_harvest(b, &added);
			break;
		default:
			added += colo__ram_take_written(b, NULL, NULL);
			break;
		}
	}
	if (ram->mode == COLO_DIRTY_MPROTECT) {
		colo__ram_harvest_leave(&ram->sync);
		ret = colo__ram_protector_error(ram, err);
		ram->prot.pending = carried;      /* for colo_ram_rearm() */
	}
	if (ndirty)
		*ndirty = added;
	return ret;
}

void colo_ram_rearm(struct colo_ram *ram)
{
	if (ram->mode == COLO_DIRTY_MPROTECT && ram->prot.pending) {
		ram->prot.pending = false;
		colo__ram_protector_kick(ram);
	}
}

/* ---- bitmaps, public ---- */

void colo_ram_mark_dirty(struct colo_ram_block *pub, uint64_t offset, uint64_t len)
{
	struct ram_block *b = (struct ram_block *)pub;
	uint64_t first, n;

	assert(offset <= pub->length && len <= pub->length - offset);
	if (len == 0)
		return;
	first = offset >> SHIFT;
	n = ((offset + len - 1) >> SHIFT) - first + 1;
	while (n) {
		size_t w = (size_t)(first / 64);
		unsigned bit = (unsigned)(first % 64);
		unsigned take = n < 64 - bit ? (unsigned)n : 64 - bit;
		uint64_t m = (take == 64 ? ~0ull : ((1ull << take) - 1)) << bit;

		atomic_fetch_or(&b->written[w], m);
		first += take;
		n -= take;
	}
}

void colo_ram_block_clear_dirty(struct colo_ram_block *b)
{
	memset(b->dirty, 0, words_for(b->npages) * sizeof(uint64_t));
}

uint64_t colo_ram_block_count_dirty(const struct colo_ram_block *b)
{
	uint64_t n = 0;

	for (size_t w = 0; w < words_for(b->npages); w++)
		n += (uint64_t)__builtin_popcountll(b->dirty[w]);
	return n;
}
