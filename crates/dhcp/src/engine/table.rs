//! The lease table: one record per address, indexed by client as well.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use super::{Lease, LeaseState};

#[derive(Debug, Default)]
pub(super) struct Table {
    by_address: BTreeMap<Ipv4Addr, Lease>,
    by_client: HashMap<Vec<u8>, BTreeSet<Ipv4Addr>>,
}

impl Table {
    pub(super) fn get(&self, a: Ipv4Addr) -> Option<&Lease> {
        self.by_address.get(&a)
    }

    pub(super) fn len(&self) -> usize {
        self.by_address.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Lease> {
        self.by_address.values()
    }

    /// Every record (held or not) naming `client`.
    pub(super) fn of_client<'a>(&'a self, client: &[u8]) -> impl Iterator<Item = &'a Lease> {
        self.by_client
            .get(client)
            .into_iter()
            .flatten()
            .filter_map(|a| self.by_address.get(a))
    }

    /// Stores `lease` as the record of its address, replacing the previous one.
    pub(super) fn insert(&mut self, lease: Lease) {
        self.unindex(lease.address);
        if !lease.client_id.is_empty() {
            self.by_client
                .entry(lease.client_id.clone())
                .or_default()
                .insert(lease.address);
        }
        self.by_address.insert(lease.address, lease);
    }

    /// Marks the record of `a` released at `now`; returns it if it changed and must be stored.
    pub(super) fn set_released(&mut self, a: Ipv4Addr, now: u64) -> Option<Lease> {
        let l = self.by_address.get_mut(&a)?;
        let stored = l.state == LeaseState::Bound;
        l.state = LeaseState::Released;
        l.expires = now;
        stored.then(|| l.clone())
    }

    /// Forgets the client's pending offers.
    pub(super) fn drop_offers(&mut self, client: &[u8]) {
        let offered: Vec<Ipv4Addr> = self
            .of_client(client)
            .filter(|l| l.state == LeaseState::Offered)
            .map(|l| l.address)
            .collect();
        for a in offered {
            self.unindex(a);
            self.by_address.remove(&a);
        }
    }

    fn unindex(&mut self, a: Ipv4Addr) {
        let Some(old) = self.by_address.get(&a) else {
            return;
        };
        if let Some(set) = self.by_client.get_mut(&old.client_id) {
            set.remove(&a);
            if set.is_empty() {
                self.by_client.remove(&old.client_id);
            }
        }
    }
}
