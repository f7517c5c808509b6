# shellcheck shell=bash
# Shared by tests/image/boot.sh and tests/image/update.sh (sourced, not run): a qemu VM of the
# qemu board with the release root and ESP from build/qemu and a test data partition.
#
# The data partition is the test's own: a site configuration with a fresh SSH key and a static
# busybox (udhcpc, nc, ping) for the client side, which runs in a network namespace inside the
# VM because the VM's kernel has 802.1Q (the build and CI kernels have neither VLAN devices nor
# VLAN filtering on bridges, so no tagged client can live on the host). The VM's NICs:
#   wan0  52:54:00:76:67:01  tap in the lab: namespace "wan" is the broadband side, 10.0.3.2
#                            (the box's gateway) and 203.0.113.10 (the provider's SIP server)
#   lan0  52:54:00:76:67:02  qemu hub 1, together with the probe NIC
#   mgmt0 52:54:00:76:67:03  tap in the lab: namespace "mgmt" is the support engineer, 10.0.2.2;
#                            every SSH of the tests goes from there to the box's 10.0.2.15
#   probe 52:54:00:76:67:10  qemu hub 1: the "phone" (moved into a namespace in the VM)
# The lab: namespaces vglab-<pid>-img-{vm,wan,mgmt} (removed on exit, or by `voxgate-lab
# cleanup` if the test was killed); qemu runs in "vm", whose bridges join each tap to a veth
# into its namespace. Nothing is created in the machine's own network namespace.
#
# FIRMWARE=uefi (default) boots with OVMF, FIRMWARE=bios with qemu's own SeaBIOS (legacy BIOS:
# GRUB from the BIOS boot partition), the same disk either way.
#
# KVM is used when /dev/kvm is writable and a kernel actually boots with it (some hosts expose a
# /dev/kvm that cannot run an ordinary guest), otherwise TCG. VOXGATE_ACCEL=kvm|tcg forces it.
# Every VM and temporary file is removed on exit.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$repo/build/qemu
ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
FIRMWARE=${FIRMWARE:-uefi}
case "$FIRMWARE" in uefi|bios) ;; *) echo "FIRMWARE=$FIRMWARE: expected uefi or bios" >&2; exit 1 ;; esac
t0=$SECONDS
failures=0
qemu_pid=""

die() { echo "$TEST: FAIL: $*" >&2; exit 1; }
say() { printf '%s: [%4ss] %s\n' "$TEST" "$((SECONDS - t0))" "$*"; }

vm_requirements() {
  [ "$(id -u)" -eq 0 ] || die "run as root"
  local f tool
  for f in root.squashfs esp.img partuuids.env image-release; do
    [ -f "$build/$f" ] || die "$build/$f is missing: run make image BOARD=qemu first"
  done
  for tool in qemu-system-x86_64 ssh scp ssh-keygen mcopy sfdisk mke2fs apt-get dpkg-deb ip sipp tcpdump; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install qemu-system-x86 ovmf openssh-client mtools fdisk e2fsprogs iproute2 sip-tester tcpdump)"
  done
  if [ "$FIRMWARE" = uefi ]; then
    [ -f "$ovmf_code" ] && [ -f "$ovmf_vars" ] || die "OVMF is missing: apt-get install ovmf"
  else
    [ -f /usr/share/seabios/bios-256k.bin ] || die "SeaBIOS is missing: apt-get install seabios"
  fi
}

tmp=$(mktemp -d /tmp/voxgate-image-test.XXXXXX)
ns_vm=vglab-$$-img-vm
ns_wan=vglab-$$-img-wan
ns_mgmt=vglab-$$-img-mgmt
# The box's addresses on the lab's sides (board/qemu/voxgate.yaml); box_wan is boot.sh's.
# shellcheck disable=SC2034
box_wan=10.0.3.15
box_mgmt=10.0.2.15
provider=203.0.113.10
vm_cleanup() {
  local rc=$?
  # Whoever reads our output may be gone already (a pipe closed by Ctrl-C): cleaning up matters
  # more than reporting.
  trap '' PIPE
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ] && [ -f "$tmp/console.log" ]; then
    echo "$TEST: last console lines:" >&2
    tr -d '\r' < "$tmp/console.log" | sed 's/\x1b\[[0-9;=?]*[a-zA-Z]//g' | tail -n 40 >&2
    if [ -n "${KEEP_CONSOLE:-}" ]; then cp "$tmp/console.log" "$KEEP_CONSOLE"; fi
  fi
  rm -rf "$tmp"
  for n in "$ns_vm" "$ns_wan" "$ns_mgmt"; do ip netns del "$n" 2>/dev/null || true; done
}
trap vm_cleanup EXIT
trap 'exit 130' INT TERM

