#!/bin/sh
# kv.sh [BUILD_DIR]: the kv guest under redis-benchmark, in one run, against
#   redis-server (Debian's, installed if missing), the kv guest alone
#   (unprotected), kv protected with output-mode none, kv protected with
#   output-mode buffer (the default: no reply before its checkpoint is
#   acknowledged) and kv protected with output-mode compare (a reply goes
#   once the secondary's copy said the same; docs/compare.md).  Prints
#   requests/s and p50/p99 latency of each test for each target, and the
#   ratios to the kv guest alone, to redis-server and to kv buffer; then the
#   CPU time each target's processes used per 1000 requests (both nodes of a
#   pair), since on a small machine the nodes and redis-benchmark share the
#   same CPUs.  "rd alone" is the median of each round's own ratio to kv
#   alone (the two ran back to back, so a machine that slows down between
#   rounds moves both); "vs alone" divides the medians.  With SECURITY=yes
#   two more buffer-mode pairs run in the same rounds: "auth" (a psk-file:
#   authenticated Hello, tagged checkpoints, signed heartbeats) and
#   "encrypt" (the same and encrypt = yes).  With MANUAL=yes one more:
#   "manual", buffer mode with dirty-tracking manual on both nodes (the
#   store marks what it writes; no page-table walk at each checkpoint).
#
# Environment: N (requests per test, default 100000), C (clients, 50),
# P (pipeline, 1), TESTS (ping,set,get,incr,mset), KV_RAM_MB (64, the nodes' default),
# ROUNDS (3: every figure is the median of this many runs),
# PRIMARY_ARGS (more colo-primary options for the protected runs, e.g.
# "--min-interval-ms 0"), PIN (yes: every secondary on the last CPU, all the
# rest, redis-benchmark included, on the others; a secondary then competes
# with no primary or client for CPU, as on a host of its own).
# Every process started here is stopped here, by its pid.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$top/build}
N=${N:-100000}
C=${C:-50}
P=${P:-1}
TESTS=${TESTS:-ping,set,get,incr,mset}
RAM=${KV_RAM_MB:-64}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-kvbench-XXXXXX")
pids=""
MODES="none buffer compare"
[ "${SECURITY:-no}" != yes ] || MODES="$MODES auth encrypt"
[ "${MANUAL:-no}" != yes ] || MODES="$MODES manual"

die() { printf 'kv.sh: %s\n' "$*" >&2; exit 1; }

stop_pids() {
	for p in $pids; do
		kill "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait "$p" 2>/dev/null || true
	done
	pids=""
}

pin_main="" pin_sec=""
if [ "${PIN:-no}" = yes ]; then
	ncpu=$(nproc)
	[ "$ncpu" -ge 2 ] || die "PIN=yes needs 2 CPUs or more"
	pin_main="taskset -c 0-$((ncpu - 2))"
	pin_sec="taskset -c $((ncpu - 1))"
fi

cleanup() {
	stop_pids
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in colo-primary colo-secondary colo-ctl; do
	[ -x "$bdir/$p" ] || die "$bdir/$p is not built (run deploy/quickstart.sh first)"
done
if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null; then
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	echo "installing redis-server and redis-tools (the baseline and the client)"
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends redis-server redis-tools >/dev/null
fi

. "$top/tests/ports.sh"

wait_port() {
	i=0
	while ! redis-cli -p "$1" ping >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 200 ] || die "nothing answers on port $1"
		sleep 0.05
	done
}

wait_protected() {
	i=0
	until "$bdir/colo-ctl" -s "$1" status --json 2>/dev/null | grep -q '"state": "protected"'; do
		i=$((i + 1))
		[ $i -lt 600 ] || { tail -n 5 "$work"/a-*.log "$work"/b-*.log >&2; die "the pair did not get protected"; }
		sleep 0.05
	done
}

# cpu PIDS: their CPU time so far, in clock ticks (user + system)
cpu() {
	t=0
	for p in $1; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}

# bench NAME PORT PIDS: redis-benchmark CSV into $work/NAME.csv; the CPU
# ticks PIDS used meanwhile are added to $work/NAME.cpu's target
bench() {
	c0=$(cpu "$3")
	$pin_main redis-benchmark -h 127.0.0.1 -p "$2" -n "$N" -c "$C" -P "$P" -t "$TESTS" --csv \
		>"$work/$1.csv" 2>"$work/$1.err" || {
		cat "$work/$1.err" >&2
		die "redis-benchmark against $1 failed"
	}
	if grep -qi 'error' "$work/$1.err"; then
		cat "$work/$1.err" >&2
		die "redis-benchmark reported errors against $1"
	fi
	echo $(($(cpu "$3") - c0)) >>"$work/${1%.*}.cpu"
}


