//! Applying the table with `nft`: validate first (`nft -c`), then one atomic transaction
//! (`nft -f`). If anything fails, the kernel keeps the previous ruleset untouched.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::ir::TABLE;

fn nft(args: &[&str], stdin: &str) -> Result<String> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (is the nftables package installed?)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(stdin.as_bytes())
        .context("writing the ruleset to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!("nft {} failed: {}", args.join(" "), err.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Checks a ruleset file with `nft -c` (parsed and checked by the kernel, nothing changed).
pub fn check(text: &str) -> Result<()> {
    nft(&["-c", "-f", "-"], text).map(drop)
}

/// Validates, then applies `text` in one transaction. On error nothing has changed.
pub fn apply(text: &str) -> Result<()> {
    check(text).context("the new ruleset does not validate; the running one is untouched")?;
    nft(&["-f", "-"], text).context("applying the ruleset failed; the running one is untouched")?;
    Ok(())
}

/// Removes voxgate's table (used when the firewall is turned off, or to roll back to "none").
pub fn remove() -> Result<()> {
    nft(
        &["-f", "-"],
        &format!("table inet {TABLE}\ndelete table inet {TABLE}\n"),
    )
    .map(drop)
}

/// The table as the kernel has it now, or `None` when there is none.
pub fn current() -> Result<Option<String>> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .output()
        .context("running nft")?;
    if out.status.success() {
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such file or directory") {
            Ok(None)
        } else {
            bail!("nft list table inet {TABLE} failed: {}", err.trim())
        }
    }
}
