//! From, To and Contact values (`name-addr` / `addr-spec` with parameters), read by hand.
//!
//! Why not the typed headers of ezk-sip-types: its quoted-string parser rejects escaped quotes
//! in display names (`"J Rosenberg \\\""`, RFC 4475 `wsinv`), so a valid From would make the
//! whole request fail. This reader handles quoted-pairs, whitespace around `;` and `=`, and
//! bare URIs whose parameters belong to the header (RFC 3261 20.10). It only reads; header
//! values are forwarded as received.

/// A parsed From/To/Contact value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name without quotes (escapes kept as written), if any.
    pub display: Option<String>,
    /// The URI, without angle brackets.
    pub uri: String,
    /// Header parameters (`tag`, `expires`, `q`, ...), names lower-cased.
    pub params: Vec<(String, Option<String>)>,
}

impl NameAddr {
    /// The value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag")
    }
}

/// Reads one name-addr or addr-spec; `None` when it is malformed (unbalanced quotes or angle
/// brackets, no URI).
pub fn parse(value: &str) -> Option<NameAddr> {
    let s = value.trim();
    let (display, rest) = if let Some(body) = s.strip_prefix('"') {
        let mut escaped = false;
        let mut end = None;
        for (i, c) in body.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        (Some(body[..end].to_string()), body[end + 1..].trim_start())
    } else if let Some(lt) = s.find('<') {
        let name = s[..lt].trim();
        ((!name.is_empty()).then(|| name.to_string()), &s[lt..])
    } else {
        (None, s)
    };
    let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
        let gt = inner.find('>')?;
        (inner[..gt].trim().to_string(), &inner[gt + 1..])
    } else {
        if display.is_some() {
            return None; // a quoted display name must be followed by <uri>
        }
        // addr-spec: everything up to the first ';' is the URI; the rest are header params.
        match rest.find(';') {
            Some(i) => (rest[..i].trim().to_string(), &rest[i..]),
            None => (rest.trim().to_string(), ""),
        }
    };
    if uri.is_empty() || uri.contains(['<', '>', ' ']) || !uri.contains(':') {
        return None;
    }
    let mut out = Vec::new();
    for p in params.split(';') {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        match p.split_once('=') {
            Some((n, v)) => out.push((n.trim().to_ascii_lowercase(), Some(v.trim().to_string()))),
            None => out.push((p.to_ascii_lowercase(), None)),
        }
    }
    if !params.trim().is_empty() && !params.trim_start().starts_with(';') {
        return None;
    }
    Some(NameAddr {
        display,
        uri,
        params: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_awkward_ones() {
        let a = parse(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .unwrap();
        assert_eq!(a.uri, "sip:jdrosen@example.com");
        assert_eq!(a.tag(), Some("98asjd8"));
        let b = parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n").unwrap();
        assert_eq!(
            (b.uri.as_str(), b.tag()),
            ("sip:vivekg@chair-dnrc.example.com", Some("1918181833n"))
        );
        let c = parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(c.display.as_deref(), Some("caller"));
        let d = parse("<sip:a@b;lr;x=y>;expires=60;q=0.5").unwrap();
        assert_eq!(d.uri, "sip:a@b;lr;x=y");
        assert_eq!(d.param("expires"), Some("60"));
        assert!(
            parse("\"Mr. J. User <sip:j.user@example.com>").is_none(),
            "unbalanced quote"
        );
        assert!(parse("<sip:a@b").is_none());
        assert!(parse("").is_none());
        assert!(parse("\"name\" sip:a@b").is_none());
    }
}
