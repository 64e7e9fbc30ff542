/*
 * qemu.h: the qemu guest, a real QEMU/KVM virtual machine under colo
 * (DESIGN.md §9, docs/vm.md).
 *
 * On the primary, colo-primary starts QEMU with the VM's arguments, turns
 * on QEMU's own COLO primary (capability x-colo) and migrates to a unix
 * socket of its own, where it plays the secondary's side of QEMU's COLO
 * protocol (qemu_relay.c).  Each checkpoint QEMU sends lands, whole, in
 * colo's copy of the VM's RAM (the mirror: the guest's RAM blocks, named as
 * QEMU names them) and in the device "qemu/vm" (QEMU's own device
 * sections, as QEMU saved them); then the guest asks the engine for a colo
 * checkpoint, which carries it to the secondary like any guest's state.
 * QEMU is answered LOADED as soon as the checkpoint is in the mirror, or,
 * with vm-sync-ack, once the secondary received the colo checkpoint.
 *
 * On the secondary the guest holds the committed RAM, its main block
 * (pc.ram) in a file that a QEMU started on failover maps
 * (memory-backend-file, share=on), and the last device sections.  start()
 * is the failover (qemu_vm.c): QEMU starts on that file with
 * -incoming defer and is fed a stream with x-ignore-shared, so only the
 * small blocks and the devices travel; then the node supervises it as a
 * primary does.
 *
 * The VM's network (qemu_net.c): with vm-nics, the NIC's frames pass
 * through colo (a -netdev stream to a socket of colo's, and a tap): output
 * commit holds what the VM sends until the checkpoint that follows it is
 * on the secondary; frames to the VM wait while QEMU has it stopped.
 *
 * Keys ([qemu], also flags): qemu-binary, vm-args, vm-ram-path,
 * vm-sync-ack, vm-disk-unprotected, qemu-tcg-ok, vm-qmp-timeout-ms,
 * vm-nics, vm-tap, vm-bridge, vm-net-unprotected.
 */
#ifndef COLO_GUEST_QEMU_H
#define COLO_GUEST_QEMU_H

#include <stdint.h>

#include "guest.h"

#define COLO_QEMU_DEVICE "qemu/vm"

struct colo_qemu_settings {
	char *binary;                 /* qemu-binary */
	char *vm_args;                /* vm-args: the VM's own arguments */
	char *vm_ram_path;            /* vm-ram-path: "" = /dev/shm/colo-NODE-pc.ram */
	int sync_ack;                 /* vm-sync-ack: 0 no, 1 yes */
	int disk_unprotected;         /* vm-disk-unprotected */
	int tcg_ok;                   /* qemu-tcg-ok */
	uint32_t qmp_timeout_ms;      /* vm-qmp-timeout-ms: QMP silent that long = dead */
	char *vm_nics;                /* vm-nics: colo's NIC's model and options */
	char *vm_tap;                 /* vm-tap: the tap its frames go out on */
	char *vm_bridge;              /* vm-bridge: "" or the bridge the tap joins */
	int net_unprotected;          /* vm-net-unprotected: the VM's own NICs pass */
};

extern const struct colo_guest_ops colo_qemu_ops;

struct colo_config;
struct colo_qemu_settings *colo_qemu_settings(const struct colo_config *cfg);

#endif
