//! The engine with a fake clock: a day of leases in milliseconds. Clients' packets are built
//! and replies decoded with dhcproto, an independent implementation.

use std::net::Ipv4Addr;
use std::path::Path;

use dhcproto::v4::{self, DhcpOption, OptionCode};
use dhcproto::{Decodable, Encodable};

use super::*;
use crate::settings::{Pool, Subnet};

/// 2023-11-14, winter in London.
const T0: u64 = 1_700_000_000;
const BOX: Ipv4Addr = Ipv4Addr::new(10, 100, 0, 1);
const UNSPEC: Ipv4Addr = Ipv4Addr::UNSPECIFIED;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Settings from a configuration whose `dhcp:` section is `dhcp` (indented by two spaces).
fn settings(dhcp: &str) -> Settings {
    let text = format!(
        "interfaces:\n  wan: {{device: wan0}}\n  lan: {{device: lan0, address: 10.100.0.1/24}}\n\
         provider: {{profile: lab}}\ndhcp:\n  lease_time: 1h\n{dhcp}"
    );
    let loaded = config::load_str(Path::new("test.yaml"), &text, &[])
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    Settings::from_config(&loaded.config, Path::new(crate::settings::ZONEINFO))
}

fn engine(dhcp: &str) -> Engine {
    Engine::new(settings(dhcp), [])
}

/// A test client.
#[derive(Clone)]
struct Phone {
    mac: [u8; 6],
    vendor: Option<&'static str>,
    params: Vec<u8>,
    giaddr: Ipv4Addr,
    client_id: Option<Vec<u8>>,
    max_size: Option<u16>,
    broadcast: bool,
}

impl Phone {
    fn new(n: u8) -> Phone {
        Phone {
            mac: [0x02, 0, 0, 0, 0, n],
            vendor: None,
            params: vec![1, 3, 6, 42, 120, 66],
            giaddr: UNSPEC,
            client_id: None,
            max_size: None,
            broadcast: false,
        }
    }

    fn message(&self, kind: v4::MessageType, ciaddr: Ipv4Addr) -> v4::Message {
        let mut m = v4::Message::new(ciaddr, UNSPEC, UNSPEC, self.giaddr, &self.mac);
        m.set_xid(0xfeed_0000 | u32::from(self.mac[5]));
        if self.broadcast {
            m.set_flags(v4::Flags::default().set_broadcast());
        }
        let o = m.opts_mut();
        o.insert(DhcpOption::MessageType(kind));
        o.insert(DhcpOption::ParameterRequestList(
            self.params.iter().map(|c| OptionCode::from(*c)).collect(),
        ));
        if let Some(v) = self.vendor {
            o.insert(DhcpOption::ClassIdentifier(v.as_bytes().to_vec()));
        }
        if let Some(id) = &self.client_id {
            o.insert(DhcpOption::ClientIdentifier(id.clone()));
        }
        if let Some(s) = self.max_size {
            o.insert(DhcpOption::MaxMessageSize(s));
        }
        m
    }

    fn discover(&self) -> Vec<u8> {
        self.message(v4::MessageType::Discover, UNSPEC)
            .to_vec()
            .unwrap()
    }

    /// SELECTING (with a server id), INIT-REBOOT (without).
    fn request(&self, addr: Ipv4Addr, server: Option<Ipv4Addr>) -> Vec<u8> {
        let mut m = self.message(v4::MessageType::Request, UNSPEC);
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
        if let Some(s) = server {
            m.opts_mut().insert(DhcpOption::ServerIdentifier(s));
        }
        m.to_vec().unwrap()
    }

    /// RENEWING or REBINDING: ciaddr, no server id, no requested address.
    fn renew(&self, ciaddr: Ipv4Addr) -> Vec<u8> {
        self.message(v4::MessageType::Request, ciaddr)
            .to_vec()
            .unwrap()
    }

    fn release(&self, ciaddr: Ipv4Addr) -> Vec<u8> {
        let mut m = self.message(v4::MessageType::Release, ciaddr);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(BOX));
        m.to_vec().unwrap()
    }

    fn decline(&self, addr: Ipv4Addr) -> Vec<u8> {
        let mut m = self.message(v4::MessageType::Decline, UNSPEC);
        m.opts_mut().insert(DhcpOption::RequestedIpAddress(addr));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(BOX));
        m.to_vec().unwrap()
    }
}

