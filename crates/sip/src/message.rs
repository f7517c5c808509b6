//! SIP messages on the wire: parsing and printing, on `ezk-sip-types`.
//!
//! Why that crate: its parser is tolerant where RFC 4475 requires it (whitespace before the
//! colon, folded lines, compact header names, escaped URIs), and it keeps every header value
//! as received, so headers voxgate does not interpret pass through unchanged. `rsip`, the other
//! candidate, rejects whitespace before the colon and folded headers (RFC 4475 `wsinv`) and has
//! not been released since 2022. What this module adds is the message-level checks a proxy
//! needs (mandatory headers, CSeq method, Content-Length, version) with errors that say which
//! response to send.

use std::fmt::Write as _;

use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sip_types::header::typed::{CSeq, CallID, MaxForwards, Via};
use ezk_sip_types::header::{ConstNamed, DecodeValues};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::{Method, Name, StatusCode};

pub use crate::headers::Headers;

/// Whether two header names are the same header. `Name`'s own equality compares every
/// spelling of both names case-insensitively: run against every header of a message, it was
/// a fifth of the B2BUA's instructions per call (`cargo bench -p voxgate-sip --bench core`
/// under callgrind). Known names parse into one variant with one canonical print form, so
/// comparing print forms (ignoring case, for names the crate does not know) is the same test.
pub fn same_name(a: &Name, b: &Name) -> bool {
    a.as_print_str().eq_ignore_ascii_case(b.as_print_str())
}

/// The values of header `name`, in order.
pub fn values<'a>(h: &'a Headers, name: &'a Name) -> impl Iterator<Item = &'a bytesstr::BytesStr> {
    h.iter()
        .filter(move |(n, _)| same_name(n, name))
        .map(|(_, v)| v)
}

/// Whether `h` has header `name`.
pub fn has(h: &Headers, name: &Name) -> bool {
    values(h, name).next().is_some()
}

/// The byte offset of the first `sep` in `s` outside a quoted string. A Via parameter's value
/// may be a quoted-string (RFC 3261 25.1 `gen-value`), where `,` and `;` are text and `\`
/// escapes the next character: splitting a Via value at the first comma or semicolon as
/// written would cut such a parameter in two. Hand-written: the crate's typed Via prints every
/// parameter again, and decoding it was a tenth of the B2BUA's work per call (see `via_key`).
fn find_unquoted(s: &str, sep: u8) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            return Some(i);
        }
    }
    None
}

/// `s` split at every `sep` outside a quoted string (see [`find_unquoted`]).
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_unquoted(r, sep) {
            Some(i) => {
                rest = Some(&r[i + 1..]);
                Some(&r[..i])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// The first value of a header line that may combine several (`a, b`), and the rest from
/// the comma on (empty if none).
fn first_value(value: &str) -> (&str, &str) {
    value.split_at(find_unquoted(value, b',').unwrap_or(value.len()))
}

/// The sent-by of a Via's `SIP / 2.0 / UDP host:port` part (its parameters cut off), as
/// written but trimmed: it follows the transport after the last slash.
fn sent_by(head: &str) -> Option<&str> {
    let (_, after) = head.rsplit_once('/')?;
    let after = after.trim_start();
    let transport_end = after.find(char::is_whitespace)?;
    Some(after[transport_end..].trim())
}

/// Marks the top Via of a request received from `src` as RFC 3261 18.2.1 and RFC 3581 4 ask
/// of a server: `received` with the source address when the sent-by host differs from it or
/// the client asked for `rport`, and `rport` filled in with the source port. Responses copy
/// the Via, so the sender learns how the box saw it. Written by hand on the raw value (the
/// typed Via would print every parameter again); a Via that cannot be read is left alone.
pub fn stamp_via(headers: &mut Headers, src: std::net::SocketAddr) {
    let Some(value) = headers.first_mut(&Name::VIA) else {
        return;
    };
    let (first, rest) = first_value(value);
    let mut parts = split_unquoted(first, b';');
    let Some(head) = parts.next() else {
        return;
    };
    let Some(sent_by) = sent_by(head) else {
        return;
    };
    let host = match sent_by.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => sent_by.split(':').next().unwrap_or(sent_by),
    };
    let params: Vec<&str> = parts.collect();
    let is = |p: &str, name: &str| param_name(p).eq_ignore_ascii_case(name);
    let rport = params.iter().any(|p| is(p, "rport"));
    let same_host = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip == src.ip());
    if !rport && same_host {
        return;
    }
    let mut out = String::with_capacity(value.len() + 40);
    out.push_str(head);
    for p in &params {
        if is(p, "rport") {
            let _ = write!(out, ";rport={}", src.port());
        } else if !is(p, "received") {
            out.push(';');
            out.push_str(p);
        }
    }
    let _ = write!(out, ";received={}", src.ip());
    out.push_str(rest);
    *value = BytesStr::from(out);
}

