//! RFC 4475, the SIP torture test messages: every message of sections 3.1.1 (valid), 3.1.2
//! (invalid), 3.2 (transaction layer), 3.3 (application layer) and 3.4 (backward
//! compatibility), each under its RFC name, reproduced as the RFC prints it (see `rfc` for its
//! section 2 conventions) and held to the outcome the RFC asks for: valid ones parse and print
//! back what the B2BUA relies on, unknown headers pass through unchanged, invalid requests are
//! refused with the response they deserve, invalid responses are dropped. Every message also
//! goes through the whole B2BUA from both sides without a panic.

use std::time::{Duration, Instant};

use ezk_sip_types::header::typed::Via;
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::Name;
use sip::b2bua::{B2bua, MediaControl, Settings};
use sip::message::{parse, Message, ParseError};
use sip::transaction::{Peer, Side};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn ok(name: &str, text: &[u8]) -> Message {
    match parse(text, false) {
        Ok((m, _)) => m,
        Err(e) => panic!("{name}: valid message refused: {e}"),
    }
}

fn rejected(name: &str, text: &[u8], code: u16) {
    match parse(text, false) {
        Err(ParseError::Reject { code: c, reason }) => assert_eq!(c, code, "{name}: {reason}"),
        other => panic!(
            "{name}: expected {code}, got {:?}",
            other.map(|(m, _)| m.line)
        ),
    }
}

fn dropped(name: &str, text: &[u8]) {
    match parse(text, false) {
        Err(ParseError::Garbage(_) | ParseError::BadResponse(_)) => {}
        other => panic!(
            "{name}: expected a silent drop, got {:?}",
            other.map(|(m, _)| m.line)
        ),
    }
}

/// The raw values of header `name`, as received.
fn raw(m: &Message, name: &str) -> Vec<String> {
    sip::message::values(&m.headers, &Name::from(name.to_string()))
        .map(|v| v.to_string())
        .collect()
}

fn vias(m: &Message) -> Vec<Via> {
    sip::message::typed::<Vec<Via>>(&m.headers)
        .expect("has Via")
        .expect("Via parses")
}

fn branch(v: &Via) -> Option<String> {
    v.params.get_val("branch").map(|b| b.to_string())
}

fn tag(m: &Message, header: Name) -> Option<String> {
    let v = sip::message::values(&m.headers, &header)
        .next()?
        .to_string();
    sip::name_addr::parse(&v)
        .expect("From/To parses")
        .tag()
        .map(str::to_string)
}

/// What the B2BUA relies on from a message: start line, top Via branch, Call-ID, CSeq,
/// From/To tags and the body.
fn essentials(m: &Message) -> impl PartialEq + std::fmt::Debug {
    (
        m.line.default_print_ctx().to_string(),
        m.top_via().as_ref().and_then(branch),
        m.call_id(),
        m.cseq().map(|c| (c.cseq, c.method.to_string())),
        tag(m, Name::FROM),
        tag(m, Name::TO),
        m.body.clone(),
    )
}

// ---- RFC 4475 corpus (written as the RFC prints it; see `rfc`) ----

/// Turns a message as RFC 4475 prints it into the bytes on the wire, following its section 2:
/// lines end in CRLF; `<repeat count=N>s</repeat>` is `s` N times; the lines between `<allOneLine>` and `</allOneLine>` (each tag on a line
/// of its own) form one line; `<hex>..</hex>` stands for the octets its hex digits spell (the
/// RFC uses it for NUL and other octets that cannot be printed).
fn rfc(text: &str) -> Vec<u8> {
    let mut expanded = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("<repeat count=") {
        expanded += &rest[..start];
        let after = &rest[start + "<repeat count=".len()..];
        let gt = after.find('>').expect("unterminated <repeat>");
        let count: usize = after[..gt].parse().expect("repeat count");
        let end = after.find("</repeat>").expect("unterminated <repeat>");
        expanded += &after[gt + 1..end].repeat(count);
        rest = &after[end + "</repeat>".len()..];
    }
    expanded += rest;
    let mut joined = String::new();
    let mut rest = expanded.as_str();
    while let Some(start) = rest.find("<allOneLine>\n") {
        joined += &rest[..start];
        let after = &rest[start + "<allOneLine>\n".len()..];
        let end = after
            .find("\n</allOneLine>")
            .expect("unterminated <allOneLine>");
        joined += &after[..end].replace('\n', "");
        rest = &after[end + "\n</allOneLine>".len()..];
    }
    joined += rest;
    let text = joined.replace('\n', "\r\n");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("<hex>") {
        out.extend_from_slice(&rest.as_bytes()[..start]);
        let after = &rest[start + 5..];
        let end = after.find("</hex>").expect("unterminated <hex>");
        let digits: Vec<u8> = after[..end]
            .bytes()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd hex run");
        for pair in digits.chunks(2) {
            let s = std::str::from_utf8(pair).unwrap();
            out.push(u8::from_str_radix(s, 16).expect("hex digit"));
        }
        rest = &after[end + 6..];
    }
    out.extend_from_slice(rest.as_bytes());
    out
}

/// What RFC 4475 says an element does with a message, as far as the parser decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Well formed: parses (and the datagram is used up exactly, unless noted).
    Valid,
    /// A request the sender hears about: `ParseError::Reject` with this code.
    Reject(u16),
    /// Silently discarded (responses are never answered).
    Drop,
}

