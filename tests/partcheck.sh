#!/bin/sh
# partcheck.sh: the partition test's checker (tests/partcheck.c) on small
# crafted logs, so that it is shown to fail when it must: a clean run, a
# lost acknowledged write, one never read back, a write seen by a read and
# then lost, a read
# contradicting an acknowledged write, two nodes whose release periods
# overlap (also through an `open` that lasts to a `killed` line or to the
# end of the run), periods that only touch other generations of one pair,
# and lines that are not of their kind (exit 2).
set -u

: "${top_builddir:=.}"
: "${top_srcdir:=..}"
. "$top_srcdir/tests/tap.sh"
pc="$top_builddir/tests/partcheck"
w=$(mktemp -d "${TMPDIR:-/tmp}/partcheck-XXXXXX")
trap 'rm -rf "$w"' EXIT
echo "1..11"

# Times in ns: 1000000000 is t0; the checker prints seconds after it.
cat >"$w/c0" <<'EOF'
# partclient schedule s1 client 0
set 1000000000 1001000000 s1:0:1 v0.1 ok
set 1002000000 1003000000 s1:0:2 v0.2 ok
get 1004000000 1005000000 s1:0:1 v0.1 ok
set 1006000000 1007000000 s1:0:3 v0.3 unknown
set 1008000000 1009000000 s1:0:4 v0.4 fail
# end
EOF
cat >"$w/rb" <<'EOF'
# readback
s1:0:1 v0.1
s1:0:2 v0.2
s1:0:3 -
s1:0:4 -
EOF
# a gen 1 serves to +2 s, is killed at +2.5; b gen 2 serves from +3 s.
cat >"$w/ra" <<'EOF'
1000000000 a 1 ckpt 1
2000000000 a 1 ckpt 40
2500000000 - - killed 0
EOF
cat >"$w/rb2" <<'EOF'
3000000000 b 2 alone 41
3500000000 b 2 ckpt 60
4000000000 b 2 stop 0
EOF

# run NAME ARGS...: partcheck's output in $w/NAME.out, its status in st.
run() {
	name=$1
	shift
	"$pc" "$@" >"$w/$name.out" 2>"$w/$name.err"
	st=$?
}
summary() { grep '^partcheck:' "$w/$1.out"; }

run clean --client "$w/c0" --readback "$w/rb" --release "$w/ra" --release "$w/rb2"
if [ $st -eq 0 ] && summary clean | grep -q \
	'schedules 1 acknowledged 2 lost 0 observed-lost 0 contradictions 0 windows 0 unread 0$'; then
	ok "a clean run: exit 0, 2 acknowledged, nothing lost, no window"
else
	not_ok "a clean run (exit $st)" "$w/clean.out" "$w/clean.err"
fi

sed 's/^s1:0:2 v0.2$/s1:0:2 -/' "$w/rb" >"$w/rb-lost"
run lost --client "$w/c0" --readback "$w/rb-lost" --release "$w/ra"
if [ $st -eq 1 ] && summary lost | grep -q 'lost 1 observed-lost 0' &&
	grep -q '^lost: s1:0:2 = v0.2 acknowledged at +0.003s (sent +0.002s), read back missing' \
		"$w/lost.out"; then
	ok "an acknowledged write read back missing: lost 1, exit 1"
else
	not_ok "lost write (exit $st)" "$w/lost.out" "$w/lost.err"
fi

grep -v '^s1:0:2 ' "$w/rb" >"$w/rb-cut"
run unread --client "$w/c0" --readback "$w/rb-cut"
if [ $st -eq 1 ] && summary unread | grep -q 'lost 0 .* unread 1$' &&
	grep -q '^unread: s1:0:2 = v0.2 acknowledged at +0.003s, in no read-back' "$w/unread.out"; then
	ok "an acknowledged write in no read-back: unread 1, exit 1"
else
	not_ok "unread write (exit $st)" "$w/unread.out" "$w/unread.err"
fi

sed 's/^s1:0:1 v0.1$/s1:0:1 v9.9/' "$w/rb" >"$w/rb-other"
run other --client "$w/c0" --readback "$w/rb-other"
if [ $st -eq 1 ] && grep -q '^lost: s1:0:1 = v0.1 .* read back v9.9$' "$w/other.out"; then
	ok "an acknowledged write read back with another value: lost, exit 1"
else
	not_ok "write read back different (exit $st)" "$w/other.out" "$w/other.err"
fi

# The unknown SET of s1:0:3 was seen by a read, then is not read back.
{ cat "$w/c0"; echo 'get 1010000000 1011000000 s1:0:3 v0.3 ok'; } >"$w/c-obs"
run observed --client "$w/c-obs" --readback "$w/rb"
if [ $st -eq 1 ] && summary observed | grep -q 'lost 0 observed-lost 1 contradictions 0'; then
	ok "a write with no reply, seen by a read, then missing: observed-lost 1, exit 1"
else
	not_ok "observed write lost (exit $st)" "$w/observed.out" "$w/observed.err"
fi

