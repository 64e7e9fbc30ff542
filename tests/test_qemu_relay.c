/*
 * test_qemu_relay.c: colo-primary's reading of QEMU's COLO stream (the
 * relay, guests/qemu_relay.c; DESIGN.md §9) on streams QEMU really sent,
 * whole, in pieces and damaged (tests/qemu_harness.h runs the relay on
 * bytes and records them from QEMU).
 *
 * Streams: the committed seeds of the fuzz target (tests/fuzz/qemu-seeds/,
 * recorded from `-machine none -m 64k` by this program's --write-seeds, one
 * of them with page records added to its checkpoints), and when
 * qemu-system-x86_64 and /dev/kvm are there a pc machine recorded at start
 * (-m 32M, three checkpoints, RAM dumps taken while QEMU kept the VM
 * stopped in the last one).  Tests that need the pc recording SKIP without
 * QEMU or KVM.
 *
 *   - the pc recording replayed gives QEMU's RAM (pmemsave), blocks as
 *     `info ramblock`, the device sections and vmdesc QEMU sent, and the
 *     answers READY then REPLY, RECEIVED, LOADED per checkpoint;
 *   - every stream gives the same end and state however its bytes arrive;
 *   - damage to the initial migration (header, configuration, command,
 *     MEM_SIZE, a page record, truncation, devices that do not match the
 *     vmdesc) ends the relay with a line naming it, and nothing is ready;
 *   - damage inside a checkpoint (page flags, VMSTATE_SIZE short, short
 *     ending on a 0 byte, long, huge or zero, device bytes not FULL..EOF, a
 *     wrong message, truncation at several points) ends it with a line naming it, and the mirror and
 *     the device are exactly as after the checkpoint before (nothing half
 *     applied): the same hash as a run on the stream cut there.
 *
 *   test_qemu_relay --write-seeds DIR   records the seeds (needs QEMU, KVM)
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "colomsg.h"
#include "qemu_harness.h"
#include "qemu_int.h"
#include "qmp.h"
#include "ram.h"
#include "testutil.h"
#include "vmdesc.h"

#define QEMU "qemu-system-x86_64"
#define TEST_TIMEOUT_S 120
#define PC_CKPTS 3
#define PC_RAM (32u << 20)
#define SEEDS_DIR "tests/fuzz/qemu-seeds"
#define CLOSED "QEMU closed its migration connection"

/* ---- the streams ---- */

struct fixture {
	char name[64];
	struct qh_stream s;
	struct qh_recording rec;           /* the pc recording: dumps too */
	bool live;
};

static struct {
	struct fixture f[4];
	size_t n;
	bool pc_wanted;                    /* QEMU and KVM are here */
	char pc_error[1024];               /* why recording failed */
	char seed_error[5000];
} T;

static const char *const pc_args[] = {
	"-machine", "pc", "-m", "32M", "-nodefaults", "-display", "none", "-accel", "kvm",
	NULL
};

static const char *const none_args[] = {
	"-machine", "none", "-m", "64k", "-nodefaults", "-display", "none", "-accel", "kvm",
	NULL
};

static const char *const committed[] = { "none-initial-3ckpts", "none-pages-edited" };

static bool have_qemu_kvm(char **qemu)
{
	*qemu = colo_qmp_find_program(QEMU);
	if (*qemu && access("/dev/kvm", R_OK | W_OK) == 0)
		return true;
	free(*qemu);
	*qemu = NULL;
	return false;
}

static void load_seed(const char *name)
{
	const char *top = getenv("top_srcdir");
	struct fixture *f = &T.f[T.n];
	struct colo_err err;
	char path[4096];
	uint8_t *data;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/" SEEDS_DIR "/%s", top ? top : ".", name);
	data = colo_test_read_file(path, &len);
	colo_err_clear(&err);
	if (!data || len < 2) {
		snprintf(T.seed_error, sizeof(T.seed_error), "cannot read %s", path);
	} else if (qh_index(data + 1, len - 1, &f->s, &err) != 0) {
		snprintf(T.seed_error, sizeof(T.seed_error), "%s: %s", path, err.msg);
	} else {
		snprintf(f->name, sizeof(f->name), "%s", name);
		T.n++;
	}
	free(data);
}

