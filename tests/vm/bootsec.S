/*
 * bootsec.S: the boot-sector test guest, a 512-byte x86 real-mode boot
 * sector whose RAM says at any instant whether it is whole.  Tests protect a
 * QEMU/KVM VM running it and check, on the VM that took over, that its state
 * continues from at least the last committed checkpoint and that no page was
 * lost (tests/vmguest.h reads and checks it).
 *
 * It programs the PIT (channel 0) for ~1000 Hz and halts between ticks, so
 * the VM costs its host a few percent of a core, not a whole one.  On every
 * tick (IRQ0) it advances a 64-bit counter c and writes the new value into
 * the slot of ring page c mod N, the slot BEFORE the counter.
 *
 * Memory layout (guest physical addresses; all integers little-endian):
 *   0x10000  u64 magic "COLOTICK" (the bytes, in this order)
 *   0x10008  u64 c, the ticks counted since boot
 *   0x10010  u64 staging copy of the next c (scratch, not part of the state)
 *   0x10018  u32 ring address (0x20000)
 *   0x1001c  u32 N, the number of ring pages (64)
 *   0x20000 + 4096 * j, j < N: u64 slot j, at the start of ring page j
 *                              (the ring ends at 0x60000, below 640 KiB)
 *
 * Invariant of every RAM image taken while the vCPU is stopped: the magic is
 * present and, for every slot j, v_j == c - ((c - j) mod N) (the last value
 * written there), or 0 when that is below 1 (never written since boot, c < N),
 * except that slot (c + 1) mod N may hold c + 1 (stopped between the two
 * writes of a tick).  A page lost by a checkpoint shows as a slot that is
 * behind, or ahead, of the counter.
 *
 * Each 8-byte value is written by one MMX movq, so no image can hold half of
 * one.  At boot the magic is cleared first and written last, after the ring
 * and counter are zero: a reboot shows as a counter that went back, never as
 * a torn state.
 *
 * Every 1024 ticks it prints "colo vm tick " and c in hex to COM1 (0x3f8),
 * for humans; without a serial device the writes go nowhere.
 *
 * Built by tests/local.am: assembled by $(CC), the .text section copied out
 * with objcopy.  Addresses are computed relative to _start, so no linker is
 * needed.
 */
#define HDR_SEG 0x1000          /* header at 0x10000 */
#define RING_SEG 0x2000         /* ring at 0x20000 */
#define RING_ADDR 0x20000
#define RING_PAGES 64           /* N, a power of two (the slot index is a mask) */
#define MAGIC_LO 0x4f4c4f43     /* "COLO" */
#define MAGIC_HI 0x4b434954     /* "TICK" */
#define PIT_DIVISOR 1193        /* 1193182 Hz / 1193 = 1000.15 Hz */
#define PRINT_MASK 1023         /* print when c & PRINT_MASK == 0 */
#define COM1 0x3f8

/* The address of a label once the BIOS loaded us at 0:0x7c00. */
#define ABS(x) ((x) - _start + 0x7c00)

	.code16
	.text
	.globl _start
_start:
	cli
	cld
	xorw %ax, %ax
	movw %ax, %ds
	movw %ax, %ss
	movw $0x7c00, %sp
	ljmp $0, $ABS(norm)             /* some BIOSes jump to 0x7c0:0 */
norm:
	/* Clear the magic first: the state is not whole until it is back. */
	movw $HDR_SEG, %bx
	movw %bx, %es
	xorl %eax, %eax
	movl %eax, %es:0
	movl %eax, %es:4

	movw $RING_SEG, %bx
	movw $RING_PAGES, %cx
1:	movw %bx, %es
	movl %eax, %es:0
	movl %eax, %es:4
	addw $0x100, %bx                /* next page: 4096 bytes = 0x100 paragraphs */
	loop 1b

	movw $HDR_SEG, %bx
	movw %bx, %es
	movl %eax, %es:8
	movl %eax, %es:12
	movl %eax, %es:16
	movl %eax, %es:20
	movl $RING_ADDR, %es:24
	movl $RING_PAGES, %es:28
	movl $MAGIC_LO, %es:0
	movl $MAGIC_HI, %es:4

	/* IRQ0 is vector 8 under the BIOS's PIC mapping. */
	movw $ABS(tick), 0x20
	movw $0, 0x22

	/* Only IRQ0 may wake us: every other line masked on both PICs. */
	movb $0xfe, %al
	outb %al, $0x21
	movb $0xff, %al
	outb %al, $0xa1

	/* PIT channel 0, lobyte/hibyte, mode 2 (rate generator). */
	movb $0x34, %al
	outb %al, $0x43
	movw $PIT_DIVISOR, %ax
	outb %al, $0x40
	movb %ah, %al
	outb %al, $0x40

	movw $ABS(banner), %si
	call puts
	sti
idle:
	hlt
	jmp idle

/* IRQ0: one tick.  Interrupts stay off until iret. */
tick:
	pushal
	pushw %ds
	pushw %es
	movw $HDR_SEG, %ax
	movw %ax, %ds
	movl 8, %eax
	movl 12, %edx
	addl $1, %eax
	adcl $0, %edx
	movl %eax, 16
	movl %edx, 20
	movq 16, %mm0                   /* c + 1, to be stored in one write each */
	andw $(RING_PAGES - 1), %ax
	shlw $8, %ax
	addw $RING_SEG, %ax
	movw %ax, %es
	movq %mm0, %es:0                /* the slot first ... */
	movq %mm0, 8                    /* ... then the counter */
	testw $PRINT_MASK, 16
	jnz 1f
	call print_counter
1:	movb $0x20, %al                 /* end of interrupt */
	outb %al, $0x20
	popw %es
	popw %ds
	popal
	iret

/* "colo vm tick " and the 16 hex digits of the staged counter (ds = HDR_SEG). */
print_counter:
	movw $ABS(tickmsg), %si
	call puts
	movw $23, %si
	movw $8, %cx
1:	movb (%si), %al
	pushw %ax
	shrb $4, %al
	call hex
	popw %ax
	call hex
	decw %si
	loop 1b
	movw $ABS(crlf), %si
	jmp puts

hex:
	andb $0x0f, %al
	addb $'0', %al
	cmpb $'9', %al
	jbe putc
	addb $('a' - '9' - 1), %al
	jmp putc

/* The NUL-terminated string at cs:si. */
puts:
	movb %cs:(%si), %al
	incw %si
	testb %al, %al
	jz 1f
	call putc
	jmp puts
1:	ret

/* al to COM1, once its transmitter is empty (an absent port reads 0xff). */
putc:
	pushw %dx
	pushw %ax
	movw $(COM1 + 5), %dx
1:	inb %dx, %al
	testb $0x20, %al
	jz 1b
	popw %ax
	movw $COM1, %dx
	outb %al, %dx
	popw %dx
	ret

banner:
	.asciz "colo boot-sector guest: ring 0x20000, 64 pages, counter at 0x10008\r\n"
tickmsg:
	.asciz "colo vm tick "
crlf:
	.asciz "\r\n"

	.org 510
	.byte 0x55, 0xaa
