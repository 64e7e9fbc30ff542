/*
 * replay_serve.c: `colo-replay serve` for a recording of the qemu guest
 * (see replay.h): QEMU started paused on the state of a checkpoint, for an
 * operator to look at with gdb (its gdbstub) or QMP.
 *
 * The state is handed to QEMU as a plain migration stream rebuilt from
 * the image: header; configuration with QEMU's machine name (qemu/vm's
 * machine); RAM START (MEM_SIZE of every block), the pages, END, under
 * QEMU's own id of its RAM section; QEMU's device sections as the
 * checkpoint had them (qemu/vm's blob, which ends in EOF); an empty
 * VMDESCRIPTION (replay_vm_stream(), which export uses too).  QEMU runs
 * with the VM's arguments as the recording node had them (meta.json's
 * qemu-binary and vm-args), then -snapshot (nothing it does reaches a
 * disk image the live VM may be using), -S, a gdbstub, -incoming defer
 * and a QMP socket in a directory of its own; `migrate-incoming` takes
 * the stream, and QEMU stays paused.  QMP is left free for the operator.
 *
 * The struct colo_replay_vm owns QEMU (by pid, PR_SET_PDEATHSIG: it dies
 * with colo-replay) and the directory; colo_replay_vm_stop() ends both.
 * One thread.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "fs.h"
#include "qemu_args.h"
#include "replay_int.h"
#include "savevm.h"
#include "stream.h"

#define QMP_MS 10000
#define LOAD_MS 60000
#define EMPTY_VMDESC "{\"page_size\": 4096, \"devices\": []}"

int replay_vm_stream(const struct colo_image *img, const struct replay_vm *vm,
		     const uint8_t *vmdesc, size_t vmdesc_len, struct colo_buf *out,
		     struct colo_err *err)
{
	struct colo_ram_block_info *infos = calloc(img->nblocks ? img->nblocks : 1,
						   sizeof(*infos));
	const uint8_t **hosts = calloc(img->nblocks ? img->nblocks : 1, sizeof(*hosts));
	struct colo_stream_writer w;
	struct colo_stream_config c;
	int r;

	if (!infos || !hosts) {
		free(infos);
		free(hosts);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < img->nblocks; i++) {
		snprintf(infos[i].name, sizeof(infos[i].name), "%s", img->blocks[i].name);
		infos[i].length = img->blocks[i].length;
		hosts[i] = img->blocks[i].data;
	}
	colo_sw_init(&w, out, false);
	colo_sw_header(&w);
	r = colo_stream_config_init(&c, vm->machine, err);
	if (r == 0)
		r = colo_sw_configuration(&w, &c, err);
	if (r == 0)
		r = colo_savevm_write_ram(&w, vm->ram_section_id, infos, hosts, img->nblocks,
					  COLO_PAGE_KINDS_QEMU, err);
	if (r == 0)
		colo_buf_put(out, vm->blob, vm->blob_len);     /* ends in EOF */
	/* QEMU reads a VMDESCRIPTION after the EOF (and only warns without
	 * one): without QEMU's own, an empty one will do, it describes
	 * nothing QEMU needs. */
	if (r == 0 && vmdesc && vmdesc_len)
		r = colo_sw_vmdesc_raw(&w, (const char *)vmdesc, vmdesc_len, err);
	else if (r == 0)
		r = colo_sw_vmdesc_raw(&w, EMPTY_VMDESC, sizeof(EMPTY_VMDESC) - 1, err);
	if (r == 0 && !colo_buf_ok(out))
		r = colo_err_set(err, ENOMEM, "out of memory");
	colo_sw_free(&w);
	free(infos);
	free(hosts);
	return r;
}

/* A TCP port on 127.0.0.1 that nothing listens on now. */
static int free_port(uint16_t *port, struct colo_err *err)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), r = 0;

	if (fd < 0)
		return colo_err_set(err, errno, "socket: %s", strerror(errno));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		r = colo_err_set(err, errno, "cannot find a free port: %s", strerror(errno));
	else
		*port = ntohs(sa.sin_port);
	close(fd);
	return r;
}

static int qmp(struct colo_replay_vm *s, const char *cmd, json_t *args, json_t **ret,
	       struct colo_err *err)
{
	struct colo_err e;
	int r;

