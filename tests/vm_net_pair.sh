#!/bin/sh
# vm_net_pair.sh: output commit for a VM's network (DESIGN.md §9, docs/vm.md
# "The VM's network"): the Linux test VM (Redis inside) protected by a colo
# pair whose nodes live in network namespaces (tests/vmnet.sh), its NIC
# carried by colo to a tap in each node's bridge; a client namespace
# reaches the VM at 10.77.0.100 through the switch, behind whichever node
# serves it.  What must hold:
#   - a writer with 4 connections (tests/vmnet-writer) records every
#     acknowledged write while the primary dies COLO_VMNET_KILLS times (20;
#     `make check-long`: 100): by kill -9 of its QEMU or of its colo at
#     random moments, and by its own fault injection at each checkpoint
#     phase (--fault abort-at=PHASE, armed on the node restarted as the
#     secondary, so it fires once that node is the primary);
#   - after every kill the other node serves the VM and the killed one comes
#     back as the secondary;
#   - at the end every acknowledged write is there (lost 0, extra 0), and
#     the writer's connections were never reset (reconnects 0): TCP carried
#     on across every failover;
#   - the secondary killed: the primary answers through the VM unheld;
#   - the same kill with output-mode none loses acknowledged writes, and the
#     check says so: it is not blind;
#   - a secondary whose tap was deleted refuses to take over, on colo-ctl
#     failover (an error, it stays the secondary) and when the primary
#     dies (exit 7 before any fence: nobody could reach its VM).
# Under TCG with the test-only QEMU 7.2 workarounds (tests/vmpair.sh).
# Skipped without root, network namespaces, /dev/net/tun, QEMU, redis-cli or
# the cached test VM.  Timing is printed, never asserted.  Every process is
# stopped by its pid; the namespaces are removed.  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
skip() { echo "1..0 # SKIP $*"; exit 0; }

. "$top_srcdir/tests/vmnet.sh"
why=$(vmnet_usable 2>&1) || skip "$why"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"
vmnet_vm_files 2>/dev/null || skip "no test VM (deploy/quickstart.sh vm-image makes it)"
bdir=$(cd "$top_builddir" && pwd)
fix=$bdir/tests/vm/tcgfix.so
writer=$bdir/tests/vmnet-writer
[ -f "$fix" ] || { echo "Bail out! $fix is not built"; exit 1; }
[ -x "$writer" ] || { echo "Bail out! $writer is not built"; exit 1; }
KILLS=${COLO_VMNET_KILLS:-20}
PHASES="paused staged request encoded mid-send sent received"