/// Every message of RFC 4475 sections 3.1.1, 3.1.2, 3.2, 3.3 and 3.4, in the RFC's order,
/// with its section, its name and the outcome the RFC asks for.
fn corpus() -> Vec<(&'static str, &'static str, Vec<u8>, Expect)> {
    use Expect::*;
    let mut out = Vec::new();
    for (section, name, text, expect) in [
        ("3.1.1.1", "wsinv", WSINV, Valid),
        ("3.1.1.2", "intmeth", INTMETH, Valid),
        ("3.1.1.3", "esc01", ESC01, Valid),
        ("3.1.1.4", "escnull", ESCNULL, Valid),
        ("3.1.1.5", "esc02", ESC02, Valid),
        ("3.1.1.6", "lwsdisp", LWSDISP, Valid),
        ("3.1.1.7", "longreq", LONGREQ, Valid),
        ("3.1.1.8", "dblreq", DBLREQ, Valid),
        ("3.1.1.9", "semiuri", SEMIURI, Valid),
        ("3.1.1.10", "transports", TRANSPORTS, Valid),
        ("3.1.1.11", "mpart01", MPART01, Valid),
        ("3.1.1.12", "unreason", UNREASON, Valid),
        ("3.1.1.13", "noreason", NOREASON, Valid),
        // 3.1.2: invalid messages.
        ("3.1.2.1", "badinv01", BADINV01, Reject(400)),
        ("3.1.2.2", "clerr", CLERR, Reject(400)),
        ("3.1.2.3", "ncl", NCL, Reject(400)),
        ("3.1.2.4", "scalar02", SCALAR02, Reject(400)),
        ("3.1.2.5", "scalarlg", SCALARLG, Drop),
        ("3.1.2.6", "quotbal", QUOTBAL, Reject(400)),
        ("3.1.2.7", "ltgtruri", LTGTRURI, Reject(400)),
        ("3.1.2.8", "lwsruri", LWSRURI, Reject(400)),
        ("3.1.2.9", "lwsstart", LWSSTART, Reject(400)),
        // "acceptable to reject as malformed": a request line is rebuilt, never forwarded.
        ("3.1.2.10", "trws", TRWS, Reject(400)),
        // "acceptable to reject with 400": headers in a Request-URI are never honoured.
        ("3.1.2.11", "escruri", ESCRURI, Reject(400)),
        // "shouldn't [reject] unless the Date header field were important": it is not to us.
        ("3.1.2.12", "baddate", BADDATE, Valid),
        ("3.1.2.13", "regbadct", REGBADCT, Reject(400)),
        ("3.1.2.14", "badaspec", BADASPEC, Reject(400)),
        ("3.1.2.15", "baddn", BADDN, Reject(400)),
        ("3.1.2.16", "badvers", BADVERS, Reject(505)),
        ("3.1.2.17", "mismatch01", MISMATCH01, Reject(400)),
        // "should respond with a 501 ... a 400 is also acceptable".
        ("3.1.2.18", "mismatch02", MISMATCH02, Reject(501)),
        ("3.1.2.19", "bigcode", BIGCODE, Drop),
        // 3.2: transaction layer. Syntactically valid; what to do with it is the transaction
        // layer's choice (400, or RFC 2543 matching).
        ("3.2.1", "badbranch", BADBRANCH, Valid),
        // 3.3: application layer.
        ("3.3.1", "insuf", INSUF, Reject(400)),
        // Parsers accept these as well formed; the element answers 416, and the parser is
        // where voxgate decides it (its Request-URI type is a SIP URI).
        ("3.3.2", "unkscm", UNKSCM, Reject(416)),
        ("3.3.3", "novelsc", NOVELSC, Reject(416)),
        ("3.3.4", "unksm2", UNKSM2, Valid),
        ("3.3.5", "bext01", BEXT01, Valid),
        ("3.3.6", "invut", INVUT, Valid),
        ("3.3.7", "regaut01", REGAUT01, Valid),
        ("3.3.8", "multi01", MULTI01, Reject(400)),
        ("3.3.9", "mcl01", MCL01, Reject(400)),
        ("3.3.10", "bcast", BCAST, Valid),
        ("3.3.11", "zeromf", ZEROMF, Valid),
        ("3.3.12", "cparam01", CPARAM01, Valid),
        ("3.3.13", "cparam02", CPARAM02, Valid),
        ("3.3.14", "regescrt", REGESCRT, Valid),
        ("3.3.15", "sdp01", SDP01, Valid),
        // 3.4: backward compatibility.
        ("3.4.1", "inv2543", INV2543, Valid),
    ] {
        out.push((section, name, rfc(text), expect));
    }
    out
}

/// The message named `name`, as bytes on the wire.
fn message(name: &str) -> Vec<u8> {
    corpus()
        .into_iter()
        .find(|c| c.1 == name)
        .unwrap_or_else(|| panic!("no case {name}"))
        .2
}

