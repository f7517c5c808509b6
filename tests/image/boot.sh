#!/usr/bin/env bash
# tests/image/boot.sh: boot the qemu image (build/qemu, from `make image BOARD=qemu`) in
# qemu-system-x86_64 with OVMF (UEFI), or with FIRMWARE=bios with SeaBIOS (legacy BIOS, GRUB),
# and check it as a support engineer would:
#   - boot to VOXGATE-READY on the serial console (printed by voxgate-boot-check.service once
#     voxgate.service is active and answers `voxgate status`), with the time it took;
#   - over SSH (key from the site configuration, from the lab's management namespace): every voxgate
#     service running, no failed unit, read-only root, /var on the data partition and grown
#     to the end of the disk (the test's disk is GROW_MIB=512 MiB larger than the image), no root
#     password, the boot entry blessed by systemd-bless-boot (UEFI) or slot a made GRUB's
#     default by voxgate-bless-grub (legacy BIOS);
#   - the tagged voice VLAN: lan0.100 up with 10.100.0.1/24, a DHCP client on VLAN 100 gets a
#     lease from voxgate, the phone reaches the box but SSH from the voice LAN is refused;
#   - the broadband side (the lab's wan namespace): a REGISTER from the phone on VLAN 100 reaches
#     the provider's SIP server (sipp) through the box and its challenge comes back, SSH from
#     there is dropped, and a capture of everything the box sent there holds no LAN address;
#   - a reboot, then a power cut (the VM killed while a writer renames files on the data
#     partition): both times machine id, SSH host key and the lease survive, and the data
#     partition comes back clean (REBOOT=0 skips both).
# The release root and ESP are booted unchanged; see lib.sh for the VM and its NICs.
# Needs root, qemu-system-x86, ovmf (or seabios), mtools, fdisk, openssh-client, sip-tester, tcpdump, and apt access to Debian's
# mirror once (busybox-static, cached in build/cache).
set -euo pipefail
TEST=boot-test # (read by lib.sh)
export TEST
# shellcheck source=tests/image/lib.sh
. "$(dirname "$0")/lib.sh"

[ "${1:-qemu}" = qemu ] || die "only the qemu board has NICs this test knows (BOARD=qemu)"
REBOOT=${REBOOT:-1}
vm_requirements
vm_disk
vm_accel
version=$(. "$build/image-release" && echo "$VERSION")

say "booting build/qemu (voxgate $version) with $accel, $FIRMWARE firmware"
vm_start
ready1=$(wait_ready 1)
say "ready after ${ready1}s (qemu start to console marker): $(marker 1)"
vm_wait_ssh

echo "voxgate status (in the VM):"
vm voxgate status | sed 's/^/  | /'
check "voxgate.service is active" vm systemctl is-active voxgate.service
check "every voxgate service is running" vm \
  "voxgate status --json | jq -e '[.services[] | select(.state != \"running\" and .state != \"disabled\")] | length == 0'"
check "the media relay forwards established RTP in the kernel (kernel path on)" vm \
  'journalctl -b -u voxgate.service --no-pager | grep -q "media kernel path on" || { journalctl -b -u voxgate.service --no-pager | grep "kernel path"; false; }'
check "the DHCP server knows the site's time zone (tzdata: options 100 and 2 for phones)" vm \
  '! journalctl -b -u voxgate.service --no-pager | grep "time zone not found"'
check "no failed units (systemctl is-system-running)" vm \
  'systemctl is-system-running --wait >/dev/null; s=$(systemctl is-system-running); [ "$s" = running ] || { echo "$s"; systemctl --failed --no-pager; false; }'
check "root is the read-only squashfs of slot a" vm \
  'findmnt -no FSTYPE,OPTIONS / | grep -q "^squashfs *ro"; grep -q voxgate.slot=a /proc/cmdline'
check "/var is the data partition" vm \
  '[ "$(lsblk -no PARTLABEL "$(findmnt -no SOURCE /var)")" = voxgate-data ] && findmnt -no FSTYPE /var | grep -qx ext4'
