#!/bin/sh
# regress-auth.sh NAME: what regress-hb.sh and regress-hello.sh run, for
# NAME hb or hello: tests/fuzz/fuzz-NAME-regress on tests/fuzz/NAME-seeds/,
# on seeds freshly made by gen_auth_seeds (the generator and the target
# must still agree) and on tests/fuzz/NAME-regress/ when there.
: "${top_srcdir:=.}" "${top_builddir:=.}"

name=$1
fresh=$(mktemp -d "${TMPDIR:-/tmp}/colo-fuzz-$name.XXXXXX") || {
	echo "Bail out! cannot make a temporary directory"
	exit 1
}
trap 'rm -rf "$fresh"' EXIT
if ! "$top_builddir/tests/fuzz/gen_auth_seeds" "$name" "$fresh" >/dev/null; then
	echo "Bail out! gen_auth_seeds $name failed"
	exit 1
fi
set -- "$top_srcdir/tests/fuzz/$name-seeds" "$fresh"
if [ -d "$top_srcdir/tests/fuzz/$name-regress" ]; then
	set -- "$@" "$top_srcdir/tests/fuzz/$name-regress"
fi
"$top_builddir/tests/fuzz/fuzz-$name-regress" "$@"
