/*
 * vmguest.c: running, reading and checking the boot-sector test guest
 * (vmguest.h says what the guest does and what a whole image is).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fs.h"
#include "vmguest.h"

#define N COLO_VMGUEST_RING_PAGES

char *colo_vmguest_image_path(void)
{
	const char *env = getenv("COLO_VMGUEST_IMAGE");
	const char *top = getenv("top_builddir");
	char *p;

	if (env && *env)
		return strdup(env);
	if (asprintf(&p, "%s/tests/vm/bootsec.img", top && *top ? top : ".") < 0)
		return NULL;
	return p;
}

bool colo_vmguest_kvm_usable(char *why, size_t n)
{
	char *qemu;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, n, "/dev/kvm: %s", strerror(errno));
		return false;
	}
	close(fd);
	qemu = colo_qmp_find_program(COLO_VMGUEST_QEMU);
	if (!qemu) {
		snprintf(why, n, COLO_VMGUEST_QEMU " not installed");
		return false;
	}
	free(qemu);
	return true;
}

/* ---- command lines ---- */

void colo_vmguest_argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

/* Append a copy of s (printf format) to argv, which has room; false on ENOMEM. */
static bool add(char **argv, size_t *n, const char *fmt, const char *s)
{
	if (asprintf(&argv[*n], fmt, s) < 0) {
		argv[*n] = NULL;
		return false;
	}
	argv[++*n] = NULL;
	return true;
}

char **colo_vmguest_argv(const char *qemu, const char *image, const char *qmp_sock,
			 const char *serial_log)
{
	/*
	 * KVM only: this machine's nested KVM runs the guest's real-mode code,
	 * and TCG would need the COLO workarounds (notes on QEMU 7.2).
	 */
	static const char *const fixed[] = {
		"-machine", "pc", "-accel", "kvm", "-cpu", "qemu64,pni=off", "-m", "16M",
		"-nodefaults", "-display", "none",
	};
	size_t nfixed = sizeof(fixed) / sizeof(fixed[0]), n = 0;
	char **argv = calloc(nfixed + 8, sizeof(*argv));
	bool ok = argv != NULL;

	if (ok && qemu)
		ok = add(argv, &n, "%s", qemu);
	for (size_t i = 0; ok && i < nfixed; i++)
		ok = add(argv, &n, "%s", fixed[i]);
	ok = ok && add(argv, &n, "%s", "-drive") &&
	     add(argv, &n, "file=%s,format=raw,if=ide,snapshot=on", image);
	if (ok && serial_log)
		ok = add(argv, &n, "%s", "-serial") && add(argv, &n, "file:%s", serial_log);
	if (ok && qmp_sock)
		ok = add(argv, &n, "%s", "-qmp") &&
		     add(argv, &n, "unix:%s,server=on,wait=off", qmp_sock);
	if (!ok) {
		colo_vmguest_argv_free(argv);
		return NULL;
	}
	return argv;
}

char **colo_vmguest_vm_args(const char *image, const char *serial_log)
{
	return colo_vmguest_argv(NULL, image, NULL, serial_log);
}

char *colo_vmguest_vm_args_line(const char *image, const char *serial_log)
{
	char **argv = colo_vmguest_vm_args(image, serial_log);
	size_t len = 1;
	char *line;

	if (!argv)
		return NULL;
	for (size_t i = 0; argv[i]; i++)
		len += strlen(argv[i]) + 1;
	line = malloc(len);
	if (line) {
		line[0] = '\0';
		for (size_t i = 0; argv[i]; i++) {
			if (i)
				strcat(line, " ");
			strcat(line, argv[i]);
		}
	}
	colo_vmguest_argv_free(argv);
	return line;
}

