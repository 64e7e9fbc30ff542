#!/bin/sh
# netns_failover.sh: deploy/netns-demo.sh as a test: a kv pair in network
# namespaces, the service address moved by fence-command and
# promote-command, every acknowledged key read back through it, and a
# connected client that reconnects.  Skipped without root, network
# namespaces, redis-cli or arping (this test installs nothing).
set -u

: "${top_builddir:=.}"
: "${top_srcdir:=..}"
skip() { echo "1..0 # SKIP $*"; exit 0; }

[ "$(id -u)" -eq 0 ] || skip "needs root for network namespaces"
for c in ip redis-cli arping bash; do
	command -v "$c" >/dev/null || skip "$c is not installed"
done
probe=colo-probe-$$
ip netns add "$probe" 2>/dev/null || skip "cannot create a network namespace here"
ip netns del "$probe"

out=$(COLO_NETNS_TAG="t$$" sh "$top_srcdir/deploy/netns-demo.sh" "$top_builddir" 2>&1)
st=$?
echo "$out" | sed 's/^/# /'
echo "1..1"
if [ $st -eq 0 ] && echo "$out" | grep -q "200 of 200 acknowledged keys"; then
	echo "ok 1 - service address moved, every acknowledged key read back through it"
else
	echo "not ok 1 - netns failover (exit $st)"
	exit 1
fi
