/*
 * colo-replay: look inside recordings (DESIGN.md §7, docs/replay.md) and
 * savevm streams.
 *
 *   colo-replay list [--json] DIR
 *   colo-replay verify [--json] [-q] DIR
 *   colo-replay show [--json] [-q] DIR N
 *   colo-replay diff [--json] [-q] DIR N M
 *   colo-replay extract [--json] [-q] DIR N -o OUT
 *   colo-replay export [--json] [-q] DIR N -o FILE
 *   colo-replay serve DIR N [--listen ADDR | --port P]
 *   colo-replay dump [--json] FILE
 *   colo-replay sample [--ram-mb N] [--seed S] FILE
 *
 * The recording commands are in replay.c; serve, which runs a guest, is
 * here (a VM's QEMU is started in replay_serve.c).  Exit status: 0 success; 1 the input is malformed or cannot be read
 * or written (one line on stderr says what and where); 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "demo.h"
#include "progress.h"
#include "dump.h"
#include "guest.h"
#include "kv.h"
#include "log.h"
#include "nodecfg.h"
#include "pagecodec.h"
#include "ram.h"
#include "registry.h"
#include "replay.h"
#include "savevm.h"

#define EXIT_BAD 1
#define EXIT_USAGE 2

static const char usage_text[] =
"Usage: colo-replay COMMAND [OPTIONS] ARGS\n"
"\n"
"Recordings (made with --record DIR or colo-ctl record start DIR; N and M\n"
"are checkpoint sequence numbers as list shows them):\n"
"  list [--json] DIR\n"
"      One line per recorded checkpoint: sequence number, generation, time,\n"
"      record (K marks keyframes), bytes, pages by encoding.\n"
"  show [--json] [-q] DIR N\n"
"      The state at checkpoint N: every device's fields decoded through the\n"
"      vmdesc (a VM's: QEMU's device sections through QEMU's own), and each\n"
"      RAM block's XXH3-64 and pages changed in N.\n"
"  diff [--json] [-q] DIR N M\n"
"      Device fields that differ between N and M (a VM's: QEMU's too), and\n"
"      the pages that differ in each RAM block (merged ranges of offsets).\n"
"  extract [--json] [-q] DIR N -o OUT\n"
"      Write OUT/ram/<block>.bin (one file per RAM block) and\n"
"      OUT/devices.json (devices' fields, blocks and their files).\n"
"  export [--json] [-q] DIR N -o FILE\n"
"      Write the state at N as a plain migration stream, without colo's\n"
"      extensions (no ENABLE_COLO; zero and whole pages), vmdesc included.\n"
"      A VM's is QEMU's own: qemu-system-x86_64 <its arguments> -incoming\n"
"      'exec:cat FILE' loads it.\n"
"  verify [--json] [-q] DIR\n"
"      Read every record, check its checksum, rebuild every checkpoint and\n"
"      decode its devices; the first failure names the checkpoint, segment\n"
"      and offset.\n"
"  serve DIR N [--listen ADDR]\n"
"      Start the recorded guest (kv) from checkpoint N, unreplicated, and\n"
"      serve its clients on ADDR (default 127.0.0.1:6379) until Ctrl-C.\n"
"  serve DIR N [--port P]\n"
"      For a VM (guest qemu): start QEMU paused (-S) on checkpoint N with\n"
"      the VM's recorded arguments and -snapshot, a gdbstub on\n"
"      127.0.0.1:P (default: a free port) and a QMP socket, printed; stop\n"
"      it on Ctrl-C.\n"
"\n"
"Streams:\n"
"  dump [--json] FILE\n"
"      Read a savevm v3 stream file (colo's, or a QEMU migration file) to its\n"
"      last byte and print the header, the configuration, every section and\n"
"      command in order, RAM blocks with page counts by kind, and each\n"
"      device's fields decoded through the stream's vmdesc.\n"
"  sample [--ram-mb N] [--seed S] FILE\n"
"      Write the state of the built-in demo guest (one RAM block, two\n"
"      devices using every vmstate field kind) as a stream file.\n"
"      --ram-mb N   RAM of the demo guest in MiB (default 4, at most 4096)\n"
"      --seed S     seed of its contents (default 1, at least 1)\n"
"\n"
"  --json   print the same as one JSON document\n"
"  -q, --quiet\n"
"           no progress line (shown on stderr when it is a terminal, for\n"
"           rebuilding a checkpoint, verifying, and writing files)\n"
"\n"
"Options:\n"
"  -h, --help      show this help\n"
"  -V, --version   show the version\n"
"\n"
"Exit status: 0 success; 1 the input is malformed or cannot be read or\n"
"written (one line on stderr names what and where); 2 usage error.\n";

static int usage_error(const char *fmt, const char *arg)
{
	fputs("colo-replay: ", stderr);
	fprintf(stderr, fmt, arg);
	fputs("\nTry 'colo-replay --help'.\n", stderr);
	return EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

static int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct colo_err err;
	json_t *doc;
	bool json = false;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			return usage_error("%s", "dump: bad option");
		}
	}
	if (optind != argc - 1)
		return usage_error("%s", "dump needs exactly one FILE");
	colo_err_clear(&err);
	if (colo_dump_file(argv[optind], &doc, &err)) {
		fprintf(stderr, "colo-replay: %s: %s\n", argv[optind], err.msg);
		return EXIT_BAD;
	}
	if (json) {
		json_dumpf(doc, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else {
		colo_dump_print_text(doc, stdout);
	}
	json_decref(doc);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "colo-replay: writing the dump: %s\n", strerror(errno));
		return EXIT_BAD;
	}
	return 0;
}

static int cmd_sample(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ram-mb", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t ram_mb = 4, seed = 1;
	struct colo_buf out = COLO_BUF_INIT;
	struct colo_demo demo;
	struct colo_err err;
	const char *path;
	FILE *f;
	int c;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (parse_u64(optarg, 1, 4096, &ram_mb))
				return usage_error("--ram-mb must be 1 to 4096, not '%s'", optarg);
			break;
		case 's':
			if (parse_u64(optarg, 1, UINT64_MAX, &seed))
				return usage_error("--seed must be a positive integer, not '%s'",
						   optarg);
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			return usage_error("%s", "sample: bad option");
		}
	}
	if (optind != argc - 1)
		return usage_error("%s", "sample needs exactly one FILE");
	path = argv[optind];
	colo_err_clear(&err);
	if (colo_demo_init(&demo, ram_mb << 20, seed, &err) ||
	    colo_savevm_save(&demo.sv, &out, 0, &err)) {
		fprintf(stderr, "colo-replay: sample: %s\n", err.msg);
		colo_buf_free(&out);
		return EXIT_BAD;
	}
	colo_demo_free(&demo);
	f = fopen(path, "wb");
	if (!f || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0) {
		fprintf(stderr, "colo-replay: %s: cannot write: %s\n", path, strerror(errno));
		colo_buf_free(&out);
		return EXIT_BAD;
	}
	printf("wrote %s: %zu bytes, demo guest with %" PRIu64 " MiB of RAM (seed %"
	       PRIu64 ")\n", path, out.len, ram_mb, seed);
	colo_buf_free(&out);
	return 0;
}

/* ---- recordings ---- */

