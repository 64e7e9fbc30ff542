#!/bin/sh
# vm_linux.sh: the Linux test VM (deploy/vm/make-testvm.sh) under QEMU's TCG
# with the test-only workarounds for QEMU 7.2's bugs (docs/vm.md): the
# interposer tests/vm/tcgfix.so preloaded and -m 262136k.  What must hold:
# the interposer loads into QEMU and passes its own check; QEMU with it boots
# the VM to Redis (the console says so); Redis answers SET/GET through user
# networking's port forward on loopback and reports its uptime and run_id;
# QEMU stops on SIGTERM to its pid, and the interposer took over no wait in
# a QEMU not doing COLO (it changes nothing there).  Skipped when the image
# is not in its cache (deploy/quickstart.sh vm-image makes it), or
# qemu-system-x86_64 or redis-cli is missing.  The boot time is printed as a
# '#' line, never asserted.  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
skip() { echo "1..0 # SKIP $*"; exit 0; }

cache=${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}
command -v qemu-system-x86_64 >/dev/null ||
	skip "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
command -v redis-cli >/dev/null || skip "redis-cli is not installed (apt-get install redis-tools)"
# vmlinux boots faster under TCG than vmlinuz (docs/vm.md); same kernel.
kernel=$cache/vmlinux
[ -f "$kernel" ] || kernel=$cache/vmlinuz
[ -f "$kernel" ] && [ -f "$cache/initrd.img" ] ||
	skip "no test VM in $cache (deploy/quickstart.sh vm-image or deploy/vm/make-testvm.sh makes it)"

. "$top_srcdir/tests/ports.sh"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-vm-linux-XXXXXX") || exit 1
pid=""
cleanup() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

TAP_TAIL=100000        # the whole of each file
. "$top_srcdir/tests/tap.sh"
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

echo "1..7"
fix=$(cd "$top_builddir/tests/vm" 2>/dev/null && pwd)/tcgfix.so
if [ ! -f "$fix" ]; then
	echo "Bail out! $top_builddir/tests/vm/tcgfix.so is not built (make check builds it)"
	exit 1
fi

# 1. The interposer in a QEMU that only prints its version.
COLO_TCGFIX_VERBOSE=1 LD_PRELOAD=$fix qemu-system-x86_64 -version >"$tmp/version" 2>&1
st=$?
if [ $st -eq 0 ] && grep -q '^colo-tcgfix: loaded into pid' "$tmp/version" &&
   grep -q '^QEMU emulator version' "$tmp/version"; then
	ok "the interposer loads into QEMU and passes its load-time check"
else
	not_ok "the interposer loads into QEMU (exit $st)" "$tmp/version"
fi

# 2. Boot: wait for the console's line (or QEMU's end) with a deadline.
port=$(free_port)
console=$tmp/console.log
: >"$console"
t0=$(now)
COLO_TCGFIX_VERBOSE=1 LD_PRELOAD=$fix qemu-system-x86_64 \
	-machine pc -accel tcg -m 262136k -nodefaults -no-user-config \
	-display none -no-reboot -serial "file:$console" \
	-kernel "$kernel" -initrd "$cache/initrd.img" \
	-append "console=ttyS0 quiet panic=-1 colo.ip=10.0.2.15/24 colo.gw=10.0.2.2" \
	-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:6379" \
	-device virtio-net-pci,netdev=n0 >"$tmp/qemu.out" 2>"$tmp/qemu.err" &
pid=$!
i=0
booted=0
# Polls the console file; the sleep only paces it.  TCG on a loaded 2-core
# machine: a deadline of 300 s, for a boot of seconds.
while [ $i -lt 1500 ]; do
	grep -q '^colo-testvm: redis ready on ' "$console" && { booted=1; break; }
	grep -q '^colo-testvm: FAILED' "$console" && break
	kill -0 "$pid" 2>/dev/null || break
	i=$((i + 1))
	sleep 0.2
done
t1=$(now)
if [ $booted -eq 1 ] && grep -q 'tcgfix\.so' "/proc/$pid/maps" 2>/dev/null; then
	ok "QEMU with the interposer boots the VM to Redis under TCG"
	echo "# boot to the console's ready line: $(elapsed "$t0" "$t1") s on the host;" \
		"$(grep -o 'after [0-9.]* s' "$console") on the guest's clock"
else
	not_ok "QEMU with the interposer boots the VM to Redis under TCG" \
		"$console" "$tmp/qemu.err"
	pid_left=$pid
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	pid=""
	echo "Bail out! the VM did not boot (QEMU pid $pid_left)"
	exit 1
fi

# 3-5. Redis through the port forward.  The forward is QEMU's; the guest
# answers as soon as its console said so, but allow the first connection a
# deadline.
rc() { timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>&1; }
i=0
until [ "$(rc ping)" = PONG ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || break
	sleep 0.2
done
got=$(rc ping)
[ "$got" = PONG ] && ok "PING through the port forward" || not_ok "PING: '$got'"

val="colo-$$-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
set_got=$(rc set colo:vm:key "$val")
get_got=$(rc get colo:vm:key)
if [ "$set_got" = OK ] && [ "$get_got" = "$val" ]; then
	ok "SET then GET returns the value"
else
	not_ok "SET/GET: '$set_got', '$get_got' (wanted OK, '$val')"
fi

rc info server | tr -d '\r' >"$tmp/info"
up=$(sed -n 's/^uptime_in_seconds://p' "$tmp/info")
run_id=$(sed -n 's/^run_id://p' "$tmp/info")
if printf '%s\n' "$up" | grep -qx '[0-9][0-9]*' &&
   printf '%s\n' "$run_id" | grep -qx '[0-9a-f]\{40\}'; then
	ok "INFO server gives the guest's Redis uptime and run_id"
	echo "# redis uptime_in_seconds $up, run_id $run_id"
else
	not_ok "INFO server: uptime '$up', run_id '$run_id'" "$tmp/info"
fi

# 6. Stop by pid: QEMU ends on SIGTERM, and the interposer reports at exit.
kill "$pid"
wait "$pid"
st=$?
pid=""
if [ $st -eq 0 ] && grep -q 'terminating on signal 15' "$tmp/qemu.err"; then
	ok "QEMU stops on SIGTERM to its pid"
else
	not_ok "QEMU stops on SIGTERM to its pid (exit $st)" "$tmp/qemu.err"
fi

# 7. Outside COLO, QEMU always owns the mutex it waits with.
if grep -q '^colo-tcgfix: 0 waits without the mutex taken over$' "$tmp/qemu.err"; then
	ok "the interposer took over no wait in a QEMU not doing COLO"
else
	not_ok "the interposer took over no wait in a QEMU not doing COLO" "$tmp/qemu.err"
fi

[ $fails -eq 0 ]
