#!/bin/sh
# softdirty-vm.sh: colo-bench's dirty-tracking parts (first write, harvest,
# pause) under Debian's own kernel, booted under QEMU's TCG: this
# machine's kernel has no soft-dirty bits, Debian 12's has them (and no
# PAGEMAP_SCAN, so uffd-wp is absent there).  One command:
#
#   bench/softdirty-vm.sh [BUILD]        BUILD: a configured build tree (build)
#
# Needs the Linux test VM's kernel (deploy/quickstart.sh vm-image).  Every
# figure is TCG's: emulated memcpy and emulated page-table walks do not
# slow down alike, so only the ratios between backends measured in the
# same run mean anything, and those only roughly.  Prints colo-bench's
# tables as they come.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$top/build}" && pwd)
make -s -C "$build" bench/colo-bench tests/vm/runinit
for part in tracking pause; do
	sh "$top/tests/vm/runvm.sh" -t 1800 "$build/tests/vm/runinit" \
		"$build/bench/colo-bench" --only "$part" |
		sed -n '/^colo-vmrun: kernel /,$p' |
		grep -v '^colo-vmrun: \(case\|exit 0\|done\)\|^\[ *[0-9.]*\] reboot'
done
