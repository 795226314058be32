//! Bad input to `lsim`: each mistake ends the process with status 2 and one
//! line that names the input or flag to fix, before anything is sent or
//! written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

mod common;

use common::lsim;

fn temp(name: &str) -> PathBuf {
    common::temp("cli", name)
}

fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("group.key");
    let out = lsim().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    key
}

/// The one line `lsim` printed on stderr, after checking it failed with status 2.
fn refused(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("lsim: "), "{err}");
    assert!(!err.contains("Some(") && !err.contains("Os {") && !err.contains("kind:"), "debug text: {err}");
    lines[0].to_string()
}

/// A group on loopback and a socket that hears it, to show nothing was sent.
fn listen(test: u8) -> (String, UdpSocket) {
    let pid = std::process::id();
    let (ip, port) =
        (Ipv4Addr::new(239, 81, (pid % 250) as u8, test), 40_000 + (pid % 20_000) as u16 + u16::from(test));
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).unwrap();
    s.join_multicast_v4(&ip, &Ipv4Addr::LOCALHOST).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    (format!("{ip}:{port}"), s)
}

fn heard_nothing(s: &UdpSocket) {
    let mut buf = [0u8; 2048];
    assert!(s.recv_from(&mut buf).is_err(), "a packet went out");
}

#[test]
fn a_directory_or_a_missing_file_is_refused_by_name_before_anything_is_sent() {
    let dir = temp("dir");
    let key = keygen(&dir);
    let (group, heard) = listen(1);
    let file = dir.join("map.bin");
    std::fs::write(&file, [7u8; 1000]).unwrap();
    let folder = dir.join("photos");
    std::fs::create_dir(&folder).unwrap();
    let send = |files: &[&Path]| {
        let mut c = lsim();
        c.args(["send", "--iface", "127.0.0.1", "--group", &group, "--key-file"]).arg(&key);
        refused(&c.args(files).output().unwrap())
    };
    // The good file first: the check comes before the first one goes out.
    let line = send(&[&file, &folder]);
    assert_eq!(line, format!("lsim: {} is a directory: give files, not directories", folder.display()));
    let line = send(&[&file, &dir.join("nowhere.bin")]);
    assert_eq!(line, format!("lsim: {}: no such file", dir.join("nowhere.bin").display()));
    heard_nothing(&heard);
    // Group mode checks them before it connects to anything.
    let o = lsim()
        .args(["send", "--room", "lsim@conference.nowhere.invalid", "--jid", "a@nowhere.invalid"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(refused(&o).contains("is a directory: give files, not directories"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_iface_this_host_does_not_have_is_named_with_what_it_has() {
    let dir = temp("iface");
    let key = keygen(&dir);
    let (group, heard) = listen(2);
    let file = dir.join("map.bin");
    std::fs::write(&file, [7u8; 1000]).unwrap();
    let out = dir.join("rx");
    let o = lsim()
        .args(["recv", "--once", "--iface", "192.0.2.77", "--group", &group, "--key-file"])
        .arg(&key)
        .arg("--dir")
        .arg(&out)
        .output()
        .unwrap();
    let line = refused(&o);
    assert!(line.starts_with("lsim: --iface 192.0.2.77: this host has no such address (have: "), "{line}");
    assert!(line.contains("127.0.0.1"), "{line}");
    assert!(!out.exists(), "nothing written: {} was created", out.display());

    let o = lsim()
        .args(["send", "--iface", "192.0.2.77", "--group", &group, "--key-file"])
        .arg(&key)
        .arg(&file)
        .output()
        .unwrap();
    assert!(refused(&o).starts_with("lsim: --iface 192.0.2.77: this host has no such address (have: "));
    let o = lsim().args(["send", "--iface", "nosuch0", "--group", &group, "--key-file"]).arg(&key).arg(&file).output();
    let line = refused(&o.unwrap());
    assert!(line.starts_with("lsim: --iface nosuch0: this host has no interface of that name"), "{line}");
    assert!(line.contains("lo"), "{line}");
    heard_nothing(&heard);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_key_file_or_config_names_its_flag_and_usage_errors_exit_2_too() {
    let dir = temp("flags");
    let nowhere = dir.join("nowhere.key");
    let o =
        lsim().args(["recv", "--group", "239.1.1.1:5000", "--dir"]).arg(&dir).arg("--key-file").arg(&nowhere).output();
    let line = refused(&o.unwrap());
    assert!(line.starts_with(&format!("lsim: --key-file {}: cannot read it", nowhere.display())), "{line}");
    let o = lsim().args(["recv", "--config"]).arg(dir.join("nowhere.toml")).output().unwrap();
    assert!(refused(&o).contains("nowhere.toml"));
    let o = lsim().args(["send", "--rate", "fast"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}
