//! Legacy BIOS boot (GRUB, rootfs/IMAGE.md "Boot, A/B and boot counting (legacy BIOS)"): the
//! GRUB environment block on the ESP (`/grub/grubenv`) that `/grub/grub.cfg` reads and counts
//! tries in, and the slots' `/voxgate/<slot>/grub.cfg` that it sources to boot a slot.
//!
//! The environment holds `voxgate_default` (the blessed slot), `voxgate_trial` (a slot on
//! trial, or empty) and `voxgate_tries` (the trial's tries left). GRUB decrements the tries with
//! `save_env` before each boot of the trial slot and boots the default once none are left.
//!
//! Written here rather than with `grub-editenv`: the image carries no GRUB tools (GRUB is put
//! on the disk at build time and never updated from the box), and the format is small. The
//! block is always exactly 1024 bytes: `# GRUB Environment Block\n`, `name=value\n` lines
//! (`\` and newline escaped with `\`), `#` up to the end. GRUB's `save_env` rewrites those
//! bytes in place on the disk, so this code does too: same clusters, no FAT metadata changes
//! beyond the time stamp. Our variables take well under 512 bytes, so only the block's first
//! sector ever differs between two versions: a power cut mid-write leaves the old or the new
//! sector (disks write a sector whole), never a mix of variable lines.

use std::fs;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::{entries, Release, Slot};

/// Size of a GRUB environment block.
pub const ENV_SIZE: usize = 1024;
const HEADER: &str = "# GRUB Environment Block\n";

/// The blessed slot.
pub const DEFAULT: &str = "voxgate_default";
/// The slot on trial.
pub const TRIAL: &str = "voxgate_trial";
/// The trial's tries left.
pub const TRIES_LEFT: &str = "voxgate_tries";

/// A GRUB environment block's variables, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrubEnv {
    vars: Vec<(String, String)>,
}

impl GrubEnv {
    /// Parses a block; refuses anything GRUB would not load (wrong size or header).
    pub fn parse(bytes: &[u8]) -> anyhow::Result<GrubEnv> {
        if bytes.len() != ENV_SIZE {
            bail!(
                "not a GRUB environment block: {} bytes instead of {ENV_SIZE}",
                bytes.len()
            );
        }
        let text = std::str::from_utf8(bytes).context("GRUB environment block is not text")?;
        let Some(body) = text.strip_prefix(HEADER) else {
            bail!(
                "not a GRUB environment block: no '{}' header",
                HEADER.trim()
            );
        };
        let mut vars = Vec::new();
        let mut chars = body.chars();
        let mut line = String::new();
        // Lines end at an unescaped newline; `\x` stands for x.
        loop {
            match chars.next() {
                Some('\\') => line.push(
                    chars
                        .next()
                        .context("GRUB environment block ends in '\\'")?,
                ),
                Some('\n') | None => {
                    if !line.starts_with('#') && !line.is_empty() {
                        match line.split_once('=') {
                            Some((k, v)) => vars.push((k.to_string(), v.to_string())),
                            None => {
                                bail!("GRUB environment block has a line without '=': {line:?}")
                            }
                        }
                    }
                    line.clear();
                    if chars.as_str().is_empty() {
                        break;
                    }
                }
                Some(c) => line.push(c),
            }
        }
        Ok(GrubEnv { vars })
    }

    /// The block: header, variables, `#` padding to [`ENV_SIZE`] bytes.
    pub fn render(&self) -> anyhow::Result<Vec<u8>> {
        let mut out = String::from(HEADER);
        for (k, v) in &self.vars {
            out.push_str(k);
            out.push('=');
            for c in v.chars() {
                if c == '\\' || c == '\n' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('\n');
        }
        if out.len() > ENV_SIZE {
            bail!("GRUB environment too large ({} bytes)", out.len());
        }
        let mut bytes = out.into_bytes();
        bytes.resize(ENV_SIZE, b'#');
        Ok(bytes)
    }

    /// A variable's value (empty counts as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Sets a variable (keeps its place if it exists).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.vars.push((name.to_string(), value.to_string())),
        }
    }

    fn slot(&self, name: &str) -> Option<Slot> {
        match self.get(name)? {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }

    /// The blessed slot.
    pub fn default_slot(&self) -> Option<Slot> {
        self.slot(DEFAULT)
    }

    /// The slot on trial and its tries left (an unreadable count is 0: no more tries).
    pub fn trial(&self) -> Option<(Slot, u32)> {
        let tries = self
            .get(TRIES_LEFT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        self.slot(TRIAL).map(|s| (s, tries))
    }
}

/// `/grub/grubenv` on the ESP.
pub fn env_path(esp: &Path) -> PathBuf {
    esp.join("grub/grubenv")
}

/// Whether the ESP has the GRUB configuration (every image since legacy BIOS boot exists).
pub fn present(esp: &Path) -> bool {
    esp.join("grub/grub.cfg").is_file()
}

/// Reads the environment block at `path`.
pub fn read_env(path: &Path) -> anyhow::Result<GrubEnv> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    GrubEnv::parse(&bytes).with_context(|| format!("reading {}", path.display()))
}

/// Writes the environment block at `path` in place as GRUB does, synced; a missing or damaged
/// file (not [`ENV_SIZE`] bytes) is replaced whole instead (aside, sync, rename).
pub fn write_env(path: &Path, env: &GrubEnv) -> anyhow::Result<()> {
    let bytes = env.render()?;
    match fs::metadata(path) {
        Ok(m) if m.len() == ENV_SIZE as u64 => {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            f.write_all_at(&bytes, 0)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))
        }
        _ => entries::write_atomic(path, &bytes),
    }
}

