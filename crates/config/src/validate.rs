//! Validation: the document's structure against the JSON Schema of the model (every error at
//! once, each placed by its path), then the checks no schema can express (address plans, port
//! overlaps, profile consistency).

use std::net::Ipv4Addr;
use std::path::Path as FsPath;

use jsonschema::error::ValidationErrorKind;
use schemars::JsonSchema;
use serde_json::Value;

use crate::diag::Diagnostic;
use crate::locate::{Locations, Path, Pos};
use crate::model::{Config, DhcpOptions, VendorClass, WanMode};
use crate::profile::Profile;
use crate::types::{format_hint, PortRange, FORMATS};

/// A parsed document: its value, where each path is, and the file it came from.
pub(crate) struct Doc<'a> {
    pub file: &'a FsPath,
    pub value: Value,
    pub loc: Locations,
}

impl Doc<'_> {
    /// Where to point for `path`: a scalar's value, or the key that opens a mapping or list.
    pub(crate) fn pos(&self, path: &Path) -> Pos {
        let mut ptr = String::new();
        for seg in &path.0 {
            match seg {
                crate::locate::Seg::Key(k) => {
                    ptr += &format!("/{}", k.replace('~', "~0").replace('/', "~1"))
                }
                crate::locate::Seg::Index(i) => ptr += &format!("/{i}"),
            }
        }
        match self.value.pointer(&ptr) {
            Some(Value::Object(_) | Value::Array(_)) => self.loc.key(path),
            _ => self.loc.value(path),
        }
    }

    pub(crate) fn diag(
        &self,
        pos: Pos,
        path: &Path,
        message: String,
        hint: Option<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: self.file.to_path_buf(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message,
            hint,
        }
    }
}

/// Parses YAML text; a syntax error comes back placed where the parser stopped.
pub(crate) fn parse<'a>(file: &'a FsPath, text: &str) -> Result<Doc<'a>, Diagnostic> {
    match serde_norway::from_str::<Value>(text) {
        Ok(value) => Ok(Doc {
            file,
            value,
            loc: Locations::index(text),
        }),
        Err(e) => {
            let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            Err(Diagnostic {
                file: file.to_path_buf(),
                line,
                column,
                path: "(syntax)".into(),
                message: format!("YAML syntax error: {msg}"),
                hint: Some("check the indentation (spaces, not tabs) and quote values containing ': ' or '#'".into()),
            })
        }
    }
}

/// The JSON Schema of `T` as a JSON value.
pub fn schema_of<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// Checks `doc` against `T`'s schema and describes every violation.
pub(crate) fn check_structure<T: JsonSchema>(doc: &Doc) -> Vec<Diagnostic> {
    let schema = schema_of::<T>();
    let mut opts = jsonschema::options().should_validate_formats(true);
    for (name, check) in FORMATS {
        opts = opts.with_format(*name, move |s: &str| check(s).is_ok());
    }
    let validator = match opts.build(&schema) {
        Ok(v) => v,
        Err(e) => panic!("the generated schema of the model does not compile: {e}"),
    };
    let mut out = Vec::new();
    for err in validator.iter_errors(&doc.value) {
        let path = Path::from_pointer(err.instance_path().as_str());
        let node = schema_at(&schema, &path);
        let description = node
            .and_then(|n| describe_schema(&schema, n))
            .map(str::to_string);
        let instance: &Value = err.instance();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = node.map(|n| property_names(&schema, n)).unwrap_or_default();
                for k in unexpected {
                    let p = path.key(k);
                    out.push(doc.diag(
                        doc.loc.key(&p),
                        &p,
                        format!("unknown key `{k}`"),
                        Some(suggest(k, &allowed)),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                let p = path.key(name);
                let hint = node
                    .and_then(|n| resolve(&schema, n).get("properties"))
                    .and_then(|props| props.get(name))
                    .and_then(|n| describe_schema(&schema, n))
                    .map(|d| format!("add `{name}`: {d}"));
                out.push(doc.diag(
                    doc.loc.key(&path),
                    &p,
                    format!("missing required key `{name}`"),
                    hint,
                ));
            }
            ValidationErrorKind::Type { .. } => {
                let expected = node
                    .map(|n| expected_types(&schema, n))
                    .unwrap_or_else(|| "another type".into());
                out.push(doc.diag(
                    doc.loc.value(&path),
                    &path,
                    format!("expected {expected}, found {}", show_value(instance)),
                    description,
                ));
            }
            ValidationErrorKind::Format { format } => {
                let text = instance.as_str().unwrap_or_default();
                let reason = FORMATS
                    .iter()
                    .find(|(n, _)| n == format)
                    .and_then(|(_, check)| check(text).err())
                    .unwrap_or_else(|| format!("not a valid {format}"));
                out.push(doc.diag(
                    doc.loc.value(&path),
                    &path,
                    format!("invalid value {}: {reason}", show_value(instance)),
                    format_hint(format).map(str::to_string).or(description),
                ));
            }
            ValidationErrorKind::Minimum { .. } | ValidationErrorKind::Maximum { .. } => {
                let n = node.map(|n| resolve(&schema, n));
                let bound = |k: &str| n.and_then(|n| n.get(k)).map(|v| v.to_string());
                let range = match (bound("minimum"), bound("maximum")) {
                    (Some(lo), Some(hi)) => format!("{lo}-{hi}"),
                    (Some(lo), None) => format!("at least {lo}"),
                    (None, Some(hi)) => format!("at most {hi}"),
                    (None, None) => "the allowed range".into(),
                };
                out.push(doc.diag(
                    doc.loc.value(&path),
                    &path,
                    format!("{} is out of range: must be {range}", show_value(instance)),
                    description,
                ));
            }
            ValidationErrorKind::Enum { .. }
            | ValidationErrorKind::OneOfNotValid { .. }
            | ValidationErrorKind::AnyOf { .. }
                if node.is_some_and(|n| !enum_words(&schema, n).is_empty()) =>
            {
                let opts = node.map(|n| enum_words(&schema, n)).unwrap_or_default();
                let given = instance
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| instance.to_string());
                out.push(doc.diag(
                    doc.loc.value(&path),
                    &path,
                    format!(
                        "{} is not one of: {}",
                        show_value(instance),
                        opts.join(", ")
                    ),
                    Some(suggest(&given, &opts)),
                ));
            }
            _ => out.push(doc.diag(doc.pos(&path), &path, err.to_string(), description)),
        }
    }
    out
}