work=$(mktemp -d "${TMPDIR:-/tmp}/colo-vmnet-XXXXXX") || exit 1
pids=""
wpid=""
cleanup() {
	[ -z "$wpid" ] || kill -9 "$wpid" 2>/dev/null
	for p in $pids; do kill "$p" 2>/dev/null; done
	for p in $wpid $pids; do wait "$p" 2>/dev/null; done
	vmnet_down >/dev/null 2>&1
	! command -v vm_ram_clean >/dev/null || vm_ram_clean
	[ -n "${COLO_TEST_KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

. "$top_srcdir/tests/tap.sh"
bail() {
	echo "Bail out! $*"
	for f in "$work"/*.log; do [ -f "$f" ] && tail -n 15 "$f" | sed "s|^|# $(basename "$f"): |"; done
	exit 1
}

. "$top_srcdir/tests/vmpair.sh"
vm_wrapper
VMNET_MEM=262136k
vmnet_up "v$$" || bail "cannot build the network namespaces"
"$bdir/colo-ctl" keygen "$work/psk" >/dev/null || bail "cannot write a key"

ip_of() { [ "$1" = a ] && echo "$NA_IP" || echo "$NB_IP"; }
ns_of() { [ "$1" = a ] && echo "$NA" || echo "$NB"; }
other() { [ "$1" = a ] && echo b || echo a; }
# netnode NAME ROLE [options]: colo-ROLE for NAME in its namespace, the VM's
# NIC on the tap colo-vm0 in its bridge; sets last_pid (colo's: ip execs it)
# No fence-command: this test kills nodes, it never partitions them.
netnode() {
	nm=$1 role=$2
	shift 2
	ip netns exec "$(ns_of "$nm")" "$bdir/colo-$role" --name "$nm" --guest qemu \
		--qemu-binary "$work/qemu" --qemu-tcg-ok yes \
		--vm-args "$(vmnet_vm_args "$work/$nm-console.txt") -append '$VM_APPEND'" \
		--vm-nics "virtio-net-pci,mac=$VM_MAC" --vm-tap colo-vm0 \
		--vm-bridge "$VMNET_BRIDGE" --vm-ram-path "$(vm_ram "$nm")" \
		--listen "$(ip_of "$nm"):7070" --peer "$(ip_of "$(other "$nm")"):7070" \
		--psk-file "$work/psk" --allow-split-brain \
		--control "$work/$nm.sock" --state-dir "$work/$nm" \
		--heartbeat-timeout-ms 1000 --checkpoint-interval-ms 100 "$@" \
		>>"$work/$nm.log" 2>&1 </dev/null &
	last_pid=$!
	pids="$pids $last_pid"
}
protected() { is_state "$1" protected && is_state "$2" protected; }
unprotected() { ! is_state "$1" protected; }
# reprotected P S: protected, or P was armed and its fault fired already
# (faults fire at regular checkpoints only, so S had the full sync)
reprotected() {
	eval "_p=\$pid_of_$1 _a=\$armed_$1"
	protected "$1" "$2" || { [ -n "$_a" ] && ! kill -0 "$_p" 2>/dev/null; }
}
committed() { ctl "$1" status | sed -n "s/^last committed checkpoint  *//p"; }
qemu_pid() { field "$1" guest | sed -n 's/.*QEMU pid \([0-9]*\).*/\1/p'; }
acked_some() { [ "$(vmnet_cli GET "$1:0:n" 2>/dev/null)" -ge 20 ] 2>/dev/null; }
# moved PREFIX FROM BY: client 0's counter went from FROM up by BY at least
moved() { [ "$(vmnet_cli GET "$1:0:n" 2>/dev/null)" -ge $(($2 + $3)) ] 2>/dev/null; }
rand_ms() { echo $(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1 )); }
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }
reconnects() { sed -n 's/^total .* reconnects \([0-9]*\) .*/\1/p' "$1"; }

echo "1..10"

# ---- 1: the pair protects the VM; the client reaches it ----
netnode b secondary; pid_b=$last_pid
sleep 1
netnode a primary; pid_a=$last_pid
if wait_until 300 protected a b && vmnet_wait_redis 300 2>/dev/null; then
	ok "the pair protects the VM; Redis answers at $VM_IP from the client's namespace"
else
	not_ok "protected, Redis through the tap" "$work/a.log" "$work/b.log" "$work/a-console.txt"
	bail "not protected"
fi

# ---- 2-4: kills while the writer writes ----
# ip execs the writer: $! is the writer's pid
ip netns exec "$CL" "$writer" write --host "$VM_IP" --port 6379 --clients 4 --prefix w \
	--out "$work/w.txt" >"$work/writer.log" 2>&1 &
wpid=$!
t_w0=$(date +%s.%N)
wait_until 120 acked_some w || bail "the writer acknowledged nothing: $(cat "$work/writer.log")"

primary=a
pid_of_a=$pid_a
pid_of_b=$pid_b
armed_a=""
armed_b=""
k=0
phase_i=0
took=""
while [ $k -lt "$KILLS" ]; do
	k=$((k + 1))
	sec=$(other "$primary")
	eval "ppid=\$pid_of_$primary armed=\$armed_$primary"
	if [ -n "$armed" ]; then
		how="its own fault at $armed"
	else
		# the writer goes on through the VM before each kill
		c0=$(vmnet_cli GET w:0:n 2>/dev/null)
		wait_until 60 moved w "${c0:-0}" 10 ||
			bail "kill $k: the writer made no progress: $(tail -n 2 "$work/writer.log")"
		sleep_ms "$(rand_ms 1500)"
		if [ $((k % 4)) -eq 2 ]; then
			how="kill -9 of its colo"
			kill -9 "$ppid"
		else
			how="kill -9 of its QEMU"
			q=$(qemu_pid "$primary")
			[ -n "$q" ] || bail "kill $k: no QEMU pid in $primary's status"
			kill -9 "$q"
		fi
	fi
	t_kill=$(date +%s.%N)
	# a fault fires at the first checkpoint of that phase past its mark
	t=0
	while kill -0 "$ppid" 2>/dev/null && [ $t -lt 600 ]; do sleep 0.2; t=$((t + 1)); done
	kill -0 "$ppid" 2>/dev/null && bail "kill $k ($how): $primary still runs"
	wait "$ppid" 2>/dev/null
	if ! wait_until 60 is_role "$sec" primary; then
		not_ok "kill $k ($how): $sec took over" "$work/$primary.log" "$work/$sec.log"
		bail "no takeover at kill $k"
	fi
	took="$took $(grep -h 'serving as primary' "$work/$sec.log" | tail -n 1 |
		sed -n 's/.*primary \([0-9.]*\) ms after.*/\1/p')"
	t_took=$(date +%s.%N)
	# the dead node comes back as the secondary; every other time armed to
	# kill itself at a checkpoint phase once it is the primary again
	arm=""
	# (not in the last two: the pair left at the end must stay put)
	if [ $((k % 2)) -eq 1 ] && [ $k -lt $((KILLS - 1)) ]; then
		phase_i=$((phase_i % 7 + 1))
		arm=$(echo "$PHASES" | cut -d' ' -f"$phase_i")
		netnode "$primary" secondary --fault "abort-at=$arm,after=$(($(committed "$sec") + 20))"
	else
		netnode "$primary" secondary
	fi
	eval "pid_of_$primary=\$last_pid armed_$primary=\$arm"
	sleep 1
	kill -0 "$last_pid" 2>/dev/null ||
		bail "kill $k: $primary did not start again as the secondary: $(tail -n 3 "$work/$primary.log")"
	if ! wait_until 300 reprotected "$sec" "$primary"; then
		not_ok "kill $k: $primary protects the VM again" "$work/$primary.log" "$work/$sec.log"
		bail "no reprotect after kill $k"
	fi
	# (t= as the writer counts, to match its lines about lost connections)
	echo "# kill $k: $primary, $how; $sec serves the VM" \
		"($(awk -v w="$t_w0" -v a="$t_kill" -v b="$t_took" -v c="$(date +%s.%N)" \
		'BEGIN { printf "killed at t=%.1f, served %.1f s after, protected again %.1f s later", a - w, b - a, c - b }'))"
	primary=$sec
