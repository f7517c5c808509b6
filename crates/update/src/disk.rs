//! Finding the target slot's partition (the partition labelled `voxgate-root-<slot>` on the
//! disk the running root is on), writing the image to it and reading it back.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::{Paths, Slot};

/// A root slot's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its device node.
    pub dev: PathBuf,
    /// Its GPT unique id (what the boot entry's `root=PARTUUID=` names).
    pub partuuid: String,
    /// Its size in bytes.
    pub size: u64,
}

/// `major:minor` of the device mounted at `/` (mountinfo field 3).
fn root_device(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&"/")).then(|| f.get(2).map(|s| s.to_string()))?
    })
}

fn uevent(dir: &Path) -> Vec<(String, String)> {
    fs::read_to_string(dir.join("uevent"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The partition of slot `target` (see the module documentation); never the running root.
pub fn find_partition(paths: &Paths, target: Slot) -> anyhow::Result<Partition> {
    let mountinfo = fs::read_to_string(&paths.mountinfo)
        .with_context(|| format!("reading {}", paths.mountinfo.display()))?;
    let root = root_device(&mountinfo).context("no filesystem mounted at / in mountinfo")?;
    // /sys/dev/block/M:m -> .../block/<disk>/<part>: the disk is the parent directory.
    let part_dir = fs::canonicalize(paths.sys_dev_block.join(&root))
        .with_context(|| format!("finding the root device {root} in sysfs"))?;
    let disk_dir = part_dir
        .parent()
        .context("the root device has no parent disk")?;
    let label = format!("voxgate-root-{}", target.name());
    for e in fs::read_dir(disk_dir)
        .with_context(|| format!("reading {}", disk_dir.display()))?
        .flatten()
    {
        let dir = e.path();
        if !dir.join("partition").exists() {
            continue;
        }
        let ev = uevent(&dir);
        let get = |k: &str| ev.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
        if get("PARTNAME").as_deref() != Some(label.as_str()) {
            continue;
        }
        let devname = get("DEVNAME").context("partition without DEVNAME")?;
        let number = fs::read_to_string(dir.join("dev")).unwrap_or_default();
        if number.trim() == root {
            bail!("refusing to write the running root ({devname})");
        }
        let sectors: u64 = fs::read_to_string(dir.join("size"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .context("partition without a size")?;
        let partuuid = partuuid_of(&paths.by_partuuid, &devname).with_context(|| {
            format!(
                "no PARTUUID for {devname} in {}",
                paths.by_partuuid.display()
            )
        })?;
        return Ok(Partition {
            dev: paths.dev.join(&devname),
            partuuid,
            size: sectors * 512,
        });
    }
    bail!("no partition {label} on {}", disk_dir.display())
}

/// The name of the link in `by_partuuid` that points at `devname`.
fn partuuid_of(by_partuuid: &Path, devname: &str) -> Option<String> {
    fs::read_dir(by_partuuid).ok()?.flatten().find_map(|e| {
        let target = fs::read_link(e.path()).ok()?;
        (target.file_name()? == devname).then(|| e.file_name().to_string_lossy().into_owned())
    })
}

/// Writes `image` to `dev`, syncs, reads `size` bytes back and compares their SHA-256.
pub(crate) fn write_and_check(
    image: &Path,
    dev: &Path,
    size: u64,
    sha256: &str,
) -> anyhow::Result<()> {
    let mut src = fs::File::open(image).with_context(|| format!("opening {}", image.display()))?;
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {} for writing", dev.display()))?;
    let mut buf = vec![0u8; 4 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])
            .with_context(|| format!("writing {}", dev.display()))?;
    }
    dst.sync_all()
        .with_context(|| format!("syncing {}", dev.display()))?;
    drop(dst);
    let (digest, n) = crate::verify::sha256_file(dev, Some(size))?;
    let got: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if n != size || got != sha256 {
        bail!("read-back mismatch on {}: {got}", dev.display());
    }
    Ok(())
}