/* Once, in the runner process: the tests fork from it with the streams. */
static void fixtures_up(void)
{
	struct colo_err err;
	char *qemu, *dir;

	for (size_t i = 0; i < sizeof(committed) / sizeof(committed[0]); i++)
		load_seed(committed[i]);
	T.pc_wanted = have_qemu_kvm(&qemu);
	if (!T.pc_wanted)
		return;
	dir = colo_test_tmpdir();
	colo_err_clear(&err);
	if (!dir) {
		snprintf(T.pc_error, sizeof(T.pc_error), "no temp dir");
	} else if (qh_record(qemu, dir, pc_args, PC_CKPTS, 200, true, &T.f[T.n].rec,
			     &err) != 0) {
		char log[4200];
		size_t len = 0;
		uint8_t *text;

		snprintf(log, sizeof(log), "%s/qemu.log", dir);
		text = colo_test_read_file(log, &len);
		snprintf(T.pc_error, sizeof(T.pc_error), "recording the pc: %.400s; QEMU: %.*s",
			 err.msg, text ? (int)(len > 300 ? 300 : len) : 0,
			 text ? (const char *)text : "");
		free(text);
	} else {
		struct fixture *f = &T.f[T.n++];

		snprintf(f->name, sizeof(f->name), "pc (recorded now)");
		f->s = f->rec.s;
		f->live = true;
	}
	colo_test_rmdir(dir);
	free(qemu);
}

static void fixtures_down(void)
{
	for (size_t i = 0; i < T.n; i++) {
		if (T.f[i].live)
			qh_recording_free(&T.f[i].rec);
		else
			qh_stream_free(&T.f[i].s);
	}
	T.n = 0;
}

static struct fixture *pc_fixture(void)
{
	for (size_t i = 0; i < T.n; i++)
		if (T.f[i].live)
			return &T.f[i];
	if (!T.pc_wanted)
		colo_test_skip("needs " QEMU " and /dev/kvm");
	ck_abort_msg("%s", T.pc_error);
	return NULL;
}

/* ---- running ---- */

static struct qh_run *run_on(const uint8_t *d, size_t len, uint8_t split)
{
	struct qh_opts o = { .split_seed = split };
	struct qh_run *run = NULL;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(qh_run(d, len, &o, &run, &err) == 0, "harness: %s", err.msg);
	return run;
}

static size_t checkpoints(const struct qh_run *run)
{
	size_t n;

	ck_assert_msg(qh_answers_ok(run, &n), "answers out of order (%zu of them)",
		      run->nanswers);
	return n;
}

/* One line that says what happened. */
static void assert_one_line(const struct qh_run *run, const char *ctx)
{
	ck_assert_msg(run->ended[0] != '\0', "%s: the relay ended without a reason", ctx);
	ck_assert_msg(!strchr(run->ended, '\n'), "%s: more than a line: %s", ctx, run->ended);
}

