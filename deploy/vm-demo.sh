#!/bin/sh
# vm-demo.sh BUILD_DIR: the Linux test VM (Redis inside) protected by a colo
# pair on loopback, a failover, and a summary (deploy/quickstart.sh vm runs it).
#
# The VM runs under QEMU's TCG here (this machine's KVM runs no Linux guest),
# so it takes the test-only workarounds for QEMU 7.2's COLO bugs under TCG
# (docs/vm.md): the interposer tests/vm/tcgfix.so through a qemu-binary
# wrapper, -m 262136k and --qemu-tcg-ok yes.  A production VM runs under KVM
# and needs none of them.  Every process started here is stopped here.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
bdir=$(cd "${1:-$top/build}" && pwd)
cache=${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-vm-demo-XXXXXX")
pids=""

die() { printf 'vm-demo: %s\n' "$*" >&2; exit 1; }
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	! command -v vm_ram_clean >/dev/null || vm_ram_clean
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

kernel=$cache/vmlinux
[ -f "$kernel" ] || kernel=$cache/vmlinuz
[ -f "$kernel" ] && [ -f "$cache/initrd.img" ] ||
	die "no test VM in $cache (deploy/quickstart.sh vm-image makes it)"
fix=$bdir/tests/vm/tcgfix.so
[ -f "$fix" ] || (cd "$bdir" && make -s tests/vm/tcgfix.so) || die "cannot build $fix"

. "$top/tests/ports.sh"
port_a=$(free_port); port_b=$(free_port); redis_a=$(free_port); redis_b=$(free_port)
. "$top/tests/vmpair.sh"
vm_wrapper
protected() { is_state a protected && pong "$redis_a"; }
primary_b() { is_role b primary && pong "$redis_b"; }

echo "starting colo-secondary (b), then colo-primary (a) with the test VM (Linux + Redis)"
node b secondary "$port_b" "$port_a" "$redis_b"
sleep 1
node a primary "$port_a" "$port_b" "$redis_a"
wait_until 300 protected || { tail -20 "$work/a.log" "$work/b.log"; die "the pair did not get protected"; }
echo "protected; the VM's Redis answers on 127.0.0.1:$redis_a"
echo "colo-ctl status (a), guest line:"
echo "  $(field a guest)"

echo "writing 1000 keys into the VM's Redis"
i=1
while [ $i -le 1000 ]; do echo "SET key:$i value:$i"; i=$((i + 1)); done |
	redis-cli -h 127.0.0.1 -p "$redis_a" >/dev/null
run_id=$(info "$redis_a" run_id); up=$(info "$redis_a" uptime_in_seconds)
commit a || die "no checkpoint committed"
echo "a checkpoint holding them is committed on b"

qpid=$(field a guest | sed -n 's/.*QEMU pid \([0-9]*\).*/\1/p')
echo "kill -9 of the primary's QEMU (pid $qpid)"
t0=$(date +%s%N)
kill -9 "$qpid"
wait_until 60 primary_b || { tail -20 "$work/a.log" "$work/b.log"; die "b did not take over"; }
t1=$(date +%s%N)
run_id2=$(info "$redis_b" run_id); up2=$(info "$redis_b" uptime_in_seconds)
n=$(rc "$redis_b" dbsize)
bad=0
i=1
while [ $i -le 1000 ]; do echo "GET key:$i"; i=$((i + 1)); done |
	redis-cli -h 127.0.0.1 -p "$redis_b" >"$work/got"
i=1
while [ $i -le 1000 ]; do echo "value:$i"; i=$((i + 1)); done >"$work/want"
cmp -s "$work/got" "$work/want" || bad=1

echo
echo "== summary"
grep -h 'serving as primary\|VM running on the committed' "$work/b.log" | sed 's/^.*role=[a-z]*: /  b: /'
echo "  Redis on b answered $(( (t1 - t0) / 1000000 )) ms after the kill (heartbeat timeout 1000 ms;"
echo "  the poll that saw it runs every 200 ms)"
echo "  Redis run_id before: $run_id"
echo "  Redis run_id after:  $run_id2 $( [ "$run_id" = "$run_id2" ] && echo '(the same process: no reboot)')"
echo "  Redis uptime: $up s before, $up2 s after"
echo "  keys on b: $n; the 1000 written before the committed checkpoint: $( [ $bad -eq 0 ] && echo 'all there, with their values' || echo 'MISSING')"
[ "$run_id" = "$run_id2" ] && [ $bad -eq 0 ] || exit 1
