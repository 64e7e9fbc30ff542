#!/bin/sh
# runvm.sh: run one program under Debian's kernel (the Linux test VM's
# cache, deploy/vm/make-testvm.sh) in QEMU's TCG and print the console: the
# program's output and runinit's "colo-vmrun:" lines (tests/vm/runinit.c).
# For what this machine's kernel cannot show, e.g. soft-dirty bits.
#
#   tests/vm/runvm.sh [-c CASES] [-e NAME=VALUE]... [-f FILE]... [-t SECONDS]
#                     RUNINIT PROG [ARG...]
#   tests/vm/runvm.sh -n      can it run here?  0, or 77 and the reason
#
# RUNINIT is the built tests/vm/runinit.  The initramfs holds it as /init,
# PROG as /bin/PROG's name, and the shared libraries PROG loads (as ldd
# lists them); each -f FILE goes in at its own absolute path, with the
# libraries it loads (for programs that PROG starts).  CASES (a,b,c) runs PROG once per name with CK_RUN_CASE set
# to it; each -e puts NAME=VALUE in its environment; ARGs reach it as they
# are (no spaces or commas: they travel on the kernel command line).  The
# VM has 2 virtual CPUs and 2 GiB; it is killed after SECONDS (default
# 900).  Exit status 0 when the VM ran to its end ("colo-vmrun: done"), 77
# when it cannot run here (no kernel in the cache, no QEMU, no cpio: one
# line on stderr says which), 1 otherwise.
set -u
prog=runvm
cases=""
env=""
files=""
limit=900
check=0
while getopts c:e:f:nt: o; do
	case $o in
	n) check=1 ;;
	c) cases=$OPTARG ;;
	e) env="$env colo.env.$OPTARG" ;;
	f) files="$files $OPTARG" ;;
	t) limit=$OPTARG ;;
	*) echo "usage: $0 [-c CASES] [-e NAME=VALUE]... [-f FILE]... [-t SECONDS]" \
		"RUNINIT PROG [ARG...]" >&2
	   exit 1 ;;
	esac
done
shift $((OPTIND - 1))

cache=${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}
command -v qemu-system-x86_64 >/dev/null || {
	echo "$prog: qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" >&2
	exit 77
}
command -v cpio >/dev/null || { echo "$prog: cpio is not installed (apt-get install cpio)" >&2; exit 77; }
kernel=$cache/vmlinux
[ -f "$kernel" ] || kernel=$cache/vmlinuz
[ -f "$kernel" ] || {
	echo "$prog: no Debian kernel in $cache (deploy/quickstart.sh vm-image puts it there)" >&2
	exit 77
}
[ $check -eq 0 ] || exit 0
[ $# -ge 2 ] || { echo "$prog: RUNINIT and PROG are needed (see the top of $0)" >&2; exit 1; }
init=$1
exe=$2
shift 2
args=$(printf '%s,' "$@")
args=${args%,}
for f in "$init" "$exe" $files; do
	[ -f "$f" ] || { echo "$prog: $f is not built" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-runvm-XXXXXX") || exit 1
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

root=$tmp/root
name=${exe##*/}
mkdir -p "$root/bin"
cp "$init" "$root/init" && cp "$exe" "$root/bin/$name" || exit 1
for f in $files; do
	case $f in /*) ;; *) echo "$prog: -f $f: an absolute path is needed" >&2; exit 1 ;; esac
	mkdir -p "$root$(dirname "$f")" && cp "$f" "$root$f" || exit 1
done
for lib in $(for f in "$exe" $files; do ldd "$f" 2>/dev/null; done |
	     awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u); do
	mkdir -p "$root$(dirname "$lib")" && cp -L "$lib" "$root$lib" || {
		echo "$prog: cannot copy $lib into the initramfs" >&2
		exit 1
	}
done
(cd "$root" && find . | cpio -o -H newc 2>/dev/null) | gzip >"$tmp/initrd" || {
	echo "$prog: cannot pack the initramfs" >&2
	exit 1
}

cmd="console=ttyS0 quiet panic=-1 colo.run=/bin/$name$env"
[ -z "$cases" ] || cmd="$cmd colo.cases=$cases"
[ -z "$args" ] || cmd="$cmd colo.args=$args"
# TCG: this machine's KVM cannot run Linux (docs/vm.md).  -no-reboot:
# runinit's power-off (or a panic) ends QEMU.
qemu-system-x86_64 -accel tcg -smp 2 -m 2048 -nographic -no-reboot \
	-kernel "$kernel" -initrd "$tmp/initrd" -append "$cmd" \
	</dev/null >"$tmp/console" 2>&1 &
pid=$!
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt "$limit" ]; do
	sleep 1
	i=$((i + 1))
done
kill "$pid" 2>/dev/null
wait "$pid"
pid=""
tr -d '\r' <"$tmp/console"
echo "colo-vmrun: $i s"
grep -q '^colo-vmrun: done' "$tmp/console" || {
	echo "$prog: the VM did not run to its end in $i s" >&2
	exit 1
}