const WSINV: &str = r#"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const INTMETH: &str = r#"<allOneLine>
!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure
)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)
@example.com SIP/2.0
</allOneLine>
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
<allOneLine>
To: "BEL:\<hex>07</hex> NUL:\<hex>00</hex> DEL:\<hex>7F</hex>" <sip:1_unusual.URI~(to-be!sure)&isn't+it$
/crazy?,/;;*@example.com>
</allOneLine>
<allOneLine>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=
"<hex>D180D0B0D0B1D0BED182D0B0D18ED189D0B8D0B9</hex>";tag=_token~1'+`*%!-.
</allOneLine>
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
<allOneLine>
extensionHeader-!.%*+_`'~:<hex>EFBBBFE5A4A7E5819CE99BBB</hex>
</allOneLine>
Content-Length: 0

"#;

const ESC01: &str = r#"INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const ESCNULL: &str = r#"REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

"#;

const ESC02: &str = r#"RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"#;

const LWSDISP: &str = r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

"#;

const LONGREQ: &str = r#"INVITE sip:user@example.com SIP/2.0
<allOneLine>
To: "I have a user name of extremeextremeextremeextremeextremeextremeextremeextremeextremeextreme
 proportion"<sip:user@example.com:6000;unknownparam1=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongvalue;
longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=shortvalue;
verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue>
</allOneLine>
<allOneLine>
F: sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@example.net
;tag=12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424
;unknownheaderparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=
unknowheaderparamvaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevalue
;unknownValuelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamname
</allOneLine>
<allOneLine>
Call-ID: longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid
</allOneLine>
CSeq: 3882340 INVITE
<allOneLine>
Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name:
 unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-value;
 unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-name =
 unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-value
</allOneLine>
Via: SIP/2.0/TCP sip33.example.com
v: SIP/2.0/TCP sip32.example.com
V: SIP/2.0/TCP sip31.example.com
Via: SIP/2.0/TCP sip30.example.com
ViA: SIP/2.0/TCP sip29.example.com
VIa: SIP/2.0/TCP sip28.example.com
VIA: SIP/2.0/TCP sip27.example.com
via: SIP/2.0/TCP sip26.example.com
viA: SIP/2.0/TCP sip25.example.com
vIa: SIP/2.0/TCP sip24.example.com
vIA: SIP/2.0/TCP sip23.example.com
V :  SIP/2.0/TCP sip22.example.com
v :  SIP/2.0/TCP sip21.example.com
V  : SIP/2.0/TCP sip20.example.com
v  : SIP/2.0/TCP sip19.example.com
Via : SIP/2.0/TCP sip18.example.com
Via  : SIP/2.0/TCP sip17.example.com
Via: SIP/2.0/TCP sip16.example.com
Via: SIP/2.0/TCP sip15.example.com
Via: SIP/2.0/TCP sip14.example.com
Via: SIP/2.0/TCP sip13.example.com
Via: SIP/2.0/TCP sip12.example.com
Via: SIP/2.0/TCP sip11.example.com
Via: SIP/2.0/TCP sip10.example.com
Via: SIP/2.0/TCP sip9.example.com
Via: SIP/2.0/TCP sip8.example.com
Via: SIP/2.0/TCP sip7.example.com
Via: SIP/2.0/TCP sip6.example.com
Via: SIP/2.0/TCP sip5.example.com
Via: SIP/2.0/TCP sip4.example.com
Via: SIP/2.0/TCP sip3.example.com
Via: SIP/2.0/TCP sip2.example.com
Via: SIP/2.0/TCP sip1.example.com
<allOneLine>
Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;
branch=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongbranchvalue
</allOneLine>
Max-Forwards: 70
<allOneLine>
Contact: <sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername
@host5.example.net>
</allOneLine>
Content-Type: application/sdp
l: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const DBLREQ: &str = r#"REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0


INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m =video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const SEMIURI: &str = r#"OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

"#;

const TRANSPORTS: &str = r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

"#;

const MPART01: &str = r#"MESSAGE sip:kumiko@example.org SIP/2.0
<allOneLine>
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
</allOneLine>
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
<allOneLine>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=
</allOneLine>
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: 553

--7a9cbec02ceef655
Content-Type: text/plain
Content-Transfer-Encoding: binary

Hello
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

<hex>3082015206092A864886F70D010702A08201433082013F020101310930070605
2B0E03021A300B06092A864886F70D010701318201203082011C020101307C30
70310B3009060355040613025553311330110603550408130A43616C69666F72
6E69613111300F0603550407130853616E204A6F7365310E300C060355040A13
05736970697431293027060355040B1320536970697420546573742043657274
6966696361746520417574686F7269747902080195007102330113300706052B
0E03021A300D06092A864886F70D01010105000481808EF466F948F0522DD2E5
978E9D95AAE9F2FE15A06659716292E8DA2AA8D8350A68CEFFAE3CBD2BFF1675
DDD5648E593DD64728F26220F7E941749E330D9A15EDABDB93D10C42102E7B72
89D29CC0C9AE2EFBC7C0CFF9172F3B027E4FC027E1546DE4B6AA3ABB3E66CCCB
5DD6C64B8383149CB8E6FF182D944FE57B65BC99D005</hex>
--7a9cbec02ceef655--
"#;

const UNREASON: &str = r#"<allOneLine>
SIP/2.0 200 = 2**3 * 5**2 <hex>D0BDD0BE20D181D182D0BE20D0B4D0B5D0B2D18FD0BDD0BED181D182D0BE20D0B4D0B5D0B2D18FD182D18C202D20D0BFD180D0BED181D182D0BED0B5</hex>
</allOneLine>
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const NOREASON: &str = r#"SIP/2.0 100<hex>20</hex>
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"#;

const BADINV01: &str = r#"INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 152
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const CLERR: &str = r#"INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.155
s=-
c=IN IP4 192.0.2.155
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const NCL: &str = r#"INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.53
s=-
c=IN IP4 192.0.2.53
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const SCALAR02: &str = r#"REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
<allOneLine>
Expires: 1<repeat count=100>0</repeat>
</allOneLine>
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0

"#;

const SCALARLG: &str = r#"SIP/2.0 503 Service Unavailable
<allOneLine>
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
</allOneLine>
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

"#;

const QUOTBAL: &str = r#"INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 152

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const LTGTRURI: &str = r#"INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 159

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=3149328700 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const LWSRURI: &str = r#"INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 159

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=3149328700 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const LWSSTART: &str = r#"INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const TRWS: &str = r#"OPTIONS sip:remote-target@example.com SIP/2.0<hex>2020</hex>
Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

"#;

const ESCRURI: &str = r#"INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const BADDATE: &str = r#"INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const REGBADCT: &str = r#"REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

"#;

const BADASPEC: &str = r#"OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

"#;

const BADDN: &str = r#"OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

"#;

const BADVERS: &str = r#"OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

"#;

const MISMATCH01: &str = r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

"#;

const MISMATCH02: &str = r#"NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 138

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const BIGCODE: &str = r#"SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

"#;

const BADBRANCH: &str = r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0

"#;

const INSUF: &str = r#"INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 152

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.95
s=-
c=IN IP4 192.0.2.95
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const UNKSCM: &str = r#"OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

"#;

const NOVELSC: &str = r#"OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

"#;

const UNKSM2: &str = r#"REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

"#;

const BEXT01: &str = r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0

"#;

const INVUT: &str = r#"INVITE sip:user@example.com SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: 40

<audio>
 <pcmu port="443"/>
</audio>
"#;

const REGAUT01: &str = r#"REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0

"#;

const MULTI01: &str = r#"INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 154
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.25
s=-
c=IN IP4 192.0.2.25
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC

"#;

const MCL01: &str = r#"OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.

"#;

const BCAST: &str = r#"SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const ZEROMF: &str = r#"OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0

"#;

const CPARAM01: &str = r#"REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: cparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0

"#;

const CPARAM02: &str = r#"REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=838293
To: sip:watson@example.com
Call-ID: cparam02.70710@saturn.example.com
CSeq: 3 REGISTER
Contact: <sip:+19725552222@gw1.example.net;unknownparam>
l: 0

"#;

const REGESCRT: &str = r#"REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>
L:0

"#;

const SDP01: &str = r#"INVITE sip:user@example.com SIP/2.0
To: sip:j_user@example.com
Contact: <sip:caller@host15.example.net>
From: sip:caller@example.net;tag=234
Max-Forwards: 5
Call-ID: sdp01.ndaksdj9342dasdd
Accept: text/nobodyKnowsThis
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
Content-Length: 150
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const INV2543: &str = r#"INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
"#;

#[test]
fn the_corpus_is_complete_and_decoded_as_the_rfc_prints_it() {
    let names: Vec<&str> = corpus().iter().map(|c| c.1).collect();
    assert_eq!(names.len(), 13 + 19 + 1 + 15 + 1, "{names:?}");
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a name twice");
    // The decoder itself: tags, joins and repeats.
    assert_eq!(rfc("a<hex>00 7F</hex>b\n"), b"a\x00\x7fb\r\n");
    assert_eq!(
        rfc("<allOneLine>\nab\ncd\n</allOneLine>\nx\n"),
        b"abcd\r\nx\r\n"
    );
    assert_eq!(rfc("1<repeat count=3>0</repeat>\n"), b"1000\r\n");
    // Byte-exact spots the RFC prints in hex.
    let intmeth = message("intmeth");
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(find(
        &intmeth,
        b"\"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\" <sip:"
    ));
    assert!(find(
        &intmeth,
        "extensionHeader-!.%*+_`'~:\u{feff}\u{5927}\u{505c}\u{96fb}\r\n".as_bytes()
    ));
    assert!(find(&intmeth, "=\"работающий\";tag=".as_bytes()));
    assert!(message("noreason").starts_with(b"SIP/2.0 100 \r\n"));
    assert!(message("trws").starts_with(b"OPTIONS sip:remote-target@example.com SIP/2.0  \r\n"));
    assert!(message("unreason")
        .starts_with("SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое\r\n".as_bytes()));
    let scalar02 = String::from_utf8(message("scalar02")).unwrap();
    assert!(scalar02.contains(&format!("\r\nExpires: 1{}\r\n", "0".repeat(100))));
    // No line of any message keeps a bare LF or a tag.
    for (_, name, bytes, _) in corpus() {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("<hex>") && !text.contains("allOneLine"),
            "{name}"
        );
        if name != "mpart01" {
            assert!(!text.replace("\r\n", "").contains('\n'), "{name}: bare LF");
        }
    }
}

