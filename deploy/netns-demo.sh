#!/bin/sh
# netns-demo.sh BUILD_DIR: client-facing failover with a moving service
# address, in network namespaces this script creates (root needed).
#
#   colo-na-T node a, 10.77.0.1, the primary; holds the service address
#             10.77.0.100 at the start
#   colo-nb-T node b, 10.77.0.2, the secondary
#   colo-cl-T a client, 10.77.0.10; it only ever talks to 10.77.0.100:6379
#   colo-sw-T the switch: a bridge joining the three
# (T: $COLO_NETNS_TAG, else the script's pid)
#
# Both nodes have guest-listen 10.77.0.100:6379: the kv guest binds it
# with IP_FREEBIND, so the promoted b serves there before the address has
# even arrived on its interface.  The
# secondary's fence-command cuts node a off the switch (what a power switch
# or a cloud API would do to a dead machine), and its promote-command takes
# the service address and announces it with a gratuitous ARP.  The client
# writes through 10.77.0.100, the primary is killed, and the client reads
# everything back through the same address, now answered by node b.
#
# Exit 0 when every key read back is the value acknowledged before the kill.
# Everything created here is removed here: processes by pid, namespaces by
# name.  Packages it needs (iproute2, redis-tools, iputils-arping) are
# installed with apt-get when missing.
set -eu

bdir=${1:?usage: netns-demo.sh BUILD_DIR}
bdir=$(cd "$bdir" && pwd)
VIP=10.77.0.100
KEYS=${KEYS:-200}
t=${COLO_NETNS_TAG:-$$}        # namespace names carry it: runs never collide
SW=colo-sw-$t NA=colo-na-$t NB=colo-nb-$t CL=colo-cl-$t
NS="$SW $NA $NB $CL"
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-netns-XXXXXX")
pid_a=""
pid_b=""

say() { printf '\n== %s\n' "$*"; }
die() { printf 'netns-demo: %s\n' "$*" >&2; exit 1; }

cleanup() {
	for p in $pid_a $pid_b; do kill "$p" 2>/dev/null || true; done
	for p in $pid_a $pid_b; do wait "$p" 2>/dev/null || true; done
	for ns in $NS; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" -eq 0 ] || die "network namespaces need root (run it with sudo)"
for p in colo-primary colo-secondary colo-ctl; do
	[ -x "$bdir/$p" ] || die "$bdir/$p is not built"
done
need=""
command -v ip >/dev/null || need="$need iproute2"
command -v redis-cli >/dev/null || need="$need redis-tools"
command -v arping >/dev/null || need="$need iputils-arping"
if [ -n "$need" ]; then
	echo "installing:$need"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need \
		>/dev/null || die "cannot install$need"
fi
for ns in $NS; do
	! ip netns list | grep -q "^$ns\b" || die "namespace $ns exists already"
done

in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }
cli() { in_ns "$CL" redis-cli -h "$VIP" -p 6379 "$@"; }

say "1. namespaces: switch, node a (10.77.0.1), node b (10.77.0.2), client (10.77.0.10)"
for ns in $NS; do ip netns add "$ns"; done
in_ns "$SW" ip link add br0 type bridge
in_ns "$SW" ip link set br0 up
for node in "$NA na 10.77.0.1" "$NB nb 10.77.0.2" "$CL cl 10.77.0.10"; do
	set -- $node
	ip link add "v$2" netns "$1" type veth peer name "s$2" netns "$SW"
	in_ns "$1" ip addr add "$3/24" dev "v$2"
	in_ns "$1" ip link set "v$2" up
	in_ns "$1" ip link set lo up
	in_ns "$SW" ip link set "s$2" master br0
	in_ns "$SW" ip link set "s$2" up
done
in_ns "$NA" ip addr add "$VIP/24" dev vna
echo "service address $VIP is on node a"

say "2. start the secondary b and the primary a (kv guest, buffer mode, a shared key)"
# Off loopback a node without a key refuses to start: both get one file.
"$bdir/colo-ctl" keygen "$work/psk" >/dev/null || die "cannot write a key"
common="--guest kv --guest-listen $VIP:6379 --ram-mb 64 --heartbeat-timeout-ms 300"
common="$common --psk-file $work/psk"
# Started by exec, not through in_ns, so that $! is the daemon itself.
# shellcheck disable=SC2086
ip netns exec "$NB" "$bdir/colo-secondary" --name b $common --listen 10.77.0.2:7070 \
	--peer 10.77.0.1:7070 --control "$work/b.sock" --state-dir "$work/b" \
	--fence-command "ip netns exec $SW ip link set sna down" \
	--promote-command "ip addr add $VIP/24 dev vnb && arping -q -U -c 2 -I vnb $VIP" \
	>"$work/b.log" 2>&1 &