int colo_vmguest_start(struct colo_qmp *q, const char *qemu, const char *image,
		       const char *dir, int connect_ms, struct colo_err *err)
{
	char *sock = colo_path_join(dir, "qmp.sock");
	char *log = colo_path_join(dir, "qemu.log");
	char *serial = colo_path_join(dir, "serial.log");
	char **argv = sock && log && serial ? colo_vmguest_argv(qemu, image, sock, serial) : NULL;
	int r;

	if (!argv)
		r = colo_err_set(err, ENOMEM, "out of memory");
	else if (access(image, R_OK) < 0)
		r = colo_err_set(err, errno, "guest image %s: %s", image, strerror(errno));
	else if ((r = colo_qmp_start(q, qemu, (const char *const *)argv, log, err)) == 0)
		r = colo_qmp_connect(q, sock, connect_ms, err);
	colo_vmguest_argv_free(argv);
	free(serial);
	free(log);
	free(sock);
	return r;
}

/* ---- checking an image ---- */

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The last value written to slot j once the counter is c (0: none yet). */
static uint64_t expected(uint64_t c, unsigned j)
{
	uint64_t back = (c % N + N - j) % N;

	return back > c ? 0 : c - back;
}

static uint64_t slot_addr(unsigned j)
{
	return COLO_VMGUEST_RING_ADDR + (uint64_t)j * COLO_VMGUEST_PAGE_SIZE;
}

int colo_vmguest_check_range(const void *ram, size_t len, uint64_t lo, uint64_t hi,
			     uint64_t *counter, struct colo_err *err)
{
	const uint8_t *mem = ram;
	const uint8_t *hdr = mem + COLO_VMGUEST_HDR_ADDR;
	uint64_t c;

	if (len < COLO_VMGUEST_SPAN)
		return colo_err_set(err, EINVAL, "image of %zu bytes, the guest's state spans %u",
				    len, COLO_VMGUEST_SPAN);
	if (memcmp(hdr, COLO_VMGUEST_MAGIC, 8) != 0)
		return colo_err_set(err, ENOENT, "no magic \"%s\" at 0x%x", COLO_VMGUEST_MAGIC,
				    COLO_VMGUEST_HDR_ADDR);
	if (le32(hdr + 24) != COLO_VMGUEST_RING_ADDR || le32(hdr + 28) != N)
		return colo_err_set(err, EPROTO,
				    "header says ring at 0x%" PRIx32 " of %" PRIu32
				    " pages, expected 0x%x of %u", le32(hdr + 24),
				    le32(hdr + 28), COLO_VMGUEST_RING_ADDR, N);
	c = le64(hdr + 8);
	if (c < lo || c > hi)
		return colo_err_set(err, ERANGE,
				    "counter %" PRIu64 " outside [%" PRIu64 ", %" PRIu64
				    "] read around the image", c, lo, hi);

	/*
	 * At any instant with counter x, slot j holds expected(x, j), or x + 1
	 * = expected(x + 1, j) when the guest stopped between its two writes.
	 * expected() never decreases as x grows, so over x in [lo, hi] the slot
	 * may hold expected(lo, j) or any later value of slot j up to
	 * expected(hi + 1, j).
	 */
	for (unsigned j = 0; j < N; j++) {
		uint64_t v = le64(mem + slot_addr(j));
		uint64_t first = expected(lo, j), last = expected(hi + 1, j);

		if (v == first || (v % N == j && v > first && v <= last))
			continue;
		if (lo == hi && last != first)
			return colo_err_set(err, EBADMSG,
					    "slot %u (0x%" PRIx64 ") holds %" PRIu64
					    ", expected %" PRIu64 " or %" PRIu64
					    " (counter %" PRIu64 ")", j, slot_addr(j), v, first,
					    last, c);
		if (lo == hi)
			return colo_err_set(err, EBADMSG,
					    "slot %u (0x%" PRIx64 ") holds %" PRIu64
					    ", expected %" PRIu64 " (counter %" PRIu64 ")", j,
					    slot_addr(j), v, first, c);
		return colo_err_set(err, EBADMSG,
				    "slot %u (0x%" PRIx64 ") holds %" PRIu64 ", expected %" PRIu64
				    "..%" PRIu64 " (counter %" PRIu64 ", read between %" PRIu64
				    " and %" PRIu64 ")", j, slot_addr(j), v, first, last, c, lo,
				    hi);
	}
	if (counter)
		*counter = c;
	return 0;
}

