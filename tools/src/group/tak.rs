//! `lsim chat --tak IFACE`: the member is also the group's bridge to a TAK
//! network (ATAK, WinTAK, iTAK on the local network).
//!
//! Owns the bridge's sockets: it joins the TAK groups (position reports on
//! 239.2.3.1:6969, GeoChat on 224.10.10.1:17012) on the given interface and
//! hands what arrives to the caller. It must not decide what crosses
//! (`lsim_im::tak::bridge` does) nor touch the member.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use anyhow::{Context, Result};
use lsim_im::tak::bridge::{CHAT_GROUP, PLI_GROUP, ToTak};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The largest datagram taken (bigger ones are cut by the kernel and then
/// refused by the reader as malformed).
const MAX_DATAGRAM: usize = 65_536;

/// The bridge's sockets on the TAK network.
pub(super) struct TakNet {
    send: UdpSocket,
    /// Datagrams from the TAK network.
    pub(super) incoming: mpsc::Receiver<Vec<u8>>,
}

fn joined(group: SocketAddrV4, iface: Ipv4Addr) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, group.port())).into())
        .with_context(|| format!("binding the TAK port {}", group.port()))?;
    s.join_multicast_v4(group.ip(), &iface).with_context(|| format!("joining the TAK group {group} on {iface}"))?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

impl TakNet {
    /// Joins the TAK groups on `iface` (`0.0.0.0`: the kernel's choice).
    pub(super) fn open(iface: Ipv4Addr) -> Result<TakNet> {
        let (tx, incoming) = mpsc::channel(256);
        for group in [PLI_GROUP, CHAT_GROUP] {
            let socket = joined(group, iface)?;
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_DATAGRAM];
                while let Ok((n, _)) = socket.recv_from(&mut buf).await {
                    // A full queue drops (the bridge is rate-limited anyway).
                    if tx.try_send(buf[..n].to_vec()).is_err() && tx.is_closed() {
                        return;
                    }
                }
            });
        }
        let send = {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            if !iface.is_unspecified() {
                s.set_multicast_if_v4(&iface)?;
            }
            // TAK clients on this host hear us too (what we hear back of it is refused as ours).
            s.set_multicast_loop_v4(true)?;
            s.set_multicast_ttl_v4(1)?;
            s.bind(&SocketAddr::from((iface, 0)).into())?;
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s.into())?
        };
        Ok(TakNet { send, incoming })
    }

    /// Sends one datagram to the TAK network (a failure is reported, not fatal).
    pub(super) async fn send(&self, out: &ToTak) -> std::io::Result<()> {
        self.send.send_to(&out.bytes, SocketAddr::V4(out.to)).await.map(|_| ())
    }
}
