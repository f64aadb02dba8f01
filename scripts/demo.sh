#!/usr/bin/env bash
# `make demo`: real QEMU guests on kvmnet networks, shown step by step.
#
# Everything happens in two network namespaces of the demo's own
# (scripts/world.sh): an "outside" host 203.0.113.1 with a web server, and a
# hypervisor namespace (uplink 203.0.113.2) where QEMU runs with the kvmnet
# helpers as its tap scripts. The machine's own namespace is left exactly as it
# was found; the demo checks that at the end, and cleans up when interrupted.
# Exits non-zero when anything it shows did not happen.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(cd "${KVMNET_BIN:-$root/bin}" 2>/dev/null && pwd) || bin=${KVMNET_BIN:-$root/bin}
OUT=kvmnet-demo-out HOST=kvmnet-demo-host
OUTSIDE=203.0.113.1 UPLINK=203.0.113.2
t0=$(date +%s)

failed=0
ok() { printf "  ok    %s\n" "$*"; [ -n "${KVMNET_DEMO_TIMES:-}" ] && printf "        (t=%ss)\n" $(( $(date +%s) - t0 )) || true; }
bad() { printf '  FAIL  %s\n' "$*"; failed=1; }
say() { printf '%s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (network namespaces, bridges, QEMU taps): sudo make demo"
for h in natup natdown ifup ifdown; do
	[ -x "$bin/kvmnet-$h" ] || die "no $bin/kvmnet-$h: run make build (make demo does)"
done
command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64: run make deps (make demo does)"

# The machine's own namespace, to compare at the end.
host_state() {
	ip -br link | awk '{print $1, $2}'
	ip -br addr
	ip route show table all
	ip rule
	iptables-save 2>/dev/null | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]$//'
	sysctl -n net.ipv4.ip_forward
}
before=$(host_state)

tmp=$(mktemp -d /tmp/kvmnet-demo.XXXXXX)
pids=()
hostns_state=
cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	"$root/scripts/world.sh" down "$OUT" "$HOST" >/dev/null 2>&1 || true
	[ -n "$hostns_state" ] && rm -rf "$hostns_state"
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, cleaning up" >&2; exit 130' INT TERM HUP

# Leases go to the demo's temporary directory; the networks stay zero-config.
export KVMNET_CONFIG=$tmp/kvmnet.toml
echo "lease_dir = \"$tmp/leases\"" >"$KVMNET_CONFIG"

say "kvmnet demo: QEMU guests on networks made by kvmnet's tap helpers"
say ""
say "[1/4] test guest"
tb=$(date +%s)
guest=$("$root/scripts/guest/build.sh")
kernel=$(readlink -f /boot/vmlinuz-*-cloud-amd64 | sort -V | tail -n 1)
ok "$guest: Debian's ${kernel#/boot/} + busybox initramfs ($(( $(date +%s) - tb ))s)"

say "[2/4] test world (network namespaces; the machine's own is not touched)"
"$root/scripts/world.sh" down "$OUT" "$HOST" >/dev/null 2>&1 || true # a run killed with -9
"$root/scripts/world.sh" up "$OUT" "$HOST"
# The helpers keep state in /run/kvmnet/netns-COOKIE (SO_NETNS_COOKIE of the
# namespace); the demo drops its namespace's when done. Best effort: needs python3.
cookie=$(ip netns exec "$HOST" python3 -c 'import socket; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); print(int.from_bytes(s.getsockopt(socket.SOL_SOCKET, 71, 8), "little"))' 2>/dev/null || true)
[ -n "$cookie" ] && hostns_state=/run/kvmnet/netns-$cookie
ok "outside host $OUTSIDE (netns $OUT) with a web server that answers with the source it sees"
ok "hypervisor (netns $HOST): uplink $UPLINK, default route via $OUTSIDE; QEMU runs here"

inhost() { ip netns exec "$HOST" "$@"; }
mac_n=0
# start NAME TAP UP DOWN PARAMS...: boots a guest in the background; serial in $tmp/NAME.log
start() {
	local name=$1 tap=$2 up=$3 down=$4; shift 4
	mac_n=$((mac_n + 1))
	inhost qemu-system-x86_64 -accel tcg -m 256 -nodefaults -display none -no-reboot -serial stdio \
		-kernel "$guest/vmlinuz" -initrd "$guest/initrd.img" \
		-append "console=ttyS0 quiet panic=-1 kvmnet.name=$name $*" \
		-netdev "tap,id=n0,ifname=$tap,script=$up,downscript=$down" \
		-device "virtio-net-pci,netdev=n0,mac=52:54:00:de:00:$(printf %02x $mac_n)" \
		</dev/null >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	eval "pid_$name=$!"
}
# waitfor NAME PATTERN: waits (60 s at most) for a console line of NAME's guest
waitfor() {
	local i
	for i in $(seq 600); do
		grep -q "KVMNET $2" "$tmp/$1.log" 2>/dev/null && return 0
		local p; eval "p=\$pid_$1"
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "KVMNET $2" "$tmp/$1.log" 2>/dev/null
}
# finish NAME: waits for QEMU to exit; fails when it exits non-zero
finish() {
	local p; eval "p=\$pid_$1"
	if ! wait "$p"; then
		bad "guest $1: QEMU failed; its output:"
		sed 's/^/        /' "$tmp/$1.log"
		return 1
	fi
}
line() { grep -o "KVMNET $2.*" "$tmp/$1.log" | head -n 1 | sed "s/^KVMNET $2 *//" | tr -d '\r'; }
# rules: how many rules kvmnet holds in the hypervisor, in the backend it
# picked (firewall = "auto"): its nftables table, else iptables' chains.
rules() {
	local n
	n=$(inhost nft -j list table inet kvmnet 2>/dev/null | grep -o '"rule":' | wc -l)
	[ "$n" -gt 0 ] && { echo "$n"; return; }
	inhost iptables-save | grep -ci kvmnet || true
}
backend() { inhost nft list table inet kvmnet >/dev/null 2>&1 && echo "nftables table inet kvmnet" || echo "iptables-save"; }
fwd() { inhost sysctl -n net.ipv4.ip_forward; }

