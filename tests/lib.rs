//! What the end-to-end tests share: the README's own commands (so the
//! tests run what a user is told to run, and the two cannot drift), the
//! workspace's binaries, a `netsim testbed` of namespaces as separate hosts,
//! and processes whose output is watched line by line.
//!
//! Owns test plumbing only. It must not reimplement anything of lsim: every
//! step a test takes is a command of the `lsim` or `netsim` binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test harness: a failed step is a failed test
#![allow(missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod crew;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests package sits in the workspace").to_path_buf()
}

/// The README's commands in the fenced `sh` block of `section` (a `## `
/// heading) that contains `marker`: continuation lines joined, comments and
/// blank lines dropped, each split into words as a shell would.
pub fn readme_commands(section: &str, marker: &str) -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let heading = format!("## {section}\n");
    let start = readme.find(&heading).unwrap_or_else(|| panic!("README has no section {section:?}"));
    let rest = &readme[start + heading.len()..];
    let rest = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let block = rest
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("README section {section:?} has no sh block with {marker:?}"));
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split(" # ").next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| shlex::split(l).unwrap_or_else(|| panic!("README line {l:?} is not shell words")))
        .collect()
}

/// The README command of `block` whose words start with `start` (after `$L`).
pub fn command_starting(block: &[Vec<String>], start: &[&str]) -> Vec<String> {
    block
        .iter()
        .find(|words| words.windows(start.len()).any(|w| w.iter().map(String::as_str).eq(start.iter().copied())))
        .unwrap_or_else(|| panic!("no README command with {start:?} in {block:?}"))
        .clone()
}

/// `words` with every word equal to `from` (or holding it) replaced by `to`.
pub fn substitute(words: &[String], pairs: &[(&str, &str)]) -> Vec<String> {
    words
        .iter()
        .map(|w| pairs.iter().fold(w.clone(), |w, (from, to)| if w.contains(from) { w.replace(from, to) } else { w }))
        .collect()
}

/// The path of a binary of this workspace (`lsim`, `netsim`), built by
/// `cargo test --workspace` beside this test; built here when missing (a
/// run of this package alone).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps").to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(root())
            .args(["build", "-p", "lsim-tools", "-p", "lsim-netsim", "--bins"])
            .status()
            .expect("cargo build");
        assert!(status.success(), "building the binaries failed");
    }
    path
}

/// Where the `lsim` processes of these tests keep their accounts' files
/// (signing keys, known keys) unless a test gives a device its own:
/// beside the build (`target/<profile>/lsim-config`), never the home directory.
pub fn config_home() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps").join("lsim-config")
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `lsim ARGS` with `stdin`, run to its end.
pub fn lsim(args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new(binary("lsim"))
        .env("XDG_CONFIG_HOME", config_home())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A command that does not read its input may be gone already.
    let _ = c.stdin.take().unwrap().write_all(stdin.as_bytes());
    c.wait_with_output().unwrap()
}

/// What a finished command printed, standard output then error.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Whether the namespace tests can run here (root, ip, nft, tc); without
/// them they skip, saying why, unless `LSIM_REQUIRE_SERVERS=1` makes that a
/// failure.
pub fn can_run_testbed(test: &str) -> bool {
    let root = sh(&["id", "-u"]).stdout.starts_with(b"0");
    let tools = ["ip", "nft", "tc"]
        .iter()
        .all(|t| sh(&["sh", "-c", &format!("command -v {t} || test -x /usr/sbin/{t}")]).status.success());
    if root && tools {
        return true;
    }
    let why = "needs root, ip, nft and tc (`bash .ci/run` installs them)";
    assert!(std::env::var("LSIM_REQUIRE_SERVERS").as_deref() != Ok("1"), "{test} cannot run: {why}");
    eprintln!("skipping {test}: {why}");
    false
}

/// A one-region testbed (hosts `r0h0`… at 10.1.0.1…) brought up for a test
/// and taken down on drop, even after a panic.
pub struct Testbed {
    pub name: String,
    netsim: PathBuf,
}