START_TEST(recorded_stream_rebuilds_qemus_ram)
{
	struct fixture *f = pc_fixture();
	const struct qh_recording *rec = &f->rec;
	const struct qh_stream *s = &f->s;
	const struct qh_ckpt *last = &s->ckpt[s->nckpts - 1];
	struct qh_run *run = run_on(s->data, s->len, 0);
	struct qemu_guest *q = run->q;
	struct colo_ram_block *ram = NULL, *bios = NULL;
	size_t pages = 0;

	/* The VM ran between checkpoints: they carry pages, all held and put. */
	for (size_t k = 0; k < s->nckpts; k++)
		pages += s->ckpt[k].npages;
	ck_assert_msg(pages > 0, "QEMU's checkpoints carried no pages");
	ck_assert_uint_eq(q->pages_in, pages);

	ck_assert_msg(strcmp(run->ended, CLOSED) == 0, "the relay ended: %s", run->ended);
	ck_assert_uint_eq(checkpoints(run), PC_CKPTS);
	ck_assert_uint_eq(run->nanswers, 1 + 3 * PC_CKPTS);
	ck_assert_uint_eq(q->ckpts, PC_CKPTS);
	ck_assert_msg(strcmp(rec->status, "colo") == 0, "QEMU's VM was '%s' at the dumps",
		      rec->status);

	/* The blocks QEMU announced are those `info ramblock` lists. */
	ck_assert_uint_eq(q->nblocks, rec->nramblocks);
	for (size_t i = 0; i < q->nblocks; i++) {
		const struct colo_ram_block *b = q->blocks[i];
		bool found = false;

		for (size_t j = 0; j < rec->nramblocks; j++)
			if (strcmp(rec->ramblocks[j].name, b->name) == 0) {
				ck_assert_msg(rec->ramblocks[j].used == b->length,
					      "%s: %llu bytes, QEMU uses %llu", b->name,
					      (unsigned long long)b->length,
					      (unsigned long long)rec->ramblocks[j].used);
				found = true;
			}
		ck_assert_msg(found, "block %s is not in `info ramblock`", b->name);
		if (strcmp(b->name, "pc.ram") == 0)
			ram = q->blocks[i];
		if (strcmp(b->name, "pc.bios") == 0)
			bios = q->blocks[i];
	}
	ck_assert_msg(ram && bios && ram->length == PC_RAM, "no pc.ram of 32 MiB or no pc.bios");

	/* The mirror is QEMU's RAM as the last checkpoint left it.  Between
	 * 640 KiB and 1 MiB guest-physical addresses show ROM or nothing. */
	ck_assert_uint_eq(rec->low_len, PC_RAM);
	for (size_t off = 0; off < PC_RAM; off += COLO_PAGE_SIZE) {
		if (off >= 0xa0000 && off < 0x100000)
			continue;
		ck_assert_msg(memcmp(ram->host + off, rec->low + off, COLO_PAGE_SIZE) == 0,
			      "pc.ram differs from QEMU's RAM at 0x%zx", off);
	}
	ck_assert_uint_eq(rec->bios_len, bios->length);
	ck_assert_msg(memcmp(bios->host, rec->bios, bios->length) == 0,
		      "pc.bios differs from what QEMU maps below 4 GiB");

	/* The device is what QEMU sent: its last device sections, the vmdesc. */
	ck_assert_msg(strncmp((const char *)q->dev.machine, "pc-i440fx-", 10) == 0,
		      "machine '%s'", q->dev.machine);
	ck_assert_uint_eq(q->dev.blob_len, last->end - last->dev);
	ck_assert_msg(memcmp(q->dev.blob, s->data + last->dev, q->dev.blob_len) == 0,
		      "device sections differ from the last checkpoint's");
	ck_assert_uint_eq(q->dev.blob[0], COLO_SEC_FULL);
	ck_assert_uint_eq(q->dev.blob[q->dev.blob_len - 1], COLO_SEC_EOF);
	ck_assert_uint_eq(q->dev.vmdesc_len, s->initial_len - s->vmdesc - 5);
	ck_assert_msg(memcmp(q->dev.vmdesc, s->data + s->vmdesc + 5, q->dev.vmdesc_len) == 0,
		      "vmdesc differs from QEMU's");
	ck_assert_msg(q->vd && q->vd->ndevs == s->ndevices, "vmdesc of %zu devices, %zu sent",
		      q->vd ? q->vd->ndevs : 0, s->ndevices);
	qh_run_free(run);
}
END_TEST

START_TEST(same_state_however_the_bytes_arrive)
{
	ck_assert_msg(T.seed_error[0] == '\0', "%s", T.seed_error);
	for (size_t i = 0; i < T.n; i++) {
		const struct qh_stream *s = &T.f[i].s;
		struct qh_run *whole = run_on(s->data, s->len, 0);
		uint64_t h = qh_state_hash(whole->q);

		ck_assert_msg(strcmp(whole->ended, CLOSED) == 0, "%s: %s", T.f[i].name,
			      whole->ended);
		ck_assert_msg(whole->gates == 2 * s->nckpts && whole->stalls == 0,
			      "%s: the writer waited %zu times, %zu in vain", T.f[i].name,
			      whole->gates, whole->stalls);
		ck_assert_uint_eq(checkpoints(whole), s->nckpts);
		ck_assert_msg(whole->notify_hash == h, "%s: state changed after the last "
			      "checkpoint", T.f[i].name);
		for (unsigned seed = 1; seed <= 8; seed++) {
			struct qh_run *split = run_on(s->data, s->len, (uint8_t)(seed * 37));

			ck_assert_msg(strcmp(split->ended, whole->ended) == 0,
				      "%s, split %u: ended '%s'", T.f[i].name, seed, split->ended);
			ck_assert_uint_eq(split->nanswers, whole->nanswers);
			ck_assert_msg(qh_state_hash(split->q) == h, "%s, split %u: another state",
				      T.f[i].name, seed);
			qh_run_free(split);
		}
		qh_run_free(whole);
	}
}
END_TEST

/* ---- damage ---- */

struct edit {
	uint8_t *d;
	size_t len;
};

static void put_be32(struct edit *e, size_t at, uint32_t v)
{
	colo_store_be32(e->d + at, v);
}

/* Which checkpoint to damage: the second, so a first one is in the mirror. */
static size_t victim(const struct qh_stream *s)
{
	return s->nckpts >= 2 ? 1 : 0;
}

