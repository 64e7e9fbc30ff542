#!/bin/sh
# security.sh: the start-up rules of peer authentication (DESIGN.md §8,
# docs/security.md) as an operator meets them, both roles:
#   - without a psk-file, an address that is not loopback refuses the start
#     (exit 2, one line naming it), at run and with --check-config, unless
#     --insecure (then the node runs and warns);
#   - a psk-file readable or writable by others, short, or missing refuses
#     the start naming the file;
#   - with a good key the node runs on any address and says it
#     authenticates; without one on loopback it says what that means.
# Nothing connects anywhere but loopback: 0.0.0.0 is only listened on, and
# the TEST-NET address 192.0.2.1 is only given to --check-config (or to a
# start refused before the node does anything).  TAP.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
bin=$top_builddir
tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-security-XXXXXX") || exit 1
pid=""
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
. "$top_srcdir/tests/tap.sh"
. "$top_srcdir/tests/ports.sh"

# colo_node ROLE NAME ARGS...: exec a node with everything in $tmp (in a
# subshell: refused and start run it so)
colo_node() {
	role=$1 name=$2
	shift 2
	exec "$bin/colo-$role" --name "$name" --control "$tmp/$name.sock" \
		--state-dir "$tmp/$name.state" --guest memtouch --ram-mb 16 "$@"
}

# refused NAME LINE CMD...: exit 2, nothing on stdout, stderr is LINE alone
refused() {
	what=$1 line=$2
	shift 2
	("$@") >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne 2 ]; then
		not_ok "$what: exit $got, expected 2" "$tmp/err"
	elif [ "$(cat "$tmp/err")" != "$line" ]; then
		echo "# expected: $line"
		not_ok "$what: stderr is not the one line" "$tmp/err"
	elif [ -s "$tmp/out" ]; then
		not_ok "$what: unexpected stdout" "$tmp/out"
	else
		ok "$what"
	fi
}

# start NAME CMD...: run it in the background ($pid), log in $tmp/NAME.log;
# fails unless it answers colo-ctl status
start() {
	name=$1
	shift
	"$@" >"$tmp/$name.log" 2>&1 &
	pid=$!
	i=0
	until "$bin/colo-ctl" -s "$tmp/$name.sock" status >/dev/null 2>&1; do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid"
			echo "# $name exited with $?"
			pid=""
			return 1
		fi
		i=$((i + 1))
		[ $i -lt 400 ] || return 1
		sleep 0.05
	done
}

# logged NAME TEXT: its log has TEXT (waiting up to 10 s while it runs)
logged() {
	i=0
	until grep -qF -- "$2" "$tmp/$1.log"; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}

# stop: SIGTERM the running node by its pid; true if it exits 0
stop() {
	kill "$pid"
	wait "$pid"
	st=$?
	pid=""
	return $st
}

echo "1..26"

p=$(free_port)
q=$(free_port)
open="is not loopback and there is no psk-file: anyone who reaches it would be believed"
open="$open (set [security] psk-file, or --insecure to run so anyway)"

# ---- no key: loopback only ----
refused "secondary listening on 0.0.0.0 without a key" \
	"colo-secondary: listen 0.0.0.0:$p $open" colo_node secondary b --listen "0.0.0.0:$p"
refused "... and with --check-config" \
	"colo-secondary: listen 0.0.0.0:$p $open" \
	colo_node secondary b --listen "0.0.0.0:$p" --check-config
refused "secondary with a peer that is not loopback (--check-config)" \
	"colo-secondary: peer 192.0.2.1:$q $open" \
	colo_node secondary b --listen "127.0.0.1:$p" --peer "192.0.2.1:$q" --check-config
refused "primary with a peer that is not loopback (--check-config)" \
	"colo-primary: peer 192.0.2.1:$q $open" \
	colo_node primary a --peer "192.0.2.1:$q" --check-config
refused "primary with peer 0.0.0.0 without a key" \
	"colo-primary: peer 0.0.0.0:$q $open" colo_node primary a --peer "0.0.0.0:$q"
refused "--insecure=no is no --insecure" \
	"colo-secondary: listen 0.0.0.0:$p $open" \
	colo_node secondary b --listen "0.0.0.0:$p" --insecure=no --check-config
printf '[replication]\nlisten = 0.0.0.0:%s\n[security]\ninsecure = no\n' "$p" >"$tmp/open.ini"
refused "the same from the config file" \
	"colo-secondary: listen 0.0.0.0:$p $open" \
	colo_node secondary b -c "$tmp/open.ini" --check-config

