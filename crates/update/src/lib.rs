//! A/B updates of the appliance's root (rootfs/IMAGE.md, "Updates"): `voxgate update apply`
//! writes a new root image into the slot the box is not running from and boots it next with
//! three tries; the slot is kept once `voxgate` reports healthy (boot-check,
//! boot-complete.target), otherwise the boot loader returns to the old slot by itself.
//! `voxgate update status` shows the slots' entries and tries.
//!
//! Two boot loaders share the ESP, and the one that started this boot is in charge of the
//! tries: under UEFI systemd-boot (an entry `voxgate-<slot>+3.conf`, blessed by
//! systemd-bless-boot), under legacy BIOS GRUB (a trial in its environment block, blessed by
//! `voxgate update bless`; see `grub`). Both find a slot's kernel and initrd in
//! `/voxgate/<slot>/` and GRUB its command line in `/voxgate/<slot>/grub.cfg`, which every
//! update writes on images that have GRUB, so a disk boots the same slots either way.
//!
//! Each step is a function over paths (`Paths`), so that tests run it on a directory tree and
//! the box on `/proc`, `/sys`, `/dev` and the ESP. The order is what keeps a power cut at any
//! moment harmless: the target slot's entry is removed before the slot is written, and its
//! new entry is written (aside, fsync, rename) only after the slot reads back correctly.

mod disk;
mod entries;
pub mod grub;
mod verify;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

pub use disk::{find_partition, Partition};
pub use entries::{kernel_options, next_generation, render_entry, status, Entry, Status};
pub use grub::Blessed;
pub use verify::{sign, verify, Verified};

/// A root slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Slot A (`voxgate-root-a`).
    A,
    /// Slot B (`voxgate-root-b`).
    B,
}

impl Slot {
    /// `a` or `b`.
    pub fn name(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }
}

/// How the running system was booted, so which boot loader counts the tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// UEFI: systemd-boot and its boot counting.
    Uefi,
    /// Legacy BIOS: GRUB from the BIOS boot partition and its environment block.
    Bios,
}

impl Firmware {
    /// UEFI when the kernel was started by UEFI firmware (`/sys/firmware/efi` exists).
    pub fn detect(paths: &Paths) -> Firmware {
        if paths.efi.exists() {
            Firmware::Uefi
        } else {
            Firmware::Bios
        }
    }

    /// `uefi` or `bios`.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
        }
    }
}

/// Where the box's files are; [`Paths::system`] on the box, a temporary tree in tests.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The kernel command line (`/proc/cmdline`).
    pub cmdline: PathBuf,
    /// This process's mounts (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// Block devices by number (`/sys/dev/block`).
    pub sys_dev_block: PathBuf,
    /// Block devices by name (`/sys/class/block`).
    pub sys_class_block: PathBuf,
    /// Device nodes (`/dev`).
    pub dev: PathBuf,
    /// Partitions by GPT unique id (`/dev/disk/by-partuuid`).
    pub by_partuuid: PathBuf,
    /// The EFI system partition (`/efi`, an automount).
    pub esp: PathBuf,
    /// Public keys updates must be signed with (`/usr/share/voxgate/update-keys`); none: no
    /// signature needed.
    pub keys: PathBuf,
    /// The running image's `image-release` (`/usr/lib/voxgate/image-release`).
    pub release: PathBuf,
    /// Present when UEFI started the kernel (`/sys/firmware/efi`).
    pub efi: PathBuf,
}

impl Paths {
    /// The running box.
    pub fn system() -> Paths {
        Paths {
            cmdline: "/proc/cmdline".into(),
            mountinfo: "/proc/self/mountinfo".into(),
            sys_dev_block: "/sys/dev/block".into(),
            sys_class_block: "/sys/class/block".into(),
            dev: "/dev".into(),
            by_partuuid: "/dev/disk/by-partuuid".into(),
            esp: "/efi".into(),
            keys: "/usr/share/voxgate/update-keys".into(),
            release: "/usr/lib/voxgate/image-release".into(),
            efi: "/sys/firmware/efi".into(),
        }
    }
}

