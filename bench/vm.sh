#!/bin/sh
# vm.sh [--json] [--quick] [BUILD_DIR]: real QEMU virtual machines under a
#   colo pair on loopback (DESIGN.md §9 and its targets), in one run:
#
#   1. VM pause per checkpoint (QEMU's REQUEST->LOADED, colo-ctl status on
#      the primary) with colo's early answer (the default) and with
#      --vm-sync-ack yes (QEMU's own protocol: LOADED once the secondary has
#      the checkpoint), each a fresh pair, at checkpoint-interval 100 ms then
#      20 ms, as the ratio early / sync-ack (target <= 0.5); for (a) the
#      boot-sector guest under KVM and (b) the Linux test VM under TCG with
#      redis-benchmark writing (SET) through a port forward.
#   2. checkpoints/s, and bytes per checkpoint as QEMU sent them ("bytes
#      in") and as colo sent them (the primary's bytes_sent), over the same
#      windows: their ratio is what colo's encoding saves.
#   3. failover of the boot-sector guest at 256 MiB and 2 GiB: kill -9 of
#      the primary's QEMU to the VM on the secondary running, and to its
#      guest ticking (bench/colo-vmwatch), against heartbeat-timeout-ms
#      (target: <= timeout + 100 ms, the same at both sizes), and what the
#      secondary logs of it; median of RUNS runs per size.
#   4. the secondary's memory (colo-secondary + its standby QEMU, VmRSS and
#      RssShmem) over the VM's RAM after the first full sync, at both sizes
#      (target <= 1.1 x VM RAM + the largest checkpoint).
#
# A window is WINDOW checkpoints from QEMU after WARMUP_S seconds at that
# interval.  colo's p50/p90 are over QEMU's last 1024 pauses, so with the
# default WINDOW (1024) they are exactly the window's; the mean is the
# window's (from the sums); the max is the window's when it rose in it.
# (a) needs /dev/kvm (3 and 4 too); (b) needs the cached test VM
# (deploy/quickstart.sh vm-image), build/tests/vm/tcgfix.so (make
# tests/test_tcgfix) and redis-benchmark: each part is skipped, saying why,
# without them.  ~10 min (--quick: ~4 min, shorter windows, 1 run).
#
# Environment: WINDOW (1024), WARMUP_S (5), RUNS (3), HB_TIMEOUT_MS (300, the
# failover runs'), PAUSE_HB_TIMEOUT_MS (1000, the pause runs'),
# CLIENTS (4, redis-benchmark's), PARTS ("kvm tcg failover": which to run),
# COLO_VM_CACHE (the test VM's cache).
# Every process started here is stopped here, by its pid; loopback only.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
json=0
quick=0
bdir=""
for a in "$@"; do
	case $a in
	--json) json=1 ;;
	--quick) quick=1 ;;
	-h | --help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) echo "vm.sh: unknown option $a" >&2; exit 2 ;;
	*) bdir=$a ;;
	esac
done
bdir=$(cd "${bdir:-$top/build}" && pwd)
if [ $quick -eq 1 ]; then
	WINDOW=${WINDOW:-256}
	WARMUP_S=${WARMUP_S:-3}
	RUNS=${RUNS:-1}