echo "kv.sh: redis-benchmark -n $N -c $C -P $P -t $TESTS; kv RAM $RAM MiB; $(nproc) CPUs; $ROUNDS rounds"
[ -z "${PRIMARY_ARGS:-}" ] || echo "kv.sh: protected primaries run with: $PRIMARY_ARGS"
[ -z "$pin_sec" ] || echo "kv.sh: PIN=yes: secondaries ($pin_sec), the rest ($pin_main)"

# All four targets run at once (idle ones cost next to nothing: a protected
# pair with no writes checkpoints nothing), and each round benchmarks them
# one after another, so that the machine's drift hits them alike.
# 1. redis-server (no persistence, like the kv guest)
port_redis=$(free_port)
$pin_main redis-server --port "$port_redis" --bind 127.0.0.1 --save '' --appendonly no \
	--daemonize no --logfile "$work/redis.log" &
pids="$!"
cpu_pids_redis=$!

# 2. the kv guest alone: a primary with no secondary
port_alone=$(free_port)
speer=$(free_port)
$pin_main "$bdir/colo-primary" --name alone --guest kv --guest-listen "127.0.0.1:$port_alone" \
	--ram-mb "$RAM" --peer "127.0.0.1:$speer" --control "$work/alone.sock" \
	--state-dir "$work/alone" >"$work/alone.log" 2>&1 &
pids="$pids $!"
cpu_pids_alone=$!

# 3, 4 (5, 6). protected pairs: output-mode none, buffer (and buffer with a
# key, and with a key and encryption)
"$bdir/colo-ctl" keygen "$work/psk" >/dev/null
for mode in $MODES; do
	kvport=$(free_port)
	kvport_b=$(free_port)
	speer=$(free_port)
	case $mode in
	auth) sec="--psk-file $work/psk" out=buffer ;;
	encrypt) sec="--psk-file $work/psk --encrypt yes" out=buffer ;;
	manual) sec="--dirty-tracking manual" out=buffer ;;
	*) sec="" out=$mode ;;
	esac
	bout=buffer
	[ "$out" != compare ] || bout=compare
	# shellcheck disable=SC2086
	$pin_sec "$bdir/colo-secondary" --name "b-$mode" --guest kv --guest-listen "127.0.0.1:$kvport_b" \
		--ram-mb "$RAM" --listen "127.0.0.1:$speer" --control "$work/b-$mode.sock" \
		--state-dir "$work/b-$mode" --output-mode "$bout" $sec >"$work/b-$mode.log" 2>&1 &
	pids="$pids $!"
	eval "cpu_pids_$mode=$!"
	# shellcheck disable=SC2086
	$pin_main "$bdir/colo-primary" --name "a-$mode" --guest kv --guest-listen "127.0.0.1:$kvport" \
		--ram-mb "$RAM" --peer "127.0.0.1:$speer" --control "$work/a-$mode.sock" \
		--state-dir "$work/a-$mode" --output-mode "$out" $sec ${PRIMARY_ARGS:-} \
		>"$work/a-$mode.log" 2>&1 &
	pids="$pids $!"
	eval "cpu_pids_$mode=\"\$cpu_pids_$mode $!\""
	eval "port_$mode=$kvport"
done
wait_port "$port_redis"
wait_port "$port_alone"
for mode in $MODES; do
	wait_protected "$work/a-$mode.sock"
	eval "wait_port \"\$port_$mode\""
done

r=1
while [ $r -le "$ROUNDS" ]; do
	printf 'round %d of %d: redis-server, kv alone, kv %s\n' "$r" "$ROUNDS" "$MODES"
	bench "redis.$r" "$port_redis" "$cpu_pids_redis"
	bench "alone.$r" "$port_alone" "$cpu_pids_alone"
	for mode in $MODES; do
		eval "bench \"\$mode.\$r\" \"\$port_$mode\" \"\$cpu_pids_$mode\""
	done
	r=$((r + 1))