/* A damage: edits the copy for checkpoint k (or the initial migration);
 * false when this stream has no such item. */
struct damage {
	const char *what;
	bool (*apply)(const struct qh_stream *s, size_t k, struct edit *e);
	const char *want;                  /* in the relay's last word */
	const char *want2;                 /* and this, if set */
	bool replied;                      /* QEMU's REQUEST was read */
};

/* ---- ... of the initial migration ---- */

static bool magic(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)s; (void)k;
	e->d[0] ^= 0x20;
	return true;
}

static bool version(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)s; (void)k;
	put_be32(e, 4, 2);
	return true;
}

static bool config_name(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	if (s->config == SIZE_MAX)
		return false;
	put_be32(e, s->config + 1, 0x10000);
	return true;
}

static bool command(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	if (s->command == SIZE_MAX)
		return false;
	/* 0x08, be16 cmd, be16 0: OPEN_RETURN_PATH has no data either */
	colo_store_be16(e->d + s->command + 1, COLO_CMD_OPEN_RETURN_PATH);
	return true;
}

static bool block_length(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	colo_store_be64(e->d + s->block_len, colo_load_be64(e->d + s->block_len) + 1);
	return true;
}

/* A total one page short of what the first block needs after the others. */
static bool mem_total(const struct qh_stream *s, size_t k, struct edit *e)
{
	uint64_t v = colo_load_be64(e->d + s->mem_size), less = COLO_PAGE_SIZE;

	(void)k;
	for (size_t i = 1; i < s->nblocks; i++)
		less += s->blocks[i].length;
	colo_store_be64(e->d + s->mem_size, v - less);
	return true;
}

/* RAM START without its MEM_SIZE record: its pages name blocks nobody
 * announced (a stream with no pages at all: tests/fuzz/qemu-regress/). */
static bool no_mem_size(const struct qh_stream *s, size_t k, struct edit *e)
{
	size_t len = 8;

	(void)k;
	for (size_t i = 0; i < s->nblocks; i++)
		len += 1 + strlen(s->blocks[i].name) + 8;
	memmove(e->d + s->mem_size, e->d + s->mem_size + len, e->len - s->mem_size - len);
	e->len -= len;
	return s->first_page != SIZE_MAX;
}

static bool initial_page_flags(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	if (s->first_page == SIZE_MAX)
		return false;
	/* FULL (0x001, refused since QEMU 2.x), CONTINUE kept */
	e->d[s->first_page + 7] = (uint8_t)((e->d[s->first_page + 7] & 0x20) | 0x01);
	e->d[s->first_page + 6] &= 0xf0;
	return true;
}

static bool cut_in_header(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)s; (void)k;
	e->len = 6;
	return true;
}

static bool cut_before_mem_size(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	e->len = s->mem_size + 3;
	return true;
}

static bool cut_in_pages(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	if (s->first_page == SIZE_MAX)
		return false;
	e->len = s->first_page + 5;
	return true;
}

static bool cut_in_devices(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	e->len = s->devices + (s->vmdesc - s->devices) / 2;
	return true;
}

static bool cut_in_vmdesc(const struct qh_stream *s, size_t k, struct edit *e)
{
	(void)k;
	e->len = s->initial_len - 1;
	return true;
}

/* The first device's instance id changed: the vmdesc does not list it, so
 * no VMDESCRIPTION walks the devices and the migration never looks whole. */
static bool devices_unlike_vmdesc(const struct qh_stream *s, size_t k, struct edit *e)
{
	size_t at = s->devices + 1 + 4 + 1 + e->d[s->devices + 5];

	(void)k;
	colo_store_be32(e->d + at, colo_load_be32(e->d + at) + 1);
	return true;
}

static const struct damage initial_damage[] = {
	{ "magic", magic, "QEMU's migration stream", "magic", false },
	{ "version", version, "QEMU's migration stream", "version", false },
	{ "configuration name length", config_name, "QEMU's migration stream",
	  "configuration", false },
	{ "a command other than ENABLE_COLO", command, "QEMU sent command",
	  "ENABLE_COLO only", false },
	{ "a block length that is not whole pages", block_length, "MEM_SIZE",
	  "not a positive multiple of 4096", false },
	{ "a MEM_SIZE total below its blocks", mem_total, "MEM_SIZE",
	  "more than the announced total", false },
	{ "no MEM_SIZE", no_mem_size, "QEMU's migration stream", "names unknown block", false },
	{ "a page record's flags", initial_page_flags, "unknown combination of RAM flags",
	  NULL, false },
	{ "cut in the header", cut_in_header, CLOSED, NULL, false },
	{ "cut before MEM_SIZE", cut_before_mem_size, CLOSED, NULL, false },
	{ "cut in the pages", cut_in_pages, CLOSED, NULL, false },
	{ "cut in the devices", cut_in_devices, CLOSED, NULL, false },
	{ "cut in the vmdesc", cut_in_vmdesc, CLOSED, NULL, false },
	{ "devices that do not match the vmdesc", devices_unlike_vmdesc, CLOSED, NULL,
	  false },
};

