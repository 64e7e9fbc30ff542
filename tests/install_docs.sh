#!/bin/sh
# install_docs.sh: what make install adds for an operator: the example
# configuration and the man pages, made from the programs themselves.
# Every key the daemons' --help lists is in colo.conf.example (under its
# section, commented) and in colo-primary(8), colo-secondary(8) and
# colo.conf(5); the example is a file both daemons take as it is, and
# with every default uncommented; groff finds nothing to warn about in
# any page; and make install DESTDIR=... puts the programs, units,
# example and pages where they belong.  TAP output.
set -u
: "${top_srcdir:=.}" "${top_builddir:=.}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/colo-docs-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }

b=$top_builddir
ex="$b/etc/colo.conf.example"
echo "1..11"

# "[section]" then "  --key ..." lines of --help: "section key" pairs.
keys_of() {
	"$b/$1" --help | awk '/^\[[a-z]+\]$/ { s = substr($0, 2, length($0) - 2); next }
		s != "" && /^  --[a-z0-9-]+/ { k = $1; sub(/^--/, "", k); sub(/\[=.*/, "", k); print s, k }
		/^Exit status:/ { s = "" }'
}
keys_of colo-primary >"$tmp/keys"
keys_of colo-secondary >>"$tmp/keys"
sort -u "$tmp/keys" -o "$tmp/keys"
if [ "$(grep -c . "$tmp/keys")" -lt 40 ]; then
	not_ok "the daemons' --help lists their keys" "$(cat "$tmp/keys")"
else
	ok "the daemons' --help lists their keys ($(grep -c . "$tmp/keys"))"
fi

# The example's keys, by section.
awk '/^\[[a-z]+\]$/ { s = substr($0, 2, length($0) - 2); next }
	/^#[a-z0-9-]+ =/ { k = substr($1, 2); print s, k }' "$ex" | sort -u >"$tmp/exkeys"
if cmp -s "$tmp/keys" "$tmp/exkeys"; then
	ok "colo.conf.example has every key of --help, in its section, and no other"
else
	not_ok "colo.conf.example has every key of --help, in its section, and no other" \
		"$(diff "$tmp/keys" "$tmp/exkeys")"
fi

for d in colo-primary colo-secondary; do
	"$b/$d" -c "$ex" --check-config >"$tmp/out" 2>&1
	st=$?
	if [ $st -eq 0 ]; then
		ok "$d takes colo.conf.example as it is"
	else
		not_ok "$d takes colo.conf.example as it is" "exit $st" "$(cat "$tmp/out")"
	fi
done
# Every default written out: each is a value the key takes.
sed 's/^#\([a-z0-9-]* = ..*\)$/\1/' "$ex" >"$tmp/defaults.conf"
nset=$(grep -c '^[a-z0-9-]* = ' "$tmp/defaults.conf")
for d in colo-primary colo-secondary; do
	"$b/$d" -c "$tmp/defaults.conf" --check-config >"$tmp/out" 2>&1
	st=$?
	if [ $st -eq 0 ] && [ "$nset" -ge 30 ]; then
		ok "$d takes the example with its $nset defaults uncommented"
	else
		not_ok "$d takes the example with its $nset defaults uncommented" "exit $st" \
			"$(cat "$tmp/out")"
	fi
done

# The pages: no groff warning; every key where it belongs.
warn=""
for p in colo-primary.8 colo-secondary.8 colo.conf.5 colo-ctl.8 colo-replay.1; do
	if [ ! -s "$b/man/$p" ]; then
		warn="$warn $p: missing;"
		continue
	fi
	out=$(groff -man -ww -z "$b/man/$p" 2>&1)
	[ -z "$out" ] || warn="$warn $p: $out;"
done
if ! command -v groff >/dev/null; then
	ok "groff has nothing to say about the five pages # SKIP no groff (groff-base)"
elif [ -z "$warn" ]; then
	ok "groff has nothing to say about the five pages"
else
	not_ok "groff has nothing to say about the five pages" "$warn"
fi
missing=""
while read -r s k; do
	kr=$(printf '%s' "$k" | sed 's/-/\\\\-/g')
	grep -q "^\\\\fB\\\\-\\\\-$kr\\\\fR" "$b/man/colo-primary.8" || missing="$missing colo-primary.8:$k"
	grep -q "^\\\\fB$kr\\\\fR = " "$b/man/colo.conf.5" || missing="$missing colo.conf.5:$k"
done <"$tmp/keys"
if [ -z "$missing" ]; then
	ok "colo-primary(8) and colo.conf(5) describe every key"
else
	not_ok "colo-primary(8) and colo.conf(5) describe every key" "$missing"
fi
if ! command -v man >/dev/null; then
	ok "man renders colo-ctl(8) and colo-secondary(8) # SKIP no man (man-db)"
elif MANWIDTH=80 man -l "$b/man/colo-ctl.8" 2>/dev/null | grep -q 'checkpoint        take a checkpoint now' &&
   MANWIDTH=80 man -l "$b/man/colo-secondary.8" 2>/dev/null | grep -q '^EXIT STATUS'; then
	ok "man renders colo-ctl(8) with its verbs and colo-secondary(8) with its exit statuses"
else
	not_ok "man renders colo-ctl(8) with its verbs and colo-secondary(8) with its exit statuses"
fi

# make install into a scratch root.
${MAKE:-make} -s -C "$b" install DESTDIR="$tmp/root" >"$tmp/out" 2>&1
st=$?
prefix=$(sed -n 's/^prefix = //p' "$b/Makefile")
sysconfdir=$(prefix=$prefix; eval echo "$(sed -n 's/^sysconfdir = //p' "$b/Makefile")")
mandir=$(prefix=$prefix; datarootdir=$(eval echo "$(sed -n 's/^datarootdir = //p' "$b/Makefile")"); \
	eval echo "$(sed -n 's/^mandir = //p' "$b/Makefile")")
unitdir=$(prefix=$prefix; eval echo "$(sed -n 's/^systemdsystemunitdir = //p' "$b/Makefile")")
ocfdir=$(prefix=$prefix; eval echo "$(sed -n 's/^ocfdir = //p' "$b/Makefile")")
want="$prefix/bin/colo-primary $prefix/bin/colo-secondary $prefix/bin/colo-ctl
$prefix/bin/colo-replay $sysconfdir/colo/colo.conf.example
$unitdir/colo-primary@.service $unitdir/colo-secondary@.service
$mandir/man8/colo-primary.8 $mandir/man8/colo-secondary.8 $mandir/man8/colo-ctl.8
$mandir/man1/colo-replay.1 $mandir/man5/colo.conf.5 $ocfdir/resource.d/colo/colo"
absent=""
for f in $want; do
	[ -f "$tmp/root$f" ] || absent="$absent $f"
done
if [ $st -eq 0 ] && [ -z "$absent" ]; then
	ok "make install puts programs, units, agent, example and pages in place"
else
	not_ok "make install puts programs, units, agent, example and pages in place" "exit $st" \
		"missing:$absent" "$(cat "$tmp/out")" "$(cd "$tmp/root" && find . -type f | head -40)"
fi
if cmp -s "$tmp/root$sysconfdir/colo/colo.conf.example" "$ex" &&
   ! grep -rq '@[a-zA-Z]*@' "$tmp/root$unitdir" "$tmp/root$ocfdir" &&
   [ -x "$tmp/root$ocfdir/resource.d/colo/colo" ]; then
	ok "the installed example, units and agent are the built ones"
else
	not_ok "the installed example, units and agent are the built ones"
fi
[ $fails -eq 0 ]
