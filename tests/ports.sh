# ports.sh: sourced by the shell tests and bench/kv.sh.
#
# free_port: print a loopback TCP/UDP port nothing listens on now, below the
# kernel's ephemeral range (so a connection's own port cannot take it
# meanwhile) and not handed out before by this shell.
taken=""
free_port() {
	while :; do
		p=$(( 20000 + $(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % 12000 ))
		case " $taken " in *" $p "*) continue ;; esac
		ss -Htuln 2>/dev/null | awk '{print $5}' | grep -q ":$p\$" && continue
		taken="$taken $p"
		echo "$p"
		return
	done
}
