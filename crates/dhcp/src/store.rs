//! The crash-safe lease store: an append-only journal of lease records under the state
//! directory, compacted atomically when it grows.
//!
//! Why a journal rather than an embedded database: a lease is one small record written on a
//! hot path that must be durable before the ACK leaves. Appending length-prefixed, CRC-checked
//! records and calling `fdatasync` costs one write and one flush per batch of replies (the
//! server groups them), needs no dependency, and its behaviour after a crash is simple to state
//! and to test: a power cut can only tear the record being appended, which the next load cuts
//! off. Compaction writes the live records to a temporary file, flushes it, renames it over the
//! journal and flushes the directory, so a crash leaves either the old journal or the new one.
//!
//! Layout: the 8-byte magic `VXGDHCP1`, then records of `[len u32 LE][crc32 u32 LE][payload]`.
//! The last record for an address wins.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use tracing::{error, info, warn};

use crate::engine::{Lease, LeaseState};

const JOURNAL: &str = "leases.journal";
const TEMP: &str = "leases.journal.tmp";
const MAGIC: &[u8; 8] = b"VXGDHCP1";
const FRAME: usize = 8;
/// No valid record is longer (client ids are at most 255 bytes, names are capped).
const MAX_RECORD: usize = 1024;
const VERSION: u8 = 1;

/// What loading found besides the leases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Records read intact.
    pub records: usize,
    /// Damaged or torn records left out.
    pub dropped: usize,
    /// Where the journal was cut off (a torn or damaged tail), if it was.
    pub truncated_at: Option<u64>,
    /// Whether a temporary file of an interrupted compaction was removed.
    pub removed_temp: bool,
    /// Where an unreadable journal was moved to before starting afresh.
    pub set_aside: Option<PathBuf>,
}

/// The open journal.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    file: File,
    len: u64,
    appended: usize,
}