if [ "${GROW_MIB:-512}" -gt 0 ]; then
  # 256 MiB in the image, the disk GROW_MIB larger: the ext4 must have grown by most of it.
  check "the data partition grew to the end of the disk (${GROW_MIB:-512} MiB more)" vm \
    "for i in \$(seq 60); do [ \"\$(systemctl show -P ActiveState voxgate-grow-data.service)\" = activating ] || break; sleep 1; done
     systemctl is-active -q voxgate-grow-data.service && size=\$(df -m --output=size /var | tail -n1) && [ \"\$size\" -gt $((256 + ${GROW_MIB:-512} * 3 / 4)) ] || { df -m /var; journalctl -b -u voxgate-grow-data.service --no-pager; false; }"
fi
check "root has no password" vm '[ "$(awk -F: '\''$1 == "root" {print $2}'\'' /etc/shadow)" = "*" ]'
if [ "$FIRMWARE" = uefi ]; then
  check "booted by UEFI (systemd-boot)" vm '[ -d /sys/firmware/efi ] && voxgate update status --json | jq -e ".firmware == \"uefi\"" >/dev/null'
  check "boot entry blessed (voxgate-a+3.conf -> voxgate-a.conf)" vm \
    'for i in $(seq 30); do [ -e /efi/loader/entries/voxgate-a.conf ] && exit 0; sleep 1; done; ls /efi/loader/entries; systemctl status systemd-bless-boot.service --no-pager; false'
else
  check "booted by legacy BIOS (GRUB)" vm '[ ! -d /sys/firmware/efi ] && voxgate update status --json | jq -e ".firmware == \"bios\"" >/dev/null'
  check "GRUB counted the first try (voxgate_tries 3 -> 2)" bash -c 'grep -aq "slot a on trial, 2 tries left" "$1"' _ "$tmp/console.log"
  # The image's environment has slot a on trial; voxgate-bless-grub makes it the default.
  check "slot a blessed in GRUB's environment (default a, no trial)" vm \
    'for i in $(seq 30); do grep -qx voxgate_default=a /efi/grub/grubenv && grep -qx voxgate_trial= /efi/grub/grubenv && exit 0; sleep 1; done; head -c 200 /efi/grub/grubenv; systemctl status voxgate-bless-grub.service --no-pager; false'
  check "voxgate update status: slot a good" vm 'voxgate update status | grep -q "slot a .* good$"'
fi
check "voice VLAN lan0.100 (802.1Q id 100 on lan0) has 10.100.0.1/24" vm \
  'ip -d link show lan0.100 | grep -q "vlan protocol 802.1Q id 100"; ip -br addr show lan0.100 | grep -q "UP.*10.100.0.1/24" || { ip -d addr show lan0.100; false; }'

# The phone: the probe NIC moves into a namespace in the VM and asks for a lease on VLAN 100.
phone_setup='set -e
bb=/var/lib/voxgate-test/busybox
nic=""
for d in /sys/class/net/*; do [ "$(cat $d/address)" = 52:54:00:76:67:10 ] && nic=${d##*/}; done
[ -n "$nic" ] || { echo "no NIC with the probe MAC 52:54:00:76:67:10"; exit 1; }
ip netns add phone
ip link set "$nic" netns phone
ip -n phone link set lo up
ip -n phone link set "$nic" name eth0
ip -n phone link set eth0 up
ip -n phone link add link eth0 name eth0.100 type vlan id 100
ip -n phone link set eth0.100 up
out=$(ip netns exec phone $bb udhcpc -i eth0.100 -f -q -n -t 5 -T 3 -s /bin/true 2>&1) || { echo "$out"; exit 1; }
echo "$out"
lease=$(echo "$out" | sed -n "s/.*lease of \([0-9.]*\) obtained.*/\1/p")
[ -n "$lease" ] || exit 1
ip -n phone addr add "$lease/24" dev eth0.100'
check "a tagged client on VLAN 100 gets a DHCP lease from voxgate" vm "$phone_setup"
lease=$(vm 'ip -n phone -4 -br addr show eth0.100' 2>/dev/null | awk '{print $3}' | cut -d/ -f1 || true)
[ -n "$lease" ] && say "the phone on VLAN 100 leased $lease"
check "voxgate leases lists the phone" vm "voxgate leases | grep -q '${lease:-none}'"
check "the phone reaches the box on the voice LAN (ping 10.100.0.1)" vm \
  'ip netns exec phone /var/lib/voxgate-test/busybox ping -c 2 -W 2 10.100.0.1'
