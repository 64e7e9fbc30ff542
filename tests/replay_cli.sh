#!/bin/sh
# replay_cli.sh: colo-replay as an operator meets it: --help, usage errors
# (exit 2), malformed files (one line naming the offset, exit 1), and the
# dump of a sample stream, compared with a golden transcript.  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
bin="$top_builddir/colo-replay"
golden="$top_srcdir/tests/golden"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-cli-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# expect_run NAME STATUS STDERR-PATTERN CMD...: exit status and one stderr line
expect_run() {
	name=$1 want=$2 pat=$3
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	lines=$(grep -c . "$tmp/err")
	if [ "$got" -ne "$want" ]; then
		not_ok "$name" "exit $got, expected $want" "$(cat "$tmp/err")"
	elif [ "$want" -eq 1 ] && [ "$lines" -ne 1 ]; then
		not_ok "$name" "stderr has $lines lines, expected 1" "$(cat "$tmp/err")"
	elif ! grep -q -- "$pat" "$tmp/err"; then
		not_ok "$name" "stderr does not match '$pat'" "$(cat "$tmp/err")"
	else
		ok "$name"
	fi
}

echo "1..14"

"$bin" --help >"$tmp/help" 2>&1
if [ $? -eq 0 ] && grep -q '^  dump \[--json\] FILE' "$tmp/help" &&
   grep -q '^  sample \[--ram-mb N\] \[--seed S\] FILE' "$tmp/help" &&
   grep -q 'Exit status: 0 success; 1' "$tmp/help"; then
	ok "--help lists the commands and exit statuses"
else
	not_ok "--help lists the commands and exit statuses" "$(cat "$tmp/help")"
fi
"$bin" --version >"$tmp/out" 2>&1 && grep -q '^colo-replay [0-9]' "$tmp/out" &&
	ok "--version" || not_ok "--version" "$(cat "$tmp/out")"

expect_run "no command is a usage error" 2 "missing COMMAND" "$bin"
expect_run "unknown command is a usage error" 2 "unknown command 'frobnicate'" "$bin" frobnicate
expect_run "dump without FILE is a usage error" 2 "dump needs exactly one FILE" "$bin" dump
expect_run "bad --ram-mb is a usage error" 2 "\-\-ram-mb must be 1 to 4096, not 'lots'" \
	"$bin" sample --ram-mb lots "$tmp/x"
expect_run "missing file" 1 "$tmp/none: cannot open: No such file or directory" \
	"$bin" dump "$tmp/none"

"$bin" sample --ram-mb 1 --seed 3 "$tmp/s.colo" >"$tmp/out" 2>&1 &&
	grep -q "^wrote $tmp/s.colo: 790569 bytes" "$tmp/out" &&
	ok "sample writes a stream" || not_ok "sample writes a stream" "$(cat "$tmp/out")"

"$bin" dump "$tmp/s.colo" >"$tmp/dump.txt" 2>"$tmp/err"
if [ $? -eq 0 ] && diff -u "$golden/dump-sample.txt" "$tmp/dump.txt" >"$tmp/diff"; then
	ok "dump matches the golden transcript"
else
	not_ok "dump matches the golden transcript" "$(cat "$tmp/err" "$tmp/diff")"
fi

"$bin" dump --json "$tmp/s.colo" >"$tmp/dump.json" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '"bytes_read": 790569' "$tmp/dump.json" &&
   grep -q '"vmsd_name": "demo/stats"' "$tmp/dump.json"; then
	ok "dump --json"
else
	not_ok "dump --json" "$(cat "$tmp/err")"
fi

head -c 100 "$tmp/s.colo" >"$tmp/cut.colo"
expect_run "truncated file: one line with the offset" 1 \
	"cut.colo: truncated: stream ends at offset 100 inside the payload of section 1 'ram'" \
	"$bin" dump "$tmp/cut.colo"

printf 'QEVM\000\000\000\002' >"$tmp/v2.colo"
expect_run "version 2 file" 1 "stream version 2 at offset 4 is the obsolete savevm v2 format" \
	"$bin" dump "$tmp/v2.colo"

{ cat "$tmp/s.colo"; printf 'junk'; } >"$tmp/junk.colo"
expect_run "trailing junk" 1 "trailing data at offset 790569 after the end of the stream" \
	"$bin" dump "$tmp/junk.colo"

: >"$tmp/empty.colo"
expect_run "empty file" 1 "empty stream: no header at offset 0" "$bin" dump "$tmp/empty.colo"

[ "$fails" -eq 0 ]
