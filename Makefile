# The appliance image (issue 5). Everything here needs root and Debian's package mirror.
#
#   make image BOARD=qemu            build build/qemu/voxgate-qemu.img (also: generic-x86_64)
#   make boot-test                   boot build/qemu in qemu and check it (tests/image/boot.sh)
#   make update-test                 A/B update and fallback in qemu (tests/image/update.sh)
#   make boot-test-bios              the boot test under SeaBIOS (legacy BIOS, GRUB), same disk
#   make update-test-bios            the update test under SeaBIOS (GRUB's boot counting)
#   make render-test                 voxgate.yaml -> networkd/sshd rendering, no VM (seconds)
#   make base                        only the Debian base (build/base/rootfs.tar), shared by boards
#   make clean-image                 remove build/
#
# The Debian base is rebuilt only when its inputs change (about 2 minutes); the voxgate binary
# by cargo when its sources change; the board stage always runs (about 2.5 minutes, of which
# mksquashfs at zstd level 19 is most: ZSTD_LEVEL=6 makes it seconds, for development).
# The tests boot what `make image BOARD=qemu` built last; they do not rebuild it.

BOARD ?= qemu
BUILD := build
BASE := $(BUILD)/base/rootfs.tar
# VOXGATE_BIN=path uses a prebuilt binary instead of `cargo build --release -p voxgate`.
VOXGATE_BIN ?=

BASE_INPUTS := rootfs/packages.txt rootfs/dpkg-excludes.txt scripts/image/build-base.sh \
	$(shell find rootfs/initramfs -type f)

.PHONY: image base binary boot-test update-test boot-test-bios update-test-bios render-test clean-image

image: $(BASE) binary
	VOXGATE_BIN=$(or $(VOXGATE_BIN),target/release/voxgate) scripts/image/build.sh $(BOARD)

base: $(BASE)

$(BASE): $(BASE_INPUTS)
	scripts/image/build-base.sh $@

binary:
ifeq ($(VOXGATE_BIN),)
	cargo build --release -p voxgate
endif

boot-test:
	tests/image/boot.sh qemu

update-test:
	tests/image/update.sh

boot-test-bios:
	FIRMWARE=bios tests/image/boot.sh qemu

update-test-bios:
	FIRMWARE=bios tests/image/update.sh

render-test: binary
	tests/image/render-system.sh

clean-image:
	rm -rf $(BUILD)
