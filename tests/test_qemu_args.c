/*
 * test_qemu_args.c: guests/qemu_args.c, the VM's QEMU arguments: splitting
 * with the shell's quotes, what colo reads from them (RAM, accelerator,
 * machine, disks), the clashes and policy refusals with their exact text,
 * the TCG warning, and the vectors colo runs, element by element.  The
 * vectors are also run by a real qemu-system-x86_64 (skipped when it is not
 * installed): the failover one waits in "inmigrate" with the RAM block on
 * colo's file, the primary one answers on colo's QMP socket.
 *
 * Real QEMU runs in a temp dir under /dev/shm made and removed by the
 * runner process (unchecked fixture); each test stops its QEMU by pid and
 * empties the dir before it can fail (QT_ASSERT), since Check's forked test
 * process _exits on a failed assertion without its teardown.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qemu_args.h"
#include "qmp.h"
#include "testutil.h"

#define QEMU "qemu-system-x86_64"
#define MiB (1024ull * 1024)

#define CONNECT_MS 20000
#define COMMAND_MS 10000
#define STOP_MS 10000

/* ---- helpers ---- */

/* got (NULL-terminated) equals want, element by element. */
static void same_argv(char **got, const char *const *want, const char *what)
{
	size_t i;

	ck_assert_msg(got != NULL, "%s: no vector", what);
	for (i = 0; want[i]; i++) {
		ck_assert_msg(got[i] != NULL, "%s: ends at %zu, wants '%s'", what, i, want[i]);
		ck_assert_msg(strcmp(got[i], want[i]) == 0, "%s: [%zu] is '%s', wants '%s'",
			      what, i, got[i], want[i]);
	}
	ck_assert_msg(got[i] == NULL, "%s: extra element [%zu] '%s'", what, i, got[i]);
}

static void split_ok(const char *s, const char *const *want)
{
	struct colo_err err;
	char **argv;
	int argc = -1, n = 0;

	colo_err_clear(&err);
	ck_assert_msg(colo_qemu_args_split(s, &argv, &argc, &err) == 0, "split [%s]: %s", s,
		      err.msg);
	same_argv(argv, want, s);
	while (want[n])
		n++;
	ck_assert_int_eq(argc, n);
	colo_qemu_args_argv_free(argv);
}

static void split_fails(const char *s, const char *msg)
{
	struct colo_err err;
	char **argv = (char **)1;

	colo_err_clear(&err);
	ck_assert_int_eq(colo_qemu_args_split(s, &argv, NULL, &err), -EINVAL);
	ck_assert_ptr_null(argv);
	ck_assert_str_eq(err.msg, msg);
}

static void parse_ok(const char *s, struct colo_qemu_args *a)
{
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_qemu_args_parse(s, a, &err) == 0, "[%s]: %s", s, err.msg);
}

static void parse_fails(const char *s, const char *msg)
{
	struct colo_qemu_args a;
	struct colo_err err;

	colo_err_clear(&err);
	ck_assert_msg(colo_qemu_args_parse(s, &a, &err) == -EINVAL, "[%s] was accepted", s);
	ck_assert_str_eq(err.msg, msg);
	ck_assert_ptr_null(a.argv);
	ck_assert_ptr_null(a.accel);
}

/* Parsed, then checked under the policy (colo's NIC named, so QEMU adds no
 * default one): 0 or the error's text. */
static void check_pol(const char *s, const struct colo_qemu_args_policy *pol, const char *msg);

static void check_gives(const char *s, bool disk_ok, bool tcg_ok, const char *msg)
{
	struct colo_qemu_args_policy pol = { .disk_unprotected = disk_ok, .tcg_ok = tcg_ok,
					     .colo_nic = true };

	check_pol(s, &pol, msg);
}

static void check_pol(const char *s, const struct colo_qemu_args_policy *pol, const char *msg)
{
	struct colo_qemu_args a;
	struct colo_err err;
	int r;

	parse_ok(s, &a);
	colo_err_clear(&err);
	r = colo_qemu_args_check(&a, pol, &err);
	if (msg) {
		ck_assert_msg(r == -EINVAL, "[%s] passed the check", s);
		ck_assert_str_eq(err.msg, msg);
	} else {
		ck_assert_msg(r == 0, "[%s]: %s", s, err.msg);
	}
	colo_qemu_args_free(&a);
}

/* ---- splitting ---- */

START_TEST(split_blanks)
{
	split_ok("-machine pc -m 256", (const char *[]){ "-machine", "pc", "-m", "256", NULL });
	split_ok("  \t-m\n\n256\r\n ", (const char *[]){ "-m", "256", NULL });
	split_ok("", (const char *[]){ NULL });
	split_ok(" \t\n ", (const char *[]){ NULL });
	split_ok("one", (const char *[]){ "one", NULL });
}
END_TEST

START_TEST(split_quotes)
{
	split_ok("-append 'console=ttyS0 root=/dev/vda'",
		 (const char *[]){ "-append", "console=ttyS0 root=/dev/vda", NULL });
	split_ok("-append \"a b\" c", (const char *[]){ "-append", "a b", "c", NULL });
	split_ok("a'b c'\"d e\"f", (const char *[]){ "ab cd ef", NULL });
	split_ok("'' \"\" x", (const char *[]){ "", "", "x", NULL });
	/* Single quotes keep everything, backslashes and double quotes too. */
	split_ok("'a\\b\"c'", (const char *[]){ "a\\b\"c", NULL });
	split_ok("\"it's\"", (const char *[]){ "it's", NULL });
}
END_TEST

START_TEST(split_backslashes)
{
	split_ok("a\\ b c", (const char *[]){ "a b", "c", NULL });
	split_ok("\\'x\\\" \\\\", (const char *[]){ "'x\"", "\\", NULL });
	/* In "...", only \" \\ \$ \` are escapes; other backslashes stay. */
	split_ok("\"\\\" \\\\ \\$ \\` \\a \\n\"", (const char *[]){ "\" \\ $ ` \\a \\n", NULL });
	/* \<newline> joins lines, outside and inside "...". */
	split_ok("-m \\\n256", (const char *[]){ "-m", "256", NULL });
	split_ok("a\\\nb \"c\\\nd\"", (const char *[]){ "ab", "cd", NULL });
	split_ok("a \\\n b", (const char *[]){ "a", "b", NULL });
}
END_TEST

