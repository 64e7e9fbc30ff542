# vmnet.sh: sourced by the VM network tests and bench (issue 19, docs/vm.md):
# the network a protected VM, its two nodes and a client live in, built in
# network namespaces the caller creates and removes (root needed).
#
#   SW (colo-sw-TAG)  the switch: bridge br0, ports sa, sb, scl
#   NA (colo-na-TAG)  node a: bridge vmbr with the uplink to sa, 10.77.0.1/24
#   NB (colo-nb-TAG)  node b: bridge vmbr with the uplink to sb, 10.77.0.2/24
#   CL (colo-cl-TAG)  the client: eth0 to scl, 10.77.0.10/24
#
# The VM is 10.77.0.100/24 (VM_APPEND, its kernel command line) behind a tap
# in vmbr of the node serving it: colo opens that tap itself (vm-tap, e.g.
# colo-vm0; vm-bridge = vmbr); without colo, vmnet_tap makes one.  Nodes,
# client and VM share one layer-2 segment, so the client reaches the VM
# through whichever node's bridge its MAC was last seen behind (the VM's
# announce-self after a failover moves it in br0).  The nodes reach each
# other (replication, heartbeats) on the same segment.
#
# The bridges forward at once (no STP, forward delay 0): a port added while
# a VM boots or fails over must not sit in a listening state.  IPv6 is off in
# the namespaces, so what crosses the segment is the test's traffic and ARP
# only.
#
# Functions (each returns non-zero, with a line on stderr, on failure):
#   vmnet_usable             0 when root, ip, redis-cli and /dev/net/tun are
#                            there; else prints why (for a test's skip)
#   vmnet_up TAG             creates the four namespaces and their links; sets
#                            SW NA NB CL (namespace names), VMNET_NS (all
#                            four), NA_IP NB_IP CL_IP VM_IP VM_MAC VM_APPEND
#                            VMNET_BRIDGE (vmbr).  Refuses when a namespace
#                            of that TAG exists already (one topology per
#                            shell at a time).  On failure it
#                            removes what it made.
#   vmnet_down               deletes the namespaces of the last vmnet_up (and
#                            with them their links, bridges and taps); stop
#                            the processes started in them first, by pid: it
#                            names any still there and returns 1
#   in_ns NS CMD...          CMD in namespace NS
#   vmnet_ns a|b|cl|sw       the namespace's name
#   vmnet_tap NS NAME        a tap NAME in node NS, in vmbr, up (colo does
#                            this itself; for a VM without colo)
#   vmnet_fence_cmd a|b      a command that cuts that node off the switch
#                            (for --fence-command); vmnet_cut / vmnet_join
#                            a|b do it, and undo it, now
#   vmnet_cli ARGS...        redis-cli -h VM_IP ARGS in CL (20 s timeout)
#   vmnet_wait_redis SECS [ADDR]
#                            until Redis at ADDR (default VM_IP) answers PING
#                            from CL
#   vmnet_vm_files           sets VMNET_KERNEL, VMNET_INITRD from the test VM's
#                            cache (COLO_VM_CACHE, else ~/.cache/colo/testvm)
#   vmnet_vm_args CONSOLE    QEMU arguments of the Linux test VM without its
#                            NIC, console to CONSOLE (VMNET_ACCEL, default tcg;
#                            VMNET_MEM, default 256M)
#   vmnet_plain_vm NS TAP CONSOLE [QEMU ARGS...]
#                            the VM under plain QEMU (no colo) in NS on TAP
#                            with VM_MAC, and the ARGS (e.g. -qmp ...); sets
#                            VMNET_QEMU_PID (stop it by pid); QEMU's output
#                            goes to CONSOLE.qemu
#   vmnet_wait_console CONSOLE SECS [PID]
#                            until the VM's console says Redis is ready (1
#                            if it failed, SECS passed or PID, its QEMU, ended)
#
# Variables of the caller it does not touch; its own start with VMNET_ or
# _vn (plus SW NA NB CL and the *_IP, VM_MAC, VM_APPEND above).
# shellcheck shell=sh disable=SC2034
# (SC2034: the variables set here are for the caller)

VMNET_BRIDGE=vmbr
NA_IP=10.77.0.1
NB_IP=10.77.0.2
CL_IP=10.77.0.10
VM_IP=10.77.0.100
VM_MAC=52:54:00:c0:10:64
VM_APPEND="console=ttyS0 colo.ip=$VM_IP/24 colo.gw=none"
VMNET_NS=""

