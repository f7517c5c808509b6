#!/usr/bin/env bash
# tests/image/render-system.sh: the image's render-system (voxgate.yaml -> systemd-networkd,
# sshd keys, timesyncd) run on the build machine into a temporary directory, for each board's
# factory configuration, the lab configuration (static WAN with DNS) and a broken file (falls
# back to the last good one). Seconds, no VM, no root; needs jq and the voxgate binary
# (VOXGATE_BIN, default target/release/voxgate).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
bin=${VOXGATE_BIN:-$repo/target/release/voxgate}
render=$repo/rootfs/overlay/usr/libexec/voxgate/render-system
die() { echo "render-system-test: FAIL: $*" >&2; exit 1; }
[ -x "$bin" ] || die "$bin is missing: cargo build --release -p voxgate"
command -v jq >/dev/null || die "jq is missing: apt-get install jq"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" && ln -s "$bin" "$tmp/bin/voxgate"
export PATH="$tmp/bin:$PATH"
failures=0

# render ROOT CONFIG: runs render-system with its outputs under ROOT.
render() {
  mkdir -p "$1/var/lib/voxgate-system"
  RENDER_ROOT=$1 RENDER_CONFIG=$2 RENDER_FACTORY=$repo/board/qemu/voxgate.yaml sh "$render" 2>"$1/log"
}
# expect NAME FILE LINE...: every LINE is a whole line of FILE.
expect() {
  local name=$1 file=$2 line; shift 2
  for line in "$@"; do
    if ! grep -qxF -- "$line" "$file" 2>/dev/null; then
      echo "  FAIL  $name: '$line' not in ${file#"$tmp"/}"; [ -f "$file" ] && sed 's/^/        /' "$file"
      failures=$((failures + 1)); return
    fi
  done
  echo "  PASS  $name"
}
net=run/systemd/network

r=$tmp/qemu; render "$r" "$repo/board/qemu/voxgate.yaml" || die "qemu: $(cat "$r/log")"
expect "qemu: static WAN" "$r/$net/10-voxgate-wan.network" "Name=wan0" "Address=10.0.3.15/24" "Gateway=10.0.3.2" "RequiredForOnline=routable"
expect "qemu: VLAN 100 netdev" "$r/$net/10-voxgate-voice.netdev" "Name=lan0.100" "Kind=vlan" "Id=100"
expect "qemu: lan0 carries the VLAN, no address" "$r/$net/10-voxgate-lan.network" "Name=lan0" "VLAN=lan0.100"
expect "qemu: voice address on lan0.100" "$r/$net/10-voxgate-voice.network" "Name=lan0.100" "Address=10.100.0.1/24" "ConfigureWithoutCarrier=yes"
expect "qemu: management port" "$r/$net/10-voxgate-mgmt.network" "Name=mgmt0" "Address=10.0.2.15/24"
[ ! -s "$r/run/voxgate-ssh/root.keys" ] && echo "  PASS  qemu: no SSH keys in the factory configuration" \
  || { echo "  FAIL  qemu: factory SSH keys"; failures=$((failures + 1)); }

r=$tmp/apu2; render "$r" "$repo/board/apu2/voxgate.yaml" || die "apu2: $(cat "$r/log")"
expect "apu2: DHCP WAN" "$r/$net/10-voxgate-wan.network" "DHCP=ipv4"
expect "apu2: untagged voice LAN on lan0" "$r/$net/10-voxgate-voice.network" "Name=lan0" "Address=10.100.0.1/24"
[ ! -e "$r/$net/10-voxgate-voice.netdev" ] && echo "  PASS  apu2: no VLAN netdev" \
  || { echo "  FAIL  apu2: unexpected VLAN netdev"; failures=$((failures + 1)); }
expect "apu2: time servers" "$r/run/systemd/timesyncd.conf.d/voxgate.conf" "NTP=0.uk.pool.ntp.org 1.uk.pool.ntp.org"

r=$tmp/lab; render "$r" "$repo/config/voxgate.lab.yaml" || die "lab: $(cat "$r/log")"
expect "lab: static WAN uses dns.upstreams" "$r/$net/10-voxgate-wan.network" "Address=10.200.0.2/24" "Gateway=10.200.0.1" "DNS=198.51.100.10"

sed 's|^  ssh_keys: \[\]$|  ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY test@example"]|' "$repo/board/qemu/voxgate.yaml" > "$tmp/keys.yaml"
r=$tmp/keys; render "$r" "$tmp/keys.yaml" || die "keys: $(cat "$r/log")"
expect "SSH keys from management.ssh_keys" "$r/run/voxgate-ssh/root.keys" "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY test@example"
# Now the site breaks its file: the last good configuration (with the key) stays in force.
printf 'interfaces:\n  wan: {device: wan0, mode: statik}\n' > "$tmp/broken.yaml"
render "$r" "$tmp/broken.yaml" || die "broken: $(cat "$r/log")"
expect "a broken file keeps the last good configuration" "$r/run/voxgate-ssh/root.keys" "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITESTKEY test@example"
grep -q 'does not validate' "$r/log" && grep -q 'last good configuration' "$r/log" \
  && echo "  PASS  ... and says why" || { echo "  FAIL  no explanation in the log"; cat "$r/log"; failures=$((failures + 1)); }

[ "$failures" -eq 0 ] || die "$failures check(s) failed"
echo "render-system-test: PASS"
