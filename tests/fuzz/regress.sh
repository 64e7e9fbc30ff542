#!/bin/sh
# regress.sh [GEN RUNNER CORPUS]: run the stream fuzz target (plain main(),
# standalone.c) on its regression corpus and on freshly made seeds, in every
# `make check`.  The runner prints the TAP, one test per input.  Another
# target's script passes its seed generator, runner (tests/fuzz/ of the
# build tree) and corpus (tests/fuzz/ of the source tree), to be run the
# same way (regress-kvunit.sh).
#
# tests/fuzz/regress/ holds inputs as the target reads them (mode byte,
# piece-seed byte, stream; see fuzz_stream.h), named MODE-WHAT-GOES-WRONG
# for inputs that once broke a promise (dump-, loader-, raw-) and seed-NAME
# for copies of gen_seeds output worth pinning.  FUZZ_VERBOSE=1 makes the
# target say what it concluded about each input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

gen="$top_builddir/tests/fuzz/${1:-gen_seeds}"
runner="$top_builddir/tests/fuzz/${2:-fuzz-stream-regress}"
regress="$top_srcdir/tests/fuzz/${3:-regress}"

seeds=$(mktemp -d "${TMPDIR:-/tmp}/colo-fuzz-seeds.XXXXXX") || {
	echo "Bail out! cannot make a temporary directory"
	exit 1
}
trap 'rm -rf "$seeds"' EXIT
# Seeds must never trip the target: they come from colo's own writer.
if ! "$gen" "$seeds" >/dev/null; then
	echo "Bail out! ${1:-gen_seeds} failed"
	exit 1
fi
"$runner" "$regress" "$seeds"