/// Reads the environment, or when it is unreadable starts from an empty one (logged): the
/// caller writes a whole new block.
fn read_or_new(path: &Path) -> GrubEnv {
    read_env(path).unwrap_or_else(|e| {
        tracing::warn!("{e:#}; writing a new GRUB environment");
        GrubEnv::default()
    })
}

/// Before `target` is written: GRUB must not choose it any more. A trial of it ends; if it was
/// the default, `running` is (it booted, and it is the only other slot).
pub(crate) fn forget_slot(esp: &Path, running: Slot, target: Slot) -> anyhow::Result<()> {
    let path = env_path(esp);
    let mut env = read_or_new(&path);
    if env.trial().is_some_and(|(s, _)| s == target) {
        env.set(TRIAL, "");
        env.set(TRIES_LEFT, "");
    }
    if env.default_slot().is_none_or(|s| s == target) {
        env.set(DEFAULT, running.name());
    }
    write_env(&path, &env)
}

/// After `target` was written and its grub.cfg is in place: boot it next, `tries` times.
pub(crate) fn start_trial(esp: &Path, target: Slot, tries: u32) -> anyhow::Result<()> {
    let path = env_path(esp);
    let mut env = read_env(&path)?;
    env.set(TRIAL, target.name());
    env.set(TRIES_LEFT, &tries.to_string());
    write_env(&path, &env)
}

/// What [`bless`](crate::bless) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blessed {
    /// The running slot was on trial (or nothing was the default) and is now the default.
    Now(Slot),
    /// The running slot was already the default, or was started by hand (no counting).
    Already(Slot),
    /// Booted by UEFI: systemd-bless-boot blesses the systemd-boot entry.
    NotGrub,
}

/// Marks the running slot good in the environment when this boot was its trial, or when no
/// slot is the default yet (a new box) or the environment is unreadable.
pub(crate) fn bless(esp: &Path, running: Slot) -> anyhow::Result<Blessed> {
    let path = env_path(esp);
    let mut env = read_or_new(&path);
    let on_trial = env.trial().is_some_and(|(s, _)| s == running);
    if !on_trial && env.default_slot().is_some() {
        return Ok(Blessed::Already(running));
    }
    env.set(DEFAULT, running.name());
    if on_trial {
        env.set(TRIAL, "");
        env.set(TRIES_LEFT, "");
    }
    write_env(&path, &env)?;
    Ok(Blessed::Now(running))
}

/// `/voxgate/<slot>/grub.cfg` on the ESP.
pub fn slot_cfg(esp: &Path, slot: Slot) -> PathBuf {
    esp.join("voxgate").join(slot.name()).join("grub.cfg")
}

/// Quotes `s` for a GRUB double-quoted string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The grub.cfg that boots `slot` holding `release` (what /grub/grub.cfg sources).
pub fn render_slot_cfg(slot: Slot, release: &Release, generation: u64, partuuid: &str) -> String {
    let s = slot.name();
    format!(
        "# voxgate slot {s}, sourced by /grub/grub.cfg (legacy BIOS boot); written by voxgate update apply.\nset voxgate_title={}\nset voxgate_generation={generation}\nlinux /voxgate/{s}/vmlinuz {}\ninitrd /voxgate/{s}/initrd.img\n",
        quote(&format!("voxgate {} (slot {s})", release.version)),
        entries::kernel_options(slot, release, partuuid)
    )
}

/// Title and generation of a slot's grub.cfg.
pub(crate) fn read_slot_cfg(path: &Path) -> Option<(String, u64)> {
    let text = fs::read_to_string(path).ok()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
    };
    let title = field("set voxgate_title=")
        .map(|t| t.trim_matches('"').replace('\\', ""))
        .unwrap_or_default();
    let generation = field("set voxgate_generation=")
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    Some((title, generation))
}

/// The slots GRUB can boot, as entries for `voxgate update status`: the trial slot with its
/// tries, the others as good (the default, and the slot that was good before it: GRUB boots it
/// when the default cannot).
pub(crate) fn list(esp: &Path, tries: u32) -> anyhow::Result<Vec<entries::Entry>> {
    let env = read_env(&env_path(esp))?;
    let mut out = Vec::new();
    for slot in [Slot::A, Slot::B] {
        let cfg = slot_cfg(esp, slot);
        let Some((title, generation)) = read_slot_cfg(&cfg) else {
            continue;
        };
        let (tries_left, tries_done) = match env.trial() {
            Some((s, left)) if s == slot => (Some(left), tries.saturating_sub(left)),
            _ => (None, 0),
        };
        out.push(entries::Entry {
            file: format!("voxgate/{}/grub.cfg", slot.name()),
            slot,
            generation,
            tries_left,
            tries_done,
            title,
        });
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.generation));
    Ok(out)
}

/// Removes a slot's grub.cfg (before the slot is written).
pub(crate) fn remove_slot_cfg(esp: &Path, slot: Slot) -> anyhow::Result<()> {
    let p = slot_cfg(esp, slot);
    match fs::remove_file(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
    }
    fs::File::open(p.parent().unwrap_or(esp))
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing the directory of {}", p.display()))
}
