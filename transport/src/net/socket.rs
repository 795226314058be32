//! A UDP socket joined to a multicast group.
//!
//! Owns socket set-up: address reuse (so several members on one host share
//! the group's port), binding, joining the group on a chosen interface, the
//! outgoing interface, loop and TTL, and large buffers read back after
//! setting (the kernel caps them at `net.core.rmem_max`/`wmem_max`); and
//! whether our multicast loops back to this host, which by default it does
//! only while another socket here has joined the group (`Loopback::WhenShared`):
//! a sender alone on its host otherwise reads and discards every packet it sends.

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::SystemTime;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use super::stamp;

use crate::core::Scope;

/// Where and how to join a group.
#[derive(Clone, Debug)]
pub struct MulticastConfig {
    /// The group address and port.
    pub group: SocketAddrV4,
    /// The local interface's address to join on and send from (`0.0.0.0`: the kernel's choice).
    pub interface: Ipv4Addr,
    /// Hops multicast may travel (1: the local link).
    pub ttl: u32,
    /// Deliver our own multicast back to sockets on this host (needed when
    /// several members share a host, as in tests and the demo).
    pub loopback: Loopback,
    /// Receive buffer to ask for, bytes.
    pub recv_buffer: usize,
    /// Send buffer to ask for, bytes.
    pub send_buffer: usize,
}

impl MulticastConfig {
    /// A group on the loopback interface, for tests and the one-host demo.
    pub fn loopback(group: SocketAddrV4) -> MulticastConfig {
        MulticastConfig {
            group,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 0,
            loopback: Loopback::On,
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
        }
    }
}

/// Whether our own multicast is delivered back to sockets on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loopback {
    /// Always.
    On,
    /// Never.
    Off,
    /// While more sockets on this host have joined the group than the `own`
    /// this process opened (read from `/proc/net/igmp` at start and then
    /// every `LOOPBACK_CHECK` by the driver; where that cannot be read, on).
    WhenShared {
        /// Sockets of this process joined to the group.
        own: u32,
    },
}

/// An open multicast socket, ready for tokio.
pub struct MulticastSocket {
    socket: UdpSocket,
    group: SocketAddr,
    ttl: u32,
    /// Sending region-scoped (TTL 1) now.
    local: Cell<bool>,
    /// Receive buffer the kernel granted, bytes.
    pub recv_buffer: usize,
    /// Send buffer the kernel granted, bytes.
    pub send_buffer: usize,
    /// The socket's inode, to find its drop counter (Linux).
    inode: Option<u64>,
    /// The kernel stamps each datagram's arrival (`stamp.rs`).
    stamped: bool,
    loopback: Loopback,
    /// Our multicast loops back now.
    looping: Cell<bool>,
}