fi
WINDOW=${WINDOW:-1024}
WARMUP_S=${WARMUP_S:-5}
RUNS=${RUNS:-3}
HB=${HB_TIMEOUT_MS:-300}
# The pause pairs: a failover there would end a window, and on these shared
# 2-CPU machines a TCG pair saw spurious ones at 300 ms (docs/BENCHMARKS.md).
PAUSE_HB=${PAUSE_HB_TIMEOUT_MS:-1000}
CLIENTS=${CLIENTS:-4}
PARTS=${PARTS:-kvm tcg failover}
RING=1024 # QEMU_PAUSE_RING: the pauses colo's p50/p90 are taken over
ctl=$bdir/colo-ctl
img=$bdir/tests/vm/bootsec.img
fix=$bdir/tests/vm/tcgfix.so
cache=${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-vmbench-XXXXXX")
# The secondary's committed RAM: tmpfs, a name of this run's own.
shm=/dev/shm/colo-vmbench-$$
res=$work/results
: >"$res"
pids=""

say() { printf '%s\n' "$*" >&2; }
die() { say "vm.sh: $*"; exit 1; }
# fail NAME WHY: a pair failed; its logs and QEMU's are kept, the run goes on
keep=${TMPDIR:-/tmp}/colo-vmbench-logs-$$
failed=0
fail() {
	say "vm.sh: $1: $2"
	logs "$1"
	mkdir -p "$keep"
	cp -r "$work/$1"-* "$keep/" 2>/dev/null || true
	rm -f "$keep"/*.sock "$keep"/*/*.sock "$keep"/*.qmp 2>/dev/null || true
	printf 'fail %s %s (logs in %s)\n' "$1" "$2" "$keep" >>"$res"
	failed=1
	return 1
}

stop_pids() {
	for p in $pids; do
		kill "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait "$p" 2>/dev/null || true
	done
	pids=""
}

cleanup() {
	stop_pids
	rm -f "$shm"-*.ram
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for p in colo-primary colo-secondary colo-ctl bench/colo-vmwatch; do
	[ -x "$bdir/$p" ] || die "$bdir/$p is not built (make in $bdir)"
done
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed"
# shellcheck source=tests/ports.sh
. "$top/tests/ports.sh"

# ---- what can run here ----
kvm_why=""
if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	kvm_why="no usable /dev/kvm"
elif ! [ -f "$img" ]; then
	kvm_why="$img is not built (make -C $bdir tests/vm/bootsec.img)"
fi
tcg_why=""
kernel=$cache/vmlinux
[ -f "$kernel" ] || kernel=$cache/vmlinuz
if ! [ -f "$kernel" ] || ! [ -f "$cache/initrd.img" ]; then
	tcg_why="the test VM is not cached in $cache (deploy/quickstart.sh vm-image)"
elif ! [ -f "$fix" ]; then
	tcg_why="$fix is not built (make -C $bdir tests/test_tcgfix)"
elif ! command -v redis-benchmark >/dev/null || ! command -v redis-cli >/dev/null; then
	tcg_why="redis-benchmark/redis-cli are not installed (apt-get install redis-tools)"
fi
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
skip() { printf 'skip %s\n' "$*" >>"$res"; say "skipped: $*"; }

commit=$(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$top" diff --quiet HEAD 2>/dev/null || commit="$commit+changes"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
qver=$(qemu-system-x86_64 -version | sed -n '1s/^QEMU emulator version //p')
say "vm.sh: commit $commit, load average $load0, $(nproc) CPUs, QEMU $qver"
say "vm.sh: windows of $WINDOW checkpoints after ${WARMUP_S} s (heartbeat-timeout-ms $PAUSE_HB); failover runs $RUNS per size (heartbeat-timeout-ms $HB)"

# ---- a pair ----
# start_pair NAME SYNC_ACK INTERVAL_MS HB_TIMEOUT_MS ARGS_A ARGS_B [more
# options for both].  The secondary first (the primary finds it at once).
# The Linux VM's user-networking NIC is not under output commit: this bench
# measures pauses and failover, bench/vmnet.sh the network.
# Sets pid_a pid_b.
start_pair() {
	name=$1 sync=$2 ival=$3 hb=$4 args_a=$5 args_b=$6
	shift 6
	pa=$(free_port)
	pb=$(free_port)
	"$bdir/colo-secondary" --name "$name-b" --guest qemu --vm-args "$args_b" \
		--vm-net-unprotected yes --vm-ram-path "$shm-$name-b.ram" --listen "127.0.0.1:$pb" --peer "127.0.0.1:$pa" \
		--control "$work/$name-b.sock" --state-dir "$work/$name-b" \
		--heartbeat-timeout-ms "$hb" --checkpoint-interval-ms "$ival" "$@" \
		>"$work/$name-b.log" 2>&1 &
	pid_b=$!
	pids="$pids $pid_b"
	"$bdir/colo-primary" --name "$name-a" --guest qemu --vm-args "$args_a" \
		--vm-net-unprotected yes --listen "127.0.0.1:$pa" --peer "127.0.0.1:$pb" \
		--control "$work/$name-a.sock" --state-dir "$work/$name-a" \
		--heartbeat-timeout-ms "$hb" --checkpoint-interval-ms "$ival" \
		--vm-sync-ack "$sync" "$@" >"$work/$name-a.log" 2>&1 &
	pid_a=$!
	pids="$pids $pid_a"
}

logs() {
	for f in "$work/$1"-a.log "$work/$1"-b.log; do
		[ -f "$f" ] && { say "--- $f"; tail -n 8 "$f" >&2; }
	done
	return 0
}

alive() { kill -0 "$pid_a" 2>/dev/null && kill -0 "$pid_b" 2>/dev/null; }

# guest_line SOCK: the guest line of colo-ctl status
guest_line() { "$ctl" -s "$1" status 2>/dev/null | sed -n 's/^guest  *//p'; }

# wait_ready NAME SECONDS: both protected, QEMU's checkpoints flowing.
wait_ready() {
	i=0
	while :; do
		if "$ctl" -s "$work/$1-a.sock" status --json 2>/dev/null |
			grep -q '"state": "protected"'; then
			g=$(guest_line "$work/$1-a.sock")
			case $g in
			*"initial migration"*) ;;
			*" 0 checkpoints from QEMU"*) ;;
			*"checkpoints from QEMU"*) return 0 ;;
			esac
		fi
		alive || { fail "$1" "a node stopped before the pair was protected"; return 1; }
		i=$((i + 1))
		[ $i -lt $(($2 * 5)) ] || { fail "$1" "not protected within $2 s"; return 1; }
		sleep 0.2
	done
}

