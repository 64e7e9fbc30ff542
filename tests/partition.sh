#!/bin/sh
# partition.sh: the partition test (issue 12, docs/partition-test.md).  A kv
# pair, an etcd arbiter and clients in network namespaces of their own,
# random fault schedules (partitions, flapping links, kill -9, slow and lossy
# links), and tests/partcheck on what the clients were told, what the pair
# kept and when each node released output.
#
#   colo-psw-T  the switch: a bridge; every partition and loss is an nft rule
#               on it (bridge family, by MAC), every slow link a tbf qdisc
#   colo-pa-T   node a, 10.78.0.1 (the first primary, holds 10.78.0.100)
#   colo-pb-T   node b, 10.78.0.2
#   colo-pe-T   etcd: one member on 10.78.0.5, or three on .5, .6, .7
#   colo-pc-T   the clients, 10.78.0.10: 3 partclient processes writing
#               through the service address 10.78.0.100:6379
# (T: $PART_TAG, else the pid: runs never collide.)
#
# Modes (environment):
#   default       make check: ARBITER=etcd with 1 member for 3 random
#                 schedules, then ARBITER=none for the split-brain schedule,
#                 which the checker must fail
#   PART_LONG=1   make check-long: LONG_SCHEDULES (50) random schedules with
#                 1 etcd member, then as many with 3 members
#   ARBITER=etcd  SCHEDULES (3) random schedules, ETCD_MEMBERS (1 or 3)
#   ARBITER=none  the split-brain schedule, then SCHEDULES (0) random ones;
#                 passes when the checker finds the split brain
#   SEED=N        the first schedule's seed (schedule i uses SEED+i); printed
#   KEEP=1        keep the work directory (it is kept anyway on a failure)
#
# TAP on stdout; every process is stopped by its pid and every namespace
# deleted, also on a failure and on INT or TERM.  Skipped (1..0 # SKIP)
# without root, network namespaces, nft, etcd or arping.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u