	colo_err_clear(&e);
	r = colo_qmp_execute(&s->qmp, cmd, args, ret, QMP_MS, &e);
	if (r)
		colo_err_set(err, e.code, "QMP %s: %s (see %s)", cmd, e.msg, s->log_path);
	return r;
}

/* Until QEMU has loaded the stream: its status, which must not be running. */
static int wait_loaded(struct colo_replay_vm *s, struct colo_err *err)
{
	uint64_t deadline = colo_now_ms() + LOAD_MS;

	for (;;) {
		json_t *ret = NULL;
		const char *st;
		int r = qmp(s, "query-status", NULL, &ret, err);

		if (r)
			return r;
		st = json_string_value(json_object_get(ret, "status"));
		snprintf(s->status, sizeof(s->status), "%s", st ? st : "?");
		json_decref(ret);
		if (strcmp(s->status, "inmigrate") != 0)
			break;
		if (colo_now_ms() >= deadline)
			return colo_err_set(err, ETIMEDOUT, "QEMU had not loaded the checkpoint "
					    "after %d ms (see %s)", LOAD_MS, s->log_path);
		usleep(5000);
	}
	if (strcmp(s->status, "paused") != 0 && strcmp(s->status, "prelaunch") != 0)
		return colo_err_set(err, EIO, "QEMU's status after loading is %s, not paused "
				    "(see %s)", s->status, s->log_path);
	return 0;
}

static int start_qemu(struct colo_replay_vm *s, const char *binary, const char *vm_args,
		      struct colo_err *err)
{
	static const char *const tail[] = { "-snapshot", "-S", "-gdb", NULL, "-incoming",
					    "defer", "-qmp", NULL };
	char gdb[64], qmp_arg[sizeof(s->qmp_path) + 32], **words = NULL, *path = NULL;
	const char **argv = NULL;
	size_t n = 0, nt = sizeof(tail) / sizeof(tail[0]);
	int nw = 0, r;

	snprintf(gdb, sizeof(gdb), "tcp:127.0.0.1:%u", s->port);
	snprintf(qmp_arg, sizeof(qmp_arg), "unix:%s,server=on,wait=off", s->qmp_path);
	/* The recorded vm-args, split as the node split them (shell quoting). */
	r = colo_qemu_args_split(vm_args, &words, &nw, err);
	if (r == 0 && !(argv = calloc((size_t)nw + nt + 2, sizeof(*argv))))
		r = colo_err_set(err, ENOMEM, "out of memory");
	if (r == 0) {
		argv[n++] = binary;
		for (int i = 0; i < nw; i++)
			argv[n++] = words[i];
		for (size_t i = 0; i < nt; i++)
			argv[n++] = tail[i] ? tail[i] : i == 3 ? gdb : qmp_arg;
		argv[n] = NULL;
		path = strchr(binary, '/') ? strdup(binary) : colo_qmp_find_program(binary);
		if (!path)
			r = colo_err_set(err, ENOENT, "qemu-binary %s: not found", binary);
		else
			r = colo_qmp_start(&s->qmp, path, argv, s->log_path, err);
	}
	free(path);
	free(argv);
	colo_qemu_args_argv_free(words);
	if (r == 0) {
		s->pid = s->qmp.pid;
		r = colo_qmp_connect(&s->qmp, s->qmp_path, QMP_MS, err);
	}
	if (r && s->qmp.pid > 0 && colo_qmp_wait_exit(&s->qmp, 200)) {
		char how[64];

		colo_err_set(err, err->code ? err->code : EIO, "QEMU %s (see %s)",
			     colo_qmp_describe_exit(&s->qmp, how, sizeof(how)), s->log_path);
	}
	return r;
}

/* migrate-incoming on a unix socket of the directory, and the stream sent. */
static int load(struct colo_replay_vm *s, const struct colo_buf *stream,
		struct colo_err *err)
{
	char in_path[sizeof(s->dir) + 16], uri[sizeof(in_path) + 8];
	int fd, r;

