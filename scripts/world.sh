#!/usr/bin/env bash
# The kvmnet test world, made only of network namespaces of its own:
#
#   [OUT ns] eth0 203.0.113.1/24 ── veth ── uplink0 203.0.113.2/24 [HOST ns]
#            HTTP on :80 answers                default via 203.0.113.1;
#            "kvmnet-outside saw <src>"         QEMU and the kvmnet helpers run here;
#            and logs <src> to outside.log      HTTP on :80 (any address) answers
#                                               "kvmnet-host saw <src>"
#
# OUT routes the private ranges back to 203.0.113.2, so a guest that is not
# masqueraded (or that should not get out at all) is caught: the outside then
# sees its private source address, or answers it.
#
#   world.sh up   [OUT HOST]   make (or reuse) the namespaces and start the servers
#   world.sh down [OUT HOST]   stop everything in them and delete them
#   world.sh seen [OUT]        source addresses the outside server has seen
# Default names: kvmnet-w-out, kvmnet-w-host. State: /run/kvmnet-world/OUT/, and
# /etc/netns/HOST/resolv.conf (nameserver 203.0.113.1) for programs run in HOST.
# Never touches the machine's own namespace.
set -euo pipefail
cmd=${1:-}
out=${2:-kvmnet-w-out}
host=${3:-kvmnet-w-host}
state=/run/kvmnet-world/$out
OUT_IP=203.0.113.1 HOST_IP=203.0.113.2

die() { echo "world: $*" >&2; exit 1; }
nsexec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

cgi() { # cgi FILE WHO [LOG]
	cat >"$1" <<CGI
#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "$2 saw \$REMOTE_ADDR"
${3:+echo "\$REMOTE_ADDR" >>$3}
CGI
	chmod 0755 "$1"
}

up() {
	[ "$(id -u)" = 0 ] || die "needs root"
	local ns
	for ns in "$out" "$host"; do
		[ -e "/run/netns/$ns" ] || ip netns add "$ns"
		ip -n "$ns" link set lo up
	done
	ip -n "$host" link add uplink0 type veth peer name eth0 netns "$out"
	# No IPv6 link-local addresses on the uplink: they appear seconds later and
	# would make a snapshot of the host namespace depend on when it was taken.
	ip -n "$host" link set uplink0 addrgenmode none
	ip -n "$out" link set eth0 addrgenmode none
	ip -n "$out" addr add "$OUT_IP/24" dev eth0
	ip -n "$out" link set eth0 up
	for r in 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16; do ip -n "$out" route add "$r" via "$HOST_IP"; done
	ip -n "$host" addr add "$HOST_IP/24" dev uplink0
	ip -n "$host" link set uplink0 up
	ip -n "$host" route add default via "$OUT_IP"

	# Name lookups in the host namespace (the DNS forwarder's upstream) go to the
	# outside host too, never to the machine's resolvers (ip netns exec mounts this).
	local i
	for i in 1 2 3; do # another world's down may rmdir /etc/netns meanwhile
		mkdir -p "/etc/netns/$host" 2>/dev/null &&
			echo "nameserver $OUT_IP" >"/etc/netns/$host/resolv.conf" && break
	done
	[ -s "/etc/netns/$host/resolv.conf" ] || die "cannot write /etc/netns/$host/resolv.conf"

	rm -rf "$state"
	mkdir -p "$state/out/cgi-bin" "$state/host/cgi-bin"
	: >"$state/outside.log"
	cgi "$state/out/cgi-bin/index.cgi" kvmnet-outside "$state/outside.log"
	cgi "$state/host/cgi-bin/index.cgi" kvmnet-host
	nsexec "$out" setsid busybox httpd -f -p "$OUT_IP:80" -h "$state/out" </dev/null >>"$state/httpd-out.log" 2>&1 &
	nsexec "$host" setsid busybox httpd -f -p 0.0.0.0:80 -h "$state/host" </dev/null >>"$state/httpd-host.log" 2>&1 &
	# Ready when the uplink has its carrier and both servers answer.
	for i in $(seq 50); do
		if [ "$(nsexec "$host" cat /sys/class/net/uplink0/operstate)" = up ] &&
			nsexec "$host" busybox nc -w 1 "$OUT_IP" 80 </dev/null >/dev/null 2>&1 &&
			nsexec "$host" busybox nc -w 1 127.0.0.1 80 </dev/null >/dev/null 2>&1; then
			: >"$state/outside.log"
			return 0
		fi
		sleep 0.1
	done
	die "servers did not come up (see $state/httpd-*.log)"
}

down() {
	local ns p pids i
	# Until none is left: a process may start another as it dies (a DHCP/DNS
	# daemon's `kvmnet gc`), which would outlive the namespace's name.
	for ns in "$out" "$host"; do
		[ -e "/run/netns/$ns" ] || continue
		for i in $(seq 100); do
			pids=$(ip netns pids "$ns" 2>/dev/null)
			[ -n "$pids" ] || break
			for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
			sleep 0.01
		done
	done
	for ns in "$out" "$host"; do
		[ -e "/run/netns/$ns" ] && ip netns del "$ns"
	done
	rm -rf "$state" "/etc/netns/$host"
	rmdir /etc/netns 2>/dev/null || true # only when empty: it may be the machine's
	rmdir /run/kvmnet-world 2>/dev/null || true
}

case "$cmd" in
up) up ;;
down) down ;;
seen) cat "$state/outside.log" ;;
*) die "usage: world.sh up|down|seen [OUT HOST]" ;;
esac