enum {
	ARG_JSON = 1u << 0,
	ARG_OUT = 1u << 1,
	ARG_LISTEN = 1u << 2,
	ARG_PORT = 1u << 3,
	ARG_QUIET = 1u << 4,
};

struct args {
	bool json;
	const char *out;                 /* -o OUT */
	const char *listen;              /* --listen ADDR */
	const char *port;                /* --port P */
	bool quiet;                      /* -q: no progress line */
	char **pos;                      /* the operands */
	int npos;
};

/*
 * The options and operands of a recording command.  Returns 0, 1 after
 * --help (printed), or EXIT_USAGE after a usage error (printed).
 */
static int parse_args(const char *cmd, unsigned allow, int argc, char **argv,
		      struct args *a)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "out", required_argument, NULL, 'o' },
		{ "listen", required_argument, NULL, 'l' },
		{ "port", required_argument, NULL, 'p' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(a, 0, sizeof(*a));
	while ((c = getopt_long(argc, argv, "ho:q", opts, NULL)) != -1) {
		unsigned need = c == 'j' ? ARG_JSON : c == 'o' ? ARG_OUT :
				c == 'l' ? ARG_LISTEN : c == 'p' ? ARG_PORT :
				c == 'q' ? ARG_QUIET : 0;

		if (c == 'h') {
			fputs(usage_text, stdout);
			return 1;
		}
		if (c == '?' || !(allow & need)) {
			fprintf(stderr, "colo-replay: %s: bad option\n", cmd);
			fputs("Try 'colo-replay --help'.\n", stderr);
			return EXIT_USAGE;
		}
		if (c == 'j')
			a->json = true;
		else if (c == 'q')
			a->quiet = true;
		else if (c == 'o')
			a->out = optarg;
		else if (c == 'p')
			a->port = optarg;
		else
			a->listen = optarg;
	}
	a->pos = argv + optind;
	a->npos = argc - optind;
	return 0;
}