# Only meaningful while the phone reaches the box: then no banner means the firewall.
check "SSH from the voice LAN is refused (firewall)" vm \
  'ip netns exec phone /var/lib/voxgate-test/busybox ping -c 1 -W 2 10.100.0.1 >/dev/null || { echo "the phone does not reach the box at all"; exit 1; }
   ! ip netns exec phone /var/lib/voxgate-test/busybox nc -w 3 10.100.0.1 22 </dev/null | grep -q SSH'

# The broadband side, in the lab's wan namespace: the provider's SIP server (sipp,
# tests/sipp/provider_server.xml: challenges REGISTERs) on 203.0.113.10:9997, the profile's SIP
# port, and a capture of everything the box sends there. The phone on VLAN 100 (bash in the VM's
# phone namespace; the image has no SIP client) sends a REGISTER to the box, which relays it to the
# provider over wan0 and the provider's 401 challenge back.
ip netns exec "$ns_wan" tcpdump -i eth0 -n -U -s 0 -w "$tmp/wan.pcap" "src host $box_wan" >"$tmp/tcpdump.out" 2>&1 &
tcpdump_pid=$!
ip netns exec "$ns_wan" sipp -sf "$repo/tests/sipp/provider_server.xml" -i "$provider" -p 9997 \
  -nostdin -timeout 300s -trace_msg -message_file "$tmp/provider.log" </dev/null >/dev/null 2>&1 &
