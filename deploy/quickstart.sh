#!/bin/sh
# quickstart.sh: build colo and show it working (Debian 12).
#
#   deploy/quickstart.sh          install what the build needs, build, and run
#                                 the main job (deploy/demo.sh): a kv pair on
#                                 loopback, redis clients, a failover
#   deploy/quickstart.sh check    install what the build and tests need, build,
#                                 run the test suite, `make distcheck`, then the
#                                 suite again in an ASan+UBSan build (CI runs this)
#   deploy/quickstart.sh fuzz [SECONDS]
#                                 build the libFuzzer targets with clang and fuzz
#                                 the stream reader, then the kv guest, SECONDS
#                                 each (default 600)
#   deploy/quickstart.sh vm       install what it needs, build, make the Linux
#                                 test VM (cached) and run it protected by a
#                                 pair on loopback: Redis inside, a kill -9 of
#                                 its QEMU, the VM going on on the secondary
#                                 (deploy/vm-demo.sh, docs/vm.md)
#   deploy/quickstart.sh vm-image [DIR]
#                                 make the Linux test VM from Debian packages
#                                 (deploy/vm/make-testvm.sh; cached in DIR,
#                                 default ~/.cache/colo/testvm); `check` makes
#                                 it too, so the suite boots it (docs/vm.md)
#
# Build trees: build/ (plain), build-asan/ (sanitizers), build-fuzz/.
# Packages are installed with apt-get only when one is missing, so running it
# again costs nothing.  Not root: it uses sudo for apt-get.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)

