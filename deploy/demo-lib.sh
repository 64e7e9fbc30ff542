# demo-lib.sh: sourced by deploy/demo.sh and deploy/demo-memtouch.sh.
#
# Expects bdir (the build directory) and work (a scratch directory); keeps
# pid_a and pid_b, the daemons the demo starts, and stops them by pid (and
# removes work) when the demo exits, however it exits.

pid_a=""
pid_b=""

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

stop_all() {
	for p in $pid_a $pid_b; do
		kill "$p" 2>/dev/null || true
	done
	for p in $pid_a $pid_b; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS NODE WORDS...: until `colo-ctl status --json` has them all
wait_for() {
	secs=$1 node=$2
	shift 2
	end=$(($(date +%s) + secs))
	while [ "$(date +%s)" -le "$end" ]; do
		js=$("$bdir/colo-ctl" -t 2000 -s "$work/$node.sock" status --json 2>/dev/null || true)
		ok=1
		for w in "$@"; do
			printf '%s' "$js" | grep -q -- "$w" || ok=0
		done
		[ $ok -eq 1 ] && return 0
		sleep 0.05
	done
	echo "--- log of a:"; cat "$work/a.log" 2>/dev/null || true
	echo "--- log of b:"; cat "$work/b.log" 2>/dev/null || true
	die "$node did not reach '$*' within $secs s"
}

# json_num NODE FIELD: a number from `colo-ctl status --json`
json_num() {
	"$bdir/colo-ctl" -s "$work/$1.sock" status --json |
		sed -n "s/^ *\"$2\": \([0-9.]*\),*$/\1/p" | head -n 1
}

for p in colo-primary colo-secondary colo-ctl; do
	[ -x "$bdir/$p" ] || die "$bdir/$p is not built"
done