# counter RAMFILE: the boot-sector guest's counter in committed RAM
counter() { od -An -tu8 -j 65544 -N8 "$1" 2>/dev/null | tr -d ' '; }

wait_booted() {
	i=0
	until [ "$(counter "$shm-$1-b.ram")" -gt 0 ] 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 300 ] || { fail "$1" "the committed guest did not boot"; return 1; }
		sleep 0.1
	done
}

# snap SOCK: "time ckpts pages bytes_in p50 p90 mean max bytes_sent colo_ckpts
# pages_sent" from the primary's status and stats
snap() {
	t=$(date +%s.%N)
	g=$(guest_line "$1")
	st=$("$ctl" -s "$1" stats --json 2>/dev/null) || return 1
	printf '%s\n' "$g" | sed -n 's/.* \([0-9][0-9]*\) checkpoints from QEMU, \([0-9][0-9]*\) pages, \([0-9][0-9]*\) bytes in; VM pause p50 \([0-9.]*\) ms, p90 \([0-9.]*\) ms, mean \([0-9.]*\) ms, max \([0-9.]*\) ms.*/\1 \2 \3 \4 \5 \6 \7/p' |
		awk -v t="$t" \
			-v bs="$(printf '%s\n' "$st" | sed -n 's/^  "bytes_sent": \([0-9]*\).*/\1/p')" \
			-v ck="$(printf '%s\n' "$st" | sed -n 's/^  "checkpoints": \([0-9]*\).*/\1/p')" \
			-v ps="$(printf '%s\n' "$st" | sed -n 's/^  "pages_sent": \([0-9]*\).*/\1/p')" \
			'NF == 7 { print t, $0, bs + 0, ck + 0, ps + 0; ok = 1 } END { exit !ok }'
}

# redis_cmds PORT: commands the VM's Redis processed so far
redis_cmds() {
	timeout 10 redis-cli -h 127.0.0.1 -p "$1" info stats 2>/dev/null |
		tr -d '\r' | sed -n 's/^total_commands_processed://p'
}

# window NAME GUEST INTERVAL ANSWER [REDIS_PORT]: WINDOW checkpoints from
# QEMU; appends a "pause" line to the results.
window() {
	sock=$work/$1-a.sock
	s1=$(snap "$sock") || { fail "$1" "no status"; return 1; }
	r1=""
	[ -z "${5:-}" ] || r1=$(redis_cmds "$5")
	c1=$(echo "$s1" | cut -d' ' -f2)
	limit=$((WINDOW * ($3 + 300) / 1000 + 120))
	t_end=$(($(date +%s) + limit))
	while :; do
		sleep 0.5
		alive || { fail "$1" "a node stopped during the $3 ms window"; return 1; }
		s2=$(snap "$sock") || continue
		[ $(($(echo "$s2" | cut -d' ' -f2) - c1)) -lt "$WINDOW" ] || break
		[ "$(date +%s)" -lt $t_end ] || { fail "$1" "$WINDOW checkpoints took over $limit s"; return 1; }
	done
	r2=""
	[ -z "${5:-}" ] || r2=$(redis_cmds "$5")
	echo "$s1 $s2" | awk -v g="$2" -v iv="$3" -v ans="$4" -v ring="$RING" \
		-v r1="$r1" -v r2="$r2" '{
		# fields: t ck pages bin p50 p90 mean max bs colock ps, twice
		dt = $12 - $1; n = $13 - $2
		mean = ($18 * $13 - $7 * $2) / n
		if ($19 > $8 + 0.005) { mx = $19; mxin = 1 } else { mx = $8; mxin = 0 }
		inring = $13 < ring ? $13 : ring
		earlier = inring > n ? inring - n : 0
		sets = (r1 != "" && r2 != "") ? (r2 - r1) / dt : -1
		printf "pause %s %s %s %d %.2f %.2f %.2f %.3f %.2f %d %.2f %.2f %.0f %.0f %d %.0f\n",
		       g, iv, ans, n, dt, $16, $17, mean, mx, mxin, n / dt, ($21 - $10) / dt,
		       ($15 - $4) / n, ($20 - $9) / n, earlier, sets
	}' >>"$res"
	tail -n 1 "$res" | awk '{ printf "  %s %s ms %s: %d checkpoints in %.1f s, pause p50 %.2f p90 %.2f mean %.3f ms\n", $2, $3, $4, $5, $6, $7, $8, $9 }' >&2
}

# pause_runs NAME GUEST ARGS_FN [options]: both answers, 100 then 20 ms
# ARGS_FN NODE prints that node's vm-args; a Linux guest gets the SET load.
pause_runs() {
	base=$1 guest=$2 argsfn=$3
	shift 3
	for sync in no yes; do
		if [ $sync = no ]; then ans=early; else ans="sync-ack"; fi
		name=$base-$ans
		say "$guest, $ans answer: starting the pair"
		pause_pair "$@" || :
		stop_pids
	done
}

