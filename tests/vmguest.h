/*
 * vmguest.h: the boot-sector test guest (tests/vm/bootsec.S) seen from the
 * tests: how to run it under QEMU/KVM, how to read its state from a running
 * QEMU, and how to check that a RAM image of it is whole.
 *
 * The guest ticks at ~1000 Hz (PIT, hlt between ticks).  On every tick it
 * advances a 64-bit counter c and writes c into slot c mod N of a ring of N
 * pages, the slot before the counter.  Layout (guest physical addresses,
 * little-endian):
 *   0x10000  u64 magic "COLOTICK" (those 8 bytes in this order)
 *   0x10008  u64 c
 *   0x10010  u64 staging copy of the next c (scratch, not checked)
 *   0x10018  u32 ring address (0x20000), 0x1001c u32 N (64)
 *   0x20000 + 4096 * j, j < 64: u64 slot j
 * Invariant of an image taken while the vCPU is stopped: magic present, and
 * every slot j holds c - ((c - j) mod N), or 0 when that is below 1 (never
 * written: c < N), except slot (c + 1) mod N, which may hold c + 1.  A page
 * lost or rolled back by a checkpoint shows as a slot that disagrees with the
 * counter.  A reboot zeroes everything: the counter goes back.
 *
 * The VM: `-machine pc -accel kvm -cpu qemu64,pni=off -m 16M -nodefaults
 * -display none -drive file=IMAGE,format=raw,if=ide,snapshot=on`.  The
 * disk cannot be written: with snapshot=on QEMU opens the image read-only
 * and sends any write to a temporary overlay it deletes.  The alternatives,
 * tried with QEMU 7.2 here: readonly=on on an IDE disk is refused ("Block
 * node is read-only"); a read-only virtio disk does not boot ("could not
 * read the boot disk", even padded to 64 KiB); a read-only floppy boots
 * the 512-byte image, but SeaBIOS's floppy read timed out in 4 boots of 8
 * on this loaded 2-core machine ("Timeout at floppy_wait_irq"), where IDE
 * booted every time.  pni=off: the host CPU lacks SSE3 and QEMU warns on
 * every start otherwise.
 *
 * Memory: functions returning char * or char ** return malloc'd memory the
 * caller frees (colo_vmguest_argv_free for arrays).  Nothing here keeps
 * state; one thread per struct colo_qmp.
 */
#ifndef COLO_TESTS_VMGUEST_H
#define COLO_TESTS_VMGUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "qmp.h"

#define COLO_VMGUEST_QEMU "qemu-system-x86_64"

#define COLO_VMGUEST_HDR_ADDR 0x10000u
#define COLO_VMGUEST_COUNTER_ADDR 0x10008u
#define COLO_VMGUEST_RING_ADDR 0x20000u
#define COLO_VMGUEST_RING_PAGES 64u
#define COLO_VMGUEST_PAGE_SIZE 4096u
#define COLO_VMGUEST_MAGIC "COLOTICK"
/* Bytes of RAM from address 0 that hold the whole state (0x60000). */
#define COLO_VMGUEST_SPAN (COLO_VMGUEST_RING_ADDR + COLO_VMGUEST_RING_PAGES * COLO_VMGUEST_PAGE_SIZE)
#define COLO_VMGUEST_RAM_SIZE (16u << 20)      /* -m 16M */
#define COLO_VMGUEST_HZ 1000                   /* nominal tick rate */

/* Bound on each QMP command these helpers send. */
#define COLO_VMGUEST_QMP_MS 10000

/*
 * The built image: $COLO_VMGUEST_IMAGE if set, else
 * $top_builddir/tests/vm/bootsec.img (make check exports top_builddir),
 * else tests/vm/bootsec.img.
 */
char *colo_vmguest_image_path(void);

/* /dev/kvm opens read-write and qemu-system-x86_64 is on PATH; else false
 * and why (for a skip message). */
bool colo_vmguest_kvm_usable(char *why, size_t n);

/*
 * The VM's own arguments (no program name, no -qmp: what colo's vm-args
 * holds), NULL-terminated.  serial_log: a file for the guest's COM1 output,
 * or NULL for no serial port.  NULL when out of memory.
 */
char **colo_vmguest_vm_args(const char *image, const char *serial_log);
/* The same joined by single spaces (paths must hold no space or comma). */
char *colo_vmguest_vm_args_line(const char *image, const char *serial_log);
/*
 * A whole argv: qemu (argv[0]), the VM's arguments and, when qmp_sock is not
 * NULL, `-qmp unix:QMP_SOCK,server=on,wait=off`.
 */
char **colo_vmguest_argv(const char *qemu, const char *image, const char *qmp_sock,
			 const char *serial_log);
void colo_vmguest_argv_free(char **argv);

/*
 * Start QEMU on the image with everything in `dir`: qmp.sock, qemu.log
 * (stdout and stderr), serial.log; then connect q (connect_ms bound).
 * q must be colo_qmp_init'ed; colo_qmp_stop / colo_qmp_free end it.
 */
int colo_vmguest_start(struct colo_qmp *q, const char *qemu, const char *image,
		       const char *dir, int connect_ms, struct colo_err *err);

/*
 * Check an image of guest physical RAM from address 0 (len >= SPAN) taken
 * while the vCPU was stopped.  0 and *counter (may be NULL) = c, or:
 *   -EINVAL  len < COLO_VMGUEST_SPAN
 *   -ENOENT  no magic (the guest has not booted, or this is not its RAM)
 *   -EPROTO  the ring address or N in the header differ from this file's
 *   -EBADMSG a slot disagrees with the counter; err names the first one:
 *            "slot 17 (0x31000) holds 1041, expected 1105 (counter 1120)"
 */
int colo_vmguest_check(const void *ram, size_t len, uint64_t *counter, struct colo_err *err);

/*
 * The same for a copy taken while the guest ran, between two reads of its
 * counter lo <= hi: the image's counter must lie in [lo, hi] (else -ERANGE)
 * and each slot must hold a value it held at some instant in between.  With
 * lo == hi this is colo_vmguest_check with that counter.
 */
int colo_vmguest_check_range(const void *ram, size_t len, uint64_t lo, uint64_t hi,
			     uint64_t *counter, struct colo_err *err);

/*
 * The counter of the guest in a running QEMU, through `xp` (the VM is not
 * paused); checks the magic (-ENOENT before the guest booted).
 */
int colo_vmguest_qmp_counter(struct colo_qmp *q, uint64_t *counter, struct colo_err *err);

/* pmemsave [0, size) into `path`, read it back into *ram (malloc'd). */
int colo_vmguest_qmp_pmemsave(struct colo_qmp *q, const char *path, size_t size,
			      uint8_t **ram, struct colo_err *err);

/*
 * Read and check the guest of a running or stopped QEMU without pausing it:
 * counter (xp), pmemsave of [0, SPAN) into `path`, counter again, then
 * colo_vmguest_check_range.  *counter (may be NULL) = the image's counter.
 */
int colo_vmguest_qmp_read(struct colo_qmp *q, const char *path, uint64_t *counter,
			  struct colo_err *err);

#endif
