#!/bin/sh
# quickstart.sh: build colo and show it working (Debian 12).
#
#   deploy/quickstart.sh          install what the build needs, build, and run
#                                 the end-to-end demonstration
#   deploy/quickstart.sh check    install what the build and tests need, build,
#                                 run the test suite, `make distcheck`, then the
#                                 suite again in an ASan+UBSan build (CI runs this)
#   deploy/quickstart.sh fuzz [SECONDS]
#                                 build the libFuzzer targets with clang and fuzz
#                                 the stream reader (default 600 s)
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
BUILD_PKGS="build-essential autoconf automake pkg-config libuv1-dev libprotobuf-c-dev
protobuf-c-compiler liblz4-dev check libjansson-dev libinih-dev libxxhash-dev"
# The interop tests run real QEMU (it is only a test dependency).
TEST_PKGS="qemu-system-x86"
FUZZ_PKGS="clang libclang-rt-14-dev"

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

check() {
	install_pkgs $BUILD_PKGS $TEST_PKGS
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
}

demo() {
	install_pkgs $BUILD_PKGS
	bootstrap
	build build
	bin="$top/build/colo-replay"
	work=$(mktemp -d "${TMPDIR:-/tmp}/colo-quickstart-XXXXXX")
	trap 'rm -rf "$work"' EXIT

	say "1. colo writes a guest as a QEMU savevm v3 stream"
	echo "The demo guest has 4 MiB of RAM (a page pattern, every fourth page zero)"
	echo "and two devices whose descriptions use every vmstate field kind."
	"$bin" sample --ram-mb 4 --seed 7 "$work/demo.colo"

	say "2. colo-replay dump reads it back to its last byte"
	"$bin" dump "$work/demo.colo"

	say "3. the same, as JSON (first lines)"
	"$bin" dump --json "$work/demo.colo" | head -n 25
	echo "..."

	say "4. a damaged copy is refused with one line naming the offset"
	head -c 5000 "$work/demo.colo" >"$work/cut.colo"
	"$bin" dump "$work/cut.colo" || echo "(exit status $?)"

	if command -v qemu-system-x86_64 >/dev/null; then
		say "5. a real QEMU migration file (pc machine, 32 MiB, paused)"
		printf 'migrate "exec:cat > %s"\nquit\n' "$work/qemu.mig" |
			timeout 60 qemu-system-x86_64 -machine pc -accel tcg -m 32 \
				-display none -nodefaults -S -monitor stdio >"$work/qemu.out" 2>&1 ||
			echo "(qemu exited with status $?)"
		if [ -s "$work/qemu.mig" ]; then
			"$bin" dump "$work/qemu.mig" >"$work/qemu.txt" && {
				head -n 12 "$work/qemu.txt"
				echo "    ..."
				tail -n 8 "$work/qemu.txt"
			}
		else
			echo "qemu wrote no migration file:"
			cat "$work/qemu.out"
		fi
	else
		say "5. (skipped: install qemu-system-x86 to dump a real QEMU migration file)"
	fi

	say "done"
	cat <<EOF
What happened: colo's stream writer saved a guest's RAM and devices in QEMU's
savevm v3 format (header, configuration, RAM START/PART/END sections, device
FULL sections, EOF, vmdesc), and colo-replay decoded every byte of it, device
fields by name through the vmdesc.  The same reader took a real QEMU file.
Binaries are in build/; run 'build/colo-replay --help'.  Tests:
'deploy/quickstart.sh check'.
EOF
}

case "${1:-}" in
"") demo ;;
check) check ;;
fuzz) shift; fuzz "$@" ;;
-h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' ;;
*) die "unknown mode '$1' (use no argument, 'check' or 'fuzz'; --help)" ;;
esac
