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

/// A group server on loopback for the group-mode mistakes; ended on drop.
struct GroupServer {
    child: std::process::Child,
    xmpp: String,
    keys: String,
    pin: String,
    _data: PathBuf,
}

impl GroupServer {
    fn start(name: &str) -> GroupServer {
        use std::io::{BufRead, BufReader};
        let data = temp(name);
        let mut add = lsim()
            .args(["user", "add", "alice", "--password-stdin", "--data-dir"])
            .arg(&data)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut add.stdin.take().unwrap(), b"alice-pw\n").unwrap();
        assert!(add.wait().unwrap().success());
        let pid = std::process::id();
        let group = format!("239.82.{}.1:{}", pid % 250, 30_000 + pid % 20_000);
        let mut child = lsim()
            .args(["server", "--tls", "--xmpp-listen", "127.0.0.1:0", "--keyserver-listen", "127.0.0.1:0"])
            .args(["--group", &group, "--data-dir"])
            .arg(&data)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut xmpp, mut keys, mut pin) = (String::new(), String::new(), String::new());
        for line in lines.by_ref() {
            let line = line.unwrap();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first() {
                Some(&"XMPP") if words.get(1) != Some(&"TLS") => xmpp = words[1].to_string(),
                Some(&"XMPP") => pin = words.last().unwrap().to_string(),
                Some(&"keys") => keys = words[1].to_string(),
                Some(&"group") => break,
                _ => {}
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        GroupServer { child, xmpp, keys, pin, _data: data }
    }

    /// `lsim chat` as alice with `password`, and `extra` flags.
    fn chat(&self, password: &str, download: &Path, extra: &[&str]) -> Output {
        let mut c = lsim();
        c.args(["chat", "--jid", "alice@localhost", "--server", &self.xmpp, "--password-stdin", "--no-open"])
            .arg("--download-dir")
            .arg(download)
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), format!("{password}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }
}

impl Drop for GroupServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._data);
    }
}

#[test]
fn group_mode_mistakes_are_one_line_naming_what_to_fix_and_write_nothing() {
    let s = GroupServer::start("group-server");
    let download = temp("group-downloads").join("incoming");
    let room = ["--room", "lsim@conference.localhost"];
    let flipped: String = s.pin.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();

    let line = refused(&s.chat("alice-pw", &download, &[&room[..], &["--pin", &flipped]].concat()));
    assert!(line.contains(&s.pin) && line.contains("--pin"), "wrong pin: {line}");

    let line = refused(&s.chat("not-her-password", &download, &[&room[..], &["--pin", &s.pin]].concat()));
    assert!(line.contains("wrong user name or password"), "wrong password: {line}");

    // A room nobody announces the group in (the server makes any room on join).
    let no_room = ["--room", "nosuch@conference.localhost", "--pin", &s.pin];
    let line = refused(&s.chat("alice-pw", &download, &no_room));
    assert!(line.contains("nosuch@conference.localhost") && line.contains("--room"), "no such room: {line}");

    // The key server given by hand, at an address where none answers.
    let dead = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let pin_keys = ["--pin", &s.pin, "--multicast", "239.82.9.9:5999", "--keyserver", &dead, "--keyserver-pin", &s.pin];
    let line = refused(&s.chat("alice-pw", &download, &[&room[..], &pin_keys[..]].concat()));
    assert!(line.contains(&dead) && line.contains("--keyserver") && line.matches("timed out").count() <= 1, "{line}");

    // The --iface address of another host.
    let line =
        refused(&s.chat("alice-pw", &download, &[&room[..], &["--pin", &s.pin, "--iface", "192.0.2.77"]].concat()));
    assert!(line.contains("--iface 192.0.2.77"), "{line}");

    assert!(!download.exists(), "a failed start wrote {}", download.display());
    assert!(!s.keys.is_empty());
    let _ = std::fs::remove_dir_all(download.parent().unwrap());
}
