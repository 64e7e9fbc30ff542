# tap.sh: sourced by the shell tests for their TAP lines.
#   ok MSG                 "ok N - MSG"
#   not_ok MSG [FILE...]   "not ok N - MSG", then the last TAP_TAIL (30) lines
#                          of each FILE that exists, as comments
# n counts the tests, fails the failed ones (a test ends with [ $fails -eq 0 ]).
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
	n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"
	shift
	for f in "$@"; do [ -f "$f" ] && tail -n "${TAP_TAIL:-30}" "$f" | sed 's/^/#   /'; done
}