fn resolve<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..16 {
        match node.get("$ref").and_then(Value::as_str) {
            Some(r) => match r
                .strip_prefix("#/$defs/")
                .and_then(|n| root["$defs"].get(n))
            {
                Some(target) => node = target,
                None => break,
            },
            None => break,
        }
    }
    node
}

/// The (unresolved) schema node describing `path`.
fn schema_at<'s>(root: &'s Value, path: &Path) -> Option<&'s Value> {
    let mut node = root;
    for seg in &path.0 {
        let n = resolve(root, node);
        node = match seg {
            crate::locate::Seg::Key(k) => n.get("properties")?.get(k)?,
            crate::locate::Seg::Index(_) => n.get("items")?,
        };
    }
    Some(node)
}

fn describe_schema<'s>(root: &'s Value, node: &'s Value) -> Option<&'s str> {
    node.get("description")
        .or_else(|| resolve(root, node).get("description"))
        .and_then(Value::as_str)
}

fn property_names(root: &Value, node: &Value) -> Vec<String> {
    resolve(root, node)
        .get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The words an enumeration allows: `enum: [...]`, or `oneOf` of `const`s (documented variants).
fn enum_words(root: &Value, node: &Value) -> Vec<String> {
    let n = resolve(root, node);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    if let Some(e) = n.get("enum") {
        return strings(e);
    }
    n.get("oneOf")
        .or_else(|| n.get("anyOf"))
        .and_then(Value::as_array)
        .map(|alts| {
            alts.iter()
                .flat_map(|a| match (a.get("const"), a.get("enum")) {
                    (Some(Value::String(c)), _) => vec![c.clone()],
                    (_, Some(e)) => strings(e),
                    _ => vec![],
                })
                .collect()
        })
        .unwrap_or_default()
}

fn expected_types(root: &Value, node: &Value) -> String {
    let n = resolve(root, node);
    let word = |t: &str| match t {
        "object" => "a mapping (key: value lines)",
        "array" => "a list",
        "string" => "a string",
        "integer" => "a whole number",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "nothing",
        _ => "a value",
    };
    match n.get("type") {
        Some(Value::String(t)) => word(t).into(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .map(word)
            .collect::<Vec<_>>()
            .join(" or "),
        _ if n.get("enum").is_some() => "one of the listed words".into(),
        _ => "another type".into(),
    }
}

fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// "did you mean …?" from the closest allowed word, or the list of allowed words.
fn suggest(given: &str, allowed: &[String]) -> String {
    let best = allowed
        .iter()
        .map(|a| (strsim::jaro_winkler(given, a), a))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, a)) if score > 0.8 => format!("did you mean `{a}`?"),
        _ if allowed.is_empty() => "remove it".into(),
        _ => format!("allowed here: {}", allowed.join(", ")),
    }
}

/// A problem found by a check on the typed model.
pub(crate) struct Issue {
    pub path: Path,
    pub message: String,
    pub hint: Option<String>,
    /// True when the problem is in the provider profile rather than the config file.
    pub in_profile: bool,
}

fn issue(path: Path, message: String, hint: &str) -> Issue {
    Issue {
        path,
        message,
        hint: (!hint.is_empty()).then(|| hint.to_string()),
        in_profile: false,
    }
}

/// Checks that need the whole typed model.
pub(crate) fn check_semantics(cfg: &Config, profile: &Profile) -> Vec<Issue> {
    let mut out = Vec::new();
    check_interfaces(cfg, &mut out);
    check_lldp(cfg, &mut out);
    check_dhcp(cfg, &mut out);
    check_ports(cfg, &mut out);
    check_management(cfg, &mut out);
    check_provider(cfg, profile, &mut out);
    out
}