#[test]
fn every_rfc4475_message_gets_the_outcome_the_rfc_asks_for() {
    for (section, name, bytes, expect) in corpus() {
        let what = format!("{section} {name}");
        match expect {
            Expect::Valid => {
                let (m, used) = match parse(&bytes, false) {
                    Ok(r) => r,
                    Err(e) => panic!("{what}: valid message refused: {e}"),
                };
                // The whole datagram is the message, except dblreq's trailing noise.
                if name == "dblreq" {
                    assert!(used < bytes.len(), "{what}");
                } else {
                    assert_eq!(used, bytes.len(), "{what}: body is not the rest");
                }
                // Content-Length, where given, is the body.
                if let Some(cl) = raw(&m, "Content-Length").first() {
                    assert_eq!(cl.trim().parse::<usize>().unwrap(), m.body.len(), "{what}");
                }
                // Printing keeps what the B2BUA relies on, and parses on a stream too.
                let printed = m.to_bytes();
                let (again, n) = parse(&printed, true)
                    .unwrap_or_else(|e| panic!("{what}: printed form refused: {e}"));
                assert_eq!(n, printed.len(), "{what}");
                assert_eq!(essentials(&again), essentials(&m), "{what}");
                assert_eq!(vias(&again).len(), vias(&m).len(), "{what}");
                // The raw reading transactions match on agrees with the typed one.
                let top = m.top_via().expect("checked");
                let (sent_by, key_branch) = m.via_key().unwrap_or_else(|| panic!("{what}"));
                assert_eq!(key_branch, branch(&top), "{what}");
                let typed = top
                    .sent_by
                    .default_print_ctx()
                    .to_string()
                    .to_ascii_lowercase();
                assert_eq!(sent_by, typed.replace(char::is_whitespace, ""), "{what}");
            }
            Expect::Reject(code) => rejected(&what, &bytes, code),
            Expect::Drop => dropped(&what, &bytes),
        }
        // On a stream the framing differs (Content-Length required), never a panic.
        let _ = parse(&bytes, true);
    }
}