done
echo "# takeover after the last heartbeat (ms):$took"
ok "$KILLS kills of the primary (QEMU, colo, and its own fault at each phase): the other node served the VM every time"

kill -TERM "$wpid"
wait "$wpid"; wst=$?
wpid=""
sed 's/^/# writer: /' "$work/writer.log"
[ $wst -eq 0 ] || bail "the writer ended with status $wst"
out=$(in_ns "$CL" "$writer" check --host "$VM_IP" --port 6379 --in "$work/w.txt" 2>"$work/check.err")
cst=$?
echo "# check: $out"
sed 's/^/# /' "$work/check.err" | head -n 20
case "$out" in
*"lost 0, extra 0"*) [ $cst -eq 0 ] && ok "every acknowledged write is there after $KILLS failovers: $out" ||
	not_ok "check exit $cst: $out" ;;
*) not_ok "acknowledged writes lost or invented: $out" ;;
esac
r=$(reconnects "$work/w.txt")
[ "$r" = 0 ] && ok "the writer's 4 connections were never reset: TCP carried on across every failover" ||
	not_ok "the writer reconnected $r times (want 0)" "$work/w.txt" "$work/writer.log"
ctl "$primary" status | sed -n 's/^guest .*; NIC/# the NIC of the last primary:/p'
out=$(ctl "$primary" stats)
o=$(echo "$out" | sed -n 's/^guest vm_net_out_frames  *//p')
e=$(echo "$out" | sed -n 's/^guest vm_net_epochs  *//p')
if [ "${o:-0}" -gt 0 ] 2>/dev/null && [ "${e:-0}" -gt 0 ] 2>/dev/null &&
   echo "$out" | grep -q '^guest vm_net_held_bytes ' &&
   echo "$out" | grep -q '^guest vm_net_release_p99_ms '; then
	ok "colo-ctl stats has the NIC's figures ($o frames out, $e epochs)"
