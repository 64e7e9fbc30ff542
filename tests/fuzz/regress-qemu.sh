#!/bin/sh
# regress-qemu.sh: run the fuzz target of colo-primary's reading of QEMU's
# COLO stream (fuzz_qemu.c, plain main() from standalone.c) on the seeds
# recorded from QEMU and on the regression corpus, in every `make check`.
# The runner prints the TAP, one test per input.
#
# tests/fuzz/qemu-seeds/ holds streams QEMU sent (u8 split seed, bytes; see
# fuzz_qemu.c), made by `tests/test_qemu_relay --write-seeds DIR`;
# tests/fuzz/qemu-regress/, when there, inputs that once broke a promise,
# named WHAT-GOES-WRONG.  FUZZ_VERBOSE=1 makes the target say how the relay
# ended on each input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

set -- "$top_srcdir/tests/fuzz/qemu-seeds"
if [ -d "$top_srcdir/tests/fuzz/qemu-regress" ]; then
	set -- "$@" "$top_srcdir/tests/fuzz/qemu-regress"
fi
exec "$top_builddir/tests/fuzz/fuzz-qemu-regress" "$@"