impl Testbed {
    pub fn up(name: &str, hosts: u8) -> Testbed {
        let netsim = binary("netsim");
        let _ = Command::new(&netsim).args(["testbed", "down", "--name", name]).output();
        let o = Command::new(&netsim)
            .args(["testbed", "up", "--name", name, "--regions", "1", "--hosts", &hosts.to_string()])
            .output()
            .unwrap();
        assert!(o.status.success(), "testbed up: {}", String::from_utf8_lossy(&o.stderr));
        Testbed { name: name.to_string(), netsim }
    }

    /// The address of host `h` (region 0).
    pub fn addr(h: u8) -> String {
        format!("10.1.0.{}", h + 1)
    }

    fn testbed(&self, sub: &str, rest: &[&str]) -> Output {
        let o = Command::new(&self.netsim).args(["testbed", sub, "--name", &self.name]).args(rest).output().unwrap();
        assert!(o.status.success(), "testbed {sub} {rest:?}: {}", String::from_utf8_lossy(&o.stderr));
        o
    }

    /// Percent of UDP lost at host `h`'s input.
    pub fn loss(&self, h: u8, percent: u8) {
        self.testbed("loss", &[&format!("r0h{h}"), &percent.to_string()]);
    }

    /// `argv` in host `h`, as a command to configure and start.
    pub fn command(&self, h: u8, argv: &[String]) -> Command {
        let mut c = Command::new(&self.netsim);
        c.args(["testbed", "exec", "--name", &self.name, &format!("r0h{h}"), "--"]).args(argv);
        c
    }

    /// Runs `argv` in host `h` to completion, `stdin` given.
    pub fn run(&self, h: u8, argv: &[String], stdin: &str) -> Output {
        let mut child =
            self.command(h, argv).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// Host `h` out of radio range: every packet in and out dropped (TCP
    /// too), as a member behind a ridge.
    pub fn cut(&self, h: u8) {
        let rules = "table inet lsim_away {\n\
                     chain in { type filter hook input priority -400; policy drop; }\n\
                     chain out { type filter hook output priority -400; policy drop; }\n}\n";
        let mut child =
            self.command(h, &["nft".into(), "-f".into(), "-".into()]).stdin(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "cutting r0h{h}");
    }

    /// Host `h` back in range.
    pub fn restore(&self, h: u8) {
        let argv: Vec<String> = ["nft", "delete", "table", "inet", "lsim_away"].iter().map(|s| s.to_string()).collect();
        assert!(self.command(h, &argv).status().unwrap().success(), "restoring r0h{h}");
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let _ = Command::new(&self.netsim).args(["testbed", "down", "--name", &self.name]).output();
    }
}

/// A running process whose output (stdout and stderr) is kept line by
/// line; it and everything it started are ended on drop.
pub struct Proc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Starts `cmd` in its own process group, `first` written to its stdin.
    pub fn start(name: &str, mut cmd: Command, first: &str) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        if !cmd.get_envs().any(|(k, _)| k == "XDG_CONFIG_HOME") {
            cmd.env("XDG_CONFIG_HOME", config_home());
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{name}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (stream, tag) in [(Box::new(out) as Box<dyn std::io::Read + Send>, ""), (Box::new(err), "stderr: ")] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(format!("{tag}{line}"));
                }
            });
        }
        let mut stdin = child.stdin.take();
        if let Some(s) = stdin.as_mut() {
            s.write_all(first.as_bytes()).unwrap();
        }
        Proc { name: name.to_string(), child, stdin, lines }
    }

    /// Types a line.
    pub fn say(&mut self, line: &str) {
        let s = self.stdin.as_mut().expect("stdin");
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        s.flush().unwrap();
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How many lines so far (a mark for [`Proc::wait_from`]).
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// The first line from `from` on that `pred` accepts, waiting up to `limit`.
    pub fn wait_from(&self, from: usize, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().skip(from).find(|l| pred(l)) {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!("{}: no {what} within {limit:?}; its output:\n{}", self.name, self.lines().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Proc::wait_from`] over all lines.
    pub fn wait(&self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_from(0, limit, what, pred)
    }

    /// Sends `signal` to its process group and waits for it to end.
    pub fn signal_and_wait(&mut self, signal: &str) {
        let _ = Command::new("kill").args([signal, "--", &format!("-{}", self.child.id())]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_and_wait("-TERM");
        }
    }
}

/// Incompressible-looking bytes of a given length.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}
