#!/bin/sh
# demo.sh BUILD_DIR: the main job, on loopback.
#
# A primary (a) runs the kv guest, a Redis-compatible service whose data
# lives in replicated RAM, and checkpoints it to a secondary (b).
# redis-benchmark gives it a burst; redis-cli writes numbered keys and
# remembers every acknowledged reply; a is killed with SIGKILL; b takes over
# from its last committed checkpoint and serves on its own address, where
# every acknowledged key is read back.  Ports: COLO_DEMO_PORT (default
# 17070) and the one after it for replication, COLO_DEMO_KV_PORT (default
# 16379) and the one after it for the two kv services.  Every process
# started here is stopped here, by its pid.
set -eu

bdir=${1:?usage: demo.sh BUILD_DIR}
port_b=${COLO_DEMO_PORT:-17070}
port_a=$((port_b + 1))
kv_a=${COLO_DEMO_KV_PORT:-16379}
kv_b=$((kv_a + 1))
keys=200
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-demo-XXXXXX")
. "$(dirname "$0")/demo-lib.sh"

for p in redis-cli redis-benchmark; do
	command -v "$p" >/dev/null || die "$p is missing (apt-get install redis-tools)"
done

# One key for both nodes: they prove it to each other on every connection
# and sign their heartbeats (docs/security.md).
"$bdir/colo-ctl" keygen "$work/psk" >/dev/null || die "cannot write a key"
common="--guest kv --ram-mb 64 --heartbeat-timeout-ms 300 --psk-file $work/psk"

say "1. start the secondary b and the primary a (kv guest, 64 MiB, a shared key)"
# shellcheck disable=SC2086
"$bdir/colo-secondary" --name b --listen "127.0.0.1:$port_b" --peer "127.0.0.1:$port_a" \
	--guest-listen "127.0.0.1:$kv_b" --control "$work/b.sock" --state-dir "$work/b" \
	$common >"$work/b.log" 2>&1 &
pid_b=$!
# shellcheck disable=SC2086
"$bdir/colo-primary" --name a --peer "127.0.0.1:$port_b" --listen "127.0.0.1:$port_a" \
	--guest-listen "127.0.0.1:$kv_a" --control "$work/a.sock" --state-dir "$work/a" \
	$common >"$work/a.log" 2>&1 &
pid_a=$!
wait_for 30 a '"state": "protected"'
echo "a (pid $pid_a) serves kv on 127.0.0.1:$kv_a, protected by b (pid $pid_b)"

say "2. redis-benchmark against a (every reply waits for its checkpoint)"
redis-benchmark -p "$kv_a" -t set,get,incr -n 20000 -c 20 -q 2>&1 | tr '\r' '\n' |
	grep -v '^ *$' | grep -v 'rps=' | tee "$work/bench.txt"

say "3. redis-cli writes $keys keys; every acknowledged one is remembered"
i=1
: >"$work/acked"
while [ $i -le $keys ]; do
	printf 'SET demo:%d value-%d\n' "$i" "$((i * i))"
	i=$((i + 1))
done | redis-cli -p "$kv_a" >"$work/replies"
acked=$(grep -c '^OK$' "$work/replies" || true)
redis-cli -p "$kv_a" INCRBY demo:counter 42 >/dev/null
echo "$acked of $keys SETs acknowledged; demo:counter = $(redis-cli -p "$kv_a" GET demo:counter)"
"$bdir/colo-ctl" -s "$work/a.sock" status | grep -E '^(state|last committed|guest)'

say "4. kill -9 the primary; b takes over from its last committed checkpoint"
before=$(json_num b last_committed)
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
pid_a=""
wait_for 10 b '"role": "primary"'
grep -E 'taking over|serving as primary' "$work/b.log" | sed 's/^[^ ]* //'
took=$(sed -n 's/.*serving as primary \([0-9.]*\) ms after the last heartbeat.*overhead \([-0-9.]*\) ms.*/\1 \2/p' "$work/b.log")

say "5. read every acknowledged key back from b (127.0.0.1:$kv_b)"
i=1
while [ $i -le $keys ]; do
	printf 'GET demo:%d\n' "$i"
	i=$((i + 1))
done | redis-cli -p "$kv_b" >"$work/readback"
ok=0
i=1
while [ $i -le $keys ]; do
	[ "$(sed -n "${i}p" "$work/readback")" = "value-$((i * i))" ] && ok=$((ok + 1))
	i=$((i + 1))
done
counter=$(redis-cli -p "$kv_b" GET demo:counter)
echo "$ok of $acked acknowledged keys read back; demo:counter = $counter"
"$bdir/colo-ctl" -s "$work/b.sock" verify

say "6. summary"
sets=$(sed -n 's/^SET: \([0-9.]*\) requests per second.*/\1/p' "$work/bench.txt")
kill "$pid_b"
st_b=0
wait "$pid_b" || st_b=$?
pid_b=""
cat <<EOF
redis-benchmark SET through output commit          ${sets:-?} requests/s
checkpoints committed by b before the failover     $before
failover: serving after the last heartbeat         ${took% *} ms (timeout 300 ms, overhead ${took#* } ms)
acknowledged keys found on the new primary         $ok of $acked (counter $counter, want 42)
peers authenticated with                           a key colo-ctl keygen wrote ($(grep -c 'peers authenticate with the key' "$work/a.log" "$work/b.log" | grep -c ':1$') of 2 nodes)
b stopped with SIGTERM: exit $st_b
EOF
[ "$ok" -eq "$acked" ] && [ "$counter" = 42 ] || die "acknowledged writes were lost"
[ $st_b -eq 0 ] || die "b did not stop cleanly"