say() { printf '\n== %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

# What the build, the tests and the demonstration need (Debian 12 names).
# check and libhiredis-dev are the tests' libraries (hiredis: their RESP
# client), but configure asks for them, so every build installs them.
BUILD_PKGS="build-essential autoconf automake pkg-config libuv1-dev libprotobuf-c-dev
protobuf-c-compiler liblz4-dev check libjansson-dev libinih-dev libxxhash-dev
libsodium-dev libhiredis-dev libcurl4-openssl-dev"
# The interop tests run real QEMU, the kv client tests Debian's redis-cli and
# redis-benchmark and talk RESP through hiredis (test dependencies; the
# demonstration uses redis-tools).  The VM network tests build namespaces,
# bridges and taps with iproute2 (tests/vmnet.sh).  The arbiter's tests run
# a real etcd member (etcd-server; tests/etcdsrv.c).  The partition test
# cuts links with nft rules on a bridge (nftables; tests/partition.sh).
# The systemd units are checked with systemd-analyze verify (systemd;
# tests/systemd_units.sh), the man pages with groff and man (groff-base,
# man-db; tests/install_docs.sh), the metrics endpoint with curl and
# promtool (prometheus; tests/metrics.sh), the Pacemaker agent with
# ocf-tester (resource-agents, and libxml2-utils for its xmllint;
# tests/ocf_agent.sh).
TEST_PKGS="qemu-system-x86 redis-tools iputils-arping libhiredis-dev iproute2 etcd-server
nftables systemd groff-base man-db curl prometheus resource-agents libxml2-utils"
DEMO_PKGS="redis-tools"
FUZZ_PKGS="clang libclang-rt-14-dev"
# What deploy/vm/make-testvm.sh runs besides apt and dpkg (binutils comes
# with build-essential); the test that boots the VM needs TEST_PKGS' QEMU
# and redis-tools.
VM_PKGS="cpio xz-utils binutils"

# as_root WHY CMD...: run CMD as root (sudo when not root).
as_root() {
	why=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	else
		command -v sudo >/dev/null || die "need root or sudo to $why"
		sudo "$@"
	fi
}

install_pkgs() {
	missing=""
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	say "installing:$missing"
	sudo=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null || die "need root or sudo to install:$missing"
		sudo=sudo
	fi
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
	# shellcheck disable=SC2086
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends $missing
}

bootstrap() {
	say "autoreconf"
	(cd "$top" && autoreconf -fi)
}

# build DIR [configure options...]
build() {
	dir=$1
	shift
	say "configure + make in $dir${1:+ ($*)}"
	mkdir -p "$top/$dir"
	(cd "$top/$dir" && "$top/configure" -q "$@" && make -s -j"$jobs")
}

# run_check DIR: make check, and show the logs of what failed.
run_check() {
	dir=$1
	say "make check in $dir"
	if ! (cd "$top/$dir" && make -s -j"$jobs" check); then
		for log in "$top/$dir"/tests/*.log "$top/$dir"/tests/fuzz/*.log; do
			[ -f "$log" ] || continue
			grep -q '^not ok\|^ERROR\|^FAIL' "$log" 2>/dev/null || continue
			printf '\n--- %s\n' "$log"
			tail -n 40 "$log"
		done
		die "make check failed in $dir"
	fi
	grep -h '^# \(TOTAL\|PASS\|SKIP\|FAIL\|ERROR\)' "$top/$dir/test-suite.log" 2>/dev/null || true
}

# make_vm [DIR]: the Linux test VM, cached (deploy/vm/make-testvm.sh).  When
# the download fails, apt's lists may be older than the archive: refresh
# them once and try again.
make_vm() {
	say "the Linux test VM (deploy/vm/make-testvm.sh)"
	sh "$top/deploy/vm/make-testvm.sh" "$@" && return 0
	say "refreshing apt's package lists and trying again"
	as_root "refresh apt's package lists" env DEBIAN_FRONTEND=noninteractive \
		apt-get update -q || return 1
	sh "$top/deploy/vm/make-testvm.sh" "$@"
}

vm_image() {
	install_pkgs $VM_PKGS
	make_vm "$@" || die "the test VM was not made (the message above says why)"
}

vm() {
	install_pkgs $BUILD_PKGS $TEST_PKGS $VM_PKGS
	make_vm || die "the test VM was not made (the message above says why)"
	bootstrap
	build build
	(cd "$top/build" && make -s tests/vm/tcgfix.so)
	say "a QEMU VM protected by colo: Linux + Redis, a failover"
	sh "$top/deploy/vm-demo.sh" "$top/build"
	say "done"
	cat <<EOF
What happened: colo-primary ran the VM in QEMU as a COLO primary and carried
each of its checkpoints to colo-secondary, which kept the committed RAM in a
file and a QEMU waiting on it; QEMU was killed; colo-secondary ran the VM on
from the last committed checkpoint: the same Redis process, with its data.
docs/vm.md says how to protect your own VM (under KVM; this demo uses TCG and
test-only workarounds because this machine's KVM cannot run Linux).
EOF
}

check() {
	install_pkgs $BUILD_PKGS $TEST_PKGS $VM_PKGS
	# Without the image, tests/vm_linux.sh skips; the rest of the suite runs.
	make_vm || say "no test VM: the tests that boot Linux will skip"
	bootstrap
	build build
	run_check build
	say "make distcheck"
	(cd "$top/build" && make -s -j"$jobs" distcheck >distcheck.log 2>&1) || {
		tail -n 60 "$top/build/distcheck.log"
		die "make distcheck failed (build/distcheck.log)"
	}
	grep 'archives ready for distribution' -A 2 "$top/build/distcheck.log" || true
	build build-asan --enable-sanitizers
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
	UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
		run_check build-asan
	say "all checks passed"
}

fuzz() {
	seconds=${1:-600}
	install_pkgs $BUILD_PKGS $FUZZ_PKGS
	bootstrap
	build build-fuzz --enable-fuzzing CC=clang
	say "fuzzing the stream reader for $seconds s"
	(cd "$top/build-fuzz" && make fuzz FUZZ_SECONDS="$seconds")
	say "fuzzing the kv guest's client path for $seconds s"
	(cd "$top/build-fuzz" && make fuzz-kv FUZZ_SECONDS="$seconds")
	say "fuzzing the kv guest's compare-mode units for $seconds s"
	(cd "$top/build-fuzz" && make fuzz-kvunit FUZZ_SECONDS="$seconds")
	say "fuzzing colo-primary's reading of QEMU's COLO stream for $seconds s"
	(cd "$top/build-fuzz" && make fuzz-qemu FUZZ_SECONDS="$seconds")
	say "fuzzing the authenticated Hello for $seconds s"
	(cd "$top/build-fuzz" && make fuzz-hello FUZZ_SECONDS="$seconds")
	say "fuzzing the heartbeat decoder for $seconds s"
	(cd "$top/build-fuzz" && make fuzz-hb FUZZ_SECONDS="$seconds")
	say "fuzzing the answers of etcd to the arbiter for $seconds s"
	(cd "$top/build-fuzz" && make fuzz-etcd FUZZ_SECONDS="$seconds")
}

demo() {
	install_pkgs $BUILD_PKGS $DEMO_PKGS
	bootstrap
	build build
	say "the main job: a kv pair on loopback, clients, a failover"
	cat <<EOF
colo-primary (a) runs the kv guest: a Redis-compatible service whose whole
database lives in guest RAM.  a checkpoints it to colo-secondary (b); a reply
leaves a only once the checkpoint holding its effect is safe on b.
EOF
	sh "$top/deploy/demo.sh" "$top/build"
	say "done"
	cat <<EOF
What happened: redis-benchmark and redis-cli talked to a, unmodified; a was
killed; b took over from its last committed checkpoint and served every
acknowledged key on its own address.  Binaries are in build/: colo-primary,
colo-secondary, colo-ctl, colo-replay (--help on each); docs/operations.md
says how to run a pair.  More: deploy/demo-memtouch.sh build (a guest that
verifies its own RAM page by page), 'deploy/quickstart.sh check' (tests),
build/bench/colo-pair-bench and bench/kv.sh (docs/BENCHMARKS.md).
EOF
}

case "${1:-}" in
"") demo ;;
check) check ;;
fuzz) shift; fuzz "$@" ;;
vm) vm ;;
vm-image) shift; vm_image "$@" ;;
-h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//' ;;
*) die "unknown mode '$1' (use no argument, 'check', 'fuzz', 'vm' or 'vm-image'; --help)" ;;
esac
