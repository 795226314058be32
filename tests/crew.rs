//! The README's "Run a real group" on a testbed: the command post (host 0)
//! running the README's server block, and members on hosts 1.. running the
//! README's `lsim chat` command, each as its own user with its own address
//! and download directory. Shared by the tests that run a group across
//! hosts (`field`, `catchup`).
//!
//! Owns reading those commands from README.md and substituting a test's
//! values into them. It must not add flags the README does not give: a
//! test that needs one adds it itself, visibly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::{Proc, Testbed, binary, command_starting, readme_commands, substitute};

/// The README section the commands come from.
pub const SECTION: &str = "Run a real group";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// A group's command post and the commands its members run.
pub struct Crew {
    pub tb: Testbed,
    /// Scratch space: the server's data directory, members' downloads.
    pub work: tempfile::TempDir,
    /// The `lsim` binary, as a word of a command.
    pub lsim: String,
    /// The server's data directory.
    pub data: String,
    /// The XMPP certificate's fingerprint the server printed.
    pub fingerprint: String,
    server_argv: Vec<String>,
    member_cmd: Vec<String>,
}

impl Crew {
    /// A testbed of `hosts` (host 0 the command post), `users` added with
    /// the README's `lsim user add`, and the server started.
    pub fn up(name: &str, hosts: u8, users: &[&str]) -> (Crew, Proc) {
        Crew::up_with(name, hosts, users, &[])
    }

    /// [`Crew::up`], with `extra` after the README's server command.
    pub fn up_with(name: &str, hosts: u8, users: &[&str], extra: &[&str]) -> (Crew, Proc) {
        let lsim = binary("lsim").display().to_string();
        let tb = Testbed::up(name, hosts);
        let work = tempfile::Builder::new().prefix(&format!("lsim-{name}-")).tempdir().unwrap();
        let data = work.path().join("server").display().to_string();
        let block = readme_commands(SECTION, "server --data-dir");
        let on_post = |words: &[String]| substitute(words, &[("$L", &lsim), ("/var/lib/lsim", &data)]);
        let add = command_starting(&block, &["user", "add"]);
        let add: Vec<String> = add.iter().skip_while(|w| *w != "|").skip(1).cloned().collect();
        for user in users {
            let argv = on_post(&substitute(&add, &[("alice", user)]));
            let o = tb.run(0, &argv, &format!("{}\n", Crew::password(user)));
            assert!(o.status.success(), "{argv:?}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let mut server_argv = on_post(&command_starting(&block, &["server"]));
        server_argv.extend(extra.iter().map(|w| w.to_string()));
        let member_cmd = command_starting(&readme_commands(SECTION, "lsim chat"), &["lsim", "chat"]);
        let mut crew = Crew { tb, work, lsim, data, fingerprint: String::new(), server_argv, member_cmd };
        let server = crew.start_server();
        let fingerprint = server.wait(secs(5), "the certificate", |l| l.starts_with("XMPP TLS"));
        crew.fingerprint = fingerprint.split_whitespace().last().unwrap().to_string();
        (crew, server)
    }

    /// A user's password in these tests.
    pub fn password(user: &str) -> String {
        format!("{user}-field-{}", std::process::id())
    }

    /// The README's server block, started on the command post.
    pub fn start_server(&self) -> Proc {
        let s = Proc::start("server", self.tb.command(0, &self.server_argv), "");
        s.wait(secs(30), "the group line", |l| l.starts_with("group "));
        s
    }

    /// Where `user`'s received files go.
    pub fn downloads(&self, user: &str) -> PathBuf {
        self.work.path().join(user)
    }

    /// The README's chat command for `user` on host `h`.
    pub fn member_argv(&self, user: &str, h: u8) -> Vec<String> {
        let dir = self.downloads(user).display().to_string();
        let mut argv = substitute(
            &self.member_cmd,
            &[
                ("alice", user),
                ("10.1.0.2", &Testbed::addr(h)),
                ("<fingerprint>", &self.fingerprint),
                ("~/incoming", &dir),
            ],
        );
        argv[0] = self.lsim.clone();
        argv
    }

    /// `user` joins from host `h` with `argv` (see [`Crew::member_argv`]).
    pub fn join(&self, user: &str, h: u8, argv: &[String]) -> Proc {
        let m = Proc::start(user, self.tb.command(h, argv), &format!("{}\n", Crew::password(user)));
        m.wait(secs(60), "the join", |l| l.starts_with("-- in the group"));
        m
    }
}

/// The `/who` answer of `m` once it names everyone in `want` (and nobody
/// under a stranger's `~` nick), asking again until `limit`.
pub fn who_until(m: &mut Proc, want: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let mark = m.mark();
        m.say("/who");
        let line = m.wait_from(mark, secs(5), "a /who answer", |l| l.starts_with("-- here:"));
        let names: Vec<&str> = line.trim_start_matches("-- here:").split(',').map(str::trim).collect();
        if want.iter().all(|w| names.contains(w)) && !line.contains('~') {
            return line;
        }
        assert!(Instant::now() < deadline, "{}: /who says {line:?}, wanted {want:?}", m.name);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The line where `m` showed `sender`'s chat `text`, from line `from` on.
pub fn chat_seen(m: &Proc, from: usize, sender: &str, text: &str, limit: Duration) -> String {
    let tag = format!("<{sender}>");
    m.wait_from(from, limit, &format!("{sender}'s {text:?}"), |l| l.contains(&tag) && l.contains(text))
}
