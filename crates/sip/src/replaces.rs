//! Dialog references across the B2BUA (RFC 3891 `Replaces`, RFC 3515 `Refer-To`).
//!
//! A phone doing an attended transfer names, in `Refer-To: <...?Replaces=...>`, the dialog it
//! has with the box on the LAN; the provider knows only the box's other leg of that call, with
//! its own Call-ID and tags. The same holds for an `INVITE` with `Replaces` (call pickup, or a
//! transfer's new call) in either direction. These functions find such references and let the
//! B2BUA swap them for the other leg's dialog; everything else in the header is kept as sent.
//!
//! The header parameter inside the URI is percent-encoded (RFC 3261 19.1.1), so it is decoded,
//! mapped and re-encoded here; no SIP crate we use models URI headers.

use crate::message::{same_name, Message};
use ezk_sip_types::Name;

use crate::message::Headers;

/// A `Replaces` value: a dialog named from the receiving UA's side (`to-tag` is that UA's own
/// tag, `from-tag` the peer's), plus any other parameters (e.g. `early-only`) as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replaces {
    pub(crate) call_id: String,
    pub(crate) to_tag: String,
    pub(crate) from_tag: String,
    pub(crate) rest: Vec<String>,
}

impl Replaces {
    /// Parses `call-id;to-tag=..;from-tag=..[;params]`; `None` without a Call-ID or both tags.
    pub(crate) fn parse(value: &str) -> Option<Replaces> {
        let mut parts = value.split(';').map(str::trim);
        let call_id = parts.next().filter(|c| !c.is_empty())?.to_string();
        let (mut to_tag, mut from_tag, mut rest) = (None, None, Vec::new());
        for p in parts.filter(|p| !p.is_empty()) {
            match p.split_once('=').map(|(n, v)| (n.trim(), v.trim())) {
                Some((n, v)) if n.eq_ignore_ascii_case("to-tag") => to_tag = Some(v.to_string()),
                Some((n, v)) if n.eq_ignore_ascii_case("from-tag") => {
                    from_tag = Some(v.to_string())
                }
                _ => rest.push(p.to_string()),
            }
        }
        Some(Replaces {
            call_id,
            to_tag: to_tag?,
            from_tag: from_tag?,
            rest,
        })
    }
}

impl std::fmt::Display for Replaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{};to-tag={};from-tag={}",
            self.call_id, self.to_tag, self.from_tag
        )?;
        self.rest.iter().try_for_each(|p| write!(f, ";{p}"))
    }
}

/// `value` with every dialog reference mapped by `map` (unmapped ones left as they are), or
/// `None` when nothing changed. `refer_to` says whether the value is a Refer-To (the reference
/// is the URI header `Replaces=`) or a Replaces header.
fn mapped(
    value: &str,
    refer_to: bool,
    map: &dyn Fn(&Replaces) -> Option<Replaces>,
) -> Option<String> {
    if !refer_to {
        return Replaces::parse(value)
            .and_then(|r| map(&r))
            .map(|r| r.to_string());
    }
    // The URI ends at '>' when in angle brackets, else at the first ';' after the headers.
    let q = value.find('?')?;
    let end = value[q..].find(['>', ';']).map_or(value.len(), |e| q + e);
    let headers = &value[q + 1..end];
    let mut changed = false;
    let out: Vec<String> = headers
        .split('&')
        .map(|h| match h.split_once('=') {
            Some((n, v)) if n.eq_ignore_ascii_case("replaces") => {
                match Replaces::parse(&decode(v)).and_then(|r| map(&r)) {
                    Some(r) => {
                        changed = true;
                        format!("{n}={}", encode(&r.to_string()))
                    }
                    None => h.to_string(),
                }
            }
            _ => h.to_string(),
        })
        .collect();
    changed.then(|| format!("{}{}{}", &value[..=q], out.join("&"), &value[end..]))
}

