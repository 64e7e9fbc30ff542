#!/bin/sh
# regress-hb.sh: run the heartbeat fuzz target (fuzz_hb.c, plain main() from
# standalone.c) on its seeds, on fresh ones and on its regression corpus, in
# every `make check`.  The runner prints the TAP, one test per input.
#
# tests/fuzz/hb-seeds/ holds inputs as the target reads them (mode byte,
# then a datagram or a spec; see fuzz_auth.h), written by
# `tests/fuzz/gen_auth_seeds hb DIR`; tests/fuzz/hb-regress/, when there,
# inputs that once broke a promise, named MODE-WHAT-GOES-WRONG.
# FUZZ_VERBOSE=1 makes the target say what it concluded about each input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

exec sh "$top_srcdir/tests/fuzz/regress-auth.sh" hb
