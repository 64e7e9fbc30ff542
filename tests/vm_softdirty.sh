#!/bin/sh
# vm_softdirty.sh: tests/test_ram under Debian's own kernel, booted under
# QEMU's TCG.  This machine's kernel has no soft-dirty bits
# (CONFIG_MEM_SOFT_DIRTY is not set) and has PAGEMAP_SCAN, so here the
# soft-dirty backend is never chosen and cannot be tested; Debian 12's
# kernel (the one in the Linux test VM's cache, deploy/vm/make-testvm.sh)
# has soft-dirty and no PAGEMAP_SCAN, which is where auto picks it.
# tests/vm/runvm.sh boots it with test_ram in an initramfs; runinit runs
# test_ram once per test case below, with 4 times fewer racing writes and
# 4 times longer timeouts (TCG is slow).  A second boot runs
# test_kv_loss (6 trials in buffer and 6 in compare mode, kv pairs killed
# at random moments and checkpoint phases; colo-primary and
# colo-secondary go into the initramfs at their build paths), whose trials
# with dirty-tracking auto run soft-dirty there.  What must hold: the VM
# boots and runs them all; each case passes; the soft-dirty case really
# ran (most of its tests are not skips); under that kernel auto chose
# soft-dirty, in test_ram and in the pairs.  Skipped when the kernel is not in the cache
# (deploy/quickstart.sh vm-image makes it), or qemu-system-x86_64 or cpio
# is missing.  Takes about 3 min (TCG, 2 virtual CPUs).  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
skip() { echo "1..0 # SKIP $*"; exit 0; }

# runvm.sh says whether it can run here (QEMU, cpio, the kernel), and why not.
why=$(sh "$top_srcdir/tests/vm/runvm.sh" -n 2>&1)
case $? in
0) ;;
77) skip "${why#runvm: }" ;;
*) echo "Bail out! tests/vm/runvm.sh -n: $why"; exit 1 ;;
esac

init=$top_builddir/tests/vm/runinit
prog=$top_builddir/tests/test_ram
# (VM_SOFTDIRTY_CASES narrows the list, when working on one.)  A
# sanitizer build runs 4 times slower under TCG: only the cases soft-dirty
# is in.
# kv_loss stands for the second boot.
cases="soft-dirty probe sigsegv mprotect manual kv_loss"
if [ -x "$prog" ] && ldd "$prog" | grep -q libasan; then
	cases="soft-dirty probe sigsegv"
fi
cases=${VM_SOFTDIRTY_CASES:-$cases}
has() { case " $cases " in *" $1 "*) return 0 ;; esac; return 1; }
ram_cases=$(echo " $cases " | sed 's/ kv_loss / /; s/^ *//; s/ *$//')

tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-vm-softdirty-XXXXXX") || exit 1
rpid=""
cleanup() {
	if [ -n "$rpid" ]; then
		kill "$rpid" 2>/dev/null       # runvm.sh stops its QEMU
		wait "$rpid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

TAP_TAIL=200
. "$top_srcdir/tests/tap.sh"

nplan=$((1 + $(echo $ram_cases | wc -w)))
! has probe || nplan=$((nplan + 1))
! has kv_loss || nplan=$((nplan + 2))
echo "1..$nplan"
for f in "$init" "$prog" "$top_builddir/tests/test_kv_loss" "$top_builddir/colo-primary" \
	 "$top_builddir/colo-secondary"; do
	if [ ! -x "$f" ]; then
		echo "Bail out! $f is not built (make check builds it)"
		exit 1
	fi
done

# runvm.sh packs runinit, test_ram and its libraries, boots, and prints the
# console.  The QEMU it starts is its own to stop.
sh "$top_srcdir/tests/vm/runvm.sh" -c "$(echo $ram_cases | tr ' ' ,)" \
	-e COLO_TEST_SLOW=4 -e CK_TIMEOUT_MULTIPLIER=4 "$init" "$prog" >"$tmp/out" 2>&1 &
rpid=$!
wait "$rpid"
rpid=""
i=$(sed -n 's/^colo-vmrun: \([0-9]*\) s$/\1/p' "$tmp/out")

if grep -q '^colo-vmrun: done' "$tmp/out"; then
	ok "Debian's kernel booted under TCG and ran test_ram (${i:-?} s)"
else
	not_ok "Debian's kernel booted under TCG and ran test_ram (no end after ${i:-?} s)" "$tmp/out"
fi

for c in $ram_cases; do
	# This case's lines: from its "case" line to the next.
	awk -v c="$c" '/^colo-vmrun: case / { on = ($3 == c); next } on' "$tmp/out" >"$tmp/case-$c"
	st=$(sed -n 's/^colo-vmrun: exit //p' "$tmp/case-$c")
	pass=$(grep -c '^ok .* Passed$' "$tmp/case-$c")
	skipped=$(grep -c '^ok .*# SKIP' "$tmp/case-$c")
	failed=$(grep -c '^not ok' "$tmp/case-$c")
	what="test_ram case $c under Debian's kernel: $pass passed, $skipped skipped, $failed failed"
	if [ "$st" = 0 ] && [ "$failed" -eq 0 ] && [ "$pass" -gt 0 ] &&
	   { [ "$c" != soft-dirty ] || [ "$pass" -gt "$skipped" ]; }; then
		ok "$what"
		# What the soft-dirty tests counted (pages written, missed).
		[ "$c" != soft-dirty ] || grep '^# ' "$tmp/case-$c" | sed 's/^/#   /'
	else
		not_ok "$what (exit ${st:-none})" "$tmp/case-$c"
	fi
done

# The probe case prints what auto chose: under Debian 12's kernel (no
# PAGEMAP_SCAN, soft-dirty built in) that is soft-dirty.
if has probe; then
	auto=$(sed -n 's/^# auto: //p' "$tmp/case-probe" 2>/dev/null | head -n 1)
	kver=$(sed -n 's/^colo-vmrun: kernel //p' "$tmp/out")
	echo "# kernel ${kver:-not printed}; auto: ${auto:-not printed}"
	case $auto in
	soft-dirty:*) ok "auto chose soft-dirty under Debian's kernel" ;;
	# A later Debian kernel (>= 6.7) has PAGEMAP_SCAN: uffd-wp comes first.
	uffd-wp:*) ok "auto chose uffd-wp under Debian's kernel, which has PAGEMAP_SCAN" ;;
	*) not_ok "auto chose soft-dirty under Debian's kernel (it said: ${auto:-nothing})" \
		"$tmp/case-probe" ;;
	esac
fi

# The pairs: test_kv_loss, its daemons at the paths pair_bin() builds
# from top_builddir (absolute, so that they are the same inside).
if has kv_loss; then
	bd=$(cd "$top_builddir" && pwd)
	sh "$top_srcdir/tests/vm/runvm.sh" -c kv_loss -e COLO_LOSS_TRIALS=6 \
		-e CK_TIMEOUT_MULTIPLIER=6 -e top_builddir="$bd" \
		-f "$bd/colo-primary" -f "$bd/colo-secondary" \
		"$init" "$bd/tests/test_kv_loss" >"$tmp/loss" 2>&1 &
	rpid=$!
	wait "$rpid"
	rpid=""
	st=$(sed -n 's/^colo-vmrun: exit //p' "$tmp/loss")
	pass=$(grep -c '^ok .* Passed$' "$tmp/loss")
	failed=$(grep -c '^not ok' "$tmp/loss")
	i=$(sed -n 's/^colo-vmrun: \([0-9]*\) s$/\1/p' "$tmp/loss")
	if [ "$st" = 0 ] && [ "$failed" -eq 0 ] && [ "$pass" -gt 0 ]; then
		ok "test_kv_loss under Debian's kernel: $pass passed, 0 failed (${i:-?} s)"
	else
		not_ok "test_kv_loss under Debian's kernel: $pass passed, $failed failed (exit ${st:-none}, ${i:-?} s)" \
			"$tmp/loss"
	fi
	nsd=$(grep -c '^# primary: dirty tracking: soft-dirty: ' "$tmp/loss")
	nall=$(grep -c '^# primary: dirty tracking: ' "$tmp/loss")
	if [ "$nsd" -gt 0 ]; then
		ok "$nsd of the $nall kv pairs tracked with soft-dirty (auto)"
	else
		not_ok "kv pairs tracked with soft-dirty (auto): none of $nall" "$tmp/loss"
	fi
fi
[ $fails -eq 0 ]