/// A copy of `msg` whose `Replaces` and `Refer-To` name the dialogs `map` gives, or `None`
/// when it has no reference `map` knows (the common case: no copy).
pub(crate) fn map_message(
    msg: &Message,
    map: &dyn Fn(&Replaces) -> Option<Replaces>,
) -> Option<Message> {
    // Runs on every request: the cheap name test, not `Name`'s own equality.
    let kind = |n: &Name| {
        if same_name(n, &Name::REPLACES) {
            Some(false)
        } else if same_name(n, &Name::REFER_TO) {
            Some(true)
        } else {
            None
        }
    };
    let changes: Vec<Option<String>> = msg
        .headers
        .iter()
        .map(|(n, v)| kind(n).and_then(|refer_to| mapped(v, refer_to, map)))
        .collect();
    if changes.iter().all(Option::is_none) {
        return None;
    }
    let mut headers = Headers::new();
    for ((n, v), new) in msg.headers.iter().zip(changes) {
        match new {
            Some(new) => headers.insert(n.clone(), new),
            None => headers.insert(n.clone(), v.clone()),
        }
    }
    Some(Message {
        line: msg.line.clone(),
        headers,
        body: msg.body.clone(),
    })
}

/// Percent-decodes `s` (invalid escapes kept as written).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).and_then(|&c| hex(c)),
            b.get(i + 2).and_then(|&c| hex(c)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but RFC 3261's `unreserved` characters (hnv-unreserved and
/// reserved characters included, as phones write them: `@` `;` `=`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swap(r: &Replaces) -> Option<Replaces> {
        (r.call_id == "lan-2@10.100.0.50").then(|| Replaces {
            call_id: "wan-2@voxgate".into(),
            to_tag: "prov".into(),
            from_tag: "box".into(),
            rest: r.rest.clone(),
        })
    }

    #[test]
    fn parses_and_prints_with_other_parameters_kept() {
        let r = Replaces::parse("abc@h ; from-tag=f;to-tag=t;early-only").unwrap();
        assert_eq!(
            (r.call_id.as_str(), r.to_tag.as_str(), r.from_tag.as_str()),
            ("abc@h", "t", "f")
        );
        assert_eq!(r.to_string(), "abc@h;to-tag=t;from-tag=f;early-only");
        assert_eq!(
            Replaces::parse("abc;to-tag=t"),
            None,
            "both tags are required"
        );
        assert_eq!(Replaces::parse(";to-tag=t;from-tag=f"), None);
    }

    #[test]
    fn maps_the_replaces_header() {
        assert_eq!(
            mapped(
                "lan-2@10.100.0.50;to-tag=b;from-tag=p;early-only",
                false,
                &swap
            )
            .as_deref(),
            Some("wan-2@voxgate;to-tag=prov;from-tag=box;early-only")
        );
        assert_eq!(mapped("other;to-tag=b;from-tag=p", false, &swap), None);
    }

    #[test]
    fn maps_the_uri_header_of_refer_to_and_keeps_the_rest() {
        let v = "<sip:1003@198.51.100.10?Priority=urgent&Replaces=lan-2%4010.100.0.50%3Bto-tag%3Db%3Bfrom-tag%3Dp>;x=1";
        assert_eq!(
            mapped(v, true, &swap).as_deref(),
            Some("<sip:1003@198.51.100.10?Priority=urgent&Replaces=wan-2%40voxgate%3Bto-tag%3Dprov%3Bfrom-tag%3Dbox>;x=1")
        );
        // Lowercase escapes, no angle brackets.
        let v = "sip:1003@example.com?replaces=lan-2%4010.100.0.50%3bto-tag%3db%3bfrom-tag%3dp";
        assert_eq!(
            mapped(v, true, &swap).as_deref(),
            Some("sip:1003@example.com?replaces=wan-2%40voxgate%3Bto-tag%3Dprov%3Bfrom-tag%3Dbox")
        );
        assert_eq!(mapped("<sip:1003@example.com>", true, &swap), None);
        assert_eq!(
            mapped(
                "<sip:1003@example.com?Replaces=x%3Bto-tag%3Da%3Bfrom-tag%3Db>",
                true,
                &swap
            ),
            None
        );
    }

    #[test]
    fn decoding_keeps_bad_escapes() {
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("a%zz%41"), "a%zzA");
        assert_eq!(encode("a@b;c=d e"), "a%40b%3Bc%3Dd%20e");
    }
}
