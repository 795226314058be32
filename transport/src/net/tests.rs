//! Cores on real multicast sockets over loopback.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::seal::KeyedSum;
use crate::wire::ObjectKind;
use crate::{Receiver, ReceiverConfig, ReceiverEvent, Sender, SenderConfig};

/// A group of this test process's own, so parallel tests do not hear each other.
fn group(test: u8) -> SocketAddrV4 {
    let pid = std::process::id();
    SocketAddrV4::new(Ipv4Addr::new(239, 77, (pid % 250) as u8, test), 20_000 + (pid % 20_000) as u16 + u16::from(test))
}

#[tokio::test(flavor = "current_thread")]
async fn a_file_and_chats_reach_three_receivers_through_loss() {
    let g = group(1);
    let cfg = MulticastConfig::loopback(g);
    let file: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let chats = 20;
    let done = Arc::new(AtomicUsize::new(0));
    let mut receivers = Vec::new();
    for i in 0..3u32 {
        let rx = Receiver::new(ReceiverConfig { node: 10 + i, seed: u64::from(i), ..Default::default() }, KeyedSum(9));
        let mut d = Driver::new(
            rx,
            MulticastSocket::open(&cfg).unwrap(),
            DriverConfig { simulated_loss: 0.1, seed: u64::from(i), ..Default::default() },
        );
        let done = done.clone();
        receivers.push(tokio::spawn(async move {
            let (mut objects, mut bytes) = (Vec::new(), std::collections::BTreeMap::<u32, Vec<u8>>::new());
            let r = d
                .run(|_, e| {
                    match e {
                        ReceiverEvent::ObjectData { object, offset, data, .. } => {
                            let b = bytes.entry(object).or_default();
                            assert_eq!(b.len() as u64, offset);
                            b.extend(data);
                        }
                        ReceiverEvent::ObjectComplete { object, .. } => objects.push(object),
                        _ => {}
                    }
                    if objects.len() == 1 + chats { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                })
                .await;
            done.fetch_add(1, Ordering::SeqCst);
            (r.map(|o| o.is_some()), bytes, d.stats().simulated_drops)
        }));
    }
    let sender = Sender::new(SenderConfig { node: 1, rate: 40_000_000, ..Default::default() }, KeyedSum(9)).unwrap();
    let mut d = Driver::new(sender, MulticastSocket::open(&cfg).unwrap(), DriverConfig::default());
    d.core_mut().send_bytes(ObjectKind::File, file.clone()).unwrap();
    for i in 0..chats {
        d.core_mut().send_bytes(ObjectKind::Chat, format!("chat {i}").into_bytes()).unwrap();
    }
    let h = d.handle();
    let watcher = {
        let done = done.clone();
        tokio::spawn(async move {
            while done.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            h.stop();
        })
    };
    let sent = tokio::time::timeout(Duration::from_secs(60), d.run(|_, _| ControlFlow::<()>::Continue(()))).await;
    assert!(matches!(sent, Ok(Ok(None))), "sender: {sent:?}");
    watcher.await.unwrap();
    for r in receivers {
        let (ok, bytes, drops) = r.await.unwrap();
        assert!(ok.unwrap());
        assert!(drops > 100, "the simulated loss must bite: {drops}");
        assert!(bytes[&0] == file, "file differs");
        for i in 0..chats as u32 {
            assert_eq!(bytes[&(i + 1)], format!("chat {i}").into_bytes());
        }
    }
    assert!(d.core().stats().repair_sent > 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_packet_from_outside_the_group_is_dropped_and_counted() {
    let g = group(2);
    let cfg = MulticastConfig::loopback(g);
    let rx = Receiver::new(ReceiverConfig { node: 10, ..Default::default() }, KeyedSum(1));
    let mut d = Driver::new(rx, MulticastSocket::open(&cfg).unwrap(), DriverConfig::default());
    let mut outsider = Sender::new(SenderConfig { node: 1, rate: 0, ..Default::default() }, KeyedSum(2)).unwrap();
    outsider.send_bytes(ObjectKind::Chat, b"let me in".to_vec()).unwrap();
    let out = MulticastSocket::open(&cfg).unwrap();
    let mut buf = Vec::new();
    let mut n = 0;
    while let Some(t) = outsider.poll_transmit(crate::Time::ZERO, &mut buf) {
        out.socket().send_to(&buf[..t.len], out.group()).await.unwrap();
        n += 1;
    }
    let got = tokio::time::timeout(Duration::from_millis(300), d.run(|_, e| ControlFlow::Break(e))).await;
    assert!(got.is_err(), "nothing may be delivered: {got:?}");
    // Its first packets carry the full counter and fail the seal; the others
    // have short headers from a node never heard, and are dropped unopened.
    let s = d.core().stats();
    assert!(s.dropped(crate::stats::DropReason::BadSeal) >= 1);
    assert_eq!(s.dropped(crate::stats::DropReason::BadSeal) + s.dropped(crate::stats::DropReason::NoReference), n);
}

#[tokio::test(flavor = "current_thread")]
async fn the_socket_counts_what_it_dropped_for_want_of_reading() {
    let g = group(3);
    let cfg = MulticastConfig { recv_buffer: 4096, ..MulticastConfig::loopback(g) };
    let rx = MulticastSocket::open(&cfg).unwrap();
    assert_eq!(rx.drops(), Some(0));
    let tx = MulticastSocket::open(&MulticastConfig::loopback(g)).unwrap();
    // Never read: a few kilobytes of queue hold a handful of these.
    for _ in 0..200 {
        tx.socket().send_to(&[7u8; 1000], tx.group()).await.unwrap();
    }
    let dropped = rx.drops().unwrap();
    assert!(dropped > 100, "{dropped} of 200 dropped");
}

#[test]
fn only_multicast_groups_are_joined() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let _g = rt.enter();
    let cfg = MulticastConfig::loopback(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 4000));
    assert!(MulticastSocket::open(&cfg).is_err());
}

/// A sender alone on its host does not read back what it sends; once
/// another socket here joins the group its multicast loops back, and when
/// that socket is gone it stops again.
#[tokio::test(flavor = "current_thread")]
async fn loopback_follows_other_listeners_on_this_host() {
    let g = group(9);
    let alone = MulticastConfig { loopback: Loopback::WhenShared { own: 1 }, ..MulticastConfig::loopback(g) };
    let sender = MulticastSocket::open(&alone).unwrap();
    if !std::path::Path::new("/proc/net/igmp").exists() {
        eprintln!("no /proc/net/igmp here: loopback stays on, as it must when it cannot tell");
        assert!(sender.looping());
        return;
    }
    assert!(!sender.looping(), "nothing else here joined {g}");
    let listener = MulticastSocket::open(&MulticastConfig::loopback(g)).unwrap();
    sender.refresh_loopback().unwrap();
    assert!(sender.looping(), "a listener joined");
    // It hears what the sender sends now.
    sender.socket().send_to(b"hello", std::net::SocketAddr::V4(g)).await.unwrap();
    let mut buf = [0u8; 16];
    let (n, at) = tokio::time::timeout(Duration::from_secs(2), listener.recv(&mut buf)).await.unwrap().unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert!(at.is_some() == listener.stamped(), "stamped by the kernel where it stamps");
    drop(listener);
    sender.refresh_loopback().unwrap();
    assert!(!sender.looping(), "the listener left");
}
