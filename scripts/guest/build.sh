#!/usr/bin/env bash
# Builds the kvmnet test guest from Debian's packages only: the cloud kernel
# (linux-image-cloud-amd64) and an initramfs of busybox-static, the kernel's
# virtio-net modules and scripts/guest/init. Output, outside the repository:
#   ${KVMNET_CACHE:-/var/cache/kvmnet}/guest/{vmlinuz,initrd.img,cmdline-help}
# Rebuilt only when an input changes (kernel, modules, busybox, these scripts).
# Prints the guest directory on stdout. KVMNET_GUEST_KERNEL=/boot/vmlinuz-X picks a kernel.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${KVMNET_CACHE:-/var/cache/kvmnet}/guest
log() { echo "guest: $*" >&2; }

kernel=${KVMNET_GUEST_KERNEL:-$(ls -1 /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -n 1)}
[ -n "$kernel" ] && [ -r "$kernel" ] || { log "no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64 (make deps)"; exit 1; }
kver=${kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver
busybox=/bin/busybox
[ -x "$busybox" ] && "$busybox" --list | grep -qx udhcpc || { log "no static busybox: apt-get install busybox-static (make deps)"; exit 1; }
command -v modinfo >/dev/null || { log "no modinfo: apt-get install kmod"; exit 1; }
command -v cpio >/dev/null || { log "no cpio: apt-get install cpio"; exit 1; }

# Modules in load order: dependencies first (modinfo -F depends), depth first.
order=()
visit() {
	local m=$1 d
	for d in "${order[@]}"; do [ "$d" = "$m" ] && return 0; done
	for d in $(modinfo -k "$kver" -F depends "$m" | tr ',' ' '); do visit "$d"; done
	order+=("$m")
}
for m in virtio_pci virtio_net; do visit "$m"; done
files=()
for m in "${order[@]}"; do files+=("$(modinfo -k "$kver" -F filename "$m")"); done

stamp=$({
	echo "kernel $kernel"
	stat -L -c '%n %s %Y' "$kernel" "$busybox" "${files[@]}"
	cat "$here/build.sh" "$here/init" "$here/udhcpc.script" "$here/serve"
} | sha256sum | cut -d' ' -f1)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
	echo "$out"
	exit 0
fi

log "building from $kernel (modules: ${order[*]})"
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d "$(dirname "$out")/.guest.XXXXXX")
chmod 0755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,run,lib/modules}
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do [ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"; done
for i in "${!order[@]}"; do
	f=${files[$i]} dst=$root/lib/modules/${order[$i]}.ko
	case "$f" in
	*.ko) cp "$f" "$dst" ;;
	*.ko.xz) xz -dc "$f" >"$dst" ;;
	*.ko.zst) zstd -qdc "$f" >"$dst" ;;
	*.ko.gz) gzip -dc "$f" >"$dst" ;;
	*) log "unknown module format: $f"; exit 1 ;;
	esac
done
printf '%s\n' "${order[@]}" >"$root/etc/kvmnet-modules"
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc.script"
install -m 0755 "$here/serve" "$root/bin/kvmnet-serve"
mknod -m 0600 "$root/dev/console" c 5 1
mknod -m 0666 "$root/dev/null" c 1 3
(cd "$root" && find . -print0 | sort -z | cpio --null -o -H newc --quiet -R 0:0) | gzip -9n >"$tmp/initrd.img"
cp "$kernel" "$tmp/vmlinuz"
echo "$stamp" >"$tmp/stamp"
rm -rf "$out.old"
[ -d "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out.new" && rm -rf "$out.new/root" && mv "$out.new" "$out"
rm -rf "$out.old"
trap - EXIT
log "built $out ($(du -sh "$out" | cut -f1))"
echo "$out"
