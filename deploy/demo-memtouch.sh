#!/bin/sh
# demo-memtouch.sh BUILD_DIR: a pair with the memtouch guest, on loopback.
#
# A primary (a) runs the built-in memtouch guest and checkpoints it to a
# secondary (b); both verify that their RAM is what the guest's own record
# says it must be; a is killed with SIGKILL; b takes over from the last
# committed checkpoint and verifies again; a comes back as b's secondary
# (reprotect); a summary says what was measured.  Ports: COLO_DEMO_PORT
# (default 17070) and the one after it.  Every process started here is
# stopped here, by its pid.
set -eu

bdir=${1:?usage: demo-memtouch.sh BUILD_DIR}
port_b=${COLO_DEMO_PORT:-17070}
port_a=$((port_b + 1))
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-demo-XXXXXX")
. "$(dirname "$0")/demo-lib.sh"

ctl() { "$bdir/colo-ctl" -t 5000 -s "$work/$1.sock" "$2" ${3:+"$3"}; }

common="--guest memtouch --ram-mb 64 --memtouch-rate 20000 --memtouch-threads 2 --heartbeat-timeout-ms 300"

say "1. start the secondary b and the primary a (memtouch guest, 64 MiB, 2 writer threads)"
# shellcheck disable=SC2086
"$bdir/colo-secondary" --name b --listen "127.0.0.1:$port_b" --peer "127.0.0.1:$port_a" \
	--control "$work/b.sock" --state-dir "$work/b" $common >"$work/b.log" 2>&1 &
pid_b=$!
# shellcheck disable=SC2086
"$bdir/colo-primary" --name a --peer "127.0.0.1:$port_b" --listen "127.0.0.1:$port_a" \
	--control "$work/a.sock" --state-dir "$work/a" --checkpoint-interval-ms 50 \
	$common >"$work/a.log" 2>&1 &
pid_a=$!
wait_for 30 a '"state": "protected"'
echo "a (pid $pid_a) is protected by b (pid $pid_b); letting it run for 3 s"
sleep 3

say "2. colo-ctl status on the primary"
ctl a status

say "3. colo-ctl verify on both: RAM must be what the guest's own record says"
ctl a verify
ctl b verify

say "4. kill -9 the primary; b takes over from its last committed checkpoint"
before=$(json_num b last_committed)
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
pid_a=""
wait_for 10 b '"role": "primary"'
grep -E 'taking over|serving as primary' "$work/b.log" | sed 's/^[^ ]* //'
took=$(sed -n 's/.*serving as primary \([0-9.]*\) ms after the last heartbeat.*overhead \([-0-9.]*\) ms.*/\1 \2/p' "$work/b.log")

say "5. b serves on: its guest goes on from the committed state, verify there"
sleep 1
ctl b verify

say "6. a comes back as b's secondary (reprotect)"
# shellcheck disable=SC2086
"$bdir/colo-secondary" --name a --listen "127.0.0.1:$port_a" --peer "127.0.0.1:$port_b" \
	--control "$work/a.sock" --state-dir "$work/a" $common >>"$work/a.log" 2>&1 &
pid_a=$!
wait_for 30 b '"state": "protected"'
sleep 1
ctl b status | sed -n '1,8p'
ctl a verify

say "7. summary"
gen=$(json_num b generation)
last=$(json_num b last_committed)
rtt=$("$bdir/colo-ctl" -s "$work/b.sock" status | sed -n 's/^round-trip *\([0-9.]*\) .*/\1/p')
kill "$pid_a" "$pid_b"
st_a=0 st_b=0
wait "$pid_a" || st_a=$?
wait "$pid_b" || st_b=$?
pid_a="" pid_b=""
cat <<EOF
checkpoints committed by b before the failover   $before
failover: serving after the last heartbeat       ${took% *} ms (timeout 300 ms, overhead ${took#* } ms)
verify after failover and after reprotect         clean
b now: primary, generation $gen, checkpoint $last, round trip p50 ${rtt:-?} us
stopped with SIGTERM: a exit $st_a, b exit $st_b
EOF
[ $st_a -eq 0 ] && [ $st_b -eq 0 ] || die "a node did not stop cleanly"
