#!/bin/bash
# The seed's /etc/qemu-natup (shared/seeds/000), verbatim but for layout:
# the script kvmnet replaces, kept only to benchmark against.
bridge=br0
net="192.168.100.1/24"
checkbr() { if brctl show | grep -i $1; then return 0; else return 1; fi; }
initbr() { brctl addbr $bridge; ip link set $bridge up; ip addr add $net dev $bridge; }
enable_ip_forward() { sysctl -w net.ipv4.ip_forward=1; }
setup_nat() {
	checkbr $bridge
	if [ $? -eq 1 ]; then
		initbr
		enable_ip_forward
		iptables -t nat -A POSTROUTING -s $net ! -d $net -j MASQUERADE
	fi
}
if [ -n $1 ]; then
	setup_nat
	ip link set $1 up
	brctl addif $bridge $1
	exit 0
else
	echo "Error: no interface specified."
	exit 1
fi
