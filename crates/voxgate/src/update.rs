//! `voxgate update`: install a new root image into the other A/B slot, show the slots, sign
//! an image (for the release process). The work is in the `update` crate.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::Subcommand;

/// `voxgate update ...`.
#[derive(Subcommand)]
pub enum UpdateCommand {
    /// Write IMAGE (a root squashfs) into the slot not running, and boot it next with three
    /// tries; the box keeps it once voxgate answers, otherwise returns to this slot.
    Apply {
        /// The root image (`root.squashfs` of `make image`).
        image: PathBuf,
        /// Its SHA-256 (default: the first field of IMAGE.sha256).
        #[arg(long)]
        sha256: Option<String>,
        /// Reboot into it when written.
        #[arg(long)]
        reboot: bool,
    },
    /// The running slot and the slots' boot entries with their tries.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark the running slot good after a healthy boot under legacy BIOS (GRUB's environment;
    /// run by voxgate-bless-grub.service after boot-complete.target). Under UEFI
    /// systemd-bless-boot does it and this does nothing.
    Bless,
    /// Sign IMAGE with an ed25519 secret key (hex) for boxes with update keys: writes
    /// IMAGE.sig and prints the public key to install in /usr/share/voxgate/update-keys/.
    Sign {
        /// The root image.
        image: PathBuf,
        /// The secret key file (64 hex digits).
        #[arg(long)]
        key: PathBuf,
    },
}

/// Runs an update command.
pub fn run(cmd: UpdateCommand) -> anyhow::Result<ExitCode> {
    let paths = update::Paths::system();
    match cmd {
        UpdateCommand::Apply {
            image,
            sha256,
            reboot,
        } => {
            if !update::is_root() {
                bail!("run as root: it writes a root slot and the boot entries");
            }
            let done = update::apply(&paths, &image, sha256.as_deref(), |dev| {
                update::Mounted::squashfs(dev)
            })?;
            println!(
                "slot {} now holds {} (boot entry {}, generation {}, {} tries); slot {} stays as it is",
                done.target.name(),
                done.version,
                done.entry,
                done.generation,
                update::TRIES,
                done.running.name()
            );
            println!(
                "next boot starts slot {}; it is kept once voxgate answers, otherwise the box returns to slot {} by itself",
                done.target.name(),
                done.running.name()
            );
            if reboot {
                let st = std::process::Command::new("systemctl")
                    .arg("reboot")
                    .status()
                    .context("running systemctl reboot")?;
                if !st.success() {
                    bail!("systemctl reboot failed");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Status { json } => {
            let cmdline = std::fs::read_to_string(&paths.cmdline)?;
            let running = update::running_slot(&cmdline)?;
            let st = update::status(&paths, running)?;
            if json {
                let entries: Vec<serde_json::Value> = st
                    .entries
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "file": e.file,
                            "slot": e.slot.name(),
                            "generation": e.generation,
                            "title": e.title,
                            "tries_left": e.tries_left,
                            "tries_done": e.tries_done,
                        })
                    })
                    .collect();
                let v = serde_json::json!({
                    "running": running.name(),
                    "firmware": st.firmware.name(),
                    "entries": entries,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let loader = match st.firmware {
                    update::Firmware::Uefi => "UEFI, systemd-boot",
                    update::Firmware::Bios => "legacy BIOS, GRUB",
                };
                println!("running slot {} ({loader})", running.name());
                for e in &st.entries {
                    let state = match e.tries_left {
                        None => "good".to_string(),
                        Some(0) => format!("failed ({} tries used)", e.tries_done),
                        Some(n) => format!("on trial: {n} tries left, {} used", e.tries_done),
                    };
                    println!(
                        "  slot {}  generation {:<4} {:<40} {state}",
                        e.slot.name(),
                        e.generation,
                        e.title
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Bless => {
            if !update::is_root() {
                bail!("run as root: it writes GRUB's environment on the ESP");
            }
            match update::bless(&paths)? {
                update::Blessed::Now(slot) => {
                    println!("slot {} is good: GRUB boots it by default", slot.name())
                }
                update::Blessed::Already(slot) => {
                    println!("slot {}: nothing to bless (not on trial)", slot.name())
                }
                update::Blessed::NotGrub => {
                    println!("booted by UEFI: systemd-bless-boot blesses the boot entry")
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Sign { image, key } => {
            let public = update::sign(&image, &key)?;
            println!("{public}");
            Ok(ExitCode::SUCCESS)
        }
    }
}
