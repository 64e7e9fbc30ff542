#!/bin/sh
# metrics.sh: the metrics endpoint ([node] metrics-listen) as Prometheus
# meets it.  A kv pair serves metrics on both nodes; after some writes each
# scrape is checked by Debian's promtool (check metrics), then figure by
# figure: role, state, generation, checkpoints and why, the round trip's
# histogram (buckets that only grow, +Inf equal to the count), pages and
# bytes by encoding, heartbeats, the held replies (the kv guest's own
# figures), and the secondary's decode phase.  Requests that are not a GET
# of /metrics get their status (404, 405, 400, 431), and a bad
# metrics-listen is refused at start with a line saying why.  Skipped
# without curl, promtool (prometheus) or redis-cli (redis-tools).  TAP.
set -u
: "${top_builddir:=.}"
for t in curl promtool redis-cli; do
	command -v $t >/dev/null || {
		echo "1..0 # SKIP $t not installed (apt-get install curl prometheus redis-tools)"
		exit 0
	}
done

work=$(mktemp -d "${TMPDIR:-/tmp}/colo-metrics-XXXXXX")
pid_a=""
pid_b=""
fails=0
n=0
cleanup() {
	for p in $pid_a $pid_b; do kill "$p" 2>/dev/null; done
	for p in $pid_a $pid_b; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
. "${top_srcdir:-.}/tests/ports.sh"

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
# value FILE SERIES: the value of one series line (exact name and labels)
value() { awk -v s="$2" '$1 == s { print $2 }' "$1"; }

echo "1..13"
rep=$(free_port)
kv=$(free_port)
kvb=$(free_port)
ma=$(free_port)
mb=$(free_port)
"$top_builddir/colo-secondary" --name b --guest kv --listen "127.0.0.1:$rep" \
	--guest-listen "127.0.0.1:$kvb" --ram-mb 64 --control "$work/b.sock" \
	--state-dir "$work/b" --metrics-listen "127.0.0.1:$mb" >"$work/b.log" 2>&1 &
pid_b=$!
"$top_builddir/colo-primary" --name a --guest kv --peer "127.0.0.1:$rep" \
	--guest-listen "127.0.0.1:$kv" --ram-mb 64 --control "$work/a.sock" \
	--state-dir "$work/a" --metrics-listen "127.0.0.1:$ma" >"$work/a.log" 2>&1 &
pid_a=$!
i=0
# Waits on the node's state; the sleep only paces the polling.
until "$top_builddir/colo-ctl" -s "$work/a.sock" status --json 2>/dev/null |
	grep -q '"state": "protected"'; do
	i=$((i + 1))
	if [ $i -gt 400 ]; then
		echo "not ok 1 - the pair did not get protected"
		cat "$work/a.log" "$work/b.log"
		exit 1
	fi
	sleep 0.05
done
k=0
while [ $k -lt 50 ]; do
	redis-cli -p "$kv" SET "key$k" "value$k" >/dev/null
	k=$((k + 1))
done
# A checkpoint asked for now: committed when colo-ctl answers.
"$top_builddir/colo-ctl" -s "$work/a.sock" checkpoint >/dev/null

code=$(curl -s -o "$work/a.txt" -D "$work/a.hdr" -w '%{http_code}' "http://127.0.0.1:$ma/metrics")
curl -s -o "$work/b.txt" "http://127.0.0.1:$mb/metrics"
if [ "$code" = 200 ] &&
   grep -qi '^Content-Type: text/plain; version=0.0.4; charset=utf-8' "$work/a.hdr"; then
	ok "GET /metrics: 200, the text format's content type"
else
	not_ok "GET /metrics: 200, the text format's content type" "$code" "$(cat "$work/a.hdr")"
fi
for node in a b; do
	if promtool check metrics <"$work/$node.txt" >"$work/lint" 2>&1; then
		ok "promtool check metrics passes on node $node ($(grep -vc '^#' "$work/$node.txt") series)"
	else
		not_ok "promtool check metrics passes on node $node" "$(head -20 "$work/lint")"
	fi
done

a=$work/a.txt
b=$work/b.txt
if [ "$(value "$a" 'colo_role{role="primary"}')" = 1 ] &&
   [ "$(value "$a" 'colo_role{role="secondary"}')" = 0 ] &&
   [ "$(value "$a" 'colo_state{state="protected"}')" = 1 ] &&
   [ "$(value "$a" colo_generation)" = 1 ] &&
   [ "$(value "$b" 'colo_role{role="secondary"}')" = 1 ]; then
	ok "role, state and generation"
else
	not_ok "role, state and generation" "$(grep -E '^colo_(role|state|generation)' "$a" "$b")"
fi
ck=$(value "$a" colo_checkpoints_total)
req=$(value "$a" 'colo_checkpoints_started_total{cause="request"}')
last=$(value "$a" colo_last_committed_checkpoint)
if [ "${ck:-0}" -ge 1 ] && [ "${req:-0}" -ge 1 ] && [ "${last:-0}" -ge "$ck" ]; then
	ok "checkpoints: $ck committed, $req asked for, last committed $last"
else
	not_ok "checkpoints committed, asked for, last committed" "$ck $req $last"
fi
# The round trip's histogram: cumulative buckets, +Inf = count = checkpoints.
awk -v ck="$ck" '
	/^colo_checkpoint_phase_seconds_bucket\{phase="round-trip",/ {
		if ($2 + 0 < prev) bad = "bucket " $1 " below the one before"
		prev = $2 + 0; nb++
		if ($1 ~ /le="\+Inf"/) inf = $2 + 0
	}
	/^colo_checkpoint_phase_seconds_count\{phase="round-trip"\}/ { cnt = $2 + 0 }
	/^colo_checkpoint_phase_seconds_sum\{phase="round-trip"\}/ { sum = $2 + 0 }
	END {
		if (!bad && nb != 17) bad = nb " buckets, not 17"
		if (!bad && inf != cnt) bad = "+Inf " inf " but count " cnt
		if (!bad && cnt != ck) bad = "count " cnt " but " ck " checkpoints"
		if (!bad && !(sum > 0)) bad = "sum " sum
		if (bad) { print bad; exit 1 }
	}' "$a" >"$work/h" 2>&1
if [ $? -eq 0 ]; then
	ok "round-trip histogram: 17 cumulative buckets, +Inf = count = checkpoints"
else
	not_ok "round-trip histogram" "$(cat "$work/h")"
fi
pages=$(awk '/^colo_pages_sent_total\{/ { t += $2 } END { print t + 0 }' "$a")
bytes=$(awk '/^colo_page_bytes_sent_total\{/ { t += $2 } END { print t + 0 }' "$a")
stats_pages=$("$top_builddir/colo-ctl" -s "$work/a.sock" stats --json |
	sed -n 's/^ *"pages_sent": \([0-9][0-9]*\).*/\1/p')
if [ "$pages" -gt 0 ] && [ "$bytes" -gt 0 ] && [ "$pages" -le "${stats_pages:-0}" ]; then
	ok "pages ($pages) and their bytes ($bytes) by encoding"
else
	not_ok "pages and bytes by encoding" "pages $pages bytes $bytes stats $stats_pages"
fi
hs=$(value "$a" colo_heartbeats_sent_total)
hr=$(value "$b" colo_heartbeats_received_total)
if [ "${hs:-0}" -gt 0 ] && [ "${hr:-0}" -gt 0 ]; then
	ok "heartbeats: $hs sent by a, $hr received by b"
else
	not_ok "heartbeats sent and received" "$hs $hr"
fi
held=$(value "$a" colo_guest_output_held_bytes)
keys=$(value "$a" colo_guest_kv_keys)
if [ "$held" = 0 ] && [ "$(value "$a" colo_guest_output_held_batches)" = 0 ] &&
   [ "${keys:-0}" -ge 50 ]; then
	ok "the guest's own: $keys keys, nothing held once committed"
else
	not_ok "the guest's own figures" "$(grep '^colo_guest' "$a")"
fi
dec=$(value "$b" 'colo_checkpoint_phase_seconds_count{phase="decode"}')
if [ "${dec:-0}" -ge 1 ] && [ "$(value "$b" 'colo_recording{state="off"}')" = 1 ]; then
	ok "the secondary times its decode phase ($dec), recording off"
else
	not_ok "the secondary's decode phase and recording" "$dec"
fi

# What is not a GET of /metrics.
c404=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ma/other")
c405=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$ma/metrics")
c400=$(curl -s -o /dev/null -w '%{http_code}' --request-target 'no such target' \
	"http://127.0.0.1:$ma/metrics")
long=$(head -c 9000 /dev/zero | tr '\0' x)
c431=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Long: $long" "http://127.0.0.1:$ma/metrics")
if [ "$c404" = 404 ] && [ "$c405" = 405 ] && [ "$c400" = 400 ] && [ "$c431" = 431 ]; then
	ok "404 another path, 405 another method, 400 not HTTP, 431 over 8 KiB"
else
	not_ok "404, 405, 400, 431" "got $c404 $c405 $c400 $c431"
fi
curl -s -o "$work/a2.txt" "http://127.0.0.1:$ma/metrics"
refused=$(value "$work/a2.txt" 'colo_metrics_requests_total{result="refused"}')
answered=$(value "$work/a2.txt" 'colo_metrics_requests_total{result="answered"}')
if kill -0 "$pid_a" 2>/dev/null && [ "${refused:-0}" -eq 4 ] && [ "${answered:-0}" -ge 1 ]; then
	ok "the node serves on after them, and counts them: $refused refused, $answered answered"
else
	not_ok "the node serves on after them and counts them" "refused $refused answered $answered"
fi

# A bad metrics-listen: refused at start, one line saying why.
"$top_builddir/colo-primary" --name c --guest memtouch --ram-mb 4 --state-dir "$work/c" \
	--control "$work/c.sock" --metrics-listen "localhost:80" >"$work/c.log" 2>&1
st=$?
if [ $st -eq 2 ] && grep -q "metrics-listen" "$work/c.log"; then
	ok "metrics-listen localhost:80 refused (exit 2): $(grep -m1 metrics-listen "$work/c.log" | sed 's/.*: metrics-listen/metrics-listen/')"
else
	not_ok "a bad metrics-listen is refused" "exit $st" "$(cat "$work/c.log")"
fi
[ $fails -eq 0 ]