"$bin/colo-secondary" --name b --control "$tmp/b.sock" --state-dir "$tmp/b.state" \
	--listen "0.0.0.0:$p" --insecure --allow-split-brain --check-config >"$tmp/out" \
	2>"$tmp/err" &&
	[ "$(cat "$tmp/out")" = "colo-secondary: configuration OK" ] && [ ! -s "$tmp/err" ] &&
	ok "--insecure passes --check-config" ||
	not_ok "--insecure passes --check-config" "$tmp/out" "$tmp/err"

warn="WARN node=b gen=1 role=secondary: insecure: no psk-file, and listen 0.0.0.0:$p"
warn="$warn is not loopback: anyone who reaches this node's replication and heartbeat"
if start b colo_node secondary b --listen "0.0.0.0:$p" --insecure --allow-split-brain &&
   logged b "$warn ports is believed" &&
   ! grep -q "peers authenticate" "$tmp/b.log" && stop; then
	ok "--insecure on 0.0.0.0: runs, warns that anyone is believed, stops cleanly"
else
	not_ok "--insecure on 0.0.0.0: runs and warns" "$tmp/b.log"
fi
[ -z "$pid" ] || stop

loop_warn="no psk-file: peers are not authenticated, so this node uses loopback addresses only"
if start b colo_node secondary b --listen "127.0.0.1:$p" --peer "127.0.0.1:$q" &&
   logged b "WARN node=b gen=1 role=secondary: $loop_warn" &&
   ! grep -q "insecure" "$tmp/b.log" && stop; then
	ok "unkeyed secondary on loopback: runs and says it is loopback only"
else
	not_ok "unkeyed secondary on loopback" "$tmp/b.log"
fi
[ -z "$pid" ] || stop
if start a colo_node primary a --peer "127.0.0.1:$q" &&
   logged a "WARN node=a gen=1 role=primary: $loop_warn" &&
   ! grep -q "insecure" "$tmp/a.log" && stop; then
	ok "unkeyed primary on loopback: runs and says it is loopback only"
else
	not_ok "unkeyed primary on loopback" "$tmp/a.log"
fi
[ -z "$pid" ] || stop

# ---- key files that are refused ----
"$bin/colo-ctl" keygen "$tmp/key" >/dev/null || not_ok "keygen"
cp "$tmp/key" "$tmp/open.key"
chmod 644 "$tmp/open.key"
cp "$tmp/key" "$tmp/gw.key"
chmod 620 "$tmp/gw.key"
printf 'short key\n' >"$tmp/short.key"
chmod 600 "$tmp/short.key"
keygen_hint() { echo "(colo-ctl keygen $1 writes one)"; }
short="10 bytes; wanted 32 random bytes or 64 hex digits"

refused "secondary: psk-file readable by others" \
	"colo-secondary: psk-file $tmp/open.key: mode 0644 lets others read it (chmod 600 $tmp/open.key)" \
	colo_node secondary b --listen "127.0.0.1:$p" --psk-file "$tmp/open.key"
refused "primary: psk-file readable by others (--check-config)" \
	"colo-primary: psk-file $tmp/open.key: mode 0644 lets others read it (chmod 600 $tmp/open.key)" \
	colo_node primary a --peer "127.0.0.1:$q" --psk-file "$tmp/open.key" --check-config
refused "primary: psk-file writable by its group" \
	"colo-primary: psk-file $tmp/gw.key: mode 0620 lets others change it (chmod 600 $tmp/gw.key)" \
	colo_node primary a --peer "127.0.0.1:$q" --psk-file "$tmp/gw.key"
refused "secondary: short psk-file" \
	"colo-secondary: psk-file $tmp/short.key: $short $(keygen_hint "$tmp/short.key")" \
	colo_node secondary b --listen "127.0.0.1:$p" --psk-file "$tmp/short.key"
refused "primary: short psk-file (--check-config)" \
	"colo-primary: psk-file $tmp/short.key: $short $(keygen_hint "$tmp/short.key")" \
	colo_node primary a --peer "127.0.0.1:$q" --psk-file "$tmp/short.key" --check-config
refused "secondary: missing psk-file" \
	"colo-secondary: psk-file $tmp/none.key: no such file $(keygen_hint "$tmp/none.key")" \
	colo_node secondary b --listen "127.0.0.1:$p" --psk-file "$tmp/none.key"
