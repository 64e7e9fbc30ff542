/*
 * gen_seeds.c: write the seed corpus of the stream fuzz target.
 *
 *   gen_seeds DIR
 *
 * A fuzzer that starts from nothing spends its first hours finding "QEVM";
 * one that starts from real streams mutates the parts that matter.  The
 * seeds are made with colo's own writer, so they follow the format exactly
 * (DESIGN.md §3): full saves of the demo guest (with and without vmdesc,
 * with ENABLE_COLO), and hand-built streams for what a full save never
 * contains: commands (PING, OPEN_RETURN_PATH, PACKAGED with a nested
 * stream), a configuration with capabilities, page bits and UUID,
 * x-ignore-shared block addresses, every RAM page kind, streams without
 * footers, and headerless continuation streams (RAM END section, EOF)
 * several to a channel.  Each file starts with the mode and piece-seed
 * bytes of fuzz_stream.h.
 *
 * Seeds stay small (a 16-64 KiB RAM block, mostly zero pages) so the
 * fuzzer runs fast on them.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "demo.h"
#include "fuzz_stream.h"
#include "pagecodec.h"
#include "ramfmt.h"
#include "savevm.h"
#include "stream.h"

static const char *out_dir;
static int written;

static void die(const char *what, const struct colo_err *e)
{
	fprintf(stderr, "gen_seeds: %s: %s\n", what, e ? e->msg : strerror(errno));
	exit(1);
}

static void write_seed(const char *name, enum fuzz_mode mode, uint8_t piece_seed,
		       const struct colo_buf *b)
{
	char path[4096];
	uint8_t hdr[FUZZ_HEADER_LEN] = { (uint8_t)mode, piece_seed };
	FILE *f;

	if (!colo_buf_ok(b))
		die(name, NULL);
	snprintf(path, sizeof(path), "%s/%s", out_dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(hdr, 1, sizeof(hdr), f) != sizeof(hdr) ||
	    fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0)
		die(path, NULL);
	written++;
}

/* ---- the demo guest, full saves ---- */

/*
 * Devices from a non-zero seed (every field kind has a value), RAM mostly
 * zero pages: one page of text and one of random bytes are enough for the
 * PAGE records, and the rest of the block keeps the seed small.
 */
static void demo_make(struct colo_demo *d, uint64_t ram)
{
	struct colo_err e;

	colo_err_clear(&e);
	if (colo_demo_init(d, ram, 7, &e))
		die("demo guest", &e);
	memset(d->ram + 2 * COLO_PAGE_SIZE, 0, ram - 2 * COLO_PAGE_SIZE);
}

/* Bytes of a configuration section as the writer puts it. */
static size_t config_len(const struct colo_stream_config *c)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_err e;
	size_t len;

	colo_err_clear(&e);
	colo_sw_init(&w, &b, false);
	if (colo_sw_configuration(&w, c, &e))
		die("configuration", &e);
	len = b.len;
	colo_sw_free(&w);
	colo_buf_free(&b);
	return len;
}

static void demo_seeds(void)
{
	static const struct {
		const char *name;
		enum fuzz_mode mode;
		uint8_t piece_seed;
		uint64_t ram;
		unsigned flags;
	} saves[] = {
		{ "dump-demo16k-vmdesc", FUZZ_MODE_DUMP, 0x00, 16 << 10, 0 },
		{ "dump-demo16k-vmdesc-pieces", FUZZ_MODE_DUMP, 0x2d, 16 << 10, 0 },
		{ "dump-demo16k-novmdesc", FUZZ_MODE_DUMP, 0x16,
		  16 << 10, COLO_SAVEVM_NO_VMDESC },
		{ "dump-demo16k-colo", FUZZ_MODE_DUMP, 0x31, 16 << 10,
		  COLO_SAVEVM_ENABLE_COLO },
		{ "loader-demo64k-vmdesc", FUZZ_MODE_LOADER, 0x13, FUZZ_DEMO_RAM, 0 },
		{ "loader-demo64k-colo-bytewise", FUZZ_MODE_LOADER, 0x00, FUZZ_DEMO_RAM,
		  COLO_SAVEVM_ENABLE_COLO | COLO_SAVEVM_NO_VMDESC },
		{ "raw-demo16k", FUZZ_MODE_RAW, 0x24, 16 << 10, COLO_SAVEVM_NO_VMDESC },
	};

	for (size_t i = 0; i < sizeof(saves) / sizeof(saves[0]); i++) {
		struct colo_buf b = COLO_BUF_INIT;
		struct colo_demo d;
		struct colo_err e;

		size_t ndevs;

		colo_err_clear(&e);
		demo_make(&d, saves[i].ram);
		/* The raw mode reads RAM sections only: hide the devices. */
		ndevs = d.sv.ndevs;
		if (saves[i].mode == FUZZ_MODE_RAW)
			d.sv.ndevs = 0;
		if (colo_savevm_save(&d.sv, &b, saves[i].flags, &e))
			die(saves[i].name, &e);
		d.sv.ndevs = ndevs;
		if (saves[i].mode == FUZZ_MODE_RAW) {
			/* ... and items only: drop header and configuration. */
			size_t skip = 8 + config_len(&d.sv.config);

			memmove(b.data, b.data + skip, b.len - skip);
			b.len -= skip;
		}
		write_seed(saves[i].name, saves[i].mode, saves[i].piece_seed, &b);
		colo_buf_free(&b);
		colo_demo_free(&d);
	}
}