# vm_disk: the VM's disk in $tmp/disk.img: build/qemu's ESP and root slot a, the test's data
# partition, and GROW_MIB (default 512) of free space at the end.
vm_disk() {
  ssh-keygen -q -t ed25519 -N '' -C voxgate-image-test -f "$tmp/key"
  mkdir -p "$tmp/data/etc/voxgate" "$tmp/data/lib/voxgate-test"
  sed "s|^  ssh_keys: \[\]\$|  ssh_keys: [\"$(cat "$tmp/key.pub")\"]|" "$repo/board/qemu/voxgate.yaml" \
    > "$tmp/data/etc/voxgate/voxgate.yaml"
  grep -q voxgate-image-test "$tmp/data/etc/voxgate/voxgate.yaml" \
    || die "could not put the test key into board/qemu/voxgate.yaml (expects a line '  ssh_keys: []')"
  chmod 0640 "$tmp/data/etc/voxgate/voxgate.yaml"
  local cache=$repo/build/cache
  mkdir -p "$cache"
  if ! ls "$cache"/busybox-static_*.deb >/dev/null 2>&1; then
    (cd "$cache" && apt-get download -qq busybox-static) || die "apt-get download busybox-static failed (is apt's mirror reachable?)"
  fi
  dpkg-deb --fsys-tarfile "$(ls "$cache"/busybox-static_*.deb | tail -n1)" | tar -x -O ./bin/busybox > "$tmp/data/lib/voxgate-test/busybox"
  chmod 0755 "$tmp/data/lib/voxgate-test/busybox"
  "$repo/scripts/image/mkdata.sh" "$tmp/data.img" "$tmp/data" >/dev/null
  "$repo/scripts/image/mkdisk.sh" "$build" "$tmp/data.img" "$tmp/disk.img"
  # A box's disk is larger than the image: GROW_MIB more (sparse), which the data partition
  # takes on first boot (voxgate-grow-data.service). GROW_MIB=0: the disk as built.
  truncate -s "+${GROW_MIB:-512}M" "$tmp/disk.img"
  if [ "$FIRMWARE" = uefi ]; then cp "$ovmf_vars" "$tmp/vars.fd"; fi
}

# vm_accel: sets accel, cpu and ready_timeout.
vm_accel() {
  mcopy -n -i "$build/esp.img" ::/voxgate/a/vmlinuz "$tmp/vmlinuz"
  accel=${VOXGATE_ACCEL:-}
  if [ -z "$accel" ]; then
    # (stderr: bash reports the probe's qemu aborting, which is the answer, not an error)
    if kvm_works 2>/dev/null; then accel=kvm; else accel=tcg; fi
  fi
  case "$accel" in
    kvm) cpu=host; ready_timeout=${READY_TIMEOUT:-180} ;;
    tcg) cpu=max; ready_timeout=${READY_TIMEOUT:-600}
         [ -e /dev/kvm ] && say "/dev/kvm exists but does not boot a guest here; using TCG (slow)" ;;
    *) die "VOXGATE_ACCEL=$accel: expected kvm or tcg" ;;
  esac
}
kvm_works() {
  [ -w /dev/kvm ] || return 1
  timeout 20 qemu-system-x86_64 -machine q35,accel=kvm -cpu host -m 256 -nodefaults -display none \
    -serial "file:$tmp/kvm-probe.log" -kernel "$tmp/vmlinuz" -append "console=ttyS0 panic=-1" \
    -no-reboot >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 40); do
    if grep -qa "Linux version" "$tmp/kvm-probe.log" 2>/dev/null; then
      kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  return 1
}

# vm_lab: the namespaces the VM's wan0 and mgmt0 are attached to (see the top of this file).
vm_lab() {
  ip netns add "$ns_vm"
  ip netns add "$ns_wan"
  ip netns add "$ns_mgmt"
  local side ns
  for side in wan mgmt; do
    ns=$ns_wan; [ "$side" = mgmt ] && ns=$ns_mgmt
    ip -n "$ns_vm" link add "br-$side" type bridge
    ip -n "$ns_vm" tuntap add dev "tap-$side" mode tap
    ip -n "$ns_vm" link add "veth-$side" type veth peer name eth0 netns "$ns"
    ip -n "$ns_vm" link set "tap-$side" master "br-$side"
    ip -n "$ns_vm" link set "veth-$side" master "br-$side"
    ip -n "$ns_vm" link set "br-$side" up
    ip -n "$ns_vm" link set "tap-$side" up
    ip -n "$ns_vm" link set "veth-$side" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
  ip -n "$ns_wan" addr add 10.0.3.2/24 dev eth0
  ip -n "$ns_wan" addr add "$provider/32" dev eth0
  ip -n "$ns_mgmt" addr add 10.0.2.2/24 dev eth0
}

