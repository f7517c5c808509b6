#!/usr/bin/env bash
# mkgrub.sh OUT_DIR CONSOLE: GRUB for legacy BIOS boot (run by build.sh; rootfs/IMAGE.md,
# "Boot, A/B and boot counting (legacy BIOS)"). Writes to OUT_DIR:
#   core.img   GRUB's i386-pc core image, for the BIOS boot partition (voxgate-bios), with every
#              module it needs built in and its prefix on the ESP, (,gpt2)/grub; its first
#              sector's block list already points at the BIOS boot partition (layout.sh)
#   boot.img   GRUB's MBR boot code (only the first 440 bytes count: mkdisk.sh keeps the
#              protective MBR's disk signature and partition table), pointing at core.img
#   grub.cfg   rootfs/grub/grub.cfg with the board's terminal (serial when CONSOLE is ttyS<n>)
#   grubenv    the initial GRUB environment: slot a on trial with 3 tries, no default yet
# This does what grub-install/grub-bios-setup would do for an embedded core image, on files
# instead of a disk (no loop devices): see the offsets below (GRUB's include/grub/i386/pc/boot.h
# and util/setup.c).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/layout.sh"

die() { echo "mkgrub: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: mkgrub.sh OUT_DIR CONSOLE"
out=$1 console=$2
grubdir=/usr/lib/grub/i386-pc
command -v grub-mkimage >/dev/null && command -v grub-editenv >/dev/null && [ -f "$grubdir/boot.img" ] \
  || die "GRUB for BIOS is missing: apt-get install grub-pc-bin grub-common"

# Built in (no module directory on the ESP): disk, GPT, FAT, the script and the commands that
# grub.cfg and the slots' grub.cfg use.
modules="biosdisk part_gpt fat normal configfile linux echo test loadenv serial terminal sleep reboot halt"
# shellcheck disable=SC2086
grub-mkimage -O i386-pc -o "$out/core.img" -p '(,gpt2)/grub' $modules || die "grub-mkimage failed"
core_sectors=$(( ($(stat -c %s "$out/core.img") + 511) / 512 ))
# The BIOS boot partition, and what boot.img can load below GRUB's 0x78000 limit (setup.c).
[ "$core_sectors" -le $((BIOS_MIB * 2048)) ] && [ "$core_sectors" -le $(( (0x78000 - 0x9000) / 512 )) ] \
  || die "core.img ($core_sectors sectors) is too large for the BIOS boot partition"

# le64 VALUE: 8 bytes little-endian.
le64() {
  local i
  for i in 0 1 2 3 4 5 6 7; do
    # shellcheck disable=SC2059
    printf "\\x$(printf %02x $(( ($1 >> (8 * i)) & 255 )))"
  done
}
# patch FILE OFFSET: writes stdin into FILE at OFFSET.
patch() { dd of="$1" bs=1 seek="$2" conv=notrunc status=none; }
# u64 FILE OFFSET: reads 8 bytes little-endian.
u64() { od -A n -t u8 -j "$2" -N 8 "$1" | tr -d ' '; }

first=$((BIOS_START * 2048)) # core.img's first sector (LBA) on the disk
# diskboot.img (core.img's first sector) ends with a block list, 12 bytes per entry from 0x1f4
# downwards: start sector (8), sector count (2), load segment (2). grub-mkimage wrote one entry
# for the rest of core.img as if it followed the MBR (start 2); it follows its first sector in
# the BIOS boot partition instead. The next entry (0x1e8) stays zero: the terminator.
[ "$(u64 "$out/core.img" $((0x1f4)))" = 2 ] || die "unexpected block list in core.img (GRUB version?)"
le64 $((first + 1)) | patch "$out/core.img" $((0x1f4))
[ "$(u64 "$out/core.img" $((0x1f4)))" = $((first + 1)) ] || die "patching core.img failed"

# boot.img: the LBA of core.img's first sector at 0x5c (GRUB_BOOT_MACHINE_KERNEL_SECTOR), boot
# drive 0xff at 0x64 ("use the drive the BIOS booted from"), and the jump at 0x66
# (GRUB_BOOT_MACHINE_DRIVE_CHECK) replaced with two NOPs as grub-bios-setup does for hard
# disks (BIOSes that pass a wrong boot drive).
cp "$grubdir/boot.img" "$out/boot.img"
le64 "$first" | patch "$out/boot.img" $((0x5c))
printf '\xff' | patch "$out/boot.img" $((0x64))
printf '\x90\x90' | patch "$out/boot.img" $((0x66))
[ "$(u64 "$out/boot.img" $((0x5c)))" = "$first" ] || die "patching boot.img failed"

case "$console" in
  ttyS*) unit=${console#ttyS}
         terminal="serial --unit=$unit --speed=115200 --word=8 --parity=no --stop=1
terminal_input serial console
terminal_output serial console" ;;
  *) terminal="terminal_input console
terminal_output console" ;;
esac
awk -v t="$terminal" '$0 == "@TERMINAL@" { print t; next } { print }' "$repo/rootfs/grub/grub.cfg" > "$out/grub.cfg"

rm -f "$out/grubenv"
grub-editenv "$out/grubenv" create
grub-editenv "$out/grubenv" set voxgate_default= voxgate_trial=a voxgate_tries=3
[ "$(stat -c %s "$out/grubenv")" -eq 1024 ] || die "grubenv is not 1024 bytes"