START_TEST(split_no_expansion)
{
	split_ok("$HOME ~ *.img #x ${A} $(id) `id` a;b a|b",
		 (const char *[]){ "$HOME", "~", "*.img", "#x", "${A}", "$(id)", "`id`", "a;b",
				   "a|b", NULL });
}
END_TEST

START_TEST(split_errors)
{
	split_fails("-append 'console=ttyS0", "vm-args: unterminated ' quote at position 9");
	split_fails("-m 1 \"abc", "vm-args: unterminated \" quote at position 6");
	split_fails("\"abc\\\"", "vm-args: unterminated \" quote at position 1");
	split_fails("'a'\"", "vm-args: unterminated \" quote at position 4");
	split_fails("-m 256\\", "vm-args: the backslash at position 7 escapes nothing");
}
END_TEST

/* ---- RAM ---- */

static void ram_is(const char *s, uint64_t bytes)
{
	struct colo_qemu_args a;

	parse_ok(s, &a);
	ck_assert_msg(a.ram_bytes == bytes, "[%s]: %" PRIu64 " bytes, wants %" PRIu64, s,
		      a.ram_bytes, bytes);
	colo_qemu_args_free(&a);
}

START_TEST(ram_sizes)
{
	ram_is("", 128 * MiB);
	ram_is("-m 256", 256 * MiB);
	ram_is("-m 256M", 256 * MiB);
	ram_is("-m 256m", 256 * MiB);
	ram_is("-m 262136k", 262136 * 1024ull);
	ram_is("-m 262136K", 262136 * 1024ull);
	ram_is("-m 2G", 2048 * MiB);
	ram_is("-m 2g", 2048 * MiB);
	ram_is("-m 1T", 1024 * 1024 * MiB);
	ram_is("-m 268435456B", 256 * MiB);
	ram_is("-m 1.5G", 1536 * MiB);
	ram_is("-m 0x100", 256 * MiB);          /* ends in a digit: MiB */
	ram_is("-m size=1G,slots=2,maxmem=4G", 1024 * MiB);
	ram_is("-m 1G,slots=2,maxmem=4G", 1024 * MiB);
	ram_is("--m 512", 512 * MiB);
	ram_is("-m 0", 128 * MiB);              /* QEMU: 0 is the default */
	ram_is("-m 262137k", 262144 * 1024ull); /* rounded up to 8 KiB */
	ram_is("-m 256 -m 512", 512 * MiB);     /* the last size wins */
	ram_is("-m 256 -m slots=2,maxmem=1G", 256 * MiB);
	ram_is("-machine none", 0);             /* none has no default RAM */
	ram_is("-machine none -m 16", 16 * MiB);
	ram_is("-M microvm", 128 * MiB);
}
END_TEST

START_TEST(ram_errors)
{
	static const char *const bad[] = {
		"abc", "256X", "-1", "1.5", "size=", "99999999999999999999",
		"17592186044416", "0x10M", "0x", "1.5e3G", "2 G", "+5",
	};
	char vm[64], msg[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(vm, sizeof(vm), "-m '%s'", bad[i]);
		snprintf(msg, sizeof(msg), "vm-args: -m %s: not a RAM size (a number of MiB, or "
			 "one with a suffix k, M, G or T: 256, 256M, 262136k, 2G)", bad[i]);
		parse_fails(vm, msg);
	}
	parse_fails("-machine pc -m", "vm-args: -m needs a value");
	parse_fails("--m 1 --m 2Q", "vm-args: --m 2Q: not a RAM size (a number of MiB, or "
		    "one with a suffix k, M, G or T: 256, 256M, 262136k, 2G)");
}
END_TEST

/* ---- accelerator and machine ---- */

static void accel_is(const char *s, const char *accel, bool tcg)
{
	struct colo_qemu_args a;

	parse_ok(s, &a);
	ck_assert_msg(strcmp(a.accel, accel) == 0, "[%s]: accel '%s', wants '%s'", s, a.accel,
		      accel);
	ck_assert_msg(a.accel_tcg == tcg, "[%s]: accel_tcg %d", s, a.accel_tcg);
	colo_qemu_args_free(&a);
}

START_TEST(accelerators)
{
	accel_is("-machine pc -m 256", "", false);
	accel_is("-accel kvm", "kvm", false);
	accel_is("-accel tcg,thread=single", "tcg", true);
	accel_is("-accel accel=tcg", "tcg", true);
	accel_is("--accel tcg", "tcg", true);
	accel_is("-accel kvm -accel tcg", "kvm:tcg", true);
	accel_is("-machine pc,accel=kvm:tcg", "kvm:tcg", true);
	accel_is("-M q35,accel=tcg", "tcg", true);
	accel_is("-machine accel=kvm -machine accel=tcg", "tcg", true);
	accel_is("-enable-kvm", "kvm", false);
	accel_is("--enable-kvm", "kvm", false);
	accel_is("-machine accel=tcg -enable-kvm", "kvm", false);
	accel_is("-enable-kvm -machine accel=tcg", "tcg", true);
	accel_is("-accel tcgx", "tcgx", false);
	accel_is("-append -accel -kernel tcg", "", false);
	parse_fails("-accel kvm -enable-kvm", "vm-args: -accel with -machine accel= or "
		    "-enable-kvm: QEMU 7.2 refuses both (give the accelerator once)");
	parse_fails("-machine pc,accel=kvm -accel kvm", "vm-args: -accel with -machine accel= "
		    "or -enable-kvm: QEMU 7.2 refuses both (give the accelerator once)");
}
END_TEST

