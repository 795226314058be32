//! A UDP socket joined to a multicast group.
//!
//! Owns socket set-up: address reuse (so several members on one host share
//! the group's port), binding, joining the group on a chosen interface, the
//! outgoing interface, loop and TTL, and large buffers read back after
//! setting (the kernel caps them at `net.core.rmem_max`/`wmem_max`).

use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};
use tokio::net::UdpSocket;

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
    pub loopback: bool,
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
            loopback: true,
            recv_buffer: 8 << 20,
            send_buffer: 4 << 20,
        }
    }
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
        s.set_multicast_loop_v4(cfg.loopback)?;
        s.set_multicast_ttl_v4(cfg.ttl)?;
        // Best effort: the kernel may grant less; what it granted is reported.
        let _ = s.set_recv_buffer_size(cfg.recv_buffer);
        let _ = s.set_send_buffer_size(cfg.send_buffer);
        let recv_buffer = s.recv_buffer_size()?;
        let send_buffer = s.send_buffer_size()?;
        s.set_nonblocking(true)?;
        let inode = inode_of(&s);
        let socket = UdpSocket::from_std(s.into())?;
        Ok(MulticastSocket {
            socket,
            group: SocketAddr::V4(cfg.group),
            ttl: cfg.ttl,
            local: Cell::new(false),
            recv_buffer,
            send_buffer,
            inode,
        })
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