fn check_interfaces(cfg: &Config, out: &mut Vec<Issue>) {
    let i = &cfg.interfaces;
    let mut devices = vec![(Path::of(&["interfaces", "wan", "device"]), &i.wan.device)];
    devices.push((Path::of(&["interfaces", "lan", "device"]), &i.lan.device));
    if let Some(m) = &i.management {
        devices.push((Path::of(&["interfaces", "management", "device"]), &m.device));
    }
    for (n, (p, d)) in devices.iter().enumerate() {
        if d.is_empty() || d.len() > 15 || d.contains(['/', ' ', ':']) || *d == "." || *d == ".." {
            out.push(issue(
                p.clone(),
                format!("{d:?} is not a valid interface name"),
                "Linux interface names are 1-15 characters without '/', ':' or spaces, e.g. lan0",
            ));
        } else if devices[..n].iter().any(|(_, other)| other == d) {
            out.push(issue(
                p.clone(),
                format!("interface {d} is used twice"),
                "WAN, voice LAN and management need separate ports (the voice LAN may be a VLAN of one port: set interfaces.lan.vlan)",
            ));
        }
    }
    let wan = &i.wan;
    match wan.mode {
        WanMode::Static => {
            if wan.address.is_none() {
                out.push(issue(
                    Path::of(&["interfaces", "wan"]),
                    "static WAN needs `address`".into(),
                    "add address: <ip>/<prefix>, e.g. 192.168.1.2/24, or use mode: dhcp",
                ));
            }
            if wan.gateway.is_none() {
                out.push(issue(
                    Path::of(&["interfaces", "wan"]),
                    "static WAN needs `gateway`".into(),
                    "add gateway: <broadband router address>, or use mode: dhcp",
                ));
            }
            if let (Some(a), Some(g)) = (wan.address, wan.gateway) {
                if !a.network().contains(&g) {
                    out.push(issue(
                        Path::of(&["interfaces", "wan", "gateway"]),
                        format!("gateway {g} is outside the WAN subnet {}", a.network()),
                        "the gateway must be on the WAN subnet: check the address's prefix length",
                    ));
                }
            }
        }
        WanMode::Dhcp => {
            for (k, set) in [
                ("address", wan.address.is_some()),
                ("gateway", wan.gateway.is_some()),
            ] {
                if set {
                    out.push(issue(
                        Path::of(&["interfaces", "wan", k]),
                        format!("`{k}` is set but the WAN gets its address by DHCP"),
                        "set mode: static to use it, or remove it",
                    ));
                }
            }
        }
    }
    let lan_net = i.lan.address.network();
    let mut nets = vec![(
        Path::of(&["interfaces", "lan", "address"]),
        lan_net,
        "voice LAN",
    )];
    if let Some(a) = wan.address {
        nets.push((
            Path::of(&["interfaces", "wan", "address"]),
            a.network(),
            "WAN",
        ));
    }
    if let Some(m) = &i.management {
        nets.push((
            Path::of(&["interfaces", "management", "address"]),
            m.address.network(),
            "management",
        ));
    }
    for a in 0..nets.len() {
        for b in 0..a {
            let ((pa, na, la), (_, nb, lb)) = (&nets[a], &nets[b]);
            if na.contains(&nb.network()) || nb.contains(&na.network()) {
                out.push(issue(
                    pa.clone(),
                    format!("the {la} subnet {na} overlaps the {lb} subnet {nb}"),
                    "each interface needs its own subnet; renumber one of them",
                ));
            }
        }
    }
}