static void machine_is(const char *s, const char *machine, bool vcpus, const char *block)
{
	struct colo_qemu_args a;

	parse_ok(s, &a);
	if (machine)
		ck_assert_msg(a.machine && strcmp(a.machine, machine) == 0,
			      "[%s]: machine '%s', wants '%s'", s, a.machine ? a.machine : "(null)",
			      machine);
	else
		ck_assert_msg(a.machine == NULL, "[%s]: machine '%s'", s, a.machine);
	ck_assert_msg(a.has_vcpus == vcpus, "[%s]: has_vcpus %d", s, a.has_vcpus);
	ck_assert_str_eq(a.ram_block, block);
	colo_qemu_args_free(&a);
}

START_TEST(machines)
{
	machine_is("-m 256", NULL, true, "pc.ram");
	machine_is("-machine pc", "pc", true, "pc.ram");
	machine_is("-M none", "none", false, "ram");
	machine_is("--machine none,accel=tcg", "none", false, "ram");
	machine_is("-machine type=q35", "q35", true, "pc.ram");
	machine_is("-machine pc-i440fx-7.2,accel=kvm -machine q35", "q35", true, "pc.ram");
	machine_is("-machine none -machine accel=tcg", "none", false, "ram");
	machine_is("-machine accel=kvm", NULL, true, "pc.ram");
	machine_is("-machine microvm", "microvm", true, "microvm.ram");
	machine_is("-machine nonesuch", "nonesuch", true, "pc.ram");
}
END_TEST

/* Options that take a value take the next word, whatever it looks like. */
START_TEST(values_are_skipped)
{
	struct colo_qemu_args a;

	parse_ok("-kernel vmlinuz -initrd initrd.img -append '-S -incoming x -m 5 disk.img' "
		 "-name -S -serial -daemonize -nodefaults -foo -bar", &a);
	ck_assert_uint_eq(a.ram_bytes, 128 * MiB);
	ck_assert_uint_eq(a.disks, 0);
	ck_assert_ptr_null(a.writable_disk);
	ck_assert_int_eq(a.argc, 13);
	same_argv(a.argv, (const char *[]){ "-kernel", "vmlinuz", "-initrd", "initrd.img",
		  "-append", "-S -incoming x -m 5 disk.img", "-name", "-S", "-serial",
		  "-daemonize", "-nodefaults", "-foo", "-bar", NULL }, "argv copy");
	colo_qemu_args_free(&a);
	parse_fails("-drive", "vm-args: -drive needs a value");
	parse_fails("-m 1 --kernel", "vm-args: --kernel needs a value");
}
END_TEST

/* ---- disks ---- */

static void disks_are(const char *s, unsigned disks, const char *writable)
{
	struct colo_qemu_args a;

	parse_ok(s, &a);
	ck_assert_msg(a.disks == disks, "[%s]: %u disks, wants %u", s, a.disks, disks);
	if (writable)
		ck_assert_msg(a.writable_disk && strcmp(a.writable_disk, writable) == 0,
			      "[%s]: writable '%s', wants '%s'", s,
			      a.writable_disk ? a.writable_disk : "(none)", writable);
	else
		ck_assert_msg(!a.writable_disk, "[%s]: writable '%s'", s, a.writable_disk);
	colo_qemu_args_free(&a);
}

START_TEST(drives)
{
	disks_are("-drive file=disk.qcow2,if=virtio", 1, "-drive file=disk.qcow2,if=virtio");
	disks_are("-drive file=d.img,readonly=on", 1, NULL);
	disks_are("-drive file=d.img,read-only=on", 1, NULL);
	disks_are("-drive file=d.img,readonly", 1, NULL);
	disks_are("-drive file=d.img,readonly=yes", 1, NULL);
	disks_are("-drive readonly=true,file=d.img", 1, NULL);
	disks_are("-drive file=d.img,snapshot=on", 1, NULL);
	disks_are("-drive file=d.iso,media=cdrom", 1, NULL);
	disks_are("--drive file=d.img,readonly=off", 1, "--drive file=d.img,readonly=off");
	disks_are("-drive file=d.img,noreadonly", 1, "-drive file=d.img,noreadonly");
	disks_are("-drive file=d.img,readonly=on,readonly=off", 1,
		  "-drive file=d.img,readonly=on,readonly=off");
	disks_are("-drive file=d.img,media=disk", 1, "-drive file=d.img,media=disk");
	/* ",," is a comma inside a value, not a new key. */
	disks_are("-drive file=a,,readonly=on.img", 1, "-drive file=a,,readonly=on.img");
	disks_are("-drive file=d.img,snapshot=off -snapshot", 1, NULL);
	disks_are("-snapshot -drive file=d.img", 1, NULL);
	disks_are("-drive file=a.img,readonly=on -drive file=b.img -drive file=c.img", 3,
		  "-drive file=b.img");
}
END_TEST

START_TEST(short_disks)
{
	static const char *const opt[] = {
		"-hda", "-hdb", "-hdc", "-hdd", "-fda", "-fdb", "-pflash", "-mtdblock", "-sd",
	};
	char vm[64], want[64];

	for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]); i++) {
		snprintf(vm, sizeof(vm), "%s x.img", opt[i]);
		snprintf(want, sizeof(want), "%s x.img", opt[i]);
		disks_are(vm, 1, want);
		snprintf(vm, sizeof(vm), "%s x.img -snapshot", opt[i]);
		disks_are(vm, 1, NULL);
		snprintf(vm, sizeof(vm), "--snapshot -%s x.img", opt[i]);
		disks_are(vm, 1, NULL);
	}
	disks_are("-cdrom d.iso", 1, NULL);
	disks_are("disk.img", 1, "disk image disk.img");
	disks_are("-m 256 disk.img -snapshot", 1, NULL);
}
END_TEST

