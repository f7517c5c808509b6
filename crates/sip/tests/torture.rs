//! Torture messages in the manner of RFC 4475: the valid ones parse (and unknown headers pass
//! through unchanged), the invalid ones are refused with the response they deserve (or dropped
//! when they are responses). Messages are written for this suite after the RFC's cases.

use sip::message::{parse, ParseError};

fn crlf(s: &str) -> Vec<u8> {
    s.replace('\n', "\r\n").into_bytes()
}

fn ok(name: &str, text: &[u8]) -> sip::message::Message {
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

/// wsinv-like: whitespace before colons, folded lines, compact names, odd spacing, escaped
/// URI, leading zeros, unknown header with folding.
const WSINV: &str = "INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>
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
m:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =
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
";

#[test]
fn valid_messages_parse() {
    let m = ok("wsinv", &crlf(WSINV));
    assert_eq!(m.call_id().as_deref(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(m.cseq().unwrap().cseq, 9);
    assert_eq!(m.body.len(), 150);
    let vias: Vec<_> = m
        .headers
        .get_named::<Vec<ezk_sip_types::header::typed::Via>>()
        .unwrap();
    assert_eq!(vias.len(), 3, "three Via values across two header lines");
    // An unknown header passes through unchanged, folding and all.
    let raw: Vec<String> = m
        .headers
        .get_raw(&ezk_sip_types::Name::from("NewFangledHeader"))
        .map(|v| v.to_string())
        .collect();
    assert_eq!(raw.len(), 1);
    assert!(
        raw[0].contains("newfangled value") && raw[0].contains("continued newfangled value"),
        "{raw:?}"
    );

    // An unknown method with unusual token characters, matched by CSeq.
    let intmeth = crlf(
        "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\u{feff}\u{e5}\u{a4}\u{a7}\u{e5}\u{81}\u{9c}\u{e9}\u{9b}\u{bb}
Content-Length: 0

",
    );
    let m = ok("intmeth", &intmeth);
    assert_eq!(
        m.method().unwrap().to_string(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );

    // Escaped characters in URIs, a semicolon-laden user part, no space before <.
    for (name, text) in [
        ("esc01", "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 0

"),
        ("semiuri", "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
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

"),
        ("lwsdisp", "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

"),
        ("transports", "OPTIONS sip:user@example.com SIP/2.0
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

"),
        ("noreason", "SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: noreason.asndj203insdf99223ndf\nCSeq: 35 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n"),
        ("unreason", "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}\nVia: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923\nCall-ID: unreason.1234ksdfak3j2erwedfsASdf\nCSeq: 35 INVITE\nFrom: sip:user@example.com;tag=11141343\nTo: sip:user@example.edu;tag=2229\nContent-Length: 0\n\n"),
    ] {
        ok(name, &crlf(text));
    }

    // A long header section with many repeated values.
    let mut long = String::from("INVITE sip:user@example.com SIP/2.0\nTo: \"I have a user name of extremeextremeextremeextremeextremeextremeextremeextremeextremeextreme proportion\"<sip:user@example.com:6000;unknownparam1=verylonngparametervalue;x=y>\nFrom: sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallername@example.net;tag=12982424\nCall-ID: longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid\nCSeq: 1 INVITE\nMax-Forwards: 70\n");
    for i in 0..40 {
        long += &format!(
            "Via: SIP/2.0/TCP sip{i}.example.com;branch=z9hG4bK{i:08}longbranchvaluetomakeitlong\n"
        );
        long += &format!(
            "Record-Route: <sip:rr{i}.example.com;lr;very-long-parameter-name-{i}=value>\n"
        );
    }
    long += "Content-Length: 0\n\n";
    let m = ok("longreq", &crlf(&long));
    assert_eq!(m.headers.get_raw(&ezk_sip_types::Name::VIA).count(), 40);

    // Extra bytes after Content-Length on UDP are ignored (dblreq).
    let dbl = crlf("REGISTER sip:example.com SIP/2.0\nTo: sip:j.user@example.com\nFrom: sip:j.user@example.com;tag=43251j3j324\nMax-Forwards: 8\nI: dblreq.0ha0isndaksdj99sdfafnl3lk233412\nContact: sip:j.user@host.example.com\nCSeq: 8 REGISTER\nVia: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492\nContent-Length: 0\n\n\nINVITE sip:joe@example.com SIP/2.0\nt: sip:joe@example.com\n\n");
    let (m, used) = parse(&dbl, false).unwrap();
    assert_eq!(m.method().unwrap().to_string(), "REGISTER");
    assert!(used < dbl.len());
}

#[test]
fn invalid_requests_get_the_right_response() {
    /// A message under construction, editable as text.
    struct Text(Vec<u8>);
    impl Text {
        fn replace(self, a: &str, b: &str) -> Text {
            Text(
                String::from_utf8(self.0)
                    .unwrap()
                    .replace(a, b)
                    .into_bytes(),
            )
        }
    }
    let base = |first: &str, extra: &str| {
        Text(crlf(&format!(
            "{first}\nTo: sip:user@example.com\nFrom: sip:caller@example.net;tag=134161461246\nMax-Forwards: 7\nCall-ID: bad.0h2392ndlkj\nCSeq: 8 OPTIONS\nVia: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234\n{extra}Content-Length: 0\n\n"
    )))
    };
    rejected(
        "badvers",
        &base("OPTIONS sip:t.watson@example.org SIP/7.0", "").0,
        505,
    );
    rejected(
        "unknown scheme",
        &base("OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0", "").0,
        416,
    );
    rejected(
        "ltgtruri",
        &base("OPTIONS <sip:user@example.com> SIP/2.0", "").0,
        400,
    );
    rejected(
        "lwsruri",
        &base("OPTIONS sip:user@example.com; lr SIP/2.0", "").0,
        400,
    );
    rejected(
        "lwsstart",
        &base("OPTIONS  sip:user@example.com  SIP/2.0", "").0,
        400,
    );
    rejected(
        "mismatch01",
        &base("INVITE sip:user@example.com SIP/2.0", "").0,
        400,
    );
    rejected(
        "scalarlg",
        &base("OPTIONS sip:user@example.com SIP/2.0", "")
            .replace("CSeq: 8", "CSeq: 36893488147419103232")
            .0,
        400,
    );
    rejected(
        "mf300",
        &base("OPTIONS sip:user@example.com SIP/2.0", "")
            .replace("Max-Forwards: 7", "Max-Forwards: 300")
            .0,
        400,
    );
    rejected(
        "multi01",
        &base(
            "OPTIONS sip:user@example.com SIP/2.0",
            "From: sip:other@example.net;tag=2\n",
        )
        .0,
        400,
    );
    rejected(
        "insuf",
        &base("OPTIONS sip:user@example.com SIP/2.0", "")
            .replace("Call-ID: bad.0h2392ndlkj\r\n", "")
            .0,
        400,
    );
    rejected(
        "quotbal",
        &base("OPTIONS sip:user@example.com SIP/2.0", "")
            .replace(
                "To: sip:user@example.com",
                "To: \"Mr. J. User <sip:j.user@example.com>",
            )
            .0,
        400,
    );
    // Content-Length larger than the datagram, negative, or conflicting.
    let body = |len: &str| {
        crlf(&format!("INVITE sip:user@example.com SIP/2.0\nMax-Forwards: 80\nTo: sip:j.user@example.com\nFrom: sip:caller@example.net;tag=93942939o2\nContact: <sip:caller@hungry.example.net>\nCall-ID: clerr.0ha0isndaksdjweiafasdk3\nCSeq: 8 INVITE\nVia: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523\nContent-Type: application/sdp\n{len}\nv=0\no=mhandley 29739 7272939 IN IP4 192.0.2.155\n"))
    };
    rejected("badinv01", &body("Content-Length: 9999\n"), 400);
    rejected("clerr", &body("Content-Length: -999\n"), 400);
    rejected(
        "mcl01",
        &body("Content-Length: 0\nContent-Length: 10\n"),
        400,
    );
}

#[test]
fn invalid_responses_and_garbage_are_dropped() {
    dropped("bigcode", &crlf("SIP/2.0 4294967301 better not break the receiver\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i\nCSeq: 353494 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\n\n"));
    dropped("bad status", &crlf("SIP/2.0 99 Too Low\nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe\nCall-ID: x\nCSeq: 3 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>\nContent-Length: 0\n\n"));
    dropped("empty", b"");
    dropped("binary", &[0u8, 1, 2, 3, 255, 254, 13, 10, 13, 10]);
    dropped("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    dropped("no end", b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP x");
}

#[test]
fn printing_round_trips_and_fixes_content_length() {
    let m = ok("wsinv", &crlf(WSINV));
    let printed = m.to_bytes();
    let (again, _) = parse(&printed, true).expect("printed message parses on a stream");
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.body, m.body);
    let text = String::from_utf8_lossy(&printed);
    assert!(text.contains("Content-Length: 150\r\n"), "{text}");
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
}

#[test]
fn mutated_messages_never_panic() {
    // A deterministic xorshift stream of byte flips, truncations and splices.
    let seeds = [crlf(WSINV), crlf("SIP/2.0 200 OK\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCall-ID: a\nCSeq: 1 INVITE\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nContent-Length: 0\n\n")];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seed in &seeds {
        for _ in 0..3000 {
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
        }
    }
}
