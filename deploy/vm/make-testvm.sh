#!/bin/sh
# make-testvm.sh: colo's Linux test VM, a kernel and an initramfs made from
# Debian packages: Debian's kernel (the flavour linux-image-amd64 points at),
# busybox-static, and redis-server's binary (package redis-tools) with the
# shared libraries it loads.  Nothing is installed on this host: the packages
# are fetched with `apt-get download` (from the Debian archive this host's apt
# is set up for, the only thing it reaches) and unpacked with `dpkg-deb -x`.
# The VM boots into deploy/vm/testvm-init, which serves Redis on eth0
# (docs/vm.md, "The test VMs").
#
#   deploy/vm/make-testvm.sh [-f|--force] [DIR]
#
# DIR (default $COLO_VM_CACHE, else ${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm)
# keeps the downloaded packages and the result: DIR/vmlinuz (Debian's),
# DIR/vmlinux (the same kernel unpacked: it boots faster under TCG),
# DIR/initrd.img and DIR/manifest (what went in).  It rebuilds only when an
# input changed: this script, testvm-init, or a package version apt now
# offers (--force rebuilds anyway).  The image is reproducible: the same
# inputs give the same bytes.  Prints the paths of vmlinuz, vmlinux and
# initrd.img last; a failure is one line on stderr and exit status 1.
# Needs apt-get, dpkg-deb, cpio, gzip, xz and binutils (deploy/quickstart.sh
# vm-image installs them).
set -eu
umask 022
export LC_ALL=C

prog=make-testvm
die() { printf '%s: %s\n' "$prog" "$*" >&2; exit 1; }
note() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(cd "$(dirname "$0")" && pwd)
force=0
dir=""
while [ $# -gt 0 ]; do
	case $1 in
	-f | --force) force=1 ;;
	-h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option '$1' (--help)" ;;
	*) [ -z "$dir" ] || die "one DIR only (--help)"; dir=$1 ;;
	esac
	shift
done
dir=${dir:-${COLO_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/colo/testvm}}

for c in apt-get apt-cache dpkg dpkg-deb cpio gzip xz readelf sha256sum; do
	command -v "$c" >/dev/null 2>&1 ||
		die "$c is not installed (deploy/quickstart.sh vm-image installs what this needs)"
done
[ "$(dpkg --print-architecture)" = amd64 ] ||
	die "the test VM is amd64 and apt here fetches $(dpkg --print-architecture) packages"

mkdir -p "$dir/debs" || die "cannot create $dir"
dir=$(cd "$dir" && pwd)
# Two builds into one cache would trip over each other's files.
if command -v flock >/dev/null 2>&1; then
	exec 9>"$dir/.lock"
	flock 9
fi

# --- What goes in: package names and the versions apt offers now ----------

print_paths() {
	echo "vmlinuz: $dir/vmlinuz"
	echo "vmlinux: $dir/vmlinux"
	echo "initrd:  $dir/initrd.img"
}
have_image() { [ -f "$dir/vmlinuz" ] && [ -f "$dir/vmlinux" ] && [ -f "$dir/initrd.img" ]; }