fn check_dhcp(cfg: &Config, out: &mut Vec<Issue>) {
    let d = &cfg.dhcp;
    let lan = cfg.interfaces.lan.address;
    let net = lan.network();
    let box_addr = lan.addr();
    let in_subnet = |a: Ipv4Addr| net.contains(&a) && a != net.network() && a != net.broadcast();
    let mut ranges: Vec<(usize, u32, u32)> = Vec::new();
    for (n, pool) in d.pools.iter().enumerate() {
        let p = Path::of(&["dhcp", "pools"]).index(n);
        check_dhcp_options(&pool.options, &p.key("options"), out);
        let (s, e) = (u32::from(pool.start), u32::from(pool.end));
        let mut ok = true;
        for (k, a) in [("start", pool.start), ("end", pool.end)] {
            if !in_subnet(a) {
                ok = false;
                out.push(issue(
                    p.key(k),
                    format!("{a} is outside the voice subnet {net} (or is its network/broadcast address)"),
                    "DHCP pools must lie inside interfaces.lan.address's subnet",
                ));
            }
        }
        if s > e {
            out.push(issue(
                p.key("end"),
                format!(
                    "the pool ends ({}) before it starts ({})",
                    pool.end, pool.start
                ),
                "swap start and end",
            ));
            continue;
        }
        if ok && (s..=e).contains(&u32::from(box_addr)) {
            out.push(issue(
                p.clone(),
                format!(
                    "the pool {}-{} contains the box's own address {box_addr}",
                    pool.start, pool.end
                ),
                "start the pool above the box's address, or add it to dhcp.exclude",
            ));
        }
        for &(m, os, oe) in &ranges {
            if s <= oe && os <= e {
                out.push(issue(
                    p.clone(),
                    format!("the pool overlaps dhcp.pools[{m}]"),
                    "pools must not share addresses; shrink or merge them",
                ));
            }
        }
        ranges.push((n, s, e));
    }
    let mut client_ids: Vec<(usize, Vec<u8>)> = Vec::new();
    for (n, r) in d.reservations.iter().enumerate() {
        let p = Path::of(&["dhcp", "reservations"]).index(n);
        if r.mac.is_none() && r.client_id.is_none() {
            out.push(issue(
                p.clone(),
                "the reservation names no phone".into(),
                "add mac: \"00:04:f2:12:34:56\" (or client_id: the phone's option 61 in hex)",
            ));
        }
        if let Some(id) = &r.client_id {
            match id.bytes() {
                Err(e) => out.push(issue(
                    p.key("client_id"),
                    format!("invalid client identifier {:?}: {e}", id.0),
                    "write the bytes of option 61 in hex, e.g. \"01:00:04:f2:12:34:56\"",
                )),
                Ok(b) if b.len() < 2 => out.push(issue(
                    p.key("client_id"),
                    format!("client identifier {:?} is shorter than 2 bytes", id.0),
                    "RFC 2132 client identifiers are a type byte and at least one more byte",
                )),
                Ok(b) => {
                    if let Some((m, _)) = client_ids.iter().find(|(_, o)| *o == b) {
                        out.push(issue(
                            p.key("client_id"),
                            format!(
                                "client identifier {:?} is reserved twice (also in reservations[{m}])",
                                id.0
                            ),
                            "one reservation per phone",
                        ));
                    }
                    client_ids.push((n, b));
                }
            }
        }
        if let Some(h) = &r.hostname {
            if !is_host_label(h) {
                out.push(issue(
                    p.key("hostname"),
                    format!("{h:?} is not a valid host name"),
                    "use letters, digits and '-', at most 63 characters, e.g. reception-1",
                ));
            }
        }
        if !in_subnet(r.address) {
            out.push(issue(
                p.key("address"),
                format!("{} is outside the voice subnet {net}", r.address),
                "reserved addresses must lie inside interfaces.lan.address's subnet",
            ));
        } else if r.address == box_addr {
            out.push(issue(
                p.key("address"),
                format!("{} is the box's own address", r.address),
                "reserve another address",
            ));
        }
        for (m, o) in d.reservations[..n].iter().enumerate() {
            if r.mac.is_some() && o.mac == r.mac {
                out.push(issue(
                    p.key("mac"),
                    format!(
                        "MAC {} is reserved twice (also in reservations[{m}])",
                        r.mac.map(|m| m.to_string()).unwrap_or_default()
                    ),
                    "one reservation per phone",
                ));
            }
            if o.address == r.address {
                out.push(issue(
                    p.key("address"),
                    format!(
                        "{} is reserved twice (also in reservations[{m}])",
                        r.address
                    ),
                    "one phone per address",
                ));
            }
        }
    }
    if d.lease_time.as_secs() < 60 {
        out.push(issue(
            Path::of(&["dhcp", "lease_time"]),
            format!("lease time {} is shorter than a minute", d.lease_time),
            "phones renew at half the lease time; use at least 10m (default 12h)",
        ));
    } else if d.lease_time.as_secs() > 365 * 86400 {
        out.push(issue(
            Path::of(&["dhcp", "lease_time"]),
            format!("lease time {} is longer than a year", d.lease_time),
            "addresses of phones that left stay taken for the whole lease; 12h is the default",
        ));
    }
    if d.decline_quarantine.as_secs() > 7 * 86400 {
        out.push(issue(
            Path::of(&["dhcp", "decline_quarantine"]),
            format!("quarantine {} is longer than a week", d.decline_quarantine),
            "a declined address is out of use this long; 1h is the default",
        ));
    }
    check_dhcp_options(&d.options, &Path::of(&["dhcp", "options"]), out);
    check_vendor_classes(
        &d.vendor_classes,
        &Path::of(&["dhcp", "vendor_classes"]),
        out,
    );
    check_bootstrap(cfg, out);
}