/* ---- ... of a checkpoint ---- */

static bool ck_page_flags(const struct qh_stream *s, size_t k, struct edit *e)
{
	size_t at = s->ckpt[k].first_page;

	if (at == SIZE_MAX)
		return false;
	/* XBZRLE: a kind QEMU can send but colo-primary does not enable */
	e->d[at + 6] = (uint8_t)((e->d[at + 6] & 0xf0));
	e->d[at + 7] = (uint8_t)((e->d[at + 7] & 0x20) | 0x40);
	return true;
}

static bool ck_request(const struct qh_stream *s, size_t k, struct edit *e)
{
	put_be32(e, s->ckpt[k].start, 7);
	return true;
}

static bool ck_send(const struct qh_stream *s, size_t k, struct edit *e)
{
	put_be32(e, s->ckpt[k].send, COLO_MSG_VMSTATE_SIZE);
	return true;
}

static bool ck_size_msg(const struct qh_stream *s, size_t k, struct edit *e)
{
	put_be32(e, s->ckpt[k].size, COLO_MSG_VMSTATE_SEND);
	return true;
}

static void set_size(struct edit *e, const struct qh_ckpt *c, uint64_t n)
{
	colo_store_be64(e->d + c->size + 4, n);
}

static bool ck_size_huge(const struct qh_stream *s, size_t k, struct edit *e)
{
	set_size(e, &s->ckpt[k], 1ull << 32);
	return true;
}

static bool ck_size_zero(const struct qh_stream *s, size_t k, struct edit *e)
{
	set_size(e, &s->ckpt[k], 0);
	return true;
}

/* Shorter: the device bytes end on a byte that is not EOF. */
static bool ck_size_short(const struct qh_stream *s, size_t k, struct edit *e)
{
	const struct qh_ckpt *c = &s->ckpt[k];
	size_t n = c->end - c->dev - 1;

	while (n > 1 && e->d[c->dev + n - 1] == COLO_SEC_EOF)
		n--;
	set_size(e, c, n);
	return true;
}

/* Shorter and ending on a 0 byte (in the last footer's section id), as an
 * EOF would: only the missing footer before it tells. */
static bool ck_size_short_on_zero(const struct qh_stream *s, size_t k, struct edit *e)
{
	const struct qh_ckpt *c = &s->ckpt[k];
	size_t n = c->end - c->dev - 1;

	while (n > 1 && e->d[c->dev + n - 1] != COLO_SEC_EOF)
		n--;
	set_size(e, c, n);
	return n > 1;
}

/* Longer: the device bytes take the next checkpoint's REQUEST. */
static bool ck_size_long(const struct qh_stream *s, size_t k, struct edit *e)
{
	const struct qh_ckpt *c = &s->ckpt[k];

	if (k + 1 >= s->nckpts)
		return false;
	set_size(e, c, c->end - c->dev + 4);
	return true;
}

static bool ck_dev_not_eof(const struct qh_stream *s, size_t k, struct edit *e)
{
	e->d[s->ckpt[k].end - 1] = 0x7e;
	return true;
}

static bool ck_dev_not_full(const struct qh_stream *s, size_t k, struct edit *e)
{
	e->d[s->ckpt[k].dev] = COLO_SEC_PART;
	return true;
}

#define CUT(name, expr)                                                        \
static bool name(const struct qh_stream *s, size_t k, struct edit *e)        \
{                                                                              \
	const struct qh_ckpt *c = &s->ckpt[k];                                 \
	(void)c;                                                               \
	e->len = (expr);                                                       \
	return true;                                                           \
}

CUT(cut_before_request, c->start + 2)
CUT(cut_after_request, c->start + 4)
CUT(cut_after_send, c->send + 4)
CUT(cut_in_ram, c->ram + (c->eof - c->ram) / 2)
CUT(cut_before_eof, c->eof)
CUT(cut_after_eof, c->eof + 1)
CUT(cut_in_size, c->size + 7)
CUT(cut_in_dev, c->dev + (c->end - c->dev) / 2)
CUT(cut_before_dev_end, c->end - 1)

