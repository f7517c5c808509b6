#!/usr/bin/env bash
# mkdisk.sh BUILD_DIR DATA_IMG OUTPUT.img: assemble the GPT disk image from the file systems
# build.sh made (BUILD_DIR/esp.img, root.squashfs, partuuids.env, GRUB's core.img and
# boot.img) and a data partition image, without loop devices: sfdisk writes the partition
# table into a sparse file and dd copies each file system to its offset.
#
# Separate from build.sh so tests can pair the release root and ESP with their own data
# partition (a site configuration with a test SSH key) without rebuilding anything else.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/layout.sh"

die() { echo "mkdisk: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: mkdisk.sh BUILD_DIR DATA_IMG OUTPUT.img"
build=$1 data=$2 out=$3
for f in "$build/esp.img" "$build/root.squashfs" "$build/partuuids.env" "$build/core.img" "$build/boot.img" "$data"; do
  [ -f "$f" ] || die "$f is missing (run scripts/image/build.sh first)"
done
command -v sfdisk >/dev/null || die "sfdisk is missing: apt-get install fdisk"
. "$build/partuuids.env"

mib() { echo $(( ($(stat -c %s "$1") + 1048575) / 1048576 )); }
[ "$(mib "$build/esp.img")" -le "$ESP_MIB" ] || die "esp.img is larger than $ESP_MIB MiB"
[ "$(mib "$build/root.squashfs")" -le "$ROOT_MIB" ] || die "root.squashfs ($(mib "$build/root.squashfs") MiB) is larger than a $ROOT_MIB MiB slot"
[ "$(mib "$data")" -le "$DATA_MIB" ] || die "$data is larger than $DATA_MIB MiB"

tmp="$out.tmp"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT
truncate -s "${DISK_MIB}M" "$tmp"

s() { echo $(( $1 * 2048 )); } # MiB to 512-byte sectors
sfdisk --quiet --no-reread --no-tell-kernel "$tmp" <<EOF
label: gpt
label-id: $DISK_UUID
unit: sectors
first-lba: 2048
start=$(s $BIOS_START), size=$(s $BIOS_MIB), type=$TYPE_BIOS, uuid=$BIOS_UUID, name="voxgate-bios"
start=$(s $ESP_START), size=$(s $ESP_MIB), type=$TYPE_ESP, uuid=$ESP_UUID, name="voxgate-esp"
start=$(s $ROOTA_START), size=$(s $ROOT_MIB), type=$TYPE_ROOT_X86_64, uuid=$ROOTA_UUID, name="voxgate-root-a"
start=$(s $ROOTB_START), size=$(s $ROOT_MIB), type=$TYPE_ROOT_X86_64, uuid=$ROOTB_UUID, name="voxgate-root-b"
start=$(s $DATA_START), size=$(s $DATA_MIB), type=$TYPE_VAR, uuid=$DATA_UUID, name="voxgate-data"
EOF

put() { dd if="$1" of="$tmp" bs=1M seek="$2" conv=notrunc,sparse status=none; }
# Legacy BIOS: GRUB's core image in the BIOS boot partition, and its boot code in the
# protective MBR's first 440 bytes (0x000-0x1b7); the disk signature, partition table and
# 0x55aa (0x1b8-0x1ff) stay as sfdisk wrote them. UEFI firmware ignores both.
[ "$(stat -c %s "$build/core.img")" -le $((BIOS_MIB * 1048576)) ] || die "core.img is larger than the BIOS boot partition"
put "$build/core.img" "$BIOS_START"
dd if="$build/boot.img" of="$tmp" bs=440 count=1 conv=notrunc status=none
[ "$(od -A n -t x1 -j 510 -N 2 "$tmp" | tr -d ' ')" = 55aa ] && [ "$(od -A n -t x1 -j 450 -N 1 "$tmp" | tr -d ' ')" = ee ] \
  || die "the protective MBR was damaged writing the boot code"
put "$build/esp.img" "$ESP_START"
put "$build/root.squashfs" "$ROOTA_START"
# Slot b stays empty (zeros, sparse) until the first update writes it; no entry points at it.
put "$data" "$DATA_START"
mv "$tmp" "$out"
trap - EXIT