/// The reply, decoded by dhcproto, with its destination.
fn reply(o: &Outcome) -> (v4::Message, Destination) {
    let r = o.reply.as_ref().expect("a reply");
    (v4::Message::from_bytes(&r.bytes).unwrap(), r.to)
}

fn kind(m: &v4::Message) -> v4::MessageType {
    m.opts().msg_type().unwrap()
}

/// The options field's options in wire order (code, value), stopping at END.
fn wire_options(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < bytes.len() && bytes[i] != 255 {
        if bytes[i] == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(bytes[i + 1]);
        out.push((bytes[i], bytes[i + 2..i + 2 + len].to_vec()));
        i += 2 + len;
    }
    out
}

fn unknown(m: &v4::Message, code: u8) -> Option<Vec<u8>> {
    match m.opts().get(OptionCode::from(code))? {
        DhcpOption::Unknown(u) => Some(u.data().to_vec()),
        other => panic!("option {code} decoded as {other:?}"),
    }
}

/// DISCOVER, OFFER, REQUEST, ACK; returns the address and the ACK's outcome.
fn lease(e: &mut Engine, now: u64, p: &Phone) -> (Ipv4Addr, Outcome) {
    let offer = e.handle_bytes(now, &p.discover());
    let (m, _) = reply(&offer);
    assert_eq!(kind(&m), v4::MessageType::Offer);
    assert!(offer.persist.is_empty(), "offers are not stored");
    let addr = m.yiaddr();
    let ack = e.handle_bytes(now, &p.request(addr, Some(BOX)));
    let (m, _) = reply(&ack);
    assert_eq!((kind(&m), m.yiaddr()), (v4::MessageType::Ack, addr));
    (addr, ack)
}

#[test]
fn a_day_of_leases_with_renewals_and_expiry() {
    let mut e = engine("  pools: [{start: 10.100.0.100, end: 10.100.0.199}]\n");
    let p = Phone::new(1);
    let (addr, ack) = lease(&mut e, T0, &p);
    assert!((ip("10.100.0.100")..=ip("10.100.0.199")).contains(&addr));
    assert_eq!(ack.persist.len(), 1);
    assert_eq!(
        (ack.persist[0].state, ack.persist[0].expires),
        (LeaseState::Bound, T0 + 3600)
    );
    let (m, to) = reply(&ack);
    assert_eq!(
        to,
        Destination::Link {
            ip: addr,
            mac: p.mac
        }
    );
    let o = m.opts();
    assert_eq!(
        o.get(OptionCode::AddressLeaseTime),
        Some(&DhcpOption::AddressLeaseTime(3600))
    );
    assert_eq!(o.get(OptionCode::Renewal), Some(&DhcpOption::Renewal(1800)));
    assert_eq!(
        o.get(OptionCode::Rebinding),
        Some(&DhcpOption::Rebinding(3150))
    );
    assert_eq!(
        o.get(OptionCode::ServerIdentifier),
        Some(&DhcpOption::ServerIdentifier(BOX))
    );
    assert_eq!(
        o.get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![BOX]))
    );
    assert_eq!(
        o.get(OptionCode::SubnetMask),
        Some(&DhcpOption::SubnetMask(ip("255.255.255.0")))
    );

    // Renew at every T1 for a day: same address, unicast to it, stored each time.
    let mut now = T0;
    for _ in 0..48 {
        now += 1800;
        let ack = e.handle_bytes(now, &p.renew(addr));
        let (m, to) = reply(&ack);
        assert_eq!(
            (kind(&m), m.yiaddr(), m.ciaddr()),
            (v4::MessageType::Ack, addr, addr)
        );
        assert_eq!(to, Destination::Unicast(addr));
        assert_eq!(ack.persist[0].expires, now + 3600);
    }
    // Rebinding (broadcast, same message) at T2 works the same way.
    now += 3150;
    assert_eq!(
        kind(&reply(&e.handle_bytes(now, &p.renew(addr))).0),
        v4::MessageType::Ack
    );

    // Left to expire: listed as expired, and the client comes back to the same address even
    // after others took addresses meanwhile.
    now += 3600 + 1;
    let info = e.leases(now);
    assert_eq!(
        (info[0].address, info[0].state),
        (addr, LeaseStatus::Expired)
    );
    for n in 2..20 {
        lease(&mut e, now, &Phone::new(n));
    }
    assert_eq!(lease(&mut e, now, &p).0, addr);
}

