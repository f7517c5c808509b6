#!/usr/bin/env bash
# build.sh BOARD: stage 2 of the image build (run by `make image BOARD=...`). Takes the Debian
# base (build/base/rootfs.tar from build-base.sh), adds voxgate and the board, and writes
# build/BOARD/:
#   root.squashfs        the root slot: what an update writes (with root.squashfs.sha256)
#   esp.img              the EFI system partition: systemd-boot, loader entry of slot a, kernel;
#                        GRUB's grub.cfg and grubenv, slot a's grub.cfg (legacy BIOS)
#   core.img, boot.img   GRUB for legacy BIOS: the BIOS boot partition and the MBR boot code
#   data.img             the data partition (empty, or provisioned with SITE_CONFIG)
#   voxgate-BOARD.img    the whole disk (GPT, sparse) to dd onto a box or boot in qemu
#   partuuids.env        the partition UUIDs (the ESP's loader entry names the root by PARTUUID)
#   packages.manifest    every Debian package and version in the image
#
# Environment:
#   VOXGATE_BIN=path     the voxgate binary (default target/release/voxgate)
#   VERSION=x            image version (default: voxgate's version and the commit time)
#   SITE_CONFIG=file     put this voxgate.yaml on the data partition (a provisioned box)
#   BASE=path            the base tar (default build/base/rootfs.tar)
#   OUT=dir              output directory (default build/BOARD)
#   ZSTD_LEVEL=n         squashfs compression (default 19: 131 MiB in ~140 s on 2 cores;
#                        6: 142 MiB in ~6 s, for quick development builds)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/layout.sh"

die() { echo "build: $*" >&2; exit 1; }
step() { printf 'build: [%3ss] %s\n' "$((SECONDS - t0))" "$*"; }
t0=$SECONDS

board=${1:?usage: build.sh BOARD (one of: $(ls "$repo/board" | tr '\n' ' '))}
bdir=$repo/board/$board
[ -f "$bdir/board.conf" ] || die "unknown board '$board': no board/$board/board.conf (boards: $(ls "$repo/board" | tr '\n' ' '))"
# shellcheck source=/dev/null
. "$bdir/board.conf"
: "${BOARD_FIRMWARE:?board.conf sets BOARD_FIRMWARE}" "${BOARD_CONSOLE:?board.conf sets BOARD_CONSOLE}" "${BOARD_CMDLINE:?board.conf sets BOARD_CMDLINE}"
# Every image boots both ways (systemd-boot on the ESP for UEFI, GRUB in the BIOS boot
# partition for legacy BIOS); BOARD_FIRMWARE says which one the board uses.
case "$BOARD_FIRMWARE" in uefi|bios) ;; *) die "BOARD_FIRMWARE=$BOARD_FIRMWARE: expected uefi or bios" ;; esac

[ "$(id -u)" -eq 0 ] || die "run as root (the root file system keeps its owners, mke2fs -d and mksquashfs read them)"
for tool in mksquashfs mkfs.vfat mcopy mmd sfdisk mke2fs systemctl grub-mkimage grub-editenv; do
  command -v "$tool" >/dev/null || die "$tool is missing: apt-get install squashfs-tools dosfstools mtools fdisk e2fsprogs systemd grub-pc-bin"
done
[ -f /usr/lib/grub/i386-pc/boot.img ] || die "GRUB for BIOS is missing: apt-get install grub-pc-bin"

base=${BASE:-$repo/build/base/rootfs.tar}
out=${OUT:-$repo/build/$board}
bin=${VOXGATE_BIN:-$repo/target/release/voxgate}
[ -f "$base" ] || die "$base is missing: run scripts/image/build-base.sh $base (make does)"
[ -x "$bin" ] || die "$bin is missing: cargo build --release -p voxgate (make does)"
"$bin" config check "$bdir/voxgate.yaml" >/dev/null || die "board/$board/voxgate.yaml does not validate"