sipp_pid=$!
sleep 2
# (bash's /dev/udp: the image's busybox nc has no UDP. The request is written to a file first
# and sent with one write by cat: bash's printf writes line by line, a datagram per line.)
register='set -e
lease=$(ip -n phone -4 -br addr show eth0.100 | awk "{print \$3}" | cut -d/ -f1)
printf "REGISTER sip:PROVIDER SIP/2.0\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bK-boottest1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:1001@PROVIDER>;tag=boottest\r\nTo: <sip:1001@PROVIDER>\r\nCall-ID: boottest1@%s\r\nCSeq: 1 REGISTER\r\nContact: <sip:1001@%s:5060>\r\nExpires: 300\r\nContent-Length: 0\r\n\r\n" "$lease" "$lease" "$lease" >/run/boot-test-register.sip
ip netns exec phone bash -c "exec 3<>/dev/udp/10.100.0.1/5060; cat /run/boot-test-register.sip >&3; timeout 5 dd bs=65535 count=1 status=none <&3"'
register=${register//PROVIDER/$provider}
phone_register() {
  local out
  out=$(vm "$register") || true
  printf '%s\n' "$out" | grep -q "^SIP/2.0 401" || { echo "the phone got: [$out]"; false; }
}
check "a phone's REGISTER reaches the provider through the box and its 401 challenge comes back" phone_register
check "the provider saw the REGISTER from the box's WAN address, with no LAN address in it" bash -c \
  'grep -q "^REGISTER sip:" "$1" && ! grep -q "10\.100\.\|10\.0\.2\." "$1" || { head -c 3000 "$1"; false; }' _ "$tmp/provider.log"
check "SSH from the broadband side is dropped (firewall)" bash -c \
  "! ip netns exec $ns_wan timeout 5 bash -c 'exec 3<>/dev/tcp/$box_wan/22 && head -c 4 <&3' 2>/dev/null | grep -q SSH"
kill "$sipp_pid" 2>/dev/null; wait "$sipp_pid" 2>/dev/null || true
sleep 1
kill "$tcpdump_pid" 2>/dev/null; wait "$tcpdump_pid" 2>/dev/null || true
check "nothing the box sent to the broadband side carries a LAN address (capture on wan)" bash -c \
  'n=$(tcpdump -n -r "$1" "udp port 9997" 2>/dev/null | wc -l); [ "$n" -gt 0 ] || { echo "no SIP captured"; false; }
   ! tcpdump -n -A -r "$1" 2>/dev/null | grep -q "10\.100\.\|10\.0\.2\." || { tcpdump -n -A -r "$1" | grep -B5 "10\.100\.\|10\.0\.2\." | head -40; false; }
   echo "$n SIP datagrams, no LAN address"' _ "$tmp/wan.pcap"

ids() { vm 'cat /etc/machine-id; ssh-keygen -lf /var/lib/ssh/ssh_host_ed25519_key.pub' || true; }
id1=$(ids)
analyze1=$(vm 'systemd-analyze time | head -n1' || true)

ready2=""
if [ "$REBOOT" = 1 ]; then
  say "rebooting"
  vm 'systemctl reboot' || true
  ready2=$(wait_ready 2)
  say "ready again after ${ready2}s (reboot command to marker)"
  vm_wait_ssh
  id2=$(ids)
  same_ids() { [ -n "$id1" ] && [ "$id2" = "$id1" ] || { echo "before: $id1"; echo "after:  $id2"; false; }; }
  check "machine id and SSH host key survive a reboot" same_ids
  check "the lease survives a reboot" vm "voxgate leases | grep -q '${lease:-none}'"
  check "voxgate.service is active after the reboot" vm systemctl is-active voxgate.service

  say "power cut while writing to the data partition"
  vm 'mkdir -p /var/lib/voxgate-test; nohup sh -c "i=0; while :; do i=\$((i + 1)); echo \$i > /var/lib/voxgate-test/counter.new; mv /var/lib/voxgate-test/counter.new /var/lib/voxgate-test/counter; done" </dev/null >/dev/null 2>&1 &'
  sleep 5
  kill -9 "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true
  vm_start
  ready3=$(wait_ready 1)
  say "ready after the power cut in ${ready3}s: $(marker 1)"
  vm_wait_ssh
  id3=$(ids)
  same_ids3() { [ "$id3" = "$id1" ] || { echo "before: $id1"; echo "after:  $id3"; false; }; }
  check "machine id and SSH host key survive a power cut" same_ids3
  check "the lease survives a power cut" vm "voxgate leases | grep -q '${lease:-none}'"
  check "the interrupted writer left a whole file (rename is atomic)" vm \
    'n=$(cat /var/lib/voxgate-test/counter); case "$n" in ""|*[!0-9]*) echo "counter: [$n]"; false ;; esac; echo "$n writes before the cut"'
  check "the data partition is clean after the journal replay" vm \
    'cat /run/initramfs/voxgate-data.log; ! grep -q "cannot mount\|tmpfs" /run/initramfs/voxgate-data.log && findmnt -no SOURCE /var | grep -q "^/dev/"'
  check "voxgate.service is active after the power cut" vm systemctl is-active voxgate.service
fi
vm_poweroff

echo
echo "boot-test summary ($accel, $FIRMWARE firmware, $(nproc) host CPUs):"
echo "  boot to VOXGATE-READY   ${ready1}s (qemu start to console marker; in the VM: ${analyze1:-?})"
[ -z "$ready2" ] || echo "  reboot to READY again  ${ready2}s (reboot command to console marker)"
[ -z "${ready3:-}" ] || echo "  power cut to READY     ${ready3}s (qemu start to console marker)"
echo "  whole test              $((SECONDS - t0))s"
[ "$failures" -eq 0 ] || die "$failures check(s) failed"
echo "boot-test: PASS"