/// Whether this process runs as root (writing slots and entries needs it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The slot the box runs from, from `voxgate.slot=` on the kernel command line.
pub fn running_slot(cmdline: &str) -> anyhow::Result<Slot> {
    match cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("voxgate.slot="))
    {
        Some("a") => Ok(Slot::A),
        Some("b") => Ok(Slot::B),
        Some(other) => bail!("unknown slot voxgate.slot={other} on the kernel command line"),
        None => bail!("cannot tell the running slot: no voxgate.slot= on the kernel command line"),
    }
}

/// What an image says about itself (`/usr/lib/voxgate/image-release`, shell variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Version string.
    pub version: String,
    /// Board it was built for.
    pub board: String,
    /// The board's extra kernel command line.
    pub cmdline: String,
}

/// Reads `image-release` (`KEY=value` or `KEY="value"` lines).
pub fn parse_release(text: &str) -> anyhow::Result<Release> {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_string())
    };
    Ok(Release {
        version: get("VERSION").context("image-release has no VERSION")?,
        board: get("BOARD").context("image-release has no BOARD")?,
        cmdline: get("BOARD_CMDLINE").unwrap_or_default(),
    })
}

/// A mounted slot; unmounted when dropped.
pub struct Mounted {
    dir: PathBuf,
    unmount: bool,
}

impl Mounted {
    /// A directory that stands for a mounted slot (tests).
    pub fn directory(dir: &Path) -> Mounted {
        Mounted {
            dir: dir.to_path_buf(),
            unmount: false,
        }
    }

    /// Mounts the squashfs on `dev` read-only at a fresh directory under /run (a block
    /// device: no loop device needed).
    pub fn squashfs(dev: &Path) -> anyhow::Result<Mounted> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let dir = PathBuf::from(format!("/run/voxgate-update.{}", std::process::id()));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let src = CString::new(dev.as_os_str().as_bytes())?;
        let dst = CString::new(dir.as_os_str().as_bytes())?;
        let fstype = CString::new("squashfs")?;
        // SAFETY: NUL-terminated strings that outlive the call; no data argument.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                fstype.as_ptr(),
                libc::MS_RDONLY,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            let _ = fs::remove_dir(&dir);
            bail!("mounting {} read-only: {e}", dev.display());
        }
        Ok(Mounted { dir, unmount: true })
    }

    /// The slot's root directory.
    pub fn root(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.unmount {
            if let Ok(dst) = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()) {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::umount2(dst.as_ptr(), 0) };
            }
            let _ = fs::remove_dir(&self.dir);
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The slot the box runs from.
    pub running: Slot,
    /// The slot written.
    pub target: Slot,
    /// The image's version.
    pub version: String,
    /// Its boot entry's generation.
    pub generation: u64,
    /// What boots it next: the systemd-boot entry's file name, or the GRUB environment's trial.
    pub entry: String,
}

/// Boot tries a new slot gets before systemd-boot gives up on it.
pub const TRIES: u32 = 3;