fn check_vendor_classes(classes: &[VendorClass], at: &Path, out: &mut Vec<Issue>) {
    for (n, c) in classes.iter().enumerate() {
        let p = at.index(n);
        check_dhcp_options(&c.options, &p.key("options"), out);
        if c.name.trim().is_empty() {
            out.push(issue(
                p.key("name"),
                "the vendor class has an empty name".into(),
                "name it after the make of phone, e.g. yealink",
            ));
        } else if let Some(m) = classes[..n].iter().position(|o| o.name == c.name) {
            out.push(issue(
                p.key("name"),
                format!(
                    "vendor class name {} is used twice (also vendor_classes[{m}])",
                    c.name
                ),
                "give every class its own name",
            ));
        }
        let mp = p.key("match");
        match (&c.matches.vendor_class, &c.matches.mac_prefix) {
            (None, None) => out.push(issue(
                mp.clone(),
                "the vendor class matches no phone".into(),
                "add vendor_class: (part of option 60, e.g. yealink) and/or mac_prefix: (e.g. \"80:5e:c0\")",
            )),
            (Some(v), _) if v.trim().is_empty() => out.push(issue(
                mp.key("vendor_class"),
                "an empty vendor_class matches every phone".into(),
                "write part of the vendor class identifier the phones send, e.g. yealink",
            )),
            _ => {}
        }
        if let Some(prefix) = &c.matches.mac_prefix {
            if let Err(e) = prefix.octets() {
                out.push(issue(
                    mp.key("mac_prefix"),
                    format!("invalid MAC prefix {:?}: {e}", prefix.0),
                    "write one to six hex pairs, e.g. \"80:5e:c0\"",
                ));
            }
        }
    }
}

/// The bootstrap scope on the untagged port: its own interface and subnet, and a VLAN to name.
fn check_bootstrap(cfg: &Config, out: &mut Vec<Issue>) {
    let Some(b) = &cfg.dhcp.bootstrap else {
        return;
    };
    let at = Path::of(&["dhcp", "bootstrap"]);
    let i = &cfg.interfaces;
    if b.vlan.or(i.lan.vlan).is_none() {
        out.push(issue(
            at.clone(),
            "the bootstrap scope has no voice VLAN to tell phones".into(),
            "set interfaces.lan.vlan (the voice network is a VLAN), or dhcp.bootstrap.vlan (a switch tags it)",
        ));
    }
    let device = b.device.clone().unwrap_or_else(|| i.lan.device.clone());
    let dev_path = if b.device.is_some() {
        at.key("device")
    } else {
        at.clone()
    };
    if device.is_empty() || device.len() > 15 || device.contains(['/', ' ', ':']) {
        out.push(issue(
            dev_path,
            format!("{device:?} is not a valid interface name"),
            "Linux interface names are 1-15 characters without '/', ':' or spaces, e.g. lan0",
        ));
    } else if device == i.lan.voice_device()
        || device == i.wan.device
        || i.management.as_ref().is_some_and(|m| m.device == device)
    {
        out.push(issue(
            dev_path,
            format!("the bootstrap scope's interface {device} already carries another network"),
            "the bootstrap scope serves the untagged port of a voice VLAN: set interfaces.lan.vlan, or name a port of its own in dhcp.bootstrap.device",
        ));
    }
    let net = b.address.network();
    let mut others = vec![("voice LAN", i.lan.address.network())];
    if let Some(a) = i.wan.address {
        others.push(("WAN", a.network()));
    }
    if let Some(m) = &i.management {
        others.push(("management", m.address.network()));
    }
    for (what, o) in others {
        if net.contains(&o.network()) || o.contains(&net.network()) {
            out.push(issue(
                at.key("address"),
                format!("the bootstrap subnet {net} overlaps the {what} subnet {o}"),
                "give the untagged segment a small subnet of its own, e.g. 10.99.0.1/24",
            ));
        }
    }
    let box_addr = b.address.addr();
    for (n, pool) in b.pools.iter().enumerate() {
        let p = at.key("pools").index(n);
        check_dhcp_options(&pool.options, &p.key("options"), out);
        for (k, a) in [("start", pool.start), ("end", pool.end)] {
            if !net.contains(&a) || a == net.network() || a == net.broadcast() {
                out.push(issue(
                    p.key(k),
                    format!("{a} is outside the bootstrap subnet {net} (or is its network/broadcast address)"),
                    "bootstrap pools must lie inside dhcp.bootstrap.address's subnet",
                ));
            }
        }
        if pool.start > pool.end {
            out.push(issue(
                p.key("end"),
                format!(
                    "the pool ends ({}) before it starts ({})",
                    pool.end, pool.start
                ),
                "swap start and end",
            ));
        } else if (pool.start..=pool.end).contains(&box_addr) {
            out.push(issue(
                p.clone(),
                format!(
                    "the pool {}-{} contains the box's own address {box_addr}",
                    pool.start, pool.end
                ),
                "start the pool above the box's address",
            ));
        }
    }
    if !(30..=86400).contains(&b.lease_time.as_secs()) {
        out.push(issue(
            at.key("lease_time"),
            format!("bootstrap lease time {} is outside 30s-1d", b.lease_time),
            "phones leave the bootstrap scope at once; 5m (the default) is plenty",
        ));
    }
    check_dhcp_options(&b.options, &at.key("options"), out);
    check_vendor_classes(&b.vendor_classes, &at.key("vendor_classes"), out);
}

fn check_lldp(cfg: &Config, out: &mut Vec<Issue>) {
    let l = &cfg.lldp;
    if l.enabled && !(1..=3600).contains(&l.interval.as_secs()) {
        out.push(issue(
            Path::of(&["lldp", "interval"]),
            format!("LLDP interval {} is outside 1s-1h", l.interval),
            "IEEE 802.1AB allows 1-3600 s between advertisements; 30s is the default",
        ));
    }
}

