#!/bin/sh
# replay_cli.sh: colo-replay as an operator meets it: --help, usage errors
# (exit 2), malformed files (one line naming the offset, exit 1), the dump
# of a sample stream, compared with a golden transcript, and the recording
# commands on directories that need no running node (missing, empty, torn).
# Recordings made by real nodes are tested with the nodes.  TAP output.
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

echo "1..44"

"$bin" --help >"$tmp/help" 2>&1
if [ $? -eq 0 ] && grep -q '^  dump \[--json\] FILE' "$tmp/help" &&
   grep -q '^  sample \[--ram-mb N\] \[--seed S\] FILE' "$tmp/help" &&
   grep -q '^  list \[--json\] DIR' "$tmp/help" &&
   grep -q '^  show \[--json\] \[-q\] DIR N' "$tmp/help" &&
   grep -q '^  diff \[--json\] \[-q\] DIR N M' "$tmp/help" &&
   grep -q '^  extract \[--json\] \[-q\] DIR N -o OUT' "$tmp/help" &&
   grep -q '^  export \[--json\] \[-q\] DIR N -o FILE' "$tmp/help" &&
   grep -q '^  verify \[--json\] \[-q\] DIR' "$tmp/help" &&
   grep -q '^  -q, --quiet' "$tmp/help" &&
   grep -q '^  serve DIR N \[--listen ADDR\]' "$tmp/help" &&
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

# ---- recordings ----

expect_run "list without DIR" 2 "list needs exactly one DIR" "$bin" list
expect_run "list with two DIRs" 2 "list needs exactly one DIR" "$bin" list a b
expect_run "verify without DIR" 2 "verify needs exactly one DIR" "$bin" verify
expect_run "show without N" 2 "show needs DIR and N" "$bin" show "$tmp"
expect_run "show with a bad N" 2 "show: N must be a checkpoint sequence number, not 'x1'" \
	"$bin" show "$tmp" x1
expect_run "show with a negative N" 2 "N must be a checkpoint sequence number, not '-1'" \
	"$bin" show "$tmp" -- -1
expect_run "show refuses -o" 2 "show: bad option" "$bin" show -o x "$tmp" 1
expect_run "diff without M" 2 "diff needs DIR, N and M" "$bin" diff "$tmp" 1
expect_run "diff with a bad M" 2 "diff: N must be a checkpoint sequence number, not '2x'" \
	"$bin" diff "$tmp" 1 2x
expect_run "extract without -o" 2 "extract needs -o OUT" "$bin" extract "$tmp" 1
expect_run "extract without N" 2 "extract needs DIR and N" "$bin" extract -o "$tmp/x" "$tmp"
expect_run "serve without N" 2 "serve needs DIR and N" "$bin" serve "$tmp"
expect_run "serve with a bad --listen" 2 "serve: --listen: 'nowhere' has no port" \
	"$bin" serve --listen nowhere "$tmp" 1
expect_run "serve refuses --json" 2 "serve: bad option" "$bin" serve --json "$tmp" 1

expect_run "list of a missing directory" 1 "colo-replay: $tmp/none: not a recording (no index)" \
	"$bin" list "$tmp/none"
mkdir "$tmp/noindex"
expect_run "verify of a directory without index" 1 \
	"colo-replay: $tmp/noindex: not a recording (no index)" "$bin" verify "$tmp/noindex"
expect_run "show of a missing directory" 1 "$tmp/none: not a recording (no index)" \
	"$bin" show "$tmp/none" 3

# An empty recording: what a node leaves before its first keyframe.
mkdir "$tmp/empty"
: >"$tmp/empty/index"
"$bin" list "$tmp/empty" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '^ *SEQ  *GEN  TIME' "$tmp/out" &&
   grep -q '^0 checkpoints (0 keyframes) in 0 segments, 0 bytes$' "$tmp/out"; then
	ok "list of an empty recording"
else
	not_ok "list of an empty recording" "$(cat "$tmp/out" "$tmp/err")"
fi
"$bin" list --json "$tmp/empty" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '"checkpoints": \[\]' "$tmp/out" && grep -q '"count": 0' "$tmp/out"; then
	ok "list --json of an empty recording"
else
	not_ok "list --json of an empty recording" "$(cat "$tmp/out" "$tmp/err")"
fi
"$bin" verify "$tmp/empty" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && [ "$(cat "$tmp/out")" = "0 checkpoints in 0 segments verified, 0 bytes" ] &&
   ! [ -s "$tmp/err" ]; then
	ok "verify of an empty recording"
else
	not_ok "verify of an empty recording" "$(cat "$tmp/out" "$tmp/err")"
fi
expect_run "show of a checkpoint an empty recording lacks" 1 \
	"$tmp/empty: no checkpoint 5: the recording holds none" "$bin" show "$tmp/empty" 5
expect_run "diff in an empty recording" 1 "no checkpoint 1: the recording holds none" \
	"$bin" diff "$tmp/empty" 1 2
expect_run "extract from an empty recording" 1 "no checkpoint 0: the recording holds none" \
	"$bin" extract "$tmp/empty" 0 -o "$tmp/out.d"
[ ! -e "$tmp/out.d" ] && ok "a failed extract writes nothing" ||
	not_ok "a failed extract writes nothing" "$(ls -l "$tmp/out.d")"
expect_run "serve from an empty recording" 1 "no checkpoint 0: the recording holds none" \
	"$bin" serve "$tmp/empty" 0 --listen 127.0.0.1:1

# A segment no entry refers to (a keyframe whose entry was never written).
printf 'QEVM' >"$tmp/empty/seg-000004"
"$bin" verify "$tmp/empty" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '^note: seg-000004 (4 bytes) is not referenced by any readable index entry$' "$tmp/out"; then
	ok "verify mentions an unreferenced segment"
else
	not_ok "verify mentions an unreferenced segment" "$(cat "$tmp/out" "$tmp/err")"
fi
"$bin" verify --json "$tmp/empty" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '"ok": true' "$tmp/out" && grep -q '"file": "seg-000004"' "$tmp/out"; then
	ok "verify --json lists it"
else
	not_ok "verify --json lists it" "$(cat "$tmp/out" "$tmp/err")"
fi

# A torn index tail (a crash while writing an entry): list notes it, verify fails.
mkdir "$tmp/torn"
printf '\000\000\001' >"$tmp/torn/index"
"$bin" list "$tmp/torn" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && grep -q '^note: index: 3 bytes after the last whole entry (at offset 0) ignored$' "$tmp/out"; then
	ok "list notes a torn index"
else
	not_ok "list notes a torn index" "$(cat "$tmp/out" "$tmp/err")"
fi
expect_run "verify fails on a torn index" 1 \
	"colo-replay: $tmp/torn: index: 3 bytes after the last whole entry (at offset 0) ignored" \
	"$bin" verify "$tmp/torn"
"$bin" verify --json "$tmp/torn" >"$tmp/out" 2>/dev/null
grep -q '"ok": false' "$tmp/out" && grep -q '"problems": \[' "$tmp/out" &&
	ok "verify --json reports the problem" ||
	not_ok "verify --json reports the problem" "$(cat "$tmp/out")"

[ "$fails" -eq 0 ]