# pause_pair [options]: one pair of pause_runs (its variables), both intervals
pause_pair() {
	port_a=$(free_port)
	port_b=$(free_port)
	start_pair "$name" $sync 100 "$PAUSE_HB" "$($argsfn "$name-a" "$port_a")" \
		"$($argsfn "$name-b" "$port_b")" "$@"
	wait_ready "$name" 300 || return 1
	rport=""
	case $guest in
	linux*)
		i=0
		until grep -q '^colo-testvm: redis ready' "$work/$name-a.console" 2>/dev/null; do
			i=$((i + 1))
			if ! alive || [ $i -ge 1500 ]; then
				fail "$name" "the Linux VM did not boot"
				return 1
			fi
			sleep 0.2
		done
		i=0
		until [ "$(timeout 10 redis-cli -h 127.0.0.1 -p "$port_a" ping 2>/dev/null)" = PONG ]; do
			i=$((i + 1))
			[ $i -lt 100 ] || { fail "$name" "Redis does not answer"; return 1; }
			sleep 0.2
		done
		redis-benchmark -h 127.0.0.1 -p "$port_a" -t set -c "$CLIENTS" -n 2000000000 \
			-r 100000 -d 64 -q >/dev/null 2>&1 &
		pids="$pids $!"
		rport=$port_a
		;;
	*) wait_booted "$name" || return 1 ;;
	esac
	for iv in 100 20; do
		[ "$iv" = 100 ] || "$ctl" -s "$work/$name-a.sock" set-interval "$iv" >/dev/null
		sleep "$WARMUP_S"
		window "$name" "$guest" "$iv" "$ans" "$rport" || return 1
	done
}

kvm_args() {
	echo "-machine pc -accel kvm -cpu qemu64,pni=off -m ${VM_MEM:-256M} -nodefaults" \
		"-display none -drive file=$img,format=raw,if=ide,snapshot=on" \
		"-qmp unix:$work/$1-test.qmp,server=on,wait=off"
}

linux_args() {
	echo "-machine pc -accel tcg -m 262136k -nodefaults -display none -no-reboot" \
		"-kernel $kernel -initrd $cache/initrd.img -append console=ttyS0" \
		"-serial file:$work/$1.console" \
		"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:$2-:6379 -device virtio-net-pci,netdev=n0"
}

# ---- 1, 2: pause, checkpoints/s, bytes ----
if want kvm; then
	if [ -n "$kvm_why" ]; then
		skip "kvm (a) boot-sector guest under KVM: $kvm_why"
	else
		pause_runs kvm "bootsec-KVM-256MiB" kvm_args
	fi
fi
if want tcg; then
	if [ -n "$tcg_why" ]; then
		skip "tcg (b) Linux VM under TCG: $tcg_why"
	else
		# The test-only workaround of QEMU 7.2's TCG COLO bugs (docs/vm.md).
		printf '#!/bin/sh\nLD_PRELOAD=%s exec qemu-system-x86_64 "$@"\n' "$fix" >"$work/qemu"
		chmod +x "$work/qemu"
		pause_runs tcg "linux-TCG-256MiB+SET" linux_args \
			--qemu-binary "$work/qemu" --qemu-tcg-ok yes
	fi
fi

# ---- 3, 4: failover and memory ----
# proc_kb PID FIELD: FIELD of /proc/PID/status in kB
proc_kb() { sed -n "s/^$2:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$1/status"; }