impl Store {
    /// Opens (or creates) the journal in `dir` and loads its leases. Damage never stops the
    /// start: a torn or corrupted tail is cut off, damaged records inside are skipped (and the
    /// journal rewritten), an unreadable journal is set aside; each is logged. Fails only when
    /// the directory or journal cannot be created or written.
    pub fn open(dir: &Path) -> io::Result<(Store, Vec<Lease>, LoadReport)> {
        fs::create_dir_all(dir)?;
        let path = dir.join(JOURNAL);
        let mut report = LoadReport::default();
        match fs::remove_file(dir.join(TEMP)) {
            // The compaction never reached its rename: the journal is whole.
            Ok(()) => {
                report.removed_temp = true;
                info!(dir = %dir.display(), "removed the temporary file of an interrupted compaction");
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let fresh = data.len() < MAGIC.len() && MAGIC.starts_with(&data);
        if !fresh && !data.starts_with(MAGIC) {
            let aside = dir.join(format!("{JOURNAL}.unreadable-{}", std::process::id()));
            fs::rename(&path, &aside)?;
            error!(journal = %path.display(), moved_to = %aside.display(),
                "the lease journal is not one voxgate wrote; starting with no leases");
            report.set_aside = Some(aside);
        }
        if fresh || report.set_aside.is_some() {
            let mut f = File::create(&path)?;
            f.write_all(MAGIC)?;
            f.sync_all()?;
            sync_dir(dir)?;
            let store = Store::reopen(dir, MAGIC.len() as u64)?;
            return Ok((store, Vec::new(), report));
        }

        let mut leases = BTreeMap::new();
        let mut pos = MAGIC.len();
        let mut damaged_inside = false;
        while pos < data.len() {
            if let Some((lease, next)) = record_at(&data, pos) {
                leases.insert(lease.address, lease);
                report.records += 1;
                pos = next;
                continue;
            }
            // Damage: resume at the next intact record (bit rot inside), or cut the tail here
            // (the torn last append of a crash).
            match (pos + 1..data.len()).find(|&p| record_at(&data, p).is_some()) {
                Some(next) => {
                    report.dropped += records_between(&data, pos, next);
                    warn!(journal = %path.display(), offset = pos, skipped_bytes = next - pos,
                        "skipping a damaged record in the lease journal");
                    damaged_inside = true;
                    pos = next;
                }
                None => {
                    let dropped = records_between(&data, pos, data.len());
                    report.dropped += dropped;
                    report.truncated_at = Some(pos as u64);
                    warn!(journal = %path.display(), offset = pos, dropped_records = dropped,
                        dropped_bytes = data.len() - pos,
                        "the lease journal ends in a torn or damaged record; cutting it off");
                    let f = OpenOptions::new().write(true).open(&path)?;
                    f.set_len(pos as u64)?;
                    f.sync_all()?;
                    break;
                }
            }
        }
        let leases: Vec<Lease> = leases.into_values().collect();
        let mut store = Store::reopen(dir, pos as u64)?;
        if damaged_inside {
            store.compact(&leases)?;
        }
        Ok((store, leases, report))
    }

    fn reopen(dir: &Path, len: u64) -> io::Result<Store> {
        Ok(Store {
            dir: dir.to_path_buf(),
            file: OpenOptions::new().append(true).open(dir.join(JOURNAL))?,
            len,
            appended: 0,
        })
    }

    /// The journal's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    /// Appends `records` and flushes them to disk; when this returns `Ok` they survive a
    /// crash. On failure the journal is cut back to what it held before.
    pub fn append(&mut self, records: &[Lease]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            frame(r, &mut buf);
        }
        let written = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // Best effort: a partial record would otherwise sit before the next append.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += buf.len() as u64;
        self.appended += records.len();
        Ok(())
    }

    /// Whether the journal has grown enough (against `live` records) to be worth compacting.
    pub fn should_compact(&self, live: usize) -> bool {
        self.appended > 1024.max(2 * live)
    }

    /// Replaces the journal by one holding just `live`, atomically.
    pub fn compact(&mut self, live: &[Lease]) -> io::Result<()> {
        let temp = self.dir.join(TEMP);
        let mut buf = MAGIC.to_vec();
        for r in live {
            frame(r, &mut buf);
        }
        let mut f = File::create(&temp)?;
        f.write_all(&buf)?;
        f.sync_all()?;
        fs::rename(&temp, self.path())?;
        sync_dir(&self.dir)?;
        *self = Store::reopen(&self.dir, buf.len() as u64)?;
        Ok(())
    }
}

/// Makes a rename or creation in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The intact record at `pos` and where the next one starts.
fn record_at(data: &[u8], pos: usize) -> Option<(Lease, usize)> {
    let end = declared_end(data, pos)?;
    let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().ok()?);
    let payload = &data[pos + FRAME..end];
    (crc32fast::hash(payload) == crc)
        .then(|| decode(payload))
        .flatten()
        .map(|l| (l, end))
}

/// Where the record at `pos` ends by its length field, if that is plausible.
fn declared_end(data: &[u8], pos: usize) -> Option<usize> {
    let len = u32::from_le_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let end = pos + FRAME + len;
    ((1..=MAX_RECORD).contains(&len) && end <= data.len()).then_some(end)
}

/// How many records lie in `data[from..to]` by their length fields (at least one).
fn records_between(data: &[u8], from: usize, to: usize) -> usize {
    let mut n = 0;
    let mut pos = from;
    while pos < to {
        n += 1;
        match declared_end(data, pos) {
            Some(end) if end <= to => pos = end,
            _ => break,
        }
    }
    n.max(1)
}