/* ---- hand-built streams ---- */

static void check(int r, const char *what, const struct colo_err *e)
{
	if (r)
		die(what, e);
}

static void ram_begin(struct colo_stream_writer *w, struct colo_ram_writer *rw,
		      enum colo_sec_type type, uint32_t id)
{
	struct colo_err e;

	colo_err_clear(&e);
	check(colo_sw_section_begin(w, type, id, COLO_RAM_IDSTR, 0,
				    COLO_RAM_SECTION_VERSION, &e), "RAM section", &e);
	colo_ram_writer_section(rw);
}

static void ram_end(struct colo_stream_writer *w, struct colo_ram_writer *rw)
{
	colo_ram_put_eos(rw);
	colo_sw_section_end(w);
}

/* RAM START with MEM_SIZE for one block. */
static void ram_start(struct colo_stream_writer *w, uint32_t id, const char *block,
		      uint64_t len, bool with_addr)
{
	struct colo_ram_block_info b;
	struct colo_ram_writer rw;

	memset(&b, 0, sizeof(b));
	snprintf(b.name, sizeof(b.name), "%s", block);
	b.length = len;
	b.addr = with_addr ? 0x100000000ull : 0;
	colo_ram_writer_init(&rw, w->out);
	ram_begin(w, &rw, COLO_SEC_START, id);
	colo_ram_put_mem_size(&rw, &b, 1, with_addr);
	ram_end(w, &rw);
}

/* One page of every kind colo frames (encoded bytes need not decode). */
static void ram_pages(struct colo_stream_writer *w, enum colo_sec_type type, uint32_t id,
		      const char *block, bool all_kinds)
{
	static const uint8_t enc[] = { 0x01, 0x10, 0x00, 0x02, 0xaa, 0xbb, 0x00, 0x00 };
	struct colo_ram_writer rw;
	struct colo_err e;
	uint8_t page[COLO_PAGE_SIZE];

	colo_err_clear(&e);
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7 + 1);
	colo_ram_writer_init(&rw, w->out);
	ram_begin(w, &rw, type, id);
	colo_ram_put_zero(&rw, block, 0, 0);
	colo_ram_put_raw(&rw, block, COLO_PAGE_SIZE, page);
	if (all_kinds) {
		colo_ram_put_zero(&rw, block, 2 * COLO_PAGE_SIZE, 0x5a);
		for (int k = COLO_PAGE_XBZRLE; k <= COLO_PAGE_DELTA; k++)
			check(colo_ram_put_encoded(&rw, block, k % 4 * COLO_PAGE_SIZE,
						   (enum colo_page_kind)k, enc,
						   sizeof(enc), &e),
			      colo_page_kind_name((enum colo_page_kind)k), &e);
		/* Newer QEMU's MULTIFD_FLUSH: a record with no payload. */
		colo_buf_put_be64(w->out, COLO_RAM_MULTIFD_FLUSH);
	}
	ram_end(w, &rw);
}

static void configuration(struct colo_stream_writer *w, const char *machine,
			  bool rich, bool ignore_shared)
{
	struct colo_stream_config c;
	struct colo_err e;

	colo_err_clear(&e);
	check(colo_stream_config_init(&c, machine, &e), "configuration", &e);
	if (ignore_shared)
		check(colo_stream_config_add_cap(&c, "x-ignore-shared", &e), "cap", &e);
	if (rich) {
		check(colo_stream_config_add_cap(&c, "validate-uuid", &e), "cap", &e);
		c.has_page_bits = true;
		c.target_page_bits = 12;
		c.has_uuid = true;
		for (int i = 0; i < 16; i++)
			c.uuid[i] = (uint8_t)(0x10 + i);
	}
	check(colo_sw_configuration(w, &c, &e), "configuration", &e);
}