START_TEST(other_storage)
{
	disks_are("-blockdev driver=file,filename=x.img,node-name=f", 1,
		  "-blockdev driver=file,filename=x.img,node-name=f");
	disks_are("-blockdev driver=file,filename=x.img,node-name=f,read-only=on", 1, NULL);
	disks_are("-blockdev file,filename=x.img,read-only=on", 1, NULL);
	disks_are("-blockdev '{\"driver\":\"file\",\"filename\":\"x\",\"read-only\":true}'", 1,
		  NULL);
	disks_are("-blockdev '{\"driver\":\"file\",\"filename\":\"x\",\"read-only\":false}'", 1,
		  "-blockdev {\"driver\":\"file\",\"filename\":\"x\",\"read-only\":false}");
	/* QEMU's -snapshot does not reach -blockdev. */
	disks_are("-snapshot -blockdev driver=file,filename=x,node-name=f", 1,
		  "-blockdev driver=file,filename=x,node-name=f");
	disks_are("-fsdev local,id=f,path=/srv,security_model=none", 1,
		  "-fsdev local,id=f,path=/srv,security_model=none");
	disks_are("-fsdev local,id=f,path=/srv,security_model=none,readonly=on", 1, NULL);
	disks_are("-virtfs local,path=/srv,mount_tag=t,security_model=none,readonly=on", 1,
		  NULL);
	disks_are("-virtfs local,path=/srv,mount_tag=t,security_model=none", 1,
		  "-virtfs local,path=/srv,mount_tag=t,security_model=none");
	disks_are("-fsdev synth,id=s", 0, NULL);
	disks_are("-device vhost-user-blk-pci,chardev=c0", 1,
		  "-device vhost-user-blk-pci,chardev=c0");
	disks_are("-device '{\"driver\":\"vhost-user-fs-pci\",\"chardev\":\"c\"}'", 1,
		  "-device {\"driver\":\"vhost-user-fs-pci\",\"chardev\":\"c\"}");
	disks_are("-device virtio-blk-pci,drive=d0 -device e1000,netdev=n0", 0, NULL);
	/* The first writable one in argv order, -snapshot applied. */
	disks_are("-drive file=a,readonly=on -blockdev driver=file,filename=b,node-name=n "
		  "-hda c", 3, "-blockdev driver=file,filename=b,node-name=n");
	disks_are("-hda c -blockdev driver=file,filename=b,node-name=n", 2, "-hda c");
	disks_are("-hda c -blockdev driver=file,filename=b,node-name=n -snapshot", 2,
		  "-blockdev driver=file,filename=b,node-name=n");
}
END_TEST

START_TEST(writable_refused)
{
	check_gives("-drive file=disk.qcow2,if=virtio", false, false,
		    "vm-args: -drive file=disk.qcow2,if=virtio is writable: a failover rolls RAM "
		    "back but not the disk (make it readonly=on or snapshot=on, or set "
		    "vm-disk-unprotected = yes)");
	check_gives("-hdb x.img", false, false, "vm-args: -hdb x.img is writable: a failover "
		    "rolls RAM back but not the disk (add -snapshot, or give it as -drive with "
		    "readonly=on, or set vm-disk-unprotected = yes)");
	check_gives("-pflash vars.fd", false, false, "vm-args: -pflash vars.fd is writable: a "
		    "failover rolls RAM back but not the disk (add -snapshot, or give it as "
		    "-drive with readonly=on, or set vm-disk-unprotected = yes)");
	check_gives("disk.img", false, false, "vm-args: disk image disk.img is writable: a "
		    "failover rolls RAM back but not the disk (add -snapshot, or give it as "
		    "-drive with readonly=on, or set vm-disk-unprotected = yes)");
	check_gives("-blockdev driver=file,filename=b,node-name=n", false, false,
		    "vm-args: -blockdev driver=file,filename=b,node-name=n is writable: a "
		    "failover rolls RAM back but not the disk (make it read-only=on, or set "
		    "vm-disk-unprotected = yes)");
	check_gives("-virtfs local,path=/srv,mount_tag=t", false, false,
		    "vm-args: -virtfs local,path=/srv,mount_tag=t is writable: a failover rolls "
		    "RAM back but not the disk (make it readonly=on, or set vm-disk-unprotected "
		    "= yes)");
	check_gives("-device vhost-user-blk-pci,chardev=c0", false, false,
		    "vm-args: -device vhost-user-blk-pci,chardev=c0 is writable: a failover rolls "
		    "RAM back but not the disk (colo cannot see its storage: set "
		    "vm-disk-unprotected = yes if it is protected elsewhere)");
	/* The operator's statement lets them through. */
	check_gives("-drive file=disk.qcow2,if=virtio -hda x disk.img", true, false, NULL);
	check_gives("-kernel bzImage -initrd initrd.img -drive file=r.img,readonly=on "
		    "-cdrom d.iso", false, false, NULL);
}
END_TEST

/* ---- clashes ---- */

