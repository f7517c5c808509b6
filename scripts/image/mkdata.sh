#!/usr/bin/env bash
# mkdata.sh OUTPUT.img [DIR]: the data partition image (ext4, label voxgate-data, mounted at
# /var on the box), built from DIR's contents with mke2fs -d (no loop device). Without DIR it is
# empty and the box fills it on first boot (systemd-tmpfiles copies the factory configuration
# to /var/etc/voxgate/voxgate.yaml). With DIR it is "provisioned": e.g. DIR/etc/voxgate/voxgate.yaml
# is the site's configuration.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/layout.sh"
die() { echo "mkdata: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: mkdata.sh OUTPUT.img [DIR]"
out=$1 src=${2:-}
empty=""
if [ -z "$src" ]; then
  empty=$(mktemp -d)
  trap 'rm -rf "$empty"' EXIT
  src=$empty
fi
[ -d "$src" ] || die "$src is not a directory"
chmod 0755 "$src"
rm -f "$out"
# -E root_owner: /var belongs to root whoever runs this. Ext4 with a journal: a power cut
# during a lease write replays the journal at the next mount (the initrd runs e2fsck -p first).
mke2fs -q -F -t ext4 -L voxgate-data -E root_owner=0:0 -d "$src" "$out" "${DATA_MIB}M" >/dev/null \
  || die "mke2fs failed"