failover_run() {
	size=$1 mib=$2 run=$3
	name=fo$mib-$run
	VM_MEM=$size
	start_pair "$name" no 100 "$HB" "$(kvm_args "$name-a")" "$(kvm_args "$name-b")"
	wait_ready "$name" 600 || return 1
	wait_booted "$name" || return 1
	# 3 s of checkpoints, sampled each 100 ms for the largest (pages sent
	# per colo checkpoint in a sample), then the secondary's memory.
	prev=$(snap "$work/$name-a.sock") || { fail "$name" "no status"; return 1; }
	largest=0
	i=0
	while [ $i -lt 30 ]; do
		sleep 0.1
		cur=$(snap "$work/$name-a.sock") || continue
		largest=$(echo "$prev $cur $largest" | awk '{
			d = $21 - $10; p = $22 - $11; m = $23
			if (d > 0 && p / d > m) m = p / d
			printf "%.0f", m }')
		prev=$cur
		i=$((i + 1))
	done
	standby=$(guest_line "$work/$name-b.sock" | sed -n 's/.*standby QEMU pid \([0-9]*\).*/\1/p')
	if [ -z "$standby" ] || [ "$standby" -eq 0 ]; then
		fail "$name" "no standby QEMU"
		return 1
	fi
	printf 'memory %s %s %s %s %s %s %s\n' "$mib" "$run" \
		"$(proc_kb "$pid_b" VmRSS)" "$(proc_kb "$pid_b" RssShmem)" \
		"$(proc_kb "$standby" VmRSS)" "$(proc_kb "$standby" RssShmem)" "$largest" >>"$res"
	qpid=$(guest_line "$work/$name-a.sock" | sed -n 's/.*(QEMU pid \([0-9]*\)).*/\1/p')
	[ -n "$qpid" ] || { fail "$name" "no QEMU pid on the primary"; return 1; }
	out=$("$bdir/bench/colo-vmwatch" "$work/$name-b-test.qmp" "$qpid" "$shm-$name-b.ram") ||
		{ fail "$name" "the VM did not run on the secondary"; return 1; }
	# colo-primary stops once its VM died (exit 7)
	st=0
	wait "$pid_a" || st=$?
	i=0
	until grep -q 'serving as primary' "$work/$name-b.log" &&
		grep -q 'VM running on the committed state' "$work/$name-b.log"; do
		i=$((i + 1))
		[ $i -lt 300 ] || { fail "$name" "the secondary did not log its takeover"; return 1; }
		sleep 0.1
	done
	serving=$(sed -n 's/.*serving as primary \([0-9.]*\) ms after the last heartbeat (timeout [0-9]* ms, overhead \([0-9.-]*\) ms).*/\1 \2/p' "$work/$name-b.log" | head -n 1)
	vmrun=$(sed -n 's/.*VM running on the committed state \([0-9.]*\) ms after the failover began: stream \([0-9.]*\) ms ([0-9]* bytes), QEMU start \([0-9.]*\) ms, load \([0-9.]*\) ms, announce \([0-9.]*\) ms.*/\1 \2 \3 \4 \5/p' "$work/$name-b.log" | head -n 1)
	echo "$out" | tr ' ' '\n' | sed -n 's/^[a-z_]*=//p' | tr '\n' ' ' |
		awk -v mib="$mib" -v run="$run" -v st="$st" -v s="$serving" -v v="$vmrun" \
			'{ printf "failover %s %s %s %s %s %s %s %s %s\n", mib, run, $1, $2, $3, $4, st, s, v }' >>"$res"
	tail -n 1 "$res" | awk '{ printf "  %s MiB run %s: kill to running %.1f ms, to ticking %.1f ms; serving as primary %.1f ms after the last heartbeat\n", $2, $3, $4, $5, $9 }' >&2
}

if want failover; then
	if [ -n "$kvm_why" ]; then
		skip "failover and memory (boot-sector guest under KVM): $kvm_why"
	else
		# (sh has no locals: the loop's names are used nowhere else)
		for fo_spec in 256M:256 2G:2048; do
			fo_run=1
			while [ $fo_run -le "$RUNS" ]; do
				say "failover, ${fo_spec%%:*} VM, run $fo_run of $RUNS"
				failover_run "${fo_spec%%:*}" "${fo_spec##*:}" "$fo_run" || :
				stop_pids
				fo_run=$((fo_run + 1))
			done
		done
	fi
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the report ----
awk -v json="$json" -v commit="$commit" -v load0="$load0" -v load1="$load1" \
	-v date="$(date -u +%Y-%m-%dT%H:%MZ)" -v cpus="$(nproc)" -v qver="$qver" \
	-v window="$WINDOW" -v warm="$WARMUP_S" -v runs="$RUNS" -v hb="$HB" -v ring="$RING" \
	-v phb="$PAUSE_HB" \
	-v clients="$CLIENTS" '
