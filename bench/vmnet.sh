#!/bin/sh
# vmnet.sh [BUILD_DIR]: redis-benchmark against Redis inside the Linux test
#   VM (issue 19, docs/vm.md "The VM's network: output commit"), in one run,
#   for three targets on the network-namespace topology of tests/vmnet.sh
#   (the client in its own namespace, each node's bridge joined by a switch):
#
#   unprotected  plain QEMU on a tap in node a's bridge (no colo)
#   buffer       the VM under a colo pair (colo-primary in node a,
#                colo-secondary in node b) with output commit: the VM's
#                frames held until the secondary has the checkpoint after them
#   none         the same pair with --output-mode none (frames out at once)
#
#   All three run the same VM under TCG with the test-only QEMU 7.2
#   workarounds of tests/vmpair.sh (-m 262136k; for the pairs the
#   interposer tcgfix.so through a qemu-binary wrapper, --qemu-tcg-ok yes),
#   at checkpoint-interval 100 ms.  Only one target runs at a time (the
#   three share the VM's address and MAC, and an idle TCG VM, let alone a
#   pair checkpointing it every 100 ms, costs this machine's CPUs): each
#   round boots each target in turn, benchmarks it and stops it, so the
#   machine's drift hits them alike.  Prints the median requests/s and
#   p50/p99 of each test for each target, the ratios to the unprotected VM,
#   the output-commit pair's checkpoint figures (VM pause, colo's round
#   trip, frame release latency) and its NIC status, and whether the
#   issue's target is met: output commit >= 0.5x the unprotected VM at 50
#   clients with p50 <= the unprotected p50 + 2 checkpoint round trips.
#
# Needs root, /dev/net/tun, QEMU, redis-tools and the test VM
# (deploy/quickstart.sh vm-image); skips ("SKIP ...", exit 0) without them.
# ~5 min at the defaults.
#
# Environment: N (requests per test, default 10000), C (clients, 50),
# TESTS (set,get), ROUNDS (3: every figure is the median of this many
# rounds), PRIMARY_ARGS (more colo-primary options for the pairs, e.g.
# "--min-interval-ms 0"), BOOT_S (120: how long a target may take to serve
# Redis), COLO_VM_CACHE (the test VM's cache).
# Every process started here is stopped here, by its pid, and the
# namespaces (a tag per run) are removed.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
case ${1:-} in
-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
bdir=$(cd "${1:-$top/build}" && pwd)
N=${N:-10000}
C=${C:-50}
TESTS=${TESTS:-set,get}
ROUNDS=${ROUNDS:-3}
BOOT_S=${BOOT_S:-120}
ctl=$bdir/colo-ctl
fix=$bdir/tests/vm/tcgfix.so

say() { printf 'vmnet.sh: %s\n' "$*"; }
skip() { printf 'SKIP vmnet.sh: %s\n' "$*"; exit 0; }
die() { printf 'vmnet.sh: %s\n' "$*" >&2; exit 1; }

# shellcheck source=tests/vmnet.sh
. "$top/tests/vmnet.sh"
# shellcheck source=tests/ports.sh
. "$top/tests/ports.sh"

why=$(vmnet_usable) || skip "$why"
command -v redis-benchmark >/dev/null ||
	skip "redis-benchmark is not installed (apt-get install redis-tools)"
command -v qemu-system-x86_64 >/dev/null ||
	skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
why=$(vmnet_vm_files 2>&1) || skip "${why#vmnet: }"
vmnet_vm_files
for p in colo-primary colo-secondary colo-ctl; do
	[ -x "$bdir/$p" ] || die "$bdir/$p is not built (run deploy/quickstart.sh first)"
done
if [ ! -f "$fix" ]; then
	say "building tests/vm/tcgfix.so (the test-only interposer)"
	make -C "$bdir" -s tests/vm/tcgfix.so >/dev/null || die "make tests/vm/tcgfix.so failed"
fi

# The same VM everywhere: -m 262136k (QEMU 7.2 misses dirty pages under TCG
# at a multiple of 256 KiB: docs/vm.md), vmnet_vm_args' TCG.
# shellcheck disable=SC2034 # (both read by tests/vmnet.sh)
VMNET_MEM=262136k VMNET_ACCEL=tcg
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-vmnetbench-XXXXXX")
# the secondary's RAM file on a tmpfs, as by default (a disk would throttle it)
ram=/dev/shm/colo-vmnetbench-$$-b.ram
[ -d /dev/shm ] && [ -w /dev/shm ] || ram=$work/b.ram
# Off loopback a node needs a key (docs/security.md): one for every pair here.
"$bdir/colo-ctl" keygen "$work/psk" >/dev/null || exit 1
tag=vb$$
pids=""
up=0