static const struct damage ckpt_damage[] = {
	{ "a page record's flags", ck_page_flags, "QEMU's migration stream",
	  "uses encoding 'xbzrle'", true },
	{ "a message where REQUEST is due", ck_request,
	  "QEMU sent COLO message 7 (unknown) where CHECKPOINT_REQUEST was due", NULL, false },
	{ "a message where VMSTATE_SEND is due", ck_send,
	  "QEMU sent COLO message 4 (VMSTATE_SIZE) where VMSTATE_SEND was due", NULL, true },
	{ "a message where VMSTATE_SIZE is due", ck_size_msg,
	  "QEMU sent COLO message 3 (VMSTATE_SEND) where VMSTATE_SIZE was due", NULL, true },
	{ "a huge VMSTATE_SIZE", ck_size_huge,
	  "QEMU's device state of 4294967296 bytes (1 to 67108864)", NULL, true },
	{ "VMSTATE_SIZE 0", ck_size_zero, "QEMU's device state of 0 bytes", NULL, true },
	{ "a VMSTATE_SIZE too short", ck_size_short, "does not run from a device section "
	  "to EOF", NULL, true },
	{ "a VMSTATE_SIZE too short, ending on a 0 byte", ck_size_short_on_zero,
	  "does not run from a device section to EOF", NULL, true },
	{ "a VMSTATE_SIZE too long", ck_size_long, "does not run from a device section "
	  "to EOF", NULL, true },
	{ "device bytes not ending in EOF", ck_dev_not_eof, "does not run from a device "
	  "section to EOF", NULL, true },
	{ "device bytes not starting with a FULL section", ck_dev_not_full,
	  "does not run from a device section to EOF", NULL, true },
	{ "cut in REQUEST", cut_before_request, CLOSED, NULL, false },
	{ "cut after REQUEST", cut_after_request, CLOSED, NULL, true },
	{ "cut after VMSTATE_SEND", cut_after_send, CLOSED, NULL, true },
	{ "cut in the RAM section", cut_in_ram, CLOSED, NULL, true },
	{ "cut before the EOF", cut_before_eof, CLOSED, NULL, true },
	{ "cut after the EOF", cut_after_eof, CLOSED, NULL, true },
	{ "cut in VMSTATE_SIZE", cut_in_size, CLOSED, NULL, true },
	{ "cut in the device bytes", cut_in_dev, CLOSED, NULL, true },
	{ "cut before the last device byte", cut_before_dev_end, CLOSED, NULL, true },
};

static struct edit copy_of(const struct qh_stream *s)
{
	struct edit e = { malloc(s->len), s->len };

	ck_assert(e.d);
	memcpy(e.d, s->data, s->len);
	return e;
}

static void check_end(const struct qh_run *run, const struct damage *d, const char *name)
{
	/* in the test's log: what the relay said */
	fprintf(stderr, "# %s, %s: %s\n", name, d->what, run->ended);
	assert_one_line(run, name);
	ck_assert_msg(strstr(run->ended, d->want) && (!d->want2 || strstr(run->ended, d->want2)),
		      "%s, %s: the relay ended '%s', not with '%s'%s%s", name, d->what,
		      run->ended, d->want, d->want2 ? " ... " : "", d->want2 ? d->want2 : "");
}

START_TEST(initial_damage_is_named_and_nothing_is_ready)
{
	const struct damage *d = &initial_damage[_i];
	size_t tried = 0;

	ck_assert_msg(T.seed_error[0] == '\0', "%s", T.seed_error);
	for (size_t i = 0; i < T.n; i++) {
		const struct qh_stream *s = &T.f[i].s;
		struct edit e = copy_of(s);
		struct qh_run *run;

		if (!d->apply(s, 0, &e)) {
			free(e.d);
			continue;
		}
		tried++;
		run = run_on(e.d, e.len, 0);
		check_end(run, d, T.f[i].name);
		ck_assert_msg(run->nanswers == 0 && !run->q->ready && run->notified == 0,
			      "%s, %s: %zu answers, ready %d", T.f[i].name, d->what,
			      run->nanswers, run->q->ready);
		qh_run_free(run);
		free(e.d);
	}
	ck_assert_msg(tried > 0, "%s: no stream to try it on", d->what);
}
END_TEST