: "${top_builddir:=.}"
: "${top_srcdir:=..}"
skip() { echo "1..0 # SKIP $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
for c in ip nft tc arping etcd; do
	command -v "$c" >/dev/null || skip "$c is not installed (deploy/quickstart.sh installs it)"
done
bdir=$(cd "$top_builddir" && pwd)
for p in colo-primary colo-secondary colo-ctl tests/partclient tests/partcheck; do
	[ -x "$bdir/$p" ] || { echo "1..1"; echo "not ok 1 - $bdir/$p is not built"; exit 1; }
done
T=${PART_TAG:-$$}
probe=colo-pprobe-$T
ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace here"
ip netns exec "$probe" nft add table bridge probe 2>/dev/null ||
	{ ip netns del "$probe"; skip "nft cannot make a bridge table here"; }
ip netns del "$probe"

SW=colo-psw-$T NA=colo-pa-$T NB=colo-pb-$T NE=colo-pe-$T NC=colo-pc-$T
NS_ALL="$SW $NA $NB $NE $NC"
NET=10.78.0
VIP=$NET.100
declare -A NS=([a]=$NA [b]=$NB [e]=$NE [c]=$NC)
declare -A IP=([a]=$NET.1 [b]=$NET.2 [c]=$NET.10)
declare -A MAC=([a]=02:78:00:00:00:01 [b]=02:78:00:00:00:02 [e]=02:78:00:00:00:05
		[c]=02:78:00:00:00:0a)
declare -A PID=([a]="" [b]="" [e0]="" [e1]="" [e2]="")
declare -A INC=([a]=0 [b]=0)      # incarnations: one release log each
declare -A RL=([a]="" [b]="")     # the current incarnation's release log
declare -A ROLE=([a]=primary [b]=secondary)
CLIENTS=3
client_pids=""
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-part-XXXXXX")
failed=0
say() { echo "# $*"; echo "$(date +%T.%N | cut -c1-12) $*" >>"$work/driver.log"; }
now_ns() { date +%s%N; }

# ---- cleanup: every process by pid, every namespace by name ----

stop_pid() {   # stop_pid PID: TERM, 3 s, KILL; reaped
	local p=$1 i=0
	[ -n "$p" ] || return 0
	kill "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
	while alive "$p" && [ $i -lt 30 ]; do sleep 0.1; i=$((i + 1)); done
	alive "$p" && kill -9 "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}
alive() {      # alive PID: running (a zombie is not)
	local s
	s=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) && [ "$s" != Z ]
}
cleanup() {
	local p
	for p in $client_pids; do stop_pid "$p"; done
	for p in a b; do
		if [ -n "${PID[$p]}" ]; then
			stop_pid "${PID[$p]}"
			PID[$p]=""
		fi
	done
	for p in e0 e1 e2; do stop_pid "${PID[$p]}"; PID[$p]=""; done
	for ns in $NS_ALL; do ip netns del "$ns" 2>/dev/null; done
	if [ $failed -eq 0 ] && [ -z "${KEEP:-}" ]; then
		rm -rf "$work"
	else
		echo "# logs kept in $work"
	fi
}
trap cleanup EXIT
trap 'failed=1; exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---- the network ----

build_net() {
	local x ns
	for ns in $NS_ALL; do
		! ip netns list | grep -q "^$ns\b" || { echo "namespace $ns exists"; return 1; }
		ip netns add "$ns" || return 1
	done
	in_ns "$SW" ip link add br0 type bridge
	in_ns "$SW" ip link set br0 up
	for x in a b e c; do
		ip link add v0 netns "${NS[$x]}" type veth peer name "s$x" netns "$SW" || return 1
		in_ns "${NS[$x]}" ip link set v0 address "${MAC[$x]}"
		in_ns "${NS[$x]}" ip link set v0 up
		in_ns "${NS[$x]}" ip link set lo up
		in_ns "$SW" ip link set "s$x" master br0
		in_ns "$SW" ip link set "s$x" up
	done
	for x in a b c; do in_ns "${NS[$x]}" ip addr add "${IP[$x]}/24" dev v0; done
	for x in 5 6 7; do in_ns "$NE" ip addr add "$NET.$x/24" dev v0; done
	in_ns "$SW" nft -f - <<-EOF || return 1
	table bridge part {
		chain cut { type filter hook forward priority 0; policy accept; }
		chain lossy { type filter hook forward priority 1; policy accept; }
	}
	EOF
}

# sever X Y: no frame between X and Y (a, b, e, c), both ways.
sever() {
	in_ns "$SW" nft add rule bridge part cut ether saddr "${MAC[$1]}" ether daddr "${MAC[$2]}" drop
	in_ns "$SW" nft add rule bridge part cut ether saddr "${MAC[$2]}" ether daddr "${MAC[$1]}" drop
}
heal_cuts() { in_ns "$SW" nft flush chain bridge part cut; }
# lossy X PCT: PCT % of the frames from and to X dropped.
lossy() {
	in_ns "$SW" nft add rule bridge part lossy ether saddr "${MAC[$1]}" numgen random mod 100 \< "$2" drop
	in_ns "$SW" nft add rule bridge part lossy ether daddr "${MAC[$1]}" numgen random mod 100 \< "$2" drop
}
# slow X RATE: X's link both ways through a token bucket of RATE.
slow() {
	in_ns "${NS[$1]}" tc qdisc replace dev v0 root tbf rate "$2" burst 32kbit latency 200ms
	in_ns "$SW" tc qdisc replace dev "s$1" root tbf rate "$2" burst 32kbit latency 200ms
}
heal_all() {
	local x
	heal_cuts
	in_ns "$SW" nft flush chain bridge part lossy
	for x in a b; do
		in_ns "${NS[$x]}" tc qdisc del dev v0 root 2>/dev/null
		in_ns "$SW" tc qdisc del dev "s$x" root 2>/dev/null
	done
	return 0
}

# ---- etcd ----

etcd_urls=""
start_etcd() {     # start_etcd MEMBERS
	local n=$1 i cluster="" ip
	etcd_urls=""
	for i in $(seq 0 $((n - 1))); do
		cluster="$cluster${cluster:+,}e$i=http://$NET.$((5 + i)):2380"
		etcd_urls="$etcd_urls${etcd_urls:+,}http://$NET.$((5 + i)):2379"
	done
	for i in $(seq 0 $((n - 1))); do
		ip=$NET.$((5 + i))
		rm -rf "$work/etcd$i"
		ip netns exec "$NE" etcd --name "e$i" --data-dir "$work/etcd$i" \
			--listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
			--listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
			--initial-cluster "$cluster" --initial-cluster-state new \
			--initial-cluster-token "part-$T" --log-level error \
			>"$work/etcd$i.log" 2>&1 &
		PID[e$i]=$!
	done
	for i in $(seq 1 200); do
		if in_ns "$NE" bash -c "exec 3<>/dev/tcp/$NET.5/2379 && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && grep -q '\"health\":\"true\"' <&3" 2>/dev/null; then
			say "etcd: $n member(s) healthy ($etcd_urls)"
			return 0
		fi
		sleep 0.1
	done
	say "etcd did not become healthy"
	return 1
}
stop_etcd() { local i; for i in e0 e1 e2; do stop_pid "${PID[$i]}"; PID[$i]=""; done; }

# ---- the nodes ----

has_flag() { "$bdir/colo-primary" --help 2>/dev/null | grep -q -- "$1"; }
other() { [ "$1" = a ] && echo b || echo a; }

start_node() {     # start_node X primary|secondary
	local x=$1 role=$2 o
	o=$(other "$x")
	INC[$x]=$((INC[$x] + 1))
	RL[$x]=$work/rl/$x.${INC[$x]}.$MODE_TAG.log
	ROLE[$x]=$role
	local args=(--name "$x" --guest kv --guest-listen "$VIP:6379" --ram-mb 64
		--heartbeat-timeout-ms 300 --psk-file "$work/psk"
		--listen "${IP[$x]}:7070" --peer "${IP[$o]}:7070"
		--control "$work/$x.sock" --state-dir "$work/state-$MODE_TAG-$x"
		--promote-command "ip addr add $VIP/24 dev v0 2>/dev/null; arping -q -U -c 2 -I v0 $VIP; true")
	[ -n "$HAVE_RL" ] && args+=(--release-log "${RL[$x]}")
	if [ "$ARB" = etcd ]; then
		args+=(--arbiter etcd --etcd-endpoints "$etcd_urls" --lease-ttl-ms 2000
			--cluster "part-$T-$MODE_TAG")
	elif [ -n "$HAVE_SPLIT" ]; then
		args+=(--allow-split-brain)
	fi
	echo "==== $(date +%T.%N) start $x as $role (incarnation ${INC[$x]})" >>"$work/$x.log"
	# Started by exec, not through a function, so that $! is the daemon.
	ip netns exec "${NS[$x]}" "$bdir/colo-$role" "${args[@]}" >>"$work/$x.log" 2>&1 &
	PID[$x]=$!
	say "start $x as $role, pid ${PID[$x]}, release log ${RL[$x]##*/}"
}

# status X: R S G C (role, state, generation, last committed) or "- - 0 0".
status() {
	local j
	j=$("$bdir/colo-ctl" -s "$work/$1.sock" -t 500 --json status 2>/dev/null) || { echo "- - 0 0"; return; }
	echo "$(jval "$j" role) $(jval "$j" state) $(jval "$j" generation) $(jval "$j" last_committed)"
}
jval() { local v; v=$(printf '%s' "$1" | sed -n "s/^ *\"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -1); echo "${v:--}"; }

# The node now serving as primary (a or b), else the last one known.
primary_now() {
	local x best="" bestg=-1 r s g c
	for x in a b; do
		[ -n "${PID[$x]}" ] || continue
		read -r r s g c <<<"$(status "$x")"
		if [ "$r" = primary ] && [ "$g" -gt "$bestg" ]; then best=$x; bestg=$g; fi
	done
	[ -n "$best" ] && LAST_P=$best
	echo "${LAST_P:-a}"
}

protected_now() { # protected_now X: X is a primary with a protected secondary
	local r st g c
	read -r r st g c <<<"$(status "$1")"
	[ "$r" = primary ] && [ "$st" = protected ]
}

kill9() {          # kill9 X: SIGKILL, then the release log's killed line
	local x=$1
	[ -n "${PID[$x]}" ] || return 0
	kill -9 "${PID[$x]}" 2>/dev/null
	wait "${PID[$x]}" 2>/dev/null
	echo "$(now_ns) - - killed 0" >>"${RL[$x]}"
	echo "==== $(date +%T.%N) killed by the driver (kill -9)" >>"$work/$x.log"
	say "kill -9 $x (pid ${PID[$x]})"
	PID[$x]=""
	EXITS="$EXITS $x:killed"
	restart "$x"
}

# restart X: X exited; it comes back as a secondary of the other one, with
# its state-dir, once the service address is off its interface.
restart() {
	local x=$1
	in_ns "${NS[$x]}" ip addr del "$VIP/24" dev v0 2>/dev/null
	start_node "$x" secondary
}

# reap: restart every node that exited by itself.
reap() {
	local x st
	for x in a b; do
		[ -n "${PID[$x]}" ] || continue
		alive "${PID[$x]}" && continue
		wait "${PID[$x]}"
		st=$?
		say "node $x (pid ${PID[$x]}, started as ${ROLE[$x]}) exited with status $st"
		echo "==== $(date +%T.%N) exited with status $st" >>"$work/$x.log"
		[ "$st" -eq 5 ] || UNEXPECTED="$UNEXPECTED $x:$st"
		EXITS="$EXITS $x:$st"
		PID[$x]=""
		restart "$x"
	done
}

tick() {           # tick MS: wait MS, restarting nodes that exit
	local end=$(($(now_ns) + $1 * 1000000))
	while [ "$(now_ns)" -lt $end ]; do
		reap
		sleep 0.05
	done
}

# wait_protected: until a primary is protected (20 s), its secondary the
# other node; the service address then only on the primary.
wait_protected() {
	local i=0 x r s g c o t0
	t0=$(now_ns)
	while [ $(($(now_ns) - t0)) -lt 20000000000 ]; do
		i=$((i + 1))
		reap
		for x in a b; do
			[ -n "${PID[$x]}" ] || continue
			read -r r s g c <<<"$(status "$x")"
			if [ "$r" = primary ] && [ "$s" = protected ]; then
				o=$(other "$x")
				in_ns "${NS[$o]}" ip addr del "$VIP/24" dev v0 2>/dev/null &&
					say "service address removed from $o (a secondary)"
				if ! in_ns "${NS[$x]}" ip -o addr show dev v0 | grep -q " $VIP/"; then
					in_ns "${NS[$x]}" ip addr add "$VIP/24" dev v0
					say "service address added to $x (the primary) by the driver"
				fi
				in_ns "${NS[$x]}" arping -q -U -c 1 -I v0 "$VIP"
				LAST_P=$x
				say "protected: $x primary gen $g after $(( ($(now_ns) - t0) / 1000000 )) ms"
				return 0
			fi
		done
		sleep 0.05
	done
	say "no protected primary after 20 s: a $(status a), b $(status b)"
	return 1
}

start_clients() { # start_clients SCHEDULE
	local k
	client_pids=""
	for k in $(seq 0 $((CLIENTS - 1))); do
		ip netns exec "$NC" "$bdir/tests/partclient" write --host "$VIP" --port 6379 \
			--schedule "$1" --client "$k" --out "$work/cl/$1.$k.log" --timeout-ms 1000 \
			--rate "${CLIENT_RATE:-400}" --seed "$((SEED_I * 10 + k))" >>"$work/clients.out" 2>&1 &
		client_pids="$client_pids $!"
	done
}
stop_clients() {
	local p
	for p in $client_pids; do stop_pid "$p"; done
	client_pids=""
}

readback() {       # readback SCHEDULE: every key written, read through VIP
	ip netns exec "$NC" "$bdir/tests/partclient" read --host "$VIP" --port 6379 \
		--out "$work/rb/$1" --deadline-ms 20000 --flush "$work"/cl/"$1".*.log \
		>>"$work/clients.out" 2>&1
}

# ---- fault schedules ----

rnd() { echo $(($1 + RANDOM % ($2 - $1 + 1))); }   # rnd LO HI

# A group: the nodes, namespaces or both that one side of a cut holds.
cut_groups() {     # cut_groups "X Y..." "Z..."
	local x y
	for x in $1; do for y in $2; do sever "$x" "$y"; done; done
}

# fault: one random fault from the schedule's generator, lasting ~DUR ms.
fault() {
	local p s kind dur what x rate
	p=$(primary_now)
	s=$(other "$p")
	kind=$((RANDOM % 9))
	dur=$(rnd 500 3000)
	case $kind in
	0) what="partition P|S ($p|$s)"; cut_groups "$p" "$s" ;;
	1) what="partition P|etcd ($p|etcd)"; cut_groups "$p" e ;;
	2) what="partition S|etcd ($s|etcd)"; cut_groups "$s" e ;;
	3) what="partition P|everyone ($p|$s,etcd,clients)"; cut_groups "$p" "$s e c" ;;
	4)
		case $((RANDOM % 4)) in
		0) x="$p|$s" ;; 1) x="$p|e" ;; 2) x="$s|e" ;; 3) x="$p|$s e c" ;;
		esac
		what="flapping ${x/e c/etcd,clients} for $dur ms"
		say "fault: $what"
		echo "  $what" >>"$work/schedules.txt"
		local end=$(($(now_ns) + dur * 1000000))
		while [ "$(now_ns)" -lt $end ]; do
			cut_groups "${x%%|*}" "${x#*|}"
			tick "$(rnd 100 400)"
			heal_cuts
			tick "$(rnd 100 400)"
		done
		return ;;
	5|6) dur=$(rnd 0 1500)
		x=$([ $kind -eq 5 ] && echo P || echo S)
		say "fault: kill -9 $x after $dur ms"
		tick "$dur"
		p=$(primary_now)
		s=$(other "$p")
		# The pair survives the loss of one node, not of a second one before
		# it is protected again: the kv guest lives in RAM, so the second
		# loss would lose its state whatever the arbiter does.
		if ! protected_now "$p"; then
			what="kill -9 $x skipped: the pair is not protected"
		elif [ $x = P ]; then
			what="kill -9 P ($p) after $dur ms"; kill9 "$p"
		else
			what="kill -9 S ($s) after $dur ms"; kill9 "$s"
		fi
		say "$what"; echo "  $what" >>"$work/schedules.txt"
		return ;;
	7) x=$(rnd 5 30); what="loss $x % on $p's link"; lossy "$p" "$x" ;;
	8) rate=$(( (RANDOM % 3 == 0) ? 1 : (RANDOM % 2 == 0 ? 4 : 16) ))mbit
		x=$([ $((RANDOM % 2)) -eq 0 ] && echo "$p" || echo "$s")
		what="slow link ($rate) on $x"; slow "$x" "$rate" ;;
	esac
	what="$what for $dur ms"
	say "fault: $what"
	echo "  $what" >>"$work/schedules.txt"
	tick "$dur"
}

