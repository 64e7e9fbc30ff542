#!/bin/sh
# kv_clients.sh: Debian's unmodified redis-cli and redis-benchmark against a
# protected kv guest, in output-mode buffer and then in output-mode compare:
# replies as Redis words them, and a benchmark run with no errors; in compare
# mode every unit the secondary ran matched (no mismatch checkpoint).
# Skipped without redis-tools.
set -u

: "${top_builddir:=.}"
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || {
	echo "1..0 # SKIP redis-cli/redis-benchmark not installed (apt-get install redis-tools)"
	exit 0
}

work=$(mktemp -d "${TMPDIR:-/tmp}/colo-kvcli-XXXXXX")
pid_a=""
pid_b=""
fails=0
n=0

cleanup() {
	for p in $pid_a $pid_b; do kill "$p" 2>/dev/null; done
	for p in $pid_a $pid_b; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

. "${top_srcdir:-.}/tests/ports.sh"

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }

# expect NAME WANT CMD...: redis-cli's output must be exactly WANT
expect() {
	name=$1 want=$2
	shift 2
	got=$(redis-cli -p "$kv" "$@" 2>&1)
	if [ "$got" = "$want" ]; then ok "$mode: $name"; else
		not_ok "$mode: $name"
		printf '#   want: %s\n#   got:  %s\n' "$want" "$got"
	fi
}

# stat SOCK NAME: one figure of colo-ctl stats --json
stat() {
	"$top_builddir/colo-ctl" -s "$1" stats --json |
		sed -n "s/^ *\"$2\": \([0-9][0-9]*\).*/\1/p"
}