#[test]
fn valid_messages_read_as_the_rfc_explains() {
    // 3.1.1.1 wsinv: folding, LWS everywhere, compact and odd-case names, leading zeros.
    let m = ok("wsinv", &message("wsinv"));
    assert_eq!(m.call_id().as_deref(), Some("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.cseq, cseq.method.to_string()), (9, "INVITE".into()));
    assert_eq!(raw(&m, "Max-Forwards")[0].trim(), "0068");
    assert_eq!(m.body.len(), 150);
    let v = vias(&m);
    assert_eq!(
        v.iter().map(|v| branch(v).unwrap()).collect::<Vec<_>>(),
        ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"],
        "three Via values across two header lines"
    );
    assert_eq!(v[0].transport.as_str(), "UDP");
    assert_eq!(v[1].transport.as_str(), "TCP");
    assert_eq!(tag(&m, Name::TO).as_deref(), Some("1918181833n"));
    assert_eq!(tag(&m, Name::FROM).as_deref(), Some("98asjd8"));
    let from = sip::name_addr::parse(&raw(&m, "From")[0]).unwrap();
    assert_eq!(from.display.as_deref(), Some(r#"J Rosenberg \\\""#));
    let contact = sip::name_addr::parse(&raw(&m, "Contact")[0]).unwrap();
    assert_eq!(contact.uri, "sip:jdrosen@example.com");
    assert_eq!(contact.param("newparam"), Some("newvalue"));
    assert_eq!(contact.param("q"), Some("0.33"));
    assert!(contact
        .params
        .iter()
        .any(|(n, v)| n == "secondparam" && v.is_none()));
    assert_eq!(raw(&m, "Subject").len(), 1, "the empty Subject is kept");
    // Unknown headers pass through unchanged, folding and all.
    let fangled = raw(&m, "NewFangledHeader");
    assert_eq!(fangled.len(), 1);
    assert!(
        fangled[0].starts_with("newfangled value")
            && fangled[0].ends_with("continued newfangled value"),
        "{fangled:?}"
    );
    assert_eq!(raw(&m, "UnknownHeaderWithUnusualValue"), [";;,,;;,;"]);
    let printed = String::from_utf8(m.to_bytes()).unwrap();
    assert!(
        printed.contains("UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"),
        "{printed}"
    );
    assert!(printed.contains("newfangled value"), "{printed}");
    assert!(printed.contains("Content-Length: 150\r\n"), "{printed}");

    // 3.1.1.2 intmeth: an unknown method of every token character, matched by CSeq.
    let m = ok("intmeth", &message("intmeth"));
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method().unwrap().to_string(), method);
    assert_eq!(m.cseq().unwrap().method.to_string(), method);
    assert_eq!(m.cseq().unwrap().cseq, 139122385);
    assert_eq!(
        branch(&m.top_via().unwrap()).as_deref(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    assert_eq!(tag(&m, Name::FROM).as_deref(), Some("_token~1'+`*%!-."));
    assert_eq!(
        m.call_id().as_deref(),
        Some(r#"intmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{"#)
    );
    assert_eq!(raw(&m, "Max-Forwards"), ["255"]);
    assert_eq!(
        raw(&m, "extensionHeader-!.%*+_`'~"),
        ["\u{feff}\u{5927}\u{505c}\u{96fb}"]
    );
    let from = sip::name_addr::parse(&raw(&m, "From")[0]).unwrap();
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.param("fromparam''~+*_!.-%"), Some("\"работающий\""));
    let to = sip::name_addr::parse(&raw(&m, "To")[0]).unwrap();
    assert_eq!(
        to.display.as_deref(),
        Some("BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f")
    );
    assert_eq!(to.tag(), None);

    // 3.1.1.3 esc01: escapes stay as written (the B2BUA compares and forwards, never
    // unescapes).
    let m = ok("esc01", &message("esc01"));
    assert_eq!(
        m.line.default_print_ctx().to_string(),
        "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0"
    );
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "To")[0]).unwrap().uri,
        "sip:%75se%72@example.com"
    );
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "Contact")[0]).unwrap().uri,
        "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"
    );
    assert_eq!(m.body.len(), 150);

    // 3.1.1.4 escnull: %00 in user parts, two distinct Contacts.
    let m = ok("escnull", &message("escnull"));
    let contacts: Vec<String> = raw(&m, "Contact")
        .iter()
        .map(|c| sip::name_addr::parse(c).unwrap().uri)
        .collect();
    assert_eq!(
        contacts,
        ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]
    );
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "To")[0]).unwrap().uri,
        "sip:null-%00-null@example.com"
    );

    // 3.1.1.5 esc02: % is no escape in methods or header names.
    let m = ok("esc02", &message("esc02"));
    assert_eq!(m.method().unwrap().to_string(), "RE%47IST%45R");
    assert_ne!(*m.method().unwrap(), ezk_sip_types::Method::REGISTER);
    assert_eq!(raw(&m, "Contact").len(), 2, "two Contacts, not three");
    assert_eq!(raw(&m, "C%6Fntact"), ["<sip:alias2@host2.example.com>"]);
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "To")[0])
            .unwrap()
            .display
            .as_deref(),
        Some("%Z%45")
    );

    // 3.1.1.6 lwsdisp: no space between display name and <.
    let m = ok("lwsdisp", &message("lwsdisp"));
    let from = sip::name_addr::parse(&raw(&m, "From")[0]).unwrap();
    assert_eq!(
        (from.display.as_deref(), from.tag()),
        (Some("caller"), Some("323"))
    );

    // 3.1.1.7 longreq: 34 Via values under every spelling of Via, long everything.
    let m = ok("longreq", &message("longreq"));
    let v = vias(&m);
    assert_eq!(v.len(), 34);
    assert_eq!(
        branch(&v[33]).unwrap(),
        format!("very{}branchvalue", "long".repeat(50))
    );
    assert_eq!(
        tag(&m, Name::FROM).unwrap(),
        format!("12{}424", "982".repeat(50))
    );
    assert!(m.call_id().unwrap().starts_with("longreq.onereally"));
    assert_eq!(m.body.len(), 150);

    // 3.1.1.8 dblreq: the INVITE after the REGISTER is noise (RFC 3261 18.3).
    let (m, used) = parse(&message("dblreq"), false).unwrap();
    assert_eq!(m.method().unwrap().to_string(), "REGISTER");
    assert!(m.body.is_empty());
    assert!(message("dblreq")[used..].windows(6).any(|w| w == b"INVITE"));

    // 3.1.1.9 semiuri: a ';' in the user part.
    let m = ok("semiuri", &message("semiuri"));
    assert_eq!(
        m.line.default_print_ctx().to_string(),
        "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0"
    );

    // 3.1.1.10 transports: all known transports plus an unknown one.
    let m = ok("transports", &message("transports"));
    assert_eq!(
        vias(&m)
            .iter()
            .map(|v| v.transport.to_string())
            .collect::<Vec<_>>(),
        ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    );

    // 3.1.1.11 mpart01: a binary body with NULs, framed by Content-Length alone.
    let m = ok("mpart01", &message("mpart01"));
    assert_eq!(m.body.len(), 553);
    assert!(m.body.contains(&0));
    assert!(m.body.ends_with(b"\xd0\x05\r\n--7a9cbec02ceef655--\r\n"));
    assert!(m.top_via().unwrap().params.get("rport").is_some());

    // 3.1.1.12 unreason, 3.1.1.13 noreason.
    let m = ok("unreason", &message("unreason"));
    assert_eq!(m.code(), Some(200));
    assert_eq!(m.body.len(), 154);
    let m = ok("noreason", &message("noreason"));
    assert_eq!(m.code(), Some(100));
    assert_eq!(tag(&m, Name::TO).as_deref(), Some("902jndnke3"));

    // 3.1.2.12 baddate: a non-GMT Date is not ours to judge; it is forwarded unchanged.
    let m = ok("baddate", &message("baddate"));
    assert_eq!(raw(&m, "Date"), ["Fri, 01 Jan 2010 16:00:00 EST"]);

    // 3.2.1 badbranch: a branch that is only the magic cookie still parses.
    let m = ok("badbranch", &message("badbranch"));
    assert_eq!(branch(&m.top_via().unwrap()).as_deref(), Some("z9hG4bK"));

    // 3.3.4 unksm2: registered non-SIP schemes in To, From and Contact.
    let m = ok("unksm2", &message("unksm2"));
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "To")[0]).unwrap().uri,
        "isbn:2983792873"
    );
    assert_eq!(tag(&m, Name::FROM).as_deref(), Some("3234233"));
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "Contact")[0]).unwrap().uri,
        "name:John_Smith"
    );

    // 3.3.5 bext01: Require/Proxy-Require values are kept for the layer that answers 420.
    let m = ok("bext01", &message("bext01"));
    assert_eq!(
        raw(&m, "Require"),
        ["nothingSupportsThis, nothingSupportsThisEither"]
    );
    assert_eq!(
        raw(&m, "Proxy-Require"),
        ["noProxiesSupportThis, norDoAnyProxiesSupportThis"]
    );

    // 3.3.6 invut: an unknown body type, framed like any other.
    let m = ok("invut", &message("invut"));
    assert_eq!(raw(&m, "Content-Type"), ["application/unknownformat"]);
    assert_eq!(m.body.len(), 40);

    // 3.3.7 regaut01: an Authorization of an unknown scheme passes through unchanged.
    let m = ok("regaut01", &message("regaut01"));
    assert_eq!(
        raw(&m, "Authorization"),
        ["NoOneKnowsThisScheme opaque-data=here"]
    );
    assert!(String::from_utf8(m.to_bytes())
        .unwrap()
        .contains("\r\nAuthorization: NoOneKnowsThisScheme opaque-data=here\r\n"));

    // 3.3.10 bcast: a response whose second Via is the broadcast address parses (the
    // transaction layer drops it: it matches no transaction of ours).
    let m = ok("bcast", &message("bcast"));
    assert_eq!(
        vias(&m)[1].sent_by.host,
        ezk_sip_types::host::Host::IP4([255, 255, 255, 255].into())
    );

    // 3.3.11 zeromf: Max-Forwards 0 is legal.
    let m = ok("zeromf", &message("zeromf"));
    assert_eq!(raw(&m, "Max-Forwards"), ["0"]);

    // 3.3.12 cparam01 / 3.3.13 cparam02: a header parameter is not a URI parameter.
    let m = ok("cparam01", &message("cparam01"));
    let c = sip::name_addr::parse(&raw(&m, "Contact")[0]).unwrap();
    assert_eq!(c.uri, "sip:+19725552222@gw1.example.net");
    assert!(c.params.iter().any(|(n, _)| n == "unknownparam"));
    let m = ok("cparam02", &message("cparam02"));
    let c = sip::name_addr::parse(&raw(&m, "Contact")[0]).unwrap();
    assert_eq!(c.uri, "sip:+19725552222@gw1.example.net;unknownparam");
    assert!(c.params.is_empty());

    // 3.3.14 regescrt: an escaped header inside <> is a valid Contact URI.
    let m = ok("regescrt", &message("regescrt"));
    assert_eq!(
        sip::name_addr::parse(&raw(&m, "Contact")[0]).unwrap().uri,
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    );

    // 3.3.15 sdp01: the Accept that rules out SDP is kept for the layer that answers 406.
    let m = ok("sdp01", &message("sdp01"));
    assert_eq!(raw(&m, "Accept"), ["text/nobodyKnowsThis"]);

    // 3.4.1 inv2543: no branch, no From tag, no Content-Length, no Max-Forwards.
    let m = ok("inv2543", &message("inv2543"));
    assert_eq!(branch(&m.top_via().unwrap()), None);
    assert_eq!(tag(&m, Name::FROM), None);
    assert!(raw(&m, "Max-Forwards").is_empty());
    assert!(m.body.starts_with(b"v=0\r\n") && m.body.ends_with(b"m=audio 49217 RTP/AVP 0\r\n"));
}

