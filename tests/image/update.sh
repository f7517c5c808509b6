#!/usr/bin/env bash
# tests/image/update.sh: the A/B update and the automatic fallback, in the qemu VM of lib.sh.
#   1. boot build/qemu (slot a);
#   2. build a second root slot (same base and binary, another version), copy it into the VM,
#      install it with `voxgate update apply`, reboot: slot b comes up, voxgate answers, systemd-bless-boot
#      marks voxgate-b+3.conf good (voxgate-b.conf);
#   3. install a broken slot (its voxgate exits 1) into slot a, reboot: boot-check fails three
#      times (VOXGATE-NOT-READY, reboot), the entry runs out of tries (voxgate-a+0-3.conf) and
#      systemd-boot boots slot b again by itself.
# FIRMWARE=bios runs the same with SeaBIOS: GRUB counts the tries in its environment block
# (voxgate_trial, voxgate_tries), voxgate-bless-grub makes a good slot the default.
# Takes build/qemu from `make image BOARD=qemu`, build/base/rootfs.tar and the voxgate binary
# (VOXGATE_BIN, default target/release/voxgate). Long under TCG (about 10 minutes on 2 CPUs).
set -euo pipefail
TEST=update-test # (read by lib.sh)
export TEST
# shellcheck source=tests/image/lib.sh
. "$(dirname "$0")/lib.sh"

vm_requirements
command -v unsquashfs >/dev/null || die "unsquashfs is missing: apt-get install squashfs-tools"
version_a=$(. "$build/image-release" && echo "$VERSION")
version_b="$version_a-update"

say "building the update (slot image $version_b) and a broken one"
OUT=$tmp/update VERSION=$version_b ZSTD_LEVEL=${ZSTD_LEVEL:-6} "$repo/scripts/image/build.sh" qemu >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log" >&2; die "building the update failed"; }
unsquashfs -q -d "$tmp/broken" "$tmp/update/root.squashfs" >/dev/null
printf '#!/bin/sh\necho "voxgate: deliberately broken for the update test" >&2\nexit 1\n' > "$tmp/broken/usr/bin/voxgate"
sed -i "s/^VERSION=.*/VERSION=$version_a-broken/" "$tmp/broken/usr/lib/voxgate/image-release"
mksquashfs "$tmp/broken" "$tmp/broken.squashfs" -comp zstd -Xcompression-level 6 -b 1M -noappend -quiet -no-progress >/dev/null
(cd "$tmp" && sha256sum broken.squashfs > broken.squashfs.sha256)
rm -rf "$tmp/broken" "$tmp/update/rootfs"

vm_disk
vm_accel
say "booting build/qemu (voxgate $version_a, slot a) with $accel, $FIRMWARE firmware"
vm_start
wait_ready 1 >/dev/null
say "ready: $(marker 1)"
vm_wait_ssh

entries() { vm 'ls /efi/loader/entries | tr "\n" " "'; }
# The slots as `voxgate update status --json` shows them: "a:good b:3" (tries left), and GRUB's
# default slot under legacy BIOS.
slots() { vm 'voxgate update status --json | jq -r "[.entries | sort_by(.slot)[] | \"\(.slot):\(.tries_left // \"good\")\"] | join(\" \")"'; }
grub_default() { vm 'sed -n "s/^voxgate_default=//p" /efi/grub/grubenv'; }
# expect_entries "voxgate-a.conf voxgate-b+3.conf" "a:good b:3" [DEFAULT]: the systemd-boot
# entries under UEFI; the slots and GRUB's default under legacy BIOS.
expect_entries() {
  local got
  if [ "$FIRMWARE" = uefi ]; then
    got=$(entries)
    [ "$got" = "$1 " ] || { echo "entries: $got (expected $1)"; false; }
  else
    got=$(slots)
    [ "$got" = "$2" ] || { echo "slots: $got (expected $2)"; false; }
    [ -z "${3:-}" ] || [ "$(grub_default)" = "$3" ] || { echo "GRUB's default: $(grub_default) (expected $3)"; false; }
  fi
}
if [ "$FIRMWARE" = uefi ]; then
  check "slot a entry blessed" vm 'for i in $(seq 30); do [ -e /efi/loader/entries/voxgate-a.conf ] && exit 0; sleep 1; done; false'
