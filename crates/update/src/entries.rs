//! The slots' systemd-boot entries on the ESP: `voxgate-<slot>[+left[-done]].conf` (boot
//! counting, systemd-boot's "Boot Counting"), the newest `version` first. Every file is written
//! aside, synced and renamed, and the directory synced, so a power cut leaves the old or the
//! new file, never half of one.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::{Firmware, Paths, Release, Slot};

/// One boot entry of a slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File name.
    pub file: String,
    /// Its slot.
    pub slot: Slot,
    /// Its generation (`version`).
    pub generation: u64,
    /// Boot tries left, when still being tried (`+N`); `None` once blessed.
    pub tries_left: Option<u32>,
    /// Tries used (`-M`).
    pub tries_done: u32,
    /// Its title (the image version).
    pub title: String,
}

/// The slots as `voxgate update status` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The slot running now.
    pub running: Slot,
    /// How this boot was started, so which boot counting is in charge.
    pub firmware: Firmware,
    /// Every voxgate entry, newest generation first: systemd-boot's entries under UEFI, the
    /// slots' grub.cfg with the GRUB environment's state under legacy BIOS.
    pub entries: Vec<Entry>,
}

fn parse_name(file: &str) -> Option<(Slot, Option<u32>, u32)> {
    let stem = file.strip_prefix("voxgate-")?.strip_suffix(".conf")?;
    let (slot, count) = match stem.split_once('+') {
        Some((s, c)) => (s, Some(c)),
        None => (stem, None),
    };
    let slot = match slot {
        "a" => Slot::A,
        "b" => Slot::B,
        _ => return None,
    };
    let (left, done) = match count {
        None => (None, 0),
        Some(c) => match c.split_once('-') {
            Some((l, d)) => (Some(l.parse().ok()?), d.parse().ok()?),
            None => (Some(c.parse().ok()?), 0),
        },
    };
    Some((slot, left, done))
}

/// Every voxgate entry in `dir`.
pub fn list(dir: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
    {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some((slot, tries_left, tries_done)) = parse_name(&file) else {
            continue;
        };
        let text = fs::read_to_string(e.path()).unwrap_or_default();
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
        };
        out.push(Entry {
            file,
            slot,
            generation: field("version ").and_then(|v| v.parse().ok()).unwrap_or(0),
            tries_left,
            tries_done,
            title: field("title ").unwrap_or_default(),
        });
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.generation));
    Ok(out)
}

/// One more than the largest generation of any voxgate entry in `dir`.
pub fn next_generation(dir: &Path) -> anyhow::Result<u64> {
    Ok(list(dir)?.iter().map(|e| e.generation).max().unwrap_or(0) + 1)
}

/// The running slot and its boot loader's entries.
pub fn status(paths: &Paths, running: Slot) -> anyhow::Result<Status> {
    let firmware = Firmware::detect(paths);
    let entries = match firmware {
        Firmware::Uefi => list(&paths.esp.join("loader/entries"))?,
        Firmware::Bios => crate::grub::list(&paths.esp, crate::TRIES)?,
    };
    Ok(Status {
        running,
        firmware,
        entries,
    })
}

/// The kernel command line of `slot` holding `release`, its root `root=PARTUUID=partuuid` (the
/// same for systemd-boot and GRUB).
pub fn kernel_options(slot: Slot, release: &Release, partuuid: &str) -> String {
    format!(
        "root=PARTUUID={partuuid} rootfstype=squashfs ro voxgate.slot={} panic=10 quiet {}",
        slot.name(),
        release.cmdline
    )
}

/// The entry of `slot` holding `release` at `generation`, booting `root=PARTUUID=partuuid`.
pub fn render_entry(slot: Slot, release: &Release, generation: u64, partuuid: &str) -> String {
    let s = slot.name();
    format!(
        "title      voxgate {} (slot {s})\nsort-key   voxgate\nversion    {generation}\nlinux      /voxgate/{s}/vmlinuz\ninitrd     /voxgate/{s}/initrd.img\noptions    {}\n",
        release.version,
        kernel_options(slot, release, partuuid)
    )
}

/// Removes every entry of `slot`, so that nothing boots it while it is written.
pub(crate) fn remove_slot(dir: &Path, slot: Slot) -> anyhow::Result<()> {
    for e in list(dir)?.into_iter().filter(|e| e.slot == slot) {
        let p = dir.join(&e.file);
        fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

fn aside(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

/// Writes `bytes` to `path` atomically (aside, sync, rename, sync the directory).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = aside(path);
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Copies `from` to `to` atomically.
pub(crate) fn copy_atomic(from: &Path, to: &Path) -> anyhow::Result<()> {
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_atomic(to, &bytes)
}

/// The newest `vmlinuz-*` and `initrd.img-*` in a slot's `/boot`.
pub(crate) fn boot_files(boot: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let newest = |prefix: &str| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(boot)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        v.sort();
        v.pop()
    };
    match (newest("vmlinuz-"), newest("initrd.img-")) {
        (Some(k), Some(i)) => Ok((k, i)),
        _ => anyhow::bail!("no kernel or initrd in the image's {}", boot.display()),
    }
}
