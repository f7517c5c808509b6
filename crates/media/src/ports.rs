//! Port allocation: even RTP / odd RTCP pairs from a configured range, each released pair
//! kept in quarantine before it is handed out again.
//!
//! Pairs are always allocated, even when rtcp-mux is offered: whether the answer accepts mux
//! is not known when the offer is rewritten, and RFC 5761 asks the offerer to keep an RTCP
//! port ready as a fallback. Free pairs are used in FIFO order, so a port is reused as late as
//! possible; quarantine holds on top of that when the range is nearly exhausted.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use config::types::PortRange;

/// Allocates RTP/RTCP port pairs from one range; every operation is O(1) amortised.
#[derive(Debug)]
pub struct PortAllocator {
    first: u16,
    free: VecDeque<u16>,
    /// Released pairs with the time they may be used again, in release order (so in order of
    /// that time as long as the quarantine does not shrink).
    cooling: VecDeque<(Instant, u16)>,
    /// Whether each pair (indexed from `first`) is allocated.
    in_use: Vec<bool>,
    quarantine: Duration,
}

impl PortAllocator {
    /// All even/odd pairs inside `range`, kept from reuse for `quarantine` after release.
    pub fn new(range: PortRange, quarantine: Duration) -> PortAllocator {
        let first = u32::from(range.first) + u32::from(range.first & 1);
        let free: VecDeque<u16> = (first..u32::from(range.last))
            .step_by(2)
            .map(|p| p as u16)
            .collect();
        // A range holding no pair (e.g. just 65535) leaves `first` unused: nothing maps to it.
        let first = first.min(u32::from(u16::MAX)) as u16;
        PortAllocator {
            first,
            in_use: vec![false; free.len()],
            free,
            cooling: VecDeque::new(),
            quarantine,
        }
    }

    /// Number of pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    /// Number of pairs allocated now.
    pub fn allocated(&self) -> usize {
        self.capacity() - self.free.len() - self.cooling.len()
    }

    /// Number of released pairs still in quarantine at `now`.
    pub fn cooling(&self, now: Instant) -> usize {
        self.cooling
            .iter()
            .filter(|(until, _)| *until > now)
            .count()
    }

    /// The even (RTP) port of a free pair; the odd port above it is the RTCP port. `None`
    /// when every pair is in use or in quarantine.
    pub fn allocate(&mut self, now: Instant) -> Option<u16> {
        while let Some(&(until, port)) = self.cooling.front() {
            if until > now {
                break;
            }
            self.cooling.pop_front();
            self.free.push_back(port);
        }
        let port = self.free.pop_front()?;
        let i = self.slot(port)?;
        self.in_use[i] = true;
        Some(port)
    }

    /// Returns a pair to the pool after its quarantine; false (and nothing changes) if the
    /// port is not an allocated pair of this range.
    pub fn release(&mut self, port: u16, now: Instant) -> bool {
        match self.slot(port) {
            Some(i) if self.in_use[i] => {
                self.in_use[i] = false;
                self.cooling.push_back((now + self.quarantine, port));
                true
            }
            _ => false,
        }
    }

    /// Marks a pair the relay could not bind (another program holds a port) as released: it
    /// is retried only after a quarantine, and the next free pair is tried now.
    pub fn set_aside(&mut self, port: u16, now: Instant) {
        self.release(port, now);
    }

    /// Marks a specific pair as allocated (for calls that survive a change of range); false
    /// if it lies outside the range or is already allocated.
    pub fn claim(&mut self, port: u16) -> bool {
        match self.slot(port) {
            Some(i) if !self.in_use[i] => {
                self.in_use[i] = true;
                self.free.retain(|&p| p != port);
                self.cooling.retain(|&(_, p)| p != port);
                true
            }
            _ => false,
        }
    }

    fn slot(&self, port: u16) -> Option<usize> {
        let off = port.checked_sub(self.first)?;
        let i = usize::from(off / 2);
        (off & 1 == 0 && i < self.in_use.len()).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn pairs_are_even_and_fit_the_range() {
        let t = Instant::now();
        // 10001..=10008: the pairs 10002/3, 10004/5, 10006/7; 10008 has no odd partner.
        let mut a = PortAllocator::new(range(10001, 10008), Duration::from_secs(30));
        assert_eq!(a.capacity(), 3);
        let got: Vec<_> = std::iter::from_fn(|| a.allocate(t)).collect();
        assert_eq!(got, vec![10002, 10004, 10006]);
        assert_eq!(a.allocated(), 3);
        let b = PortAllocator::new(range(20000, 20001), Duration::ZERO);
        assert_eq!(b.capacity(), 1);
        let top = PortAllocator::new(range(65534, 65535), Duration::ZERO);
        assert_eq!(top.capacity(), 1);
        let none = PortAllocator::new(range(65535, 65535), Duration::ZERO);
        assert_eq!(none.capacity(), 0);
    }

    #[test]
    fn released_pairs_wait_out_the_quarantine() {
        let t = Instant::now();
        let q = Duration::from_secs(30);
        let mut a = PortAllocator::new(range(20000, 20003), q);
        let (p1, p2) = (a.allocate(t).unwrap(), a.allocate(t).unwrap());
        assert_eq!(a.allocate(t), None, "exhausted");
        assert!(a.release(p1, t));
        assert!(!a.release(p1, t), "double release is refused");
        assert!(!a.release(p1 + 1, t), "odd ports are not pairs");
        assert!(!a.release(40000, t), "outside the range");
        assert_eq!(a.cooling(t), 1);
        assert_eq!(a.allocate(t + q - Duration::from_millis(1)), None);
        assert_eq!(a.allocate(t + q), Some(p1));
        assert!(a.release(p2, t + q));
        assert_eq!(a.allocate(t + q), None);
        assert_eq!(a.allocate(t + 2 * q), Some(p2));
    }

    #[test]
    fn free_pairs_rotate_through_the_range() {
        let t = Instant::now();
        let mut a = PortAllocator::new(range(20000, 20007), Duration::ZERO);
        let p = a.allocate(t).unwrap();
        a.release(p, t);
        // The released pair goes to the back: the other three come first.
        let order: Vec<_> = (0..4).map(|_| a.allocate(t).unwrap()).collect();
        assert_eq!(order, vec![20002, 20004, 20006, 20000]);
    }

    #[test]
    fn set_aside_and_claim() {
        let t = Instant::now();
        let mut a = PortAllocator::new(range(20000, 20005), Duration::from_secs(5));
        let p = a.allocate(t).unwrap();
        a.set_aside(p, t);
        assert_eq!(a.allocate(t), Some(20002));
        assert!(a.claim(20004));
        assert!(!a.claim(20004));
        assert!(!a.claim(20001));
        assert_eq!(a.allocate(t), None);
        assert!(a.claim(20000), "a pair in quarantine can be claimed back");
        assert_eq!(a.allocate(t + Duration::from_secs(5)), None);
    }
}