say "[3/4] NAT network, zero config:"
say "      qemu ... -netdev tap,script=$bin/kvmnet-natup,downscript=$bin/kvmnet-natdown"
start d1 kvtap-d1 "$bin/kvmnet-natup" "$bin/kvmnet-natdown" \
	kvmnet.net=dhcp "kvmnet.check=tcp:$OUTSIDE:80" kvmnet.hold=2
if waitfor d1 boot; then
	brif=$(inhost ip -br link show master br0 2>/dev/null | awk '{print $1}' | tr '\n' ' ')
	[[ " $brif " == *" kvtap-d1 "* ]] && ok "QEMU's tap kvtap-d1 is on bridge br0" || bad "kvtap-d1 not on br0 (ports: $brif)"
	br=$(inhost ip -br -4 addr show dev br0 2>/dev/null | awk '{print $3}')
	[ -n "$br" ] && ok "kvmnet-natup made br0 with gateway $br" || bad "no bridge br0 with an address"
	n=$(rules)
	[ "$n" -gt 0 ] && ok "it added $n kvmnet rules ($(backend) of the hypervisor) and turned ip_forward on ($(fwd))" ||
		bad "no kvmnet rules in the hypervisor's nftables or iptables"
else
	bad "guest d1 did not boot"
fi
finish d1 || true
lease=$(line d1 lease)
[ -n "$lease" ] && ok "the guest got a DHCP lease from kvmnet: $lease" || bad "no DHCP lease ($(line d1 'fail dhcp'))"
reply=$(line d1 "ok tcp $OUTSIDE:80")
[ -n "$reply" ] && ok "the guest fetched http://$OUTSIDE/ and got: \"$reply\"" ||
	bad "the guest could not reach $OUTSIDE:80: $(line d1 "fail tcp $OUTSIDE:80")"
seen=$("$root/scripts/world.sh" seen "$OUT" "$HOST" | sort -u | tr '\n' ' ')
[ "$seen" = "$UPLINK " ] && ok "the outside host saw it come from $UPLINK, the hypervisor's uplink: masqueraded" ||
	bad "the outside host saw requests from: ${seen:-nobody} (want only $UPLINK)"
gone=1
inhost ip link show br0 >/dev/null 2>&1 && gone=0
inhost ip link show kvtap-d1 >/dev/null 2>&1 && gone=0
[ "$gone" = 1 ] && [ "$(rules)" = 0 ] && [ "$(fwd)" = 0 ] &&
	ok "guest powered off; kvmnet-natdown removed it all: no br0, no tap, 0 kvmnet rules, ip_forward $(fwd)" ||
	bad "left behind after the guest: $(inhost ip -br link | awk '{print $1}' | tr '\n' ' '); $(rules) kvmnet rules; ip_forward $(fwd)"

say "[4/4] isolated network: two guests with script=$bin/kvmnet-ifup,downscript=$bin/kvmnet-ifdown"
a=192.168.100.21 b=192.168.100.22
for g in "i1 $a $b" "i2 $b $a"; do
	set -- $g
	start "$1" "kvtap-$1" "$bin/kvmnet-ifup" "$bin/kvmnet-ifdown" \
		"kvmnet.net=$2/24,192.168.100.1" kvmnet.serve=8080 kvmnet.hold=4 \
		"kvmnet.check=tcp:$3:8080" "kvmnet.try=tcp:$OUTSIDE:80"
done
finish i1 || true
finish i2 || true
r1=$(line i1 "ok tcp $b:8080") r2=$(line i2 "ok tcp $a:8080")
[ -n "$r1" ] && [ -n "$r2" ] && ok "i1 ($a) and i2 ($b) reached each other: \"$r1\", \"$r2\"" ||
	bad "the guests did not reach each other: i1: ${r1:-$(line i1 "fail tcp $b:8080")}; i2: ${r2:-$(line i2 "fail tcp $a:8080")}"
f1=$(line i1 "fail tcp $OUTSIDE:80") f2=$(line i2 "fail tcp $OUTSIDE:80")
[ -n "$f1" ] && [ -n "$f2" ] && [ -z "$(line i1 "ok tcp $OUTSIDE:80")$(line i2 "ok tcp $OUTSIDE:80")" ] &&
	ok "neither reached the outside host ($f1)" || bad "an isolated guest reached the outside host"
inhost ip link show br0 >/dev/null 2>&1 && bad "br0 left behind" ||
	ok "both powered off; kvmnet-ifdown removed br0"

say ""
"$root/scripts/world.sh" down "$OUT" "$HOST"
[ -n "$hostns_state" ] && rm -rf "$hostns_state"
after=$(host_state)
if [ "$before" = "$after" ]; then
	ok "the machine's own namespace is as it was (links, addresses, routes, rules, iptables, ip_forward)"
else
	bad "the machine's own namespace changed:"
	diff <(echo "$before") <(echo "$after") | sed 's/^/        /' || true
fi
if [ "$failed" = 0 ]; then
	say "demo passed in $(( $(date +%s) - t0 ))s"
else
	say "demo FAILED (after $(( $(date +%s) - t0 ))s)"
	exit 1
fi
