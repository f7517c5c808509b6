//! SIP messages on the wire: parsing and printing, on `ezk-sip-types`.
//!
//! Why that crate: its parser is tolerant where RFC 4475 requires it (whitespace before the
//! colon, folded lines, compact header names, escaped URIs), and it keeps every header value
//! as received, so headers voxgate does not interpret pass through unchanged. `rsip`, the other
//! candidate, rejects whitespace before the colon and folded headers (RFC 4475 `wsinv`) and has
//! not been released since 2022. What this module adds is the message-level checks a proxy
//! needs (mandatory headers, CSeq method, Content-Length, version) with errors that say which
//! response to send.

use bytes::Bytes;
use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, FromTo, MaxForwards, Via};
use ezk_sip_types::msg::{Line, MessageLine, PullParser};
use ezk_sip_types::parse::Parse;
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::{Headers, Method, Name, StatusCode};

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

    /// The top Via header.
    pub fn top_via(&self) -> Option<Via> {
        self.headers
            .try_get_named::<Vec<Via>>()
            .and_then(|r| r.ok())
            .and_then(|v| v.into_iter().next())
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<String> {
        self.headers
            .get_named::<CallID>()
            .ok()
            .map(|c| c.0.to_string())
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get_named::<CSeq>().ok()
    }

    /// The message as bytes, with a Content-Length that matches the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut headers = self.headers.clone();
        headers.remove(&Name::CONTENT_LENGTH);
        headers.insert_named(&ContentLength(self.body.len()));
        let mut out = format!("{}\r\n{}\r\n", self.line.default_print_ctx(), headers).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
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

    let lengths: Vec<&str> = headers
        .get_raw(&Name::CONTENT_LENGTH)
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
    check(&msg).map_err(|reason| bad(&reason))?;
    // On UDP, anything after Content-Length bytes is discarded (RFC 3261 18.3).
    Ok((msg, end))
}

fn start_line(buffer: &Bytes, text: &str) -> Result<MessageLine, ParseError> {
    // A request line is exactly three tokens separated by single spaces (RFC 3261 25.1); the
    // crate's parser is lenient about whitespace inside the URI, which RFC 4475 forbids.
    let strict = text.starts_with("SIP/") || text.split(' ').count() == 3;
    if let Ok((rest, l)) = MessageLine::parse(buffer)(text) {
        if rest.trim().is_empty() && (strict || !l.is_request()) {
            return Ok(l);
        }
    }
    // Work out which response the sender deserves, if any.
    let parts: Vec<&str> = text.split(' ').collect();
    if text.starts_with("SIP/") {
        return Err(ParseError::BadResponse(format!("status line {text:?}")));
    }
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

/// Message-level rules of RFC 3261 section 8.1.1 / 8.2 that every message must meet.
fn check(msg: &Message) -> Result<(), String> {
    let h = &msg.headers;
    for (name, label) in [
        (Name::VIA, "Via"),
        (Name::FROM, "From"),
        (Name::TO, "To"),
        (Name::CALL_ID, "Call-ID"),
        (Name::CSEQ, "CSeq"),
    ] {
        if !h.contains(&name) {
            return Err(format!("Missing {label}"));
        }
    }
    for (name, label) in [
        (Name::FROM, "From"),
        (Name::TO, "To"),
        (Name::CALL_ID, "Call-ID"),
        (Name::CSEQ, "CSeq"),
        (Name::MAX_FORWARDS, "Max-Forwards"),
    ] {
        if h.get_raw(&name).count() > 1 {
            return Err(format!("Multiple {label} Values"));
        }
    }
    for (name, label) in [(Name::FROM, "Bad From"), (Name::TO, "Bad To")] {
        let v = h
            .get_raw(&name)
            .next()
            .map(|v| v.as_str())
            .unwrap_or_default();
        crate::name_addr::parse(v).ok_or_else(|| label.to_string())?;
    }
    h.get_named::<Vec<Via>>()
        .map_err(|_| "Bad Via".to_string())?;
    let cseq = h.get_named::<CSeq>().map_err(|_| "Bad CSeq".to_string())?;
    if cseq.cseq >= 1 << 31 {
        return Err("CSeq Number Too Large".into());
    }
    if let Some(method) = msg.method() {
        if cseq.method != *method {
            return Err("CSeq Method Does Not Match".into());
        }
        if h.contains(&Name::MAX_FORWARDS) {
            // The typed value is a u8: anything above 255 fails here.
            h.get_named::<MaxForwards>()
                .map_err(|_| "Bad Max-Forwards".to_string())?;
        }
    }
    if let MessageLine::Response(s) = &msg.line {
        let code = s.code.into_u16();
        if !(100..=699).contains(&code) {
            return Err(format!("status code {code} out of range"));
        }
    }
    Ok(())
}

/// A response to `req` with `code`, copying the headers RFC 3261 8.2.6.2 requires. The To tag
/// is added when given (a UAS adds one to every non-100 response).
pub fn response(req: &Message, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
    let mut headers = Headers::new();
    for name in [Name::VIA, Name::FROM, Name::TO, Name::CALL_ID, Name::CSEQ] {
        for v in req.headers.get_raw(&name) {
            headers.insert(name.clone(), v.clone());
        }
    }
    if let Some(tag) = to_tag {
        let _ = headers.edit(Name::TO, |to: &mut FromTo| {
            if to.tag.is_none() {
                to.tag = Some(tag.to_string().into());
            }
        });
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
