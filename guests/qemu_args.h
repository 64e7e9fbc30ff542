/*
 * qemu_args.h: the VM's own QEMU arguments (`[qemu] vm-args`): split them,
 * read what colo needs from them, refuse what clashes with colo, and build
 * the argument vectors colo runs QEMU with.
 *
 * Splitting follows the shell's quoting and nothing else: blanks separate
 * words; '...' keeps everything up to the next '; "..." keeps everything but
 * takes \" \\ \$ \` and drops \<newline>; outside quotes \c is c and
 * \<newline> is dropped.  No variables, globs, comments or tilde.
 *
 * Reading follows QEMU 7.2's own option parser: `--opt` is `-opt`, an
 * option of QEMU's that takes a value takes the next word whatever it looks
 * like, a word that is no option and no value is a disk image (QEMU's first
 * hard disk), later -m / -machine keys override earlier ones, option
 * strings take ",," for a comma, a first element without '=' for the
 * implied key, `key` for key=on and `nokey` for key=off, and -object,
 * -blockdev and -device may be JSON.  Options colo does not read pass
 * through untouched.
 *
 * Refused, whatever the policy, each with one line naming the argument:
 *   -incoming, -loadvm   the VM's state comes from colo;
 *   -S                   colo decides when the VM runs;
 *   -daemonize           colo supervises QEMU by the pid it started;
 *   -mem-path, -machine memory-backend=, -object memory-backend-*
 *                        colo owns the RAM backend (on failover: the
 *                        committed RAM file);
 *   -mem-prealloc        QEMU 7.2 applies it to the backend colo gives on
 *                        failover too (measured: a 1 GiB file fully
 *                        allocated), so failover would touch every page;
 *   -runas               QEMU would reach colo's sockets as another user,
 *                        and the change of user clears the parent-death
 *                        signal that ends QEMU with colo;
 *   -chroot              QEMU would look colo's migration socket up inside
 *                        the chroot;
 *   -readconfig, -set of drive/machine/memory/accel/object/fsdev
 *                        colo could not check what they add or change;
 *   -accel with -machine accel= or -enable-kvm (QEMU 7.2 refuses them).
 * Allowed on purpose: monitors of the operator's own (-qmp, -qmp-pretty,
 * -monitor, -mon), stdio ones included: with stdin on /dev/null QEMU 7.2
 * keeps running and idles (measured: -monitor stdio, -qmp stdio,
 * -nographic); colo's own QMP socket is added by colo.  What an operator
 * does through them (stop, cont, quit) is theirs.  -no-reboot and
 * -no-shutdown pass: they change what a guest reboot or poweroff does to
 * QEMU, which colo's supervision sees over QMP either way.
 *
 * Policy (colo_qemu_args_check): a writable disk is refused unless the
 * operator says it is protected elsewhere; an accelerator list holding tcg
 * on a machine with vCPUs is refused unless the operator says their QEMU
 * is fixed (shared/notes/qemu-7.2-colo.md: QEMU 7.2's COLO primary
 * deadlocks and misses dirty pages under TCG).  "kvm:tcg" counts as tcg:
 * QEMU falls back to it silently.
 *
 * Disks and whether they are writable: -drive (read-only with readonly=on
 * or read-only=on, snapshot=on, media=cdrom), -hda..-hdd, -fda, -fdb,
 * -pflash, -mtdblock, -sd and bare words (writable), -cdrom (read-only),
 * all of these temporary under -snapshot; -blockdev (read-only=on; QEMU's
 * -snapshot does not reach it), -fsdev and -virtfs (readonly=on), and
 * -device vhost-user-blk* / vhost-user-fs* (storage outside QEMU: counted
 * writable).  snapshot=on is accepted as the issue asks: its writes go to
 * a throwaway overlay, so after a failover the guest sees the base image.
 *
 * Memory: colo_qemu_args_split() and the builders return NULL-terminated
 * vectors of malloc'd strings, freed with colo_qemu_args_argv_free().
 * struct colo_qemu_args owns its strings and its copy of the VM's
 * arguments; colo_qemu_args_free() releases them.  No global state:
 * thread-safe on separate structs.
 */