static int parse_seq(const char *cmd, const char *s, uint64_t *seq)
{
	if (parse_u64(s, 0, UINT64_MAX, seq) == 0)
		return 0;
	fprintf(stderr, "colo-replay: %s: N must be a checkpoint sequence number, not '%s'\n",
		cmd, s);
	fputs("Try 'colo-replay --help'.\n", stderr);
	return EXIT_USAGE;
}

/* A progress line on stderr for rec's long calls, when stderr is a
 * terminal and not -q (pinned: the one phase to show, NULL: every one). */
static void show_progress(struct colo_recording *rec, struct colo_progress *p, bool quiet,
			  const char *pinned)
{
	colo_progress_init(p, !quiet && isatty(STDERR_FILENO), stderr);
	p->pinned = pinned;
	rec->progress = colo_progress_cb;
	rec->progress_ud = p;
}

static int open_recording(const char *dir, struct colo_recording **rec)
{
	struct colo_err err;

	colo_err_clear(&err);
	if (colo_recording_open(dir, rec, &err) == 0)
		return 0;
	fprintf(stderr, "colo-replay: %s\n", err.msg);  /* names the directory */
	return EXIT_BAD;
}

static int finish_output(void)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "colo-replay: writing the output: %s\n", strerror(errno));
		return EXIT_BAD;
	}
	return 0;
}

static void print_json(const json_t *doc)
{
	json_dumpf(doc, stdout, JSON_INDENT(2));
	fputc('\n', stdout);
}

static int cmd_list_verify(const char *cmd, int argc, char **argv)
{
	bool verify = strcmp(cmd, "verify") == 0;
	struct colo_progress prog;
	struct colo_recording *rec;
	struct colo_err err;
	struct args a;
	json_t *doc = NULL;
	int r;

	if ((r = parse_args(cmd, ARG_JSON | (verify ? ARG_QUIET : 0), argc, argv, &a)) != 0)
		return r == 1 ? 0 : r;
	if (a.npos != 1)
		return usage_error("%s needs exactly one DIR", cmd);
	if ((r = open_recording(a.pos[0], &rec)) != 0)
		return r;
	show_progress(rec, &prog, a.quiet, verify ? "verifying" : NULL);
	colo_err_clear(&err);
	r = verify ? colo_replay_verify(rec, &doc, &err) : colo_replay_list(rec, &doc, &err);
	colo_progress_end(&prog);
	if (doc) {
		if (a.json)
			print_json(doc);
		else if (verify)
			colo_replay_verify_text(doc, stdout);
		else
			colo_replay_list_text(doc, stdout);
		json_decref(doc);
	}
	colo_recording_close(rec);
	if (r != 0) {
		fflush(stdout);
		fprintf(stderr, "colo-replay: %s: %s\n", a.pos[0], err.msg);
		return EXIT_BAD;
	}
	return finish_output();
}