# Versions come from apt's package lists (and its pinning): while they, this
# script and testvm-init are unchanged, so is the image, and asking apt (a
# few seconds here) is skipped.
eval "$(apt-config shell lists Dir::State::Lists/d etc Dir::Etc/d)"
quick=$( {
	cat "$0" "$here/testvm-init"
	ls -l --full-time "${lists:-/var/lib/apt/lists/}" 2>/dev/null
	cat "${etc:-/etc/apt/}"preferences "${etc:-/etc/apt/}"preferences.d/* 2>/dev/null
} | sha256sum | cut -d' ' -f1)
if [ $force -eq 0 ] && [ -f "$dir/quickkey" ] && [ "$(cat "$dir/quickkey")" = "$quick" ] &&
   have_image; then
	note "up to date: $dir (kernel $(sed -n 's/^kernel //p' "$dir/manifest"))"
	print_paths
	exit 0
fi

# One look at the dependency graph: the kernel is what linux-image-amd64
# depends on; redis-server is a name of the redis-check-rdb binary in
# redis-tools, and its shared libraries come from the library packages it
# depends on, recursively (first alternatives; the binary's NEEDED entries
# are checked against them below).
graph=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances linux-image-amd64 redis-tools 2>/dev/null |
	awk '
	/^[^ ]/ { pkg = $1; alt = 0; next }
	$1 ~ /Depends:$/ { if (!alt) dep[pkg] = dep[pkg] " " $2; alt = ($0 ~ /^ \|/) }
	END {
		n = split(dep["linux-image-amd64"], a, " ")
		for (i = 1; i <= n; i++)
			if (a[i] ~ /^linux-image-/) { print "kernel " a[i]; break }
		q[1] = "redis-tools"; head = 1; tail = 1
		while (head <= tail) {
			n = split(dep[q[head++]], a, " ")
			for (i = 1; i <= n; i++)
				if (a[i] ~ /^lib/ && !(a[i] in seen)) {
					seen[a[i]] = 1; q[++tail] = a[i]; print "lib " a[i]
				}
		}
	}')
kernel=$(printf '%s\n' "$graph" | sed -n 's/^kernel //p')
libs=$(printf '%s\n' "$graph" | sed -n 's/^lib //p' | sort | tr '\n' ' ')
[ -n "$kernel" ] ||
	die "apt knows no linux-image-amd64 here (run apt-get update, or check apt's sources)"

# shellcheck disable=SC2086
pkgs=$(apt-cache policy "$kernel" busybox-static redis-tools $libs 2>/dev/null | awk '
	/^[^ ].*:$/ { name = substr($0, 1, length($0) - 1); sub(/:amd64$/, "", name) }
	/^  Candidate: / { print name "=" $2 }' | sort)
missing=$(printf '%s\n' "$pkgs" | sed -n 's/=(none)$//p' | tr '\n' ' ')
[ -z "$missing" ] || die "apt offers no version of: $missing(run apt-get update)"
[ -n "$pkgs" ] || die "apt-cache policy said nothing (run apt-get update)"

# The modules the NIC needs: virtio-pci's transport and the virtio-net driver.
modules="virtio_pci virtio_net"

key=$( {
	printf 'modules %s\n%s\n' "$modules" "$pkgs"
	cat "$0" "$here/testvm-init"
} | sha256sum | cut -d' ' -f1)

if [ $force -eq 0 ] && [ -f "$dir/key" ] && [ "$(cat "$dir/key")" = "$key" ] && have_image; then
	echo "$quick" >"$dir/quickkey"
	note "up to date: $dir ($kernel)"
	print_paths
	exit 0
fi

# --- Download what the cache lacks ----------------------------------------

# deb_of NAME=VERSION: the cached file (apt-get download's name for it).
deb_of() {
	n=${1%%=*}
	v=$(printf '%s' "${1#*=}" | sed 's/:/%3a/g')
	for f in "$dir/debs/${n}_${v}_"*.deb; do
		[ -f "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

need=""
for p in $pkgs; do
	deb_of "$p" >/dev/null || need="$need $p"
done
if [ -n "$need" ]; then
	note "downloading $(echo "$need" | wc -w) package(s) into $dir/debs"
	dl=$(mktemp -d "$dir/debs/.dl.XXXXXX")
	user=$(id -un)
	# shellcheck disable=SC2086
	if ! (cd "$dl" && apt-get download -q -o APT::Sandbox::User="$user" $need) \
		>"$dl/.log" 2>&1; then
		why=$(grep -m 1 '^E: ' "$dl/.log" | cut -c4-)
		rm -rf "$dl"
		die "cannot download from the Debian archive: ${why:-apt-get download failed}"
	fi
	mv "$dl"/*.deb "$dir/debs/"
	rm -rf "$dl"
fi

# --- Build ------------------------------------------------------------------

work=$(mktemp -d "$dir/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
note "building in $work"

kdeb=$(deb_of "$(printf '%s\n' "$pkgs" | grep "^$kernel=")") || die "lost $kernel's package"
dpkg-deb -x "$kdeb" "$work/k"
for p in $pkgs; do
	case $p in linux-image-*) continue ;; esac
	dpkg-deb -x "$(deb_of "$p")" "$work/u"
done

set -- "$work"/k/boot/vmlinuz-*
[ $# -eq 1 ] && [ -f "$1" ] || die "$kernel holds no single boot/vmlinuz-*"
vmlinuz=$1
kver=${vmlinuz##*/vmlinuz-}
mdir=$work/k/lib/modules/$kver
[ -d "$mdir" ] || die "$kernel has no lib/modules/$kver"

mkdir -p "$root/bin" "$root/usr/bin" "$root/etc" "$root/proc" "$root/sys" \
	"$root/dev" "$root/tmp" "$root/run" "$root/lib/modules" \
	"$root/lib/x86_64-linux-gnu" "$root/lib64"
chmod 1777 "$root/tmp"

# Modules.  The package has no modules.dep (depmod writes it when the kernel
# is installed); it is made from the same data, each module's "depends="
# field in its .modinfo section, which is all we read here.
find "$mdir/kernel" -name '*.ko*' >"$work/allmods"
modpath() {
	sed -n "s|^$mdir/\(.*/$1\.ko\(\.xz\)\{0,1\}\)$|\1|p" "$work/allmods" | head -n 1
}
order=""
# shellcheck disable=SC3043 # dash's and busybox's local; the walk recurses
visit() {
	local m f rel deps d
	m=$(printf '%s' "$1" | tr - _)
	case " $order " in *" $m "*) return 0 ;; esac
	if grep -q "/$m\.ko\$" "$mdir/modules.builtin" 2>/dev/null; then return 0; fi
	rel=$(modpath "$m")
	[ -z "$rel" ] && rel=$(modpath "$(printf '%s' "$m" | tr _ -)")
	[ -n "$rel" ] || die "module $m is neither built into $kernel nor one of its modules"
	f=$mdir/$rel
	rel=$kver/$rel
	mkdir -p "$root/lib/modules/$(dirname "$rel")"
	case $rel in
	*.xz) rel=${rel%.xz}; xz -dc "$f" >"$root/lib/modules/$rel" ;;
	*) cp "$f" "$root/lib/modules/$rel" ;;
	esac
	deps=$(readelf -p .modinfo "$root/lib/modules/$rel" |
		sed -n 's/^ *\[ *[0-9a-f]*\]  depends=//p' | tr , ' ')
	for d in $deps; do visit "$d"; done
	order="$order $m"
	echo "$rel" >>"$root/etc/colo-modules"
}
: >"$root/etc/colo-modules"
for m in $modules; do visit "$m"; done