/// Installs `image` into the slot the box is not running from; `mount` gives the written
/// slot's files. See the module documentation for the order of the steps.
pub fn apply(
    paths: &Paths,
    image: &Path,
    sha256: Option<&str>,
    mount: impl FnOnce(&Path) -> anyhow::Result<Mounted>,
) -> anyhow::Result<Applied> {
    let cmdline = fs::read_to_string(&paths.cmdline)
        .with_context(|| format!("reading {}", paths.cmdline.display()))?;
    let running = running_slot(&cmdline)?;
    let target = running.other();
    let verified = verify(image, sha256, &paths.keys)?;
    let part = find_partition(paths, target)?;
    if verified.size > part.size {
        bail!(
            "{} ({} bytes) does not fit {} ({} bytes)",
            image.display(),
            verified.size,
            part.dev.display(),
            part.size
        );
    }
    let entries_dir = paths.esp.join("loader/entries");
    fs::read_dir(&entries_dir)
        .with_context(|| format!("reading the ESP's entries in {}", entries_dir.display()))?;
    let firmware = Firmware::detect(paths);
    let has_grub = grub::present(&paths.esp);
    if firmware == Firmware::Bios && !has_grub {
        bail!(
            "booted by legacy BIOS, but the ESP ({}) has no grub/grub.cfg",
            paths.esp.display()
        );
    }
    tracing::info!(running = running.name(), target = target.name(), partition = %part.dev.display(), firmware = firmware.name(), "writing the other slot");
    // From here on nothing boots the target slot, under either boot loader: no systemd-boot
    // entry, GRUB's environment does not choose it and it has no grub.cfg.
    entries::remove_slot(&entries_dir, target)?;
    if firmware == Firmware::Bios {
        grub::forget_slot(&paths.esp, running, target)?;
    }
    if has_grub {
        grub::remove_slot_cfg(&paths.esp, target)?;
    }
    disk::write_and_check(image, &part.dev, verified.size, &verified.sha256).with_context(
        || {
            format!(
                "writing slot {} (it has no boot entry; the box keeps booting slot {})",
                target.name(),
                running.name()
            )
        },
    )?;
    let mounted = mount(&part.dev)?;
    let release_file = mounted.root().join("usr/lib/voxgate/image-release");
    let release = parse_release(
        &fs::read_to_string(&release_file)
            .with_context(|| format!("reading the image's {}", release_file.display()))?,
    )?;
    let running_release = fs::read_to_string(&paths.release)
        .ok()
        .and_then(|t| parse_release(&t).ok());
    if let Some(r) = running_release {
        if r.board != release.board {
            bail!(
                "the image is for board {}, this box is {}",
                release.board,
                r.board
            );
        }
    }
    let (kernel, initrd) = entries::boot_files(&mounted.root().join("boot"))?;
    let dir = paths.esp.join("voxgate").join(target.name());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    entries::copy_atomic(&kernel, &dir.join("vmlinuz"))?;
    entries::copy_atomic(&initrd, &dir.join("initrd.img"))?;
    drop(mounted);
    let mut generation = next_generation(&entries_dir)?;
    if has_grub {
        let newest = [Slot::A, Slot::B]
            .into_iter()
            .filter_map(|s| grub::read_slot_cfg(&grub::slot_cfg(&paths.esp, s)))
            .map(|(_, g)| g)
            .max()
            .unwrap_or(0);
        generation = generation.max(newest + 1);
        let cfg = grub::render_slot_cfg(target, &release, generation, &part.partuuid);
        entries::write_atomic(&grub::slot_cfg(&paths.esp, target), cfg.as_bytes())?;
    }
    // Last: the write that makes the boot loader try the new slot.
    let name = match firmware {
        Firmware::Uefi => {
            let name = format!("voxgate-{}+{TRIES}.conf", target.name());
            let text = render_entry(target, &release, generation, &part.partuuid);
            entries::write_atomic(&entries_dir.join(&name), text.as_bytes())?;
            name
        }
        Firmware::Bios => {
            grub::start_trial(&paths.esp, target, TRIES)?;
            format!(
                "grub/grubenv {}={} {}={TRIES}",
                grub::TRIAL,
                target.name(),
                grub::TRIES_LEFT
            )
        }
    };
    Ok(Applied {
        running,
        target,
        version: release.version,
        generation,
        entry: name,
    })
}

/// After a good boot (`voxgate-bless-grub.service`, after boot-complete.target): under legacy
/// BIOS, makes the running slot GRUB's default when this boot was its trial. Under UEFI
/// nothing: systemd-bless-boot renames the systemd-boot entry.
pub fn bless(paths: &Paths) -> anyhow::Result<Blessed> {
    if Firmware::detect(paths) == Firmware::Uefi {
        return Ok(Blessed::NotGrub);
    }
    let cmdline = fs::read_to_string(&paths.cmdline)
        .with_context(|| format!("reading {}", paths.cmdline.display()))?;
    let running = running_slot(&cmdline)?;
    grub::bless(&paths.esp, running)
}

#[cfg(test)]
mod tests;
