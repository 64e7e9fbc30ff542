#!/bin/sh
# regress-kvunit.sh: run the kv compare-mode fuzz target (fuzz_kvunit.c,
# plain main() from standalone.c) on its regression corpus and on fresh
# seeds, in every `make check`.  The runner prints the TAP, one test per
# input.
#
# tests/fuzz/kvunit-regress/ holds inputs as the target reads them (mode
# byte, seed byte, bytes; see fuzz_kvunit.h): seed-* written by
# `tests/fuzz/gen_kvunit_seeds DIR` (they seed `make fuzz-kvunit` too), and
# MODE-WHAT-GOES-WRONG for inputs that once broke a promise (unit-, round-).
# The fresh seeds keep the generator, the unit format and the target in
# step.  FUZZ_VERBOSE=1 makes the target say what it concluded about each
# input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

exec sh "$top_srcdir/tests/fuzz/regress.sh" gen_kvunit_seeds fuzz-kvunit-regress kvunit-regress