START_TEST(clashes)
{
	static const struct {
		const char *vm, *msg;
	} t[] = {
		{ "-incoming defer", "vm-args: -incoming defer: colo starts the incoming side "
		  "itself (on failover, -incoming defer)" },
		{ "-m 256 --incoming tcp:0:4444", "vm-args: --incoming tcp:0:4444: colo starts "
		  "the incoming side itself (on failover, -incoming defer)" },
		{ "-daemonize", "vm-args: -daemonize: colo supervises QEMU by the pid it started, "
		  "which -daemonize leaves" },
		{ "-loadvm snap1", "vm-args: -loadvm snap1: the VM's state comes from colo's "
		  "checkpoints, not from a snapshot" },
		{ "-S", "vm-args: -S: colo decides when the VM runs" },
		{ "-m 64 --S", "vm-args: --S: colo decides when the VM runs" },
		{ "-mem-path /dev/hugepages", "vm-args: -mem-path /dev/hugepages: colo manages "
		  "the VM's RAM backend (on failover, the committed RAM file)" },
		{ "-mem-prealloc", "vm-args: -mem-prealloc: QEMU 7.2 would preallocate the "
		  "committed RAM colo maps on failover too, so failover time would grow with "
		  "the VM's size" },
		{ "-machine pc,memory-backend=m0", "vm-args: -machine pc,memory-backend=m0: colo "
		  "manages the VM's RAM backend (on failover, the committed RAM file)" },
		{ "-M memory-backend=m0", "vm-args: -M memory-backend=m0: colo manages the VM's "
		  "RAM backend (on failover, the committed RAM file)" },
		{ "-object memory-backend-file,id=m0,size=1G,mem-path=/x", "vm-args: -object "
		  "memory-backend-file,id=m0,size=1G,mem-path=/x: colo manages the VM's RAM "
		  "backend (on failover, the committed RAM file)" },
		{ "-object qom-type=memory-backend-ram,id=m0,size=1G", "vm-args: -object "
		  "qom-type=memory-backend-ram,id=m0,size=1G: colo manages the VM's RAM backend "
		  "(on failover, the committed RAM file)" },
		{ "-object '{\"qom-type\":\"memory-backend-memfd\",\"id\":\"m\",\"size\":1}'",
		  "vm-args: -object {\"qom-type\":\"memory-backend-memfd\",\"id\":\"m\","
		  "\"size\":1}: colo manages the VM's RAM backend (on failover, the committed "
		  "RAM file)" },
		{ "-runas nobody", "vm-args: -runas nobody: QEMU would reach colo's sockets as "
		  "another user, and changing user clears the parent-death signal that ends "
		  "QEMU with colo (run colo as that user)" },
		{ "-chroot /var/empty", "vm-args: -chroot /var/empty: QEMU would look colo's "
		  "migration socket up inside the chroot" },
		{ "-readconfig vm.cfg", "vm-args: -readconfig vm.cfg: colo cannot check what a "
		  "config file adds (put its options in vm-args)" },
		{ "-drive file=d,id=d0,readonly=on -set drive.d0.readonly=off", "vm-args: -set "
		  "drive.d0.readonly=off: colo reads these options where they are given and "
		  "cannot follow -set (write the value in the option itself)" },
		{ "-set machine.x.accel=tcg", "vm-args: -set machine.x.accel=tcg: colo reads "
		  "these options where they are given and cannot follow -set (write the value "
		  "in the option itself)" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		parse_fails(t[i].vm, t[i].msg);
}
END_TEST

/* What is not a clash passes, untouched. */
START_TEST(not_clashes)
{
	static const char *const ok[] = {
		"-qmp unix:/tmp/op.sock,server=on,wait=off", "-qmp-pretty tcp:127.0.0.1:4445",
		"-monitor stdio", "-nographic", "-chardev socket,id=c,path=/x,server=on "
		"-mon chardev=c,mode=control", "-no-reboot", "-no-shutdown",
		"-object rng-random,id=r,filename=/dev/urandom",
		"-object '{\"qom-type\":\"secret\",\"id\":\"s\",\"data\":\"x\"}'",
		"-set device.nic0.mac=52:54:00:12:34:56",
		"-nodefaults -sandbox on -only-migratable -future-option -pidfile /run/x.pid",
	};

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		check_gives(ok[i], false, false, NULL);
}
END_TEST

/* ---- TCG ---- */

START_TEST(tcg_with_vcpus)
{
	check_gives("-accel tcg -m 256", false, false, "vm-args: accelerator tcg with vCPUs: "
		    "QEMU 7.2's COLO primary deadlocks and misses dirty pages under TCG (use "
		    "kvm, or set qemu-tcg-ok = yes if your QEMU is fixed)");
	check_gives("-machine q35,accel=kvm:tcg", false, false, "vm-args: accelerator kvm:tcg "
		    "with vCPUs: QEMU 7.2's COLO primary deadlocks and misses dirty pages under "
		    "TCG (use kvm, or set qemu-tcg-ok = yes if your QEMU is fixed)");
	check_gives("-accel tcg -m 256", false, true, NULL);
	check_gives("-accel tcg -machine none -m 16", false, false, NULL);
	check_gives("-M none,accel=tcg", false, false, NULL);
	check_gives("-accel kvm", false, false, NULL);
	check_gives("-enable-kvm -m 2G", false, false, NULL);
	check_gives("-m 256", false, false, NULL);
}
END_TEST

/* ---- NICs: output commit ---- */

START_TEST(nics_bypassing_output_commit)
{
	static const struct colo_qemu_args_policy none, nic = { .colo_nic = true },
		unprot = { .net_unprotected = true };
	static const char *const why = ": the VM's frames would bypass output commit, so a "
		"client could see what a failover rolls back (name the NIC in vm-nics and colo "
		"carries it, or set vm-net-unprotected = yes)";
	static const char *const dflt = "vm-args: no NIC named, so QEMU adds its default one "
		"(user networking), whose frames would bypass output commit (name the NIC in "
		"vm-nics, or add -nodefaults or -nic none, or set vm-net-unprotected = yes)";
	char want[512];

	snprintf(want, sizeof(want), "vm-args: -netdev user,id=n0%s", why);
	check_pol("-nodefaults -netdev user,id=n0 -device e1000,netdev=n0", &nic, want);
	check_pol("-nodefaults -netdev user,id=n0 -device e1000,netdev=n0", &none, want);
	snprintf(want, sizeof(want), "vm-args: --nic tap,ifname=t0%s", why);
	check_pol("-m 64 --nic tap,ifname=t0", &nic, want);
	snprintf(want, sizeof(want), "vm-args: -net nic%s", why);
	check_pol("-net nic -net user", &nic, want);
	check_pol("-nodefaults -netdev user,id=n0 -device e1000,netdev=n0", &unprot, NULL);
	/* QEMU's default NIC: refused unless something else rules it out */
	check_pol("-m 64", &none, dflt);
	check_pol("-m 64", &nic, NULL);
	check_pol("-m 64 -nodefaults", &none, NULL);
	check_pol("-m 64 -nic none", &none, NULL);
	check_pol("-m 64 -net none", &none, NULL);
	check_pol("-m 64", &unprot, NULL);
}
END_TEST

/* colo's NIC: -netdev stream to its socket, the operator's device on it. */
START_TEST(nic_argv)
{
	struct colo_qemu_args a;
	struct colo_err err;
	char **v = NULL;

	parse_ok("-nodefaults -m 64", &a);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_qemu_args_set_nic(&a, "virtio-net-pci,mac=52:54:00:c0:10:64",
						"/run/x,y/net.sock", &err), 0);
	ck_assert_int_eq(colo_qemu_args_primary(&a, "qemu", "q", &v, &err), 0);
	same_argv(v, (const char *[]){ "qemu", "-nodefaults", "-m", "64", "-accel", "kvm",
		  "-qmp", "unix:q,server=on,wait=off", "-netdev",
		  "stream,id=colo-net0,server=off,addr.type=unix,addr.path=/run/x,,y/net.sock",
		  "-device", "virtio-net-pci,mac=52:54:00:c0:10:64,netdev=colo-net0", NULL },
		  "primary with colo's NIC");
	colo_qemu_args_argv_free(v);
	ck_assert_int_eq(colo_qemu_args_failover(&a, "qemu", "q", "/dev/shm/r", &v, &err), 0);
	same_argv(v, (const char *[]){ "qemu", "-nodefaults", "-m", "64", "-accel", "kvm",
		  "-qmp", "unix:q,server=on,wait=off", "-machine", "memory-backend=pc.ram",
		  "-object", "memory-backend-file,id=pc.ram,size=67108864,mem-path=/dev/shm/r,"
		  "share=on", "-netdev",
		  "stream,id=colo-net0,server=off,addr.type=unix,addr.path=/run/x,,y/net.sock",
		  "-device", "virtio-net-pci,mac=52:54:00:c0:10:64,netdev=colo-net0", "-incoming",
		  "defer", NULL }, "failover with colo's NIC");
	colo_qemu_args_argv_free(v);

	ck_assert_int_eq(colo_qemu_args_set_nic(&a, "e1000,netdev=n0", "s", &err), -EINVAL);
	ck_assert_str_eq(err.msg, "vm-nics e1000,netdev=n0: names a netdev, which colo adds "
			 "itself");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_qemu_args_set_nic(&a, "e1000 e1000", "s", &err), -EINVAL);
	ck_assert_str_eq(err.msg, "vm-nics 'e1000 e1000': one NIC (colo carries one for now), "
			 "written without blanks");
	colo_err_clear(&err);
	ck_assert_int_eq(colo_qemu_args_set_nic(&a, ",mac=1", "s", &err), -EINVAL);
	ck_assert_str_eq(err.msg, "vm-nics ',mac=1': a NIC model with its options, e.g. "
			 "virtio-net-pci,mac=52:54:00:12:34:56");
	colo_qemu_args_free(&a);
}
END_TEST