in_ns() { _vn_ns=$1; shift; ip netns exec "$_vn_ns" "$@"; }

_vn_err() { echo "vmnet: $*" >&2; return 1; }
_vn_exists() { ip netns list | awk '{ print $1 }' | grep -qx -- "$1"; }

vmnet_usable() {
	[ "$(id -u)" -eq 0 ] || { echo "network namespaces need root"; return 1; }
	command -v ip >/dev/null || { echo "ip is not installed (apt-get install iproute2)"; return 1; }
	command -v redis-cli >/dev/null ||
		{ echo "redis-cli is not installed (apt-get install redis-tools)"; return 1; }
	[ -c /dev/net/tun ] || { echo "no /dev/net/tun"; return 1; }
	return 0
}

vmnet_ns() {
	case $1 in
	a) echo "$NA" ;; b) echo "$NB" ;; cl) echo "$CL" ;; sw) echo "$SW" ;;
	*) _vn_err "vmnet_ns: a, b, cl or sw, not '$1'" ;;
	esac
}

# _vn_bridge NS NAME: a bridge that forwards as soon as a port is up
_vn_bridge() {
	in_ns "$1" ip link add "$2" type bridge stp_state 0 forward_delay 0 &&
		in_ns "$1" ip link set "$2" up
}

# _vn_quiet NS: lo up, no IPv6 (no router solicitations, no DAD)
_vn_quiet() {
	in_ns "$1" sh -c 'echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6 &&
		echo 1 >/proc/sys/net/ipv6/conf/default/disable_ipv6' &&
		in_ns "$1" ip link set lo up
}

vmnet_up() {
	[ -n "${1:-}" ] || { _vn_err "vmnet_up TAG"; return 1; }
	VMNET_TAG=$1
	SW=colo-sw-$1 NA=colo-na-$1 NB=colo-nb-$1 CL=colo-cl-$1
	for _vn_n in $SW $NA $NB $CL; do
		if _vn_exists "$_vn_n"; then
			_vn_err "namespace $_vn_n exists already (another run with tag $1?)"
			return 1
		fi
	done
	VMNET_NS=""
	for _vn_n in $SW $NA $NB $CL; do
		ip netns add "$_vn_n" || { vmnet_down; _vn_err "ip netns add $_vn_n"; return 1; }
		VMNET_NS="$VMNET_NS $_vn_n"
		_vn_quiet "$_vn_n" || { vmnet_down; _vn_err "$_vn_n: lo, IPv6 off"; return 1; }
	done
	_vn_bridge "$SW" br0 || { vmnet_down; _vn_err "$SW: bridge br0"; return 1; }
	# each node: vmbr holds its uplink (and later the VM's tap), its address
	for _vn_n in "$NA sa $NA_IP" "$NB sb $NB_IP"; do
		# shellcheck disable=SC2086
		set -- $_vn_n
		{ _vn_bridge "$1" "$VMNET_BRIDGE" &&
		  ip link add uplink netns "$1" type veth peer name "$2" netns "$SW" &&
		  in_ns "$1" ip link set uplink master "$VMNET_BRIDGE" &&
		  in_ns "$1" ip link set uplink up &&
		  in_ns "$1" ip addr add "$3/24" dev "$VMNET_BRIDGE" &&
		  in_ns "$SW" ip link set "$2" master br0 &&
		  in_ns "$SW" ip link set "$2" up; } ||
			{ vmnet_down; _vn_err "$1: vmbr, uplink, $3"; return 1; }
	done
	{ ip link add eth0 netns "$CL" type veth peer name scl netns "$SW" &&
	  in_ns "$CL" ip addr add "$CL_IP/24" dev eth0 &&
	  in_ns "$CL" ip link set eth0 up &&
	  in_ns "$SW" ip link set scl master br0 &&
	  in_ns "$SW" ip link set scl up; } ||
		{ vmnet_down; _vn_err "$CL: eth0, $CL_IP"; return 1; }
	# A veth reports carrier a moment after both ends are up; until then
	# the switch drops what reaches that port.
	_vn_i=0
	until [ "$(in_ns "$SW" cat /sys/class/net/sa/operstate /sys/class/net/sb/operstate \
		/sys/class/net/scl/operstate | tr -d '\n')" = upupup ]; do
		_vn_i=$((_vn_i + 1))
		[ $_vn_i -lt 50 ] || { vmnet_down; _vn_err "$SW: the switch's ports are not up"; return 1; }
		sleep 0.1
	done
	return 0
}

