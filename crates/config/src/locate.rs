//! Source positions of every key and value in a YAML document, by path.
//!
//! serde's YAML deserialisers report a position only for the first error they hit; to point at
//! every problem at once we walk the document's events once (yaml-rust2 gives each a marker)
//! and remember where each path starts.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// A path into the document, displayed as `dhcp.pools[0].start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    /// The path extended by a key.
    pub fn key(&self, k: &str) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    /// The path extended by an index.
    pub fn index(&self, i: usize) -> Path {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
    /// Parses a JSON pointer (`/dhcp/pools/0/start`); numeric segments become indexes.
    pub fn from_pointer(ptr: &str) -> Path {
        Path(
            ptr.split('/')
                .skip(1)
                .map(|s| {
                    let s = s.replace("~1", "/").replace("~0", "~");
                    match s.parse::<usize>() {
                        Ok(i) => Seg::Index(i),
                        Err(_) => Seg::Key(s),
                    }
                })
                .collect(),
        )
    }
    /// Builds a path from dotted keys: `Path::of(&["dhcp", "lease_time"])`.
    pub fn of(keys: &[&str]) -> Path {
        Path(keys.iter().map(|k| Seg::Key(k.to_string())).collect())
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(top level)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Pos {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    key: Pos,
    value: Pos,
}

/// Where each path of a document is.
#[derive(Debug, Default)]
pub struct Locations {
    entries: HashMap<Path, Entry>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields an empty index.
    pub fn index(text: &str) -> Locations {
        let mut b = Builder::default();
        if Parser::new_from_str(text).load(&mut b, false).is_err() {
            return Locations::default();
        }
        Locations { entries: b.entries }
    }

    /// Position of the value at `path`, or of its nearest ancestor present in the document.
    pub fn value(&self, path: &Path) -> Pos {
        self.find(path, |e| e.value)
    }

    /// Position of the key naming `path` (for a sequence item: the item), or the nearest
    /// ancestor's.
    pub fn key(&self, path: &Path) -> Pos {
        self.find(path, |e| e.key)
    }

    fn find(&self, path: &Path, pick: impl Fn(&Entry) -> Pos) -> Pos {
        let mut p = path.clone();
        loop {
            if let Some(e) = self.entries.get(&p) {
                return pick(e);
            }
            if p.0.pop().is_none() {
                return Pos { line: 1, column: 1 };
            }
        }
    }
}

enum Frame {
    Map { key: Option<(String, Marker)> },
    Seq { next: usize },
}

#[derive(Default)]
struct Builder {
    frames: Vec<Frame>,
    path: Path,
    entries: HashMap<Path, Entry>,
}

impl Builder {
    /// Starts a value at `mark`; returns false when the event is a mapping key instead.
    fn begin_value(&mut self, mark: Marker, scalar: Option<&str>) -> bool {
        let (seg, key_mark) = match self.frames.last_mut() {
            None => {
                self.entries.insert(
                    Path::default(),
                    Entry {
                        key: Pos::from_marker(mark),
                        value: Pos::from_marker(mark),
                    },
                );
                return true;
            }
            Some(Frame::Map { key }) => match key.take() {
                None => {
                    *key = Some((scalar.unwrap_or("?").to_string(), mark));
                    return false;
                }
                Some((k, km)) => (Seg::Key(k), km),
            },
            Some(Frame::Seq { next }) => {
                *next += 1;
                (Seg::Index(*next - 1), mark)
            }
        };
        self.path.0.push(seg);
        self.entries.insert(
            self.path.clone(),
            Entry {
                key: Pos::from_marker(key_mark),
                value: Pos::from_marker(mark),
            },
        );
        true
    }

    fn end_value(&mut self) {
        if !self.frames.is_empty() {
            self.path.0.pop();
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(v, ..) if self.begin_value(mark, Some(&v)) => self.end_value(),
            Event::Alias(_) if self.begin_value(mark, None) => self.end_value(),
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A collection used as a mapping key is not something a config file needs;
                // it is indexed as a key named "?" and serde reports it.
                if !self.begin_value(mark, None) {
                    self.path.0.push(Seg::Key("?".into()));
                }
                self.frames.push(match ev {
                    Event::MappingStart(..) => Frame::Map { key: None },
                    _ => Frame::Seq { next: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
                self.end_value();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_values_and_items() {
        let text = "a:\n  b: 1\n  list:\n    - x\n    - {c: 2}\nd: [1, 2]\n";
        let loc = Locations::index(text);
        let p = Path::of(&["a", "b"]);
        assert_eq!(loc.key(&p), Pos { line: 2, column: 3 });
        assert_eq!(loc.value(&p), Pos { line: 2, column: 6 });
        let item = Path::of(&["a", "list"]).index(1).key("c");
        assert_eq!(
            loc.value(&item),
            Pos {
                line: 5,
                column: 11
            }
        );
        assert_eq!(
            loc.value(&Path::of(&["d"]).index(1)),
            Pos { line: 6, column: 8 }
        );
        // a path that is not there falls back to its nearest ancestor
        assert_eq!(
            loc.value(&Path::of(&["a", "zz"])),
            loc.value(&Path::of(&["a"]))
        );
        assert_eq!(item.to_string(), "a.list[1].c");
        assert_eq!(Path::from_pointer("/a/list/1/c"), item);
    }
}