# stop_pids: SIGTERM to what this script started, then wait for it.  The
# secondaries go first, so that no pair sees its primary stop and takes over.
stop_pids() {
	for p in $pids; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	pids=""
}

# ns_empty: no process is left in the topology's namespaces (colo's QEMUs
# end with their colo, by its stop or their parent-death signal).
ns_empty() {
	for n in $VMNET_NS; do
		[ -z "$(ip netns pids "$n" 2>/dev/null)" ] || return 1
	done
}

cleanup() {
	rc=$?
	stop_pids
	if [ $up -eq 1 ]; then
		i=0
		until ns_empty || [ $i -ge 100 ]; do
			i=$((i + 1)); sleep 0.1
		done
		vmnet_down || rc=1
	fi
	rm -f "$ram"
	if [ $rc -eq 0 ]; then
		rm -rf "$work"
	else
		echo "vmnet.sh: logs, consoles and statuses kept in $work" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The wrapper that preloads the interposer into the pairs' QEMUs only.
cat >"$work/qemu" <<EOS
#!/bin/sh
LD_PRELOAD=$fix exec qemu-system-x86_64 "\$@"
EOS
chmod +x "$work/qemu"

vmnet_up "$tag" || die "cannot build the network namespaces"
up=1
# Each node's bridge keeps the address it has now (its uplink's).  A bridge
# whose address was never set takes the lowest of its ports' MACs, so colo's
# tap (a random MAC) joining or leaving it changed the node's MAC under the
# other node's ARP cache: the next pair's replication connection then went
# unanswered for minutes (seen: a pair not protected after 120 s).
for ns in "$NA" "$NB"; do
	mac=$(in_ns "$ns" cat "/sys/class/net/$VMNET_BRIDGE/address")
	in_ns "$ns" ip link set "$VMNET_BRIDGE" address "$mac" || die "$ns: cannot set $VMNET_BRIDGE's address"
done
vmnet_tap "$NA" plain0 || die "cannot make the unprotected VM's tap"

field() { "$ctl" -s "$1" status 2>/dev/null | sed -n "s/^$2  *//p"; }

# wait_until SECS CMD...: until CMD succeeds (every 0.2 s)
wait_until() {
	_w_s=$1; shift
	_w_i=0
	while [ $_w_i -lt $((_w_s * 5)) ]; do
		"$@" >/dev/null 2>&1 && return 0
		_w_i=$((_w_i + 1)); sleep 0.2
	done
	return 1
}
pair_protected() {
	[ "$(field "$work/a.sock" state)" = protected ] &&
		[ "$(field "$work/b.sock" state)" = protected ]
}
pong() { [ "$(in_ns "$CL" timeout 2 redis-cli -h "$VM_IP" PING 2>/dev/null)" = PONG ]; }

# start_plain NAME: the unprotected VM, serving Redis
start_plain() {
	vmnet_plain_vm "$NA" plain0 "$work/$1-console.txt"
	pids="$VMNET_QEMU_PID"
	vmnet_wait_console "$work/$1-console.txt" "$BOOT_S" "$VMNET_QEMU_PID" ||
		die "the unprotected VM did not boot"
	vmnet_wait_redis 30 || die "the unprotected VM's Redis does not answer from $CL"
}

# start_pair NAME MODE: the VM under a pair with output-mode MODE, protected
# on both nodes and serving Redis.  State dirs and logs per round (NAME).
start_pair() {
	port_b=$(free_port)
	port_a=$(free_port)
	rm -rf "$work/a" "$work/b" "$work/a.sock" "$work/b.sock" "$ram"
	# colo splits vm-args as a shell does: the kernel's command line is one
	# argument in single quotes.  A console file per node (the secondary's
	# standby QEMU opens its own).
	vmargs_a="$(vmnet_vm_args "$work/$1-a-console.txt") -append '$VM_APPEND'"
	vmargs_b="$(vmnet_vm_args "$work/$1-b-console.txt") -append '$VM_APPEND'"
	ip netns exec "$NB" "$bdir/colo-secondary" --name b --guest qemu \
		--qemu-binary "$work/qemu" --qemu-tcg-ok yes --vm-args "$vmargs_b" \
		--vm-ram-path "$ram" --vm-nics "virtio-net-pci,mac=$VM_MAC" \
		--vm-tap colo-vm0 --vm-bridge "$VMNET_BRIDGE" \
		--listen "$NB_IP:$port_b" --peer "$NA_IP:$port_a" --control "$work/b.sock" \
		--psk-file "$work/psk" --allow-split-brain \
		--state-dir "$work/b" --heartbeat-timeout-ms 1000 --checkpoint-interval-ms 100 \
		>"$work/$1-b.log" 2>&1 </dev/null &
	pids="$!"
	# shellcheck disable=SC2086
	ip netns exec "$NA" "$bdir/colo-primary" --name a --guest qemu \
		--qemu-binary "$work/qemu" --qemu-tcg-ok yes --vm-args "$vmargs_a" \
		--vm-nics "virtio-net-pci,mac=$VM_MAC" \
		--vm-tap colo-vm0 --vm-bridge "$VMNET_BRIDGE" \
		--listen "$NA_IP:$port_a" --peer "$NB_IP:$port_b" --control "$work/a.sock" \
		--psk-file "$work/psk" \
		--state-dir "$work/a" --heartbeat-timeout-ms 1000 --checkpoint-interval-ms 100 \
		--output-mode "$2" ${PRIMARY_ARGS:-} \
		>"$work/$1-a.log" 2>&1 </dev/null &
	pids="$pids $!"
	if ! wait_until "$BOOT_S" pair_protected; then
		tail -n 5 "$work/$1-a.log" "$work/$1-b.log" "$work/$1-a-console.txt" >&2
		"$ctl" -s "$work/a.sock" status >"$work/$1.a-status" 2>&1 || true
		"$ctl" -s "$work/b.sock" status >"$work/$1.b-status" 2>&1 || true
		die "the $2 pair did not get protected in $BOOT_S s"
	fi
	if ! wait_until "$BOOT_S" pong; then
		tail -n 5 "$work/$1-a.log" "$work/$1-b.log" "$work/$1-a-console.txt" >&2
		die "the VM under the $2 pair does not answer PING from $CL in $BOOT_S s"
	fi
}

# bench NAME: redis-benchmark from the client's namespace, CSV into NAME.csv
bench() {
	in_ns "$CL" redis-benchmark -h "$VM_IP" -p 6379 -c "$C" -n "$N" -t "$TESTS" --csv \
		>"$work/$1.csv" 2>"$work/$1.err" || {
		cat "$work/$1.err" >&2
		die "redis-benchmark against $1 failed"
	}
	if grep -qi error "$work/$1.err" "$work/$1.csv"; then
		cat "$work/$1.err" >&2
		die "redis-benchmark reported errors against $1"
	fi
}

# after_pair NAME MODE: the primary's status after its run; both nodes must
# still be protected (a failover or a lost secondary would void the figures)
after_pair() {
	"$ctl" -s "$work/a.sock" status >"$work/$1.status" ||
		die "colo-ctl status of the $2 primary failed"
	pair_protected || {
		tail -n 5 "$work/$1-a.log" "$work/$1-b.log" >&2
		die "the $2 pair lost its protection during the run"
	}
}

say "redis-benchmark -n $N -c $C -t $TESTS from $CL to $VM_IP; $ROUNDS rounds;" \
	"$(nproc) CPUs; TCG, -m $VMNET_MEM, checkpoint-interval 100 ms"
[ -z "${PRIMARY_ARGS:-}" ] || say "the pairs' primaries run with: $PRIMARY_ARGS"
: >"$work/figures"
round=1
while [ "$round" -le "$ROUNDS" ]; do
	for tgt in unprotected buffer none; do
		run=$tgt.$round
		s0=$(date +%s)
		if [ $tgt = unprotected ]; then
			start_plain "$run"
		else
			start_pair "$run" $tgt
		fi
		s1=$(date +%s)
		bench "$run"
		[ $tgt = unprotected ] || after_pair "$run" $tgt
		stop_pids
		# B TARGET ROUND TEST RPS P50 P99 (CSV: "test","rps","avg_latency_ms",
		# "min","p50","p95","p99","max")
		awk -F'"' -v t=$tgt -v r="$round" '$2 != "test" {
			print "B", t, r, $2, $4, $10, $14 }' "$work/$run.csv" >>"$work/figures"
		line="round $round of $ROUNDS: $tgt (serving $((s1 - s0)) s after its start):"
		line="$line $(awk -F'"' '$2 != "test" { printf " %s %.0f/s p50 %s ms", $2, $4, $10 }' \
			"$work/$run.csv")"
		if [ $tgt != unprotected ]; then
			# K TARGET ROUND VM-PAUSE-P50 ROUND-TRIP-P50 RELEASE-P50 RELEASE-P99 (ms)
			g=$(sed -n 's/^guest  *//p' "$work/$run.status")
			pause=$(printf '%s\n' "$g" | sed -n 's/.*VM pause p50 \([0-9.]*\) ms.*/\1/p')
			rel=$(printf '%s\n' "$g" |
				sed -n 's/.*release p50 \([0-9.]*\) ms, p99 \([0-9.]*\) ms.*/\1 \2/p')
			rt=$(awk '$1 == "round-trip" { print $2 / 1000 }' "$work/$run.status")
			if [ -z "$pause" ] || [ -z "$rel" ] || [ -z "$rt" ]; then
				die "cannot read the $tgt primary's status ($work/$run.status)"
			fi
			echo "K $tgt $round $pause $rt $rel" >>"$work/figures"
			printf '%s\n' "$g" >"$work/$run.guest"
			line="$line; VM pause p50 $pause ms, round trip p50 $rt ms"
		fi
		say "$line"
	done
	round=$((round + 1))