refused "primary: missing psk-file" \
	"colo-primary: psk-file $tmp/none.key: no such file $(keygen_hint "$tmp/none.key")" \
	colo_node primary a --peer "127.0.0.1:$q" --psk-file "$tmp/none.key"
printf '[security]\npsk-file = %s\n' "$tmp/none.key" >"$tmp/none.ini"
refused "missing psk-file from [security] psk-file (--check-config)" \
	"colo-secondary: psk-file $tmp/none.key: no such file $(keygen_hint "$tmp/none.key")" \
	colo_node secondary b --listen "0.0.0.0:$p" -c "$tmp/none.ini" --check-config
refused "a bad key is refused with --insecure too" \
	"colo-secondary: psk-file $tmp/open.key: mode 0644 lets others read it (chmod 600 $tmp/open.key)" \
	colo_node secondary b --listen "0.0.0.0:$p" --insecure --psk-file "$tmp/open.key" --check-config

# ---- a good key ----
"$bin/colo-secondary" --name b --control "$tmp/b.sock" --state-dir "$tmp/b.state" \
	--listen "0.0.0.0:$p" --psk-file "$tmp/key" --fence-command true --check-config \
	>"$tmp/out" 2>"$tmp/err" &&
	[ "$(cat "$tmp/out")" = "colo-secondary: configuration OK" ] && [ ! -s "$tmp/err" ] &&
	ok "a good key passes --check-config on 0.0.0.0" ||
	not_ok "a good key passes --check-config on 0.0.0.0" "$tmp/out" "$tmp/err"
"$bin/colo-primary" --name a --control "$tmp/a.sock" --state-dir "$tmp/a.state" \
	--peer "192.0.2.1:$q" --psk-file "$tmp/key" --check-config >"$tmp/out" 2>"$tmp/err" &&
	[ "$(cat "$tmp/out")" = "colo-primary: configuration OK" ] && [ ! -s "$tmp/err" ] &&
	ok "a good key passes --check-config with a peer that is not loopback" ||
	not_ok "a good key passes --check-config, peer not loopback" "$tmp/out" "$tmp/err"

# Off loopback a secondary also needs something against a split brain
# (docs/arbiter.md): an arbiter, a fence-command, or consent.
refused "keyed secondary on 0.0.0.0, no arbiter, no fence-command" \
	"colo-secondary: listen 0.0.0.0:$p is not loopback and there is neither an arbiter nor a fence-command: a partition would let both nodes serve (set [arbiter] arbiter = etcd, or fence-command, or --allow-split-brain)" \
	colo_node secondary b --listen "0.0.0.0:$p" --psk-file "$tmp/key" --check-config
printf '[security]\npsk-file = %s\n[arbiter]\nallow-split-brain = yes\n' "$tmp/key" \
	>"$tmp/key.ini"
if start b colo_node secondary b --listen "0.0.0.0:$p" -c "$tmp/key.ini" &&
   logged b "INFO node=b gen=1 role=secondary: peers authenticate with the key in $tmp/key" &&
   ! grep -q "no psk-file" "$tmp/b.log" && ! grep -q "insecure" "$tmp/b.log" && stop; then
	ok "keyed secondary ([security] psk-file) on 0.0.0.0: runs, authenticates, no warning"
else
	not_ok "keyed secondary on 0.0.0.0" "$tmp/b.log"
fi
[ -z "$pid" ] || stop
if start a colo_node primary a --peer "127.0.0.1:$q" --psk-file "$tmp/key" &&
   logged a "INFO node=a gen=1 role=primary: peers authenticate with the key in $tmp/key" &&
   ! grep -q "no psk-file" "$tmp/a.log" && ! grep -q "insecure" "$tmp/a.log" && stop; then
	ok "keyed primary (--psk-file): runs, authenticates, no warning"
else
	not_ok "keyed primary" "$tmp/a.log"
fi
[ -z "$pid" ] || stop
# the raw form: 32 bytes, not hex
head -c 32 /dev/urandom >"$tmp/raw.key"
chmod 600 "$tmp/raw.key"
if start b colo_node secondary b --listen "127.0.0.1:$p" --psk-file "$tmp/raw.key" &&
   logged b "peers authenticate with the key in $tmp/raw.key" && stop; then
	ok "a key of 32 raw bytes is taken too"
else
	not_ok "a key of 32 raw bytes" "$tmp/b.log"
fi
[ -z "$pid" ] || stop

[ "$fails" -eq 0 ]