START_TEST(strict_without_policy)
{
	struct colo_qemu_args a;
	struct colo_err err;

	parse_ok("-accel tcg -hda x", &a);
	colo_err_clear(&err);
	ck_assert_int_eq(colo_qemu_args_check(&a, NULL, &err), -EINVAL);
	ck_assert_str_eq(err.msg, "vm-args: -hda x is writable: a failover rolls RAM back but "
			 "not the disk (add -snapshot, or give it as -drive with readonly=on, "
			 "or set vm-disk-unprotected = yes)");
	colo_qemu_args_free(&a);
}
END_TEST

static void warning_is(const char *s, const char *want)
{
	struct colo_qemu_args a;
	char buf[512];
	const char *w;

	parse_ok(s, &a);
	w = colo_qemu_args_tcg_warning(&a, buf, sizeof(buf));
	if (want)
		ck_assert_msg(w && strcmp(w, want) == 0, "[%s]: '%s'", s, w ? w : "(none)");
	else
		ck_assert_msg(!w, "[%s]: warns '%s'", s, w);
	colo_qemu_args_free(&a);
}

START_TEST(tcg_ram_warning)
{
	warning_is("-accel tcg -m 256", "vm-args: 262144 KiB of RAM under TCG is a multiple of "
		   "256 KiB, where QEMU 7.2 misses dirty pages and a failover restores stale "
		   "ones (use a size that is not, e.g. -m 262136k)");
	warning_is("-accel tcg", "vm-args: 131072 KiB of RAM under TCG is a multiple of 256 "
		   "KiB, where QEMU 7.2 misses dirty pages and a failover restores stale ones "
		   "(use a size that is not, e.g. -m 131064k)");
	warning_is("-machine accel=kvm:tcg -m 1G", "vm-args: 1048576 KiB of RAM under TCG is a "
		   "multiple of 256 KiB, where QEMU 7.2 misses dirty pages and a failover "
		   "restores stale ones (use a size that is not, e.g. -m 1048568k)");
	warning_is("-accel tcg -m 262136k", NULL);
	/* QEMU rounds 262137k up to 262144k: a multiple again. */
	warning_is("-accel tcg -m 262137k", "vm-args: 262144 KiB of RAM under TCG is a "
		   "multiple of 256 KiB, where QEMU 7.2 misses dirty pages and a failover "
		   "restores stale ones (use a size that is not, e.g. -m 262136k)");
	warning_is("-accel kvm -m 256", NULL);
	warning_is("-m 256", NULL);
	warning_is("-accel tcg -machine none -m 256", NULL);
}
END_TEST

/* ---- the vectors colo runs ---- */

static char **build(const char *vm, bool failover, const char *qmp, const char *ram)
{
	struct colo_qemu_args a;
	struct colo_err err;
	char **argv = NULL;
	int r;

	parse_ok(vm, &a);
	colo_err_clear(&err);
	r = failover ? colo_qemu_args_failover(&a, "/usr/bin/qemu-system-x86_64", qmp, ram,
					       &argv, &err)
		     : colo_qemu_args_primary(&a, "/usr/bin/qemu-system-x86_64", qmp, &argv, &err);
	ck_assert_msg(r == 0, "[%s]: %s", vm, err.msg);
	colo_qemu_args_free(&a);
	return argv;
}