/// Header `H` decoded from all its values, `None` when absent.
pub fn typed<H: ConstNamed + DecodeValues>(h: &Headers) -> Option<Result<H, ()>> {
    let name = H::NAME;
    let mut it = values(h, &name).peekable();
    it.peek()?;
    Some(H::decode(&mut it).map(|(_, v)| v).map_err(|_| ()))
}

/// Room for the start line and Content-Length in [`Message::to_bytes`]' first allocation (a
/// longer Request-URI just grows the buffer once).
const LINE_ROOM: usize = 160;

/// Largest message accepted (UDP datagrams and TCP frames alike).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A parsed SIP message.
#[derive(Debug, Clone)]
pub struct Message {
    /// Request line or status line.
    pub line: MessageLine,
    /// Headers, values as received.
    pub headers: Headers,
    /// The body (exactly Content-Length bytes).
    pub body: Bytes,
}

/// Why a message was refused, and what the sender gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a SIP message at all (or its start line is unreadable): dropped silently.
    #[error("not a SIP message: {0}")]
    Garbage(String),
    /// A request with a problem the sender should hear about.
    #[error("{code} {reason}")]
    Reject {
        /// Response code to send (400, 416, 505, ...).
        code: u16,
        /// Reason phrase naming the problem.
        reason: String,
    },
    /// A response that is malformed: responses are never answered, only dropped.
    #[error("malformed response: {0}")]
    BadResponse(String),
    /// A stream frame is not complete yet (TCP).
    #[error("incomplete message")]
    Incomplete,
}

impl Message {
    /// The request method, if this is a request.
    pub fn method(&self) -> Option<&Method> {
        self.line.request_method()
    }

    /// The status code, if this is a response.
    pub fn code(&self) -> Option<u16> {
        match &self.line {
            MessageLine::Response(s) => Some(s.code.into_u16()),
            MessageLine::Request(_) => None,
        }
    }

    /// The top Via's sent-by (lower case, without whitespace) and `branch` (as written, if
    /// any): the keys of transaction matching (RFC 3261 17.1.3, 17.2.3), read from the raw
    /// value. Decoding every Via with the typed reader, as [`Message::top_via`] does, was a
    /// tenth of the B2BUA's instructions per call; [`parse`] has checked the Vias already.
    pub fn via_key(&self) -> Option<(String, Option<String>)> {
        let value = values(&self.headers, &Name::VIA).next()?.as_str();
        let (first, _) = first_value(value);
        let head = split_unquoted(first, b';').next()?;
        let sent_by: String = sent_by(head)?
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if sent_by.is_empty() {
            return None;
        }
        Some((sent_by, raw_branch(value)))
    }

