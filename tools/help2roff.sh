#!/bin/sh
# help2roff.sh PROGRAM SECTION SUMMARY: a man page for PROGRAM whose
# description is its own --help, verbatim, so that the page says what the
# program says (colo-ctl(8), colo-replay(1); the daemons' pages are made
# from their option table by colo-docgen).  Writes roff to stdout.
set -eu
prog=$1 section=$2 summary=$3
name=$(basename "$prog")
upper=$(printf '%s' "$name" | tr 'a-z' 'A-Z')
version=$("$prog" --version | awk 'NR == 1 { print $2 }')
help=$("$prog" --help)
# roff: backslashes, hyphens, and lines that would read as requests.
esc() { sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }
case $section in
1) manual="User Commands" ;;
*) manual="System Administration" ;;
esac
printf '.\\" Made from %s --help (tools/help2roff.sh).\n' "$name"
printf '.TH %s %s "" "colo %s" "%s"\n' "$upper" "$section" "$version" "$manual"
printf '.SH NAME\n%s \\- %s\n' "$(printf '%s' "$name" | esc)" "$(printf '%s' "$summary" | esc)"
printf '.SH DESCRIPTION\n.nf\n'
printf '%s\n' "$help" | esc
printf '.fi\n.SH SEE ALSO\n\\fBcolo\\-primary\\fR(8), \\fBcolo\\-secondary\\fR(8), '
printf '\\fBcolo\\-ctl\\fR(8), \\fBcolo\\-replay\\fR(1), \\fBcolo.conf\\fR(5)\n'
