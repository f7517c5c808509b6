//! The DHCP service in the lab's `box` namespace, with real clients in the `phone` namespace:
//! busybox udhcpc and ISC dhclient get addresses from the pool and every configured option
//! (read from the environment their scripts are run with), renew, release, keep their lease
//! across a server restart; many clients never share an address; the WAN side gets nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use config::Loaded;
use dhcp::{DhcpHandle, DhcpService, LeaseStatus};
use dhcproto::v4::{self, DhcpOption};
use dhcproto::{Decodable, Encodable};
use lab::{Lab, Node};
use supervisor::{Context, Service};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const POOL: std::ops::RangeInclusive<Ipv4Addr> =
    Ipv4Addr::new(10, 100, 0, 100)..=Ipv4Addr::new(10, 100, 0, 199);

/// The `dhcp:` options of the tests: option 66 is `generic`, or `yealink` for Yealinks.
fn options(generic: &str, yealink: &str) -> String {
    format!(
        "  options:
    tftp_server: \"{generic}\"
    provisioning_url: \"https://prov.example.com/poly\"
    cisco_tftp_servers: [10.100.0.5]
    vendor_specific: [{{code: 1, text: stun.example.com}}]
  vendor_classes:
    - name: yealink
      match: {{vendor_class: yealink}}
      options: {{tftp_server: \"{yealink}\"}}
"
    )
}

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("dhcp=debug")
        .with_test_writer()
        .try_init();
}

/// The lab configuration with its state in `state` and `dhcp` appended to its `dhcp:` section.
fn lab_config(state: &Path, dhcp: &str) -> Arc<Loaded> {
    let text = config::LAB_CONFIG
        .replace(
            "state_dir: /var/lib/voxgate",
            &format!("state_dir: {}", state.display()),
        )
        .replace("  lease_time: 1h\n", &format!("  lease_time: 1h\n{dhcp}"));
    Arc::new(config::load_str(Path::new("lab.yaml"), &text, &[]).unwrap())
}

/// The service running on a thread inside the box namespace, as the daemon runs it.
struct Server {
    handle: DhcpHandle,
    stop: CancellationToken,
    // Kept: the service stops when the configuration channel closes.
    _config: watch::Sender<Arc<Loaded>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    fn start(lab: &Arc<Lab>, config: Arc<Loaded>) -> Server {
        let service = DhcpService::new();
        let handle = service.handle();
        let (tx, rx) = watch::channel(config);
        let stop = CancellationToken::new();
        let ctx = Context {
            config: rx,
            stop: stop.clone(),
        };
        let lab = lab.clone();
        let thread = std::thread::spawn(move || {
            lab.in_netns(Node::Box, move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(service.run(ctx))
            })?
        });
        let mut server = Server {
            handle,
            stop,
            _config: tx,
            thread: Some(thread),
        };
        // Listening once the handle answers (the socket is bound first).
        let t0 = Instant::now();
        while server.handle.list().is_err() {
            if server.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let ended = server.thread.take().map(JoinHandle::join);
                panic!("the DHCP server stopped at start: {ended:?}");
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "the DHCP server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn leases(&self) -> Vec<dhcp::LeaseInfo> {
        self.handle.list().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let result = t.join().expect("the server thread panicked");
            if !std::thread::panicking() {
                result.expect("the server failed");
            }
        }
    }
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client script that records the environment of each event in `dir/<event>` (and the
/// order of events in `dir/events`) and configures the address it was given, so that
/// renewals, sent from that address, work.
fn script(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("script");
    let text = format!(
        "#!/bin/sh\nevent=\"${{1:-$reason}}\"\nenv | sort > '{d}'/\"$event\"\necho \"$event\" >> '{d}/events'\n{body}\nexit 0\n",
        d = dir.display()
    );
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The variables the client set for its script at `event` (those the test itself has aside).
fn recorded(dir: &Path, event: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join(event))
        .unwrap_or_else(|e| panic!("no {event} event recorded: {e}"));
    let inherited: BTreeMap<String, String> = std::env::vars().collect();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, v)| inherited.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn events(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("events"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn get<'a>(env: &'a BTreeMap<String, String>, key: &str) -> &'a str {
    env.get(key)
        .unwrap_or_else(|| panic!("{key} missing from the client's environment: {env:#?}"))
}

fn run_ok(lab: &Lab, node: Node, argv: &[&str]) -> String {
    let out = lab.exec(node, argv).unwrap();
    assert!(
        out.status.success(),
        "{argv:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The phone without its static address, as a phone that boots with none.
fn bare_phone(lab: &Lab) {
    run_ok(lab, Node::Phone, &["ip", "addr", "flush", "dev", "eth0"]);
}

const UDHCPC_SCRIPT: &str = "case \"$1\" in
  bound|renew) ip addr flush dev \"$interface\"; ip addr add \"$ip/$mask\" dev \"$interface\" ;;
  deconfig) ip addr flush dev \"$interface\" ;;
esac";

fn udhcpc(lab: &Lab, script: &Path, vendor: &str, once: bool) -> std::process::Command {
    let mut cmd = lab.command(Node::Phone, "udhcpc");
    cmd.args([
        "-i", "eth0", "-f", "-n", "-t", "5", "-T", "1", "-V", vendor, "-s",
    ])
    .arg(script);
    for o in ["42", "66", "67", "120", "43", "100", "101", "150", "160"] {
        cmd.args(["-O", o]);
    }
    if once {
        cmd.arg("-q");
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

#[test]
fn udhcpc_gets_the_options_of_its_vendor_renews_and_releases() {
    lab::require_root().unwrap();
    init_logs();
    let lab = Arc::new(Lab::new().unwrap());
    let state = tempfile::tempdir().unwrap();
    // busybox shows option 66 only if it is a host name ("bad" for a URL); dhclient below
    // shows URLs as sent.
    let opts = options("prov.example.com", "yealink.prov.example.com");
    let server = Server::start(&lab, lab_config(state.path(), &opts));
    bare_phone(&lab);

    // A Yealink: its class's option 66; everything else from dhcp.options and the defaults.
    let yealink = tempfile::tempdir().unwrap();
    let s = script(yealink.path(), UDHCPC_SCRIPT);
    let status = udhcpc(&lab, &s, "Yealink SIP-T46S", true).status().unwrap();
    assert!(status.success(), "udhcpc: {status}");
    let env = recorded(yealink.path(), "bound");
    let addr: Ipv4Addr = get(&env, "ip").parse().unwrap();
    assert!(POOL.contains(&addr), "{addr}");
    assert_eq!(get(&env, "mask"), "24");
    assert_eq!(get(&env, "router"), "10.100.0.1");
    assert_eq!(get(&env, "dns"), "10.100.0.1");
    assert_eq!(get(&env, "ntpsrv"), "10.100.0.1");
    assert_eq!(get(&env, "serverid"), "10.100.0.1");
    assert_eq!(get(&env, "lease"), "3600");
    assert_eq!(get(&env, "tftp"), "yealink.prov.example.com");
    // Option 120: busybox reads the RFC 3361 encoding byte and shows the address; 43 is
    // sub-option 1 (16 bytes of text).
    assert_eq!(get(&env, "sipsrv"), "10.100.0.1");
    let stun: String = b"stun.example.com"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(get(&env, "opt43"), format!("0110{stun}"));
    assert_eq!(get(&env, "opt150"), "0a640005");
    assert_eq!(get(&env, "tzstr"), "GMT0BST,M3.5.0/1,M10.5.0");
    assert_eq!(get(&env, "tzdbstr"), "Europe/London");
    let poly: String = b"https://prov.example.com/poly"
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(get(&env, "opt160"), poly);
    assert_eq!(server.leases()[0].class.as_deref(), Some("yealink"));
    // udhcpc did not ask for broadcast: the replies went to the new address at the phone's
    // MAC, through the neighbour entry the server added (the box never resolved it by ARP).
    let neigh = run_ok(
        &lab,
        Node::Box,
        &["ip", "neigh", "show", &addr.to_string(), "dev", "lan0"],
    );
    assert!(neigh.contains(&server.leases()[0].mac), "{neigh}");

    // Another make on the same phone: the generic value.
    let other = tempfile::tempdir().unwrap();
    let s = script(other.path(), UDHCPC_SCRIPT);
    assert!(udhcpc(&lab, &s, "Snom D785", true)
        .status()
        .unwrap()
        .success());
    let env = recorded(other.path(), "bound");
    assert_eq!(get(&env, "tftp"), "prov.example.com");
    assert_eq!(
        get(&env, "ip"),
        addr.to_string(),
        "the same client keeps its address"
    );

    // Renewal (SIGUSR1: unicast from the leased address) and release (SIGUSR2).
    let live = tempfile::tempdir().unwrap();
    let s = script(live.path(), UDHCPC_SCRIPT);
    let mut client = lab
        .spawn(Node::Phone, udhcpc(&lab, &s, "Yealink SIP-T46S", false))
        .unwrap();
    wait_for("udhcpc to bind", Duration::from_secs(10), || {
        events(live.path()).contains(&"bound".to_string())
    });
    let before = server.leases()[0].expires;
    std::thread::sleep(Duration::from_millis(1100)); // so the renewed expiry is later
    client.signal(libc::SIGUSR1).unwrap();
    wait_for("udhcpc to renew", Duration::from_secs(10), || {
        events(live.path()).contains(&"renew".to_string())
    });
    assert_eq!(get(&recorded(live.path(), "renew"), "ip"), addr.to_string());
    assert!(server.leases()[0].expires > before);
    client.signal(libc::SIGUSR2).unwrap();
    wait_for(
        "the release to reach the server",
        Duration::from_secs(10),
        || server.leases()[0].state == LeaseStatus::Released,
    );
    client.kill();
    let stats = server.handle.stats().unwrap();
    assert_eq!(stats.malformed, 0, "{stats:?}");
    assert!(stats.acks >= 3 && stats.releases == 1, "{stats:?}");
    drop(server);
}

const DHCLIENT_SCRIPT: &str = "case \"$reason\" in
  PREINIT) ip link set dev \"$interface\" up ;;
  BOUND|RENEW|REBIND|REBOOT) ip addr flush dev \"$interface\"; ip addr add \"$new_ip_address/24\" dev \"$interface\" ;;
  EXPIRE|FAIL|RELEASE|STOP) ip addr flush dev \"$interface\" ;;
esac";

const DHCLIENT_CONF: &str = "option voip-sip code 120 = string;
option cisco-tftp code 150 = array of ip-address;
option poly-url code 160 = text;
option tz-posix code 100 = text;
option tz-db code 101 = text;
send vendor-class-identifier \"Polycom-VVX450\";
request subnet-mask, routers, domain-name-servers, ntp-servers, tftp-server-name,
  vendor-encapsulated-options, voip-sip, cisco-tftp, poly-url, tz-posix, tz-db;
";

fn dhclient(lab: &Lab, dir: &Path, release: bool) -> std::process::Output {
    let script = script(dir, DHCLIENT_SCRIPT);
    std::fs::write(dir.join("dhclient.conf"), DHCLIENT_CONF).unwrap();
    let mut cmd = lab.command(Node::Phone, "dhclient");
    cmd.arg(if release { "-r" } else { "-1" })
        .arg("-v")
        .arg("-sf")
        .arg(&script)
        .arg("-lf")
        .arg(dir.join("leases"))
        .arg("-pf")
        .arg(dir.join("pid"))
        .arg("-cf")
        .arg(dir.join("dhclient.conf"))
        .arg("eth0")
        .stdin(std::process::Stdio::null());
    cmd.output().unwrap()
}

#[test]
fn dhclient_keeps_its_lease_across_a_server_restart() {
    lab::require_root().unwrap();
    init_logs();
    let lab = Arc::new(Lab::new().unwrap());
    let state = tempfile::tempdir().unwrap();
    let opts = options(
        "https://prov.example.com/generic",
        "https://prov.example.com/yealink",
    );
    let config = lab_config(state.path(), &opts);
    let server = Server::start(&lab, config.clone());
    bare_phone(&lab);

    let client = tempfile::tempdir().unwrap();
    let out = dhclient(&lab, client.path(), false);
    assert!(
        out.status.success(),
        "dhclient: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = recorded(client.path(), "BOUND");
    let addr: Ipv4Addr = get(&env, "new_ip_address").parse().unwrap();
    assert!(POOL.contains(&addr), "{addr}");
    assert_eq!(get(&env, "new_routers"), "10.100.0.1");
    assert_eq!(get(&env, "new_domain_name_servers"), "10.100.0.1");
    assert_eq!(get(&env, "new_ntp_servers"), "10.100.0.1");
    assert_eq!(
        get(&env, "new_tftp_server_name"),
        "https://prov.example.com/generic"
    );
    assert_eq!(get(&env, "new_voip_sip"), "1:a:64:0:1");
    assert_eq!(get(&env, "new_cisco_tftp"), "10.100.0.5");
    assert_eq!(get(&env, "new_poly_url"), "https://prov.example.com/poly");
    assert_eq!(get(&env, "new_tz_db"), "Europe/London");
    assert!(get(&env, "new_vendor_encapsulated_options").starts_with("1:10:73:74:75:6e"));
    let lease = &server.leases()[0];
    assert_eq!((lease.address, lease.state), (addr, LeaseStatus::Bound));
    assert_eq!(lease.vendor_class.as_deref(), Some("Polycom-VVX450"));

    // A restart on the same state directory: the lease is loaded from the journal...
    drop(server);
    let server = Server::start(&lab, config);
    let lease = &server.leases()[0];
    assert_eq!((lease.address, lease.state), (addr, LeaseStatus::Bound));
    // ...so another client asking for the address is refused it...
    let stranger = lab
        .in_netns(Node::Phone, || {
            exchange(&[0x02, 0x99, 0, 0, 0, 1], Some(addr))
        })
        .unwrap();
    assert!(POOL.contains(&stranger) && stranger != addr, "{stranger}");
    // ...and the phone, rebooting with its lease file, keeps it (INIT-REBOOT).
    let out = dhclient(&lab, client.path(), false);
    assert!(
        out.status.success(),
        "dhclient: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = events(client.path()).last().cloned().unwrap_or_default();
    assert!(
        last == "REBOOT" || last == "BOUND",
        "{:?}",
        events(client.path())
    );
    assert_eq!(
        get(&recorded(client.path(), &last), "new_ip_address"),
        addr.to_string()
    );

    // dhclient -r: RELEASE, and the address is free.
    let out = dhclient(&lab, client.path(), true);
    assert!(
        out.status.success(),
        "dhclient -r: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        "the release to reach the server",
        Duration::from_secs(10),
        || {
            server
                .leases()
                .iter()
                .any(|l| l.address == addr && l.state == LeaseStatus::Released)
        },
    );
    drop(server);
}

/// DISCOVER, REQUEST (broadcast flag set) from 0.0.0.0:68 on eth0 for hardware address `mac`;
/// returns the address acknowledged. Runs in the calling thread's namespace.
fn exchange(mac: &[u8; 6], want: Option<Ipv4Addr>) -> Ipv4Addr {
    let socket = client_socket("eth0");
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let mut discover = message(mac, xid, v4::MessageType::Discover);
    if let Some(a) = want {
        discover
            .opts_mut()
            .insert(DhcpOption::RequestedIpAddress(a));
    }
    let offer = send_and_wait(&socket, &discover, Duration::from_secs(3)).expect("no OFFER");
    assert_eq!(offer.opts().msg_type(), Some(v4::MessageType::Offer));
    let mut request = message(mac, xid, v4::MessageType::Request);
    request
        .opts_mut()
        .insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    request
        .opts_mut()
        .insert(DhcpOption::ServerIdentifier(Ipv4Addr::new(10, 100, 0, 1)));
    let ack = send_and_wait(&socket, &request, Duration::from_secs(3)).expect("no ACK");
    assert_eq!(ack.opts().msg_type(), Some(v4::MessageType::Ack));
    ack.yiaddr()
}

fn client_socket(device: &str) -> std::net::UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_broadcast(true).unwrap();
    s.bind_device(Some(device.as_bytes())).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
        .unwrap();
    s.into()
}

fn message(mac: &[u8; 6], xid: u32, kind: v4::MessageType) -> v4::Message {
    let u = Ipv4Addr::UNSPECIFIED;
    let mut m = v4::Message::new_with_id(xid, u, u, u, u, mac);
    m.set_flags(v4::Flags::default().set_broadcast());
    m.opts_mut().insert(DhcpOption::MessageType(kind));
    m
}

/// Broadcasts `m` to the server port and waits for the reply with its xid.
fn send_and_wait(s: &std::net::UdpSocket, m: &v4::Message, limit: Duration) -> Option<v4::Message> {
    s.send_to(&m.to_vec().unwrap(), (Ipv4Addr::BROADCAST, 67))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 1500];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(n) = s.recv(&mut buf) else { break };
        match v4::Message::from_bytes(&buf[..n]) {
            Ok(r) if r.xid() == m.xid() && r.opcode() == v4::Opcode::BootReply => return Some(r),
            _ => continue,
        }
    }
    None
}