    /// The top Via header. Its `branch` is the one written on the wire: the crate's parameter
    /// reader decodes `%HH`, but a branch is a token where `%` is no escape (RFC 4475
    /// `intmeth`: `z9hG4bK-.!%66*_+`'~` is not `z9hG4bK-.!f*_+`'~`), and transactions are
    /// matched on it.
    pub fn top_via(&self) -> Option<Via> {
        let mut via = typed::<Vec<Via>>(&self.headers)
            .and_then(|r| r.ok())
            .and_then(|v| v.into_iter().next())?;
        let raw = values(&self.headers, &Name::VIA)
            .next()
            .and_then(|v| raw_branch(v.as_str()));
        if let Some(branch) = raw {
            via.params.push_or_edit("branch", branch);
        }
        Some(via)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<String> {
        typed::<CallID>(&self.headers)?
            .ok()
            .map(|c| c.0.to_string())
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Option<CSeq> {
        typed::<CSeq>(&self.headers)?.ok()
    }

    /// The message as bytes, with a Content-Length that matches the body. The buffer is sized
    /// up front: transactions keep the bytes they sent (up to 32 s, RFC 3261 Timer J), and a
    /// string grown by doubling held up to twice the message's size, reallocated on the way.
    pub fn to_bytes(&self) -> Vec<u8> {
        use std::fmt::Write as _;
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_print_str().len() + v.len() + 4)
            .sum();
        let mut out = String::with_capacity(LINE_ROOM + headers + self.body.len());
        let _ = write!(out, "{}\r\n", self.line.default_print_ctx());
        for (name, value) in self.headers.iter() {
            if !same_name(name, &Name::CONTENT_LENGTH) {
                let _ = write!(out, "{}: {value}\r\n", name.as_print_str());
            }
        }
        let _ = write!(out, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = out.into_bytes();
        out.extend_from_slice(&self.body);
        out.shrink_to_fit();
        out
    }
}

/// The `branch` parameter of the first Via value in `value`, as written.
fn raw_branch(value: &str) -> Option<String> {
    let (first, _) = first_value(value);
    split_unquoted(first, b';').skip(1).find_map(|p| {
        let (name, v) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| v.trim().to_string())
    })
}

/// The name of a `;`-parameter as written, trimmed: `branch` of ` branch=z9hG4bK1`.
fn param_name(p: &str) -> &str {
    p.split_once('=').map_or(p, |(name, _)| name).trim()
}

/// Methods voxgate knows (RFC 3261 and the extensions the B2BUA relays).
fn known_method(m: &Method) -> bool {
    [
        Method::INVITE,
        Method::ACK,
        Method::CANCEL,
        Method::BYE,
        Method::REGISTER,
        Method::OPTIONS,
        Method::INFO,
        Method::PRACK,
        Method::UPDATE,
        Method::SUBSCRIBE,
        Method::NOTIFY,
        Method::REFER,
        Method::MESSAGE,
        Method::PUBLISH,
    ]
    .contains(m)
}

fn reject(code: u16, reason: impl Into<String>) -> ParseError {
    ParseError::Reject {
        code,
        reason: reason.into(),
    }
}

/// Parses one message from `bytes`. With `stream` (TCP), Content-Length is required and a
/// short buffer is [`ParseError::Incomplete`]; on UDP the datagram is the message. Returns
/// the message and how many bytes it used.
pub fn parse(bytes: &[u8], stream: bool) -> Result<(Message, usize), ParseError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(ParseError::Garbage(format!(
            "{} bytes is too large",
            bytes.len()
        )));
    }
    let buffer = Bytes::copy_from_slice(bytes);
    let mut parser = PullParser::new(&buffer, 0);
    let mut line: Option<MessageLine> = None;
    let mut headers = Headers::new();
    let mut is_request = true;
    for item in &mut parser {
        let raw = item.map_err(|_| {
            if stream {
                ParseError::Incomplete
            } else {
                ParseError::Garbage("the header section does not end".into())
            }
        })?;
        let text = std::str::from_utf8(raw).map_err(|_| {
            if line.is_none() {
                ParseError::Garbage("start line is not UTF-8".into())
            } else {
                reject(400, "Header Not UTF-8")
            }
        })?;
        match &line {
            None => {
                let parsed = start_line(&buffer, text)?;
                is_request = parsed.is_request();
                line = Some(parsed);
            }
            Some(_) => match Line::parse(&buffer, text) {
                Ok((_, l)) => headers.insert(l.name, l.value),
                Err(_) if is_request => {
                    tracing::debug!(line = %text.chars().take(80).collect::<String>(), "malformed header line");
                    return Err(reject(400, "Malformed Header Line"));
                }
                Err(_) => return Err(ParseError::BadResponse(format!("header line {text:?}"))),
            },
        }
    }
    let line = line.ok_or_else(|| ParseError::Garbage("empty message".into()))?;
    let head_end = parser.head_end();
    let bad = |msg: &str| {
        if is_request {
            reject(400, msg)
        } else {
            ParseError::BadResponse(msg.to_string())
        }
    };

    let lengths: Vec<&str> = values(&headers, &Name::CONTENT_LENGTH)
        .map(|v| v.as_str())
        .collect();
    let body_len = match lengths.as_slice() {
        [] if stream => return Err(bad("Missing Content-Length")),
        [] => buffer.len() - head_end,
        [one] => one
            .trim()
            .parse::<usize>()
            .map_err(|_| bad("Bad Content-Length"))?,
        [first, rest @ ..] => {
            if rest.iter().any(|v| v.trim() != first.trim()) {
                return Err(bad("Conflicting Content-Length"));
            }
            first
                .trim()
                .parse::<usize>()
                .map_err(|_| bad("Bad Content-Length"))?
        }
    };
    let end = head_end
        .checked_add(body_len)
        .ok_or_else(|| bad("Bad Content-Length"))?;
    if end > buffer.len() {
        return Err(if stream {
            ParseError::Incomplete
        } else {
            bad("Content-Length Exceeds The Datagram")
        });
    }
    let msg = Message {
        line,
        headers,
        body: buffer.slice(head_end..end),
    };
    check(&msg).map_err(|(code, reason)| {
        if is_request {
            reject(code, reason)
        } else {
            ParseError::BadResponse(reason)
        }
    })?;
    // On UDP, anything after Content-Length bytes is discarded (RFC 3261 18.3).
    Ok((msg, end))
}