fn frame(l: &Lease, out: &mut Vec<u8>) {
    let payload = encode(l);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

fn encode(l: &Lease) -> Vec<u8> {
    let mut b = vec![VERSION];
    b.extend_from_slice(&l.address.octets());
    b.push(match l.state {
        LeaseState::Offered => 0,
        LeaseState::Bound => 1,
        LeaseState::Released => 2,
        LeaseState::Declined => 3,
    });
    b.extend_from_slice(&l.expires.to_be_bytes());
    // The parser caps each field at 255 bytes; clipping only guards hand-made leases.
    for field in [
        &l.client_id[..l.client_id.len().min(255)],
        &l.hardware[..l.hardware.len().min(255)],
        clip(l.hostname.as_deref().unwrap_or_default()),
        clip(l.vendor_class.as_deref().unwrap_or_default()),
    ] {
        b.push(field.len() as u8);
        b.extend_from_slice(field);
    }
    b
}

/// The first 255 bytes of `s` or less, ending on a character boundary.
fn clip(s: &str) -> &[u8] {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

fn decode(p: &[u8]) -> Option<Lease> {
    let (&version, rest) = p.split_first()?;
    if version != VERSION || rest.len() < 13 {
        return None;
    }
    let address = Ipv4Addr::new(rest[0], rest[1], rest[2], rest[3]);
    let state = match rest[4] {
        0 => LeaseState::Offered,
        1 => LeaseState::Bound,
        2 => LeaseState::Released,
        3 => LeaseState::Declined,
        _ => return None,
    };
    let expires = u64::from_be_bytes(rest[5..13].try_into().ok()?);
    let mut rest = &rest[13..];
    let mut field = || -> Option<Vec<u8>> {
        let (&n, tail) = rest.split_first()?;
        let v = tail.get(..usize::from(n))?.to_vec();
        rest = &tail[usize::from(n)..];
        Some(v)
    };
    let client_id = field()?;
    let hardware = field()?;
    let text = |v: Vec<u8>| -> Option<Option<String>> {
        if v.is_empty() {
            Some(None)
        } else {
            String::from_utf8(v).ok().map(Some)
        }
    };
    let hostname = text(field()?)?;
    let vendor_class = text(field()?)?;
    if !rest.is_empty() {
        return None;
    }
    Some(Lease {
        address,
        client_id,
        hardware,
        hostname,
        vendor_class,
        state,
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: u8, state: LeaseState) -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 100, 0, n),
            client_id: vec![1, 0, 4, 0xf2, 0, 0, n],
            hardware: vec![0, 4, 0xf2, 0, 0, n],
            hostname: Some(format!("phone-{n}")),
            vendor_class: n.is_multiple_of(2).then(|| "Yealink SIP-T46S".to_string()),
            state,
            expires: 1_700_000_000 + u64::from(n),
        }
    }

    /// A journal of leases 1..=n, one append each; returns the offsets where each record starts.
    fn journal(dir: &Path, n: u8) -> Vec<usize> {
        let (mut s, _, _) = Store::open(dir).unwrap();
        let mut starts = Vec::new();
        for i in 1..=n {
            starts.push(s.len as usize);
            s.append(&[lease(i, LeaseState::Bound)]).unwrap();
        }
        starts
    }

    #[test]
    fn round_trip_and_the_last_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, leases, report) = Store::open(dir.path()).unwrap();
        assert!(leases.is_empty() && report == LoadReport::default());
        s.append(&[lease(1, LeaseState::Bound), lease(2, LeaseState::Bound)])
            .unwrap();
        s.append(&[lease(1, LeaseState::Released)]).unwrap();
        s.append(&[lease(3, LeaseState::Declined)]).unwrap();
        drop(s);
        let (_, leases, report) = Store::open(dir.path()).unwrap();
        assert_eq!(
            leases,
            vec![
                lease(1, LeaseState::Released),
                lease(2, LeaseState::Bound),
                lease(3, LeaseState::Declined)
            ]
        );
        assert_eq!((report.records, report.dropped), (4, 0));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_at_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        let starts = journal(dir.path(), 5);
        let path = dir.path().join(JOURNAL);
        let whole = fs::read(&path).unwrap();
        let last = *starts.last().unwrap();
        for cut in last..whole.len() {
            fs::write(&path, &whole[..cut]).unwrap();
            let (mut s, leases, report) = Store::open(dir.path()).unwrap();
            let want: Vec<Lease> = (1..=4).map(|i| lease(i, LeaseState::Bound)).collect();
            assert_eq!(leases, want, "cut at {cut}");
            let torn = cut > last;
            assert_eq!(
                report.truncated_at,
                torn.then_some(last as u64),
                "cut at {cut}"
            );
            assert_eq!(report.dropped, usize::from(torn), "cut at {cut}");
            assert_eq!(fs::metadata(&path).unwrap().len(), last as u64);
            // The store goes on appending after the cut.
            s.append(&[lease(9, LeaseState::Bound)]).unwrap();
            drop(s);
            let (_, again, report) = Store::open(dir.path()).unwrap();
            assert_eq!(again.len(), 5);
            assert_eq!(report.dropped, 0);
        }
    }

    #[test]
    fn a_corrupted_byte_costs_only_its_record() {
        let dir = tempfile::tempdir().unwrap();
        let starts = journal(dir.path(), 5);
        let path = dir.path().join(JOURNAL);
        let whole = fs::read(&path).unwrap();
        // Every byte of the third record, length and checksum included.
        for at in starts[2]..starts[3] {
            let mut bad = whole.clone();
            bad[at] ^= 0x5a;
            fs::write(&path, &bad).unwrap();
            let (_, leases, report) = Store::open(dir.path()).unwrap();
            let got: Vec<u8> = leases.iter().map(|l| l.address.octets()[3]).collect();
            assert_eq!(got, vec![1, 2, 4, 5], "byte {at}");
            assert!(
                report.dropped >= 1 && report.truncated_at.is_none(),
                "byte {at}: {report:?}"
            );
            // Rewritten clean: the next load finds no damage.
            let (_, _, report) = Store::open(dir.path()).unwrap();
            assert_eq!((report.records, report.dropped), (4, 0), "byte {at}");
        }
    }

    #[test]
    fn compaction_keeps_the_live_records_and_survives_an_interrupted_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _, _) = Store::open(dir.path()).unwrap();
        for round in 0..1025u64 {
            assert!(!s.should_compact(3), "after {round} appends");
            let mut l = lease((round % 3) as u8 + 1, LeaseState::Bound);
            l.expires += round;
            s.append(&[l]).unwrap();
        }
        assert!(s.should_compact(3));
        let before = fs::metadata(s.path()).unwrap().len();
        let live: Vec<Lease> = Store::open(dir.path()).unwrap().1;
        assert_eq!(live.len(), 3);
        s.compact(&live).unwrap();
        assert!(!s.should_compact(3));
        assert!(fs::metadata(s.path()).unwrap().len() < before / 100);
        s.append(&[lease(7, LeaseState::Bound)]).unwrap();
        let mut want = live.clone();
        want.push(lease(7, LeaseState::Bound));
        // A crash inside the next compaction leaves its temporary file behind.
        fs::write(dir.path().join(TEMP), b"VXGDHCP1 half-written").unwrap();
        let (_, again, report) = Store::open(dir.path()).unwrap();
        assert_eq!(again, want);
        assert!(report.removed_temp);
        assert!(!dir.path().join(TEMP).exists());
    }

    #[test]
    fn an_unreadable_journal_is_set_aside_without_stopping_the_start() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(JOURNAL), b"lease 10.100.0.5 { ... }").unwrap();
        let (mut s, leases, report) = Store::open(dir.path()).unwrap();
        assert!(leases.is_empty());
        let aside = report.set_aside.unwrap();
        assert_eq!(fs::read(aside).unwrap(), b"lease 10.100.0.5 { ... }");
        s.append(&[lease(1, LeaseState::Bound)]).unwrap();
        assert_eq!(Store::open(dir.path()).unwrap().1.len(), 1);
    }
}
