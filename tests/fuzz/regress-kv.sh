#!/bin/sh
# regress-kv.sh: run the kv fuzz target (plain main(), standalone.c) on its
# regression corpus in every `make check`.  The runner prints the TAP, one
# test per input.
#
# tests/fuzz/kv-regress/ holds inputs as the target reads them (mode byte,
# piece-seed byte, bytes; see fuzz_kv.c), named MODE-WHAT-GOES-WRONG for
# inputs that once broke a promise (client-, region-) and seed-NAME for
# sessions worth pinning (they seed `make fuzz-kv` too).  FUZZ_VERBOSE=1
# makes the target say what it concluded about each input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

exec "$top_builddir/tests/fuzz/fuzz-kv-regress" "$top_srcdir/tests/fuzz/kv-regress"