START_TEST(checkpoint_damage_is_named_and_applies_nothing)
{
	const struct damage *d = &ckpt_damage[_i];
	size_t tried = 0;

	ck_assert_msg(T.seed_error[0] == '\0', "%s", T.seed_error);
	for (size_t i = 0; i < T.n; i++) {
		const struct qh_stream *s = &T.f[i].s;
		size_t k = victim(s), want;
		struct edit e = copy_of(s);
		struct qh_run *run, *before;

		/* page damage: the first checkpoint that has pages */
		if (d->apply == ck_page_flags)
			for (k = 0; k < s->nckpts && s->ckpt[k].first_page == SIZE_MAX; k++)
				;
		want = 1 + 3 * k + (d->replied ? 1 : 0);
		if (k >= s->nckpts || !d->apply(s, k, &e)) {
			free(e.d);
			continue;
		}
		tried++;
		run = run_on(e.d, e.len, 0);
		check_end(run, d, T.f[i].name);
		ck_assert_msg(checkpoints(run) == k && run->nanswers == want,
			      "%s, %s: %zu answers, %zu wanted", T.f[i].name, d->what,
			      run->nanswers, want);
		/* Exactly the state of the stream cut before this checkpoint. */
		before = run_on(s->data, s->ckpt[k].start, 0);
		ck_assert_msg(strcmp(before->ended, CLOSED) == 0 && checkpoints(before) == k,
			      "%s: the stream cut before checkpoint %zu: %s", T.f[i].name, k,
			      before->ended);
		ck_assert_uint_eq(run->q->ckpts, k);
		ck_assert_msg(qh_state_hash(run->q) == qh_state_hash(before->q),
			      "%s, %s: the mirror or the device changed", T.f[i].name, d->what);
		ck_assert_msg(run->notify_hash == qh_state_hash(run->q),
			      "%s, %s: state changed after the last notify", T.f[i].name,
			      d->what);
		qh_run_free(before);
		qh_run_free(run);
		free(e.d);
	}
	ck_assert_msg(tried > 0, "%s: no stream to try it on", d->what);
}
END_TEST

/* QEMU sent its initial migration and waits for READY, but the relay never
 * sees its end: it must not wait for ever with the VM stopped. */
START_TEST(initial_migration_that_never_ends_is_named)
{
	const struct qh_stream *s;
	struct qh_opts o = { .hold = true };
	struct qh_run *run = NULL;
	struct colo_err err;
	struct edit e;

	ck_assert_msg(T.n > 0, "%s", T.seed_error);
	s = &T.f[0].s;
	e = copy_of(s);
	devices_unlike_vmdesc(s, 0, &e);
	colo_err_clear(&err);
	ck_assert_msg(qh_run(e.d, s->initial_len, &o, &run, &err) == 0, "%s", err.msg);
	fprintf(stderr, "# %s, silence after the initial migration: %s\n", T.f[0].name,
		run->ended);
	assert_one_line(run, T.f[0].name);
	/* What looked like the end did not walk: the relay says why. */
	ck_assert_msg(strstr(run->ended, "QEMU's initial migration: the device sections do "
			     "not match the VMDESCRIPTION at offset ") &&
		      strstr(run->ended, "is not in the VMDESCRIPTION"), "the relay ended: %s",
		      run->ended);
	ck_assert_uint_eq(run->nanswers, 0);
	qh_run_free(run);
	free(e.d);
}
END_TEST

START_TEST(committed_seeds_are_qemus_streams)
{
	ck_assert_msg(T.seed_error[0] == '\0', "%s", T.seed_error);
	for (size_t i = 0; i < T.n; i++) {
		const struct qh_stream *s = &T.f[i].s;

		ck_assert_msg(s->nckpts >= 3 && !s->partial && s->ndevices > 0 &&
			      s->nblocks > 0, "%s: %zu checkpoints, %zu devices, %zu blocks",
			      T.f[i].name, s->nckpts, s->ndevices, s->nblocks);
	}
	/* The edited one has pages in its checkpoints, for the page damage. */
	ck_assert_msg(T.n >= 2 && T.f[1].s.ckpt[1].npages == 2 && T.f[1].s.ckpt[2].npages == 1,
		      "none-pages-edited lacks its page records");
}
END_TEST

/* ---- the seeds ---- */

static void die(const char *what, const char *why)
{
	fprintf(stderr, "test_qemu_relay --write-seeds: %s: %s\n", what, why);
	exit(1);
}

