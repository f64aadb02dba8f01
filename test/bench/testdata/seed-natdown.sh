#!/bin/bash
# The seed's /etc/qemu-natdown (shared/seeds/000), verbatim but for layout,
# `iptables -t nat -F` included: kept only to benchmark against.
bridge=br0
net='192.168.100.0/24'
remove_rule() { iptables -t nat -F; }
isalone_bridge() {
	if ! brctl show | awk "/^$bridge/{print \$4}" | grep "[^[:space:]]" &> /dev/null; then
		ip link set $bridge down
		brctl delbr $bridge
		remove_rule
	fi
}
if [ -n $1 ]; then
	ip link set $1 down
	brctl delif $bridge $1
	isalone_bridge
	exit 0
else
	echo "Error: no interface specified."
	exit 1
fi