static int cmd_show_diff_extract(const char *cmd, int argc, char **argv)
{
	bool diff = strcmp(cmd, "diff") == 0, extract = strcmp(cmd, "extract") == 0;
	bool export = strcmp(cmd, "export") == 0;
	struct colo_progress prog;
	struct colo_recording *rec;
	struct colo_err err;
	uint64_t n, m = 0;
	json_t *doc = NULL;
	struct args a;
	int r;

	if ((r = parse_args(cmd, ARG_JSON | ARG_QUIET | (extract || export ? ARG_OUT : 0), argc,
			    argv, &a)) != 0)
		return r == 1 ? 0 : r;
	if (a.npos != (diff ? 3 : 2))
		return usage_error("%s", diff ? "diff needs DIR, N and M" :
				   extract ? "extract needs DIR and N" :
				   export ? "export needs DIR and N" : "show needs DIR and N");
	if (extract && !a.out)
		return usage_error("%s", "extract needs -o OUT");
	if (export && !a.out)
		return usage_error("%s", "export needs -o FILE");
	if ((r = parse_seq(cmd, a.pos[1], &n)) != 0 ||
	    (diff && (r = parse_seq(cmd, a.pos[2], &m)) != 0))
		return r;
	if ((r = open_recording(a.pos[0], &rec)) != 0)
		return r;
	show_progress(rec, &prog, a.quiet, NULL);
	colo_err_clear(&err);
	if (diff)
		r = colo_replay_diff(rec, n, m, &doc, &err);
	else if (extract)
		r = colo_replay_extract(rec, n, a.out, &doc, &err);
	else if (export)
		r = colo_replay_export(rec, n, a.out, &doc, &err);
	else
		r = colo_replay_show(rec, n, &doc, &err);
	colo_progress_end(&prog);
	colo_recording_close(rec);
	if (r != 0) {
		fprintf(stderr, "colo-replay: %s: %s\n", a.pos[0], err.msg);
		return EXIT_BAD;
	}
	if (a.json)
		print_json(doc);
	else if (diff)
		colo_replay_diff_text(doc, stdout);
	else if (extract)
		colo_replay_extract_text(doc, a.out, stdout);
	else if (export)
		colo_replay_export_text(doc, stdout);
	else
		colo_replay_show_text(doc, stdout);
	json_decref(doc);
	return finish_output();
}

/* ---- serve ---- */

/*
 * The configuration a guest is created from: the node's defaults, the
 * guest's kind and its address, as flags through the node's own parser (so
 * --listen is checked as guest-listen is).  Nothing is created on disk; the
 * control socket is never opened (given so that no default is derived from
 * the environment).  ram-mb is set once the checkpoint is known.
 */
static int serve_config(const char *kind, const char *listen, struct colo_config *cfg,
			struct colo_err *err)
{
	char *argv[] = {
		"colo-replay", "--name", "replay", "--guest", (char *)kind,
		"--guest-listen", (char *)listen, "--dirty-tracking", "auto",
		"--control", "/nonexistent/colo-replay.sock", NULL,
	};
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;
	int r = colo_config_load(cfg, COLO_ROLE_SECONDARY, colo_guest_list(), argc, argv,
				 stdout, NULL, err);

	return r == 1 ? colo_err_set(err, EINVAL, "unexpected --help") : r;
}

/* "colo-<kind>-<version>" -> the built-in guest's ops. */
static const struct colo_guest_ops *guest_of(const char *machine, char *kind, size_t len,
					     struct colo_err *err)
{
	const struct colo_guest_ops *ops;
	const char *dash = strrchr(machine, '-');
	char want[COLO_IMAGE_NAME_MAX];

	if (strncmp(machine, "colo-", 5) != 0 || !dash || dash < machine + 5 ||
	    (size_t)(dash - machine - 5) >= len) {
		colo_err_set(err, EINVAL, "its configuration '%s' is not a colo guest "
			     "(colo-<kind>-<version>)", machine);
		return NULL;
	}
	memcpy(kind, machine + 5, (size_t)(dash - machine - 5));
	kind[dash - machine - 5] = '\0';
	ops = colo_guest_find(kind);
	if (!ops) {
		colo_err_set(err, EINVAL, "its guest '%s' is not built in (known: %s)", kind,
			     colo_guest_kinds());
		return NULL;
	}
	colo_guest_machine_name(ops, want, sizeof(want));
	if (strcmp(want, machine) != 0) {
		colo_err_set(err, EINVAL, "it is of '%s', this build runs '%s'", machine, want);
		return NULL;
	}
	return ops;
}

struct served {
	struct colo_config cfg;
	bool have_cfg;
	const struct colo_guest_ops *ops;
	struct colo_guest *g;
	struct colo_ram *ram;
	struct colo_savevm sv;
	bool have_sv;
};

static void served_free(struct served *s)
{
	if (s->g) {
		s->ops->stop(s->g);
		s->ops->destroy(s->g);
	}
	if (s->have_sv)
		colo_savevm_free(&s->sv);
	colo_ram_free(s->ram);
	if (s->have_cfg)
		colo_config_free(&s->cfg);
}