done

# The table: medians over the rounds, and the targets.
awk -v rounds="$ROUNDS" -v clients="$C" '
# the median of a[k, 1..rounds]
function med(a, k,    v, i, j, t, n) {
	n = rounds
	for (i = 1; i <= n; i++)
		v[i] = a[k, i] + 0
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
$1 == "B" {
	if (!($4 in seen)) { seen[$4] = 1; order[++ntests] = $4 }
	rps[$2, $4, $3] = $5; p50[$2, $4, $3] = $6; p99[$2, $4, $3] = $7
}
$1 == "K" { pause[$2, $3] = $4; rt[$2, $3] = $5; rel50[$2, $3] = $6; rel99[$2, $3] = $7 }
END {
	split("unprotected buffer none", names, " ")
	label["unprotected"] = "unprotected VM"
	label["buffer"] = "output commit"
	label["none"] = "output-mode none"
	printf "\nmedians of %d rounds, %d clients\n", rounds, clients
	printf "%-6s %-17s %11s %9s %9s %9s %12s\n", "test", "target", "requests/s",
	       "p50 ms", "p99 ms", "vs unprot", "p50 - unprot"
	for (t = 1; t <= ntests; t++) {
		test = order[t]
		for (i = 1; i <= 3; i++) {
			n = names[i]
			R[n] = med(rps, n SUBSEP test)
			L[n] = med(p50, n SUBSEP test)
		}
		for (i = 1; i <= 3; i++) {
			n = names[i]
			printf "%-6s %-17s %11.0f %9.2f %9.2f %8.2fx %+11.2f\n", (i == 1 ? test : ""),
			       label[n], R[n], L[n], med(p99, n SUBSEP test),
			       R[n] / R["unprotected"], L[n] - L["unprotected"]
		}
		ratio[test] = R["buffer"] / R["unprotected"]
		lat[test] = L["buffer"]; lat0[test] = L["unprotected"]
	}
	printf "\ncheckpoints (medians of the rounds; p50s over the primary'"'"'s last 1,000)\n"
	printf "%-17s %13s %15s %16s %15s %15s\n", "pair", "VM pause p50", "round-trip p50",
	       "stop to ack p50", "release p50", "release p99"
	for (i = 2; i <= 3; i++) {
		n = names[i]
		ck[n] = med(pause, n) + med(rt, n)
		printf "%-17s %10.2f ms %12.2f ms %13.2f ms %12.2f ms %12.2f ms\n", label[n],
		       med(pause, n), med(rt, n), ck[n], med(rel50, n), med(rel99, n)
	}
	printf "(stop to ack: the VM stopped for its checkpoint to the secondary'"'"'s " \
	       "acknowledgement of it,\n VM pause + round trip: the least a held frame waits " \
	       "once its epoch closed)\n"
	printf "\ntarget: output commit >= 0.5x the unprotected VM at 50 clients, with p50 <= " \
	       "unprotected p50 + 2 checkpoint round trips (2 x %.2f ms)%s\n", ck["buffer"],
	       (clients == 50 ? "" : sprintf(" [this run: %d clients]", clients))
	for (t = 1; t <= ntests; t++) {
		test = order[t]
		bound = lat0[test] + 2 * ck["buffer"]
		printf "  %-6s throughput %.3fx: %s; p50 %.2f ms against %.2f + %.2f = %.2f ms: %s\n",
		       test, ratio[test], (ratio[test] >= 0.5 ? "met" : sprintf("MISSED (%.0f%% " \
		       "of the 0.5x)", 200 * ratio[test])),
		       lat[test], lat0[test], 2 * ck["buffer"], bound,
		       (lat[test] <= bound ? "met" : sprintf("MISSED by %.2f ms", lat[test] - bound))
	}
}' "$work/figures"

echo
echo "the output-commit primary's VM and NIC (colo-ctl status, guest line) after each round:"
round=1
while [ "$round" -le "$ROUNDS" ]; do
	sed "s/; NIC /\n    NIC /; s/^/  round $round: /" "$work/buffer.$round.guest"
	round=$((round + 1))
done
echo "the output-mode none primary's, last round:"
sed "s/; NIC /\n    NIC /; s/^/  round $ROUNDS: /" "$work/none.$ROUNDS.guest"
