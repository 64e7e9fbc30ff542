#!/bin/sh
# hardening.sh: the daemons under the confinement the systemd units ask for
# (deploy/systemd: NoNewPrivileges, ProtectSystem=strict, ProtectHome,
# PrivateTmp), built here without systemd: a private mount namespace where
# the whole file system is read-only but the node's state and runtime
# directories, /tmp and /var/tmp are fresh and empty, /root and /home are
# hidden, and both daemons run with no_new_privs (setpriv).  A kv pair must
# get protected, acknowledge a write, and the secondary must take over after
# the primary is killed and answer it.  That the confinement holds is
# checked too: a write to /etc fails in there.  The scratch directory and
# a copy of the programs live in /dev/shm: the build tree may be under
# /tmp, which the namespace covers.  TAP.  Skipped when not root
# or without unshare, setpriv or redis-cli.
set -u
: "${top_builddir:=.}"
for t in unshare setpriv redis-cli; do
	command -v $t >/dev/null || { echo "1..0 # SKIP no $t"; exit 0; }
done
[ "$(id -u)" -eq 0 ] || { echo "1..0 # SKIP not root (mount namespaces)"; exit 0; }
bin=$(cd "$top_builddir" && pwd)
# Not under /tmp or /var/tmp, which the namespace covers with empty ones
# (the build tree may be there): /dev/shm, which PrivateTmp leaves alone.
work=$(mktemp -d /dev/shm/colo-hardening-XXXXXX) || exit 1
# The daemons started in the namespace, by pid, should the inner script
# have stopped half-way.
cleanup() {
	[ -f "$work/pids" ] && for p in $(cat "$work/pids"); do kill -9 "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
# The programs go with it: the build tree may be under /tmp too.
mkdir "$work/bin"
cp "$bin/colo-primary" "$bin/colo-secondary" "$bin/colo-ctl" "$work/bin/" || exit 1
bin=$work/bin
. "${top_srcdir:-.}/tests/ports.sh"
rep=$(free_port)
kv=$(free_port)
kvb=$(free_port)

cat >"$work/inner.sh" <<END
set -u
w=$work
# ProtectSystem=strict: everything read-only, the node's directories
# (StateDirectory, RuntimeDirectory) writable.
mount --bind "\$w" "\$w" || exit 90
mount -o remount,bind,ro / || exit 91
# PrivateTmp, ProtectHome
mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 92
mount -t tmpfs -o mode=1777 tmpfs /var/tmp || exit 92
mount -t tmpfs -o ro,mode=0755 tmpfs /root || exit 93
[ -d /home ] && { mount -t tmpfs -o ro,mode=0755 tmpfs /home || exit 93; }
if touch /etc/colo-hardening 2>/dev/null; then echo "CONFINEMENT BROKEN"; exit 94; fi
echo "confined"
# setpriv execs the daemon: \$! is the daemon's pid.
setpriv --no-new-privs "$bin/colo-secondary" --name b --guest kv --listen 127.0.0.1:$rep \
	--guest-listen 127.0.0.1:$kvb --ram-mb 16 --control "\$w/b.sock" \
	--state-dir "\$w/b" >"\$w/b.log" 2>&1 &
pb=\$!
echo \$pb >>"\$w/pids"
setpriv --no-new-privs "$bin/colo-primary" --name a --guest kv --peer 127.0.0.1:$rep \
	--guest-listen 127.0.0.1:$kv --ram-mb 16 --control "\$w/a.sock" \
	--state-dir "\$w/a" >"\$w/a.log" 2>&1 &
pa=\$!
echo \$pa >>"\$w/pids"
i=0
until "$bin/colo-ctl" -s "\$w/a.sock" status 2>/dev/null | grep -q '^state  *protected'; do
	i=\$((i + 1))
	if [ \$i -gt 400 ]; then echo "NOT PROTECTED"; kill \$pa \$pb; wait; exit 95; fi
	sleep 0.05
done
echo "protected"
echo "set: \$(redis-cli -p $kv SET hardened yes)"
kill -9 \$pa
wait \$pa 2>/dev/null
i=0
until "$bin/colo-ctl" -s "\$w/b.sock" status 2>/dev/null | grep -q '^role  *primary'; do
	i=\$((i + 1))
	if [ \$i -gt 400 ]; then echo "NO TAKEOVER"; kill \$pb; wait; exit 96; fi
	sleep 0.05
done
echo "get: \$(redis-cli -p $kvb GET hardened)"
grep -q 'NoNewPrivs:	1' /proc/\$pb/status && echo "no_new_privs"
kill \$pb
wait \$pb
echo "stopped \$?"
END

echo "1..4"
unshare -m --propagation private sh "$work/inner.sh" >"$work/out" 2>&1
st=$?
n=0 fails=0
check() {
	n=$((n + 1))
	if grep -qx "$2" "$work/out"; then echo "ok $n - $1"; else
		fails=$((fails + 1))
		echo "not ok $n - $1"
		sed 's/^/# /' "$work/out"
		tail -5 "$work/a.log" "$work/b.log" 2>/dev/null | sed 's/^/# /'
	fi
}
check "read-only system, private /tmp, hidden homes: /etc not writable" "confined"
check "a kv pair gets protected there and acknowledges a write" "set: OK"
check "the secondary takes over from a killed primary and answers it" "get: yes"
n=$((n + 1))
if [ $st -eq 0 ] && grep -qx "no_new_privs" "$work/out" && grep -qx "stopped 0" "$work/out"; then
	echo "ok $n - with no_new_privs, and it stops cleanly (exit 0)"
else
	fails=$((fails + 1))
	echo "not ok $n - no_new_privs and a clean stop (namespace exit $st)"
	sed 's/^/# /' "$work/out"
fi
[ $fails -eq 0 ]
