#!/bin/sh
# layers.sh: the include rules of docs/architecture.md, checked on the sources.
#
# common/ is five layers, each a library with its own include path:
#   base < wire < state < rec < node
# A file of common/ may include headers of its own layer and of the layers
# below it (rec and node also proto/'s generated messages), never a layer
# above, nor anything of guests/, primary/, secondary/ or tools/.  primary/
# never includes secondary/.  The include paths already make a wrong include
# fail to compile; this also catches one written as a path ("../node/log.h",
# "common/node/log.h") and says which rule it breaks.
#
# TAP: one test per rule, every offending line printed.
set -u
top=$(cd "${top_srcdir:-$(dirname "$0")/..}" && pwd)
cd "$top" || exit 1

layers="base wire state rec node"
rank() {
	i=0
	for l in $layers; do
		[ "$l" = "$1" ] && { echo $i; return; }
		i=$((i + 1))
	done
	echo 99
}

# Where a quoted include of a file in directory $2 resolves: a folder of
# the tree ("common/wire", "guests", ...), "autoconf", "proto", or "?".
resolve() {
	inc=$1 dir=$2
	case $inc in
	config.h) echo autoconf; return ;;
	colo.pb-c.h) echo proto; return ;;
	esac
	for cand in "$dir/$inc" "$inc"; do
		if [ -f "$cand" ]; then
			d=$(cd "$(dirname "$cand")" && pwd)
			echo "${d#"$top"/}"
			return
		fi
	done
	for d in common/base common/wire common/state common/rec common/node; do
		[ -f "$d/$inc" ] && { echo "$d"; return; }
	done
	for d in guests primary secondary tools; do
		[ -f "$d/$inc" ] && { echo "$d"; return; }
	done
	echo "?"
}

n=0
check() {            # check DESCRIPTION PROBLEMS: one "file:line: why" a line
	n=$((n + 1))
	if [ -z "$2" ]; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1"
		printf '%s\n' "$2" | sed 's/^/# /'
	fi
}

# includes FILE...: "file:line:header" for every quoted include.
includes() {
	grep -Hn '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$@" 2>/dev/null |
		sed 's/^\([^:]*\):\([0-9]*\):.*"\([^"]*\)".*/\1:\2:\3/'
}

for layer in $layers; do
	mine=$(rank "$layer")
	files=$(ls common/"$layer"/*.[ch] 2>/dev/null)
	[ -n "$files" ] || { echo "Bail out! common/$layer has no sources"; exit 1; }
	# shellcheck disable=SC2086
	problems=$(includes $files | while IFS=: read -r f line inc; do
		where=$(resolve "$inc" "$(dirname "$f")")
		case $where in
		autoconf) ;;
		proto)
			[ "$mine" -ge "$(rank rec)" ] ||
				echo "$f:$line: \"$inc\": proto/ is for rec and node, not $layer"
			;;
		common/*)
			theirs=$(rank "${where#common/}")
			[ "$theirs" -le "$mine" ] ||
				echo "$f:$line: \"$inc\" is in $where, above $layer"
			;;
		"?") echo "$f:$line: \"$inc\" is not a header of this tree" ;;
		*) echo "$f:$line: \"$inc\" is in $where: common/ names no guest or role" ;;
		esac
	done)
	check "common/$layer includes only its own layer and those below" "$problems"
done

# shellcheck disable=SC2046
problems=$(includes $(ls primary/*.[ch]) | while IFS=: read -r f line inc; do
	case $(resolve "$inc" primary) in
	secondary) echo "$f:$line: \"$inc\": primary/ never uses secondary/" ;;
	esac
done)
check "primary/ does not include secondary/" "$problems"

# The checker itself: a wire file that reaches up must be caught.
probe=$(mktemp -d)
mkdir -p "$probe/common/wire" "$probe/common/node"
printf '#include "../node/log.h"\n' >"$probe/common/wire/x.c"
: >"$probe/common/node/log.h"
(
	top=$probe
	cd "$probe" || exit 1
	includes common/wire/x.c | while IFS=: read -r f line inc; do
		where=$(resolve "$inc" "$(dirname "$f")")
		[ "$where" = common/node ] && echo "$f:$line: caught"
	done
) | grep -q caught
caught=$?
rm -rf "$probe"
[ $caught -eq 0 ] && problems="" || problems="common/wire/x.c: not caught"
check "an include that climbs a layer by a path is caught" "$problems"
echo "1..$n"
