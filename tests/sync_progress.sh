#!/bin/sh
# sync_progress.sh: a long full sync tells an operator on a terminal how far
# it is, and says nothing of it into a log that is not a terminal.  A
# memtouch primary of 512 MiB fills its RAM with random pages before any
# secondary is up; a secondary started on a terminal (script gives it one)
# logs, each period of its sync, the share of the RAM in, MiB, MB/s and an
# ETA (the period is 50 ms here, COLO_SYNC_PROGRESS_MS: a fast host syncs
# the 512 MiB within the second of the default); a second secondary, its stderr a file, logs the sync's start and end
# only.  TAP.  Skipped without script (bsdutils).
set -u
: "${top_builddir:=.}"
command -v script >/dev/null || { echo "1..0 # SKIP no script (bsdutils)"; exit 0; }
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-syncprog-XXXXXX")
pid_a="" pid_b="" n=0 fails=0
cleanup() {
	for p in $pid_a $pid_b; do kill "$p" 2>/dev/null; done
	for p in $pid_a $pid_b; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
. "${top_srcdir:-.}/tests/ports.sh"
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
bin=$top_builddir

# protected SOCK: wait until that node says so (polling paced by the
# sleep), up to 120 s
protected() {
	i=0
	until "$bin/colo-ctl" -s "$1" status 2>/dev/null | grep -q '^state  *protected'; do
		i=$((i + 1))
		[ $i -gt 2400 ] && return 1
		sleep 0.05
	done
}

echo "1..3"
rep=$(free_port)
"$bin/colo-primary" --name a --guest memtouch --ram-mb 512 --peer "127.0.0.1:$rep" \
	--memtouch-pattern random --memtouch-bytes 4096 --memtouch-rate 0 \
	--control "$work/a.sock" --state-dir "$work/a" >"$work/a.log" 2>&1 &
pid_a=$!
# memtouch dirties its RAM meanwhile: the sync has pages to carry.
sleep 2
# script runs the secondary on a pseudo-terminal, and ends with it.
script -qec "COLO_SYNC_PROGRESS_MS=50 exec '$bin/colo-secondary' --name b --guest memtouch --ram-mb 512 \
	--listen 127.0.0.1:$rep --control '$work/b.sock' --state-dir '$work/b'" \
	"$work/b.tty" >/dev/null 2>&1 &
pid_b=$!
if protected "$work/a.sock" && protected "$work/b.sock"; then
	ok "the pair got protected"
else
	not_ok "the pair got protected" "$(tail -5 "$work/a.log")" "$(tail -5 "$work/b.tty")"
fi
kill $pid_b
wait $pid_b
pid_b=""
line=$(grep -a -m1 'full sync from a: [0-9]*% of the RAM ([0-9.]* of 512.0 MiB), [0-9]* MB/s, ETA [0-9]* s' \
	"$work/b.tty")
if [ -n "$line" ]; then
	ok "on a terminal: ${line#*role=secondary: }"
else
	not_ok "on a terminal, the sync's progress" "$(grep -a 'full sync' "$work/b.tty")"
fi

# The same without a terminal: the sync's start and end, no progress.
"$bin/colo-secondary" --name b --guest memtouch --ram-mb 512 --listen "127.0.0.1:$rep" \
	--control "$work/b.sock" --state-dir "$work/b" >"$work/b.log" 2>&1 &
pid_b=$!
if protected "$work/b.sock" && grep -q 'full sync from a loaded' "$work/b.log" &&
   ! grep -q 'full sync from a: ' "$work/b.log"; then
	ok "not on a terminal: no progress lines, the sync logged once done"
else
	not_ok "not on a terminal: no progress lines" "$(grep 'full sync' "$work/b.log")"
fi
[ $fails -eq 0 ]