static void write_seed(const char *dir, const char *name, uint8_t split, const void *d,
		       size_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(&split, 1, 1, f) != 1 || fwrite(d, 1, len, f) != len || fclose(f))
		die(path, strerror(errno));
	printf("%s: %zu bytes\n", path, len + 1);
}

/* Page records put before the EOS of a checkpoint's RAM section (the
 * section's footer and EOF follow it: 13 bytes before the EOF's end). */
static void add_pages(struct colo_buf *out, const struct qh_stream *s, size_t k,
		      size_t *from)
{
	size_t eos = s->ckpt[k].eof - 5 - 8;
	uint8_t page[COLO_PAGE_SIZE];

	if (colo_load_be64(s->data + eos) != COLO_RAM_EOS)
		die("none-pages-edited", "no EOS where expected");
	colo_buf_put(out, s->data + *from, eos - *from);
	*from = eos;
	if (k == 1) {
		for (size_t i = 0; i < sizeof(page); i++)
			page[i] = (uint8_t)(i * 7 + 1);
		colo_buf_put_be64(out, 0x1000 | COLO_RAM_ZERO);
		colo_buf_put_u8(out, (uint8_t)strlen(s->blocks[0].name));
		colo_buf_put(out, s->blocks[0].name, strlen(s->blocks[0].name));
		colo_buf_put_u8(out, 0x5a);
		colo_buf_put_be64(out, 0x3000 | COLO_RAM_PAGE | COLO_RAM_CONTINUE);
		colo_buf_put(out, page, sizeof(page));
	} else {
		colo_buf_put_be64(out, 0x3000 | COLO_RAM_ZERO);
		colo_buf_put_u8(out, (uint8_t)strlen(s->blocks[0].name));
		colo_buf_put(out, s->blocks[0].name, strlen(s->blocks[0].name));
		colo_buf_put_u8(out, 0);
	}
}

static int write_seeds(const char *dir)
{
	struct qh_recording none, pc;
	struct colo_buf ed = COLO_BUF_INIT;
	struct colo_err err;
	char *qemu, *tmp = colo_test_tmpdir();
	size_t from = 0;

	if (!have_qemu_kvm(&qemu) || !tmp)
		die("recording", "needs " QEMU ", /dev/kvm and a temp dir");
	colo_err_clear(&err);
	if (qh_record(qemu, tmp, none_args, 3, 50, false, &none, &err) != 0)
		die("recording -machine none", err.msg);
	if (qh_record(qemu, tmp, pc_args, 1, 200, false, &pc, &err) != 0)
		die("recording -machine pc", err.msg);
	mkdir(dir, 0755);
	write_seed(dir, "none-initial-3ckpts", 0, none.s.data, none.s.len);
	write_seed(dir, "none-initial-3ckpts-split", 0x5b, none.s.data, none.s.len);
	write_seed(dir, "none-initial", 0, none.s.data, none.s.initial_len);
	add_pages(&ed, &none.s, 1, &from);
	add_pages(&ed, &none.s, 2, &from);
	colo_buf_put(&ed, none.s.data + from, none.s.len - from);
	if (!colo_buf_ok(&ed))
		die("none-pages-edited", "out of memory");
	write_seed(dir, "none-pages-edited", 0, ed.data, ed.len);
	/* The pc's configuration and RAM blocks, cut at its first page. */
	write_seed(dir, "pc-to-first-page", 0, pc.s.data, pc.s.first_page);
	colo_buf_free(&ed);
	qh_recording_free(&none);
	qh_recording_free(&pc);
	colo_test_rmdir(tmp);
	free(qemu);
	return 0;
}

static Suite *suite(void)
{
	Suite *s = suite_create("qemu_relay");
	TCase *tc = tcase_create("relay");

	tcase_add_unchecked_fixture(tc, fixtures_up, fixtures_down);
	tcase_set_timeout(tc, TEST_TIMEOUT_S);
	tcase_add_test(tc, committed_seeds_are_qemus_streams);
	tcase_add_test(tc, recorded_stream_rebuilds_qemus_ram);
	tcase_add_test(tc, same_state_however_the_bytes_arrive);
	tcase_add_test(tc, initial_migration_that_never_ends_is_named);
	tcase_add_loop_test(tc, initial_damage_is_named_and_nothing_is_ready, 0,
			    (int)(sizeof(initial_damage) / sizeof(initial_damage[0])));
	tcase_add_loop_test(tc, checkpoint_damage_is_named_and_applies_nothing, 0,
			    (int)(sizeof(ckpt_damage) / sizeof(ckpt_damage[0])));
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	return colo_test_main(suite());
}