# A read after s1:0:2 was acknowledged that finds nothing; a read that finds
# the failed write's value.
{ cat "$w/c0"; echo 'get 1012000000 1013000000 s1:0:2 - ok'
  echo 'get 1014000000 1015000000 s1:0:4 v0.4 ok'
  echo 'get 1016000000 1017000000 s1:0:2 - unknown'; } >"$w/c-stale"
run stale --client "$w/c-stale" --readback "$w/rb"
if [ $st -eq 1 ] && summary stale | grep -q 'lost 0 observed-lost 0 contradictions 2' &&
	grep -q '^contradiction: GET s1:0:2 at +0.012s..+0.013s returned -: not the value' \
		"$w/stale.out" &&
	grep -q '^contradiction: GET s1:0:4 .*the value of a SET that failed' "$w/stale.out"; then
	ok "reads contradicting an acknowledged or a failed write: 2, exit 1"
else
	not_ok "contradicting reads (exit $st)" "$w/stale.out" "$w/stale.err"
fi

# b gen 2 releases at +1.5 s, when a gen 1 is killed; its last ckpt was +1 s.
sed 's/^3000000000 b 2 alone 41$/2500000000 b 2 alone 41/' "$w/rb2" >"$w/rb2-early"
run overlap --client "$w/c0" --readback "$w/rb" --release "$w/ra" --release "$w/rb2-early"
if [ $st -eq 0 ] && summary overlap | grep -q 'windows 0 unread 0$'; then
	ok "a killed node's last ckpt before the other's first release: no window"
else
	not_ok "ckpt period ends at the last ckpt (exit $st)" "$w/overlap.out" "$w/overlap.err"
fi

printf '1900000000 b 2 alone 41\n' >"$w/rb3"
run window --client "$w/c0" --readback "$w/rb" --release "$w/ra" --release "$w/rb3"
if [ $st -eq 1 ] && summary window | grep -q 'windows 1 unread 0$' &&
	grep -q '^window: node a gen 1 (+0.000s..+1.000s) and node b gen 2 (+0.900s..+0.900s) both released from +0.900s to +0.900s' \
		"$w/window.out"; then
	ok "a release of b gen 2 inside a gen 1's period: 1 window with its times, exit 1"
else
	not_ok "overlapping periods (exit $st)" "$w/window.out" "$w/window.err"
fi

# Without a secondary both released from `open`: a's lasts to its killed
# line, b's to the end of the run (--end).
printf '1000000000 a 1 open 0\n1200000000 a 1 close 0\n1300000000 a 1 open 0\n2500000000 - - killed 0\n' \
	>"$w/ra-open"
printf '2400000000 b 2 open 0\n' >"$w/rb-open"
run open --end 5000000000 --client "$w/c0" --readback "$w/rb" --release "$w/ra-open" \
	--release "$w/rb-open"
if [ $st -eq 1 ] && summary open | grep -q 'windows 1 unread 0$' &&
	grep -q '^window: node a gen 1 (+0.000s..+1.500s) and node b gen 2 (+1.400s..+4.000s) both released from +1.400s to +1.500s (100.0 ms)' \
		"$w/open.out" && grep -q 'node b gen 2 .*(open to the end)' "$w/open.out"; then
	ok "open windows last to the killed line and to the end of the run: 1 window of 100 ms"
else
	not_ok "open periods (exit $st)" "$w/open.out" "$w/open.err"
fi

# One node's generations one after the other, and the same pair in two files.
printf '1000000000 a 1 ckpt 1\n1100000000 a 1 stop 0\n' >"$w/g1"
printf '1200000000 a 3 ckpt 1\n1300000000 a 3 ckpt 2\n' >"$w/g3"
printf '1250000000 a 3 ckpt 9\n' >"$w/g3b"
run gens --client "$w/c0" --readback "$w/rb" --release "$w/g1" --release "$w/g3" \
	--release "$w/g3b"
if [ $st -eq 0 ] && summary gens | grep -q 'windows 0 unread 0$'; then
	ok "successive generations, and one pair seen in two files: no window"
else
	not_ok "successive generations (exit $st)" "$w/gens.out" "$w/gens.err"
fi

printf '1000000000 a 1 ckpt\n' >"$w/bad1"
printf 'set 1 2 k v maybe\n' >"$w/bad2"
bad=0
"$pc" --release "$w/bad1" >/dev/null 2>"$w/bad1.err"; [ $? -eq 2 ] || bad=1
grep -q "bad1:1: not a release-log line" "$w/bad1.err" || bad=1
"$pc" --client "$w/bad2" >/dev/null 2>"$w/bad2.err"; [ $? -eq 2 ] || bad=1
grep -q "bad2:1: outcome 'maybe'" "$w/bad2.err" || bad=1
"$pc" --client "$w/nonexistent" >/dev/null 2>&1; [ $? -eq 2 ] || bad=1
if [ $bad -eq 0 ]; then
	ok "a bad release line, a bad outcome, a missing file: exit 2 naming FILE:LINE"
else
	not_ok "bad input" "$w/bad1.err" "$w/bad2.err"
fi
[ $fails -eq 0 ]