run_mode() {
mode=$1
rm -rf "$work/a" "$work/b" "$work/a.sock" "$work/b.sock"
rep=$(free_port)
kv=$(free_port)
kvb=$(free_port)
"$top_builddir/colo-secondary" --name b --guest kv --listen "127.0.0.1:$rep" \
	--guest-listen "127.0.0.1:$kvb" --ram-mb 64 --control "$work/b.sock" \
	--state-dir "$work/b" --output-mode "$mode" >"$work/b.log" 2>&1 &
pid_b=$!
"$top_builddir/colo-primary" --name a --guest kv --peer "127.0.0.1:$rep" \
	--guest-listen "127.0.0.1:$kv" --ram-mb 64 --control "$work/a.sock" \
	--state-dir "$work/a" --output-mode "$mode" >"$work/a.log" 2>&1 &
pid_a=$!
echo "# output-mode $mode"
i=0
# Waits on the node's state; the sleep only paces the polling.
until "$top_builddir/colo-ctl" -s "$work/a.sock" status --json 2>/dev/null |
	grep -q '"state": "protected"'; do
	i=$((i + 1))
	if [ $i -gt 400 ]; then
		echo "not ok 1 - the pair did not get protected"
		cat "$work/a.log" "$work/b.log"
		exit 1
	fi
	sleep 0.05
done

expect "PING" "PONG" PING
expect "SET" "OK" SET greeting hello
expect "GET" "hello" GET greeting
expect "INCR" "1" INCR n
expect "INCRBY" "11" INCRBY n 10
expect "APPEND" "8" APPEND greeting ", w"
expect "MSET" "OK" MSET a 1 b 2 c 3
expect "MGET" "1
2

3" MGET a b missing c
expect "EXISTS" "2" EXISTS a b missing
expect "DBSIZE" "5" DBSIZE
expect "KEYS" "a" KEYS a
expect "TYPE" "string" TYPE a
expect "SET NX refused" "" SET a x NX
expect "DEL" "1" DEL a
expect "unknown command" "ERR unknown command 'NOSUCH', with args beginning with: 'x' " NOSUCH x
expect "wrong arity" "ERR wrong number of arguments for 'get' command" GET
expect "not an integer" "ERR value is not an integer or out of range" INCR greeting
expect "SELECT 1" "ERR DB index is out of range" SELECT 1
expect "GETSET" "hello, w" GETSET greeting bye
expect "STRLEN" "3" STRLEN greeting
expect "DECR" "10" DECR n
expect "DECRBY" "5" DECRBY n 5
expect "KEYS with a pattern" "greeting" KEYS "gr*"
expect "SCAN with a pattern" "0
greeting" SCAN 0 MATCH "gr*" COUNT 1000000
expect "CONFIG GET save" "save" CONFIG GET save
if redis-cli -p "$kv" INFO | grep -q '^redis_version:'; then ok "INFO"; else not_ok "INFO"; fi

# An interactive session on a terminal: redis-cli then asks COMMAND DOCS
# first, and prints replies its own way.
# The input stays open until redis-cli has answered the last GET (script
# ends the session when its input ends), for 10 s at most.
if command -v script >/dev/null; then
	: >"$work/tty.raw"
	(printf 'SET tty yes\rGET tty\rGET nosuch\rquit\r'
	 i=0
	 until grep -q '(nil)' "$work/tty.raw" || [ $i -ge 200 ]; do
		i=$((i + 1)); sleep 0.05
	 done) | TERM=dumb timeout 20 script -qfec "redis-cli -p $kv" /dev/null >"$work/tty.raw" 2>&1
	tr -d '\r' <"$work/tty.raw" >"$work/tty.txt"
	if grep -q '> "yes"$' "$work/tty.txt" && grep -q '> (nil)$' "$work/tty.txt" &&
	   ! grep -q 'error' "$work/tty.txt"; then
		ok "interactive redis-cli"
	else
		not_ok "interactive redis-cli"
		sed 's/^/#   /' "$work/tty.txt"
	fi
else
	n=$((n + 1)); echo "ok $n - interactive redis-cli # SKIP script (bsdutils) not installed"
fi

redis-benchmark -p "$kv" -n 2000 -c 10 -t ping,set,get,incr,mset -q >"$work/bench.txt" 2>&1
tr '\r' '\n' <"$work/bench.txt" | grep -v '^ *$' | grep -v 'rps=' >"$work/bench2.txt"
if grep -qi 'error' "$work/bench2.txt"; then
	not_ok "redis-benchmark without errors"
	sed 's/^/#   /' "$work/bench2.txt"
else
	ok "redis-benchmark without errors"
fi
for t in PING_INLINE PING_MBULK SET GET INCR 'MSET (10 keys)'; do
	if grep -q "^$t: .* requests per second" "$work/bench2.txt"; then ok "redis-benchmark $t"
	else not_ok "redis-benchmark $t"; sed 's/^/#   /' "$work/bench2.txt"; fi
done

if [ "$mode" = compare ]; then
	# A command over 16 MiB is not sent to the secondary: its reply waits
	# for a checkpoint instead (cause "uncompared").
	head -c 17000000 /dev/zero | tr '\0' x >"$work/big"
	got=$(redis-cli -p "$kv" -x SET big <"$work/big" 2>&1)
	len=$(redis-cli -p "$kv" STRLEN big 2>&1)
	unc=$(stat "$work/a.sock" uncompared)
	if [ "$got" = OK ] && [ "$len" = 17000000 ] && [ "${unc:-0}" -ge 1 ]; then
		ok "compare: a 17 MB SET waits for an uncompared checkpoint"
	else
		not_ok "compare: a 17 MB SET ($got, STRLEN $len, ${unc:-0} uncompared checkpoints)"
	fi
	rm -f "$work/big"
	matched=$(stat "$work/a.sock" matched)
	mism=$(stat "$work/a.sock" mismatches)
	if [ "${matched:-0}" -gt 1000 ] && [ "${mism:-1}" -eq 0 ]; then
		ok "compare: $matched units matched, none differed"
	else
		not_ok "compare: ${matched:-?} units matched, ${mism:-?} differed"
		"$top_builddir/colo-ctl" -s "$work/a.sock" stats | sed 's/^/#   /'
	fi
fi

kill "$pid_a" "$pid_b"
st_a=0 st_b=0
wait "$pid_a" || st_a=$?
wait "$pid_b" || st_b=$?
pid_a="" pid_b=""
if [ $st_a -eq 0 ] && [ $st_b -eq 0 ]; then ok "both stop cleanly"; else
	not_ok "both stop cleanly (a $st_a, b $st_b)"
	cat "$work/a.log" "$work/b.log"
fi
}

run_mode buffer
run_mode compare
echo "1..$n"
[ $fails -eq 0 ]