#[test]
fn allocation_is_deterministic_and_offers_are_held() {
    let pools = "  pools: [{start: 10.100.0.100, end: 10.100.0.199}]\n";
    let (mut a, mut b) = (engine(pools), engine(pools));
    let phones: Vec<Phone> = (1..=30).map(Phone::new).collect();
    let mut offered = Vec::new();
    for p in &phones {
        // DISCOVERs one after another before any REQUEST: each gets its own address.
        let addr = reply(&a.handle_bytes(T0, &p.discover())).0.yiaddr();
        assert!(!offered.contains(&addr), "{addr} offered twice");
        offered.push(addr);
        // The same client on a fresh engine: the same choice.
        assert_eq!(reply(&b.handle_bytes(T0, &p.discover())).0.yiaddr(), addr);
    }
    // A repeated DISCOVER gets the same offer.
    let again = reply(&a.handle_bytes(T0 + 5, &phones[0].discover()))
        .0
        .yiaddr();
    assert_eq!(again, offered[0]);
    assert_eq!(
        a.leases(T0)
            .iter()
            .filter(|l| l.state == LeaseStatus::Offered)
            .count(),
        30
    );
}

#[test]
fn exhaustion_gives_no_offer_until_an_offer_lapses() {
    let mut e = engine("  pools: [{start: 10.100.0.100, end: 10.100.0.101}]\n");
    let (a, b, c) = (Phone::new(1), Phone::new(2), Phone::new(3));
    lease(&mut e, T0, &a);
    let offer_b = e.handle_bytes(T0, &b.discover());
    assert!(offer_b.reply.is_some());
    assert_eq!(e.handle_bytes(T0, &c.discover()), Outcome::default());
    assert_eq!(e.stats().exhausted, 1);
    // The offer to b is held for OFFER_HOLD seconds, then c may have the address.
    assert!(e
        .handle_bytes(T0 + OFFER_HOLD - 1, &c.discover())
        .reply
        .is_none());
    let (m, _) = reply(&e.handle_bytes(T0 + OFFER_HOLD, &c.discover()));
    assert_eq!(m.yiaddr(), reply(&offer_b).0.yiaddr());
    // b now asks for what it was offered: authoritative NAK, the address is c's offer.
    let nak = e.handle_bytes(T0 + OFFER_HOLD, &b.request(m.yiaddr(), Some(BOX)));
    let (m, to) = reply(&nak);
    assert_eq!(
        (kind(&m), to),
        (v4::MessageType::Nak, Destination::Broadcast)
    );
}

#[test]
fn reservations_by_mac_and_client_id() {
    let mut e = engine(
        "  pools: [{start: 10.100.0.100, end: 10.100.0.101}]\n  reservations:\n\
         \x20   - {mac: \"02:00:00:00:00:01\", address: 10.100.0.20, hostname: reception-1}\n\
         \x20   - {client_id: \"ff:00:00:00:01:02\", address: 10.100.0.101}\n",
    );
    let mac_phone = Phone::new(1);
    let (addr, ack) = lease(&mut e, T0, &mac_phone);
    assert_eq!(addr, ip("10.100.0.20"), "reserved outside the pool");
    assert_eq!(
        reply(&ack).0.opts().get(OptionCode::Hostname),
        Some(&DhcpOption::Hostname("reception-1".into()))
    );
    // Asking for another address is refused, so the phone moves to its own.
    let (m, _) = reply(&e.handle_bytes(T0, &mac_phone.request(ip("10.100.0.100"), None)));
    assert_eq!(kind(&m), v4::MessageType::Nak);

    // 10.100.0.101 is in the pool but reserved: others never get it.
    let mut others = engine(
        "  pools: [{start: 10.100.0.100, end: 10.100.0.101}]\n  reservations:\n\
         \x20   - {client_id: \"ff:00:00:00:01:02\", address: 10.100.0.101}\n",
    );
    assert_eq!(lease(&mut others, T0, &Phone::new(7)).0, ip("10.100.0.100"));
    assert!(others
        .handle_bytes(T0, &Phone::new(8).discover())
        .reply
        .is_none());
    let (m, _) = reply(&others.handle_bytes(T0, &Phone::new(8).request(ip("10.100.0.101"), None)));
    assert_eq!(kind(&m), v4::MessageType::Nak);
    let by_id = Phone {
        client_id: Some(vec![0xff, 0, 0, 0, 1, 2]),
        ..Phone::new(9)
    };
    let (addr, ack) = lease(&mut others, T0, &by_id);
    assert_eq!(addr, ip("10.100.0.101"));
    // RFC 6842: the client identifier is echoed.
    assert_eq!(
        reply(&ack).0.opts().get(OptionCode::ClientIdentifier),
        Some(&DhcpOption::ClientIdentifier(vec![0xff, 0, 0, 0, 1, 2]))
    );
}

