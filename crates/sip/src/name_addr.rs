//! From, To and Contact values (`name-addr` / `addr-spec` with parameters), read by hand.
//!
//! Why not the typed headers of ezk-sip-types: its quoted-string parser rejects escaped quotes
//! in display names (`"J Rosenberg \\\""`, RFC 4475 `wsinv`), so a valid From would make the
//! whole request fail. This reader handles quoted-pairs, whitespace around `;` and `=`, and
//! bare URIs whose parameters belong to the header (RFC 3261 20.10). It only reads; header
//! values are forwarded as received.
//!
//! It is tolerant where RFC 4475 asks for tolerance (`lwsdisp`: no space before `<`; `wsinv`:
//! LWS around `;` and `=`) and strict where RFC 4475 shows a malformed value that would be
//! forwarded wrongly otherwise: an unbalanced quote (`quotbal`), whitespace inside the angle
//! brackets (`badaspec`), an unquoted display name with separator characters (`baddn`), a bare
//! URI with `?headers` (`regbadct`) and empty parameters (`badinv01`).

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
        // RFC 4475 baddn: an unquoted display name is tokens and LWS; one with a separator
        // (`Bell, Alexander`) is refused. Non-ASCII is let through: phones send it unquoted.
        if name
            .chars()
            .any(|c| c.is_ascii_control() || "()<>@,;:\\\"/[]?={}".contains(c))
        {
            return None;
        }
        ((!name.is_empty()).then(|| name.to_string()), &s[lt..])
    } else {
        (None, s)
    };
    let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
        let gt = inner.find('>')?;
        let uri = &inner[..gt];
        // RFC 4475 badaspec: `< sip:t.watson@example.org >`. LAQUOT and RAQUOT allow no
        // whitespace inside the brackets (RFC 3261 25.1).
        if uri.trim() != uri {
            return None;
        }
        (uri.to_string(), &inner[gt + 1..])
    } else {
        if display.is_some() {
            return None; // a quoted display name must be followed by <uri>
        }
        // addr-spec: everything up to the first ';' is the URI; the rest are header params.
        let (uri, params) = match rest.find(';') {
            Some(i) => (rest[..i].trim().to_string(), &rest[i..]),
            None => (rest.trim().to_string(), ""),
        };
        // RFC 4475 regbadct: a URI with headers (or a comma) must be in <> (RFC 3261 20.10).
        if uri.contains(['?', ',']) {
            return None;
        }
        (uri, params)
    };
    if uri.is_empty() || uri.contains(['<', '>', ' ']) || !uri.contains(':') {
        return None;
    }
    let params = params.trim();
    let mut out = Vec::new();
    if !params.is_empty() {
        // Parameters follow `;`; an empty one (`;;`, RFC 4475 badinv01) is malformed.
        let list = params.strip_prefix(';')?;
        for p in list.split(';') {
            let p = p.trim();
            if p.is_empty() {
                return None;
            }
            match p.split_once('=') {
                Some((n, v)) => {
                    out.push((n.trim().to_ascii_lowercase(), Some(v.trim().to_string())))
                }
                None => out.push((p.to_ascii_lowercase(), None)),
            }
        }
    }
    Some(NameAddr {
        display,
        uri,
        params: out,
    })
}

/// Reads a header value that may hold several name-addrs separated by commas (Contact):
/// commas inside quotes or angle brackets do not separate. `None` when any value is
/// malformed or empty.
pub fn parse_list(value: &str) -> Option<Vec<NameAddr>> {
    split_list(value).into_iter().map(parse).collect()
}

/// The entries of a comma-separated header value (Contact, Route, Record-Route), split at
/// top-level commas only (not inside quotes or `<...>`), each as written, trimmed.
pub fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out
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

    #[test]
    fn refuses_what_rfc4475_shows_malformed() {
        // badaspec, baddn, regbadct, badinv01.
        assert!(parse("\"Watson, Thomas\" < sip:t.watson@example.org >").is_none());
        assert!(parse("\"Watson, Thomas\" <sip:t.watson@example.org >").is_none());
        assert!(parse("Bell, Alexander <sip:a.g.bell@example.com>;tag=43").is_none());
        assert!(parse("a@b <sip:a@b>").is_none());
        assert!(parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E").is_none());
        assert!(parse("\"Joe\" <sip:joe@example.org>;;;;").is_none());
        assert!(parse("<sip:joe@example.org>;tag=1;").is_none());
        assert!(parse("<sip:joe@example.org> tag=1").is_none());
        // ... and keeps what is merely unusual.
        let q = parse("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>").unwrap();
        assert_eq!(
            q.uri,
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
        );
        assert_eq!(
            parse("\"Watson, Thomas\" <sip:t@example.org>")
                .unwrap()
                .display
                .as_deref(),
            Some("Watson, Thomas")
        );
        assert_eq!(
            parse("T. Watson <sip:t@example.org>")
                .unwrap()
                .display
                .as_deref(),
            Some("T. Watson")
        );
        assert_eq!(
            parse("Jörg <sip:j@example.org>")
                .unwrap()
                .display
                .as_deref(),
            Some("Jörg")
        );
        assert_eq!(
            parse("sip:+1972@gw1.example.net;unknownparam")
                .unwrap()
                .params
                .len(),
            1
        );
    }

    #[test]
    fn splits_lists_only_at_top_level_commas() {
        let l = parse_list("\"a, b\" <sip:a@b;x=1,2>;q=0.5 ,<sip:c@d>, sip:e@f;expires=3").unwrap();
        let uris: Vec<&str> = l.iter().map(|n| n.uri.as_str()).collect();
        assert_eq!(uris, ["sip:a@b;x=1,2", "sip:c@d", "sip:e@f"]);
        assert_eq!(l[0].display.as_deref(), Some("a, b"));
        assert_eq!(l[2].param("expires"), Some("3"));
        assert!(parse_list("<sip:a@b>,").is_none());
        assert!(parse_list("<sip:a@b>,,<sip:c@d>").is_none());
        assert!(parse_list("\"x\\\", y\" <sip:a@b>").is_some());
        assert!(parse_list("").is_none());
    }
}
