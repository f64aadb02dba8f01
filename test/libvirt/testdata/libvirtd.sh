#!/bin/sh
# libvirtd.sh DIR HOOK: starts virtlogd and libvirtd in a private mount
# namespace of their own (run it under `unshare -m --propagation private`,
# inside the test's network namespace), so that nothing of the machine's own
# libvirt is touched: /run is a fresh tmpfs (kvmnet's /run/kvmnet bound back
# in, so the test sees the hook's records), /etc an overlay whose changes go to
# DIR, libvirt's /var directories are tmpfs. HOOK becomes
# /etc/libvirt/hooks/qemu.d/kvmnet ("-" for none). Sockets: DIR/sock.
set -eu
dir=$1 hook=$2

mkdir -p "$dir/ovl" /run/kvmnet
mount -t tmpfs tmpfs "$dir/ovl"
mkdir -p "$dir/ovl/up" "$dir/ovl/work" "$dir/ovl/run"
mount --bind /run/kvmnet "$dir/ovl/run"
mount -t tmpfs tmpfs /run
mkdir -p /run/kvmnet /run/libvirt
mount --bind "$dir/ovl/run" /run/kvmnet
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$dir/ovl/up,workdir=$dir/ovl/work" /etc
for d in /var/lib/libvirt /var/log/libvirt /var/cache/libvirt; do
	mount -t tmpfs tmpfs "$d"
done
mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu "$dir/sock"

# No network of libvirt's own (the default one would make virbr0 here).
rm -f /etc/libvirt/qemu/networks/autostart/*
rm -rf /etc/libvirt/hooks
mkdir -p /etc/libvirt/hooks/qemu.d
[ "$hook" = - ] || ln -s "$hook" /etc/libvirt/hooks/qemu.d/kvmnet
cat >/etc/libvirt/libvirtd.conf <<CONF
unix_sock_dir = "$dir/sock"
unix_sock_group = "root"
auth_unix_rw = "none"
log_outputs = "3:file:$dir/libvirtd.log"
CONF
# QEMU as root with no confinement, cgroups or namespaces of libvirt's: the
# test machine has none of what they need (systemd, AppArmor), and the guest's
# files are in the test's directories.
cat >/etc/libvirt/qemu.conf <<CONF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
CONF
[ ! -e "$dir/kvmnet.toml" ] || { mkdir -p /etc/kvmnet && cp "$dir/kvmnet.toml" /etc/kvmnet/kvmnet.toml; }

virtlogd -d -p "$dir/virtlogd.pid"
libvirtd -d -p "$dir/libvirtd.pid"