else
  check "slot a blessed (GRUB's default)" vm 'for i in $(seq 30); do grep -qx voxgate_default=a /efi/grub/grubenv && grep -qx voxgate_trial= /efi/grub/grubenv && exit 0; sleep 1; done; false'
fi

say "installing $version_b into slot b"
vm_put "$tmp/update/root.squashfs" /tmp/root.squashfs
vm_put "$tmp/update/root.squashfs.sha256" /tmp/root.squashfs.sha256
check "voxgate update apply writes slot b" vm voxgate update apply /tmp/root.squashfs
check "entries: a (good) and b (3 tries)" expect_entries "voxgate-a.conf voxgate-b+3.conf" "a:good b:3" a
check "voxgate update status shows b on trial" vm 'voxgate update status | grep -q "slot b .*on trial: 3 tries left"' 
vm 'rm -f /tmp/root.squashfs*; systemctl reboot' || true
t=$(wait_ready 2)
say "slot b ready after ${t}s: $(marker 2)"
check "slot b boots the new version" bash -c '[[ "$1" == *"slot=b version=$2 "* ]] || { echo "$1"; false; }' _ "$(marker 2)" "$version_b"
vm_wait_ssh
if [ "$FIRMWARE" = uefi ]; then
  check "slot b entry blessed, slot a kept" vm \
    'for i in $(seq 30); do [ -e /efi/loader/entries/voxgate-b.conf ] && break; sleep 1; done; [ "$(ls /efi/loader/entries | tr "\n" " ")" = "voxgate-a.conf voxgate-b.conf " ] || { ls /efi/loader/entries; false; }'
else
  check "slot b blessed (GRUB's default), slot a kept" vm \
    'for i in $(seq 30); do grep -qx voxgate_default=b /efi/grub/grubenv && break; sleep 1; done; grep -qx voxgate_trial= /efi/grub/grubenv && [ -e /efi/voxgate/a/grub.cfg ] || { head -c 200 /efi/grub/grubenv; false; }'
  check "slots: a and b good" expect_entries "" "a:good b:good" b
fi
check "voxgate answers on slot b" vm 'voxgate status >/dev/null && grep -q voxgate.slot=b /proc/cmdline'

say "installing a broken image into slot a"
# (this time the checksum is given on the command line rather than in a .sha256 file)
vm_put "$tmp/broken.squashfs" /tmp/root.squashfs
check "voxgate update apply writes slot a" vm voxgate update apply /tmp/root.squashfs --sha256 "$(cut -d' ' -f1 "$tmp/broken.squashfs.sha256")"
check "entries: a (3 tries) and b (good)" expect_entries "voxgate-a+3.conf voxgate-b.conf" "a:3 b:good" b
vm 'rm -f /tmp/root.squashfs*; systemctl reboot' || true
fallback_start=$SECONDS
ready_timeout=$((ready_timeout * 4))
wait_ready 3 1 >/dev/null
fallback=$((SECONDS - fallback_start))
not_ready=$(grep -ac 'VOXGATE-NOT-READY slot=a' "$tmp/console.log" || true)
say "back on a working slot after ${fallback}s and $not_ready failed tries: $(marker 3)"
check "the broken slot failed three times" bash -c '[ "$1" -eq 3 ] || { echo "$1 VOXGATE-NOT-READY lines for slot a"; false; }' _ "$not_ready"
check "the box fell back to slot b by itself" bash -c '[[ "$1" == *"slot=b version=$2 "* ]] || { echo "$1"; false; }' _ "$(marker 3)" "$version_b"
vm_wait_ssh
check "entries: a out of tries (+0-3), b good" expect_entries "voxgate-a+0-3.conf voxgate-b.conf" "a:0 b:good" b
check "voxgate answers after the fallback" vm 'voxgate status >/dev/null && grep -q voxgate.slot=b /proc/cmdline'
vm_poweroff

echo
echo "update-test summary ($accel, $FIRMWARE firmware, $(nproc) host CPUs):"
echo "  fallback from the broken slot  ${fallback}s (3 tries)"
echo "  whole test                     $((SECONDS - t0))s"
[ "$failures" -eq 0 ] || die "$failures check(s) failed"
echo "update-test: PASS"