impl MulticastSocket {
    /// Opens, binds and joins. Must be called inside a tokio runtime.
    pub fn open(cfg: &MulticastConfig) -> io::Result<MulticastSocket> {
        if !cfg.group.ip().is_multicast() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a multicast address", cfg.group),
            ));
        }
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        // Bound to the group address, the socket hears only this group on this port.
        s.bind(&SockAddr::from(SocketAddrV4::new(*cfg.group.ip(), cfg.group.port())))?;
        s.join_multicast_v4(cfg.group.ip(), &cfg.interface)?;
        s.set_multicast_if_v4(&cfg.interface)?;
        let looping = match cfg.loopback {
            Loopback::On => true,
            Loopback::Off => false,
            Loopback::WhenShared { own } => shared(*cfg.group.ip(), own),
        };
        s.set_multicast_loop_v4(looping)?;
        s.set_multicast_ttl_v4(cfg.ttl)?;
        // Best effort: the kernel may grant less; what it granted is reported.
        let _ = s.set_recv_buffer_size(cfg.recv_buffer);
        let _ = s.set_send_buffer_size(cfg.send_buffer);
        let recv_buffer = s.recv_buffer_size()?;
        let send_buffer = s.send_buffer_size()?;
        s.set_nonblocking(true)?;
        let inode = inode_of(&s);
        let stamped = stamp::enable(s.as_raw_fd());
        let socket = UdpSocket::from_std(s.into())?;
        Ok(MulticastSocket {
            socket,
            group: SocketAddr::V4(cfg.group),
            ttl: cfg.ttl,
            local: Cell::new(false),
            recv_buffer,
            send_buffer,
            inode,
            stamped,
            loopback: cfg.loopback,
            looping: Cell::new(looping),
        })
    }

    /// With `Loopback::WhenShared`, turns loopback on or off as other
    /// sockets on this host join or leave the group (one read of
    /// `/proc/net/igmp`; the driver calls it every `LOOPBACK_CHECK`).
    pub fn refresh_loopback(&self) -> io::Result<()> {
        let Loopback::WhenShared { own } = self.loopback else { return Ok(()) };
        let SocketAddr::V4(group) = self.group else { return Ok(()) };
        let on = shared(*group.ip(), own);
        if on != self.looping.get() {
            SockRef::from(&self.socket).set_multicast_loop_v4(on)?;
            self.looping.set(on);
        }
        Ok(())
    }

    /// True while our multicast loops back to this host.
    pub fn looping(&self) -> bool {
        self.looping.get()
    }

    /// True if datagrams come with the kernel's arrival time.
    pub fn stamped(&self) -> bool {
        self.stamped
    }

    /// Reads one queued datagram without waiting: its length and, where the
    /// kernel stamps them, when it arrived. `WouldBlock` when none is queued.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
        if self.stamped {
            self.socket.try_io(Interest::READABLE, || stamp::recv(self.socket.as_raw_fd(), buf))
        } else {
            self.socket.try_recv_from(buf).map(|(n, _)| (n, None))
        }
    }

    /// Waits for one datagram (as `try_recv`). The future holds only the
    /// tokio socket (this struct's scope cell is not `Sync`), so it is `Send`.
    pub fn recv<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<(usize, Option<SystemTime>)>> + Send + 'a {
        let (socket, stamped) = (&self.socket, self.stamped);
        async move {
            if stamped {
                let fd = socket.as_raw_fd();
                socket.async_io(Interest::READABLE, || stamp::recv(fd, buf)).await
            } else {
                socket.recv_from(buf).await.map(|(n, _)| (n, None))
            }
        }
    }

    /// Datagrams the kernel dropped for this socket so far because its
    /// receive queue was full (this node did not read in time): the `drops`
    /// column of `/proc/net/udp`. `None` where that cannot be read.
    pub fn drops(&self) -> Option<u64> {
        let inode = self.inode?.to_string();
        let table = std::fs::read_to_string("/proc/net/udp").ok()?;
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.get(9) == Some(&inode.as_str())).then(|| f.last()?.parse().ok()).flatten()
        })
    }

    /// The group datagrams are sent to.
    pub fn group(&self) -> SocketAddr {
        self.group
    }

    /// The tokio socket.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Sets how far the next datagrams go: `Region` sends with TTL 1, so
    /// multicast routers keep them in this link's region. One system call
    /// when the scope changes, none otherwise.
    pub fn set_scope(&self, scope: Scope) -> io::Result<()> {
        let local = scope == Scope::Region && self.ttl > 1;
        if local != self.local.get() {
            SockRef::from(&self.socket).set_multicast_ttl_v4(if local { 1 } else { self.ttl })?;
            self.local.set(local);
        }
        Ok(())
    }
}

/// How often the driver re-reads whether others on this host joined the group.
pub const LOOPBACK_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// True if more than `own` sockets on this host have joined `group` (over
/// all interfaces), or if that cannot be told.
fn shared(group: Ipv4Addr, own: u32) -> bool {
    match std::fs::read_to_string("/proc/net/igmp") {
        Ok(table) => joined(&table, group).is_none_or(|n| n > own),
        Err(_) => true,
    }
}

/// Sockets joined to `group` by the kernel's `/proc/net/igmp` table (the
/// `Users` column, summed over interfaces; addresses in hex, little-endian);
/// `None` if the table does not parse.
fn joined(table: &str, group: Ipv4Addr) -> Option<u32> {
    let hex = format!("{:08X}", u32::from_le_bytes(group.octets()));
    let mut users = 0u32;
    for line in table.lines().skip(1) {
        // Group lines start with a tab; interface lines with the index.
        if !line.starts_with('\t') {
            continue;
        }
        let mut f = line.split_whitespace();
        if f.next()? == hex {
            users = users.saturating_add(f.next()?.parse().ok()?);
        }
    }
    Some(users)
}

/// The inode of a socket, as `/proc/net/udp` names it.
#[cfg(target_os = "linux")]
fn inode_of(s: &Socket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd())).ok().map(|m| m.ino())
}

#[cfg(not(target_os = "linux"))]
fn inode_of(_: &Socket) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n\
1\tlo        :     1      V3\n\
\t\t\t\t010000E0     1 0:00000000\t\t0\n\
4\teth0      :     2      V3\n\
\t\t\t\t030201EF     3 0:00000000\t\t0\n\
\t\t\t\t010000E0     1 0:00000000\t\t0\n\
5\tbr0       :     1      V3\n\
\t\t\t\t030201EF     1 0:00000000\t\t0\n";

    #[test]
    fn counts_the_sockets_joined_to_a_group_over_all_interfaces() {
        assert_eq!(joined(TABLE, Ipv4Addr::new(239, 1, 2, 3)), Some(4));
        assert_eq!(joined(TABLE, Ipv4Addr::new(239, 9, 9, 9)), Some(0));
        assert_eq!(joined("Idx\n\t\t\t\t030201EF     many\n", Ipv4Addr::new(239, 1, 2, 3)), None);
    }
}