#[test]
fn garbage_is_dropped() {
    dropped("bad status", &crlf("SIP/2.0 99 Too Low\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: x\nCSeq: 3 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>\nContent-Length: 0\n\n"));
    dropped("empty", b"");
    dropped("binary", &[0u8, 1, 2, 3, 255, 254, 13, 10, 13, 10]);
    dropped("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    dropped("no end", b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x");
}

#[test]
fn stream_framing() {
    let msg = crlf("OPTIONS sip:user@example.com SIP/2.0\nTo: sip:user@example.com\nFrom: sip:caller@example.net;tag=1\nMax-Forwards: 7\nCall-ID: s1\nCSeq: 8 OPTIONS\nVia: SIP/2.0/TCP 192.0.2.15;branch=z9hG4bKkdjuw380234\nContent-Length: 4\n\nabcd");
    for cut in 0..msg.len() {
        assert!(
            matches!(parse(&msg[..cut], true), Err(ParseError::Incomplete)),
            "cut at {cut}"
        );
    }
    let mut two = msg.clone();
    two.extend_from_slice(&msg);
    let (_, used) = parse(&two, true).unwrap();
    assert_eq!(used, msg.len());
    let no_len = crlf("OPTIONS sip:user@example.com SIP/2.0\nTo: sip:user@example.com\nFrom: sip:caller@example.net;tag=1\nMax-Forwards: 7\nCall-ID: s1\nCSeq: 8 OPTIONS\nVia: SIP/2.0/TCP 192.0.2.15;branch=z9hG4bKkdjuw380234\n\n");
    assert!(matches!(
        parse(&no_len, true),
        Err(ParseError::Reject { code: 400, .. })
    ));
    // clerr on a stream: the rest of the body may still be on its way.
    assert!(matches!(
        parse(&message("clerr"), true),
        Err(ParseError::Incomplete)
    ));
}

