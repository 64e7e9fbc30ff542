#!/bin/sh
# systemd_units.sh: the units make builds from deploy/systemd/*.in.  Each
# must say what the daemons do (Type=notify, a watchdog, SIGHUP to reload,
# the configuration /etc/colo/NAME.conf under the configured sysconfdir,
# the configured bindir), its command line must be one the daemon takes
# (--check-config with a configuration of that name), and systemd-analyze
# verify must find nothing to say about it (skipped where systemd-analyze
# is missing).  The unit is verified as an instance, with its ExecStart
# pointed at the build tree, since the installed binary need not exist yet.
# TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-units-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

bindir=$(sed -n 's/^bindir = //p' "$top_builddir/Makefile")
sysconfdir=$(sed -n 's/^sysconfdir = //p' "$top_builddir/Makefile")
prefix=$(sed -n 's/^prefix = //p' "$top_builddir/Makefile")
exec_prefix=$(sed -n 's/^exec_prefix = //p' "$top_builddir/Makefile")
# Makefile values may refer to each other: expand them the way make does.
bindir=$(prefix=$prefix; exec_prefix=$(eval echo "$exec_prefix"); eval echo "$bindir")
sysconfdir=$(prefix=$prefix; eval echo "$sysconfdir")

echo "1..10"
for role in primary secondary; do
	unit="$top_builddir/deploy/systemd/colo-$role@.service"
	if [ ! -f "$unit" ]; then
		not_ok "colo-$role@.service was built" "missing: $unit"
		continue
	fi
	want="ExecStart=$bindir/colo-$role -c $sysconfdir/colo/%i.conf --name %i"
	if grep -qx "$want" "$unit" && grep -qx 'Type=notify' "$unit" &&
	   grep -qx 'WatchdogSec=10s' "$unit" &&
	   grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" &&
	   grep -qx 'RuntimeDirectory=colo' "$unit" && grep -qx 'StateDirectory=colo' "$unit" &&
	   ! grep -q '@[a-z]*@' "$unit"; then
		ok "colo-$role@.service: notify, watchdog, reload, paths of this build"
	else
		not_ok "colo-$role@.service: notify, watchdog, reload, paths of this build" \
			"wanted '$want'" "$(cat "$unit")"
	fi

	# The command line, as the unit runs it for instance "test".
	mkdir -p "$tmp/etc/colo"
	if [ $role = primary ]; then
		printf '[replication]\npeer = 127.0.0.1:7070\n' >"$tmp/etc/colo/test.conf"
	else
		printf '[replication]\nlisten = 127.0.0.1:7070\n' >"$tmp/etc/colo/test.conf"
	fi
	"$top_builddir/colo-$role" -c "$tmp/etc/colo/test.conf" --name test --check-config \
		>"$tmp/out" 2>&1
	st=$?
	if [ $st -eq 0 ]; then
		ok "colo-$role takes the unit's command line"
	else
		not_ok "colo-$role takes the unit's command line" "exit $st" "$(cat "$tmp/out")"
	fi

	if ! command -v systemd-analyze >/dev/null 2>&1; then
		skip "systemd-analyze verify colo-$role@test.service" "no systemd-analyze"
		skip "systemd-analyze refuses a broken colo-$role unit" "no systemd-analyze"
		continue
	fi
	abs=$(cd "$top_builddir" && pwd)
	sed "s|^ExecStart=$bindir/|ExecStart=$abs/|" "$unit" >"$tmp/colo-$role@test.service"
	systemd-analyze verify "$tmp/colo-$role@test.service" >"$tmp/out" 2>&1
	st=$?
	if [ $st -eq 0 ] && [ ! -s "$tmp/out" ]; then
		ok "systemd-analyze verify colo-$role@test.service"
	else
		not_ok "systemd-analyze verify colo-$role@test.service" "exit $st" "$(cat "$tmp/out")"
	fi
	# The check can fail: a directive systemd does not know is reported.
	sed 's/^Type=notify$/Type=notfy/' "$tmp/colo-$role@test.service" >"$tmp/colo-$role@bad.service"
	systemd-analyze verify "$tmp/colo-$role@bad.service" >"$tmp/out" 2>&1
	if grep -q 'notfy' "$tmp/out"; then
		ok "systemd-analyze refuses a broken colo-$role unit"
	else
		not_ok "systemd-analyze refuses a broken colo-$role unit" "$(cat "$tmp/out")"
	fi
	rm -f "$tmp/colo-$role@"*.service
done

# The two differ where they must: the primary is not restarted (a fresh
# guest would serve), the secondary is, except for the statuses an
# operator must look at.
p="$top_builddir/deploy/systemd/colo-primary@.service"
s="$top_builddir/deploy/systemd/colo-secondary@.service"
if grep -qx 'Restart=no' "$p" && grep -qx 'Restart=on-failure' "$s" &&
   grep -qx 'RestartPreventExitStatus=2 4 5 6' "$s"; then
	ok "restart policy: never the primary, the secondary unless it must not"
else
	not_ok "restart policy: never the primary, the secondary unless it must not"
fi
sed -n '/^NoNewPrivileges=/,/^UMask=/p' "$p" >"$tmp/hp"
sed -n '/^NoNewPrivileges=/,/^UMask=/p' "$s" >"$tmp/hs"
if [ "$(grep -c . "$tmp/hp")" -ge 10 ] && cmp -s "$tmp/hp" "$tmp/hs"; then
	ok "the same hardening in both units"
else
	not_ok "the same hardening in both units" "$(diff "$tmp/hp" "$tmp/hs")"
fi
[ $fails -eq 0 ]