/* PING, OPEN_RETURN_PATH and a PACKAGED nested stream with RAM in it. */
static void commands_seed(void)
{
	struct colo_buf b = COLO_BUF_INIT, pkg = COLO_BUF_INIT;
	struct colo_stream_writer w, pw;
	struct colo_err e;

	colo_err_clear(&e);
	colo_sw_init(&pw, &pkg, false);
	ram_start(&pw, 2, "pc.ram", 4 * COLO_PAGE_SIZE, false);
	ram_pages(&pw, COLO_SEC_PART, 2, "pc.ram", false);
	colo_sw_ping(&pw, 7);
	ram_pages(&pw, COLO_SEC_END, 2, "pc.ram", false);
	colo_sw_eof(&pw);
	colo_sw_free(&pw);

	/* With header and configuration for the dump, items only for the raw mode. */
	for (int raw = 0; raw < 2; raw++) {
		colo_buf_init(&b);
		colo_sw_init(&w, &b, false);
		if (!raw) {
			colo_sw_header(&w);
			configuration(&w, "pc-i440fx-7.2", false, false);
		}
		colo_sw_open_return_path(&w);
		colo_sw_ping(&w, 0x12345678);
		check(colo_sw_packaged(&w, pkg.data, pkg.len, &e), "packaged", &e);
		colo_sw_ping(&w, 2);
		colo_sw_eof(&w);
		colo_sw_free(&w);
		if (raw)
			write_seed("raw-commands-packaged", FUZZ_MODE_RAW, 0x03, &b);
		else
			write_seed("dump-commands-packaged", FUZZ_MODE_DUMP, 0x05, &b);
		colo_buf_free(&b);
	}
	colo_buf_free(&pkg);
}

/* Capabilities, page bits, UUID; x-ignore-shared puts addresses in MEM_SIZE. */
static void config_seeds(void)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_stream_writer w;

	colo_sw_init(&w, &b, false);
	colo_sw_header(&w);
	configuration(&w, "pc-i440fx-7.2", true, true);
	ram_start(&w, 2, "pc.ram", 4 * COLO_PAGE_SIZE, true);
	ram_pages(&w, COLO_SEC_PART, 2, "pc.ram", true);
	ram_pages(&w, COLO_SEC_END, 2, "pc.ram", false);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	write_seed("dump-config-caps-all-page-kinds", FUZZ_MODE_DUMP, 0x0c, &b);
	colo_buf_free(&b);

	/* The same for the loader: its machine, its block, a capability it knows. */
	colo_buf_init(&b);
	colo_sw_init(&w, &b, false);
	colo_sw_header(&w);
	configuration(&w, COLO_DEMO_MACHINE, false, true);
	colo_sw_enable_colo(&w);
	ram_start(&w, 0, COLO_DEMO_RAM, FUZZ_DEMO_RAM, true);
	ram_pages(&w, COLO_SEC_PART, 0, COLO_DEMO_RAM, false);
	colo_sw_ping(&w, 1);
	colo_sw_open_return_path(&w);
	ram_pages(&w, COLO_SEC_END, 0, COLO_DEMO_RAM, false);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	write_seed("loader-ignore-shared-commands", FUZZ_MODE_LOADER, 0x0e, &b);
	colo_buf_free(&b);
}

/* QEMU can be told to send no footers: the first section decides. */
static void no_footer_seed(void)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_stream_writer w;

	colo_sw_init(&w, &b, false);
	w.footers = false;
	colo_sw_header(&w);
	configuration(&w, "none", false, false);
	ram_start(&w, 5, "ram0", 4 * COLO_PAGE_SIZE, false);
	ram_pages(&w, COLO_SEC_PART, 5, "ram0", true);
	ram_pages(&w, COLO_SEC_END, 5, "ram0", false);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	write_seed("dump-no-footers", FUZZ_MODE_DUMP, 0x1a, &b);
	colo_buf_free(&b);
}

/*
 * A device decoded only through a hand-written vmdesc: "index" entries, a
 * "tmp" field with its description inline, a struct with a subsection, and
 * a device-level subsection (whose 6-byte header no size counts).
 */