fn start_line(buffer: &Bytes, text: &str) -> Result<MessageLine, ParseError> {
    // A request line is exactly three tokens separated by single spaces (RFC 3261 25.1); the
    // crate's parser is lenient about whitespace inside the URI, which RFC 4475 forbids.
    let strict = text.starts_with("SIP/") || text.split(' ').count() == 3;
    if let Ok((rest, l)) = MessageLine::parse(buffer)(text) {
        if rest.trim().is_empty() && (strict || !l.is_request()) {
            if let MessageLine::Request(r) = &l {
                // RFC 4475 escruri: headers in a Request-URI are not allowed (RFC 3261
                // 19.1.5); a proxy must not act on them, and the B2BUA never forwards them.
                if !r.uri.header_params.is_empty() {
                    return Err(reject(400, "Headers In Request-URI"));
                }
            }
            return Ok(l);
        }
    }
    // Work out which response the sender deserves, if any.
    if text.starts_with("SIP/") {
        return Err(ParseError::BadResponse(format!("status line {text:?}")));
    }
    // RFC 4475 trws: SP after the version is malformed ("acceptable to reject"); it is
    // answered like any other bad request line rather than dropped.
    let trimmed = text.trim_end_matches([' ', '\t']);
    if trimmed.len() < text.len()
        && trimmed.split(' ').count() == 3
        && trimmed.ends_with(" SIP/2.0")
    {
        return Err(reject(400, "Whitespace After Request Line"));
    }
    let parts: Vec<&str> = text.split(' ').collect();
    match parts.as_slice() {
        [method, uri, version] if !method.is_empty() && !uri.is_empty() => {
            if !version.starts_with("SIP/") {
                return Err(ParseError::Garbage(format!("start line {text:?}")));
            }
            if *version != "SIP/2.0" {
                return Err(reject(505, "Version Not Supported"));
            }
            let scheme = uri
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if uri.contains(':') && scheme != "sip" && scheme != "sips" && !uri.starts_with('<') {
                return Err(reject(416, "Unsupported URI Scheme"));
            }
            Err(reject(400, "Bad Request-URI"))
        }
        [_, _, ..] if parts.last().is_some_and(|v| v.starts_with("SIP/")) => {
            Err(reject(400, "Bad Request Line"))
        }
        _ => Err(ParseError::Garbage(format!("start line {text:?}"))),
    }
}