/// Options the server sets itself (or that only clients send), which `extra` must not name.
const DHCP_SERVER_OPTIONS: &[(u8, &str)] = &[
    (1, "the subnet mask comes from interfaces.lan.address"),
    (12, "host names come from dhcp.reservations"),
    (50, "requested address: sent by clients"),
    (51, "lease time: set dhcp.lease_time"),
    (
        52,
        "option overload is used by the server when options do not fit",
    ),
    (53, "message type: set by the server"),
    (54, "server identifier: the box's voice address"),
    (55, "parameter request list: sent by clients"),
    (57, "maximum message size: sent by clients"),
    (58, "renewal time: half of dhcp.lease_time"),
    (59, "rebinding time: seven eighths of dhcp.lease_time"),
    (
        60,
        "vendor class: sent by clients; match it in dhcp.vendor_classes",
    ),
    (61, "client identifier: sent by clients"),
    (82, "relay agent information: added by relays"),
];

/// Codes of the named fields of [`DhcpOptions`], for clashes with `extra`.
fn named_option_codes(o: &DhcpOptions) -> Vec<(u8, &'static str)> {
    [
        (3, "routers", o.routers.is_some()),
        (6, "dns_servers", o.dns_servers.is_some()),
        (15, "domain_name", o.domain_name.is_some()),
        (42, "ntp_servers", o.ntp_servers.is_some()),
        (120, "sip_servers", o.sip_servers.is_some()),
        (66, "tftp_server", o.tftp_server.is_some()),
        (67, "boot_file", o.boot_file.is_some()),
        (150, "cisco_tftp_servers", o.cisco_tftp_servers.is_some()),
        (160, "provisioning_url", o.provisioning_url.is_some()),
        (43, "vendor_specific", o.vendor_specific.is_some()),
        (100, "timezone", o.timezone.is_some()),
        (101, "timezone", o.timezone.is_some()),
    ]
    .into_iter()
    .filter(|(_, _, set)| *set)
    .map(|(c, n, _)| (c, n))
    .collect()
}

fn check_dhcp_options(o: &DhcpOptions, at: &Path, out: &mut Vec<Issue>) {
    for (key, text) in [
        ("tftp_server", &o.tftp_server),
        ("boot_file", &o.boot_file),
        ("provisioning_url", &o.provisioning_url),
    ] {
        if let Some(t) = text {
            if t.is_empty() || t.len() > 255 {
                out.push(issue(
                    at.key(key),
                    format!("{key} is {} bytes long", t.len()),
                    "a DHCP option holds 1-255 bytes",
                ));
            }
        }
    }
    if let Some(d) = &o.domain_name {
        if !is_dns_name(d) {
            out.push(issue(
                at.key("domain_name"),
                format!("{d:?} is not a valid domain name"),
                "write a DNS name such as surgery.example.org",
            ));
        }
    }
    if let Some(servers) = &o.sip_servers {
        let first_is_ip = servers
            .first()
            .is_some_and(|s| s.parse::<Ipv4Addr>().is_ok());
        for (n, s) in servers.iter().enumerate() {
            let is_ip = s.parse::<Ipv4Addr>().is_ok();
            if is_ip != first_is_ip {
                out.push(issue(
                    at.key("sip_servers").index(n),
                    format!("{s:?} mixes host names and addresses"),
                    "RFC 3361 sends either addresses or host names: list only one kind",
                ));
            } else if !is_ip && !is_dns_name(s) {
                out.push(issue(
                    at.key("sip_servers").index(n),
                    format!("{s:?} is neither an IPv4 address nor a host name"),
                    "write an address (10.100.0.1) or a host name (sip.example.com)",
                ));
            }
        }
    }
    let lists = [
        (
            "vendor_specific",
            o.vendor_specific.as_deref().unwrap_or_default(),
        ),
        ("extra", &o.extra[..]),
    ];
    for (key, list) in lists {
        let mut total = 0;
        for (n, v) in list.iter().enumerate() {
            let p = at.key(key).index(n);
            let kinds = [v.text.is_some(), v.hex.is_some(), v.addresses.is_some()];
            match v.payload() {
                Err(_) if kinds.iter().filter(|k| **k).count() != 1 => out.push(issue(
                    p.clone(),
                    format!("code {} needs exactly one of `text`, `hex` or `addresses`", v.code),
                    "e.g. {code: 224, text: \"hello\"}, {code: 224, hex: \"0a640001\"} or {code: 224, addresses: [10.100.0.1]}",
                )),
                Err(e) => out.push(issue(
                    p.key("hex"),
                    format!("invalid hex {:?}: {e}", v.hex.as_ref().map(|h| h.0.as_str()).unwrap_or_default()),
                    "write hex pairs, optionally separated by ':', e.g. \"0a:64:00:01\"",
                )),
                Ok(b) if b.len() > 255 => out.push(issue(
                    p.clone(),
                    format!("the value of code {} is {} bytes long", v.code, b.len()),
                    "a DHCP option holds at most 255 bytes",
                )),
                Ok(b) => total += b.len() + 2,
            }
            if list[..n].iter().any(|o| o.code == v.code) {
                out.push(issue(
                    p.key("code"),
                    format!("code {} is listed twice", v.code),
                    "list each code once",
                ));
            }
            if key != "extra" {
                continue;
            }
            if let Some((_, why)) = DHCP_SERVER_OPTIONS.iter().find(|(c, _)| *c == v.code) {
                out.push(issue(
                    p.key("code"),
                    format!("option {} cannot be set here", v.code),
                    why,
                ));
            } else if let Some((_, name)) = named_option_codes(o).iter().find(|(c, _)| *c == v.code)
            {
                out.push(issue(
                    p.key("code"),
                    format!(
                        "option {} is also set by `{name}` in the same block",
                        v.code
                    ),
                    "set it in one place",
                ));
            }
        }
        if key == "vendor_specific" && total > 255 {
            out.push(issue(
                at.key(key),
                format!("the sub-options take {total} bytes"),
                "option 43 holds at most 255 bytes: shorten or drop sub-options",
            ));
        }
    }
}