/* Make the guest and load the image into it (the image is emptied). */
static int serve_load(struct served *s, struct colo_image *img, struct colo_err *err)
{
	struct colo_buf stream = COLO_BUF_INIT;
	struct colo_savevm_loader *l;
	uint64_t total = 0;
	int r;

	for (size_t i = 0; i < img->nblocks; i++)
		total += img->blocks[i].length;
	if (total % (1u << 20) || total >> 20 == 0 || total >> 20 > 65536)
		return colo_err_set(err, EINVAL, "its RAM (%" PRIu64 " bytes) is not the "
				    "ram-mb of a guest (whole MiB, 1 to 65536)", total);
	s->cfg.ram_mb = (uint32_t)(total >> 20);
	r = colo_image_save_full(img, &stream, err);
	if (r == 0 && (r = colo_ram_new(s->cfg.dirty_tracking, &s->ram, err)) == 0 &&
	    (r = s->ops->create(&s->cfg, &s->g, err)) == 0 &&
	    (r = colo_savevm_init(&s->sv, img->config, err)) == 0) {
		s->have_sv = true;
		r = s->ops->attach(s->g, s->ram, &s->sv, err);
	}
	/* Its bytes are in the stream now: the memory is better spent on RAM. */
	colo_image_free(img);
	colo_image_init(img);
	if (r != 0) {
		colo_buf_free(&stream);
		return r;
	}
	l = colo_savevm_loader_new(&s->sv, colo_page_codecs, COLO_PAGE_KINDS_ALL);
	if (!l) {
		colo_buf_free(&stream);
		return colo_err_set(err, ENOMEM, "out of memory");
	}
	if (colo_savevm_loader_feed(l, stream.data, stream.len) != (ssize_t)stream.len ||
	    colo_savevm_loader_finish(l) != 0)
		r = colo_err_set(err, EPROTO, "it does not load into the guest: %s",
				 colo_savevm_loader_error(l));
	colo_savevm_loader_free(l);
	colo_buf_free(&stream);
	return r;
}

static const char *signal_name(int sig)
{
	return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ?
	       "SIGHUP" : "QEMU exited";
}

/* serve for a VM: QEMU paused on checkpoint n until a signal. */
static int serve_vm(struct colo_recording *rec, const char *dir, uint64_t n, uint16_t port)
{
	struct colo_replay_vm vm;
	struct colo_err err;
	sigset_t set;
	int r, sig;

	colo_err_clear(&err);
	r = colo_replay_serve_vm(rec, n, port, &vm, &err);
	colo_recording_close(rec);
	if (r != 0) {
		fprintf(stderr, "colo-replay: %s: checkpoint %" PRIu64 ": %s\n", dir, n, err.msg);
		return EXIT_BAD;
	}
	/* QEMU was started with the signals open: block them only now. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	printf("serving checkpoint %" PRIu64 " of %s (VM %s): QEMU pid %ld, %s; Ctrl-C to "
	       "stop\n", n, dir, vm.machine, vm.pid, vm.status);
	printf("  gdb   target remote 127.0.0.1:%u\n", vm.port);
	printf("  qmp   %s\n", vm.qmp_path);
	printf("  log   %s\n", vm.log_path);
	fflush(stdout);
	/* Until a signal, or QEMU's end (a `quit` on its QMP). */
	do
		sigwait(&set, &sig);
	while (sig == SIGCHLD && !colo_qmp_exited(&vm.qmp));
	colo_replay_vm_stop(&vm);
	printf("stopped QEMU pid %ld (%s)\n", vm.pid, signal_name(sig));
	return finish_output();
}

