#!/usr/bin/env bash
# Installs what `make build`, `make test`, `make bench` and `make demo` need on a
# fresh Debian 12 machine, with apt, and only what is missing (a fast no-op when
# everything is there). Go itself is expected at /usr/local/go (or on PATH).
set -euo pipefail

pkgs=(
	make git ca-certificates  # build (VERSION from git describe)
	iproute2 iptables         # ip netns/link/addr/route, iptables-save in tests
	nftables                  # nft: tests and the demo read the nftables backend's rules with it (kvmnet never runs it)
	procps kmod util-linux    # sysctl, modinfo/insmod, setsid/nsenter
	libcap2-bin               # capsh/setcap, for tests of the helpers' capabilities
	qemu-system-x86           # the guest's emulator (seabios, ipxe-qemu come with it)
	busybox-static            # the guest's userland, and the test world's servers
	linux-image-cloud-amd64   # the guest's kernel and virtio modules
	cpio gzip xz-utils zstd   # packing the guest's initramfs (modules may be .ko.xz/.zst)
	bridge-utils              # brctl: the seed scripts `make bench` measures kvmnet against
	iputils-ping              # ping -M do: the overlay tests send full-size packets with DF
	libvirt-daemon-system     # libvirtd, virtlogd, virsh: test/libvirt runs kvmnet under a real libvirt
	curl socat bind9-dnsutils # the README's common tasks, as test/operator runs them
	radvd                     # a router advertiser in the outside namespace: the host keeps its RA-learnt route
	strace                    # proof that the nftables path runs no program
	frr                       # zebra and bgpd: the EVPN tests run them in their own namespaces (never started here: see below)
	dnsmasq-base systemd      # dnsmasq and systemd-networkd, run by hand in a test's namespaces beside kvmnet's DHCP (nothing started)
	dnsperf                   # make bench: the DNS forwarder beside dnsmasq
	iperf3                    # test/integration's bandwidth test measures the limits with it (its daemon is off unless asked)
	dbus-daemon dbus-bin libsystemd-shared # TestResolvedNames: a system bus of its own, dbus-send, and what the unpacked systemd-resolved links
	gcc libc6-dev             # go test -race: the race detector needs cgo (the binaries stay static, CGO_ENABLED=0)
)

missing=()
for p in "${pkgs[@]}"; do
	if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
		missing+=("$p")
	fi
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages: ${missing[*]}; run as root (sudo make deps)" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}" >&2
	# frr's postinst would start zebra in the machine's own namespace: every
	# service start is refused (policy-rc.d exit 101) for the install's
	# duration; the tests start FRR by hand in namespaces of their own.
	policy=/usr/sbin/policy-rc.d
	if [ -e "$policy" ]; then
		mv "$policy" "$policy.kvmnet-deps"
		trap 'mv -f "$policy.kvmnet-deps" "$policy"' EXIT
	else
		trap 'rm -f "$policy"' EXIT
	fi
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	export DEBIAN_FRONTEND=noninteractive
	apt_opts=(-q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	apt-get "${apt_opts[@]}" update >&2
	apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null >&2
fi

# systemd-resolved for TestResolvedNames, unpacked and never installed: its
# package would point the machine's /etc/resolv.conf at it. The test runs it in
# a namespace of its own. Its version must be libsystemd-shared's.
resolved_dir=/var/cache/kvmnet-test/systemd-resolved
if [ ! -x "$resolved_dir/lib/systemd/systemd-resolved" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: systemd-resolved is not unpacked in $resolved_dir; run as root (sudo make deps)" >&2
		exit 1
	fi
	tmp=$(mktemp -d)
	apt-get -q -o DPkg::Lock::Timeout=600 update >&2
	(cd "$tmp" && apt-get -q download "systemd-resolved=$(dpkg-query -W -f='${Version}' libsystemd-shared)" >&2)
	mkdir -p "$resolved_dir"
	dpkg-deb -x "$tmp"/systemd-resolved_*.deb "$resolved_dir"
	rm -rf "$tmp"
	echo "deps: unpacked systemd-resolved into $resolved_dir" >&2
fi

# Daemons the tests start by hand, each in namespaces of the test's own, that
# must never run in the machine's: firewalld (test/integration's
# TestFirewalld). Installed with a policy-rc.d that forbids starting any
# service for the duration, and its unit disabled, so that neither the
# install nor the next boot starts it.
quiet_pkgs=(firewalld)
quiet_missing=()
for p in "${quiet_pkgs[@]}"; do
	if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
		quiet_missing+=("$p")
	fi
done
if [ ${#quiet_missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing packages: ${quiet_missing[*]}; run as root (sudo make deps)" >&2
		exit 1
	fi
	echo "deps: installing ${quiet_missing[*]} (not started)" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt_opts=(-q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	policy=/usr/sbin/policy-rc.d
	saved=""
	if [ -e "$policy" ]; then
		saved=$(mktemp)
		cp -p "$policy" "$saved"
	fi
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	status=0
	apt-get "${apt_opts[@]}" install --no-install-recommends "${quiet_missing[@]}" </dev/null >&2 || status=$?
	if [ -n "$saved" ]; then
		mv "$saved" "$policy"
	else
		rm -f "$policy"
	fi
	[ $status = 0 ] || exit $status
	for p in "${quiet_missing[@]}"; do
		systemctl disable "$p.service" >/dev/null 2>&1 || true
		for pid in $(pgrep -x "$p" || true); do
			if [ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/1/ns/net)" ]; then
				echo "deps: $p (pid $pid) runs in the machine's network namespace after its install; stop it (it must run only in the tests' namespaces)" >&2
				exit 1
			fi
		done
	done
fi

# The guest kernel: the package is a meta-package; its kernel must be in /boot.
if ! ls /boot/vmlinuz-*-cloud-amd64 >/dev/null 2>&1; then
	echo "deps: linux-image-cloud-amd64 is installed but /boot/vmlinuz-*-cloud-amd64 is missing" >&2
	exit 1
fi

# Go: the Makefile calls plain `go`; link the one in /usr/local/go onto PATH.
if ! command -v go >/dev/null 2>&1; then
	if [ -x /usr/local/go/bin/go ] && [ "$(id -u)" = 0 ]; then
		ln -sf /usr/local/go/bin/go /usr/local/bin/go
		ln -sf /usr/local/go/bin/gofmt /usr/local/bin/gofmt
		echo "deps: linked /usr/local/go/bin/go into /usr/local/bin" >&2
	else
		echo "deps: no go on PATH and none in /usr/local/go; install Go (see go.mod for the version)" >&2
		exit 1
	fi
fi