#[test]
fn relayed_clients_are_served_from_the_relays_subnet() {
    let mut s = settings("  pools: [{start: 10.100.0.100, end: 10.100.0.199}]\n");
    let mut options = s.subnets[0].options.clone();
    options.stack(&crate::options::OptionLayer::defaults(
        "10.101.0.0/24".parse().unwrap(),
        ip("10.101.0.1"),
        crate::options::Services::default(),
        None,
    ));
    s.subnets.push(Subnet {
        net: "10.101.0.0/24".parse().unwrap(),
        pools: vec![Pool {
            start: ip("10.101.0.10"),
            end: ip("10.101.0.20"),
            options: Default::default(),
        }],
        exclude: vec![],
        options,
    });
    let mut e = Engine::new(s, []);
    let p = Phone {
        giaddr: ip("10.101.0.1"),
        ..Phone::new(1)
    };
    // The relay appends option 82 (circuit id "v1") before END.
    let mut bytes = p.discover();
    assert_eq!(bytes.pop(), Some(255));
    bytes.extend_from_slice(&[82, 4, 1, 2, b'v', b'1', 255]);
    let offer = e.handle_bytes(T0, &bytes);
    let (m, to) = reply(&offer);
    assert!((ip("10.101.0.10")..=ip("10.101.0.20")).contains(&m.yiaddr()));
    assert_eq!(
        (to, m.giaddr()),
        (Destination::Relay(ip("10.101.0.1")), ip("10.101.0.1"))
    );
    assert_eq!(
        m.opts().get(OptionCode::Router),
        Some(&DhcpOption::Router(vec![ip("10.101.0.1")]))
    );
    let opts = wire_options(&offer.reply.unwrap().bytes);
    assert_eq!(
        opts.last().unwrap(),
        &(82, vec![1, 2, b'v', b'1']),
        "option 82 echoed last"
    );
    // A relayed NAK goes to the relay with the broadcast bit set.
    let nak = e.handle_bytes(T0, &p.request(ip("10.100.0.150"), None));
    let (m, to) = reply(&nak);
    assert_eq!(
        (kind(&m), to),
        (v4::MessageType::Nak, Destination::Relay(ip("10.101.0.1")))
    );
    assert!(m.flags().broadcast());
    // A relay on a subnet not served: silence.
    let stranger = Phone {
        giaddr: ip("192.0.2.1"),
        ..Phone::new(2)
    };
    assert_eq!(e.handle_bytes(T0, &stranger.discover()), Outcome::default());
    assert_eq!(e.stats().ignored, 1);
}

#[test]
fn a_declined_address_is_quarantined() {
    let mut e =
        engine("  pools: [{start: 10.100.0.100, end: 10.100.0.101}]\n  decline_quarantine: 10m\n");
    let (a, c) = (Phone::new(1), Phone::new(3));
    let (x, _) = lease(&mut e, T0, &a);
    let declined = e.handle_bytes(T0 + 1, &a.decline(x));
    assert!(declined.reply.is_none());
    assert_eq!(declined.persist.len(), 1);
    assert_eq!(
        (declined.persist[0].state, declined.persist[0].expires),
        (LeaseState::Declined, T0 + 601)
    );
    assert!(declined.persist[0].client_id.is_empty());
    // a gets the other address, c gets nothing while x is quarantined...
    let (y, _) = lease(&mut e, T0 + 2, &a);
    assert_ne!(y, x);
    assert!(e.handle_bytes(T0 + 600, &c.discover()).reply.is_none());
    let nak = e.handle_bytes(T0 + 600, &c.request(x, None));
    assert_eq!(kind(&reply(&nak).0), v4::MessageType::Nak);
    // ...and x once the quarantine is over.
    assert_eq!(lease(&mut e, T0 + 601, &c).0, x);
    // A DECLINE for an address the client does not hold is ignored.
    assert!(e.handle_bytes(T0 + 700, &a.decline(x)).persist.is_empty());
}

