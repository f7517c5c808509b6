#!/usr/bin/env bash
# Stage 1 of the image build: the Debian part of the root file system, as a tar file that every
# board shares (build/base/rootfs.tar). It changes only when rootfs/packages.txt,
# rootfs/dpkg-excludes.txt, rootfs/initramfs/ or the suite change, so `make` caches it.
#
# Why mmdebstrap (not debootstrap or mkosi):
# - it resolves the whole package list with apt in one go (debootstrap installs a fixed base
#   and then needs a chroot and apt-get for the rest), runs the maintainer scripts under its
#   own mounts and writes a tar directly: no loop devices, no nspawn, works as root in a
#   container;
# - it takes dpkg path filters (rootfs/dpkg-excludes.txt) so documentation and unused kernel
#   modules never land in the image;
# - mkosi would also assemble the disk, but bookworm's mkosi (v14) needs loop devices or
#   systemd-repart features bookworm's systemd 252 lacks for our A/B layout; we keep the disk
#   assembly in a small script we control (scripts/image/mkdisk.sh).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:?usage: build-base.sh OUTPUT.tar}

# Pinned suite. MIRROR defaults to the mirror this machine's apt uses (deb.debian.org);
# point it at http://snapshot.debian.org/archive/debian/<date>/ for a bit-for-bit rebuild.
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

die() { echo "build-base: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (mmdebstrap installs packages with their real owners)"
command -v mmdebstrap >/dev/null || die "mmdebstrap is missing: apt-get install mmdebstrap"

# packages.txt: one name per line, '#' comments.
packages=$(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$repo/rootfs/packages.txt" | grep -v '^$' | paste -sd, -)
[ -n "$packages" ] || die "no packages in rootfs/packages.txt"
dpkgopts=()
while read -r line; do
  line=${line%%#*}
  [ -n "${line// /}" ] && dpkgopts+=("--dpkgopt=$line")
done < "$repo/rootfs/dpkg-excludes.txt"

mkdir -p "$(dirname "$out")"
tmp="$out.tmp"
rm -f "$tmp"
trap 'rm -f "$tmp"' EXIT

echo "build-base: $SUITE from $MIRROR: $packages"
# --variant=essential: only Essential:yes packages plus our list and its dependencies (no
# "required"/"important" extras such as cron, editors or man-db).
# The initramfs configuration goes in before the packages, so the initrd the kernel package
# builds is already ours (squashfs root, data partition at /var).
mmdebstrap \
  --variant=essential \
  --format=tar \
  --include="$packages" \
  --aptopt='APT::Install-Recommends "false"' \
  --aptopt='Acquire::Retries "3"' \
  "${dpkgopts[@]}" \
  --essential-hook="sync-in '$repo/rootfs/initramfs' /" \
  --customize-hook='chroot "$1" dpkg-query -W -f="\${Package} \${Version}\n" > "$1/.packages.manifest"' \
  "$SUITE" "$tmp" \
  "deb $MIRROR $SUITE main" \
  "deb $MIRROR $SUITE-updates main" \
  "deb $SECURITY_MIRROR $SUITE-security main"
mv "$tmp" "$out"
trap - EXIT
echo "build-base: wrote $out ($(du -h "$out" | cut -f1))"
