#!/bin/sh
# ctl_cli.sh: colo-ctl as an operator meets it with no node running: --help,
# usage errors (exit 2, naming what is wrong), and a socket nobody serves
# (exit 1, one line with the path and a hint).  The daemons' tests talk to
# live nodes.  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
bin="$top_builddir/colo-ctl"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-ctl-cli-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# expect_run NAME STATUS STDERR-LINE CMD...: exit status, and stderr's first
# line is exactly STDERR-LINE (the only line when STATUS is 1)
expect_run() {
	name=$1 want=$2 line=$3
	shift 3
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	lines=$(grep -c . "$tmp/err")
	first=$(head -n 1 "$tmp/err")
	if [ "$got" -ne "$want" ]; then
		not_ok "$name" "exit $got, expected $want" "$(cat "$tmp/err")"
	elif [ "$want" -eq 1 ] && [ "$lines" -ne 1 ]; then
		not_ok "$name" "stderr has $lines lines, expected 1" "$(cat "$tmp/err")"
	elif [ "$first" != "$line" ]; then
		not_ok "$name" "stderr: $first" "expected: $line"
	elif [ -s "$tmp/out" ]; then
		not_ok "$name" "unexpected stdout: $(cat "$tmp/out")"
	else
		ok "$name"
	fi
}

echo "1..25"

"$bin" --help >"$tmp/help" 2>&1
if [ $? -eq 0 ] &&
   grep -q '^Usage: colo-ctl \[OPTIONS\] VERB \[ARGS\] \[--json\]$' "$tmp/help" &&
   grep -q '^  status  ' "$tmp/help" && grep -q '^  stats  ' "$tmp/help" &&
   grep -q '^  failover  ' "$tmp/help" && grep -q '^  set-interval MS  ' "$tmp/help" &&
   grep -q '^  checkpoint  ' "$tmp/help" && grep -q '^  verify  ' "$tmp/help" &&
   grep -q '^  -s, --socket SOCK  ' "$tmp/help" && grep -q '^  -n, --name NAME  ' "$tmp/help" &&
   grep -q '^  -j, --json  ' "$tmp/help" &&
   grep -q '^Exit status: 0 success; 1 the node refused the request' "$tmp/help"; then
	ok "--help lists verbs, options and exit statuses"
else
	not_ok "--help lists verbs, options and exit statuses" "$(cat "$tmp/help")"
fi
"$bin" status --help >"$tmp/out" 2>&1 && cmp -s "$tmp/out" "$tmp/help" &&
	ok "--help after the verb" || not_ok "--help after the verb" "$(cat "$tmp/out")"
"$bin" --version >"$tmp/out" 2>&1 && grep -q '^colo-ctl [0-9].* (control protocol 1)$' "$tmp/out" &&
	ok "--version names the control protocol" || not_ok "--version" "$(cat "$tmp/out")"

expect_run "no verb is a usage error" 2 \
	"colo-ctl: missing VERB (status, stats, failover, set-interval MS, checkpoint, verify, record start DIR|stop, keygen FILE)" "$bin"
expect_run "unknown verb is a usage error" 2 "colo-ctl: unknown verb 'frobnicate'" \
	"$bin" -s "$tmp/a.sock" frobnicate
expect_run "unknown option is a usage error" 2 "colo-ctl: unknown option '--frob'" \
	"$bin" --frob status
expect_run "-s without SOCK is a usage error" 2 "colo-ctl: option '-s' needs an argument" \
	"$bin" -s
expect_run "set-interval without MS" 2 "colo-ctl: set-interval needs MS, an integer 1..60000" \
	"$bin" -s "$tmp/a.sock" set-interval
expect_run "set-interval with a word" 2 "colo-ctl: set-interval needs an integer 1..60000, not 'fast'" \
	"$bin" -s "$tmp/a.sock" set-interval fast