START_TEST(primary_argv)
{
	char **v;

	v = build("-machine pc -m 256 -append 'a b'", false, "/run/colo/q.sock", NULL);
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-machine", "pc", "-m",
		  "256", "-append", "a b", "-accel", "kvm", "-qmp",
		  "unix:/run/colo/q.sock,server=on,wait=off", NULL }, "primary");
	colo_qemu_args_argv_free(v);
	v = build("-accel tcg -m 64", false, "/run/colo/q.sock", NULL);
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-accel", "tcg", "-m",
		  "64", "-qmp", "unix:/run/colo/q.sock,server=on,wait=off", NULL },
		  "primary, tcg");
	colo_qemu_args_argv_free(v);
	v = build("--enable-kvm", false, "/tmp/a,b.sock", NULL);
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "--enable-kvm", "-qmp",
		  "unix:/tmp/a,,b.sock,server=on,wait=off", NULL }, "primary, comma");
	colo_qemu_args_argv_free(v);
	v = build("", false, "q", NULL);
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-accel", "kvm", "-qmp",
		  "unix:q,server=on,wait=off", NULL }, "primary, no args");
	colo_qemu_args_argv_free(v);
}
END_TEST

START_TEST(failover_argv)
{
	char **v;

	v = build("-machine pc -m 256", true, "/run/colo/q.sock", "/dev/shm/colo-b");
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-machine", "pc", "-m",
		  "256", "-accel", "kvm", "-qmp", "unix:/run/colo/q.sock,server=on,wait=off",
		  "-machine", "memory-backend=pc.ram", "-object",
		  "memory-backend-file,id=pc.ram,size=268435456,mem-path=/dev/shm/colo-b,share=on",
		  "-incoming", "defer", NULL }, "failover");
	colo_qemu_args_argv_free(v);
	v = build("-M none,accel=tcg -m 16", true, "q", "/dev/shm/a,b");
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-M", "none,accel=tcg",
		  "-m", "16", "-qmp", "unix:q,server=on,wait=off", "-machine",
		  "memory-backend=ram", "-object",
		  "memory-backend-file,id=ram,size=16777216,mem-path=/dev/shm/a,,b,share=on",
		  "-incoming", "defer", NULL }, "failover, none");
	colo_qemu_args_argv_free(v);
	v = build("-accel tcg -m 262136k -machine microvm", true, "q", "r");
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-accel", "tcg", "-m",
		  "262136k", "-machine", "microvm", "-qmp", "unix:q,server=on,wait=off",
		  "-machine", "memory-backend=microvm.ram", "-object",
		  "memory-backend-file,id=microvm.ram,size=268427264,mem-path=r,share=on",
		  "-incoming", "defer", NULL }, "failover, microvm");
	colo_qemu_args_argv_free(v);
	/* No RAM, no backend. */
	v = build("-machine none -accel tcg", true, "q", "r");
	same_argv(v, (const char *[]){ "/usr/bin/qemu-system-x86_64", "-machine", "none",
		  "-accel", "tcg", "-qmp", "unix:q,server=on,wait=off", "-incoming", "defer",
		  NULL }, "failover, no RAM");
	colo_qemu_args_argv_free(v);
}
END_TEST

/* ---- the vectors, run by real QEMU ---- */

static struct {
	char *dir;              /* under /dev/shm, made by the runner process */
	char *qemu;
	struct colo_qmp q;
	char **argv;
	char sock[PATH_MAX], log[PATH_MAX], ram[PATH_MAX];
} T;

static void make_dir(void)
{
	char tmpl[] = "/dev/shm/colo-test-XXXXXX";

	T.dir = mkdtemp(tmpl) ? strdup(tmpl) : NULL;
}

static void remove_dir(void)
{
	colo_test_rmdir(T.dir);
	T.dir = NULL;
}

/* Stop QEMU by its pid, remove its files. */
static void cleanup(void)
{
	colo_qmp_free(&T.q);
	colo_qemu_args_argv_free(T.argv);
	T.argv = NULL;
	unlink(T.sock);
	unlink(T.log);
	unlink(T.ram);
	free(T.qemu);
	T.qemu = NULL;
}

#define QT_ASSERT(cond, ...) do {                                       \
	if (!(cond)) {                                                  \
		char *qt_msg_;                                          \
		if (asprintf(&qt_msg_, __VA_ARGS__) < 0)                \
			qt_msg_ = NULL;                                 \
		cleanup();                                              \
		ck_abort_msg("%s", qt_msg_ ? qt_msg_ : "out of memory"); \
	}                                                               \
} while (0)

/* The tail of QEMU's stderr, for failure messages (static buffer). */
static const char *qemu_log(void)
{
	static char tail[1000];
	size_t len = 0, from;
	uint8_t *data = colo_test_read_file(T.log, &len);

	tail[0] = '\0';
	if (data) {
		from = len > sizeof(tail) - 1 ? len - (sizeof(tail) - 1) : 0;
		memcpy(tail, data + from, len - from);
		tail[len - from] = '\0';
	}
	free(data);
	return tail;
}