# run_schedule NAME SEED [split]: a random schedule (or the split-brain one)
# under writing clients, heal, protected again, read back.
run_schedule() {
	local name=$1 n i ok=0
	SEED_I=$2
	RANDOM=$SEED_I
	echo "schedule $name seed $SEED_I (primary $(primary_now))" >>"$work/schedules.txt"
	say "schedule $name, seed $SEED_I"
	start_clients "$name"
	tick 1000
	if [ "${3:-}" = split ]; then
		local p s
		p=$(primary_now); s=$(other "$p")
		say "fault: partition P|S ($p|$s) for 3000 ms (heartbeat timeout 300 ms)"
		echo "  partition P|S ($p|$s) for 3000 ms" >>"$work/schedules.txt"
		sever "$p" "$s"
		tick 3000
	else
		n=$(rnd 2 4)
		for i in $(seq 1 "$n"); do
			fault
			[ $((RANDOM % 2)) -eq 0 ] && { heal_all; say "heal"; echo "  heal" >>"$work/schedules.txt"; }
		done
	fi
	heal_all
	say "heal everything"
	echo "  heal everything" >>"$work/schedules.txt"
	wait_protected && ok=1
	tick 500
	stop_clients
	if [ $ok -eq 1 ]; then
		readback "$name" || { say "read-back of $name incomplete"; ok=0; }
	fi
	[ $ok -eq 1 ]
}

