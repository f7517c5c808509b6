//! Every class of configuration error is reported with its file, line, column, field path and
//! hint, and all of them at once.

use std::path::{Path, PathBuf};

use config::{load_str, Diagnostic, Errors};

const GOOD: &str = "\
interfaces:
  wan:
    device: wan0
  lan:
    device: lan0
    address: 10.100.0.1/24
provider:
  profile: lab
";

fn check(text: &str) -> Result<config::Loaded, Errors> {
    load_str(Path::new("/etc/voxgate/voxgate.yaml"), text, &[])
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match check(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// The one error at `path`, asserting position and that message and hint contain the words.
fn expect(text: &str, path: &str, line: usize, column: usize, msg: &str, hint: &str) {
    let all = errors(text);
    let d = all
        .iter()
        .find(|d| d.path == path)
        .unwrap_or_else(|| panic!("no error at {path}; got:\n{}", Errors(all.clone())));
    assert_eq!(d.file, PathBuf::from("/etc/voxgate/voxgate.yaml"));
    assert_eq!((d.line, d.column), (line, column), "position of {d}");
    assert!(d.message.contains(msg), "message of {d} lacks {msg:?}");
    let h = d.hint.as_deref().unwrap_or_default();
    assert!(h.contains(hint), "hint of {d} lacks {hint:?}");
}

#[test]
fn the_minimal_config_loads_with_defaults() {
    let l = check(GOOD).unwrap();
    assert_eq!(l.config.site.name, "voxgate");
    assert_eq!(l.config.sip.lan_port.0, 5060);
    assert_eq!(l.profile.name, "lab");
    assert_eq!(l.digest.len(), 64);
}

#[test]
fn unknown_key_points_at_the_key_and_suggests() {
    let t = GOOD.replace("    address: 10.100", "    adress: 10.100");
    // the misspelt key, and the key it was meant to be is now missing
    expect(
        &t,
        "interfaces.lan.adress",
        6,
        5,
        "unknown key `adress`",
        "did you mean `address`?",
    );
    expect(
        &t,
        "interfaces.lan.address",
        4,
        3,
        "missing required key `address`",
        "10.100.0.1/24",
    );
}

#[test]
fn wrong_type_names_what_was_expected() {
    let t = format!("{GOOD}dhcp:\n  enabled: maybe\n");
    expect(
        &t,
        "dhcp.enabled",
        10,
        12,
        "expected true or false, found \"maybe\"",
        "Serve DHCP",
    );
    let t = format!("{GOOD}dhcp:\n  pools: 5\n");
    expect(&t, "dhcp.pools", 10, 10, "expected a list, found 5", "");
}

#[test]
fn bad_addresses_and_networks_say_why() {
    let t = GOOD.replace("10.100.0.1/24", "10.100.0.300/24");
    expect(
        &t,
        "interfaces.lan.address",
        6,
        14,
        "invalid value \"10.100.0.300/24\"",
        "10.100.0.1/24",
    );
    let t = GOOD.replace("10.100.0.1/24", "10.100.0.0/24");
    expect(
        &t,
        "interfaces.lan.address",
        6,
        14,
        "network or broadcast address",
        "",
    );
    let t = format!("{GOOD}  overrides:\n    extra_networks: [198.51.100.0/33]\n");
    expect(
        &t,
        "provider.overrides.extra_networks[0]",
        10,
        22,
        "invalid value \"198.51.100.0/33\"",
        "CIDR",
    );
    let t = format!("{GOOD}dhcp:\n  pools: [{{start: 10.100.0.5, end: 10.100.0.x}}]\n");
    expect(&t, "dhcp.pools[0].end", 10, 36, "10.100.0.x", "IP address");
}

#[test]
fn ports_out_of_range() {
    let t = format!("{GOOD}sip:\n  lan_port: 70000\n");
    expect(
        &t,
        "sip.lan_port",
        10,
        13,
        "70000 is out of range: must be 1-65535",
        "",
    );
    let t = format!("{GOOD}media:\n  lan_ports: \"20000-70000\"\n");
    expect(
        &t,
        "media.lan_ports",
        10,
        14,
        "\"70000\" is not a port 1-65535",
        "range",
    );
}

#[test]
fn overlapping_port_ranges() {
    let t = format!("{GOOD}media:\n  lan_ports: \"20000-30000\"\n  wan_ports: \"30000-39999\"\n");
    expect(
        &t,
        "media.wan_ports",
        11,
        14,
        "ports 30000-39999 overlap 20000-30000 used by media.lan_ports",
        "own ports",
    );
    let t = format!("{GOOD}sip:\n  lan_port: 53\n");
    expect(
        &t,
        "sip.lan_port",
        10,
        13,
        "overlap 53 used by dns.enabled",
        "",
    );
}

#[test]
fn dhcp_pool_outside_the_voice_subnet_and_overlapping() {
    let t = format!(
        "{GOOD}dhcp:\n  pools:\n    - {{start: 10.100.0.100, end: 10.100.1.20}}\n    - {{start: 10.100.0.150, end: 10.100.0.160}}\n"
    );
    expect(
        &t,
        "dhcp.pools[0].end",
        11,
        34,
        "10.100.1.20 is outside the voice subnet 10.100.0.0/24",
        "inside",
    );
    expect(&t, "dhcp.pools[1]", 12, 7, "overlaps dhcp.pools[0]", "");
    let t = format!("{GOOD}dhcp:\n  pools: [{{start: 10.100.0.1, end: 10.100.0.9}}]\n");
    expect(
        &t,
        "dhcp.pools[0]",
        10,
        11,
        "contains the box's own address 10.100.0.1",
        "exclude",
    );
}

#[test]
fn vlan_outside_1_to_4094() {
    let t = GOOD.replace("    device: lan0\n", "    device: lan0\n    vlan: 4095\n");
    expect(
        &t,
        "interfaces.lan.vlan",
        6,
        11,
        "4095 is out of range: must be 1-4094",
        "VLAN",
    );
    let t = GOOD.replace("    device: lan0\n", "    device: lan0\n    vlan: 0\n");
    expect(&t, "interfaces.lan.vlan", 6, 11, "0 is out of range", "");
}

#[test]
fn overlapping_subnets_and_static_wan_rules() {
    let t = GOOD.replace(
        "    device: wan0\n",
        "    device: wan0\n    mode: static\n    address: 10.100.0.2/16\n    gateway: 10.99.0.1\n",
    );
    expect(
        &t,
        "interfaces.wan.address",
        5,
        14,
        "overlaps the voice LAN subnet",
        "renumber",
    );
    expect(
        &t,
        "interfaces.wan.gateway",
        6,
        14,
        "outside the WAN subnet 10.100.0.0/16",
        "",
    );
    let t = GOOD.replace("    device: wan0\n", "    device: wan0\n    mode: static\n");
    expect(
        &t,
        "interfaces.wan",
        2,
        3,
        "static WAN needs `address`",
        "mode: dhcp",
    );
    let t = GOOD.replace("    device: wan0\n", "    device: wan0\n    mode: statc\n");
    expect(
        &t,
        "interfaces.wan.mode",
        4,
        11,
        "\"statc\" is not one of: dhcp, static",
        "did you mean `static`?",
    );
}

#[test]
fn unknown_profile_lists_the_known_ones() {
    let t = GOOD.replace("profile: lab", "profile: babbelvoice");
    expect(
        &t,
        "provider.profile",
        8,
        12,
        "no provider profile named \"babbelvoice\"",
        "babblevoice, lab",
    );
}

#[test]
fn profile_errors_point_into_the_profile_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("acme.yaml"),
        "name: acme\ntitle: Acme\nrevision: '1'\nsource: test\nnetworks:\n  - cidr: 192.0.2.0/24\n  - cidr: 192.0.2.128/25\nservices:\n  - {name: sip, purpose: SIP, protocols: [sctp], ports: [5060]}\nsip: {port: 5060}\n",
    )
    .unwrap();
    let t = GOOD.replace("profile: lab", "profile: acme");
    let all = load_str(
        Path::new("/etc/voxgate/voxgate.yaml"),
        &t,
        &[dir.path().to_path_buf()],
    )
    .unwrap_err()
    .0;
    assert_eq!(all.len(), 1, "{}", Errors(all.clone()));
    let d = &all[0];
    assert_eq!(d.file, dir.path().join("acme.yaml"));
    assert_eq!(
        (d.line, d.column, d.path.as_str()),
        (9, 43, "services[0].protocols[0]")
    );
    assert!(
        d.message.contains("\"sctp\" is not one of: udp, tcp"),
        "{d}"
    );
    // once the schema error is fixed, the overlap is found
    std::fs::write(
        dir.path().join("acme.yaml"),
        std::fs::read_to_string(dir.path().join("acme.yaml"))
            .unwrap()
            .replace("sctp", "udp"),
    )
    .unwrap();
    let all = load_str(
        Path::new("/etc/voxgate/voxgate.yaml"),
        &t,
        &[dir.path().to_path_buf()],
    )
    .unwrap_err()
    .0;
    assert_eq!((all[0].line, all[0].path.as_str()), (7, "networks[1].cidr"));
    assert!(
        all[0].message.contains("overlaps networks[0]"),
        "{}",
        all[0]
    );
}