/* Start what colo would start for `vm`, connect to colo's QMP socket. */
static void run(const char *vm, bool failover)
{
	struct colo_qemu_args a;
	struct colo_err err;
	int r;

	colo_qmp_init(&T.q);
	T.qemu = colo_qmp_find_program(QEMU);
	if (!T.qemu)
		colo_test_skip(QEMU " is not installed");
	QT_ASSERT(T.dir, "no temp dir under /dev/shm");
	snprintf(T.sock, sizeof(T.sock), "%s/qmp.sock", T.dir);
	snprintf(T.log, sizeof(T.log), "%s/qemu.log", T.dir);
	snprintf(T.ram, sizeof(T.ram), "%s/ram", T.dir);
	colo_err_clear(&err);
	r = colo_qemu_args_parse(vm, &a, &err);
	QT_ASSERT(r == 0, "[%s]: %s", vm, err.msg);
	r = failover ? colo_qemu_args_failover(&a, T.qemu, T.sock, T.ram, &T.argv, &err)
		     : colo_qemu_args_primary(&a, T.qemu, T.sock, &T.argv, &err);
	colo_qemu_args_free(&a);
	QT_ASSERT(r == 0, "build: %s", err.msg);
	r = colo_qmp_start(&T.q, T.qemu, (const char *const *)T.argv, T.log, &err);
	if (r == 0)
		r = colo_qmp_connect(&T.q, T.sock, CONNECT_MS, &err);
	QT_ASSERT(r == 0, "%s\nQEMU stderr:\n%s", err.msg, qemu_log());
}

static void status_is(const char *want)
{
	struct colo_err err;
	json_t *ret = NULL;
	const char *s;
	int r;

	colo_err_clear(&err);
	r = colo_qmp_execute(&T.q, "query-status", NULL, &ret, COMMAND_MS, &err);
	QT_ASSERT(r == 0, "query-status: %s", err.msg);
	s = json_string_value(json_object_get(ret, "status"));
	QT_ASSERT(s && strcmp(s, want) == 0, "status '%s', wants '%s'", s ? s : "(none)", want);
	json_decref(ret);
}

/* `info ramblock` lists `block` with `bytes` in total. */
static void ramblock_is(const char *block, uint64_t bytes)
{
	struct colo_err err;
	json_t *ret = NULL;
	const char *text, *line;
	bool found = false;
	int r;

	colo_err_clear(&err);
	r = colo_qmp_execute(&T.q, "human-monitor-command",
			     json_pack("{s:s}", "command-line", "info ramblock"), &ret,
			     COMMAND_MS, &err);
	QT_ASSERT(r == 0, "info ramblock: %s", err.msg);
	text = json_string_value(ret);
	QT_ASSERT(text, "info ramblock gave no text");
	for (line = text; line && !found; line = strchr(line, '\n')) {
		char name[128];
		uint64_t used, total;

		/* "  pc.ram    4 KiB  0x0000000000000000 0x...04000000 0x...04000000" */
		if (*line == '\n')
			line++;
		if (sscanf(line, "%127s %*s %*s %*s %" SCNx64 " %" SCNx64, name, &used,
			   &total) == 3 && strcmp(name, block) == 0)
			found = used == bytes && total == bytes;
	}
	QT_ASSERT(found, "no %s of %" PRIu64 " bytes in:\n%s", block, bytes, text);
	json_decref(ret);
}

static void stop(void)
{
	int r = colo_qmp_stop(&T.q, STOP_MS);

	QT_ASSERT(r == 0, "QEMU did not quit\nQEMU stderr:\n%s", qemu_log());
	cleanup();
}

START_TEST(failover_argv_runs)
{
	/* colo adds -accel kvm; without KVM here, TCG waits as well (no COLO yet). */
	const char *vm = access("/dev/kvm", R_OK | W_OK) == 0 ?
			 "-machine pc -nodefaults -m 64M -display none" :
			 "-machine pc -nodefaults -m 64M -display none -accel tcg";
	struct stat st;

	run(vm, true);
	status_is("inmigrate");
	ramblock_is("pc.ram", 64 * MiB);
	QT_ASSERT(stat(T.ram, &st) == 0 && st.st_size == (off_t)(64 * MiB),
		  "%s is not a 64 MiB file", T.ram);
	stop();
}
END_TEST

START_TEST(failover_argv_runs_none)
{
	struct stat st;

	run("-machine none -accel tcg -nodefaults -display none -m 16", true);
	status_is("inmigrate");
	ramblock_is("ram", 16 * MiB);
	QT_ASSERT(stat(T.ram, &st) == 0 && st.st_size == (off_t)(16 * MiB),
		  "%s is not a 16 MiB file", T.ram);
	stop();
}
END_TEST

START_TEST(primary_argv_runs)
{
	struct stat st;

	run("-machine none -accel tcg -nodefaults -display none -m 16", false);
	status_is("running");
	ramblock_is("ram", 16 * MiB);
	QT_ASSERT(stat(T.ram, &st) < 0, "the primary made a RAM file");
	stop();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("qemu_args");
	TCase *tc = tcase_create("qemu_args");
	TCase *real = tcase_create("qemu");

	tcase_add_test(tc, split_blanks);
	tcase_add_test(tc, split_quotes);
	tcase_add_test(tc, split_backslashes);
	tcase_add_test(tc, split_no_expansion);
	tcase_add_test(tc, split_errors);
	tcase_add_test(tc, ram_sizes);
	tcase_add_test(tc, ram_errors);
	tcase_add_test(tc, accelerators);
	tcase_add_test(tc, machines);
	tcase_add_test(tc, values_are_skipped);
	tcase_add_test(tc, drives);
	tcase_add_test(tc, short_disks);
	tcase_add_test(tc, other_storage);
	tcase_add_test(tc, writable_refused);
	tcase_add_test(tc, clashes);
	tcase_add_test(tc, not_clashes);
	tcase_add_test(tc, tcg_with_vcpus);
	tcase_add_test(tc, strict_without_policy);
	tcase_add_test(tc, nics_bypassing_output_commit);
	tcase_add_test(tc, nic_argv);
	tcase_add_test(tc, tcg_ram_warning);
	tcase_add_test(tc, primary_argv);
	tcase_add_test(tc, failover_argv);
	suite_add_tcase(s, tc);

	tcase_set_timeout(real, 60);
	tcase_add_unchecked_fixture(real, make_dir, remove_dir);
	tcase_add_test(real, failover_argv_runs);
	tcase_add_test(real, failover_argv_runs_none);
	tcase_add_test(real, primary_argv_runs);
	suite_add_tcase(s, real);
	return s;
}

int main(void)
{
	return colo_test_main(suite());
}