	snprintf(in_path, sizeof(in_path), "%s/incoming.sock", s->dir);
	snprintf(uri, sizeof(uri), "unix:%s", in_path);
	r = qmp(s, "migrate-incoming", json_pack("{s:s}", "uri", uri), NULL, err);
	if (r)
		return r;
	fd = colo_unix_connect(in_path, QMP_MS, err);
	if (fd < 0)
		return fd;
	r = colo_write_all(fd, stream->data, stream->len);
	close(fd);
	unlink(in_path);
	if (r)
		return colo_err_set(err, -r, "sending the checkpoint to QEMU: %s (see %s)",
				    strerror(-r), s->log_path);
	return wait_loaded(s, err);
}

int colo_replay_serve_vm(const struct colo_recording *rec, uint64_t seq, uint16_t port,
			 struct colo_replay_vm *s, struct colo_err *err)
{
	const char *vm_args = colo_recording_meta(rec, "vm-args");
	const char *binary = colo_recording_meta(rec, "qemu-binary");
	const char *tmp = getenv("TMPDIR");
	const struct colo_rec_entry *e;
	const struct colo_image_device *d;
	struct colo_buf stream = COLO_BUF_INIT;
	struct colo_image img;
	struct replay_vm vm;
	int r;

	memset(s, 0, sizeof(*s));
	colo_qmp_init(&s->qmp);
	memset(&vm, 0, sizeof(vm));
	r = colo_replay_state(rec, seq, &img, &e, err);
	if (r == 0 && !(d = replay_vm_device(&img)))
		r = colo_err_set(err, EINVAL, "checkpoint %" PRIu64 " (%s) holds no VM",
				 seq, img.config);
	if (r == 0 && (!vm_args || !*vm_args))
		r = colo_err_set(err, EINVAL, "the recording does not say the VM's QEMU "
				 "arguments (vm-args in " COLO_REC_META ": recordings of "
				 "format 2 and later)");
	if (r == 0)
		r = replay_vm_parse(d, &vm, err);
	if (r == 0) {
		snprintf(s->machine, sizeof(s->machine), "%s", vm.machine);
		r = replay_vm_stream(&img, &vm, NULL, 0, &stream, err);
	}
	/* Its bytes are in the stream now: the memory is better left to QEMU. */
	colo_image_free(&img);
	replay_vm_free(&vm);
	s->port = port;
	if (r == 0 && !s->port)
		r = free_port(&s->port, err);
	if (r == 0) {
		int n = snprintf(s->dir, sizeof(s->dir), "%s/colo-replay-XXXXXX",
				 tmp && *tmp ? tmp : "/tmp");

		/* Its sockets' paths must fit a unix socket address. */
		if (n < 0 || (size_t)n >= sizeof(s->dir))
			r = colo_err_set(err, ENAMETOOLONG, "TMPDIR %s is too long for a unix "
					 "socket's path: set a shorter one", tmp);
		else if (!mkdtemp(s->dir))
			r = colo_err_set(err, errno, "%s: %s", s->dir, strerror(errno));
		else
			s->have_dir = true;
	}
	if (r == 0) {
		snprintf(s->qmp_path, sizeof(s->qmp_path), "%s/qmp.sock", s->dir);
		snprintf(s->log_path, sizeof(s->log_path), "%s/qemu.log", s->dir);
		r = start_qemu(s, binary && *binary ? binary : "qemu-system-x86_64", vm_args,
			       err);
	}
	if (r == 0)
		r = load(s, &stream, err);
	colo_buf_free(&stream);
	if (r) {
		s->keep_log = true;      /* the error names it */
		colo_replay_vm_stop(s);
		return r;
	}
	/* QMP is the operator's now (QEMU takes one client at a time). */
	close(s->qmp.fd);
	s->qmp.fd = -1;
	return 0;
}

void colo_replay_vm_stop(struct colo_replay_vm *s)
{
	char path[sizeof(s->dir) + 16];

	/* By its pid: SIGTERM (QMP is not ours any more), then SIGKILL. */
	colo_qmp_stop(&s->qmp, 3000);
	colo_qmp_free(&s->qmp);
	if (!s->have_dir)
		return;
	unlink(s->qmp_path);
	snprintf(path, sizeof(path), "%s/incoming.sock", s->dir);
	unlink(path);
	if (!s->keep_log)
		unlink(s->log_path);
	if (rmdir(s->dir) == 0)
		s->have_dir = false;
}