static void vmdesc_seed(void)
{
	static const char json[] =
		"{\"page_size\": 4096, \"devices\": [{\"name\": \"dev\", "
		"\"instance_id\": 1, \"vmsd_name\": \"dev\", \"version\": 3, "
		"\"fields\": ["
		"{\"name\": \"a\", \"index\": 0, \"type\": \"uint16\", \"size\": 2}, "
		"{\"name\": \"a\", \"index\": 1, \"type\": \"uint16\", \"size\": 2}, "
		"{\"name\": \"f\", \"type\": \"float64\", \"size\": 8}, "
		"{\"name\": \"t\", \"type\": \"tmp\", \"size\": 4, \"vmsd_name\": \"dev/tmp\", "
		"\"version\": 0, \"fields\": [{\"name\": \"x\", \"type\": \"int32\", "
		"\"size\": 4}]}, "
		"{\"name\": \"s\", \"type\": \"struct\", \"size\": 15, \"struct\": "
		"{\"vmsd_name\": \"in\", \"version\": 1, \"fields\": [{\"name\": \"b\", "
		"\"type\": \"bool\", \"size\": 1}], \"subsections\": [{\"vmsd_name\": "
		"\"in/x\", \"version\": 1, \"fields\": [{\"name\": \"v\", \"array_len\": 2, "
		"\"type\": \"uint8\", \"size\": 2}]}]}}, "
		"{\"name\": \"label\", \"type\": \"buffer\", \"size\": 6}], "
		"\"subsections\": [{\"vmsd_name\": \"dev/sub\", \"version\": 2, "
		"\"fields\": [{\"name\": \"n\", \"type\": \"uint64\", \"size\": 8}]}]}]}";
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_err e;

	colo_err_clear(&e);
	colo_sw_init(&w, &b, false);
	colo_sw_header(&w);
	check(colo_sw_section_begin(&w, COLO_SEC_FULL, 9, "dev", 1, 3, &e), "dev", &e);
	colo_buf_put_be16(&b, 0xfffe);                    /* a[0] */
	colo_buf_put_be16(&b, 2);                         /* a[1] */
	colo_buf_put_be64(&b, 0x400921fb54442d18ull);     /* f: pi */
	colo_buf_put_be32(&b, (uint32_t)-5);              /* t.x */
	colo_buf_put_u8(&b, 1);                           /* s.b */
	colo_buf_put_u8(&b, COLO_SEC_SUBSECTION);         /* s: subsection in/x */
	colo_buf_put_u8(&b, 4);
	colo_buf_put(&b, "in/x", 4);
	colo_buf_put_be32(&b, 1);
	colo_buf_put_be32(&b, 0x01020304);                /* in/x v[2] */
	colo_buf_put(&b, "label\0", 6);
	colo_buf_put_u8(&b, COLO_SEC_SUBSECTION);         /* dev/sub */
	colo_buf_put_u8(&b, 7);
	colo_buf_put(&b, "dev/sub", 7);
	colo_buf_put_be32(&b, 2);
	colo_buf_put_be64(&b, 0xffffffffffffffffull);     /* n: above INT64_MAX */
	colo_sw_section_end(&w);
	colo_sw_eof(&w);
	colo_buf_put_u8(&b, COLO_SEC_VMDESC);
	colo_buf_put_be32(&b, (uint32_t)strlen(json));
	colo_buf_put(&b, json, strlen(json));
	colo_sw_free(&w);
	write_seed("dump-vmdesc-index-tmp-subsections", FUZZ_MODE_DUMP, 0x09, &b);
	colo_buf_free(&b);
}

/*
 * A COLO checkpoint channel: headerless streams one after the other.  The
 * first carries MEM_SIZE, the next ones `RAM END section, EOF` (with pages
 * of every kind, and a vmdesc after one EOF), as the secondary reads them.
 */
static void channel_seed(bool footers, const char *name, uint8_t piece_seed)
{
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_stream_writer w;

	colo_sw_init(&w, &b, false);
	w.footers = footers;
	ram_start(&w, 0, COLO_DEMO_RAM, FUZZ_DEMO_RAM, false);
	colo_sw_eof(&w);
	ram_pages(&w, COLO_SEC_END, 0, COLO_DEMO_RAM, true);
	colo_sw_eof(&w);
	colo_buf_put_u8(&b, COLO_SEC_VMDESC);
	colo_buf_put_be32(&b, 2);
	colo_buf_put(&b, "{}", 2);
	ram_pages(&w, COLO_SEC_END, 0, COLO_DEMO_RAM, false);
	colo_sw_ping(&w, 3);
	colo_sw_eof(&w);
	colo_sw_free(&w);
	write_seed(name, FUZZ_MODE_RAW, piece_seed, &b);
	colo_buf_free(&b);
}

