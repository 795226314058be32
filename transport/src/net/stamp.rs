//! When a datagram reached this host: the kernel's receive timestamp.
//!
//! Owns the two system calls neither std nor socket2 offers: turning on
//! `SO_TIMESTAMPNS`, and reading a datagram together with its control
//! messages (`recvmsg`), and the parsing of those messages. The adaptive
//! rate (`rate.rs`) reads queues from probe round trips; measured from when
//! a busy process got round to its socket, a round trip also holds that
//! process's scheduling delay, and on this 2-core machine the controller
//! took those stalls for queues and held 10 Mbit/s on an idle LAN (issue 17).
//! Stamped by the kernel on arrival, a probe's hold at the receiver and its
//! echo's arrival at the sender leave both processes' stalls out; what is
//! left is the network's queues. A receiver too slow to read shows in its
//! socket's drop counter instead (`overrun.rs`).
//!
//! This is the crate's only unsafe code: two system calls on a socket the
//! caller owns, with buffers that outlive them. Where the kernel gives no
//! stamp (another OS, a failed option), datagrams carry none and the driver
//! uses its own clock, as before.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Control-message space for one timestamp (a `cmsghdr` and a `timespec`,
/// 32 bytes on 64-bit Linux) with room to spare.
const CONTROL: usize = 128;

/// Asks the kernel to stamp each datagram `fd` receives; false if it refused.
#[cfg(target_os = "linux")]
pub fn enable(fd: RawFd) -> bool {
    let on: libc::c_int = 1;
    // SAFETY: `fd` is an open socket the caller holds for the duration of
    // the call; the option value points to a live `c_int` whose size is the
    // length given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Asks the kernel to stamp each datagram `fd` receives; false if it refused.
#[cfg(not(target_os = "linux"))]
pub fn enable(_fd: RawFd) -> bool {
    false
}

/// Control bytes aligned as the kernel writes them (`cmsghdr` holds a `size_t`).
#[repr(C, align(8))]
struct Control([u8; CONTROL]);

/// Reads one datagram into `buf` without blocking: its length and, if the
/// kernel stamped it, when it arrived. `WouldBlock` when none is queued.
#[cfg(target_os = "linux")]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    let mut control = Control([0; CONTROL]);
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: an all-zero `msghdr` is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = CONTROL as _;
    // SAFETY: `fd` is an open socket the caller holds; `msg` points to one
    // iovec over `buf` and to `control`, all live and exclusively borrowed
    // for the call, with their true lengths; the kernel writes only within them.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (msg.msg_controllen as usize).min(CONTROL);
    Ok((n as usize, arrival(&control.0[..len])))
}

/// Reads one datagram into `buf` without blocking (no stamps on this OS).
#[cfg(not(target_os = "linux"))]
pub fn recv(_fd: RawFd, _buf: &mut [u8]) -> io::Result<(usize, Option<SystemTime>)> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "kernel timestamps need Linux"))
}

/// The `SCM_TIMESTAMPNS` stamp among control messages laid out as 64-bit
/// Linux does (`cmsg_len` a `usize`, level and type `i32`, data aligned to 8;
/// `timespec` two `i64`). Malformed or truncated messages give `None`.
pub fn arrival(control: &[u8]) -> Option<SystemTime> {
    const WORD: usize = std::mem::size_of::<usize>();
    const HEADER: usize = WORD + 8;
    if WORD != 8 {
        return None;
    }
    let word = |b: &[u8]| -> Option<u64> { Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?)) };
    let int = |b: &[u8]| -> Option<i32> { Some(i32::from_ne_bytes(b.get(..4)?.try_into().ok()?)) };
    let mut at = 0usize;
    while at + HEADER <= control.len() {
        let len = usize::try_from(word(&control[at..])?).ok()?;
        let (level, kind) = (int(&control[at + WORD..])?, int(&control[at + WORD + 4..])?);
        if len < HEADER || at + len > control.len() {
            return None;
        }
        if level == SOL_SOCKET && kind == SCM_TIMESTAMPNS && len >= HEADER + 16 {
            let secs = word(&control[at + HEADER..])?;
            let nanos = word(&control[at + HEADER + 8..])?;
            if nanos >= 1_000_000_000 {
                return None;
            }
            return UNIX_EPOCH.checked_add(Duration::new(secs, nanos as u32));
        }
        at += len.div_ceil(8) * 8;
    }
    None
}

const SOL_SOCKET: i32 = 1;
/// `SO_TIMESTAMPNS`, which the kernel also uses as the message type.
const SCM_TIMESTAMPNS: i32 = 35;

#[cfg(test)]
mod tests {
    use super::*;

    fn message(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut m = ((16 + data.len()) as u64).to_ne_bytes().to_vec();
        m.extend_from_slice(&level.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
        while !m.len().is_multiple_of(8) {
            m.push(0);
        }
        m
    }

    fn timespec(secs: u64, nanos: u64) -> Vec<u8> {
        [secs.to_ne_bytes(), nanos.to_ne_bytes()].concat()
    }

    #[test]
    fn finds_the_stamp_among_other_messages() {
        let mut c = message(0, 8, &[1, 2, 3, 4]); // IP_PKTINFO-like, skipped
        c.extend(message(SOL_SOCKET, SCM_TIMESTAMPNS, &timespec(1_800_000_000, 5)));
        assert_eq!(arrival(&c), Some(UNIX_EPOCH + Duration::new(1_800_000_000, 5)));
    }

    #[test]
    fn malformed_control_gives_none_and_never_panics() {
        assert_eq!(arrival(&[]), None);
        assert_eq!(arrival(&message(SOL_SOCKET, SCM_TIMESTAMPNS, &timespec(1, 2_000_000_000))), None);
        let mut long = message(SOL_SOCKET, SCM_TIMESTAMPNS, &timespec(1, 2));
        long[0] = 200; // claims more than there is
        assert_eq!(arrival(&long), None);
        let mut short = message(SOL_SOCKET, SCM_TIMESTAMPNS, &timespec(1, 2));
        short[0] = 3; // shorter than its own header
        assert_eq!(arrival(&short), None);
        for n in 0..40 {
            let c = message(SOL_SOCKET, SCM_TIMESTAMPNS, &timespec(1, 2));
            let _ = arrival(&c[..n.min(c.len())]);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_stamps_a_datagram_on_arrival() {
        use std::os::fd::AsRawFd;
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable(rx.as_raw_fd()));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = SystemTime::now();
        tx.send_to(b"probe", rx.local_addr().unwrap()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 64];
        let reading = SystemTime::now();
        let (n, at) = recv(rx.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"probe");
        let at = at.expect("stamped");
        // Stamped when it arrived, before it was read 50 ms later. (Not
        // "50 ms before the read": on a loaded host the kernel may deliver
        // a loopback datagram from ksoftirqd well after `send_to` returned.)
        assert!(at >= before - Duration::from_millis(5), "{at:?} before {before:?}");
        assert!(at <= reading, "stamped {at:?}, read at {reading:?}");
        assert_eq!(recv(rx.as_raw_fd(), &mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