# vm_start: boots the VM in the background (console in $tmp/console.log).
vm_start() {
  [ -n "${lab_up:-}" ] || { vm_lab; lab_up=1; }
  : > "$tmp/console.log"
  local firmware=()
  if [ "$FIRMWARE" = uefi ]; then
    firmware=(-drive "if=pflash,format=raw,unit=0,readonly=on,file=$ovmf_code"
      -drive "if=pflash,format=raw,unit=1,file=$tmp/vars.fd")
  fi
  # (no pflash: qemu's default firmware, SeaBIOS)
  ip netns exec "$ns_vm" qemu-system-x86_64 -machine "q35,accel=$accel" -cpu "$cpu" -m 1024 -smp 2 \
    -nodefaults -display none -no-user-config \
    "${firmware[@]}" \
    -drive "file=$tmp/disk.img,format=raw,if=virtio" \
    -netdev tap,id=wan,ifname=tap-wan,script=no,downscript=no -device virtio-net-pci,netdev=wan,mac=52:54:00:76:67:01 \
    -netdev hubport,id=lan,hubid=1 -device virtio-net-pci,netdev=lan,mac=52:54:00:76:67:02 \
    -netdev tap,id=mgmt,ifname=tap-mgmt,script=no,downscript=no -device virtio-net-pci,netdev=mgmt,mac=52:54:00:76:67:03 \
    -netdev hubport,id=probe,hubid=1 -device virtio-net-pci,netdev=probe,mac=52:54:00:76:67:10 \
    -device i6300esb \
    -serial "file:$tmp/console.log" >"$tmp/qemu.out" 2>&1 &
  qemu_pid=$!
}

# wait_ready N [ALLOW_NOT_READY]: waits for the Nth VOXGATE-READY line on the console and
# prints the seconds it took. A VOXGATE-NOT-READY line fails the test unless ALLOW_NOT_READY=1.
wait_ready() {
  local n=$1 allow=${2:-0} start=$SECONDS
  while :; do
    if [ "$(grep -ac 'VOXGATE-READY' "$tmp/console.log")" -ge "$n" ]; then
      echo $((SECONDS - start)); return 0
    fi
    if [ "$allow" != 1 ] && grep -aq 'VOXGATE-NOT-READY' "$tmp/console.log"; then
      die "the box says: $(grep -a 'VOXGATE-NOT-READY' "$tmp/console.log" | tail -n1 | tr -d '\r')"
    fi
    kill -0 "$qemu_pid" 2>/dev/null || die "qemu exited: $(cat "$tmp/qemu.out")"
    [ $((SECONDS - start)) -lt "$ready_timeout" ] || die "no VOXGATE-READY within ${ready_timeout}s ($accel)"
    sleep 1
  done
}
# marker N: the Nth VOXGATE-READY line, from the marker on.
marker() { grep -a 'VOXGATE-READY' "$tmp/console.log" | sed -n "${1}p" | tr -d '\r' | sed 's/.*VOXGATE-READY/VOXGATE-READY/'; }

vm_ssh_opts() {
  ssh_opts=(-i "$tmp/key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile="$tmp/known_hosts"
    -o LogLevel=ERROR -o ConnectTimeout=20)
}
# vm COMMAND: runs a command in the VM over SSH from the management side.
vm() { vm_ssh_opts; ip netns exec "$ns_mgmt" ssh "${ssh_opts[@]}" "root@$box_mgmt" "$@"; }
# vm_put FILE DEST: copies a file into the VM.
vm_put() { vm_ssh_opts; ip netns exec "$ns_mgmt" scp -q "${ssh_opts[@]}" "$1" "root@$box_mgmt:$2"; }
# vm_wait_ssh: sshd answers (its first start generates the host key; slow under TCG).
vm_wait_ssh() {
  for _ in $(seq 30); do vm true 2>/dev/null && return 0; sleep 2; done
  vm true || die "cannot ssh to the box's management address $box_mgmt from the lab's mgmt namespace"
}
vm_poweroff() {
  vm 'systemctl poweroff' >/dev/null 2>&1 || true
  for _ in $(seq 60); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 1; done
  if kill -0 "$qemu_pid" 2>/dev/null; then
    echo "  FAIL  clean poweroff within 60s"; failures=$((failures + 1))
  else
    echo "  PASS  clean poweroff"
  fi
  qemu_pid=""
}

# check NAME COMMAND...: runs the command, prints PASS, or FAIL with its output.
check() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then
    echo "  PASS  $name"
  else
    echo "  FAIL  $name"
    printf '%s\n' "$out" | sed 's/^/        /'
    failures=$((failures + 1))
  fi
}