/// Media that accepts every offer unchanged: these tests are after the SIP paths.
struct Echo;

impl MediaControl for Echo {
    fn offer(&mut self, _: &str, _: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn answer(&mut self, _: &str, _: Side, sdp: &[u8]) -> Result<Vec<u8>, String> {
        Ok(sdp.to_vec())
    }
    fn release(&mut self, _: &str) {}
    fn public_address(&mut self, _: std::net::Ipv4Addr) {}
}

fn b2bua() -> B2bua {
    B2bua::new(
        Settings {
            lan: "10.100.0.1:5060".parse().unwrap(),
            wan: "10.200.0.2:5060".parse().unwrap(),
            upstreams: vec!["198.51.100.10:5060".parse().unwrap()],
            health_interval: Duration::from_secs(30),
            domain: "198.51.100.10".into(),
            upstream_transport: sip::b2bua::Transport::Udp,
            voice_net: "10.100.0.0/24".parse().unwrap(),
            provider_nets: vec!["198.51.100.0/24".parse().unwrap()],
            keepalive: Duration::from_secs(20),
            lan_rate_limit: 0,
            stun_server: None,
        },
        Box::new(Echo),
    )
}

fn peer(side: Side, reliable: bool) -> Peer {
    let addr = match side {
        Side::Lan => "10.100.0.50:5060",
        Side::Wan => "198.51.100.10:5060",
    };
    Peer {
        side,
        addr: addr.parse().unwrap(),
        reliable,
    }
}

/// Every RFC 4475 message through the whole B2BUA (`receive`, transactions, registration
/// relay, calls, timers), from the phones' side and from the provider's, over UDP and TCP,
/// one box per message and one box for all of them in a row: nothing panics, and nothing the
/// box sends towards the provider carries the voice LAN's addresses.
#[test]
fn every_rfc4475_message_through_the_b2bua_from_both_sides() {
    let start = Instant::now();
    let mut shared = b2bua();
    shared.start(start);
    let mut t = start;
    for (section, name, bytes, _) in corpus() {
        for side in [Side::Lan, Side::Wan] {
            for reliable in [false, true] {
                let mut b = b2bua();
                b.start(start);
                b.receive(start, &bytes, peer(side, reliable));
                let mut sent = Vec::new();
                while let Some(out) = b.poll_transmit() {
                    sent.push(out);
                }
                for (to, out) in &sent {
                    if to.side == Side::Wan {
                        let text = String::from_utf8_lossy(out);
                        assert!(
                            !text.contains("10.100.0."),
                            "{section} {name}: LAN address towards the provider:\n{text}"
                        );
                    }
                }
                b.handle_timeout(start + Duration::from_secs(64));
                while b.poll_transmit().is_some() {}
                t += Duration::from_millis(10);
                shared.receive(t, &bytes, peer(side, reliable));
                while shared.poll_transmit().is_some() {}
            }
        }
    }
    shared.handle_timeout(t + Duration::from_secs(64));
    while shared.poll_transmit().is_some() {}
}

#[test]
fn mutated_messages_never_panic() {
    // A deterministic xorshift stream of byte flips, truncations and splices over the whole
    // RFC 4475 corpus.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut b = b2bua();
    let now = Instant::now();
    b.start(now);
    for (_, _, seed, _) in corpus() {
        for round in 0..300 {
            let mut m = seed.clone();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[i] = next() as u8,
                    1 => m.truncate(i.max(1)),
                    2 => m.insert(i, b"\r\n :;,<>\"\\"[(next() % 10) as usize]),
                    _ => {
                        let j = (next() as usize) % m.len();
                        let chunk: Vec<u8> = m[j..(j + 16).min(m.len())].to_vec();
                        m.splice(i..i, chunk);
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            let _ = parse(&m, false);
            let _ = parse(&m, true);
            if round % 10 == 0 {
                let side = if next() % 2 == 0 {
                    Side::Lan
                } else {
                    Side::Wan
                };
                b.receive(now, &m, peer(side, false));
                while b.poll_transmit().is_some() {}
            }
        }
    }
    b.handle_timeout(now + Duration::from_secs(64));
}

/// Every request RFC 4475 wants refused has an answer the B2BUA can send back statelessly:
/// a response with the code, on the request's own Via, that parses as a response.
#[test]
fn refused_requests_have_an_answer_to_send() {
    for (section, name, bytes, expect) in corpus() {
        let what = format!("{section} {name}");
        let Expect::Reject(code) = expect else {
            continue;
        };
        let Err(ParseError::Reject { code: c, reason }) = parse(&bytes, false) else {
            panic!("{what}: not refused");
        };
        assert_eq!(c, code, "{what}");
        let answer = sip::message::reject_response(&bytes, c, &reason, Some("vg1"))
            .unwrap_or_else(|| panic!("{what}: no answer"));
        let text = String::from_utf8(answer.clone()).unwrap();
        assert!(
            text.starts_with(&format!("SIP/2.0 {code} ")),
            "{what}: {text}"
        );
        // The Vias go back as received (the answer must reach the sender even when the
        // request's own header values are the malformed ones), and the To gets a tag.
        for via in String::from_utf8_lossy(&bytes)
            .split("\r\n")
            .filter(|l| l.starts_with("Via"))
        {
            let value = via.split_once(':').unwrap().1.trim();
            assert!(
                text.contains(&format!("\r\nVia: {value}\r\n")),
                "{what}: {text}"
            );
        }
        if name != "insuf" {
            assert!(text.contains(";tag="), "{what}: {text}");
            assert_eq!(text.matches("\r\nCall-ID: ").count(), 1, "{what}: {text}");
        }
        assert!(
            text.ends_with("\r\nContent-Length: 0\r\n\r\n"),
            "{what}: {text}"
        );
    }
    // multi01: one From, one To, one Call-ID and one CSeq in the answer.
    let answer =
        sip::message::reject_response(&message("multi01"), 400, "Multiple To Values", Some("x"))
            .unwrap();
    let text = String::from_utf8(answer).unwrap();
    assert_eq!(text.matches("\r\nTo: ").count(), 1, "{text}");
    assert!(
        text.contains("\r\nCall-ID: multi01.98asdh@192.0.2.1\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nCSeq: 5 INVITE\r\n"), "{text}");
    // wsinv-style folding and compact names are copied whole; an existing To tag is kept.
    let answer = sip::message::reject_response(&message("wsinv"), 400, "x", Some("new")).unwrap();
    let text = String::from_utf8(answer).unwrap();
    assert!(
        text.contains("To: sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Via: SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch"),
        "{text}"
    );
    assert!(!text.contains("tag=new"), "{text}");
    // Responses and garbage get no answer.
    assert!(sip::message::reject_response(&message("bigcode"), 400, "x", None).is_none());
    assert!(sip::message::reject_response(b"\x00\x01", 400, "x", None).is_none());
    assert!(sip::message::reject_response(
        b"OPTIONS sip:a@b SIP/2.0\r\nTo: <sip:a@b>\r\n\r\n",
        400,
        "x",
        None
    )
    .is_none());
}