/*
 * The demo guest with its RAM pages in the encodings colo picks against the
 * zero pages a fresh guest holds (DELTA, DELTA|LZ4, LZ4, ZERO, PAGE), plus
 * XBZRLE: real encodings for the page decoders to chew on.
 */
static void encoded_seed(void)
{
	static const uint8_t zero[COLO_PAGE_SIZE];
	struct colo_buf b = COLO_BUF_INIT;
	struct colo_stream_writer w;
	struct colo_ram_writer rw;
	struct colo_ram_block_info info;
	struct colo_demo d;
	struct colo_err e;
	uint8_t out[COLO_PAGE_ENC_MAX];

	colo_err_clear(&e);
	if (colo_demo_init(&d, FUZZ_DEMO_RAM, 5, &e))
		die("demo guest", &e);
	memset(d.ram, 0, COLO_PAGE_SIZE);
	memcpy(d.ram + 100, "a few bytes", 11);        /* page 0: DELTA */
	colo_sw_init(&w, &b, false);
	colo_ram_writer_init(&rw, &b);
	colo_sw_header(&w);
	check(colo_sw_configuration(&w, &d.sv.config, &e), "configuration", &e);
	memset(&info, 0, sizeof(info));
	snprintf(info.name, sizeof(info.name), "%s", COLO_DEMO_RAM);
	info.length = FUZZ_DEMO_RAM;
	ram_begin(&w, &rw, COLO_SEC_START, 1);
	colo_ram_put_mem_size(&rw, &info, 1, false);
	ram_end(&w, &rw);
	ram_begin(&w, &rw, COLO_SEC_PART, 1);
	for (uint64_t off = 0; off < FUZZ_DEMO_RAM; off += COLO_PAGE_SIZE) {
		const uint8_t *page = d.ram + off;
		struct colo_page_enc pe;

		if (off == 5 * COLO_PAGE_SIZE) {        /* one XBZRLE page */
			size_t n = colo_xbzrle_encode(page, zero, out, COLO_RAM_XBZRLE_MAX);

			if (n) {
				check(colo_ram_put_encoded(&rw, COLO_DEMO_RAM, off,
							   COLO_PAGE_XBZRLE, out, n, &e),
				      "xbzrle page", &e);
				continue;
			}
		}
		if (colo_page_encode(page, (uint8_t *)zero, COLO_PAGE_KINDS_ALL, 0, out, &pe))
			continue;                      /* already zero here */
		if (pe.kind == COLO_PAGE_ZERO)
			colo_ram_put_zero(&rw, COLO_DEMO_RAM, off, pe.fill);
		else if (pe.kind == COLO_PAGE_RAW)
			colo_ram_put_raw(&rw, COLO_DEMO_RAM, off, page);
		else
			check(colo_ram_put_encoded(&rw, COLO_DEMO_RAM, off, pe.kind, out,
						   pe.len, &e), "encoded page", &e);
	}
	ram_end(&w, &rw);
	for (size_t i = 0; i < d.sv.ndevs; i++)
		check(colo_sw_device(&w, d.sv.devs[i].section_id, d.sv.devs[i].idstr,
				     d.sv.devs[i].instance_id, d.sv.devs[i].vmsd,
				     d.sv.devs[i].opaque, &e), "device", &e);
	colo_sw_eof(&w);
	write_seed("loader-demo64k-encoded", FUZZ_MODE_LOADER, 0x21, &b);
	colo_sw_free(&w);
	colo_buf_free(&b);
	colo_demo_free(&d);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen_seeds DIR\n");
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0777) < 0 && errno != EEXIST)
		die(out_dir, NULL);
	demo_seeds();
	commands_seed();
	config_seeds();
	no_footer_seed();
	vmdesc_seed();
	encoded_seed();
	channel_seed(true, "raw-channel-checkpoints", 0x00);
	channel_seed(false, "raw-channel-no-footers", 0x2f);
	printf("gen_seeds: %d seeds in %s\n", written, out_dir);
	return 0;
}