expect_run "set-interval 0" 2 "colo-ctl: set-interval needs an integer 1..60000, not '0'" \
	"$bin" -s "$tmp/a.sock" set-interval 0
expect_run "set-interval 60001" 2 "colo-ctl: set-interval needs an integer 1..60000, not '60001'" \
	"$bin" -s "$tmp/a.sock" set-interval 60001 --json
expect_run "set-interval -5" 2 "colo-ctl: set-interval needs an integer 1..60000, not '-5'" \
	"$bin" -s "$tmp/a.sock" set-interval -5
expect_run "status with an argument" 2 "colo-ctl: status takes no arguments, not 'now'" \
	"$bin" -s "$tmp/a.sock" status now
expect_run "record without a subverb" 2 "colo-ctl: record needs 'start DIR' or 'stop'" \
	"$bin" -s "$tmp/a.sock" record
expect_run "record start without DIR" 2 "colo-ctl: record start needs one DIR" \
	"$bin" -s "$tmp/a.sock" record start
expect_run "record with a bad subverb" 2 "colo-ctl: record needs 'start DIR' or 'stop', not 'pause'" \
	"$bin" -s "$tmp/a.sock" record pause
expect_run "record stop with an argument" 2 "colo-ctl: record needs 'start DIR' or 'stop', not 'stop'" \
	"$bin" -s "$tmp/a.sock" record stop now
expect_run "bad --timeout" 2 "colo-ctl: --timeout needs milliseconds 1..3600000, not '0'" \
	"$bin" --timeout 0 -s "$tmp/a.sock" status

expect_run "missing socket: exit 1, one line" 1 \
	"colo-ctl: cannot connect to $tmp/none.sock: No such file or directory (is the node running?)" \
	"$bin" -s "$tmp/none.sock" status
expect_run "missing socket with --json after the verb" 1 \
	"colo-ctl: cannot connect to $tmp/none.sock: No such file or directory (is the node running?)" \
	"$bin" -s "$tmp/none.sock" set-interval 50 --json

: >"$tmp/file.sock"
expect_run "nobody listening: exit 1, one line" 1 \
	"colo-ctl: cannot connect to $tmp/file.sock: Connection refused (is the node running?)" \
	"$bin" -s "$tmp/file.sock" checkpoint

# keygen needs no node: a new key file, never over an existing one.
"$bin" keygen "$tmp/key" >"$tmp/out" 2>"$tmp/err"
if [ $? -eq 0 ] && [ "$(cat "$tmp/out")" = "new key written to $tmp/key (mode 0600)" ] &&
   [ ! -s "$tmp/err" ] && [ "$(stat -c %a "$tmp/key")" = 600 ] &&
   [ "$(wc -c <"$tmp/key")" -eq 65 ] && grep -qx '[0-9a-f]\{64\}' "$tmp/key"; then
	ok "keygen writes 64 hex digits and a newline, mode 0600"
else
	not_ok "keygen writes a key" "$(cat "$tmp/out" "$tmp/err")" "$(ls -l "$tmp/key")"
fi
expect_run "keygen refuses to overwrite" 1 \
	"colo-ctl: psk-file $tmp/key exists already; not overwriting a key (remove it first)" \
	"$bin" keygen "$tmp/key"
expect_run "keygen without FILE" 2 "colo-ctl: keygen needs a FILE to write the key to" \
	"$bin" keygen

# Without -s: the default socket of --name, the same rule as the daemons'.
name="ctl-cli-$$"
if [ "$(id -u)" -eq 0 ]; then
	want="/run/colo/$name.sock"
else
	want="$tmp/xdg/colo/$name.sock"
fi
XDG_RUNTIME_DIR="$tmp/xdg"
export XDG_RUNTIME_DIR
expect_run "--name picks the default socket" 1 \
	"colo-ctl: cannot connect to $want: No such file or directory (is the node running?)" \
	"$bin" --name "$name" status

[ "$fails" -eq 0 ]