#ifndef COLO_GUESTS_QEMU_ARGS_H
#define COLO_GUESTS_QEMU_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* What colo needs to know about the VM's arguments. */
struct colo_qemu_args {
	char **argv;             /* the VM's own arguments, NULL-terminated */
	int argc;
	uint64_t ram_bytes;      /* -m as QEMU computes it (8 KiB aligned) */
	const char *ram_block;   /* the RAM block's name: "pc.ram", "ram" for
				  * -machine none, "microvm.ram" (static) */
	char *accel;             /* "kvm", "tcg", "kvm:tcg" as given; "" when
				  * none was (colo then adds -accel kvm) */
	bool accel_tcg;          /* tcg is among them */
	bool has_vcpus;          /* false for -machine none */
	char *machine;           /* machine type, NULL when not given */
	bool snapshot;           /* -snapshot */
	unsigned disks;          /* disks seen, writable or not */
	char *writable_disk;     /* the first writable one, as given
				  * ("-drive file=d.qcow2,if=virtio"); NULL
				  * when none */
	const char *writable_fix; /* how to make it safe (static) */
	char *net_arg;           /* the first -netdev/-nic/-net of the VM's own
				  * ("-netdev user,id=n0"); NULL when none */
	bool net_none;           /* -nic none or -net none */
	bool nodefaults;         /* -nodefaults: QEMU adds no default NIC */
	/* colo's NIC (colo_qemu_args_set_nic): its -device, and the socket of
	 * its -netdev stream (commas doubled); NULL when none */
	char *nic_device;
	char *nic_sock;
};

/* The operator's statements that relax the checks. */
struct colo_qemu_args_policy {
	bool disk_unprotected;   /* vm-disk-unprotected = yes */
	bool tcg_ok;             /* qemu-tcg-ok = yes: their QEMU is fixed */
	bool net_unprotected;    /* vm-net-unprotected = yes: their own NICs */
	bool colo_nic;           /* vm-nics is set: colo adds the NIC */
};

/* Split `s` into *argv (NULL-terminated, malloc'd); *argc may be NULL. */
int colo_qemu_args_split(const char *s, char ***argv, int *argc, struct colo_err *err);
/* Free a vector from colo_qemu_args_split() or the builders (NULL is ok). */
void colo_qemu_args_argv_free(char **argv);

/*
 * Read argv (NULL-terminated) in one pass into *a (which it initialises and
 * which owns a copy of argv), refusing clashes and values QEMU would not
 * take.  On error *a holds nothing to free.
 */
int colo_qemu_args_inspect(const char *const *argv, struct colo_qemu_args *a,
			   struct colo_err *err);
/* colo_qemu_args_split() then colo_qemu_args_inspect(). */
int colo_qemu_args_parse(const char *vm_args, struct colo_qemu_args *a, struct colo_err *err);
void colo_qemu_args_free(struct colo_qemu_args *a);

/*
 * The policy checks: a writable disk, tcg with vCPUs, and NICs whose frames
 * would bypass output commit: any -netdev / -nic / -net of the VM's own
 * (but "none"), or none at all without -nodefaults (QEMU then adds a user
 * networking NIC), unless vm-nics names colo's.  0 or -EINVAL.
 */
int colo_qemu_args_check(const struct colo_qemu_args *a,
			 const struct colo_qemu_args_policy *policy, struct colo_err *err);

/*
 * A warning line (in buf) when tcg is among the accelerators, the machine
 * has vCPUs and the RAM size is a multiple of 256 KiB, where QEMU 7.2
 * misses dirty pages under TCG; NULL otherwise.
 */
const char *colo_qemu_args_tcg_warning(const struct colo_qemu_args *a, char *buf, size_t n);

/*
 * colo's NIC for the builders: `device` (vm-nics: a model and its options,
 * no netdev=) gets -netdev stream,id=colo-net0,server=off,addr.type=unix,
 * addr.path=SOCK and -device DEVICE,netdev=colo-net0.
 */
int colo_qemu_args_set_nic(struct colo_qemu_args *a, const char *device, const char *sock,
			   struct colo_err *err);

/*
 * The primary's QEMU: binary, the VM's arguments, -accel kvm when none was
 * given, -qmp unix:QMP_PATH,server=on,wait=off, colo's NIC if set.
 */
int colo_qemu_args_primary(const struct colo_qemu_args *a, const char *binary,
			   const char *qmp_path, char ***argv, struct colo_err *err);

/*
 * The QEMU a secondary starts the VM in from committed RAM: the primary's
 * vector plus -machine memory-backend=BLOCK -object memory-backend-file,
 * id=BLOCK,size=BYTES,mem-path=RAM_PATH,share=on -incoming defer (the
 * backend's id names the RAM block, so it is the primary's block name).
 * A VM without RAM (-machine none without -m) gets no backend.
 */
int colo_qemu_args_failover(const struct colo_qemu_args *a, const char *binary,
			    const char *qmp_path, const char *ram_path, char ***argv,
			    struct colo_err *err);

#endif