pid_b=$!
# shellcheck disable=SC2086
ip netns exec "$NA" "$bdir/colo-primary" --name a $common --peer 10.77.0.2:7070 \
	--control "$work/a.sock" --state-dir "$work/a" >"$work/a.log" 2>&1 &
pid_a=$!
i=0
until "$bdir/colo-ctl" -s "$work/a.sock" status --json 2>/dev/null |
	grep -q '"state": "protected"'; do
	i=$((i + 1))
	[ $i -lt 400 ] || { cat "$work/a.log" "$work/b.log"; die "the pair did not get protected"; }
	sleep 0.05
done
"$bdir/colo-ctl" -s "$work/a.sock" status | grep -E '^(state|peer|guest)'

say "3. the client writes $KEYS keys through $VIP (each OK came after its checkpoint)"
i=1
while [ $i -le "$KEYS" ]; do
	printf 'SET netns:%d value-%d\n' "$i" "$i"
	i=$((i + 1))
done >"$work/sets.txt"
oks=$(cli <"$work/sets.txt" | grep -c '^OK$' || true)
[ "$oks" -eq "$KEYS" ] || die "only $oks of $KEYS SETs were acknowledged"
cli INCRBY netns:counter 42 >/dev/null
echo "$oks SETs and an INCRBY acknowledged by node a"
# A client that stays connected across the failover: it sees its
# connection close when a dies, reconnects to the same address, and asks
# again (bash for /dev/tcp).
ip netns exec "$CL" bash -c '
	exec 4<>"/dev/tcp/$1/6379" || exit 1
	printf "GET netns:1\r\n" >&4
	read -r len <&4 && read -r val <&4
	echo "  connected to a: GET netns:1 -> ${val%?}"
	if read -r -t 10 line <&4; then echo "  unexpected: $line"; exit 1; fi
	echo "  a died: the connection closed; reconnecting to $1"
	for i in $(seq 100); do
		if exec 5<>"/dev/tcp/$1/6379"; then break; fi 2>/dev/null
		sleep 0.1
	done
	printf "GET netns:1\r\n" >&5
	read -r -t 5 len <&5 && read -r -t 5 val <&5
	echo "  reconnected (b): GET netns:1 -> ${val%?}"
	[ "${val%?}" = value-1 ]' held "$VIP" >"$work/held.out" 2>&1 &
held=$!
sleep 0.2

say "4. kill -9 the primary a"
t0=$(date +%s%N)
kill -9 "$pid_a"
wait "$pid_a" 2>/dev/null || true
pid_a=""
# What a client sees: nothing answers on the address until b has it.
i=0
until timeout 0.2 ip netns exec "$CL" redis-cli -h "$VIP" -p 6379 PING 2>/dev/null |
	grep -q PONG; do
	i=$((i + 1))
	[ $i -lt 200 ] || { cat "$work/b.log"; die "nothing answers on $VIP after the kill"; }
	sleep 0.02
done
t1=$(date +%s%N)
grep -E "fence-command|serving as primary|promote-command" "$work/b.log" |
	sed 's/^.*role=[a-z]*: /  b: /'
echo "first reply through $VIP: $(( (t1 - t0) / 1000000 )) ms after the kill"
st=0
wait "$held" || st=$?
echo "a client connected before the kill:"
cat "$work/held.out"
[ $st -eq 0 ] || die "the connected client did not get its reply from b"

say "5. the client reads back through $VIP (node b now)"
i=1
while [ $i -le "$KEYS" ]; do
	printf 'GET netns:%d\n' "$i"
	i=$((i + 1))
done >"$work/gets.txt"
ok=0
cli <"$work/gets.txt" >"$work/got.txt"
i=1
while read -r v; do
	[ "$v" = "value-$i" ] && ok=$((ok + 1))
	i=$((i + 1))
done <"$work/got.txt"
ctr=$(cli GET netns:counter)
echo "keys read back: $ok of $KEYS; counter $ctr"
[ "$ok" -eq "$KEYS" ] || die "$((KEYS - ok)) acknowledged keys are missing"
[ "$ctr" = 42 ] || die "the counter is $ctr, not 42"
cli SET after-failover yes >/dev/null
echo "node b accepts new writes"

say "summary"
echo "service address $VIP moved from node a to node b, answering $(( (t1 - t0) / 1000000 )) ms after the kill"
echo "$KEYS of $KEYS acknowledged keys and the counter read back from b; the connected client reconnected"