# ---- one phase: a fresh pair (and etcd), schedules, the checker ----

# phase TAG ARBITER MEMBERS SCHEDULES SPLIT: sets PH_* with the checker's figures.
phase() {
	MODE_TAG=$1 ARB=$2
	local members=$3 count=$4 split=$5 i name bad=0 st
	local t0 out
	INC=([a]=0 [b]=0)
	LAST_P=a
	EXITS="" UNEXPECTED=""
	heal_all
	if [ "$ARB" = etcd ]; then start_etcd "$members" || return 2; fi
	in_ns "$NA" ip addr add "$VIP/24" dev v0 2>/dev/null
	in_ns "$NB" ip addr del "$VIP/24" dev v0 2>/dev/null
	start_node b secondary
	start_node a primary
	wait_protected || { stop_nodes; stop_etcd; return 2; }
	t0=$(now_ns)
	if [ "$split" = split ]; then
		run_schedule "${MODE_TAG}split" "$SEED" split || bad=1
	fi
	for i in $(seq 1 "$count"); do
		name="${MODE_TAG}s$i"
		if ! run_schedule "$name" $((SEED + i)); then
			# The rest of the phase would only wait on the same stuck pair.
			bad=1
			say "schedule $name did not end protected: the phase stops here"
			break
		fi
	done
	stop_nodes
	stop_etcd
	local args=(--end "$(now_ns)")
	for f in "$work"/cl/"$MODE_TAG"*.log; do [ -f "$f" ] && args+=(--client "$f"); done
	for f in "$work"/rb/"$MODE_TAG"*; do [ -f "$f" ] && args+=(--readback "$f"); done
	for f in "$work"/rl/*."$MODE_TAG".log; do [ -f "$f" ] && args+=(--release "$f"); done
	"$bdir/tests/partcheck" "${args[@]}" >"$work/check-$MODE_TAG.out" 2>&1
	st=$?
	out=$(grep '^partcheck:' "$work/check-$MODE_TAG.out")
	say "$out (exit $st) in $(( ($(now_ns) - t0) / 1000000000 )) s"
	grep -E '^(window|lost|contradiction|unread)' "$work/check-$MODE_TAG.out" | head -20 | sed 's/^/#   /'
	[ -n "$UNEXPECTED" ] && say "unexpected exits (not 5):$UNEXPECTED"
	say "node exits:${EXITS:- none}"
	PH_ST=$st PH_BAD=$bad PH_SUM=$out
	return 0
}
stop_nodes() {
	local x
	for x in a b; do
		[ -n "${PID[$x]}" ] || continue
		stop_pid "${PID[$x]}"
		PID[$x]=""
	done
}
figure() { echo "$PH_SUM" | sed -n "s/.* $1 \([0-9]*\).*/\1/p"; }

# ---- main ----

mkdir -p "$work/rl" "$work/cl" "$work/rb"
SEED=${SEED:-$(( $(date +%s) % 100000 ))}
HAVE_RL=""; has_flag --release-log && HAVE_RL=1
HAVE_SPLIT=""; has_flag --allow-split-brain && HAVE_SPLIT=1
HAVE_ARB=""; has_flag "--etcd-endpoints" && HAVE_ARB=1
"$bdir/colo-ctl" keygen "$work/psk" >/dev/null || { echo "1..1"; echo "not ok 1 - keygen"; exit 1; }
build_net || { failed=1; echo "1..1"; echo "not ok 1 - cannot build the namespaces"; exit 1; }
echo "# seed $SEED (replay: SEED=$SEED); work $work; release logs ${HAVE_RL:-not supported}"

plan=()
if [ -n "${PART_LONG:-}" ]; then
	plan=("e1 etcd 1 ${LONG_SCHEDULES:-50} -" "e3 etcd 3 ${LONG_SCHEDULES:-50} -")
elif [ "${ARBITER:-}" = etcd ]; then
	plan=("e${ETCD_MEMBERS:-1} etcd ${ETCD_MEMBERS:-1} ${SCHEDULES:-3} -")
elif [ "${ARBITER:-}" = none ]; then
	plan=("n none 0 ${SCHEDULES:-0} split")
else
	plan=("e1 etcd 1 ${SCHEDULES:-3} -" "n none 0 0 split")
fi
echo "1..${#plan[@]}"
k=0 tot_s=0 tot_a=0 tot_l=0 tot_w=0 tot_c=0 tot_u=0
for p in "${plan[@]}"; do
	read -r tag arb members count split <<<"$p"
	k=$((k + 1))
	if [ "$arb" = etcd ] && [ -z "$HAVE_ARB" ]; then
		echo "ok $k # SKIP colo-primary has no --arbiter yet"
		continue
	fi
	phase "$tag" "$arb" "$members" "$count" "$split"
	rc=$?
	if [ $rc -ne 0 ]; then
		failed=1
		echo "not ok $k - $arb: the pair never got protected"
		tail -n 20 "$work/a.log" "$work/b.log" | sed 's/^/#   /'
		continue
	fi
	s=$(figure schedules) a=$(figure acknowledged) l=$(figure lost) w=$(figure windows)
	o=$(figure observed-lost) c=$(figure contradictions) u=$(figure unread)
	tot_s=$((tot_s + s)) tot_a=$((tot_a + a)) tot_l=$((tot_l + l + o)) tot_w=$((tot_w + w))
	tot_c=$((tot_c + c)) tot_u=$((tot_u + u))
	if [ "$arb" = etcd ]; then
		if [ "$PH_ST" -eq 0 ] && [ "$PH_BAD" -eq 0 ]; then
			echo "ok $k - etcd arbiter, $members member(s): $s schedules, $a acknowledged writes, 0 lost, 0 contradicting reads, 0 double-release windows"
		else
			failed=1
			echo "not ok $k - etcd arbiter, $members member(s): $PH_SUM (checker exit $PH_ST, schedules ending unprotected: $PH_BAD)"
			sed 's/^/#   /' "$work/schedules.txt" | tail -n 40
		fi
	else
		# Without an arbiter the split brain must show, or the checker is blind.
		if [ "$PH_ST" -eq 1 ] && { [ "$((l + o + c))" -gt 0 ] || [ "$w" -gt 0 ]; }; then
			echo "ok $k - no arbiter: the split brain shows: $l acknowledged writes lost (+$o observed), $c contradicting reads, $w double-release windows of $a acknowledged writes"
		else
			failed=1
			echo "not ok $k - no arbiter: the checker saw no split brain: $PH_SUM (exit $PH_ST)"
			sed 's/^/#   /' "$work/schedules.txt" | tail -n 20
		fi
	fi
done
echo "# total: schedules $tot_s acknowledged $tot_a lost $tot_l contradictions $tot_c windows $tot_w unread $tot_u (seed $SEED)"
[ $failed -eq 0 ]