#[test]
fn all_errors_at_once_in_line_order() {
    let t = "\
interfaces:
  wan: {device: wan0, colour: blue}
  lan:
    device: lan0
    vlan: 5000
    address: 10.100.0.1/24
provider:
  profile: lab
sip:
  lan_port: -1
media:
  timeout: often
";
    let all = errors(t);
    let got: Vec<(usize, &str)> = all.iter().map(|d| (d.line, d.path.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (2, "interfaces.wan.colour"),
            (5, "interfaces.lan.vlan"),
            (10, "sip.lan_port"),
            (12, "media.timeout"),
        ]
    );
    let text = Errors(all).to_string();
    assert!(text.ends_with("4 errors"), "{text}");
    assert!(
        text.contains("/etc/voxgate/voxgate.yaml:12:12: media.timeout: invalid value \"often\""),
        "{text}"
    );
}

#[test]
fn yaml_syntax_error_has_a_position() {
    let all = errors("interfaces:\n  wan: [unclosed\n");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].path, "(syntax)");
    assert!(all[0].line >= 2, "{}", all[0]);
    assert!(
        all[0].message.starts_with("YAML syntax error"),
        "{}",
        all[0]
    );
}

#[test]
fn shipped_configs_and_profiles_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let dirs = vec![root.join("providers")];
    for f in ["voxgate.example.yaml", "voxgate.lab.yaml"] {
        let p = root.join(f);
        let t = std::fs::read_to_string(&p).unwrap();
        if let Err(e) = load_str(&p, &t, &dirs) {
            panic!("{f}:\n{e}");
        }
    }
    let l = load_str(Path::new("x.yaml"), config::LAB_CONFIG, &[]).unwrap();
    assert_eq!(l.profile.networks.len(), 1);
    let b = load_str(
        Path::new("x.yaml"),
        &GOOD.replace("profile: lab", "profile: babblevoice"),
        &[],
    )
    .unwrap();
    assert_eq!(
        b.profile.networks.len(),
        7,
        "babblevoice publishes seven networks"
    );
}