# Commit time, not wall-clock time, so that two builds of one commit agree (mksquashfs takes
# its time stamps from SOURCE_DATE_EPOCH too).
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)}
VERSION=${VERSION:-$("$bin" --version | awk '{print $2}')-$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S)}

mkdir -p "$repo/build" "$out"
# build/ is output only; this keeps it out of git without touching the repository's .gitignore.
[ -f "$repo/build/.gitignore" ] || echo '*' > "$repo/build/.gitignore"
root=$out/rootfs
work=$(mktemp -d "$out/work.XXXXXX")
trap 'rm -rf "$work"' EXIT

step "board $board, version $VERSION: unpacking the Debian base"
rm -rf "$root"
mkdir -p "$root"
tar -C "$root" --numeric-owner --xattrs --xattrs-include='*' -xpf "$base"

step "adding voxgate, the image's system files and the board"
# Overlays: files owned by root and not group/world-writable whatever the checkout's umask;
# directories that already exist (/etc, /usr, ...) keep their modes.
overlay() {
  tar -C "$1" --owner=0 --group=0 --mode=go-w -cf - . | tar -C "$root" --no-overwrite-dir -xf -
}
overlay "$repo/rootfs/overlay"
[ -d "$bdir/overlay" ] && overlay "$bdir/overlay"
install -D -m 0755 "$bin" "$root/usr/bin/voxgate"
install -D -m 0644 "$repo/systemd/voxgate.service" "$root/usr/lib/systemd/system/voxgate.service"
install -d -m 0755 "$root/usr/share/voxgate/providers"
install -m 0644 "$repo"/config/providers/*.yaml "$root/usr/share/voxgate/providers/"
# The lab profile lists the namespace lab's addresses; a box never talks to the lab.
rm -f "$root/usr/share/voxgate/providers/lab.yaml"
install -m 0644 "$bdir/voxgate.yaml" "$root/usr/share/voxgate/voxgate.yaml"
install -D -m 0644 "$repo/config/voxgate.example.yaml" "$root/usr/share/doc/voxgate/voxgate.example.yaml"
install -D -m 0644 "$repo/README.md" "$root/usr/share/doc/voxgate/README.md"
install -D -m 0644 "$repo/rootfs/IMAGE.md" "$root/usr/share/doc/voxgate/IMAGE.md"
mv "$root/.packages.manifest" "$root/usr/share/voxgate/packages.manifest"
cp "$root/usr/share/voxgate/packages.manifest" "$out/packages.manifest"

# What the update script reads from a slot: its version and how the board boots it.
install -d "$root/usr/lib/voxgate"
cat > "$root/usr/lib/voxgate/image-release" <<EOF
VERSION=$VERSION
BOARD=$board
BOARD_CMDLINE="$BOARD_CMDLINE"
BUILT=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
EOF
cp "$root/usr/lib/voxgate/image-release" "$out/image-release"

step "read-only root: /etc/voxgate and machine id on the data partition, no keys, no passwords"
# Site configuration lives on the data partition (tmpfiles creates /var/etc/voxgate and copies
# the factory voxgate.yaml there on first boot).
rm -rf "$root/etc/voxgate"
ln -s ../var/etc/voxgate "$root/etc/voxgate"
# Empty: the initrd binds the box's own id (kept in /var/lib/machine-id) over it.
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -sf ../run/systemd/resolve/resolv.conf "$root/etc/resolv.conf"
echo voxgate > "$root/etc/hostname"
echo 'LANG=C.UTF-8' > "$root/etc/default/locale"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tvoxgate\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# openssh-server's postinst made host keys; they would be the same on every box.
rm -f "$root"/etc/ssh/ssh_host_*
# No password for anyone: SSH is key-only, and the board's console logs root in by itself.
awk -F: 'BEGIN{OFS=":"} $2 !~ /^[*!]/ {$2="*"} {print}' "$root/etc/shadow" > "$work/shadow"
cat "$work/shadow" > "$root/etc/shadow"
mkdir -p "$root/efi"
# /tmp as tmpfs (the root is read-only).
cp "$root/usr/share/systemd/tmp.mount" "$root/etc/systemd/system/tmp.mount"
# The board's console: root login without password there, and only there.
case "$BOARD_CONSOLE" in
  ttyS*) getty=serial-getty@$BOARD_CONSOLE.service ;;
  tty*) getty=getty@$BOARD_CONSOLE.service ;;
  *) die "BOARD_CONSOLE=$BOARD_CONSOLE: expected ttyS<n> or tty<n>" ;;
esac
install -d "$root/etc/systemd/system/$getty.d"
cat > "$root/etc/systemd/system/$getty.d/autologin.conf" <<EOF
# The board's console ($BOARD_CONSOLE) logs root in without a password: whoever holds the console
# cable is on site with the box. Root has no password, so no other terminal can log in.
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I \$TERM
EOF

step "enabling units"
systemctl --root="$root" --quiet enable \
  systemd-networkd.service systemd-resolved.service systemd-timesyncd.service ssh.service tmp.mount \
  voxgate.service voxgate-system.service voxgate-system-reload.path voxgate-ssh-hostkeys.service \
  voxgate-boot-check.service voxgate-bless-grub.service voxgate-grow-data.service "$getty"
# systemd-boot-update would rewrite the boot loader on the ESP at every boot; on this box only
# an update writes the ESP. machine-id-commit would try to write /etc/machine-id. e2scrub
# checks LVM snapshots; there is no LVM.
systemctl --root="$root" --quiet mask systemd-boot-update.service systemd-machine-id-commit.service \
  e2scrub_all.timer e2scrub_reap.service
# No display manager: the box's target is multi-user.
systemctl --root="$root" --quiet set-default multi-user.target

# Kernel and initrd of this slot (they stay in the squashfs too: an update copies them from the
# slot it wrote to the ESP).
kver=$(ls "$root/usr/lib/modules")
[ "$(echo "$kver" | wc -l)" -eq 1 ] || die "expected one kernel in the base, found: $kver"
[ -f "$root/boot/vmlinuz-$kver" ] && [ -f "$root/boot/initrd.img-$kver" ] || die "no kernel/initrd for $kver in /boot"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$work/initrd.img"

# /var is the data partition's mount point: its contents in the base (dpkg's database, apt
# lists, caches) are not needed at run time and would only be hidden by the mount.
find "$root/var" -mindepth 1 -delete

step "root slot: squashfs"
rm -f "$out/root.squashfs"
mksquashfs "$root" "$out/root.squashfs" -comp zstd -Xcompression-level "${ZSTD_LEVEL:-19}" -b 1M -noappend -quiet -no-progress \
  || die "mksquashfs failed"
(cd "$out" && sha256sum root.squashfs > root.squashfs.sha256)

step "ESP: systemd-boot and the loader entry of slot a; GRUB for legacy BIOS"
# Partition UUIDs: fixed per build (the entry names the root by PARTUUID; the disk, tests and
# updates read them back from here or from the GPT).
uuid() { cat /proc/sys/kernel/random/uuid; }
cat > "$out/partuuids.env" <<EOF
DISK_UUID=$(uuid)
BIOS_UUID=$(uuid)
ESP_UUID=$(uuid)
ROOTA_UUID=$(uuid)
ROOTB_UUID=$(uuid)
DATA_UUID=$(uuid)
EOF
. "$out/partuuids.env"
cat > "$work/loader.conf" <<'EOF'
# No menu (hold a key during boot to get it); entries are ordered by their "version" (the
# update's generation, newest first) and an entry out of tries goes last, so the default is the
# newest slot that has not failed.
timeout 0
editor no
auto-entries no
auto-firmware no
EOF
# voxgate-a+3.conf: three tries to reach boot-complete.target; systemd-bless-boot renames it
# to voxgate-a.conf once boot-check says voxgate is up.
cat > "$work/entry.conf" <<EOF
title      voxgate $VERSION (slot a)
sort-key   voxgate
version    1
linux      /voxgate/a/vmlinuz
initrd     /voxgate/a/initrd.img
options    root=PARTUUID=$ROOTA_UUID rootfstype=squashfs ro voxgate.slot=a panic=10 quiet $BOARD_CMDLINE
EOF
# The same slot for GRUB (legacy BIOS): what /grub/grub.cfg sources to boot slot a.
cat > "$work/slot.grub.cfg" <<EOF
# voxgate slot a, sourced by /grub/grub.cfg (legacy BIOS boot); rewritten by voxgate update apply.
set voxgate_title="voxgate $VERSION (slot a)"
set voxgate_generation=1
linux /voxgate/a/vmlinuz root=PARTUUID=$ROOTA_UUID rootfstype=squashfs ro voxgate.slot=a panic=10 quiet $BOARD_CMDLINE
initrd /voxgate/a/initrd.img
EOF
"$here/mkgrub.sh" "$out" "$BOARD_CONSOLE"
esp=$out/esp.img
rm -f "$esp"
mkfs.vfat -F 32 -s 2 -n VOXGATE-ESP -C "$esp" $((ESP_MIB * 1024)) >/dev/null
export MTOOLS_SKIP_CHECK=1
mmd -i "$esp" ::/EFI ::/EFI/BOOT ::/EFI/systemd ::/loader ::/loader/entries ::/voxgate ::/voxgate/a ::/voxgate/b ::/grub
efi=$root/usr/lib/systemd/boot/efi/systemd-bootx64.efi
[ -f "$efi" ] || die "no systemd-boot in the base ($efi)"
# The removable-media path: firmware boots it without an NVRAM entry (a new box, or a disk
# moved to another box).
mcopy -i "$esp" "$efi" ::/EFI/BOOT/BOOTX64.EFI
mcopy -i "$esp" "$efi" ::/EFI/systemd/systemd-bootx64.efi
mcopy -i "$esp" "$work/loader.conf" ::/loader/loader.conf
mcopy -i "$esp" "$work/entry.conf" ::/loader/entries/voxgate-a+3.conf
mcopy -i "$esp" "$work/vmlinuz" ::/voxgate/a/vmlinuz
mcopy -i "$esp" "$work/initrd.img" ::/voxgate/a/initrd.img
mcopy -i "$esp" "$out/grub.cfg" ::/grub/grub.cfg
# grubenv: GRUB's save_env rewrites it in place; with 1 KiB clusters (-s 2) it is one cluster.
mcopy -i "$esp" "$out/grubenv" ::/grub/grubenv
mcopy -i "$esp" "$work/slot.grub.cfg" ::/voxgate/a/grub.cfg

step "data partition"
data_src=""
if [ -n "${SITE_CONFIG:-}" ]; then
  "$bin" config check "$SITE_CONFIG" || die "SITE_CONFIG=$SITE_CONFIG does not validate"
  data_src=$work/data
  install -D -m 0640 "$SITE_CONFIG" "$data_src/etc/voxgate/voxgate.yaml"
fi
"$here/mkdata.sh" "$out/data.img" ${data_src:+"$data_src"}

step "disk"
img=$out/voxgate-$board.img
"$here/mkdisk.sh" "$out" "$out/data.img" "$img"

mib() { echo $(( ($1 + 1048575) / 1048576 )); }
rootsize=$(stat -c %s "$out/root.squashfs")
step "done"
cat <<EOF

voxgate image for $board ($BOARD_DESCRIPTION), version $VERSION
  disk       $img
             $(mib "$(stat -c %s "$img")") MiB GPT disk, $(du -m "$img" | cut -f1) MiB allocated (sparse)
  root slot  $(mib "$rootsize") MiB squashfs (of a $ROOT_MIB MiB slot) = the update payload
  kernel     $kver, initrd $(mib "$(stat -c %s "$work/initrd.img")") MiB, ESP ${ESP_MIB} MiB
  packages   $(wc -l < "$out/packages.manifest") Debian packages (packages.manifest)
  built in   $((SECONDS - t0)) s
EOF