#[test]
fn release_frees_the_address_and_is_remembered() {
    let mut e = engine("  pools: [{start: 10.100.0.100, end: 10.100.0.100}]\n");
    let (a, b) = (Phone::new(1), Phone::new(2));
    let (x, _) = lease(&mut e, T0, &a);
    assert!(e.handle_bytes(T0 + 10, &b.discover()).reply.is_none());
    let released = e.handle_bytes(T0 + 10, &a.release(x));
    assert_eq!(released.persist[0].state, LeaseState::Released);
    assert_eq!(e.leases(T0 + 10)[0].state, LeaseStatus::Released);
    assert_eq!(lease(&mut e, T0 + 11, &b).0, x);
    // A RELEASE from someone who does not hold the address changes nothing.
    assert_eq!(e.handle_bytes(T0 + 12, &a.release(x)), Outcome::default());
    // The operator's release by MAC.
    let freed = e.release_hardware(T0 + 13, &b.mac);
    assert_eq!((freed.len(), freed[0].state), (1, LeaseState::Released));
    assert!(e.release_hardware(T0 + 14, &b.mac).is_empty());
}

#[test]
fn requests_for_foreign_or_taken_addresses_are_nacked() {
    let mut e = engine("  pools: [{start: 10.100.0.100, end: 10.100.0.199}]\n");
    let (a, b) = (Phone::new(1), Phone::new(2));
    let (x, _) = lease(&mut e, T0, &a);
    for (req, why) in [
        (b.request(ip("192.168.1.50"), None), "another network"),
        (b.request(x, None), "a's address"),
        (b.request(ip("10.100.0.20"), None), "outside the pools"),
        (b.renew(x), "renewing a's address"),
        (b.request(BOX, None), "the box itself"),
    ] {
        let o = e.handle_bytes(T0, &req);
        let (m, _) = reply(&o);
        assert_eq!(kind(&m), v4::MessageType::Nak, "{why}");
        assert!(o.persist.is_empty());
        let msg = m.opts().get(OptionCode::Message);
        assert!(
            matches!(msg, Some(DhcpOption::Message(_))),
            "{why}: {msg:?}"
        );
    }
    // INIT-REBOOT for a free pool address (e.g. after the lease table was lost): granted.
    let (m, _) = reply(&e.handle_bytes(T0, &b.request(ip("10.100.0.150"), None)));
    assert_eq!(
        (kind(&m), m.yiaddr()),
        (v4::MessageType::Ack, ip("10.100.0.150"))
    );
    // The client picked another server's offer: silence, and our offer lapses at once.
    let c = Phone::new(3);
    let offered = reply(&e.handle_bytes(T0, &c.discover())).0.yiaddr();
    assert_eq!(
        e.handle_bytes(T0, &c.request(offered, Some(ip("10.100.0.2")))),
        Outcome::default()
    );
    assert!(e.leases(T0).iter().all(|l| l.address != offered));
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut e = engine("  options: {tftp_server: \"http://prov.example.com\"}\n");
    let p = Phone::new(1);
    let inform = p
        .message(v4::MessageType::Inform, ip("10.100.0.60"))
        .to_vec()
        .unwrap();
    let o = e.handle_bytes(T0, &inform);
    let (m, to) = reply(&o);
    assert_eq!(
        (kind(&m), to),
        (
            v4::MessageType::Ack,
            Destination::Unicast(ip("10.100.0.60"))
        )
    );
    assert_eq!((m.yiaddr(), m.ciaddr()), (UNSPEC, ip("10.100.0.60")));
    assert!(m.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(
        m.opts().get(OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(
            b"http://prov.example.com".to_vec()
        ))
    );
    assert!(o.persist.is_empty() && e.leases(T0).is_empty());
}

const PHONES: &str = "  options:\n\
    \x20   tftp_server: \"https://prov.example.com/generic\"\n\
    \x20   vendor_specific: [{code: 1, text: stun.example.com}, {code: 2, hex: \"0d96\"}]\n\
    \x20   cisco_tftp_servers: [10.100.0.5]\n\
    \x20 vendor_classes:\n\
    \x20   - name: yealink\n\
    \x20     match: {vendor_class: yealink}\n\
    \x20     options: {tftp_server: \"https://prov.example.com/yealink\"}\n\
    \x20   - name: poly\n\
    \x20     match: {mac_prefix: \"02:00:00:00:00\", vendor_class: polycom}\n\
    \x20     options:\n\
    \x20       provisioning_url: \"ftp://poly:secret@prov.example.com/\"\n\
    \x20       sip_servers: [sip.example.com]\n";

#[test]
fn options_per_vendor_class_in_the_clients_order() {
    let mut e = engine(PHONES);
    let yealink = Phone {
        vendor: Some("Yealink SIP-T46S"),
        params: vec![66, 43, 6, 3, 1],
        ..Phone::new(1)
    };
    let (_, ack) = lease(&mut e, T0, &yealink);
    let bytes = ack.reply.as_ref().unwrap().bytes.clone();
    let codes: Vec<u8> = wire_options(&bytes).iter().map(|o| o.0).collect();
    // Message type, server, lease times first; then the client's order; then the rest by code.
    assert_eq!(&codes[..5], &[53, 54, 51, 58, 59]);
    assert_eq!(&codes[5..10], &[66, 43, 6, 3, 1]);
    assert!(codes[10..].windows(2).all(|w| w[0] < w[1]), "{codes:?}");
    let (m, _) = reply(&ack);
    // Option 66 as option 66 (not only in sname), with its scheme.
    assert_eq!(
        m.opts().get(OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(
            b"https://prov.example.com/yealink".to_vec()
        ))
    );
    assert!(m.sname().is_none());
    assert_eq!(
        m.opts().get(OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(
            [&[1, 16][..], b"stun.example.com", &[2, 2, 0x0d, 0x96]].concat()
        ))
    );
    assert_eq!(
        unknown(&m, 120),
        Some(vec![1, 10, 100, 0, 1]),
        "RFC 3361, encoding 1"
    );
    assert_eq!(
        m.opts().get(OptionCode::TFTPServerAddress),
        Some(&DhcpOption::TFTPServerAddress(ip("10.100.0.5")))
    );

    // Poly matches on MAC prefix and option 60 together: a different value set.
    let poly = Phone {
        vendor: Some("Polycom-VVX450"),
        ..Phone::new(2)
    };
    let (m, _) = reply(&lease(&mut e, T0, &poly).1);
    assert_eq!(
        m.opts().get(OptionCode::TFTPServerName),
        Some(&DhcpOption::TFTPServerName(
            b"https://prov.example.com/generic".to_vec()
        ))
    );
    assert_eq!(
        unknown(&m, 160),
        Some(b"ftp://poly:secret@prov.example.com/".to_vec())
    );
    assert_eq!(
        unknown(&m, 120),
        Some(b"\x00\x03sip\x07example\x03com\x00".to_vec())
    );
    // A Polycom outside the MAC prefix is not in the class.
    let other = Phone {
        vendor: Some("Polycom-VVX450"),
        mac: [0x64, 0x16, 0x7f, 0, 0, 3],
        ..Phone::new(3)
    };
    let (m, _) = reply(&lease(&mut e, T0, &other).1);
    assert_eq!(unknown(&m, 160), None);
    let mut classes: Vec<(String, Option<String>)> =
        e.leases(T0).into_iter().map(|l| (l.mac, l.class)).collect();
    classes.sort();
    assert_eq!(
        classes,
        vec![
            ("02:00:00:00:00:01".into(), Some("yealink".into())),
            ("02:00:00:00:00:02".into(), Some("poly".into())),
            ("64:16:7f:00:00:03".into(), None),
        ]
    );
}

#[test]
fn replies_fit_the_clients_size_by_overloading() {
    // Three 100-byte values and a 50-byte one: with the defaults, the first fits the options
    // field, the second goes to `file` (option 52 = 1), the third fits nowhere and is dropped,
    // the small fourth still fits the options field.
    let big = "0123456789".repeat(10);
    let small = &big[..50];
    let mut e = engine(&format!(
        "  options:\n    extra:\n\
         \x20     - {{code: 224, text: \"{big}\"}}\n\
         \x20     - {{code: 225, text: \"{big}\"}}\n\
         \x20     - {{code: 226, text: \"{big}\"}}\n\
         \x20     - {{code: 227, text: \"{small}\"}}\n"
    ));
    let (_, ack) = lease(&mut e, T0, &Phone::new(1));
    let bytes = &ack.reply.as_ref().unwrap().bytes;
    assert!(bytes.len() <= 548, "{} bytes", bytes.len());
    let opts = wire_options(bytes);
    let codes: Vec<u8> = opts.iter().map(|o| o.0).collect();
    assert!(codes.contains(&224) && codes.contains(&227), "{codes:?}");
    assert!(opts.contains(&(52, vec![1])), "file overloaded: {codes:?}");
    assert_eq!(
        (bytes[108], bytes[109]),
        (225, 100),
        "option 225 in the file field"
    );
    assert!(!codes.contains(&226) && !bytes[108..236].contains(&226));
    assert_eq!(
        e.stats().options_dropped,
        2,
        "226 fits nowhere, in the OFFER nor the ACK"
    );
    // A client that accepts 1500 bytes gets everything in the options field.
    let large = Phone {
        max_size: Some(1500),
        ..Phone::new(2)
    };
    let (_, ack) = lease(&mut e, T0, &large);
    let codes: Vec<u8> = wire_options(&ack.reply.unwrap().bytes)
        .iter()
        .map(|o| o.0)
        .collect();
    assert!(
        [224, 225, 226, 227].iter().all(|c| codes.contains(c)),
        "{codes:?}"
    );
    assert!(!codes.contains(&52));
}

#[test]
fn time_zone_options() {
    let mut e = engine("");
    let p = Phone {
        params: vec![1, 3, 2, 100, 101],
        ..Phone::new(1)
    };
    let (m, _) = reply(&lease(&mut e, T0, &p).1);
    assert_eq!(
        m.opts().get(OptionCode::TimezonePosixString),
        Some(&DhcpOption::TimezonePosixString(
            "GMT0BST,M3.5.0/1,M10.5.0".into()
        ))
    );
    assert_eq!(
        m.opts().get(OptionCode::TimezoneDatabaseString),
        Some(&DhcpOption::TimezoneDatabaseString("Europe/London".into()))
    );
    assert_eq!(
        m.opts().get(OptionCode::TimeOffset),
        Some(&DhcpOption::TimeOffset(0))
    );
    // In summer (2024-07-15) the offset in force is an hour.
    let (m, _) = reply(&e.handle_bytes(1_721_044_800, &p.discover()));
    assert_eq!(
        m.opts().get(OptionCode::TimeOffset),
        Some(&DhcpOption::TimeOffset(3600))
    );
    // Not asked for: no option 2.
    let (m, _) = reply(&e.handle_bytes(T0, &Phone::new(2).discover()));
    assert!(m.opts().get(OptionCode::TimeOffset).is_none());
    assert!(m.opts().get(OptionCode::TimezoneDatabaseString).is_some());
}

#[test]
fn a_reload_keeps_leases_and_applies_new_pools() {
    let mut e = engine("  pools: [{start: 10.100.0.100, end: 10.100.0.199}]\n");
    let p = Phone::new(1);
    let (x, _) = lease(&mut e, T0, &p);
    e.set_settings(settings(
        "  pools: [{start: 10.100.0.200, end: 10.100.0.210}]\n",
    ));
    assert_eq!(e.leases(T0)[0].address, x);
    // The old address is outside the new pools: the renewal is refused...
    assert_eq!(
        kind(&reply(&e.handle_bytes(T0 + 1800, &p.renew(x))).0),
        v4::MessageType::Nak
    );
    // ...and the client starts over in the new pool.
    let (y, _) = lease(&mut e, T0 + 1801, &p);
    assert!((ip("10.100.0.200")..=ip("10.100.0.210")).contains(&y));
    // The old address, free and no longer served, is not carried into a compacted journal.
    let stored: Vec<Ipv4Addr> = e.records().iter().map(|l| l.address).collect();
    assert_eq!(stored, vec![y]);
}

#[test]
fn broadcast_flag_and_unicast_destinations() {
    let mut e = engine("");
    let p = Phone {
        broadcast: true,
        ..Phone::new(1)
    };
    let offer = e.handle_bytes(T0, &p.discover());
    assert_eq!(reply(&offer).1, Destination::Broadcast);
    // No pools configured: the upper half of the subnet.
    assert!(reply(&offer).0.yiaddr() >= ip("10.100.0.128"));
    // Non-Ethernet hardware cannot be reached by MAC: broadcast.
    let mut m = Phone::new(2).message(v4::MessageType::Discover, UNSPEC);
    m.set_htype(v4::HType::IEEE802);
    assert_eq!(
        reply(&e.handle_bytes(T0, &m.to_vec().unwrap())).1,
        Destination::Broadcast
    );
}
