//! `voxgate rules …` and `voxgate allowlist …`: the generated firewall for review, comparison
//! and application.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use control::{ClientError, Reply, Request};
use firewall::report::{self, Format};

use crate::cli::{ask, report};

/// Report formats on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    /// Aligned plain text.
    Text,
    /// Markdown, for a change ticket.
    Markdown,
    /// A standalone HTML page.
    Html,
}

/// `voxgate rules …`.
#[derive(Subcommand)]
pub enum RulesCommand {
    /// Print the generated ruleset in nft syntax.
    Show {
        /// Configuration file (`@lab`: the built-in lab config).
        #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
        config: String,
    },
    /// Print the generated ruleset in nftables JSON.
    Json {
        /// Configuration file.
        #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
        config: String,
    },
    /// Every permitted flow, for review.
    Explain {
        /// Configuration file.
        #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
        config: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Flows and networks added and removed between two configurations (or, with --profiles,
    /// two provider profiles under the current configuration).
    Diff {
        /// The old configuration (or profile).
        old: PathBuf,
        /// The new configuration (or profile).
        new: PathBuf,
        /// OLD and NEW are provider profile files.
        #[arg(long)]
        profiles: bool,
        /// The configuration the profiles are compared under.
        #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
        config: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate and apply the ruleset atomically (through the daemon when it runs).
    Apply {
        /// Configuration file, when no daemon runs.
        #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
        config: String,
        /// Restore the previous ruleset unless `voxgate rules confirm` runs within SECONDS.
        #[arg(long, value_name = "SECONDS")]
        confirm: Option<u64>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep a ruleset applied with --confirm.
    Confirm {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `voxgate allowlist …`.
#[derive(Subcommand)]
pub enum AllowlistCommand {
    /// Show what an updated provider profile changes, then install it and apply on confirmation.
    Import {
        /// The updated profile file.
        file: PathBuf,
        /// Configuration file.
        #[arg(long, short, default_value = config::DEFAULT_CONFIG_PATH)]
        config: String,
        /// Where site profiles live (searched before the shipped ones).
        #[arg(long, default_value = config::profile::PROFILE_DIRS[0])]
        providers_dir: PathBuf,
        /// Do not ask; install and apply.
        #[arg(long)]
        yes: bool,
    },
}

fn load(reference: &str) -> anyhow::Result<config::Loaded> {
    config::load_ref(reference).map_err(|e| anyhow::anyhow!("{e}"))
}

fn title(l: &config::Loaded) -> String {
    format!(
        "voxgate firewall — site {} — {} (profile {} revision {}) — config digest {}",
        l.config.site.name,
        l.profile.title,
        l.profile.name,
        l.profile.revision,
        &l.digest[..12]
    )
}

/// Runs a `rules` subcommand.
pub fn run(socket: &Path, cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Show { config } => {
            print!("{}", firewall::generate(&load(&config)?).table.to_nft())
        }
        RulesCommand::Json { config } => {
            let json = firewall::generate(&load(&config)?).table.to_json()?;
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        RulesCommand::Explain { config, format } => {
            let l = load(&config)?;
            let f = match format {
                ReportFormat::Text => Format::Text,
                ReportFormat::Markdown => Format::Markdown,
                ReportFormat::Html => Format::Html,
            };
            print!(
                "{}",
                report::explain(&firewall::generate(&l), &title(&l), f)
            );
        }
        RulesCommand::Diff {
            old,
            new,
            profiles,
            config,
            json,
        } => {
            let (a, b) = if profiles {
                let dirs = config::standard_dirs();
                let with = |p: &Path| {
                    config::load_with_profile_file(&config, &dirs, p)
                        .map_err(|e| anyhow::anyhow!("{e}"))
                };
                (with(&old)?, with(&new)?)
            } else {
                (load(&old.to_string_lossy())?, load(&new.to_string_lossy())?)
            };
            let d = report::diff(&firewall::generate(&a), &firewall::generate(&b));
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                print!("{}", report::diff_text(&d));
            }
        }
        RulesCommand::Apply {
            config,
            confirm,
            json,
        } => {
            return match ask(
                socket,
                Request::RulesApply {
                    confirm_secs: confirm,
                },
            ) {
                Err(ClientError::NotRunning(_)) if confirm.is_none() => {
                    // No daemon (e.g. first set-up): apply directly from the file.
                    firewall::apply::apply(&firewall::generate(&load(&config)?).table.to_nft())?;
                    println!("applied (no daemon running; applied from {config})");
                    Ok(ExitCode::SUCCESS)
                }
                Err(ClientError::NotRunning(s)) => {
                    bail!("--confirm needs the running daemon to restore the rules (no daemon answers on {s})")
                }
                r => report(r, json, show_state),
            };
        }
        RulesCommand::Confirm { json } => {
            return report(ask(socket, Request::RulesConfirm), json, show_state)
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_state(r: &Reply) {
    if let Reply::Rules(f) = r {
        println!("firewall {}", f.last_event);
    }
}

/// Runs an `allowlist` subcommand.
pub fn allowlist(socket: &Path, cmd: AllowlistCommand) -> anyhow::Result<ExitCode> {
    let AllowlistCommand::Import {
        file,
        config,
        providers_dir,
        yes,
    } = cmd;
    let mut dirs = vec![providers_dir.clone()];
    dirs.extend(config::standard_dirs());
    let current = config::load_ref_in(&config, &dirs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let updated = config::load_with_profile_file(&config, &dirs, &file)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if updated.profile.name != current.profile.name {
        bail!(
            "{} is profile {:?}, but the configuration uses {:?}",
            file.display(),
            updated.profile.name,
            current.profile.name
        );
    }
    let d = report::diff(&firewall::generate(&current), &firewall::generate(&updated));
    println!(
        "profile {}: revision {} -> {}",
        current.profile.name, current.profile.revision, updated.profile.revision
    );
    print!("{}", report::diff_text(&d));
    if !yes {
        print!("install and apply? type yes: ");
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            println!("not installed");
            return Ok(ExitCode::FAILURE);
        }
    }
    std::fs::create_dir_all(&providers_dir)
        .with_context(|| format!("creating {}", providers_dir.display()))?;
    let target = providers_dir.join(format!("{}.yaml", updated.profile.name));
    let tmp = target.with_extension("yaml.new");
    std::fs::copy(&file, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &target).with_context(|| format!("installing {}", target.display()))?;
    println!("installed {}", target.display());
    match ask(socket, Request::Reload) {
        Ok(_) => println!("the daemon reloaded and applied the new rules"),
        Err(ClientError::NotRunning(_)) => {
            println!("no daemon running: the rules apply when it starts")
        }
        Err(e) => bail!("installed, but the reload failed: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}