/// A DNS host label: letters, digits and inner hyphens, 1-63 characters.
fn is_host_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS name of host labels, at most 253 characters (a trailing dot is allowed).
fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    s.len() <= 253 && s.split('.').all(is_host_label)
}

fn check_ports(cfg: &Config, out: &mut Vec<Issue>) {
    // Every UDP port the box itself listens on must have one owner.
    let mut owned: Vec<(Path, PortRange)> = Vec::new();
    let fixed = |name: &str, port: u16| (Path::of(&[name, "enabled"]), PortRange::single(port));
    if cfg.dns.enabled {
        owned.push(fixed("dns", 53));
    }
    if cfg.dhcp.enabled {
        owned.push(fixed("dhcp", 67));
    }
    if cfg.ntp.enabled {
        owned.push(fixed("ntp", 123));
    }
    if cfg.sip.enabled {
        owned.push((
            Path::of(&["sip", "lan_port"]),
            PortRange::single(cfg.sip.lan_port.0),
        ));
    }
    if cfg.media.enabled {
        owned.push((Path::of(&["media", "lan_ports"]), cfg.media.lan_ports));
        owned.push((Path::of(&["media", "wan_ports"]), cfg.media.wan_ports));
        for k in ["lan_ports", "wan_ports"] {
            let r = if k == "lan_ports" {
                cfg.media.lan_ports
            } else {
                cfg.media.wan_ports
            };
            if r.len() < 4 {
                out.push(issue(
                    Path::of(&["media", k]),
                    format!("{r} holds fewer than 4 ports"),
                    "each call needs an RTP/RTCP pair per side; give each side at least 2 ports per concurrent call",
                ));
            }
        }
        if cfg.media.port_quarantine.as_secs() > 300 {
            out.push(issue(
                Path::of(&["media", "port_quarantine"]),
                format!("port quarantine {} is over 300s", cfg.media.port_quarantine),
                "30s outlasts any late packet; longer only shrinks the pool",
            ));
        }
        if cfg.media.timeout.as_secs() == 0 {
            out.push(issue(
                Path::of(&["media", "timeout"]),
                "the media timeout is zero".into(),
                "use e.g. 60s",
            ));
        }
    }
    if cfg.turn.enabled {
        owned.push((
            Path::of(&["turn", "port"]),
            PortRange::single(cfg.turn.port.0),
        ));
        owned.push((Path::of(&["turn", "relay_ports"]), cfg.turn.relay_ports));
    }
    for a in 0..owned.len() {
        for b in 0..a {
            let ((pa, ra), (pb, rb)) = (&owned[a], &owned[b]);
            if ra.overlaps(rb) {
                out.push(issue(
                    pa.clone(),
                    format!("ports {ra} overlap {rb} used by {pb}"),
                    "give every service its own ports",
                ));
            }
        }
    }
    let ka = cfg.sip.keepalive_interval.as_secs();
    if cfg.sip.enabled && !(5..=120).contains(&ka) {
        out.push(issue(
            Path::of(&["sip", "keepalive_interval"]),
            format!(
                "keepalive interval {} is outside 5s-120s",
                cfg.sip.keepalive_interval
            ),
            "broadband routers drop idle UDP bindings after 30-60 s; 20s is safe",
        ));
    }
    let hi = cfg.sip.health_interval.as_secs();
    if cfg.sip.enabled && !(2..=300).contains(&hi) {
        out.push(issue(
            Path::of(&["sip", "health_interval"]),
            format!(
                "health check interval {} is outside 2s-300s",
                cfg.sip.health_interval
            ),
            "30s notices a dead server within about a minute",
        ));
    }
    if let Some(h) = &cfg.sip.stun_server {
        if let Err(e) = check_server(h) {
            out.push(issue(
                Path::of(&["sip", "stun_server"]),
                format!("`{h}` {e}"),
                "write a host name or IPv4 address, optionally with :port",
            ));
        }
    }
    if let Some(f) = &cfg.sip.tls_ca_file {
        if !f.starts_with('/') {
            out.push(issue(
                Path::of(&["sip", "tls_ca_file"]),
                format!("`{f}` is not an absolute path"),
                "write the full path, e.g. /etc/voxgate/provider-ca.pem",
            ));
        }
    }
    if let Some(list) = &cfg.provider.overrides.sip_fallbacks {
        for (n, h) in list.iter().enumerate() {
            if let Err(e) = check_server(h) {
                out.push(issue(
                    Path::of(&["provider", "overrides", "sip_fallbacks"]).index(n),
                    format!("`{h}` {e}"),
                    "write a host name or IPv4 address, optionally with :port",
                ));
            }
        }
    }
}

