#!/bin/sh
# regress-etcd.sh: run the etcd answers' fuzz target (fuzz_etcd.c, plain
# main() from standalone.c) on the answers recorded from etcd and on the
# regression corpus, in every `make check`.  The runner prints the TAP, one
# test per input.
#
# tests/fuzz/etcd-seeds/ holds answers etcd 3.4.23's v3 gateway gave to
# curl on loopback (selector byte, body; see fuzz_etcd.c), named
# CALL[-STATUS]-WHAT: range, txn (succeeded, failed with its else-ranges),
# lease grant, keepalive with and without a TTL, revoke, etcd's HTTP error
# bodies and the gateway's plain-text ones, and the streamed
# {"error":{...}} of a keepalive on a member without a leader (at its
# status 503, and again at 200 as a stream that had begun would carry it);
# value-* are key values as the arbiter writes them.
# tests/fuzz/etcd-regress/, when there, holds inputs that once broke a
# promise, named CALL-WHAT-GOES-WRONG.  FUZZ_VERBOSE=1 makes the target say
# what it concluded about each input.
#
# top_srcdir and top_builddir come from the test environment (Makefile.am).
: "${top_srcdir:=.}" "${top_builddir:=.}"

set -- "$top_srcdir/tests/fuzz/etcd-seeds"
if [ -d "$top_srcdir/tests/fuzz/etcd-regress" ]; then
	set -- "$@" "$top_srcdir/tests/fuzz/etcd-regress"
fi
exec "$top_builddir/tests/fuzz/fuzz-etcd-regress" "$@"
