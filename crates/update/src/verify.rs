//! Checking an image before anything is written: its SHA-256 against the one given (or in
//! `IMAGE.sha256` beside it), the squashfs magic, and, when the box has update keys, an
//! ed25519 signature (`IMAGE.sig`, hex) over the SHA-256 digest by one of them.

use std::fs;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context as _};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// A checked image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Whether a signature was checked (the box has keys).
    pub signed: bool,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    (0..t.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(t.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The SHA-256 of a file, and its size.
pub(crate) fn sha256_file(path: &Path, limit: Option<u64>) -> anyhow::Result<([u8; 32], u64)> {
    let f = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r: Box<dyn Read> = match limit {
        Some(n) => Box::new(f.take(n)),
        None => Box::new(f),
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h.finalize().into(), n))
}

/// Checks `image` (see the module documentation); `keys` is the directory of `*.pub` files
/// (hex ed25519 public keys).
pub fn verify(image: &Path, sha256: Option<&str>, keys: &Path) -> anyhow::Result<Verified> {
    let expected = match sha256 {
        Some(s) => s.trim().to_ascii_lowercase(),
        None => {
            let side = image.with_file_name(format!(
                "{}.sha256",
                image.file_name().unwrap_or_default().to_string_lossy()
            ));
            let text = fs::read_to_string(&side).with_context(|| {
                format!(
                    "no checksum: give --sha256 or put {} beside the image",
                    side.display()
                )
            })?;
            text.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        }
    };
    if expected.len() != 64 || unhex(&expected).is_none() {
        bail!("not a SHA-256: {expected:?}");
    }
    let mut magic = [0u8; 4];
    fs::File::open(image)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("reading {}", image.display()))?;
    if &magic != b"hsqs" {
        bail!("{} is not a squashfs image", image.display());
    }
    let (digest, size) = sha256_file(image, None)?;
    if hex(&digest) != expected {
        bail!(
            "checksum mismatch: {} is {}, expected {expected}",
            image.display(),
            hex(&digest)
        );
    }
    let trusted = trusted_keys(keys)?;
    let signed = !trusted.is_empty();
    if signed {
        let sig_path = image.with_file_name(format!(
            "{}.sig",
            image.file_name().unwrap_or_default().to_string_lossy()
        ));
        let text = fs::read_to_string(&sig_path).with_context(|| {
            format!(
                "this box takes signed updates only, and {} is missing",
                sig_path.display()
            )
        })?;
        let bytes = unhex(&text)
            .filter(|b| b.len() == 64)
            .with_context(|| format!("{} is not a hex ed25519 signature", sig_path.display()))?;
        let sig = Signature::from_slice(&bytes)?;
        if !trusted.iter().any(|k| k.verify(&digest, &sig).is_ok()) {
            bail!(
                "{} is not signed by any key in {}",
                image.display(),
                keys.display()
            );
        }
    }
    Ok(Verified {
        sha256: expected,
        size,
        signed,
    })
}

fn trusted_keys(dir: &Path) -> anyhow::Result<Vec<VerifyingKey>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "pub") {
            let text =
                fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let bytes: [u8; 32] = unhex(&text)
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{} is not a hex ed25519 public key", p.display()))?;
            keys.push(
                VerifyingKey::from_bytes(&bytes)
                    .with_context(|| format!("{} is not a valid key", p.display()))?,
            );
        }
    }
    Ok(keys)
}

/// Signs `image` with the ed25519 secret key in `key` (hex, 32 bytes): writes `IMAGE.sig`
/// and returns the public key (hex) that verifies it, for the release process.
pub fn sign(image: &Path, key: &Path) -> anyhow::Result<String> {
    let text = fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?;
    let secret: [u8; 32] = unhex(&text)
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("{} is not a hex ed25519 secret key", key.display()))?;
    let sk = SigningKey::from_bytes(&secret);
    let (digest, _) = sha256_file(image, None)?;
    let sig = sk.sign(&digest);
    let out = image.with_file_name(format!(
        "{}.sig",
        image.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::write(&out, hex(&sig.to_bytes()) + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(hex(sk.verifying_key().as_bytes()))
}
