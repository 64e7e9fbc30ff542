/*
 * colo-replay: look inside savevm streams.
 *
 *   colo-replay dump [--json] FILE
 *   colo-replay sample [--ram-mb N] [--seed S] FILE
 *
 * Exit status: 0 success; 1 the file is malformed or cannot be read or
 * written (one line on stderr says what and at which byte offset); 2 usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "demo.h"
#include "dump.h"

#define EXIT_BAD 1
#define EXIT_USAGE 2

static const char usage_text[] =
"Usage: colo-replay COMMAND [OPTIONS] ARGS\n"
"\n"
"Commands:\n"
"  dump [--json] FILE\n"
"      Read a savevm v3 stream file (colo's, or a QEMU migration file) to its\n"
"      last byte and print the header, the configuration, every section and\n"
"      command in order, RAM blocks with page counts by kind, and each\n"
"      device's fields decoded through the stream's vmdesc.\n"
"      --json   print the same as one JSON document\n"
"  sample [--ram-mb N] [--seed S] FILE\n"
"      Write the state of the built-in demo guest (one RAM block, two\n"
"      devices using every vmstate field kind) as a stream file.\n"
"      --ram-mb N   RAM of the demo guest in MiB (default 4, at most 4096)\n"
"      --seed S     seed of its contents (default 1, at least 1)\n"
"\n"
"Options:\n"
"  -h, --help      show this help\n"
"  -V, --version   show the version\n"
"\n"
"Exit status: 0 success; 1 the file is malformed or cannot be read or\n"
"written (one line on stderr names what and the byte offset); 2 usage error.\n";

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
	return usage_error("unknown command '%s'", cmd);
}
