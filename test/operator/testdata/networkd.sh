#!/bin/sh
# networkd.sh DIR: runs systemd-networkd in the foreground, in the calling
# network namespace (the test's) and a private mount namespace (run it under
# `unshare -m --propagation private`), with DIR/network as
# /etc/systemd/network and DIR/networkd.conf as its configuration: /run is a
# fresh tmpfs, and /sys is read-only here, which tells networkd there is no
# udev to wait for. Nothing of the machine's own is touched.
set -eu
dir=$1
mount -t tmpfs tmpfs /run
mount -o remount,bind,ro /sys
mkdir -p /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount --bind "$dir/network" /etc/systemd/network
mount --bind "$dir/networkd.conf" /etc/systemd/networkd.conf
exec /lib/systemd/systemd-networkd
