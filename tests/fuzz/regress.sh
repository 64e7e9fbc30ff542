#!/bin/sh
# regress.sh: run the stream fuzz target (plain main(), standalone.c) on its
# regression corpus and on freshly made seeds, in every `make check`.  The
# runner prints the TAP, one test per input.
#
# tests/fuzz/regress/ holds inputs as the target reads them (mode byte,
# piece-seed byte, stream; see fuzz_stream.h), named MODE-WHAT-GOES-WRONG
# for inputs that once broke a promise (dump-, loader-, raw-) and seed-NAME
# for copies of gen_seeds output worth pinning.  FUZZ_VERBOSE=1 makes the
# target say what it concluded about each input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

regress="$top_srcdir/tests/fuzz/regress"
runner="$top_builddir/tests/fuzz/fuzz-stream-regress"
gen="$top_builddir/tests/fuzz/gen_seeds"

seeds=$(mktemp -d "${TMPDIR:-/tmp}/colo-fuzz-seeds.XXXXXX") || {
	echo "Bail out! cannot make a temporary directory"
	exit 1
}
trap 'rm -rf "$seeds"' EXIT
# Seeds must never trip the target: they come from colo's own writer.
if ! "$gen" "$seeds" >/dev/null; then
	echo "Bail out! gen_seeds failed"
	exit 1
fi
"$runner" "$regress" "$seeds"
