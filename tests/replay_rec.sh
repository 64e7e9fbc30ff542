#!/bin/sh
# replay_rec.sh: colo-replay on a real recording.  A kv pair runs with the
# secondary recording; the test writes two batches of keys with a
# checkpoint after each (NA, NB), then:
#   - extract NA: the RAM image hashes as the secondary reported at NA;
#   - export NA: a plain stream (no ENABLE_COLO, zero and whole pages);
#     a progress line on a terminal, none with -q or on a pipe;
#   - serve NA: GET answers the values written before NA, not those after;
#   - diff NA NB: pages of the kv block changed, and NA NA: none;
#   - verify: clean; then a flipped byte, a truncated and a deleted segment
#     each give one clear line from verify and from show.
# TAP.  Skipped without redis-cli.
set -u

: "${top_builddir:=.}"
command -v redis-cli >/dev/null || {
	echo "1..0 # SKIP redis-cli not installed (apt-get install redis-tools)"
	exit 0
}
bin=$top_builddir
work=$(mktemp -d "${TMPDIR:-/tmp}/colo-replay-rec-XXXXXX")
pid_a="" pid_b="" pid_s=""
n=0 fails=0

cleanup() {
	for p in $pid_a $pid_b $pid_s; do kill "$p" 2>/dev/null; done
	for p in $pid_a $pid_b $pid_s; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"
	[ $# -gt 1 ] && printf '%s\n' "$2" | sed 's/^/#   /'
}

. "${top_srcdir:-.}/tests/ports.sh"

rep=$(free_port) kva=$(free_port) kvb=$(free_port) kvs=$(free_port)
"$bin/colo-secondary" --name b --listen "127.0.0.1:$rep" --guest-listen "127.0.0.1:$kvb" \
	--ram-mb 16 --control "$work/b.sock" --state-dir "$work/b" --record "$work/rec" \
	--keyframe-every 4 >"$work/b.log" 2>&1 &
pid_b=$!
"$bin/colo-primary" --name a --peer "127.0.0.1:$rep" --guest-listen "127.0.0.1:$kva" \
	--ram-mb 16 --control "$work/a.sock" --state-dir "$work/a" \
	--checkpoint-interval-ms 60000 >"$work/a.log" 2>&1 &
pid_a=$!
i=0
until "$bin/colo-ctl" -s "$work/a.sock" status --json 2>/dev/null | grep -q '"state": "protected"'; do
	i=$((i + 1))
	[ $i -lt 400 ] || { echo "Bail out! the pair did not get protected"; cat "$work/a.log" "$work/b.log"; exit 1; }
	sleep 0.05
done

# committed seq and kv block hash on b, after a checkpoint on a
ckpt() {
	"$bin/colo-ctl" -s "$work/a.sock" checkpoint >/dev/null || return 1
	"$bin/colo-ctl" -s "$work/b.sock" verify --json >"$work/v.json" || return 1
	seq=$(sed -n 's/.*"last_committed": \([0-9]*\).*/\1/p' "$work/v.json")
	hash=$(sed -n 's/.*"kv": "\([0-9a-f]*\)".*/\1/p' "$work/v.json")
	echo "$seq $hash"
}

i=1
while [ $i -le 20 ]; do echo "SET a:$i old-$i"; i=$((i + 1)); done >"$work/a.txt"
redis-cli -p "$kva" <"$work/a.txt" >/dev/null
set -- $(ckpt)
NA=$1 HA=$2
i=1
while [ $i -le 20 ]; do echo "SET b:$i new-$i"; echo "SET a:$i changed-$i"; i=$((i + 1)); done >"$work/b.txt"
redis-cli -p "$kva" <"$work/b.txt" >/dev/null
set -- $(ckpt)
NB=$1 HB=$2
for k in 1 2 3 4 5 6; do ckpt >/dev/null; done
"$bin/colo-ctl" -s "$work/b.sock" record stop >/dev/null
kill "$pid_a" "$pid_b"; wait "$pid_a" "$pid_b" 2>/dev/null; pid_a="" pid_b=""
echo "# checkpoints: NA=$NA ($HA) NB=$NB ($HB)"

if [ -n "$NA" ] && [ -n "$NB" ] && [ "$NB" -gt "$NA" ] && [ "$HA" != "$HB" ]; then
	ok "two checkpoints with different committed states"
else
	not_ok "two checkpoints with different committed states" "NA=$NA NB=$NB HA=$HA HB=$HB"
fi

"$bin/colo-replay" list "$work/rec" >"$work/list.txt" 2>&1 &&
	grep -q "^ *$NA " "$work/list.txt" && grep -q "^ *$NB " "$work/list.txt" &&
	ok "list shows both checkpoints" || not_ok "list shows both checkpoints" "$(cat "$work/list.txt")"

# extract NA: the image hashes as b reported
if "$bin/colo-replay" extract "$work/rec" "$NA" -o "$work/x" --json >"$work/x.json" 2>&1 &&
   [ "$(stat -c %s "$work/x/ram/kv.bin")" -eq $((16 << 20)) ] &&
   grep -q "\"xxh3\": \"$HA\"" "$work/x/devices.json"; then
	ok "extract $NA: ram/kv.bin is 16 MiB and hashes as the secondary's committed RAM"
else
	not_ok "extract $NA matches the secondary" "$(cat "$work/x.json" "$work/x/devices.json" 2>&1)"
fi

# export NA: a plain stream of the same state, without colo's extensions
if "$bin/colo-replay" export "$work/rec" "$NA" -o "$work/na.mig" >"$work/export.txt" 2>&1 &&
   "$bin/colo-replay" dump "$work/na.mig" >"$work/na.dump" 2>&1 &&
   grep -q "^configuration  machine 'colo-kv-" "$work/na.dump" &&
   ! grep -q "ENABLE_COLO" "$work/na.dump" &&
   grep -q "^summary .* 0 commands; 4096 pages (\([0-9]* zero, \)\?[0-9]* page)" "$work/na.dump" &&
   grep -q "VMDESCRIPTION" "$work/na.dump" &&
   grep -q "written to $work/na.mig: .* bytes, a plain migration stream of colo-kv-" \
	"$work/export.txt"; then
	ok "export $NA: a plain stream, no ENABLE_COLO, 4096 zero and whole pages, a vmdesc"
else
	not_ok "export $NA is a plain stream" "$(cat "$work/export.txt")" \
		"$(grep -E '^(configuration|summary)|COLO|VMDESC' "$work/na.dump")"
fi

# Progress: on a terminal (script gives the command one), a line that
# says what, how far, how fast and how long still; not on a pipe, not -q.
if command -v script >/dev/null; then
	script -qec "'$bin/colo-replay' export '$work/rec' $NA -o '$work/na2.mig'" /dev/null \
		>"$work/tty.txt" 2>&1
	script -qec "'$bin/colo-replay' verify '$work/rec'" /dev/null >"$work/tty2.txt" 2>&1
	script -qec "'$bin/colo-replay' export -q '$work/rec' $NA -o '$work/na3.mig'" /dev/null \
		>"$work/ttyq.txt" 2>&1
	"$bin/colo-replay" export "$work/rec" "$NA" -o "$work/na4.mig" >"$work/pipe.txt" 2>&1
	if grep -q 'rebuilding checkpoint: *[0-9]*%  [0-9.]* [KMG]*i*B of [0-9.]* [KMG]*i*B' \
		"$work/tty.txt" &&
	   grep -q 'writing the file: 100%  [0-9.]* [KMG]*i*B of [0-9.]* [KMG]*i*B' "$work/tty.txt" &&
	   grep -q 'verifying: 100%' "$work/tty2.txt" &&
	   ! grep -q '%' "$work/ttyq.txt" && ! grep -q '%' "$work/pipe.txt" &&
	   cmp -s "$work/na.mig" "$work/na2.mig" && cmp -s "$work/na.mig" "$work/na4.mig"; then
		ok "progress on a terminal (rebuilding, writing, verifying); none with -q or on a pipe"
	else
		not_ok "progress on a terminal only" "$(cat -v "$work/tty.txt")" \
			"$(cat -v "$work/tty2.txt" | tail -c 400)" "$(cat -v "$work/ttyq.txt")" \
			"$(cat "$work/pipe.txt")"
	fi
else
	ok "progress on a terminal # SKIP no script (bsdutils)"
fi

# serve NA: old values, no b: keys
"$bin/colo-replay" serve "$work/rec" "$NA" --listen "127.0.0.1:$kvs" >"$work/serve.log" 2>&1 &
pid_s=$!
i=0
until redis-cli -p "$kvs" PING 2>/dev/null | grep -q PONG; do
	i=$((i + 1)); [ $i -lt 200 ] || break; sleep 0.05
done
got=$(redis-cli -p "$kvs" GET a:7)
nb=$(redis-cli -p "$kvs" EXISTS b:7)
dbsize=$(redis-cli -p "$kvs" DBSIZE)
kill -INT "$pid_s"; wait "$pid_s"; st=$?; pid_s=""
if [ "$got" = old-7 ] && [ "$nb" = 0 ] && [ "$dbsize" = 20 ] && [ $st -eq 0 ]; then
	ok "serve $NA answers what was written before it and nothing after"
else
	not_ok "serve $NA" "a:7=$got b:7 exists=$nb dbsize=$dbsize exit=$st $(cat "$work/serve.log")"
fi

"$bin/colo-replay" diff "$work/rec" "$NA" "$NB" >"$work/diff.txt" 2>&1 &&
	grep -q "kv" "$work/diff.txt" && grep -q "pages" "$work/diff.txt" &&
	ok "diff $NA $NB lists changed kv pages" || not_ok "diff $NA $NB" "$(cat "$work/diff.txt")"
# diff's pages are exactly the pages whose bytes differ between the two
# extracted states (each hashed as the secondary's committed RAM)
"$bin/colo-replay" extract "$work/rec" "$NB" -o "$work/y" >/dev/null 2>&1
"$bin/colo-replay" diff "$work/rec" "$NA" "$NB" --json >"$work/diff.json" 2>&1
want=$(cmp -l "$work/x/ram/kv.bin" "$work/y/ram/kv.bin" | awk '{ print int(($1 - 1) / 4096) }' |
	uniq | wc -l)
got=$(sed -n 's/.*"pages_differ": \([0-9]*\).*/\1/p' "$work/diff.json" | head -1)
if grep -q "\"xxh3\": \"$HB\"" "$work/y/devices.json" && [ "$want" -gt 0 ] && [ "$got" = "$want" ]; then
	ok "diff $NA $NB: $got pages, exactly those whose bytes differ"
else
	not_ok "diff pages" "diff says '$got', the images differ in $want pages"
fi
"$bin/colo-replay" diff "$work/rec" "$NA" "$NA" >"$work/diff0.txt" 2>&1 &&
	grep -q "no differences" "$work/diff0.txt" &&
	ok "diff of a checkpoint with itself: no differences" ||
	not_ok "diff $NA $NA" "$(cat "$work/diff0.txt")"

"$bin/colo-replay" verify "$work/rec" >"$work/verify.txt" 2>&1 &&
	grep -q "verified" "$work/verify.txt" && ok "verify: clean" ||
	not_ok "verify clean" "$(cat "$work/verify.txt")"

# damage: each in a fresh copy
seg=$(sed -n "s/^ *$NB .*\(seg-[0-9]*\)@\([0-9]*\).*/\1 \2/p" "$work/list.txt" | head -1)
set -- $seg
segname=$1 segoff=$2
damage() {
	rm -rf "$work/bad"
	cp -r "$work/rec" "$work/bad"
}
damage
printf '\377' | dd of="$work/bad/$segname" bs=1 seek=$((segoff + 3)) conv=notrunc 2>/dev/null
out=$("$bin/colo-replay" verify "$work/bad" 2>&1); st=$?
out2=$("$bin/colo-replay" show "$work/bad" "$NB" 2>&1); st2=$?
if [ $st -eq 1 ] && echo "$out" | grep -q "$segname" && echo "$out" | grep -q "checksum" &&
   [ $st2 -eq 1 ] && echo "$out2" | grep -q "checksum"; then
	ok "a flipped byte: verify and show name the segment and the checksum"
else
	not_ok "flipped byte" "verify($st): $out
show($st2): $out2"
fi
damage
truncate -s "$((segoff + 2))" "$work/bad/$segname"
out=$("$bin/colo-replay" verify "$work/bad" 2>&1); st=$?
out2=$("$bin/colo-replay" show "$work/bad" "$NB" 2>&1); st2=$?
if [ $st -eq 1 ] && echo "$out" | grep -q "$segname" && [ $st2 -eq 1 ] && [ -n "$out2" ]; then
	ok "a truncated segment: verify and show fail with one line"
else
	not_ok "truncated segment" "verify($st): $out
show($st2): $out2"
fi
damage
rm "$work/bad/$segname"
out=$("$bin/colo-replay" verify "$work/bad" 2>&1); st=$?
out2=$("$bin/colo-replay" show "$work/bad" "$NB" 2>&1); st2=$?
if [ $st -eq 1 ] && echo "$out" | grep -q "$segname" && [ $st2 -eq 1 ] && [ -n "$out2" ]; then
	ok "a deleted segment: verify and show fail with one line"
else
	not_ok "deleted segment" "verify($st): $out
show($st2): $out2"
fi

echo "1..$n"
[ $fails -eq 0 ]