/// Message-level rules of RFC 3261 section 8.1.1 / 8.2 that every message must meet; the
/// error is the response code a request deserves and the reason.
fn check(msg: &Message) -> Result<(), (u16, String)> {
    rules(msg).map_err(|e| match e {
        Bad::Code(code, reason) => (code, reason),
        Bad::Request(reason) => (400, reason),
    })
}

enum Bad {
    Request(String),
    Code(u16, String),
}

impl From<String> for Bad {
    fn from(s: String) -> Bad {
        Bad::Request(s)
    }
}

fn rules(msg: &Message) -> Result<(), Bad> {
    let h = &msg.headers;
    for (name, label) in [
        (Name::VIA, "Via"),
        (Name::FROM, "From"),
        (Name::TO, "To"),
        (Name::CALL_ID, "Call-ID"),
        (Name::CSEQ, "CSeq"),
    ] {
        if !has(h, &name) {
            return Err(format!("Missing {label}").into());
        }
    }
    for (name, label) in [
        (Name::FROM, "From"),
        (Name::TO, "To"),
        (Name::CALL_ID, "Call-ID"),
        (Name::CSEQ, "CSeq"),
        (Name::MAX_FORWARDS, "Max-Forwards"),
    ] {
        if values(h, &name).count() > 1 {
            return Err(format!("Multiple {label} Values").into());
        }
    }
    for (name, label) in [(Name::FROM, "Bad From"), (Name::TO, "Bad To")] {
        let v = values(h, &name)
            .next()
            .map(|v| v.as_str())
            .unwrap_or_default();
        crate::name_addr::parse(v).ok_or_else(|| label.to_string())?;
    }
    // Contact values are read the same way (RFC 4475 regbadct, badinv01); `*` is REGISTER's.
    for v in values(h, &Name::CONTACT) {
        if v.trim() != "*" && crate::name_addr::parse_list(v).is_none() {
            return Err("Bad Contact".to_string().into());
        }
    }
    typed::<Vec<Via>>(h)
        .and_then(Result::ok)
        .ok_or_else(|| "Bad Via".to_string())?;
    // The crate's Via reader skips empty values and parameters (RFC 4475 badinv01:
    // `Via: SIP/2.0/UDP 192.0.2.15;;,;,,`); the grammar has none.
    for v in values(h, &Name::VIA) {
        let empty = split_unquoted(v, b',').any(|value| {
            value.trim().is_empty() || split_unquoted(value, b';').any(|p| p.trim().is_empty())
        });
        if empty {
            return Err("Bad Via".to_string().into());
        }
    }
    let cseq = typed::<CSeq>(h)
        .and_then(Result::ok)
        .ok_or_else(|| "Bad CSeq".to_string())?;
    if cseq.cseq >= 1 << 31 {
        return Err("CSeq Number Too Large".to_string().into());
    }
    if let Some(method) = msg.method() {
        if cseq.method != *method {
            // RFC 4475 mismatch02: with an unknown method, 501 is the better answer ("a 400
            // is also acceptable, but choosing a 501 ... has better future-proof
            // characteristics"); a known method that disagrees with CSeq is a 400 (mismatch01).
            if !known_method(method) {
                return Err(Bad::Code(501, "Not Implemented".into()));
            }
            return Err("CSeq Method Does Not Match".to_string().into());
        }
        if has(h, &Name::MAX_FORWARDS) {
            // The typed value is a u8: anything above 255 fails here.
            typed::<MaxForwards>(h)
                .and_then(Result::ok)
                .ok_or_else(|| "Bad Max-Forwards".to_string())?;
        }
    }
    if let MessageLine::Response(s) = &msg.line {
        let code = s.code.into_u16();
        if !(100..=699).contains(&code) {
            return Err(format!("status code {code} out of range").into());
        }
    }
    Ok(())
}

