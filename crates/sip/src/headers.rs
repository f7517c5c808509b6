//! A SIP message's headers: names and values in the order they arrived, values as written.
//!
//! Our own rather than `ezk_sip_types::Headers`, whose `insert` compares the new name with
//! every entry's through `Name`'s equality (every spelling of both names, case-insensitively)
//! and prints the value again through `fmt`: for every header of every message parsed or
//! built, it was 15 % of the B2BUA's instructions per call (`cargo bench -p voxgate-sip
//! --bench core` under callgrind). It also moved a repeated header's values up to its first
//! occurrence; here nothing is reordered. Names are still `ezk_sip_types::Name` (known names
//! canonical, compact forms expanded, others as written) and values decode with its typed
//! headers ([`crate::message::typed`]).

use bytesstr::BytesStr;
use ezk_sip_types::Name;

use crate::message::same_name;

/// Header lines of one message, in order.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(Name, BytesStr)>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// No headers, room for `n`.
    pub fn with_capacity(n: usize) -> Headers {
        Headers(Vec::with_capacity(n))
    }

    /// Appends a header line.
    pub fn insert(&mut self, name: impl Into<Name>, value: impl Into<BytesStr>) {
        self.0.push((name.into(), value.into()));
    }

    /// Takes out every line of header `name`, returning their values in order (`None` if it
    /// had none).
    pub fn remove(&mut self, name: &Name) -> Option<Vec<BytesStr>> {
        let mut out = Vec::new();
        self.0.retain(|(n, v)| {
            let hit = same_name(n, name);
            if hit {
                out.push(v.clone());
            }
            !hit
        });
        (!out.is_empty()).then_some(out)
    }

    /// The first line of header `name`, to rewrite its value in place.
    pub fn first_mut(&mut self, name: &Name) -> Option<&mut BytesStr> {
        self.0
            .iter_mut()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v)
    }

    /// Every line, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&Name, &BytesStr)> + '_ {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_and_names_match_in_any_spelling() {
        let mut h = Headers::new();
        h.insert(Name::VIA, "SIP/2.0/UDP a;branch=z9hG4bK1");
        h.insert(Name::from("X-Thing".to_string()), "1");
        h.insert(
            Name::from("v".to_string()),
            String::from("SIP/2.0/UDP b;branch=z9hG4bK2"),
        );
        h.insert(Name::from("x-thing".to_string()), "2");
        let lines: Vec<(String, String)> = h
            .iter()
            .map(|(n, v)| (n.as_print_str().to_string(), v.to_string()))
            .collect();
        assert_eq!(lines[2].0, "Via", "compact form read as Via");
        assert_eq!(
            lines[3],
            ("x-thing".into(), "2".into()),
            "written as received"
        );
        assert_eq!(h.len(), 4);
        let vias = h.remove(&Name::VIA).unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[1], "SIP/2.0/UDP b;branch=z9hG4bK2");
        let things = h.remove(&Name::from("X-THING".to_string())).unwrap();
        assert_eq!(things, ["1", "2"]);
        assert!(h.is_empty());
        assert_eq!(h.remove(&Name::VIA), None);
    }
}