# busybox, and redis-server with the libraries it loads and the loader.
cp "$work/u/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp "$work/u/usr/bin/redis-check-rdb" "$root/usr/bin/redis-server"
interp=$(readelf -l "$root/usr/bin/redis-server" |
	sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
[ "$interp" = /lib64/ld-linux-x86-64.so.2 ] || die "redis-server asks for loader '$interp'"
cp -L "$work/u/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" "$root/lib/x86_64-linux-gnu/"
ln -s ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
copied=ld-linux-x86-64.so.2
# shellcheck disable=SC3043
copy_needed() {
	local so f d
	for so in $(readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p'); do
		case " $copied " in *" $so "*) continue ;; esac
		f=""
		for d in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do
			[ -e "$work/u/$d/$so" ] && { f=$work/u/$d/$so; break; }
		done
		[ -n "$f" ] || die "no package above holds $so (needed by ${1##*/})"
		cp -L "$f" "$root/lib/x86_64-linux-gnu/$so"
		copied="$copied $so"
		copy_needed "$root/lib/x86_64-linux-gnu/$so"
	done
}
copy_needed "$root/usr/bin/redis-server"

cp "$here/testvm-init" "$root/init"
chmod 755 "$root/init"

# The archive: sorted names, one owner, one time, no host inode numbers
# (cpio --reproducible), gzip without name or time.  /dev/console must exist
# before init runs (the kernel opens it for init's stdin/out/err); a device
# node cannot be made without root, so a small archive of its own is written
# here byte by byte and comes first (the kernel unpacks concatenated ones).
epoch=${SOURCE_DATE_EPOCH:-0}
find "$root" -exec touch -h -d "@$epoch" {} +
newc() { # NAME MODE RDEVMAJOR RDEVMINOR INO
	namesize=$((${#1} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		"$5" "$2" 0 0 1 "$epoch" 0 0 0 "$3" "$4" "$namesize" 0 "$1"
	pad=$(((4 - (110 + namesize) % 4) % 4))
	[ $pad -eq 0 ] || head -c "$pad" /dev/zero
}
{
	newc dev $((0040755)) 0 0 1
	newc dev/console $((0020600)) 5 1 2
	newc 'TRAILER!!!' 0 0 0 0
} >"$work/initrd.img"
(cd "$root" && find . -mindepth 1 | sort |
	cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -n -6 >>"$work/initrd.img"

# shellcheck disable=SC2046,SC2086 # one line per word
{
	echo "# colo test VM, made by deploy/vm/make-testvm.sh (key $key)"
	echo "kernel $kver"
	printf 'package %s\n' $pkgs
	printf 'module %s\n' $(cat "$root/etc/colo-modules")
	printf 'lib %s\n' $copied
} >"$work/manifest"

# vmlinux: the same kernel unpacked from the bzImage (its xz payload is an
# ELF with a PVH entry note).  QEMU boots it without running the kernel's
# own decompressor, which under TCG takes about half of the boot.
off=$(grep -obUaP '\xfd7zXZ\x00' "$vmlinuz" | head -n 1 | cut -d: -f1)
[ -n "$off" ] || die "$kernel's vmlinuz holds no xz payload"
tail -c +"$((off + 1))" "$vmlinuz" | xz -dc --single-stream >"$work/vmlinux" ||
	die "cannot unpack the kernel from $kernel's vmlinuz"
readelf -n "$work/vmlinux" 2>/dev/null | grep -q 'Unknown note type: (0x00000012)' ||
	die "the kernel unpacked from $kernel has no PVH entry note"

rm -f "$dir/key" "$dir/quickkey"
cp "$vmlinuz" "$work/vmlinuz"
touch -d "@$epoch" "$work/vmlinuz" "$work/vmlinux" "$work/initrd.img"
mv "$work/vmlinuz" "$dir/vmlinuz"
mv "$work/vmlinux" "$dir/vmlinux"
mv "$work/initrd.img" "$dir/initrd.img"
mv "$work/manifest" "$dir/manifest"
echo "$key" >"$dir/key"
echo "$quick" >"$dir/quickkey"

# Keep only the packages this image was made of.
keep=$(for p in $pkgs; do deb_of "$p"; done)
for f in "$dir"/debs/*.deb; do
	printf '%s\n' "$keep" | grep -qxF "$f" || rm -f "$f"
done

note "built $kernel: vmlinuz $(wc -c <"$dir/vmlinuz") bytes, vmlinux $(wc -c <"$dir/vmlinux") bytes, initrd $(wc -c <"$dir/initrd.img") bytes"
print_paths