function med(a, n,    v, i, j, t) {
	for (i = 1; i <= n; i++) v[i] = a[i] + 0
	for (i = 2; i <= n; i++)
		for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
	return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
}
function r(a, b) { return b > 0 ? a / b : 0 }
function ok(c) { return c ? "met" : "MISSED" }
$1 == "skip" { $1 = ""; skipped[++nskip] = substr($0, 2); next }
$1 == "fail" { $1 = ""; failures[++nfail] = substr($0, 2); next }
$1 == "pause" {
	k = $2 SUBSEP $3 SUBSEP $4
	if (!(($2 SUBSEP $3) in seenrow)) { seenrow[$2, $3] = 1; rows[++nrows] = $2 SUBSEP $3 }
	N[k] = $5; DT[k] = $6; P50[k] = $7; P90[k] = $8; MEAN[k] = $9; MAX[k] = $10
	MAXIN[k] = $11; CKS[k] = $12; CCKS[k] = $13; BQ[k] = $14; BC[k] = $15; BEFORE[k] = $16
	SETS[k] = $17
	next
}
$1 == "memory" {
	m = $2; nm[m]++; i = nm[m]
	if (!(m in seenm)) { seenm[m] = 1; msizes[++nmsizes] = m }
	mrss[m, i] = $4; mshm[m, i] = $5; qrss[m, i] = $6; qshm[m, i] = $7; lg[m, i] = $8
	next
}
$1 == "failover" {
	m = $2; nf[m]++; i = nf[m]
	if (!(m in seenf)) { seenf[m] = 1; fsizes[++nfsizes] = m }
	run_ms[m, i] = $4; tick_ms[m, i] = $5; resumed[m, i] = $6; committed[m, i] = $7
	exitst[m, i] = $8; serving[m, i] = $9; overhead[m, i] = $10; vmrun[m, i] = $11
	stream[m, i] = $12; qstart[m, i] = $13; load[m, i] = $14; announce[m, i] = $15
	next
}
END {
	for (i = 1; i <= nrows; i++) {
		split(rows[i], rk, SUBSEP); g = rk[1]; iv = rk[2]
		e = g SUBSEP iv SUBSEP "early"; s = g SUBSEP iv SUBSEP "sync-ack"
		RP50[i] = r(P50[e], P50[s]); RP90[i] = r(P90[e], P90[s]); RMEAN[i] = r(MEAN[e], MEAN[s])
	}
	for (j = 1; j <= nfsizes; j++) {
		m = fsizes[j]; n = nf[m]
		for (i = 1; i <= n; i++) {
			a1[i] = run_ms[m, i]; a2[i] = tick_ms[m, i]; a3[i] = serving[m, i]
			a4[i] = overhead[m, i]; a5[i] = vmrun[m, i]; a6[i] = load[m, i]
			a7[i] = announce[m, i]; a8[i] = stream[m, i] + qstart[m, i]
			bad[m] += (resumed[m, i] < committed[m, i]) + (exitst[m, i] != 7)
		}
		FRUN[m] = med(a1, n); FTICK[m] = med(a2, n); FSERV[m] = med(a3, n)
		FOVER[m] = med(a4, n); FVM[m] = med(a5, n); FLOAD[m] = med(a6, n)
		FANN[m] = med(a7, n); FPREP[m] = med(a8, n)
		tmax[m] = 0
		for (i = 1; i <= n; i++) if (a2[i] > tmax[m]) tmax[m] = a2[i]
	}
	for (j = 1; j <= nmsizes; j++) {
		m = msizes[j]; n = nm[m]
		for (i = 1; i <= n; i++) {
			b1[i] = mrss[m, i]; b2[i] = mshm[m, i]; b3[i] = qrss[m, i]; b4[i] = qshm[m, i]
			b5[i] = mrss[m, i] + qrss[m, i]
		}
		MRSS[m] = med(b1, n); MSHM[m] = med(b2, n); QRSS[m] = med(b3, n); QSHM[m] = med(b4, n)
		MTOT[m] = med(b5, n)
		LG[m] = 0
		for (i = 1; i <= n; i++) if (lg[m, i] > LG[m]) LG[m] = lg[m, i]
	}
	if (json) { print_json(); exit }

	printf "\ncolo VM bench: commit %s, %s, %d CPUs, QEMU %s\n", commit, date, cpus, qver
	printf "load average at start %s, at the end %s\n", load0, load1
	for (i = 1; i <= nskip; i++) printf "skipped: %s\n", skipped[i]
	for (i = 1; i <= nfail; i++) printf "FAILED: %s\n", failures[i]

	if (nrows) {
		printf "\n1. VM pause per checkpoint, QEMU REQUEST->LOADED (colo-ctl status on the primary);\n"
		printf "   windows of %d checkpoints after %d s at the interval; early = colo answers once\n", window, warm
		printf "   the checkpoint is whole on the primary host, sync-ack = after the secondary has it\n"
		printf "%-22s %5s %-9s %6s %8s %8s %8s %9s\n", "guest", "ms", "answer", "ckpts", "p50 ms",
		       "p90 ms", "mean ms", "max ms"
		for (i = 1; i <= nrows; i++) {
			split(rows[i], rk, SUBSEP); g = rk[1]; iv = rk[2]
			for (a = 1; a <= 2; a++) {
				ans = a == 1 ? "early" : "sync-ack"; k = g SUBSEP iv SUBSEP ans
				if (!(k in N)) continue
				printf "%-22s %5s %-9s %6d %8.2f %8.2f %8.3f %8.2f%s\n",
				       a == 1 ? g : "", a == 1 ? iv : "", ans, N[k], P50[k], P90[k],
				       MEAN[k], MAX[k], MAXIN[k] ? " " : "*"
				if (BEFORE[k] > 0) earlynote = 1
			}
			if (RP50[i] > 0)
				printf "%-22s %5s %-9s %6s %7.2fx %7.2fx %7.2fx   target <= 0.5x (p50): %s\n",
				       "", "", "early/sync", "", RP50[i], RP90[i], RMEAN[i], ok(RP50[i] <= 0.5)
			if (g ~ /^linux/) {
				ref = iv == 100 ? 13.4 : (iv == 20 ? 4.3 : 0)
				e = g SUBSEP iv SUBSEP "early"
				if (ref > 0 && (e in N))
					printf "%-22s %5s %-9s %6s %8.2f   (reference: a throwaway secondary, median; early/reference %.2fx)\n",
					       "", "", "reference", "", ref, P50[e] / ref
			}
		}
		printf "   * max: no higher pause in the window than before it; shown is the max since the VM started\n"
		if (earlynote)
			printf "   (windows shorter than %d checkpoints: p50/p90 include the pauses just before the window)\n", ring

		printf "\n2. Checkpoints and bytes over the same windows (bytes in = QEMU'"'"'s stream to colo-primary;\n"
		printf "   colo = the primary'"'"'s bytes_sent to the secondary); gain = QEMU bytes / colo bytes\n"
		printf "%-22s %5s %-9s %8s %6s %8s %12s %12s %7s %8s\n", "guest", "ms", "answer", "QEMU ck/s",
		       "x ms", "colo ck/s", "KiB/ck QEMU", "KiB/ck colo", "gain", "SET/s"
		for (i = 1; i <= nrows; i++) {
			split(rows[i], rk, SUBSEP); g = rk[1]; iv = rk[2]
			for (a = 1; a <= 2; a++) {
				ans = a == 1 ? "early" : "sync-ack"; k = g SUBSEP iv SUBSEP ans
				if (!(k in N)) continue
				printf "%-22s %5s %-9s %8.1f %6.2f %8.1f %12.1f %12.1f %6.1fx %8s\n",
				       a == 1 ? g : "", a == 1 ? iv : "", ans, CKS[k], CKS[k] * iv / 1000,
				       CCKS[k], BQ[k] / 1024, BC[k] / 1024, r(BQ[k], BC[k]),
				       (SETS[k] >= 0 ? sprintf("%.0f", SETS[k]) : "-")
			}
		}
		printf "   x ms: QEMU checkpoints/s x the interval (1.00 = one per interval); SET/s: the VM'"'"'s Redis\n"
		printf "   (total_commands_processed) under redis-benchmark -t set -c %d during the window\n", clients
	}

	if (nfsizes) {
		printf "\n3. Failover, boot-sector guest under KVM: kill -9 of the primary'"'"'s QEMU (median of %d;\n", runs
		printf "   heartbeat-timeout-ms %d; target: VM running <= timeout + 100 ms, the same at both sizes)\n", hb
		printf "%-8s %9s %9s %9s %9s %10s %9s %9s %8s %9s\n", "VM RAM", "running", "ticking",
		       "/timeout", "-timeout", "serving", "overhead", "VM run", "load", "announce"
		for (j = 1; j <= nfsizes; j++) {
			m = fsizes[j]
			printf "%-8s %9.1f %9.1f %8.2fx %9.1f %10.1f %9.1f %9.1f %8.1f %9.1f\n",
			       (m >= 1024 ? (m / 1024) " GiB" : m " MiB"), FRUN[m], FTICK[m], FTICK[m] / hb,
			       FTICK[m] - hb, FSERV[m], FOVER[m], FVM[m], FLOAD[m], FANN[m]
		}
		if (nfsizes == 2) {
			s1 = fsizes[1]; s2 = fsizes[2]
			printf "%-8s %9s %8.2fx   (%s over %s, kill to ticking)\n", "ratio", "",
			       r(FTICK[s2], FTICK[s1]), (s2 >= 1024 ? (s2 / 1024) " GiB" : s2 " MiB"),
			       s1 " MiB"
		}
		allok = 1
		for (j = 1; j <= nfsizes; j++) {
			m = fsizes[j]
			if (tmax[m] > hb + 100) allok = 0
			if (bad[m]) printf "   !! %s MiB: %d run(s) where the VM resumed below the committed counter or colo-primary did not exit 7\n", m, bad[m]
		}
		printf "   target (every run, kill to ticking <= %d ms): %s\n", hb + 100, ok(allok)
		printf "   running/ticking: kill to the new QEMU running / to its guest counter moving (colo-vmwatch);\n"
		printf "   serving, overhead: the secondary'"'"'s log, from the last heartbeat; VM run = failover began to\n"
		printf "   running + announce-self and unsharing the RAM (load, announce: its parts)\n"
	}

	if (nmsizes) {
		printf "\n4. The secondary'"'"'s memory after the first full sync (median of %d; MiB)\n", runs
		printf "%-8s %14s %9s %14s %9s %9s %8s %10s %9s\n", "VM RAM", "colo-sec RSS", "of shmem",
		       "standby RSS", "of shmem", "total", "/ RAM", "largest ck", "bound"
		for (j = 1; j <= nmsizes; j++) {
			m = msizes[j]; bound = 1.1 * m + LG[m] * 4 / 1024
			printf "%-8s %14.1f %9.1f %14.1f %9.1f %9.1f %7.3fx %7.0f pg %9.1f  %s\n",
			       (m >= 1024 ? (m / 1024) " GiB" : m " MiB"), MRSS[m] / 1024, MSHM[m] / 1024,
			       QRSS[m] / 1024, QSHM[m] / 1024, MTOT[m] / 1024, MTOT[m] / 1024 / m, LG[m],
			       bound, ok(MTOT[m] / 1024 <= bound)
		}
		printf "   total = both VmRSS (a page both map counts twice); largest ck = the most pages sent per\n"
		printf "   colo checkpoint in 100 ms samples over 3 s before the reading; bound = 1.1 x RAM + it x 4 KiB\n"
	}
}
function q(s) { return "\"" s "\"" }
function print_json(    i, j, a, k, g, iv, m, first) {
	printf "{\n  \"commit\": %s, \"date\": %s, \"cpus\": %d, \"qemu\": %s,\n", q(commit), q(date), cpus, q(qver)
	printf "  \"load_start\": %s, \"load_end\": %s, \"window\": %d, \"warmup_s\": %d,\n", q(load0), q(load1), window, warm
	printf "  \"heartbeat_timeout_ms\": %d, \"pause_heartbeat_timeout_ms\": %d, \"skipped\": [", hb, phb
	for (i = 1; i <= nskip; i++) printf "%s%s", (i > 1 ? ", " : ""), q(skipped[i])
	printf "],\n  \"failed\": ["
	for (i = 1; i <= nfail; i++) printf "%s%s", (i > 1 ? ", " : ""), q(failures[i])
	printf "],\n  \"pause\": ["
	first = 1
	for (i = 1; i <= nrows; i++) {
		split(rows[i], rk, SUBSEP); g = rk[1]; iv = rk[2]
		for (a = 1; a <= 2; a++) {
			ans = a == 1 ? "early" : "sync-ack"; k = g SUBSEP iv SUBSEP ans
			if (!(k in N)) continue
			printf "%s\n    {\"guest\": %s, \"interval_ms\": %d, \"answer\": %s, \"checkpoints\": %d, \"seconds\": %.2f, ", first ? "" : ",", q(g), iv, q(ans), N[k], DT[k]
			printf "\"p50_ms\": %.2f, \"p90_ms\": %.2f, \"mean_ms\": %.3f, \"max_ms\": %.2f, \"max_in_window\": %s, ", P50[k], P90[k], MEAN[k], MAX[k], MAXIN[k] ? "true" : "false"
			printf "\"ring_before_window\": %d, \"qemu_ckpt_per_s\": %.2f, \"colo_ckpt_per_s\": %.2f, ", BEFORE[k], CKS[k], CCKS[k]
			printf "\"qemu_bytes_per_ckpt\": %d, \"colo_bytes_per_ckpt\": %d, \"encoding_gain\": %.2f, \"sets_per_s\": %s}", BQ[k], BC[k], r(BQ[k], BC[k]), (SETS[k] >= 0 ? sprintf("%.0f", SETS[k]) : "null")
			first = 0
		}
	}
	printf "\n  ],\n  \"pause_ratio\": ["
	for (i = 1; i <= nrows; i++) {
		split(rows[i], rk, SUBSEP)
		printf "%s\n    {\"guest\": %s, \"interval_ms\": %d, \"early_over_sync_p50\": %.3f, \"p90\": %.3f, \"mean\": %.3f}", (i > 1 ? "," : ""), q(rk[1]), rk[2], RP50[i], RP90[i], RMEAN[i]
	}
	printf "\n  ],\n  \"failover\": ["
	for (j = 1; j <= nfsizes; j++) {
		m = fsizes[j]
		printf "%s\n    {\"ram_mib\": %d, \"runs\": %d, \"kill_to_running_ms\": %.1f, \"kill_to_ticking_ms\": %.1f, \"ticking_max_ms\": %.1f, ", (j > 1 ? "," : ""), m, nf[m], FRUN[m], FTICK[m], tmax[m]
		printf "\"serving_after_heartbeat_ms\": %.1f, \"overhead_ms\": %.1f, \"vm_running_log_ms\": %.1f, \"load_ms\": %.1f, \"announce_ms\": %.1f, \"bad_runs\": %d}", FSERV[m], FOVER[m], FVM[m], FLOAD[m], FANN[m], bad[m]
	}
	printf "\n  ],\n  \"memory\": ["
	for (j = 1; j <= nmsizes; j++) {
		m = msizes[j]
		printf "%s\n    {\"ram_mib\": %d, \"secondary_rss_kb\": %d, \"secondary_shmem_kb\": %d, \"standby_rss_kb\": %d, \"standby_shmem_kb\": %d, \"total_kb\": %d, \"largest_ckpt_pages\": %d}", (j > 1 ? "," : ""), m, MRSS[m], MSHM[m], QRSS[m], QSHM[m], MTOT[m], LG[m]
	}
	printf "\n  ]\n}\n"
}' "$res"
[ $failed -eq 0 ] || { say "vm.sh: a part failed; its logs are in $keep"; exit 1; }