static int cmd_serve(int argc, char **argv)
{
	struct served s;
	struct colo_recording *rec;
	const struct colo_rec_entry *e;
	struct colo_image img;
	struct colo_err err;
	char kind[64], machine[COLO_IMAGE_NAME_MAX];
	const char *guest;
	uint64_t n, port = 0;
	sigset_t set;
	struct args a;
	int r, sig;

	if ((r = parse_args("serve", ARG_LISTEN | ARG_PORT, argc, argv, &a)) != 0)
		return r == 1 ? 0 : r;
	if (a.npos != 2)
		return usage_error("%s", "serve needs DIR and N");
	if ((r = parse_seq("serve", a.pos[1], &n)) != 0)
		return r;
	if (a.port && parse_u64(a.port, 1, 65535, &port) != 0)
		return usage_error("serve: --port must be 1 to 65535, not '%s'", a.port);
	if (a.port && a.listen)
		return usage_error("%s", "serve: --listen is for a guest that serves clients, "
				   "--port for a VM: not both");
	memset(&s, 0, sizeof(s));
	colo_err_clear(&err);
	if (serve_config("kv", a.listen ? a.listen : "127.0.0.1:6379", &s.cfg, &err) != 0) {
		const char *why = err.msg;

		if (strncmp(why, "guest-listen: ", 14) == 0)
			why += 14;
		return usage_error("serve: --listen: %s", why);
	}
	s.have_cfg = true;
	if ((r = open_recording(a.pos[0], &rec)) != 0) {
		served_free(&s);
		return r;
	}
	guest = colo_recording_meta(rec, "guest");
	if (guest && strcmp(guest, "qemu") == 0) {
		served_free(&s);
		if (a.listen) {
			colo_recording_close(rec);
			return usage_error("%s", "serve: a VM has no --listen (its gdbstub "
					   "takes --port)");
		}
		return serve_vm(rec, a.pos[0], n, (uint16_t)port);
	}
	if (a.port) {
		colo_recording_close(rec);
		served_free(&s);
		return usage_error("%s", "serve: --port is for a VM (this recording is of a "
				   "guest that serves on --listen)");
	}
	if (!a.listen)
		a.listen = "127.0.0.1:6379";
	colo_log_init("colo-replay", "replay", COLO_ROLE_SECONDARY, COLO_LOG_ERROR);
	r = colo_replay_state(rec, n, &img, &e, &err);
	colo_recording_close(rec);
	if (r != 0) {
		fprintf(stderr, "colo-replay: %s: %s\n", a.pos[0], err.msg);
		colo_image_free(&img);
		served_free(&s);
		return EXIT_BAD;
	}
	snprintf(machine, sizeof(machine), "%s", img.config);
	if (!(s.ops = guest_of(machine, kind, sizeof(kind), &err)))
		r = -EINVAL;
	/* memtouch only writes RAM: running it changes what one came to see. */
	else if (strcmp(kind, "kv") != 0)
		r = colo_err_set(&err, EINVAL, "%s has no service to inspect; use extract",
				 kind);
	else
		r = serve_load(&s, &img, &err);
	colo_image_free(&img);
	if (r != 0) {
		fprintf(stderr, "colo-replay: %s: checkpoint %" PRIu64 " (%s): %s\n", a.pos[0],
			n, machine, err.msg);
		served_free(&s);
		return EXIT_BAD;
	}
	/* Signals are taken by sigwait below; the guest's threads block them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* A client that goes away must not end the inspection. */
	signal(SIGPIPE, SIG_IGN);
	/* Not replicated: replies go out at once. */
	if (s.ops->output_epoch)
		s.ops->output_epoch(s.g, 0);
	if (s.ops->output_release)
		s.ops->output_release(s.g, UINT64_MAX);
	r = s.ops->start(s.g, &err);
	if (r == 0 && colo_kv_port(s.g) == 0)
		r = colo_err_set(&err, EADDRINUSE, "%s is in use", a.listen);
	if (r != 0) {
		fprintf(stderr, "colo-replay: %s: checkpoint %" PRIu64 " (%s): %s\n", a.pos[0],
			n, machine, err.msg);
		served_free(&s);
		return EXIT_BAD;
	}
	printf("serving checkpoint %" PRIu64 " of %s (%s) on %s; Ctrl-C to stop\n", n,
	       a.pos[0], machine, a.listen);
	fflush(stdout);
	sigwait(&set, &sig);
	served_free(&s);
	printf("stopped (%s)\n", signal_name(sig));
	return finish_output();
}

int main(int argc, char **argv)
{
	const char *cmd;

	if (argc < 2)
		return usage_error("%s", "missing COMMAND");
	cmd = argv[1];
	if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "help") == 0) {
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "-V") == 0 || strcmp(cmd, "--version") == 0) {
		printf("colo-replay %s\n", PACKAGE_VERSION);
		return 0;
	}
	if (strcmp(cmd, "dump") == 0)
		return cmd_dump(argc - 1, argv + 1);
	if (strcmp(cmd, "sample") == 0)
		return cmd_sample(argc - 1, argv + 1);
	if (strcmp(cmd, "list") == 0 || strcmp(cmd, "verify") == 0)
		return cmd_list_verify(cmd, argc - 1, argv + 1);
	if (strcmp(cmd, "show") == 0 || strcmp(cmd, "diff") == 0 ||
	    strcmp(cmd, "extract") == 0 || strcmp(cmd, "export") == 0)
		return cmd_show_diff_extract(cmd, argc - 1, argv + 1);
	if (strcmp(cmd, "serve") == 0)
		return cmd_serve(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", cmd);
}