int colo_vmguest_check(const void *ram, size_t len, uint64_t *counter, struct colo_err *err)
{
	uint64_t c;

	if (len < COLO_VMGUEST_SPAN)
		return colo_err_set(err, EINVAL, "image of %zu bytes, the guest's state spans %u",
				    len, COLO_VMGUEST_SPAN);
	c = le64((const uint8_t *)ram + COLO_VMGUEST_COUNTER_ADDR);
	return colo_vmguest_check_range(ram, len, c, c, counter, err);
}

/* ---- reading a QEMU ---- */

int colo_vmguest_qmp_counter(struct colo_qmp *q, uint64_t *counter, struct colo_err *err)
{
	static const char cmd[] = "xp /2gx 0x10000";
	uint8_t magic[8];
	json_t *ret = NULL;
	const char *out, *colon;
	unsigned long long m, c;
	int r;

	r = colo_qmp_execute(q, "human-monitor-command", json_pack("{s:s}", "command-line", cmd),
			     &ret, COLO_VMGUEST_QMP_MS, err);
	if (r)
		return r;
	/* "0000000000010000: 0x4b434954434f4c4f 0x00000000000003e8\r\n" */
	out = json_string_value(ret);
	colon = out ? strchr(out, ':') : NULL;
	if (!colon || sscanf(colon + 1, " %llx %llx", &m, &c) != 2) {
		r = colo_err_set(err, EPROTO, "'%s' answered '%s'", cmd, out ? out : "(not text)");
		json_decref(ret);
		return r;
	}
	json_decref(ret);
	for (int i = 0; i < 8; i++)
		magic[i] = (uint8_t)(m >> (8 * i));
	if (memcmp(magic, COLO_VMGUEST_MAGIC, 8) != 0)
		return colo_err_set(err, ENOENT, "no magic \"%s\" at 0x%x (read 0x%016llx)",
				    COLO_VMGUEST_MAGIC, COLO_VMGUEST_HDR_ADDR, m);
	*counter = c;
	return 0;
}

int colo_vmguest_qmp_pmemsave(struct colo_qmp *q, const char *path, size_t size,
			      uint8_t **ram, struct colo_err *err)
{
	size_t len = 0;
	int r;

	*ram = NULL;
	r = colo_qmp_execute(q, "pmemsave",
			     json_pack("{s:I,s:I,s:s}", "val", (json_int_t)0, "size",
				       (json_int_t)size, "filename", path),
			     NULL, COLO_VMGUEST_QMP_MS, err);
	if (r)
		return r;
	/* QEMU wrote and closed the file before it answered. */
	r = colo_read_file(path, ram, &len);
	if (r)
		return colo_err_set(err, -r, "reading %s: %s", path, strerror(-r));
	if (len != size) {
		free(*ram);
		*ram = NULL;
		return colo_err_set(err, EIO, "pmemsave wrote %zu bytes of %zu", len, size);
	}
	return 0;
}

int colo_vmguest_qmp_read(struct colo_qmp *q, const char *path, uint64_t *counter,
			  struct colo_err *err)
{
	uint64_t lo, hi;
	uint8_t *ram = NULL;
	int r;

	if ((r = colo_vmguest_qmp_counter(q, &lo, err)) ||
	    (r = colo_vmguest_qmp_pmemsave(q, path, COLO_VMGUEST_SPAN, &ram, err)) ||
	    (r = colo_vmguest_qmp_counter(q, &hi, err)))
		goto out;
	r = colo_vmguest_check_range(ram, COLO_VMGUEST_SPAN, lo, hi, counter, err);
out:
	free(ram);
	return r;
}