#[test]
fn effective_config_round_trips() {
    let l = check(GOOD).unwrap();
    let yaml = config::to_yaml(&l.config);
    let again = check(&yaml).unwrap();
    assert_eq!(l.config, again.config);
    let schema = config::config_schema();
    assert!(schema["properties"]["dhcp"].is_object());
}

#[test]
fn dhcp_options_and_vendor_classes_load() {
    let t = format!(
        "{GOOD}dhcp:
  decline_quarantine: 30m
  options:
    tftp_server: \"https://prov.example.com/cfg\"
    sip_servers: [sip.example.com]
    vendor_specific: [{{code: 1, text: stun.example.com}}]
    extra: [{{code: 224, hex: \"0a:64:00:01\"}}]
  vendor_classes:
    - name: yealink
      match: {{vendor_class: yealink, mac_prefix: \"80:5e:c0\"}}
      options: {{tftp_server: \"http://prov.example.com/yealink\", timezone: false}}
  reservations:
    - {{client_id: \"01:00:04:f2:12:34:56\", address: 10.100.0.20}}
"
    );
    let d = check(&t).unwrap().config.dhcp;
    assert_eq!(d.decline_quarantine.as_secs(), 1800);
    assert_eq!(d.options.extra[0].payload().unwrap(), vec![10, 100, 0, 1]);
    assert_eq!(
        d.vendor_classes[0]
            .matches
            .mac_prefix
            .as_ref()
            .unwrap()
            .octets()
            .unwrap(),
        vec![0x80, 0x5e, 0xc0]
    );
    assert_eq!(d.vendor_classes[0].options.timezone, Some(false));
    assert_eq!(
        d.reservations[0]
            .client_id
            .as_ref()
            .unwrap()
            .bytes()
            .unwrap()
            .len(),
        7
    );
    // Defaults, and the effective configuration round-trips.
    let l = check(GOOD).unwrap();
    assert_eq!(l.config.dhcp.decline_quarantine.as_secs(), 3600);
    assert!(l.config.dhcp.options.is_empty());
    let again = check(&config::to_yaml(&check(&t).unwrap().config)).unwrap();
    assert_eq!(again.config.dhcp, d);
}

#[test]
fn dhcp_option_structure_errors() {
    let t = format!(
        "{GOOD}dhcp:
  options:
    tftp_sever: \"http://prov.example.com\"
    extra:
      - {{code: 300, text: a}}
  vendor_classes:
    - name: yealink
      match: {{vendor: yealink}}
"
    );
    expect(
        &t,
        "dhcp.options.tftp_sever",
        11,
        5,
        "unknown key `tftp_sever`",
        "did you mean `tftp_server`?",
    );
    expect(
        &t,
        "dhcp.options.extra[0].code",
        13,
        16,
        "300 is out of range: must be 1-254",
        "Option code",
    );
    expect(
        &t,
        "dhcp.vendor_classes[0].match.vendor",
        16,
        15,
        "unknown key `vendor`",
        "vendor_class",
    );
}

#[test]
fn dhcp_option_value_errors() {
    let t = format!(
        "{GOOD}dhcp:
  options:
    tftp_server: \"http://prov.example.com\"
    sip_servers: [10.100.0.1, sip.example.com]
    extra:
      - {{code: 224, text: a, hex: \"00\"}}
      - {{code: 225, hex: \"0g\"}}
      - {{code: 53, text: a}}
      - {{code: 66, text: \"tftp://x\"}}
      - {{code: 225, text: again}}
"
    );
    expect(
        &t,
        "dhcp.options.sip_servers[1]",
        12,
        31,
        "mixes host names and addresses",
        "RFC 3361",
    );
    expect(
        &t,
        "dhcp.options.extra[0]",
        14,
        9,
        "code 224 needs exactly one of `text`, `hex` or `addresses`",
        "hex:",
    );
    expect(
        &t,
        "dhcp.options.extra[1].hex",
        15,
        26,
        "invalid hex \"0g\"",
        "hex pairs",
    );
    expect(
        &t,
        "dhcp.options.extra[2].code",
        16,
        16,
        "option 53 cannot be set here",
        "message type",
    );
    expect(
        &t,
        "dhcp.options.extra[3].code",
        17,
        16,
        "option 66 is also set by `tftp_server`",
        "one place",
    );
    let all = errors(&t);
    assert!(all
        .iter()
        .any(|d| d.path == "dhcp.options.extra[4].code" && d.message.contains("listed twice")));
}

#[test]
fn dhcp_vendor_class_and_reservation_errors() {
    let long = "x".repeat(130);
    let t = format!(
        "{GOOD}dhcp:
  vendor_classes:
    - name: yealink
      match: {{}}
    - name: yealink
      match: {{mac_prefix: \"80:5e:zz\"}}
      options:
        vendor_specific: [{{code: 1, text: {long}}}, {{code: 2, text: {long}}}]
  reservations:
    - {{address: 10.100.0.20}}
    - {{client_id: \"01\", address: 10.100.0.21, hostname: \"front desk\"}}
"
    );
    expect(
        &t,
        "dhcp.vendor_classes[0].match",
        12,
        7,
        "the vendor class matches no phone",
        "mac_prefix",
    );
    expect(
        &t,
        "dhcp.vendor_classes[1].name",
        13,
        13,
        "vendor class name yealink is used twice",
        "",
    );
    expect(
        &t,
        "dhcp.vendor_classes[1].match.mac_prefix",
        14,
        27,
        "invalid MAC prefix \"80:5e:zz\"",
        "hex pairs",
    );
    expect(
        &t,
        "dhcp.vendor_classes[1].options.vendor_specific",
        16,
        9,
        "the sub-options take 264 bytes",
        "",
    );
    expect(
        &t,
        "dhcp.reservations[0]",
        18,
        7,
        "the reservation names no phone",
        "client_id",
    );
    expect(
        &t,
        "dhcp.reservations[1].client_id",
        19,
        19,
        "shorter than 2 bytes",
        "type byte",
    );
    expect(
        &t,
        "dhcp.reservations[1].hostname",
        19,
        57,
        "\"front desk\" is not a valid host name",
        "letters",
    );
}

#[test]
fn bad_fallback_servers_and_health_interval() {
    let t = format!(
        "{}  overrides:\n    sip_fallbacks: [sip2.example.net, \"192.0.2.20:5080\", \"bad host\", \"x.example:0\"]\nsip:\n  health_interval: 1s\n  tls_ca_file: ca.pem\n",
        GOOD
    );
    expect(
        &t,
        "provider.overrides.sip_fallbacks[2]",
        10,
        58,
        "not a host name",
        "host name or IPv4",
    );
    expect(
        &t,
        "provider.overrides.sip_fallbacks[3]",
        10,
        70,
        "port outside 1-65535",
        "optionally with :port",
    );
    expect(&t, "sip.health_interval", 12, 20, "outside 2s-300s", "30s");
    expect(
        &t,
        "sip.tls_ca_file",
        13,
        16,
        "not an absolute path",
        "full path",
    );
    let good = format!(
        "{}  overrides:\n    sip_fallbacks: [sip2.example.net, \"192.0.2.20:5080\"]\n",
        GOOD
    );
    let l = check(&good).unwrap();
    assert_eq!(l.config.sip.health_interval.as_secs(), 30);
}

#[test]
fn lldp_and_bootstrap_defaults_and_overrides() {
    let l = check(GOOD).unwrap().config;
    assert!(l.lldp.enabled);
    assert_eq!(
        (l.lldp.interval.as_secs(), l.lldp.voice_dscp, l.lldp.vlan),
        (30, 46, None)
    );
    assert!(l.dhcp.bootstrap.is_none());
    let t = GOOD.replace("    device: lan0\n", "    device: lan0\n    vlan: 100\n")
        + "dhcp:\n  bootstrap:\n    address: 10.99.0.1/24\nlldp:\n  interval: 10s\n";
    let c = check(&t).unwrap().config;
    let (b, device, vlan) = c.dhcp.bootstrap_scope(&c.interfaces.lan).unwrap();
    assert_eq!(
        (device.as_str(), vlan, b.lease_time.as_secs()),
        ("lan0", 100, 300)
    );
    assert_eq!(c.lldp.interval.as_secs(), 10);
}

#[test]
fn bootstrap_and_lldp_errors() {
    // No VLAN anywhere, and the untagged port is the voice network itself.
    let t = format!("{GOOD}dhcp:\n  bootstrap:\n    address: 10.99.0.1/24\n");
    let all = errors(&t);
    assert!(
        all.iter().any(|d| d.path == "dhcp.bootstrap"
            && (d.line, d.column) == (10, 3)
            && d.message.contains("no voice VLAN")),
        "{}",
        Errors(all.clone())
    );
    assert!(
        all.iter()
            .any(|d| d.path == "dhcp.bootstrap" && d.message.contains("already carries")),
        "{}",
        Errors(all.clone())
    );
    expect(
        &format!("{GOOD}dhcp:\n  bootstrap:\n    vlan: 100\n    device: lan1\n    address: 10.100.0.200/24\n"),
        "dhcp.bootstrap.address",
        13,
        14,
        "overlaps the voice LAN subnet",
        "subnet of its own",
    );
    expect(
        &format!("{GOOD}dhcp:\n  bootstrap:\n    vlan: 100\n    device: lan1\n    address: 10.99.0.1/24\n    pools: [{{start: 10.98.0.5, end: 10.99.0.9}}]\n"),
        "dhcp.bootstrap.pools[0].start",
        14,
        21,
        "outside the bootstrap subnet",
        "inside dhcp.bootstrap.address",
    );
    expect(
        &format!("{GOOD}dhcp:\n  bootstrap:\n    vlan: 5000\n    address: 10.99.0.1/24\n"),
        "dhcp.bootstrap.vlan",
        11,
        11,
        "out of range",
        "VLAN id",
    );
    expect(
        &format!("{GOOD}lldp:\n  interval: 2h\n"),
        "lldp.interval",
        10,
        13,
        "outside 1s-1h",
        "802.1AB",
    );
    expect(
        &format!("{GOOD}lldp:\n  voice_dscp: 64\n"),
        "lldp.voice_dscp",
        10,
        15,
        "out of range",
        "DSCP",
    );
}