/// A SIP server as `host` or `host:port`: a DNS name or an IPv4 address.
pub fn check_server(s: &str) -> Result<(), &'static str> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(1..)) {
            return Err("has a port outside 1-65535");
        }
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
        return Err("is not a host name or IPv4 address");
    }
    Ok(())
}

fn check_management(cfg: &Config, out: &mut Vec<Issue>) {
    for (k, p) in [
        ("control_socket", &cfg.management.control_socket),
        ("state_dir", &cfg.management.state_dir),
    ] {
        if !p.is_absolute() {
            out.push(issue(
                Path::of(&["management", k]),
                format!("{} is not an absolute path", p.display()),
                "write the full path, starting with /",
            ));
        }
    }
}

fn check_provider(cfg: &Config, profile: &Profile, out: &mut Vec<Issue>) {
    let lan = crate::types::IpCidr(cfg.interfaces.lan.address.network().into());
    for (n, net) in cfg.provider.overrides.extra_networks.iter().enumerate() {
        if net.overlaps(&lan) {
            out.push(issue(
                Path::of(&["provider", "overrides", "extra_networks"]).index(n),
                format!("{net} overlaps the voice subnet {lan}"),
                "provider networks are on the internet side; check the address",
            ));
        }
    }
    let in_profile = |path: Path, message: String, hint: &str| Issue {
        in_profile: true,
        ..issue(path, message, hint)
    };
    for (n, net) in profile.networks.iter().enumerate() {
        let p = Path::of(&["networks"]).index(n).key("cidr");
        if net.cidr.overlaps(&lan) {
            out.push(in_profile(
                p.clone(),
                format!("{} overlaps the voice subnet {lan}", net.cidr),
                "renumber the voice LAN (interfaces.lan.address)",
            ));
        }
    }
    // Overlaps between published networks, in O(n log n): allowlists of thousands of entries
    // must validate quickly. Sorted by first address, a network overlaps an earlier one exactly
    // when it starts before the furthest end seen so far.
    let span = |c: &crate::types::IpCidr| -> (bool, u128, u128) {
        match c.0 {
            ipnet::IpNet::V4(n) => (
                false,
                u32::from(n.network()).into(),
                u32::from(n.broadcast()).into(),
            ),
            ipnet::IpNet::V6(n) => (true, n.network().into(), n.broadcast().into()),
        }
    };
    let mut order: Vec<usize> = (0..profile.networks.len()).collect();
    order.sort_by_key(|&i| span(&profile.networks[i].cidr));
    let mut reach: Option<(bool, u128, usize)> = None;
    for &i in &order {
        let (v6, start, end) = span(&profile.networks[i].cidr);
        match reach {
            Some((rv6, rend, j)) if rv6 == v6 && start <= rend => {
                let (later, earlier) = if i > j { (i, j) } else { (j, i) };
                out.push(in_profile(
                    Path::of(&["networks"]).index(later).key("cidr"),
                    format!(
                        "{} overlaps networks[{earlier}] ({})",
                        profile.networks[later].cidr, profile.networks[earlier].cidr
                    ),
                    "list each network once; merge overlapping entries",
                ));
                if end > rend {
                    reach = Some((v6, end, i));
                }
            }
            _ => reach = Some((v6, end, i)),
        }
    }
    if profile.networks.is_empty() {
        out.push(in_profile(
            Path::of(&["networks"]),
            "the profile lists no networks".into(),
            "list the provider's published networks",
        ));
    }
    for (n, s) in profile.services.iter().enumerate() {
        let p = Path::of(&["services"]).index(n);
        if s.protocols.is_empty() {
            out.push(in_profile(
                p.key("protocols"),
                format!("service {} names no protocol", s.name),
                "write protocols: [udp] or [tcp] or [udp, tcp]",
            ));
        }
        if s.ports.is_empty() {
            out.push(in_profile(
                p.key("ports"),
                format!("service {} names no port", s.name),
                "write ports: [5060] or [\"10000-20000\"]",
            ));
        }
        if profile.services[..n].iter().any(|o| o.name == s.name) {
            out.push(in_profile(
                p.key("name"),
                format!("service name {} is used twice", s.name),
                "service names appear in rule comments: make them unique",
            ));
        }
    }
}
