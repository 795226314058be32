//! The lab's ceiling: a sender that only `sendto`s 1472-byte datagrams to a
//! multicast group as fast as the kernel takes them, and receivers that only
//! read and count them. No seal, no FEC, no file: what any tool on the same
//! emulated network and the same cores can at best reach
//! (`bench/peers.py --tools null`).
//!
//! ```text
//! blast send GROUP:PORT IFACE_ADDR BYTES
//! blast recv GROUP:PORT IFACE_ADDR BYTES
//! ```
//!
//! Each prints one line: datagrams, seconds from the first to the last, and
//! Mbit/s of payload. A receiver stops when it has them all or after one
//! second without any.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const DATAGRAM: usize = 1472;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = || std::io::Error::other("usage: blast send|recv GROUP:PORT IFACE_ADDR BYTES");
    if args.len() != 5 {
        return Err(usage());
    }
    let group: SocketAddrV4 = args[2].parse().map_err(|_| usage())?;
    let iface: Ipv4Addr = args[3].parse().map_err(|_| usage())?;
    let bytes: u64 = args[4].parse().map_err(|_| usage())?;
    let count = bytes.div_ceil(DATAGRAM as u64);
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    let buf = [7u8; DATAGRAM];
    let (n, t) = match args[1].as_str() {
        "send" => {
            s.set_multicast_if_v4(&iface)?;
            s.set_multicast_loop_v4(false)?;
            s.set_send_buffer_size(4 << 20)?;
            let to = SockAddr::from(group);
            let start = Instant::now();
            let mut sent = 0u64;
            for _ in 0..count {
                if s.send_to(&buf, &to).is_ok() {
                    sent += 1;
                }
            }
            (sent, start.elapsed())
        }
        "recv" => {
            s.bind(&SockAddr::from(group))?;
            s.join_multicast_v4(group.ip(), &iface)?;
            s.set_recv_buffer_size(8 << 20)?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut rx = [std::mem::MaybeUninit::<u8>::uninit(); DATAGRAM];
            let (mut got, mut first, mut last) = (0u64, None, Instant::now());
            while got < count && s.recv(&mut rx).is_ok() {
                last = Instant::now();
                first.get_or_insert(last);
                got += 1;
            }
            (got, first.map_or(Duration::ZERO, |f| last - f))
        }
        _ => return Err(usage()),
    };
    let secs = t.as_secs_f64().max(1e-9);
    println!("{n} {secs:.4} {:.1}", n as f64 * DATAGRAM as f64 * 8.0 / secs / 1e6);
    Ok(())
}
