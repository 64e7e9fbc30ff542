#!/bin/sh
# vm_linux_pair.sh: the Linux test VM (Redis inside) protected by a colo pair
# (DESIGN.md §9, docs/vm.md), under TCG with the test-only QEMU 7.2
# workarounds (tests/vm/tcgfix.so preloaded through a qemu-binary wrapper,
# -m 262136k, --qemu-tcg-ok yes).  What must hold:
#   - the pair gets protected and checkpoints flow; colo-ctl status shows the VM;
#   - keys written, then a checkpoint committed (colo-ctl checkpoint answers
#     once it is), then kill -9 of the primary's QEMU at a random moment: the
#     secondary runs the VM on; Redis answers on the secondary's port with
#     the same run_id and an uptime that went on (no reboot), and every key
#     of the committed checkpoint is there;
#   - the old primary comes back as the secondary (reprotect), then kill -9
#     of the new primary's colo itself (its QEMU dies with it): the VM runs
#     on the first node again with the keys.
# Skipped when the image is not cached (deploy/quickstart.sh vm-image), or
# QEMU or redis-cli is missing.  Timing is printed, never asserted.  Every
# process is stopped by its pid.  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
skip() { echo "1..0 # SKIP $*"; exit 0; }

cache=${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"
command -v redis-cli >/dev/null || skip "redis-cli is not installed"
kernel=$cache/vmlinux
[ -f "$kernel" ] || kernel=$cache/vmlinuz
[ -f "$kernel" ] && [ -f "$cache/initrd.img" ] ||
	skip "no test VM in $cache (deploy/quickstart.sh vm-image makes it)"
bdir=$(cd "$top_builddir" && pwd)
fix=$bdir/tests/vm/tcgfix.so
[ -f "$fix" ] || { echo "Bail out! $fix is not built"; exit 1; }

. "$top_srcdir/tests/ports.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-vmpair-XXXXXX") || exit 1
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	for p in $pids; do wait "$p" 2>/dev/null; done
	! command -v vm_ram_clean >/dev/null || vm_ram_clean
	[ -n "${COLO_TEST_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

. "$top_srcdir/tests/tap.sh"
bail() { echo "Bail out! $*"; for f in "$tmp"/*.log; do tail -n 20 "$f" | sed "s|^|# $(basename "$f"): |"; done; exit 1; }

work=$tmp
. "$top_srcdir/tests/vmpair.sh"
vm_wrapper
port_a=$(free_port); port_b=$(free_port); redis_a=$(free_port); redis_b=$(free_port)
# the pair is protected and the primary's VM has Redis up
protected() { is_state "$1" protected && is_state "$2" protected && pong "$3"; }
write_keys() { # PORT FROM TO
	i=$2
	while [ "$i" -le "$3" ]; do echo "SET k$i v$i"; i=$((i + 1)); done |
		timeout 60 redis-cli -h 127.0.0.1 -p "$1" >/dev/null 2>&1
}
keys_there() { # PORT FROM TO: every key with its value
	i=$2
	while [ "$i" -le "$3" ]; do echo "GET k$i"; i=$((i + 1)); done |
		timeout 60 redis-cli -h 127.0.0.1 -p "$1" >"$tmp/got" 2>&1
	i=$2
	while [ "$i" -le "$3" ]; do echo "v$i"; i=$((i + 1)); done >"$tmp/want"
	cmp -s "$tmp/got" "$tmp/want"
}
rand_ms() { echo $(( $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % ${1} )); }
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN { printf "%.3f", m / 1000 }')"; }

echo "1..8"

node b secondary "$port_b" "$port_a" "$redis_b"; pid_b=$last_pid
sleep 1
node a primary "$port_a" "$port_b" "$redis_a"; pid_a=$last_pid
# TCG on 2 shared cores: the initial migration and the boot take seconds.
if wait_until 300 protected a b "$redis_a"; then
	ok "the pair protects the Linux VM; Redis answers on the primary"
else
	not_ok "the pair protects the Linux VM" "$tmp/a.log" "$tmp/b.log" "$tmp/a-console.txt"
	bail "not protected"
fi
g=$(field a guest)
case "$g" in
*"VM pc-i440fx-7.2 (QEMU pid "*"checkpoints from QEMU"*) ok "colo-ctl status shows the VM: $g" ;;
*) not_ok "colo-ctl status shows the VM: '$g'" ;;
esac

# 3-5: kill -9 of the primary's QEMU
write_keys "$redis_a" 1 300
commit a || bail "checkpoint request: $(cat "$tmp/ckpt")"
run_id=$(info "$redis_a" run_id); up=$(info "$redis_a" uptime_in_seconds)
write_keys "$redis_a" 301 400       # may be lost: after the last commit
qpid=$(field a guest | sed -n 's/.*QEMU pid \([0-9]*\).*/\1/p')
sleep_ms "$(rand_ms 300)"
kill -9 "$qpid"
if wait_until 60 is_role b primary && wait_until 60 pong "$redis_b"; then
	ok "kill -9 of the primary's QEMU: the secondary runs the VM, Redis answers"
	grep -h 'serving as primary\|VM running on the committed' "$tmp/b.log" | sed 's/^/# /'
else
	not_ok "the secondary took over" "$tmp/a.log" "$tmp/b.log"
	bail "no takeover"
fi
wait "$pid_a" 2>/dev/null; st=$?
[ "$st" -eq 7 ] && ok "the old primary stopped with status 7 (its guest died)" ||
	not_ok "the old primary's exit status $st, wanted 7" "$tmp/a.log"
run_id2=$(info "$redis_b" run_id); up2=$(info "$redis_b" uptime_in_seconds)
if [ "$run_id2" = "$run_id" ] && [ "$up2" -ge "$up" ] && keys_there "$redis_b" 1 300; then
	ok "same Redis process (run_id), uptime went on ($up -> $up2 s), the committed keys are there"
else
	not_ok "run_id $run_id -> $run_id2, uptime $up -> $up2, keys: $(head -3 "$tmp/got" | tr '\n' ' ')"
fi

# 6-8: a comes back as the secondary; then kill -9 of colo on b
node a secondary "$port_a" "$port_b" "$redis_a"; pid_a=$last_pid
if wait_until 300 protected b a "$redis_b"; then
	ok "the old primary protects the VM again as the secondary"
else
	not_ok "reprotect" "$tmp/a.log" "$tmp/b.log"
	bail "no reprotect"
fi
write_keys "$redis_b" 401 500
commit b || bail "checkpoint request: $(cat "$tmp/ckpt")"
sleep_ms "$(rand_ms 300)"
kill -9 "$pid_b"
wait "$pid_b" 2>/dev/null
if wait_until 60 is_role a primary && wait_until 60 pong "$redis_a"; then
	ok "kill -9 of the new primary's colo: the VM runs on the first node again"
else
	not_ok "second takeover" "$tmp/a.log" "$tmp/b.log"
	bail "no second takeover"
fi
if [ "$(info "$redis_a" run_id)" = "$run_id" ] && keys_there "$redis_a" 1 300 &&
   keys_there "$redis_a" 401 500; then
	ok "after the second failover: the same Redis, every committed key"
else
	not_ok "after the second failover: keys $(head -3 "$tmp/got" | tr '\n' ' ')"
fi
[ $fails -eq 0 ]
