//! Review reports: every permitted flow as a table (text, Markdown, standalone HTML), and the
//! difference between two configurations as flows and networks added and removed.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use ipnet::IpNet;
use serde::Serialize;

use crate::policy::{Flow, Policy};

const HEADS: [&str; 7] = [
    "direction",
    "from",
    "to",
    "protocol",
    "ports",
    "purpose",
    "source",
];

fn cells(f: &Flow) -> [String; 7] {
    [
        format!("{:?}", f.direction).to_lowercase(),
        f.from.clone(),
        f.to.clone(),
        f.protocol.clone(),
        f.ports.clone(),
        f.purpose.clone(),
        f.source.clone(),
    ]
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned plain text.
    Text,
    /// A Markdown document.
    Markdown,
    /// A standalone HTML page.
    Html,
}

fn text_table(rows: &[[String; 7]]) -> String {
    let mut w = HEADS.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s += c;
            } else {
                let _ = write!(s, "{c:<width$}  ", width = w[i]);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut o = line(&HEADS.map(|h| h.to_uppercase()));
    for r in rows {
        o += &line(r);
    }
    o
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Every permitted flow and every named network, in the chosen format. `title` heads the page.
pub fn explain(policy: &Policy, title: &str, format: Format) -> String {
    let rows: Vec<[String; 7]> = policy.flows.iter().map(cells).collect();
    let nets = |n: &[IpNet]| n.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    match format {
        Format::Text => {
            let mut o = format!("{title}\n\nPermitted flows (everything else is dropped):\n\n");
            o += &text_table(&rows);
            o += "\nNetworks:\n";
            for (name, list, src) in &policy.networks {
                let _ = writeln!(o, "  {name}: {} — {src}", nets(list).join(", "));
            }
            o
        }
        Format::Markdown => {
            let mut o = format!(
                "# {}\n\n## Permitted flows\n\nEverything not listed is dropped.\n\n",
                md_escape(title)
            );
            o += &format!("| {} |\n|{}\n", HEADS.join(" | "), "---|".repeat(7));
            for r in &rows {
                let r: Vec<String> = r.iter().map(|c| md_escape(c)).collect();
                let _ = writeln!(o, "| {} |", r.join(" | "));
            }
            o += "\n## Networks\n\n| set | networks | source |\n|---|---|---|\n";
            for (name, list, src) in &policy.networks {
                let _ = writeln!(
                    o,
                    "| {name} | {} | {} |",
                    nets(list).join(", "),
                    md_escape(src)
                );
            }
            o
        }
        Format::Html => {
            let t = html_escape(title);
            let mut o = format!(
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}\
th,td{{border:1px solid #999;padding:.3em .6em;text-align:left;vertical-align:top}}th{{background:#eee}}\
td.p{{font-family:monospace}}</style></head><body>\n<h1>{t}</h1>\n<h2>Permitted flows</h2>\n\
<p>Everything not listed is dropped.</p>\n<table>\n<tr>"
            );
            for h in HEADS {
                let _ = write!(o, "<th>{h}</th>");
            }
            o += "</tr>\n";
            for r in &rows {
                o += "<tr>";
                for (i, c) in r.iter().enumerate() {
                    let cls = if i == 3 || i == 4 { " class=\"p\"" } else { "" };
                    let _ = write!(o, "<td{cls}>{}</td>", html_escape(c));
                }
                o += "</tr>\n";
            }
            o += "</table>\n<h2>Networks</h2>\n<table>\n<tr><th>set</th><th>networks</th><th>source</th></tr>\n";
            for (name, list, src) in &policy.networks {
                let _ = writeln!(
                    o,
                    "<tr><td>{}</td><td class=\"p\">{}</td><td>{}</td></tr>",
                    html_escape(name),
                    nets(list).join("<br>"),
                    html_escape(src)
                );
            }
            o += "</table>\n</body></html>\n";
            o
        }
    }
}

/// What changes between two policies, as a reviewer needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Flows permitted only by the new policy.
    pub flows_added: Vec<Flow>,
    /// Flows permitted only by the old policy.
    pub flows_removed: Vec<Flow>,
    /// (set, network) pairs only in the new policy.
    pub networks_added: Vec<(String, String)>,
    /// (set, network) pairs only in the old policy.
    pub networks_removed: Vec<(String, String)>,
}

impl Diff {
    /// Whether nothing a reviewer cares about changed.
    pub fn is_empty(&self) -> bool {
        self.flows_added.is_empty()
            && self.flows_removed.is_empty()
            && self.networks_added.is_empty()
            && self.networks_removed.is_empty()
    }
}

/// Compares two policies by what they permit, not by nft syntax. Flows are compared without
/// their `source`, so a flow that merely moved from one entry to another does not show.
pub fn diff(old: &Policy, new: &Policy) -> Diff {
    let key = |f: &Flow| {
        let mut f = f.clone();
        f.source.clear();
        f
    };
    let o: BTreeSet<Flow> = old.flows.iter().map(key).collect();
    let n: BTreeSet<Flow> = new.flows.iter().map(key).collect();
    let full = |set: &BTreeSet<Flow>, from: &Policy| -> Vec<Flow> {
        from.flows
            .iter()
            .filter(|f| set.contains(&key(f)))
            .cloned()
            .collect()
    };
    let nets = |p: &Policy| -> BTreeSet<(String, String)> {
        p.networks
            .iter()
            .flat_map(|(s, l, _)| l.iter().map(move |n| (s.clone(), n.to_string())))
            .collect()
    };
    let (on, nn) = (nets(old), nets(new));
    Diff {
        flows_added: full(&n.difference(&o).cloned().collect(), new),
        flows_removed: full(&o.difference(&n).cloned().collect(), old),
        networks_added: nn.difference(&on).cloned().collect(),
        networks_removed: on.difference(&nn).cloned().collect(),
    }
}

/// The diff as text: `+`/`-` lines, networks first.
pub fn diff_text(d: &Diff) -> String {
    if d.is_empty() {
        return "no change in permitted flows or networks\n".into();
    }
    let mut o = String::new();
    for (s, n) in &d.networks_removed {
        let _ = writeln!(o, "- network {n} (set {s})");
    }
    for (s, n) in &d.networks_added {
        let _ = writeln!(o, "+ network {n} (set {s})");
    }
    for (sign, flows) in [("-", &d.flows_removed), ("+", &d.flows_added)] {
        for f in flows {
            let c = cells(f);
            let _ = writeln!(
                o,
                "{sign} {} {} -> {} {} {}: {} [{}]",
                c[0], c[1], c[2], c[3], c[4], c[5], c[6]
            );
        }
    }
    o
}