#[test]
fn many_clients_never_share_and_the_wan_side_gets_nothing() {
    lab::require_root().unwrap();
    init_logs();
    let lab = Arc::new(Lab::new().unwrap());
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(&lab, lab_config(state.path(), ""));

    let got: Vec<Ipv4Addr> = lab
        .in_netns(Node::Phone, || {
            (1..=40u8)
                .map(|n| exchange(&[0x02, 0x42, 0, 0, 0, n], None))
                .collect()
        })
        .unwrap();
    let distinct: BTreeSet<Ipv4Addr> = got.iter().copied().collect();
    assert_eq!(distinct.len(), got.len(), "{got:?}");
    assert!(got.iter().all(|a| POOL.contains(a)), "{got:?}");
    assert_eq!(server.leases().len(), 40);

    // Garbage on the voice LAN is counted, not answered.
    lab.in_netns(Node::Phone, || {
        client_socket("eth0")
            .send_to(b"\x01\x01\x06\x00garbage", (Ipv4Addr::BROADCAST, 67))
            .unwrap();
    })
    .unwrap();
    wait_for("the garbage to be counted", Duration::from_secs(5), || {
        server.handle.stats().unwrap().malformed == 1
    });

    // A DISCOVER on the WAN link (from the broadband router's side) never reaches the server.
    let received = server.handle.stats().unwrap().received;
    let reply = lab
        .in_netns(Node::Isp, || {
            let s = client_socket("lan0");
            let m = message(&[0x02, 0x66, 0, 0, 0, 1], 0x6666, v4::MessageType::Discover);
            send_and_wait(&s, &m, Duration::from_millis(1500))
        })
        .unwrap();
    assert!(reply.is_none(), "the WAN side got {reply:?}");
    assert_eq!(server.handle.stats().unwrap().received, received);
    drop(server);
}
