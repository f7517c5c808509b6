//! SIP through the daemon in the lab, with sipp on both ends: a phone in `phone` registers
//! through the box to a registrar with digest authentication in `provider`, across the `isp`
//! NAT. The registrar fails the exchange if a voice-LAN address reaches it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use lab::{Lab, LabOptions, Node};
use serde_json::Value;

mod common;
use common::*;

fn scenario(name: &str) -> String {
    format!("{}/../../tests/sipp/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs sipp in `node` to completion (at most `limit`), returning (success, log).
fn sipp(lab: &Lab, node: Node, args: &[&str], limit: Duration) -> (bool, String) {
    let mut cmd = lab.command(node, "sipp");
    cmd.args(args)
        .args([
            "-nostdin",
            "-timeout_error",
            "-timeout",
            &format!("{}s", limit.as_secs()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = cmd.output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// sipp arguments of the phone (10.100.0.50:5070, user 1001) registering through the box with
/// the digest URI a phone configured with the provider's domain would use.
const REGISTER_PHONE: [&str; 13] = [
    "-sf",
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/sipp/register.xml"),
    "10.100.0.1:5060",
    "-i",
    "10.100.0.50",
    "-p",
    "5070",
    "-s",
    "1001",
    "-m",
    "1",
    "-auth_uri",
    "sip:198.51.100.10",
];

/// sipp as the provider's server (198.51.100.10:5060) for one call.
const AS_PROVIDER: [&str; 6] = ["-i", "198.51.100.10", "-p", "5060", "-m", "1"];

/// sipp as the phone (10.100.0.50:5070) calling 01632960123 once through the box.
const AS_PHONE: [&str; 9] = [
    "10.100.0.1:5060",
    "-i",
    "10.100.0.50",
    "-p",
    "5070",
    "-s",
    "01632960123",
    "-m",
    "1",
];

/// `-sf scenario` followed by `args`.
fn with_scenario<'a>(scenario: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    [&["-sf", scenario][..], args].concat()
}

fn start_registrar(lab: &Lab, dir: &std::path::Path) -> lab::LabProcess {
    start_registrar_for(lab, dir, 1)
}

/// The provider's registrar (digest auth) for `registrations` registrations.
fn start_registrar_for(lab: &Lab, dir: &std::path::Path, registrations: u32) -> lab::LabProcess {
    let mut cmd = lab.command(Node::Provider, "sipp");
    let m = registrations.to_string();
    cmd.args([
        "-sf",
        &scenario("registrar.xml"),
        "-i",
        "198.51.100.10",
        "-p",
        "5060",
        "-m",
        &m,
    ])
    .args([
        "-nostdin",
        "-timeout_error",
        "-timeout",
        "20s",
        "-trace_msg",
        "-message_file",
    ])
    .arg(dir.join("provider-messages.log"))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    lab.spawn(Node::Provider, cmd).unwrap()
}

#[test]
fn phone_registers_through_the_box_with_digest_auth() {
    lab::require_root().unwrap();
    let lab = Lab::with(LabOptions::default()).unwrap();
    let b = Box_::new();
    std::fs::write(b.config(), config::LAB_CONFIG).unwrap();
    let _daemon = b.start(&lab);
    let sock = b.socket();
    wait_status(&sock, Duration::from_secs(10), "sip running", |s| {
        s["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["name"] == "sip" && x["state"] == "running")
    });
    let mut registrar = start_registrar(&lab, b.dir.path());
    // A support engineer watches the signalling live.
    let mut trace = std::process::Command::new(VOXGATE)
        .arg("--socket")
        .arg(&sock)
        .args(["sip", "trace", "--json", "--filter", "REGISTER"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300)); // sipp binds its port

    let (ok, log) = sipp(&lab, Node::Phone, &REGISTER_PHONE, Duration::from_secs(15));
    if !ok {
        let provider_log =
            std::fs::read_to_string(b.dir.path().join("provider-messages.log")).unwrap_or_default();
        panic!(
            "phone registration failed:\n{log}\ndaemon log:\n{}\nprovider:\n{provider_log}",
            b.log()
        );
    }
    let st = registrar.wait_timeout(Duration::from_secs(5)).unwrap();
    let provider_log =
        std::fs::read_to_string(b.dir.path().join("provider-messages.log")).unwrap_or_default();
    assert!(
        st.is_some_and(|s| s.success()),
        "registrar failed ({st:?}):\n{provider_log}"
    );
    // Topology hiding: nothing the provider received names the voice LAN.
    assert!(
        !provider_log.contains("10.100.0."),
        "LAN address leaked:\n{provider_log}"
    );
    // The box registered its own contact in the phone's place.
    assert!(
        provider_log.contains("Contact: <sip:") && provider_log.contains("@10.200.0.2:5060>"),
        "{provider_log}"
    );

    std::thread::sleep(Duration::from_millis(200));
    trace.kill().unwrap();
    let traced = String::from_utf8(trace.wait_with_output().unwrap().stdout).unwrap();
    let lines: Vec<Value> = traced
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen = |dir: &str, side: &str, start: &str| {
        lines.iter().any(|l| {
            l["direction"] == dir
                && l["side"] == side
                && l["message"].as_str().unwrap().starts_with(start)
        })
    };
    assert!(seen("in", "lan", "REGISTER sip:198.51.100.10"), "{traced}");
    assert!(seen("out", "wan", "REGISTER sip:198.51.100.10"), "{traced}");
    assert!(seen("in", "wan", "SIP/2.0 200 OK"), "{traced}");
    assert!(seen("out", "lan", "SIP/2.0 200 OK"), "{traced}");

    let out = cli(&sock, &["regs", "--json"]);
    let regs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &regs[0];
    assert_eq!(r["aor"], "sip:1001@198.51.100.10");
    assert_eq!(r["state"], "registered", "{regs:#}");
    assert!(
        (100..=120).contains(&r["expires_in"].as_u64().unwrap()),
        "{regs:#}"
    );
    assert_eq!(r["phone_addr"], "10.100.0.50:5070");
    let text = String::from_utf8(cli(&sock, &["regs"]).stdout).unwrap();
    assert!(
        text.contains("sip:1001@198.51.100.10") && text.contains("registered"),
        "{text}"
    );
}

/// Runs a built-in or file scenario of sipp in `node` in the background.
fn sipp_bg(lab: &Lab, node: Node, args: &[&str], log: &std::path::Path) -> lab::LabProcess {
    let mut cmd = lab.command(node, "sipp");
    cmd.args(args)
        .args([
            "-nostdin",
            "-timeout_error",
            "-timeout",
            "20s",
            "-trace_msg",
            "-message_file",
        ])
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    lab.spawn(node, cmd).unwrap()
}

/// sipp with `args` on the provider's side, its messages traced to `provider.log` in the
/// box's directory, given 300 ms to bind its port; returns it and the log's path.
fn provider_sipp(lab: &Lab, b: &Box_, args: &[&str]) -> (lab::LabProcess, std::path::PathBuf) {
    let log = b.dir.path().join("provider.log");
    let sipp = sipp_bg(lab, Node::Provider, args, &log);
    std::thread::sleep(Duration::from_millis(300));
    (sipp, log)
}

fn running_box(lab: &Lab) -> Box_ {
    running_box_with(lab, "")
}

/// The daemon in the box with the lab configuration plus `extra` YAML sections.
fn running_box_with(lab: &Lab, extra: &str) -> Box_ {
    running_box_config(lab, &format!("{}{extra}", config::LAB_CONFIG))
}

/// The daemon in the box with the configuration `text`.
fn running_box_config(lab: &Lab, text: &str) -> Box_ {
    let b = Box_::new();
    std::fs::write(b.config(), text).unwrap();
    std::mem::forget(b.start(lab)); // the lab's teardown ends it
    wait_status(
        &b.socket(),
        Duration::from_secs(10),
        "sip and media running",
        |s| {
            ["sip", "media"].iter().all(|n| {
                s["services"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == *n && x["state"] == "running")
            })
        },
    );
    b
}

#[test]
fn outbound_call_through_the_box_hung_up_by_the_phone() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    let (mut uas, provider_log) = provider_sipp(
        &lab,
        &b,
        &["-sn", "uas", "-i", "198.51.100.10", "-p", "5060", "-m", "1"],
    );
    let phone_log = b.dir.path().join("phone.log");
    let mut uac = sipp_bg(
        &lab,
        Node::Phone,
        &[
            "-sn",
            "uac",
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-s",
            "01632960123",
            "-m",
            "1",
            "-d",
            "3000",
        ],
        &phone_log,
    );
    // While the call is up, `voxgate calls` shows it.
    let sock = b.socket();
    let t0 = std::time::Instant::now();
    let mut seen = None;
    while t0.elapsed() < Duration::from_secs(5) && seen.is_none() {
        let out = cli(&sock, &["calls", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v.as_array()
            .is_some_and(|a| a.iter().any(|c| c["state"] == "confirmed"))
        {
            seen = Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls = seen.unwrap_or_else(|| panic!("no confirmed call seen; daemon log:\n{}", b.log()));
    assert_eq!(calls[0]["direction"], "outbound");
    assert_eq!(
        calls[0]["media"]["streams"].as_array().map(|s| s.len()),
        Some(1),
        "the relay anchors the call's audio stream: {calls:#}"
    );
    let phone_ok = uac.wait_timeout(Duration::from_secs(15)).unwrap();
    let prov_ok = uas.wait_timeout(Duration::from_secs(5)).unwrap();
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    let flog = std::fs::read_to_string(&phone_log).unwrap_or_default();
    assert!(
        phone_ok.is_some_and(|s| s.success()),
        "phone side failed:\n{flog}\n{}",
        b.log()
    );
    assert!(
        prov_ok.is_some_and(|s| s.success()),
        "provider side failed:\n{plog}"
    );
    assert!(
        !plog.contains("10.100.0."),
        "LAN address reached the provider:\n{plog}"
    );
    assert!(
        plog.contains("c=IN IP4 10.200.0.2"),
        "the offer names the box's relay:\n{plog}"
    );
    assert!(
        flog.contains("c=IN IP4 10.100.0.1"),
        "the answer names the box's relay:\n{flog}"
    );
    // The call is gone once both BYE legs are done.
    wait_calls_empty(&sock);
}

fn wait_calls_empty(sock: &std::path::Path) {
    let t0 = std::time::Instant::now();
    loop {
        let out = cli(sock, &["calls", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if v.as_array().is_some_and(|a| a.is_empty()) {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "calls left behind: {v:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a phone scenario against a provider scenario through the box; both must succeed.
/// Returns the provider's and the phone's message traces.
fn call_pair(provider: &[&str], phone: &[&str]) -> (String, String) {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    call_pair_in(&lab, &b, provider, phone)
}

/// [`call_pair`] with a lab and box of the test's own.
fn call_pair_in(lab: &Lab, b: &Box_, provider: &[&str], phone: &[&str]) -> (String, String) {
    let (mut uas, provider_log) = provider_sipp(lab, b, &[provider, &AS_PROVIDER].concat());
    let args = [phone, &AS_PHONE].concat();
    let phone_log = b.dir.path().join("phone.log");
    let mut uac = sipp_bg(lab, Node::Phone, &args, &phone_log);
    let phone_ok = uac.wait_timeout(Duration::from_secs(15)).unwrap();
    let prov_ok = uas.wait_timeout(Duration::from_secs(5)).unwrap();
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    let flog = std::fs::read_to_string(&phone_log).unwrap_or_default();
    assert!(
        phone_ok.is_some_and(|s| s.success()),
        "phone side failed:\n{flog}\ndaemon:\n{}",
        b.log()
    );
    assert!(
        prov_ok.is_some_and(|s| s.success()),
        "provider side failed:\n{plog}"
    );
    assert!(
        !plog.contains("10.100.0."),
        "LAN address reached the provider:\n{plog}"
    );
    wait_calls_empty(&b.socket());
    (plog, flog)
}

/// [`call_pair`] of the scenarios `uas_{name}.xml` (provider) and `uac_{name}.xml` (phone).
fn scenario_pair(name: &str) -> (String, String) {
    call_pair(
        &["-sf", &scenario(&format!("uas_{name}.xml"))],
        &["-sf", &scenario(&format!("uac_{name}.xml"))],
    )
}

#[test]
fn busy_reaches_the_phone() {
    scenario_pair("busy");
}

#[test]
fn not_found_reaches_the_phone() {
    scenario_pair("not_found");
}

/// Offers the box cannot relay are refused at the box, never sent on: an SDP offer from a
/// phone that accepts no SDP answer gets 406, a body that is not SDP 415, both naming
/// `application/sdp`; the provider sees neither INVITE.
#[test]
fn offers_the_box_cannot_relay_are_refused_there() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    let (mut provider, provider_log) = provider_sipp(
        &lab,
        &b,
        &with_scenario(&scenario("uas_not_found.xml"), &AS_PROVIDER),
    );
    for phone in ["uac_not_acceptable.xml", "uac_unsupported_media.xml"] {
        let (ok, log) = sipp(
            &lab,
            Node::Phone,
            &with_scenario(&scenario(phone), &AS_PHONE),
            Duration::from_secs(10),
        );
        assert!(ok, "{phone}:\n{log}\ndaemon:\n{}", b.log());
    }
    provider.kill();
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    assert!(
        !plog.contains("INVITE"),
        "the provider got an INVITE:\n{plog}"
    );
    wait_calls_empty(&b.socket());
}

/// The SIP messages of a sipp `-trace_msg` log: (sent by sipp, text).
fn traced_messages(log: &str) -> Vec<(bool, String)> {
    log.split("\n----------------------------------------------- ")
        .filter_map(|entry| {
            let (head, text) = entry.split_once("\n\n")?;
            let sent = head.contains("message sent");
            (sent || head.contains("message received")).then(|| (sent, text.trim().to_string()))
        })
        .collect()
}

/// The value of header `name` in a message's text (first one, trimmed).
fn header_of<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// A header's `tag` parameter.
fn tag_of(value: &str) -> Option<&str> {
    value.split(';').find_map(|p| p.trim().strip_prefix("tag="))
}

/// Blind transfer with real peers: the phone's REFER reaches the provider with the target
/// as the phone wrote it and nothing of the LAN; the provider's NOTIFY (the transfer done)
/// reaches the phone.
#[test]
fn blind_transfer_through_the_box() {
    let (plog, _) = call_pair(
        &["-sf", &scenario("uas_transfer.xml")],
        &[
            "-sf",
            &scenario("uac_transfer.xml"),
            "-key",
            "refer_to",
            "<sip:01632960999@198.51.100.10>",
        ],
    );
    let msgs = traced_messages(&plog);
    let refer = msgs
        .iter()
        .find(|(sent, m)| !sent && m.starts_with("REFER "))
        .map(|(_, m)| m.as_str())
        .expect("a REFER at the provider");
    assert_eq!(
        header_of(refer, "Refer-To"),
        Some("<sip:01632960999@198.51.100.10>"),
        "{refer}"
    );
    assert_eq!(
        header_of(refer, "Referred-By"),
        Some("<sip:1001@198.51.100.10>"),
        "{refer}"
    );
}

/// Attended transfer with real peers: the phone's REFER names its consultation call's LAN
/// dialog in `Refer-To: ...?Replaces=`; the provider gets it naming the same call's provider
/// side (its Call-ID, the provider's tag, the box's tag), accepts, reports the transfer done in
/// a NOTIFY that reaches the phone, and ends the consultation call, which reaches the phone too.
#[test]
fn attended_transfer_names_the_provider_side_of_the_consultation_call() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    // Both calls: `-m 2` after AS_PROVIDER's `-m 1` (sipp takes the last).
    let (mut provider, provider_log) = provider_sipp(
        &lab,
        &b,
        &with_scenario(
            &scenario("uas_transfer.xml"),
            &[&AS_PROVIDER[..], &["-m", "2"]].concat(),
        ),
    );
    // The consultation call first: its LAN to-tag (the box's) is what the REFER must name.
    let tagfile = b.dir.path().join("consult-totag");
    let consult_log = b.dir.path().join("consult.log");
    let mut consult = sipp_bg(
        &lab,
        Node::Phone,
        &[
            "-sf",
            &scenario("uac_consult.xml"),
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5072",
            "-mp",
            "6100",
            "-s",
            "01632960999",
            "-m",
            "1",
            "-cid_str",
            "consult@%s",
            "-key",
            "tagfile",
            tagfile.to_str().unwrap(),
        ],
        &consult_log,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let totag = loop {
        if let Ok(t) = std::fs::read_to_string(&tagfile) {
            break t.trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no consultation call:\n{}\ndaemon:\n{}",
            std::fs::read_to_string(&consult_log).unwrap_or_default(),
            b.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let refer_to = format!(
        "<sip:01632960999@198.51.100.10?Replaces=consult%4010.100.0.50%3Bto-tag%3D{totag}%3Bfrom-tag%3Dconsult>"
    );
    let (ok, log) = sipp(
        &lab,
        Node::Phone,
        &[
            &with_scenario(&scenario("uac_transfer.xml"), &AS_PHONE)[..],
            &["-key", "refer_to", &refer_to],
        ]
        .concat(),
        Duration::from_secs(15),
    );
    assert!(ok, "transferring phone:\n{log}\ndaemon:\n{}", b.log());
    let consult_ok = consult.wait_timeout(Duration::from_secs(15)).unwrap();
    let prov_ok = provider.wait_timeout(Duration::from_secs(5)).unwrap();
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    assert!(
        consult_ok.is_some_and(|s| s.success()),
        "consultation call:\n{}",
        std::fs::read_to_string(&consult_log).unwrap_or_default()
    );
    assert!(prov_ok.is_some_and(|s| s.success()), "provider:\n{plog}");
    assert!(
        !plog.contains("10.100.0."),
        "LAN address at the provider:\n{plog}"
    );

    let msgs = traced_messages(&plog);
    let refer = msgs
        .iter()
        .find(|(sent, m)| !sent && m.starts_with("REFER "))
        .map(|(_, m)| m.as_str())
        .expect("a REFER at the provider");
    let refer_to = header_of(refer, "Refer-To").unwrap();
    let replaces = refer_to
        .split_once("?Replaces=")
        .map(|(_, r)| r.trim_end_matches('>'))
        .expect("Replaces in Refer-To")
        .replace("%3B", ";")
        .replace("%3b", ";")
        .replace("%3D", "=")
        .replace("%3d", "=")
        .replace("%40", "@");
    // The consultation call as the provider saw it: the INVITE that is not the REFER's call.
    let refer_call = header_of(refer, "Call-ID").unwrap();
    let invite = msgs
        .iter()
        .find(|(sent, m)| {
            !sent && m.starts_with("INVITE ") && header_of(m, "Call-ID") != Some(refer_call)
        })
        .map(|(_, m)| m.as_str())
        .expect("the consultation call at the provider");
    let call_id = header_of(invite, "Call-ID").unwrap();
    let box_tag = tag_of(header_of(invite, "From").unwrap()).unwrap();
    let answer = msgs
        .iter()
        .find(|(sent, m)| {
            *sent && m.starts_with("SIP/2.0 200") && header_of(m, "Call-ID") == Some(call_id)
        })
        .map(|(_, m)| m.as_str())
        .unwrap();
    let provider_tag = tag_of(header_of(answer, "To").unwrap()).unwrap();
    assert_eq!(
        replaces,
        format!("{call_id};to-tag={provider_tag};from-tag={box_tag}"),
        "{refer}"
    );
    wait_calls_empty(&b.socket());
}

/// Inside a call, besides hold: reliable early media (183 with SDP and 100rel, PRACK), INFO
/// and UPDATE with a new offer pass between real peers, every SDP the phone gets naming the
/// box (checked in the phone's scenario), nothing of the LAN at the provider.
#[test]
fn early_media_prack_info_and_update_through_the_box() {
    scenario_pair("inside");
}

/// A MESSAGE from a phone, outside any dialog, reaches the provider as written.
#[test]
fn message_from_the_phone_reaches_the_provider() {
    scenario_pair("message");
}

/// The `m=audio` ports in the SDP of the messages in a sipp trace that are not `own`.
fn media_ports(trace: &str, own: u16) -> Vec<u16> {
    trace
        .lines()
        .filter_map(|l| l.strip_prefix("m=audio "))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .filter(|p| *p != own)
        .collect()
}

/// Hold (a=sendonly answered a=recvonly) and resume by re-INVITE from the phone: each offer
/// and answer crosses the box with its direction, and the box keeps the same media ports on
/// both sides throughout.
#[test]
fn hold_and_resume_by_reinvite() {
    let (plog, flog) = call_pair(
        &["-sf", &scenario("uas_hold.xml")],
        &["-sf", &scenario("uac_hold.xml"), "-mp", "6000"],
    );
    // The phone sees the box's LAN port in each of the three answers.
    let lan = media_ports(&flog, 6000);
    assert_eq!(lan.len(), 3, "three answers to the phone:\n{flog}");
    assert!(
        lan.iter().all(|p| *p == lan[0]),
        "LAN port changed: {lan:?}"
    );
    // The provider sees the box's WAN port in each of the three offers.
    let wan = media_ports(&plog, 10000);
    assert_eq!(wan.len(), 3, "three offers to the provider:\n{plog}");
    assert!(
        wan.iter().all(|p| *p == wan[0]),
        "WAN port changed: {wan:?}"
    );
}

#[test]
fn cancel_while_ringing() {
    call_pair(
        &["-sf", &scenario("uas_ring_cancelled.xml")],
        &["-sf", &scenario("uac_cancel.xml")],
    );
}

#[test]
fn inbound_call_reaches_the_registered_phone_through_the_nat() {
    inbound_call(Duration::ZERO, LabOptions::default());
}

/// The broadband router runs the kernel's SIP ALG on port 5060 (nf_conntrack_sip/nf_nat_sip,
/// attached with an nftables ct helper): registration and calls still work.
#[test]
fn registration_and_inbound_call_survive_a_sip_alg() {
    inbound_call(
        Duration::ZERO,
        LabOptions {
            sip_alg: true,
            ..LabOptions::default()
        },
    );
}

/// The router maps the box to a random public port: the provider reaches it where the
/// registration came from.
#[test]
fn registration_and_inbound_call_through_a_fully_random_nat() {
    inbound_call(
        Duration::ZERO,
        LabOptions {
            nat_fully_random: true,
            ..LabOptions::default()
        },
    );
}

/// The isp forgets idle UDP bindings after 30 s: only the box's keepalive stream keeps the
/// provider able to reach it 45 s after the registration.
#[test]
fn inbound_call_after_idle_time_longer_than_the_nat_timeout() {
    inbound_call(Duration::from_secs(45), LabOptions::default());
}

/// Registers the phone (its contact: 10.100.0.50:5070) through the box, waits `idle`, and
/// returns where the provider reaches the box through the isp NAT (as a registrar does: the
/// REGISTER's source address) and the contact token the box registered for the phone.
fn register_phone_and_find_it(lab: &Lab, b: &Box_, idle: Duration) -> (String, String) {
    let sock = b.socket();
    // Register the phone (its contact: 10.100.0.50:5070).
    let mut registrar = start_registrar(lab, b.dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let (ok, log) = sipp(lab, Node::Phone, &REGISTER_PHONE, Duration::from_secs(15));
    assert!(ok, "registration failed:\n{log}");
    registrar.wait_timeout(Duration::from_secs(5)).unwrap();
    let regs: Value = serde_json::from_slice(&cli(&sock, &["regs", "--json"]).stdout).unwrap();
    let contact = regs[0]["upstream_contact"].as_str().unwrap().to_string();
    let token = contact
        .trim_start_matches("sip:")
        .split('@')
        .next()
        .unwrap()
        .to_string();
    std::thread::sleep(idle);
    // Where the router maps the box's SIP socket: the provider sends there (as a registrar
    // does, to the REGISTER's source address).
    let ct = lab
        .run_ok(
            Node::Isp,
            &[
                "conntrack",
                "-L",
                "-p",
                "udp",
                "--orig-src",
                "10.200.0.2",
                "--orig-port-src",
                "5060",
                // Only the flow to the SIP server: the box's STUN probes from the same socket
                // have a mapping of their own (another port with a fully-random NAT).
                "--orig-port-dst",
                "5060",
            ],
        )
        .unwrap();
    let public_port = ct
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("dport="))
        .nth(1)
        .unwrap_or_else(|| panic!("no NAT mapping for the box's SIP socket: {ct}"))
        .to_string();
    let target = format!("203.0.113.2:{public_port}");
    (target, token)
}

fn inbound_call(idle: Duration, opts: LabOptions) {
    lab::require_root().unwrap();
    let lab = Lab::with(opts).unwrap();
    let b = running_box(&lab);
    let sock = b.socket();
    let (target, token) = register_phone_and_find_it(&lab, &b, idle);

    // The phone answers; the provider calls the box's registered contact through the isp NAT
    // and hangs up itself.
    let phone_log = b.dir.path().join("phone.log");
    let mut uas = sipp_bg(
        &lab,
        Node::Phone,
        &["-sn", "uas", "-i", "10.100.0.50", "-p", "5070", "-m", "1"],
        &phone_log,
    );
    std::thread::sleep(Duration::from_millis(300));
    let provider_log = b.dir.path().join("provider.log");
    let mut uac = sipp_bg(
        &lab,
        Node::Provider,
        &[
            "-sn",
            "uac",
            &target,
            "-i",
            "198.51.100.10",
            "-p",
            "5060",
            "-s",
            &token,
            "-m",
            "1",
            "-d",
            "1000",
        ],
        &provider_log,
    );
    let prov_ok = uac.wait_timeout(Duration::from_secs(15)).unwrap();
    let phone_ok = uas.wait_timeout(Duration::from_secs(5)).unwrap();
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    let flog = std::fs::read_to_string(&phone_log).unwrap_or_default();
    assert!(
        prov_ok.is_some_and(|s| s.success()),
        "provider side failed:\n{plog}\ndaemon:\n{}",
        b.log()
    );
    assert!(
        phone_ok.is_some_and(|s| s.success()),
        "phone side failed:\n{flog}"
    );
    assert!(
        !plog.contains("10.100.0."),
        "LAN address reached the provider:\n{plog}"
    );
    assert!(
        flog.contains("INVITE sip:1001@10.100.0.50:5070"),
        "the phone is called at its contact:\n{flog}"
    );
    wait_calls_empty(&sock);
}

/// Audio through the relay both ways: the phone plays G.711 RTP, the provider echoes it, and
/// `voxgate calls` shows both directions counting while the call is up.
#[test]
fn call_audio_flows_both_ways_through_the_relay() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    // Everything the provider receives is captured, from the registration to the hang-up.
    let pcap = b.dir.path().join("provider.pcap");
    let mut capture = {
        let mut cmd = lab.command(Node::Provider, "tcpdump");
        cmd.args(["-i", "eth0", "-U", "-s", "0", "-w"])
            .arg(&pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        lab.spawn(Node::Provider, cmd).unwrap()
    };
    std::thread::sleep(Duration::from_millis(500));
    register_phone_and_find_it(&lab, &b, Duration::ZERO);
    // Its media port must be in the lab profile's RTP range: the box's firewall sends nowhere
    // else.
    let (mut uas, _) = provider_sipp(
        &lab,
        &b,
        &[
            "-sn",
            "uas",
            "-rtp_echo",
            "-mp",
            "10000",
            "-i",
            "198.51.100.10",
            "-p",
            "5060",
            "-m",
            "1",
        ],
    );
    let phone_log = b.dir.path().join("phone.log");
    let mut uac = sipp_bg(
        &lab,
        Node::Phone,
        &[
            "-sf",
            &scenario("uac_rtp.xml"),
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-s",
            "01632960123",
            "-m",
            "1",
            "-mi",
            "10.100.0.50",
        ],
        &phone_log,
    );
    let sock = b.socket();
    let t0 = std::time::Instant::now();
    let mut last = Value::Null;
    let mut flowing = false;
    while t0.elapsed() < Duration::from_secs(6) && !flowing {
        std::thread::sleep(Duration::from_millis(200));
        let out = cli(&sock, &["calls", "--json"]);
        last = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let s = &last[0]["media"]["streams"][0];
        let up = s["lan"]["received"]["packets"].as_u64().unwrap_or(0);
        let down = s["wan"]["received"]["packets"].as_u64().unwrap_or(0);
        flowing = up >= 50 && down >= 50;
    }
    assert!(
        flowing,
        "audio did not flow both ways: {last:#}\ndaemon:\n{}",
        b.log()
    );
    let s = &last[0]["media"]["streams"][0];
    assert_eq!(s["lan"]["latched"], true);
    assert_eq!(s["wan"]["latched"], true);
    assert_eq!(s["wan"]["dropped_foreign"], 0);
    let phone_ok = uac.wait_timeout(Duration::from_secs(15)).unwrap();
    let prov_ok = uas.wait_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        phone_ok.is_some_and(|s| s.success()),
        "phone side failed:\n{}",
        std::fs::read_to_string(&phone_log).unwrap_or_default()
    );
    assert!(prov_ok.is_some_and(|s| s.success()), "provider side failed");
    wait_calls_empty(&sock);

    // Nothing that reached the provider names the voice LAN: not in any IP header, not in
    // any byte of any packet (SIP, SDP, RTP, RTCP).
    std::thread::sleep(Duration::from_millis(300));
    capture.kill();
    let bytes = std::fs::read(&pcap).unwrap();
    let text = lab
        .run_ok(Node::Provider, &["tcpdump", "-nr", pcap.to_str().unwrap()])
        .unwrap();
    assert!(
        text.lines().count() > 100
            && text.contains("198.51.100.10.5060")
            && text.contains(".10000:"),
        "the capture holds the signalling and the audio:\n{text}"
    );
    assert!(
        !text.contains("10.100.0."),
        "a voice-LAN address in a packet header:\n{text}"
    );
    let leak = bytes.windows(9).position(|w| w == b"10.100.0.");
    assert!(
        leak.is_none(),
        "a voice-LAN address in a packet at byte {leak:?} of the capture"
    );
}

/// sip.transport: tcp — the box registers over one TCP connection to the provider (phones
/// stay on UDP), keeps it alive, and the provider's answers come back on it.
#[test]
fn registration_over_tcp_to_the_provider() {
    registration_over_a_connection("tcp");
}

/// TLS towards the provider: the box verifies the provider's certificate (issued by a CA the
/// configuration adds) and registers over it; the provider's TLS is OpenSSL (socat), with the
/// sipp registrar behind it. A certificate from an unknown CA is refused.
#[test]
fn registration_over_tls_to_the_provider() {
    registration_over_a_connection("tls");
}

/// A CA and a certificate for the provider's address, as PEM files in `dir`: (ca, cert, key).
fn provider_certificate(dir: &std::path::Path, ip: &str) -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "voxgate lab provider CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![ip.to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    (
        write("ca.pem", ca.pem()),
        write("provider.pem", leaf.pem()),
        write("provider.key", key.serialize_pem()),
    )
}

/// The provider's TLS front (OpenSSL, via socat) on 5061, passing to the sipp registrar's
/// TCP port 5060 behind it.
fn tls_front(lab: &Lab, cert: &str, key: &str) -> lab::LabProcess {
    let mut cmd = lab.command(Node::Provider, "socat");
    cmd.arg(format!(
        "OPENSSL-LISTEN:5061,bind=198.51.100.10,reuseaddr,fork,cert={cert},key={key},verify=0"
    ))
    .arg("TCP:198.51.100.10:5060")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    lab.spawn(Node::Provider, cmd).unwrap()
}

fn registration_over_a_connection(transport: &str) {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = provider_certificate(certs.path(), "198.51.100.10");
    let b = match transport {
        "tls" => running_box_with(
            &lab,
            &format!("sip:\n  transport: tls\n  tls_ca_file: {ca}\n"),
        ),
        _ => running_box_with(&lab, &format!("sip:\n  transport: {transport}\n")),
    };
    let _tls = (transport == "tls").then(|| tls_front(&lab, &cert, &key));
    let log = b.dir.path().join("provider-messages.log");
    let mut cmd = lab.command(Node::Provider, "sipp");
    cmd.args([
        "-sf",
        &scenario("registrar.xml"),
        "-t",
        "t1",
        "-i",
        "198.51.100.10",
        "-p",
        "5060",
        "-m",
        "1",
    ])
    .args([
        "-nostdin",
        "-timeout_error",
        "-timeout",
        "20s",
        "-trace_msg",
        "-message_file",
    ])
    .arg(&log)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut registrar = lab.spawn(Node::Provider, cmd).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (ok, out) = sipp(&lab, Node::Phone, &REGISTER_PHONE, Duration::from_secs(15));
    let plog = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        ok,
        "registration over {transport} failed:\n{out}\nprovider:\n{plog}\ndaemon:\n{}",
        b.log()
    );
    let st = registrar.wait_timeout(Duration::from_secs(5)).unwrap();
    assert!(st.is_some_and(|s| s.success()), "registrar failed:\n{plog}");
    let upper = transport.to_ascii_uppercase();
    assert!(plog.contains("TCP message received"), "{plog}");
    assert!(
        plog.contains(&format!("Via: SIP/2.0/{upper} 10.200.0.2:5060")),
        "{plog}"
    );
    assert!(
        plog.contains(&format!(";transport={transport}>")),
        "the contact names {transport}:\n{plog}"
    );
    let regs: Value =
        serde_json::from_slice(&cli(&b.socket(), &["regs", "--json"]).stdout).unwrap();
    assert_eq!(regs[0]["state"], "registered", "{regs:#}");
    if transport == "tls" {
        assert!(
            b.log().contains("SIP TLS connection to the provider open"),
            "{}",
            b.log()
        );
    }
}

/// A provider certificate from a CA the box does not trust: no connection, the phone's
/// registration times out, and the log says why.
#[test]
fn tls_to_a_provider_with_an_untrusted_certificate_is_refused() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = provider_certificate(certs.path(), "198.51.100.10");
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = provider_certificate(other.path(), "198.51.100.10");
    let b = running_box_with(
        &lab,
        &format!("sip:\n  transport: tls\n  tls_ca_file: {other_ca}\n"),
    );
    let _tls = tls_front(&lab, &cert, &key);
    std::thread::sleep(Duration::from_millis(300));
    // One REGISTER attempt: the box cannot reach the provider.
    let _ = sipp(&lab, Node::Phone, &REGISTER_PHONE, Duration::from_secs(3));
    let t0 = std::time::Instant::now();
    while !b.log().contains("TLS handshake with 198.51.100.10") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no TLS failure logged:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(b.log().contains("invalid peer certificate"), "{}", b.log());
    assert!(!b.log().contains("SIP TLS connection to the provider open"));
}

/// Busy-lamp field: the phone subscribes to 1002's dialog state through the box, gets the
/// provider's NOTIFY, unsubscribes and gets the final NOTIFY; nothing of the LAN upstream.
#[test]
fn subscription_and_notify_through_the_box() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    let (mut notifier, provider_log) = provider_sipp(
        &lab,
        &b,
        &with_scenario(&scenario("uas_notify.xml"), &AS_PROVIDER),
    );
    let (ok, log) = sipp(
        &lab,
        Node::Phone,
        &[
            "-sf",
            &scenario("uac_subscribe.xml"),
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-s",
            "1001",
            "-m",
            "1",
        ],
        Duration::from_secs(15),
    );
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    assert!(
        ok,
        "phone side failed:\n{log}\nprovider:\n{plog}\ndaemon:\n{}",
        b.log()
    );
    let done = notifier.wait_timeout(Duration::from_secs(5)).unwrap();
    let plog = std::fs::read_to_string(&provider_log).unwrap_or_default();
    assert!(
        done.is_some_and(|s| s.success()),
        "provider side failed:\n{plog}"
    );
    assert!(plog.contains("SUBSCRIBE sip:1002@198.51.100.10"), "{plog}");
    assert!(
        !plog.contains("10.100.0."),
        "LAN address reached the provider:\n{plog}"
    );
}

/// Message waiting: the provider's unsolicited message-summary NOTIFY reaches the registered
/// phone through the isp NAT.
#[test]
fn message_waiting_notify_reaches_the_registered_phone() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    let (target, token) = register_phone_and_find_it(&lab, &b, Duration::ZERO);
    let phone_log = b.dir.path().join("phone.log");
    let mut phone = sipp_bg(
        &lab,
        Node::Phone,
        &[
            "-sf",
            &scenario("uas_mwi.xml"),
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-m",
            "1",
        ],
        &phone_log,
    );
    std::thread::sleep(Duration::from_millis(300));
    let (ok, log) = sipp(
        &lab,
        Node::Provider,
        &[
            "-sf",
            &scenario("uac_mwi.xml"),
            &target,
            "-i",
            "198.51.100.10",
            "-p",
            "5060",
            "-s",
            &token,
            "-m",
            "1",
        ],
        Duration::from_secs(15),
    );
    let flog = std::fs::read_to_string(&phone_log).unwrap_or_default();
    assert!(
        ok,
        "provider side failed:\n{log}\nphone:\n{flog}\ndaemon:\n{}",
        b.log()
    );
    let done = phone.wait_timeout(Duration::from_secs(5)).unwrap();
    let flog = std::fs::read_to_string(&phone_log).unwrap_or_default();
    assert!(
        done.is_some_and(|s| s.success()),
        "phone side failed:\n{flog}"
    );
    assert!(
        flog.contains("NOTIFY sip:1001@10.100.0.50:5070"),
        "the phone is notified at its contact:\n{flog}"
    );
}

/// One of the provider's servers (tests/sipp/provider_server.xml) on `ip`, living up to a
/// minute or until killed.
fn provider_server(lab: &Lab, ip: &str, log: &std::path::Path) -> lab::LabProcess {
    let mut cmd = lab.command(Node::Provider, "sipp");
    cmd.args([
        "-sf",
        &scenario("provider_server.xml"),
        "-i",
        ip,
        "-p",
        "5060",
        "-nostdin",
        "-timeout",
        "60s",
        "-trace_msg",
        "-message_file",
    ])
    .arg(log)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    lab.spawn(Node::Provider, cmd).unwrap()
}

/// The provider servers' states in `voxgate status --json`.
fn upstream_states(sock: &std::path::Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&cli(sock, &["status", "--json"]).stdout).unwrap();
    v["sip"]["upstreams"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|u| u["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_upstreams(b: &Box_, want: &[&str]) {
    let t0 = std::time::Instant::now();
    loop {
        let got = upstream_states(&b.socket());
        if got == want {
            return;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "provider servers {got:?}, expected {want:?}\ndaemon:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The primary provider server dies: the box notices from its health checks, the phone's next
/// registration and its calls go to the fallback, and the box returns to the primary once it
/// answers again.
#[test]
fn primary_provider_server_killed_phones_move_to_the_fallback_and_back() {
    failover(false);
}

/// The same with the servers found in DNS (RFC 3263): the site names only the provider's
/// domain, whose SRV records (served by dnsmasq in the provider's network) list the primary
/// at priority 10 and the fallback at 20.
#[test]
fn provider_servers_from_dns_srv_fail_over_and_back() {
    failover(true);
}

fn failover(srv: bool) {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    add_address(&lab, Node::Provider, "198.51.100.11/24");
    let overrides = if srv {
        "    sip_server: voice.lab\n"
    } else {
        "    sip_fallbacks: [198.51.100.11]\n"
    };
    let text = config::LAB_CONFIG.replace(
        "provider:\n  profile: lab\n",
        &format!("provider:\n  profile: lab\n  overrides:\n{overrides}"),
    ) + "sip:\n  health_interval: 2s\n";
    assert!(text.contains(overrides), "the lab config changed shape");
    let dns_dir = tempfile::tempdir().unwrap();
    let _dns = srv.then(|| {
        let mut cmd = lab.command(Node::Provider, "dnsmasq");
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=198.51.100.10",
            "--user=root",
            "--srv-host=_sip._udp.voice.lab,sip1.voice.lab,5060,10,10",
            "--srv-host=_sip._udp.voice.lab,sip2.voice.lab,5060,20,10",
            "--host-record=sip1.voice.lab,198.51.100.10",
            "--host-record=sip2.voice.lab,198.51.100.11",
        ])
        .arg(format!(
            "--pid-file={}",
            dns_dir.path().join("pid").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        let p = lab.spawn(Node::Provider, cmd).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        p
    });
    let b = running_box_config(&lab, &text);
    if srv {
        assert!(
            b.log().contains("SRV _sip._udp.voice.lab. priority 10"),
            "servers from SRV:\n{}",
            b.log()
        );
    }
    let sock = b.socket();
    let mut primary = provider_server(&lab, "198.51.100.10", &b.dir.path().join("primary.log"));
    let _fallback = provider_server(&lab, "198.51.100.11", &b.dir.path().join("fallback.log"));
    wait_upstreams(&b, &["active", "standby"]);

    let register = || {
        let (ok, log) = sipp(&lab, Node::Phone, &REGISTER_PHONE, Duration::from_secs(15));
        assert!(ok, "registration failed:\n{log}\ndaemon:\n{}", b.log());
        let regs: Value = serde_json::from_slice(&cli(&sock, &["regs", "--json"]).stdout).unwrap();
        assert_eq!(regs[0]["state"], "registered", "{regs:#}");
        regs[0]["upstream"].as_str().unwrap().to_string()
    };
    assert_eq!(register(), "198.51.100.10:5060");

    primary.kill();
    wait_upstreams(&b, &["down", "active"]);
    assert_eq!(register(), "198.51.100.11:5060");
    let (ok, log) = sipp(
        &lab,
        Node::Phone,
        &[
            "-sn",
            "uac",
            "10.100.0.1:5060",
            "-i",
            "10.100.0.50",
            "-p",
            "5070",
            "-s",
            "01632960123",
            "-m",
            "1",
            "-d",
            "500",
        ],
        Duration::from_secs(15),
    );
    assert!(
        ok,
        "call through the fallback failed:\n{log}\ndaemon:\n{}",
        b.log()
    );
    let flog = std::fs::read_to_string(b.dir.path().join("fallback.log")).unwrap_or_default();
    assert!(flog.contains("INVITE sip:01632960123@"), "{flog}");
    assert!(
        !flog.contains("10.100.0."),
        "LAN address reached the provider:\n{flog}"
    );

    let _primary = provider_server(&lab, "198.51.100.10", &b.dir.path().join("primary2.log"));
    wait_upstreams(&b, &["active", "standby"]);
    assert_eq!(register(), "198.51.100.10:5060");
    wait_calls_empty(&sock);
}

/// A call with no audio in either direction is ended by the box after the media timeout: a
/// BYE with `Reason: ...media timeout` to both sides, the call gone from `voxgate calls` and
/// its relay ports closed.
#[test]
fn silent_call_is_ended_on_both_sides_and_its_ports_freed() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box_with(&lab, "media:\n  timeout: 3s\n");
    let (plog, flog) = call_pair_in(
        &lab,
        &b,
        &["-sf", &scenario("uas_silent.xml")],
        &["-sf", &scenario("uac_silent.xml"), "-mp", "6000"],
    );
    let lan = media_ports(&flog, 6000);
    let wan = media_ports(&plog, 10000);
    assert_eq!((lan.len(), wan.len()), (1, 1), "{flog}\n{plog}");
    let bound = lab.run_ok(Node::Box, &["ss", "-Hlun"]).unwrap();
    for port in [lan[0], lan[0] + 1, wan[0], wan[0] + 1] {
        assert!(
            !bound.contains(&format!(":{port} ")),
            "relay port {port} still open after the call ended:\n{bound}"
        );
    }
    assert!(
        b.log().contains("no media in either direction"),
        "{}",
        b.log()
    );
}

/// A phone on SIP over TCP calls through the box (the box's LAN side accepts connections and
/// answers over them); the provider side stays UDP.
#[test]
fn outbound_call_from_a_phone_over_tcp() {
    let (_, flog) = call_pair(&["-sn", "uas"], &["-sn", "uac", "-t", "t1", "-d", "500"]);
    assert!(flog.contains("TCP message received"), "{flog}");
    assert!(flog.contains("Via: SIP/2.0/TCP 10.100.0.50"), "{flog}");
}

/// A phone registers over TCP: the registration is tied to its connection, and when the
/// phone closes it, the box marks the registration disconnected (calls for it get 480
/// instead of being sent into the void).
#[test]
fn registration_over_tcp_from_the_phone_is_tied_to_its_connection() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    let mut registrar = start_registrar(&lab, b.dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let mut args = REGISTER_PHONE.to_vec();
    args.extend(["-t", "t1"]);
    let (ok, log) = sipp(&lab, Node::Phone, &args, Duration::from_secs(15));
    assert!(
        ok,
        "registration over TCP failed:\n{log}\ndaemon:\n{}",
        b.log()
    );
    registrar.wait_timeout(Duration::from_secs(5)).unwrap();
    let sock = b.socket();
    let t0 = std::time::Instant::now();
    loop {
        let regs: Value = serde_json::from_slice(&cli(&sock, &["regs", "--json"]).stdout).unwrap();
        assert_eq!(regs[0]["phone_transport"], "tcp", "{regs:#}");
        if regs[0]["state"] == "disconnected" {
            assert!(
                regs[0]["last_error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("connection closed"),
                "{regs:#}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "sipp has exited, its connection with it: {regs:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The box learns its public SIP address from the provider's STUN server (coturn) before any
/// phone has registered: the isp NAT's address and the port it maps the SIP socket to.
#[test]
fn public_address_from_the_provider_s_stun_server() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let mut cmd = lab.command(Node::Provider, "turnserver");
    cmd.args([
        "-n",
        "--stun-only",
        "--listening-ip",
        "198.51.100.10",
        "--listening-port",
        "3478",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--log-file",
        "stdout",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _stun = lab.spawn(Node::Provider, cmd).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let b = running_box(&lab);
    let t0 = std::time::Instant::now();
    loop {
        let v: Value =
            serde_json::from_slice(&cli(&b.socket(), &["status", "--json"]).stdout).unwrap();
        if v["sip"]["public_address"] == "203.0.113.2:5060" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no public address from STUN: {:#}\ndaemon:\n{}",
            v["sip"],
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(b.log().contains("\"source\":\"STUN\""), "{}", b.log());
}

/// Adds `cidr` to `node`'s eth0 (a second phone, a second provider server).
fn add_address(lab: &Lab, node: Node, cidr: &str) {
    lab.run_ok(node, &["ip", "addr", "add", cidr, "dev", "eth0"])
        .unwrap();
}

/// Registers user 1001 from both phones of a shared line (10.100.0.50 and .51, the second
/// added with [`add_address`]); `context` is printed if one fails.
fn register_both_phones(lab: &Lab, b: &Box_, context: &str) {
    for ip in ["10.100.0.50", "10.100.0.51"] {
        let mut args = REGISTER_PHONE.to_vec();
        args[4] = ip;
        let (ok, log) = sipp(lab, Node::Phone, &args, Duration::from_secs(15));
        assert!(
            ok,
            "{ip}: registration failed:\n{log}\ndaemon:\n{}\n{context}",
            b.log()
        );
    }
}

/// Two desk phones on one line (the same AoR, each with its own address): the provider's
/// registrar sees two registrations with different contacts and Call-IDs, and `voxgate regs`
/// lists both phones.
#[test]
fn two_phones_register_one_shared_line() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    let sock = b.socket();
    add_address(&lab, Node::Phone, "10.100.0.51/24");
    let mut registrar = start_registrar_for(&lab, b.dir.path(), 2);
    std::thread::sleep(Duration::from_millis(300));
    register_both_phones(&lab, &b, "");
    let st = registrar.wait_timeout(Duration::from_secs(5)).unwrap();
    let provider_log =
        std::fs::read_to_string(b.dir.path().join("provider-messages.log")).unwrap_or_default();
    assert!(st.is_some_and(|s| s.success()), "registrar: {provider_log}");
    let regs: Value = serde_json::from_slice(&cli(&sock, &["regs", "--json"]).stdout).unwrap();
    let regs = regs.as_array().unwrap();
    assert_eq!(regs.len(), 2, "{regs:#?}");
    assert!(
        regs.iter()
            .all(|r| r["aor"] == "sip:1001@198.51.100.10" && r["state"] == "registered"),
        "{regs:#?}"
    );
    let addrs: Vec<&str> = regs
        .iter()
        .map(|r| r["phone_addr"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, ["10.100.0.50:5070", "10.100.0.51:5070"]);
    assert_ne!(regs[0]["upstream_contact"], regs[1]["upstream_contact"]);
    // Both contacts reached the provider, in registrations of their own.
    for r in regs {
        let c = r["upstream_contact"].as_str().unwrap();
        assert!(
            provider_log.contains(&format!("Contact: <{c}>")),
            "{c} not registered:\n{provider_log}"
        );
    }
    let call_ids: std::collections::BTreeSet<&str> = provider_log
        .lines()
        .filter_map(|l| l.strip_prefix("Call-ID: "))
        .collect();
    assert!(call_ids.len() >= 2, "{call_ids:?}");
    assert!(
        !provider_log.contains("10.100.0."),
        "LAN address leaked:\n{provider_log}"
    );
}

/// A line shared by two desk phones, with a real forking provider (Kamailio as registrar and
/// proxy, digest auth, tests/lab/provider-kamailio.cfg): both phones register through the box,
/// a call for the line is forked by the provider to both registrations, the box rings both
/// phones (one INVITE each, same Call-ID upstream), one is busy, the other answers, and the
/// caller's BYE reaches the phone that answered.
#[test]
fn a_call_to_a_shared_line_forked_by_the_provider_rings_both_phones() {
    lab::require_root().unwrap();
    let lab = Lab::new().unwrap();
    let b = running_box(&lab);
    add_address(&lab, Node::Phone, "10.100.0.51/24");
    add_address(&lab, Node::Provider, "198.51.100.11/24");
    let klog = b.dir.path().join("kamailio.log");
    let mut cmd = lab.command(Node::Provider, "kamailio");
    cmd.arg("-f")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/lab/provider-kamailio.cfg"
        ))
        .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
        .arg(b.dir.path())
        .arg("-w")
        .arg(b.dir.path())
        .arg("-P")
        .arg(b.dir.path().join("kamailio.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&klog).unwrap());
    let _kamailio = lab.spawn(Node::Provider, cmd).unwrap();
    let t0 = std::time::Instant::now();
    while !lab
        .run_ok(Node::Provider, &["ss", "-Hlun", "sport = :5060"])
        .unwrap()
        .contains("198.51.100.10:5060")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "kamailio did not start:\n{}",
            std::fs::read_to_string(&klog).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    register_both_phones(
        &lab,
        &b,
        &format!(
            "kamailio:\n{}",
            std::fs::read_to_string(&klog).unwrap_or_default()
        ),
    );

    let (a_log, b_log) = (
        b.dir.path().join("phone-a.log"),
        b.dir.path().join("phone-b.log"),
    );
    let mut phone_a = sipp_bg(
        &lab,
        Node::Phone,
        &["-sn", "uas", "-i", "10.100.0.50", "-p", "5070", "-m", "1"],
        &a_log,
    );
    let mut phone_b = sipp_bg(
        &lab,
        Node::Phone,
        &[
            "-sf",
            &scenario("uas_busy.xml"),
            "-i",
            "10.100.0.51",
            "-p",
            "5070",
            "-m",
            "1",
        ],
        &b_log,
    );
    std::thread::sleep(Duration::from_millis(300));
    let caller_log = b.dir.path().join("caller.log");
    let mut caller = sipp_bg(
        &lab,
        Node::Provider,
        &[
            "-sf",
            &scenario("uac_routed.xml"),
            "198.51.100.10:5060",
            "-i",
            "198.51.100.11",
            "-p",
            "5060",
            "-s",
            "1001",
            "-m",
            "1",
        ],
        &caller_log,
    );
    let caller_ok = caller.wait_timeout(Duration::from_secs(20)).unwrap();
    let a_ok = phone_a.wait_timeout(Duration::from_secs(5)).unwrap();
    let b_ok = phone_b.wait_timeout(Duration::from_secs(5)).unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let report = || {
        format!(
            "caller:\n{}\nphone A:\n{}\nphone B:\n{}\nkamailio:\n{}\ndaemon:\n{}",
            read(&caller_log),
            read(&a_log),
            read(&b_log),
            read(&klog),
            b.log()
        )
    };
    assert!(
        caller_ok.is_some_and(|s| s.success()),
        "the caller's call failed\n{}",
        report()
    );
    assert!(
        a_ok.is_some_and(|s| s.success()),
        "phone A did not answer and get the BYE\n{}",
        report()
    );
    assert!(
        b_ok.is_some_and(|s| s.success()),
        "phone B did not ring\n{}",
        report()
    );
    assert!(
        read(&klog).contains("forking INVITE for 1001"),
        "{}",
        report()
    );
    wait_calls_empty(&b.socket());
}
