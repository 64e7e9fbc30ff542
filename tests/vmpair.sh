# vmpair.sh: sourced by tests/vm_linux_pair.sh and deploy/vm-demo.sh: the
# Linux test VM (Redis inside) under a colo pair on loopback, under TCG with
# the test-only QEMU 7.2 workarounds (docs/vm.md): the interposer through a
# qemu-binary wrapper, -m 262136k, --qemu-tcg-ok yes.
#
# The caller sets: bdir (the build tree), work (a scratch directory), cache
# (the test VM's), kernel, fix (tcgfix.so), pids (a list this adds to).
# Needs tests/ports.sh sourced first.

# The wrapper that preloads the interposer into QEMU only, in $work/qemu.
vm_wrapper() {
	cat >"$work/qemu" <<EOS
#!/bin/sh
LD_PRELOAD=$fix exec qemu-system-x86_64 "\$@"
EOS
	chmod +x "$work/qemu"
}
# vm_ram NAME: node NAME's vm-ram-path.  On /dev/shm, as by default: in
# $work (a disk, /tmp) the kernel writes the RAM back and throttles the
# node's loop for seconds at each full sync.  vm_ram_clean removes them
# (a node killed with -9 leaves its own).
vm_ram() {
	if [ -d /dev/shm ] && [ -w /dev/shm ]; then
		echo "/dev/shm/colo-test-$(basename "$work")-$1.ram"
	else
		echo "$work/$1.ram"
	fi
}
vm_ram_clean() { rm -f "/dev/shm/colo-test-$(basename "$work")-"*.ram; }
# vm_args NAME REDIS_PORT: the VM's arguments for node NAME
vm_args() {
	echo "-machine pc -accel tcg -m 262136k -nodefaults -display none" \
		"-kernel $kernel -initrd $cache/initrd.img" \
		"-append console=ttyS0 -serial file:$work/$1-console.txt" \
		"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:$2-:6379 -device virtio-net-pci,netdev=n0"
}
# node NAME ROLE LISTEN PEER REDIS: start colo-ROLE for NAME; sets last_pid
node() {
	"$bdir/colo-$2" --name "$1" --guest qemu --qemu-binary "$work/qemu" --qemu-tcg-ok yes \
		--vm-net-unprotected yes \
		--vm-args "$(vm_args "$1" "$5")" --vm-ram-path "$(vm_ram "$1")" \
		--listen "127.0.0.1:$3" --peer "127.0.0.1:$4" --control "$work/$1.sock" \
		--state-dir "$work/$1" --heartbeat-timeout-ms 1000 --checkpoint-interval-ms 100 \
		>>"$work/$1.log" 2>&1 </dev/null &
	last_pid=$!
	pids="$pids $last_pid"
}
ctl() { c=$1; shift; "$bdir/colo-ctl" -s "$work/$c.sock" "$@" 2>&1; }
field() { ctl "$1" status | sed -n "s/^$2  *//p"; }
rc() { p=$1; shift; timeout 20 redis-cli -h 127.0.0.1 -p "$p" "$@" 2>&1; }
info() { rc "$1" info server | tr -d '\r' | sed -n "s/^$2://p"; }
# wait_until SECONDS CMD...: poll CMD every 0.2 s
wait_until() {
	t=$1; shift
	i=0
	while [ $i -lt $((t * 5)) ]; do
		"$@" >/dev/null 2>&1 && return 0
		i=$((i + 1)); sleep 0.2
	done
	return 1
}
is_state() { [ "$(field "$1" state)" = "$2" ]; }
is_role() { [ "$(field "$1" role)" = "$2" ]; }
pong() { [ "$(rc "$1" ping)" = PONG ]; }
qemu_ckpts() { field "$1" guest | sed -n 's/.*, \([0-9]*\) checkpoints from QEMU.*/\1/p'; }
ckpts_past() { [ "$(qemu_ckpts "$1")" -ge "$2" ]; }
# commit NODE: what the VM did so far is committed on the secondary.  A colo
# checkpoint carries the VM as of QEMU's last checkpoint, so first let two
# of QEMU's pass (the one running when asked may predate the writes), then
# ask for a colo checkpoint (answered once committed).
commit() {
	c0=$(qemu_ckpts "$1")
	wait_until 60 ckpts_past "$1" $((c0 + 2)) || return 1
	ctl "$1" checkpoint >"$work/ckpt"
}