else
	not_ok "colo-ctl stats: $(echo "$out" | grep '^guest' | tr '\n' ' ')"
fi

# the secondary dies: the VM's output is not held for a checkpoint nobody
# will acknowledge (a reply at all shows it: held, none would come)
eval "spid=\$pid_of_$(other "$primary")"
kill -9 "$spid"
wait "$spid" 2>/dev/null
if wait_until 30 unprotected "$primary" &&
   [ "$(vmnet_cli SET after-secondary 1 2>&1)" = OK ] &&
   [ "$(vmnet_cli GET after-secondary 2>&1)" = 1 ]; then
	ok "the secondary killed: the primary runs unprotected and the VM answers through it"
else
	not_ok "after the secondary's death: state $(field "$primary" state)" "$work/$primary.log"
fi

# ---- output-mode none loses what the client was told ----
for p in $pids; do kill "$p" 2>/dev/null; done
for p in $pids; do wait "$p" 2>/dev/null; done
pids=""
rm -rf "$work/a" "$work/b"
# checkpoints 1 s apart: what the VM acknowledged since the last is lost
netnode b secondary --output-mode none --checkpoint-interval-ms 1000; pid_b=$last_pid
sleep 1
netnode a primary --output-mode none --checkpoint-interval-ms 1000; pid_a=$last_pid
if wait_until 300 protected a b && vmnet_wait_redis 300 2>/dev/null; then
	ok "a pair with output-mode none protects the VM"
else
	not_ok "output-mode none: protected" "$work/a.log" "$work/b.log"
	bail "not protected"
fi
ip netns exec "$CL" "$writer" write --host "$VM_IP" --port 6379 --clients 4 --prefix z \
	--timeout-ms 3000 --out "$work/z.txt" >"$work/writer-none.log" 2>&1 &
wpid=$!
wait_until 120 acked_some z || bail "the writer acknowledged nothing: $(cat "$work/writer-none.log")"
sleep_ms $((1000 + $(rand_ms 1000)))
# Half-way between two checkpoints: a kill during one (the VM paused, the
# checkpoint on its way) would leave nothing acknowledged and uncommitted,
# and the check could not tell.
last=$(field b "last committed checkpoint")
i=0
while [ "$(field b "last committed checkpoint")" = "$last" ] && [ $i -lt 300 ]; do
	sleep_ms 10
	i=$((i + 1))
done
sleep_ms $((400 + $(rand_ms 200)))
kill -9 "$(qemu_pid a)"
wait_until 60 is_role b primary || bail "output-mode none: b did not take over"
wait_until 60 vmnet_wait_redis 1 || bail "output-mode none: no Redis after the failover"
sleep 4
kill -TERM "$wpid"
wait "$wpid"
wpid=""
out=$(in_ns "$CL" "$writer" check --host "$VM_IP" --port 6379 --in "$work/z.txt" 2>/dev/null)
cst=$?
echo "# check: $out"
case "$out" in
*"lost 0, "*) not_ok "output-mode none lost nothing, so the check cannot tell: $out" ;;
*lost*) [ $cst -eq 1 ] && ok "output-mode none: acknowledged writes lost and the check says so: $out" ||
	not_ok "check exit $cst: $out" ;;
*) not_ok "check said: $out" ;;
esac

# ---- 7-8: a secondary whose tap is gone does not take over ----
netnode a secondary; pid_a=$last_pid
wait_until 300 protected b a || bail "a did not protect the VM again"
ip -n "$NA" link del colo-vm0 || bail "cannot delete a's tap"
out=$(ctl a failover)
if echo "$out" | grep -q "not taking over: vm-tap colo-vm0 is gone" && is_role a secondary; then
	ok "colo-ctl failover on a secondary whose tap is gone: refused ($out)"
else
	not_ok "failover with the tap gone: '$out', role $(field a role)" "$work/a.log"
fi
kill -9 "$(qemu_pid b)"
wait "$pid_a"; st=$?
if [ $st -eq 7 ] && grep -q "but not taking over: vm-tap colo-vm0 is gone" "$work/a.log"; then
	ok "the primary dies and the secondary's tap is gone: it exits 7 without serving the VM"
else
	not_ok "tap gone at the heartbeat timeout: exit $st" "$work/a.log"
fi
[ $fails -eq 0 ]
