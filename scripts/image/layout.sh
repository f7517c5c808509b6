# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the scripts that source it
# The voxgate disk layout, sourced by build.sh, mkdisk.sh and (as data) by the update script's
# design. One GPT, the same on every board (so an update never repartitions):
#
#   #  name            size      type                         contents
#   1  voxgate-bios      1 MiB   BIOS boot                    GRUB core image (legacy BIOS boot)
#   2  voxgate-esp     256 MiB   EFI system (FAT32)           systemd-boot, loader entries,
#                                                             kernel + initrd of slot a and b
#   3  voxgate-root-a  768 MiB   Linux root x86-64 (squashfs) slot a, read-only
#   4  voxgate-root-b  768 MiB   Linux root x86-64 (squashfs) slot b, read-only
#   5  voxgate-data    DATA_MIB  Linux /var (ext4)            /var: leases, site config
#                                                             (/var/etc/voxgate), SSH host
#                                                             keys, machine id, journal
#
# Slots are sized for growth (today's root is ~200 MiB): an update only ever writes a slot.
# The data partition is small in the image file and is grown to the end of the disk on first
# boot (voxgate-grow-data.service: systemd-repart, partx, resize2fs), so it must stay last.
BIOS_MIB=1
ESP_MIB=256
ROOT_MIB=768
DATA_MIB=${DATA_MIB:-256}

# GPT partition type GUIDs (UEFI spec, Discoverable Partitions Specification).
TYPE_BIOS=21686148-6449-6E6F-744E-656564454649
TYPE_ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
TYPE_ROOT_X86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
TYPE_VAR=4D21B016-B534-45C2-A9FB-5C16E091FD2D

# Start of each partition in MiB (1 MiB reserved for the GPT).
BIOS_START=1
ESP_START=$((BIOS_START + BIOS_MIB))
ROOTA_START=$((ESP_START + ESP_MIB))
ROOTB_START=$((ROOTA_START + ROOT_MIB))
DATA_START=$((ROOTB_START + ROOT_MIB))
# 1 MiB at the end for the backup GPT.
DISK_MIB=$((DATA_START + DATA_MIB + 1))
