//! The shell on loopback only: both sides of the relay on 127.0.0.1.

use std::net::SocketAddr;

use super::*;
use crate::packet::tests::rtp_packet;
use crate::sdp::tests::crlf;
use crate::EndReason;
use config::types::PortRange;

fn settings() -> MediaSettings {
    let mut s = MediaSettings::defaults();
    s.lan_address = Ipv4Addr::LOCALHOST;
    s.lan_network = "127.0.0.0/8".parse().unwrap();
    s.wan_address = Some(Ipv4Addr::LOCALHOST);
    s.provider_networks = vec!["127.0.0.0/8".parse().unwrap()];
    s.lan_ports = PortRange {
        first: 47100,
        last: 47199,
    };
    s.wan_ports = PortRange {
        first: 47200,
        last: 47299,
    };
    s
}

fn sdp(port: u16) -> Vec<u8> {
    crlf(&format!(
        "v=0
        o=- 1 1 IN IP4 127.0.0.1
        s=-
        c=IN IP4 127.0.0.1
        t=0 0
        m=audio {port} RTP/AVP 0
        a=rtpmap:0 PCMU/8000"
    ))
}

/// The port `m=audio` names in `sdp`.
fn port_of(sdp: &[u8]) -> u16 {
    let s = String::from_utf8_lossy(sdp);
    let m = s.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), s.recv_from(&mut buf))
        .await
        .expect("relayed packet")
        .unwrap();
    (buf[..n].to_vec(), from)
}

#[tokio::test]
async fn relays_both_ways_on_loopback() {
    let media = MediaHandle::new();
    assert!(matches!(
        media.offer("c", Side::Lan, &sdp(1)),
        Err(MediaError::NotRunning)
    ));
    // Two threads, so the two calls below land on different ones.
    media
        .start(MediaSettings {
            threads: 2,
            ..settings()
        })
        .unwrap();
    let mut events = media.subscribe();
    for call in ["c1", "c2"] {
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let provider = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to_wan = media
            .offer(call, Side::Lan, &sdp(phone.local_addr().unwrap().port()))
            .unwrap();
        let wan_port = port_of(&to_wan);
        let to_lan = media
            .answer(call, Side::Wan, &sdp(provider.local_addr().unwrap().port()))
            .unwrap();
        let lan_port = port_of(&to_lan);
        assert!((47100..47200).contains(&lan_port) && (47200..47300).contains(&wan_port));

        for seq in 0..10u16 {
            let p = rtp_packet(0, seq, u32::from(seq) * 160, 1, 160);
            phone.send_to(&p, ("127.0.0.1", lan_port)).await.unwrap();
            let (got, from) = recv(&provider).await;
            assert_eq!(got, p);
            assert_eq!(from.port(), wan_port, "sent from the box's WAN port");
            provider.send_to(&p, from).await.unwrap();
            let (got, from) = recv(&phone).await;
            assert_eq!((got, from.port()), (p, lan_port));
        }
        let snap = media.snapshot();
        assert_eq!(snap[0].streams[0].lan.received.packets, 10);
        assert_eq!(snap[0].streams[0].wan.received.packets, 10);

        let Some(crate::Release::Done(report)) = media.release(call) else {
            panic!("released at once: nothing in the kernel");
        };
        assert_eq!(report.streams[0].wan.forwarded, 10);
        assert!(media.snapshot().is_empty());
        // The sockets close once their tasks are gone.
        let mut freed = false;
        for _ in 0..100 {
            if std::net::UdpSocket::bind(("127.0.0.1", lan_port)).is_ok() {
                freed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(freed, "port {lan_port} still bound");
    }

    // Stopping ends the remaining calls with reason `stopped`.
    media.offer("d", Side::Lan, &sdp(9)).unwrap();
    media.stop();
    let MediaEvent::Ended {
        call_id, reason, ..
    } = events.recv().await.unwrap()
    else {
        panic!("not an end")
    };
    assert_eq!((call_id.as_str(), reason), ("d", EndReason::Stopped));
    assert!(!media.is_running());
}

/// The ticker outlives a moment without state, as before `start` stores it: it used to end
/// there, and with it, for the whole run, the kernel path and the end of silent calls. It
/// ends with the handle.
#[tokio::test(start_paused = true)]
async fn the_ticker_waits_for_the_relay_s_state() {
    let media = MediaHandle::new();
    let ticker = tokio::spawn(tick(Arc::downgrade(&media.inner)));
    tokio::time::sleep(TICK * 3).await;
    assert!(
        !ticker.is_finished(),
        "the ticker ended before the relay started"
    );
    drop(media);
    tokio::time::sleep(TICK * 2).await;
    assert!(ticker.is_finished(), "the ticker outlived its handle");
}

/// A relay whose ticker has ended (it can only panic) gets it back from the media
/// service's watchdog, its calls untouched.
#[test]
fn an_ended_ticker_is_started_again() {
    let media = MediaHandle::new();
    let mut s = settings();
    s.kernel_path = config::model::KernelPath::Off;
    assert!(!media.revive_ticker(), "nothing to revive before start");
    media.start(s).unwrap();
    media.offer("c", Side::Lan, &sdp(9000)).unwrap();
    assert!(!media.revive_ticker(), "the ticker runs");
    media.state().as_ref().unwrap().ticker.abort();
    let deadline = Instant::now() + Duration::from_secs(2);
    while !media.revive_ticker() {
        assert!(Instant::now() < deadline, "the ended ticker is not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!media.state().as_ref().unwrap().ticker.is_finished());
    assert!(!media.revive_ticker());
    assert_eq!(media.snapshot().len(), 1, "the call is still there");
    media.stop();
    assert!(!media.revive_ticker(), "a stopped relay has no ticker");
}