vmnet_down() {
	_vn_rc=0
	for _vn_n in $VMNET_NS; do
		_vn_exists "$_vn_n" || continue
		_vn_p=$(ip netns pids "$_vn_n" 2>/dev/null | tr '\n' ' ')
		if [ -n "$_vn_p" ]; then
			# Its links would live on with them: the caller stops them.
			_vn_err "namespace $_vn_n still has processes: $_vn_p(not removed)"
			_vn_rc=1
			continue
		fi
		ip netns del "$_vn_n" || _vn_rc=1
	done
	[ $_vn_rc -eq 0 ] && VMNET_NS=""
	return $_vn_rc
}

vmnet_tap() {
	if ! { in_ns "$1" ip tuntap add "$2" mode tap &&
	       in_ns "$1" ip link set "$2" master "$VMNET_BRIDGE" &&
	       in_ns "$1" ip link set "$2" up; }; then
		_vn_err "$1: tap $2 in $VMNET_BRIDGE"
	fi
}

vmnet_fence_cmd() {
	case $1 in
	a) echo "ip netns exec $SW ip link set sa down" ;;
	b) echo "ip netns exec $SW ip link set sb down" ;;
	*) _vn_err "vmnet_fence_cmd: a or b, not '$1'" ;;
	esac
}
vmnet_cut() { in_ns "$SW" ip link set "s$1" down; }
vmnet_join() { in_ns "$SW" ip link set "s$1" up; }

vmnet_cli() { in_ns "$CL" timeout 20 redis-cli -h "$VM_IP" "$@"; }

vmnet_wait_redis() {
	_vn_i=0
	while [ $_vn_i -lt $(($1 * 5)) ]; do
		[ "$(in_ns "$CL" timeout 2 redis-cli -h "${2:-$VM_IP}" PING 2>/dev/null)" = PONG ] &&
			return 0
		_vn_i=$((_vn_i + 1))
		sleep 0.2
	done
	_vn_err "no PONG from ${2:-$VM_IP} in $CL after $1 s"
}

vmnet_vm_files() {
	_vn_c=${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}
	# vmlinux boots faster under TCG than vmlinuz (docs/vm.md); same kernel.
	VMNET_KERNEL=$_vn_c/vmlinux
	[ -f "$VMNET_KERNEL" ] || VMNET_KERNEL=$_vn_c/vmlinuz
	VMNET_INITRD=$_vn_c/initrd.img
	if [ ! -f "$VMNET_KERNEL" ] || [ ! -f "$VMNET_INITRD" ]; then
		_vn_err "no test VM in $_vn_c (deploy/quickstart.sh vm-image makes it)"
	fi
}

vmnet_vm_args() {
	echo "-machine pc -accel ${VMNET_ACCEL:-tcg} -m ${VMNET_MEM:-256M} -nodefaults" \
		"-no-user-config -display none -no-reboot -serial file:$1" \
		"-kernel $VMNET_KERNEL -initrd $VMNET_INITRD"
}

vmnet_plain_vm() {
	VMNET_QEMU_PID=""
	vmnet_vm_files || return 1
	_vn_ns=$1 _vn_tap=$2 _vn_con=$3
	shift 3
	: >"$_vn_con"
	# Started by exec (ip netns exec execs QEMU), so $! is QEMU itself.
	# shellcheck disable=SC2046
	ip netns exec "$_vn_ns" qemu-system-x86_64 $(vmnet_vm_args "$_vn_con") \
		-append "$VM_APPEND panic=-1" \
		-netdev "tap,id=n0,ifname=$_vn_tap,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=$VM_MAC" "$@" \
		>"$_vn_con.qemu" 2>&1 </dev/null &
	VMNET_QEMU_PID=$!
}

vmnet_wait_console() {
	_vn_i=0
	while [ $_vn_i -lt $(($2 * 5)) ]; do
		grep -q '^colo-testvm: redis ready on ' "$1" 2>/dev/null && return 0
		grep -q '^colo-testvm: FAILED' "$1" 2>/dev/null &&
			{ _vn_err "the VM failed: $(grep '^colo-testvm: FAILED' "$1")"; return 1; }
		[ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null ||
			{ _vn_err "QEMU $3 ended: $(tail -n 3 "$1.qemu" 2>/dev/null)"; return 1; }
		_vn_i=$((_vn_i + 1))
		sleep 0.2
	done
	_vn_err "the VM's console did not say Redis is ready in $2 s ($1)"
}