done
"$bdir/colo-ctl" -s "$work/a-buffer.sock" status >"$work/status-buffer.txt"
case " $MODES " in
*" manual "*) "$bdir/colo-ctl" -s "$work/a-manual.sock" status >"$work/status-manual.txt" ;;
esac
"$bdir/colo-ctl" -s "$work/a-compare.sock" stats >"$work/stats-compare.txt"
for mode in $MODES; do
	"$bdir/colo-ctl" -s "$work/a-$mode.sock" status --json | grep -q '"state": "protected"' ||
		die "the $mode pair lost its protection during the run (see its logs)"
done
stop_pids

# The table.  CSV: "test","rps","avg","min","p50","p95","p99","max"
awk -F'"' -v work="$work" -v rounds="$ROUNDS" -v modes="$MODES" '
function load(name, r, file,    line, f) {
	while ((getline line < file) > 0) {
		split(line, f, "\"")
		if (f[2] == "test")
			continue
		test = f[2]
		if (!(test in seen)) { seen[test] = 1; order[++ntests] = test }
		rps[name, test, r] = f[4]; p50[name, test, r] = f[10]; p99[name, test, r] = f[14]
	}
	close(file)
}
# the median of a[k, 1..rounds]
function med(a, k,    v, i, j, t, n) {
	n = rounds
	for (i = 1; i <= n; i++)
		v[i] = a[k, i] + 0
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
BEGIN {
	nnames = split("redis alone " modes, names, " ")
	for (i = 1; i <= nnames; i++)
		for (r = 1; r <= rounds; r++)
			load(names[i], r, work "/" names[i] "." r ".csv")
	label["redis"] = "redis-server"; label["alone"] = "kv alone"
	label["none"] = "kv, none"; label["buffer"] = "kv, buffer"
	label["auth"] = "kv, buf+auth"; label["encrypt"] = "kv, buf+enc"
	label["manual"] = "kv, buf+manual"
	label["compare"] = "kv, compare"
	printf "\nmedians of %d rounds\n", rounds
	printf "%-22s %-13s %12s %9s %9s %9s %9s %9s %9s\n", "test", "target", "requests/s",
	       "p50 ms", "p99 ms", "vs alone", "vs redis", "vs buffer", "rd alone"
	for (t = 1; t <= ntests; t++) {
		test = order[t]
		for (i = 1; i <= nnames; i++) {
			n = names[i]
			R[n] = med(rps, n SUBSEP test)
			for (r = 1; r <= rounds; r++)
				rd[n, test, r] = rps[n, test, r] / rps["alone", test, r]
		}
		for (i = 1; i <= nnames; i++) {
			n = names[i]
			printf "%-22s %-13s %12.0f %9.3f %9.3f %8.2fx %8.2fx %8.2fx %8.2fx\n",
			       (i == 1 ? test : ""), label[n], R[n], med(p50, n SUBSEP test),
			       med(p99, n SUBSEP test), R[n] / R["alone"], R[n] / R["redis"],
			       R[n] / R["buffer"], med(rd, n SUBSEP test)
		}
	}
}' /dev/null
# requests per run: N for each test redis-benchmark ran (ping is two)
ntests=$(grep -vc '^"test"' "$work/alone.1.csv")
hz=$(getconf CLK_TCK)
echo
echo "CPU time per 1000 requests (all tests and rounds; a pair: both nodes):"
for name in redis alone $MODES; do
	awk -v n="$N" -v t="$ntests" -v r="$ROUNDS" -v hz="$hz" -v name="$name" \
		'{ s += $1 } END { printf "  %-10s %8.2f ms\n", name, s * 1000 / hz / (n * t * r / 1000) }' \
		"$work/$name.cpu"
done
echo
echo "output-mode compare (primary's colo-ctl stats, over all rounds):"
grep -E '^ *(checkpoints|interval|output|request|mismatch|timeout|uncompared|units compared|matched|mismatches) ' \
	"$work/stats-compare.txt" || true
echo
echo "checkpoints under output-mode buffer (primary's colo-ctl status):"
grep -E '^(phase|last committed|pause|sync|copy|resume|encode|send|ack|round-trip) ' "$work/status-buffer.txt" || true
if [ -f "$work/status-manual.txt" ]; then
	echo
	echo "checkpoints under output-mode buffer, dirty-tracking manual:"
	grep -E '^(phase|last committed|pause|sync|copy|resume|encode|send|ack|round-trip) ' \
		"$work/status-manual.txt" || true
fi