/// The answer to a request that [`parse`] refused with [`ParseError::Reject`]: a response
/// with `code` and `reason` built from the raw bytes, copying the Via, From, To, Call-ID and
/// CSeq lines as received (RFC 3261 8.2.6.2; compact names and folded lines included), with
/// `to_tag` added to the To header when it has none. `None` when there is no Via to send it
/// back on, or the bytes are no request at all. Only the first From, To, Call-ID and CSeq are
/// copied (RFC 4475 multi01 has two of each).
pub fn reject_response(
    bytes: &[u8],
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
) -> Option<Vec<u8>> {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut lines = head.split("\r\n");
    let start = lines.next()?;
    if start.starts_with("SIP/") || !start.contains(" SIP/") {
        return None;
    }
    // Unfold: a line starting with whitespace continues the one before.
    let mut fields: Vec<String> = Vec::new();
    for l in lines {
        match fields.last_mut() {
            Some(last) if l.starts_with([' ', '\t']) => {
                last.push_str("\r\n");
                last.push_str(l);
            }
            _ => fields.push(l.to_string()),
        }
    }
    let canonical = |name: &str| -> Option<&'static str> {
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" => Some("Via"),
            "from" | "f" => Some("From"),
            "to" | "t" => Some("To"),
            "call-id" | "i" => Some("Call-ID"),
            "cseq" => Some("CSeq"),
            _ => None,
        }
    };
    let mut copied: Vec<(&'static str, String)> = Vec::new();
    for f in &fields {
        let Some((name, value)) = f.split_once(':') else {
            continue;
        };
        let Some(name) = canonical(name) else {
            continue;
        };
        if name != "Via" && copied.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let mut value = value.trim().to_string();
        if name == "To" {
            if let Some(tag) = to_tag {
                let has_tag = crate::name_addr::parse(&value).is_some_and(|n| n.tag().is_some());
                if !has_tag {
                    value = format!("{value};tag={tag}");
                }
            }
        }
        copied.push((name, value));
    }
    if !copied.iter().any(|(n, _)| *n == "Via") {
        return None;
    }
    let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for (name, value) in copied {
        out += &format!("{name}: {value}\r\n");
    }
    out += "Content-Length: 0\r\n\r\n";
    Some(out.into_bytes())
}

/// A request built by the box: the request line is parsed as a received one would be (the
/// URI is the part that comes from elsewhere), the headers are taken as given, in order.
/// Printing the whole request and parsing it back was a fifth of the B2BUA's instructions per
/// call; the header values come from messages [`parse`] accepted or from the box itself.
pub fn request(
    method: &str,
    uri: &str,
    headers: impl IntoIterator<Item = (Name, String)>,
    body: &[u8],
) -> Result<Message, ParseError> {
    let text = format!("{method} {uri} SIP/2.0");
    let buffer = Bytes::from(text);
    let line = start_line(&buffer, std::str::from_utf8(&buffer).unwrap_or_default())?;
    if !line.is_request() {
        return Err(reject(400, "Not A Request"));
    }
    let mut h = Headers::with_capacity(12);
    for (name, value) in headers {
        if !same_name(&name, &Name::CONTENT_LENGTH) {
            h.insert(name, value);
        }
    }
    Ok(Message {
        line,
        headers: h,
        body: Bytes::copy_from_slice(body),
    })
}

/// A response to `req` with `code`, copying the headers RFC 3261 8.2.6.2 requires. The To tag
/// is added when given (a UAS adds one to every non-100 response).
pub fn response(req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
    let mut headers = Headers::new();
    for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
        for v in values(&req.headers, &name) {
            // The tag is appended to the To as written (a header parameter, after the
            // name-addr or the addr-spec alike), unless it has one.
            match to_tag {
                Some(tag)
                    if same_name(&name, &Name::TO)
                        && crate::name_addr::parse(v).is_some_and(|to| to.tag().is_none()) =>
                {
                    headers.insert(name.clone(), format!("{v};tag={tag}"));
                }
                _ => headers.insert(name.clone(), v.clone()),
            }
        }
    }
    let code = StatusCode::from(code);
    Message {
        line: MessageLine::Response(ezk_sip_types::msg::StatusLine {
            code,
            reason: Some(reason.to_string().into()),
        }),
        headers,
        body: Bytes::new(),
    }
}
