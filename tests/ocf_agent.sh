#!/bin/sh
# ocf_agent.sh: the Pacemaker resource agent (deploy/ocf/colo), as the
# built one.
#   1. ocf-tester (Debian's resource-agents) runs every action in its
#      order on one node: meta-data against the OCF DTD, validate-all,
#      probes, start, monitor, notify, demote and promote twice over
#      (promote with no checkpoint starts a fresh guest), stop, restart;
#      it must pass all, and leave no daemon behind.
#   2. Two nodes, driven by hand as Pacemaker would: a promoted (a
#      primary), b started (a secondary that gets its sync); a checkpoint;
#      then a demoted and b promoted: b takes over from the committed
#      checkpoint (colo-ctl failover), not a fresh guest, and a becomes
#      its secondary; monitor says 8 and 0; a bad configuration fails
#      validate-all with 6 and a reason.
# TAP.  Skipped without ocf-tester.
set -u
: "${top_builddir:=.}"
command -v ocf-tester >/dev/null || {
	echo "1..0 # SKIP ocf-tester not installed (apt-get install resource-agents)"
	exit 0
}
bin=$(cd "$top_builddir" && pwd)
agent_built="$bin/deploy/ocf/colo"
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-ocf-XXXXXX")
n=0 fails=0
# Every daemon the agent started is in a pid file here.
cleanup() {
	for f in "$work"/rsc/colo-*.pid; do
		[ -f "$f" ] || continue
		p=$(cat "$f")
		kill "$p" 2>/dev/null
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
		kill -9 "$p" 2>/dev/null
	done
	rm -rf "$work"
}
trap cleanup EXIT
. "${top_srcdir:-.}/tests/ports.sh"
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

# ocf-tester runs the agent as nobody for meta-data: a directory it can read.
chmod 755 "$work"
cp "$agent_built" "$work/colo"
chmod 755 "$work/colo"
mkdir -p "$work/rsc"
export HA_RSCTMP="$work/rsc"
export OCF_ROOT=/usr/lib/ocf

rep=$(free_port)
rep2=$(free_port)
# conf NAME LISTEN PEER: one file for both roles, as the agent wants
conf() {
	cat >"$work/$1.conf" <<END
[node]
state-dir = $work/$1.state
[replication]
listen = 127.0.0.1:$2
peer = 127.0.0.1:$3
checkpoint-interval-ms = 100
[guest]
guest = memtouch
ram-mb = 8
END
}
conf t "$rep" "$rep"

echo "1..6"
# 1. ocf-tester, one node
ocf-tester -n colo-t -o node=t -o config="$work/t.conf" -o control="$work/t.sock" \
	-o log="$work/t.log" -o bindir="$bin" "$work/colo" >"$work/tester.out" 2>&1
st=$?
if [ $st -eq 0 ] && grep -q "passed all tests" "$work/tester.out" &&
   ! grep -q "does not support the \(notify\|demote\|promote\)" "$work/tester.out" &&
   grep -q "primary engine started" "$work/t.log" &&
   grep -q "secondary engine listening" "$work/t.log" &&
   [ ! -f "$work/rsc/colo-colo-t.pid" ]; then
	ok "ocf-tester: passed all tests (start, monitor, notify, promote, demote, stop, restart; a primary and a secondary ran), no daemon left"
else
	not_ok "ocf-tester passes" "exit $st" "$(cat "$work/tester.out")" "$(tail -20 "$work/t.log" 2>/dev/null)"
fi

# 2. two nodes by hand
conf a "$rep" "$rep2"
conf b "$rep2" "$rep"
# act NODE ACTION: run the agent as Pacemaker would for that node
act() {
	OCF_RESOURCE_INSTANCE="colo-$1" OCF_RESKEY_node="$1" OCF_RESKEY_config="$work/$1.conf" \
	OCF_RESKEY_control="$work/$1.sock" OCF_RESKEY_log="$work/$1.log" OCF_RESKEY_bindir="$bin" \
	OCF_RESKEY_CRM_meta_timeout=60000 "$work/colo" "$2" >>"$work/acts.log" 2>&1
}
field() {
	"$bin/colo-ctl" -s "$work/$1.sock" status --json 2>/dev/null |
		sed -n "s/^  \"$2\": \"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p"
}
act a start && act a promote && act b start
r1=$?
i=0
until [ "$(field a state)" = protected ] || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done
ck=$("$bin/colo-ctl" -s "$work/a.sock" checkpoint 2>&1 | sed -n 's/^checkpoint \([0-9]*\) committed$/\1/p')
act a monitor; ma=$?
act b monitor; mb=$?
if [ $r1 -eq 0 ] && [ -n "$ck" ] && [ $ma -eq 8 ] && [ $mb -eq 0 ] &&
   [ "$(field b state)" = protected ]; then
	ok "a promoted, b started: a protected by b, checkpoint $ck committed; monitor 8 and 0"
else
	not_ok "a promoted, b started" "r1 $r1 ck '$ck' monitor $ma $mb" "$(cat "$work/acts.log")" \
		"$(tail -5 "$work/a.log")" "$(tail -5 "$work/b.log")"
fi

gen_a=$(field a generation)
act a demote; d=$?
act b promote; p=$?
role_b=$(field b role)
gen_b=$(field b generation)
if [ $d -eq 0 ] && [ $p -eq 0 ] && [ "$role_b" = primary ] && [ "$gen_b" -gt "$gen_a" ] &&
   grep -q "taking over as primary, generation $gen_b, from checkpoint" "$work/b.log"; then
	ok "a demoted, b promoted: b took over from the committed state (generation $gen_a -> $gen_b)"
else
	not_ok "b takes over from the committed state" "demote $d promote $p role $role_b gen $gen_a $gen_b" \
		"$(tail -5 "$work/b.log")"
fi
i=0
until [ "$(field b state)" = protected ] || [ $i -gt 600 ]; do sleep 0.05; i=$((i + 1)); done
act a monitor; ma=$?
act b monitor; mb=$?
if [ "$(field b state)" = protected ] && [ $ma -eq 0 ] && [ $mb -eq 8 ]; then
	ok "a is b's secondary now: b protected, monitor 0 and 8"
else
	not_ok "a is b's secondary now" "b $(field b state), monitor $ma $mb" "$(tail -5 "$work/a.log")"
fi

act a stop; sa=$?
act b stop; sb=$?
act a monitor; ma=$?
if [ $sa -eq 0 ] && [ $sb -eq 0 ] && [ $ma -eq 7 ] && ! ls "$work"/rsc/colo-*.pid >/dev/null 2>&1; then
	ok "stop both: monitor 7, no daemon left"
else
	not_ok "stop both" "stop $sa $sb monitor $ma" "$(ls "$work/rsc")"
fi

# A configuration the daemons refuse: validate-all says 6 and why.
printf '[replication]\ncheckpoint-interval-ms = often\n' >"$work/bad.conf"
OCF_RESOURCE_INSTANCE=colo-bad OCF_RESKEY_node=bad OCF_RESKEY_config="$work/bad.conf" \
	OCF_RESKEY_bindir="$bin" "$work/colo" validate-all >"$work/bad.out" 2>&1
st=$?
if [ $st -eq 6 ] && grep -q "checkpoint-interval-ms" "$work/bad.out"; then
	ok "validate-all on a bad configuration: 6, naming the key"
else
	not_ok "validate-all on a bad configuration" "exit $st" "$(cat "$work/bad.out")"
fi
[ $fails -eq 0 ]
