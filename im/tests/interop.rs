//! The interop matrix (issue 16): XMPP clients that no one here wrote,
//! each against the embedded server and against Prosody 0.12 (the
//! reference), in plaintext and with STARTTLS (required by both servers in
//! that column, so a pass there means the client did STARTTLS).
//!
//! In each cell our client joins a room first; the third-party client logs
//! in, joins it, and sends a groupchat our client must receive. slixmpp
//! (PyPI) and profanity (Debian, driven under a private tmux server) must
//! also receive one our client sent. sendxmpp and go-sendxmpp run as
//! one-shot senders (sendxmpp cannot receive; go-sendxmpp's `--listen` is
//! not used): that direction is not tested for them. "n.a." cells, each with its reason checked, not assumed:
//! go-sendxmpp refuses to authenticate without TLS; `sendxmpp -c` joins
//! without the MUC `<x/>`, which Prosody 0.12 refuses (and sendxmpp exits 0),
//! shown by the same login with `--raw` and a proper join getting through.
//!
//! All cells run at once; the test prints the matrix, then asserts each cell.
//! A missing client skips its row, unless `LSIM_REQUIRE_SERVERS=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::process::{PROCESS_TIMEOUT, Proc, ProcOut, tail};
use common::tmux::Tmux;
use lsim_im::xmpp::client::{Client, ClientEvent};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::room::RoomEvent;
use lsim_im::xmpp::tls::Trust;
use scenario::Target;

/// Third-party user and our user, per row; the password is `USER-pw`.
const USERS: [(&str, &str); 8] = [
    ("bob", "bob-pw"),
    ("alice", "alice-pw"),
    ("carol", "carol-pw"),
    ("frank", "frank-pw"),
    ("dave", "dave-pw"),
    ("grace", "grace-pw"),
    ("erin", "erin-pw"),
    ("heidi", "heidi-pw"),
];
const MUC: &str = "conference.localhost";
/// Our client's nick in every room.
const LSIM_NICK: &str = "lsim";
/// Bound on one cell, whatever happens inside it.
const CELL_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound on one step (a join, a message, a screen).
const STEP: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Row {
    Slixmpp,
    Sendxmpp,
    GoSendxmpp,
    Profanity,
}

impl Row {
    const ALL: [Row; 4] = [Row::Slixmpp, Row::Sendxmpp, Row::GoSendxmpp, Row::Profanity];

    /// Also its nick and its room's name.
    fn name(self) -> &'static str {
        match self {
            Row::Slixmpp => "slixmpp",
            Row::Sendxmpp => "sendxmpp",
            Row::GoSendxmpp => "go-sendxmpp",
            Row::Profanity => "profanity",
        }
    }

    /// (the third-party client's user, our client's user)
    fn users(self) -> (&'static str, &'static str) {
        let i = Row::ALL.iter().position(|r| *r == self).unwrap();
        (USERS[2 * i].0, USERS[2 * i + 1].0)
    }

    fn directions(self) -> &'static str {
        match self {
            Row::Slixmpp | Row::Profanity => "sends and receives",
            Row::Sendxmpp | Row::GoSendxmpp => "send only (one-shot sender)",
        }
    }

    /// What is missing to run this row, if anything.
    fn missing(self) -> Option<String> {
        let need: &[&str] = match self {
            Row::Slixmpp => &["python3"],
            Row::Sendxmpp => &["sendxmpp"],
            Row::GoSendxmpp => &["go-sendxmpp"],
            Row::Profanity => &["profanity", "tmux", "timeout"],
        };
        let mut missing: Vec<String> = need.iter().filter(|c| !common::have(c)).map(|c| c.to_string()).collect();
        if self == Row::Slixmpp && missing.is_empty() && !common::have_python_module("slixmpp") {
            missing.push("python3's slixmpp".into());
        }
        (!missing.is_empty()).then(|| format!("not installed: {}", missing.join(", ")))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Embedded,
    Prosody,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Embedded => "embedded",
            Kind::Prosody => "prosody",
        }
    }
}

/// One server under test.
struct Endpoint {
    kind: Kind,
    tls: bool,
    port: u16,
    /// The server's self-signed certificate (STARTTLS only).
    cert: Option<PathBuf>,
    fingerprint: Option<[u8; 32]>,
}

impl Endpoint {
    fn target(&self) -> Target {
        Target {
            addr: format!("127.0.0.1:{}", self.port),
            domain: "localhost".into(),
            trust: self.fingerprint.map(Trust::Pinned),
            muc: MUC.into(),
        }
    }
}

enum Outcome {
    Pass(String),
    Fail(String),
    NotApplicable(String),
    Skipped(String),
}

impl Outcome {
    fn short(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::NotApplicable(_) => "n.a.",
            Outcome::Skipped(_) => "skipped",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Pass(s) | Outcome::Fail(s) | Outcome::NotApplicable(s) | Outcome::Skipped(s) => s,
        }
    }
}

struct Cell {
    row: Row,
    kind: Kind,
    tls: bool,
    outcome: Outcome,
    took: Duration,
}

/// A string no other run or cell uses.
fn token(what: &str, ep: &Endpoint) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{what}-{}-{}-{}-{nanos:x}", ep.kind.name(), if ep.tls { "tls" } else { "plain" }, std::process::id())
}

// ---------------------------------------------------------------- our side

/// Our client, in the cell's room.
struct Lsim {
    client: Client,
    room: Jid,
    /// What it saw that was not asked for (for failure messages).
    seen: Vec<String>,
}

impl Lsim {
    async fn join(ep: &Endpoint, row: Row) -> Result<Lsim, String> {
        let (_, user) = row.users();
        let client = Client::spawn(ep.target().config(user, &format!("{user}-pw")));
        let room = Jid::parse(&format!("{}@{MUC}", row.name())).unwrap();
        client.join(room.clone(), LSIM_NICK, 0).await;
        let mut lsim = Lsim { client, room, seen: Vec::new() };
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match lsim.next(deadline).await? {
                ClientEvent::Online { encrypted, .. } if encrypted != ep.tls => {
                    return Err(format!("our client's session has encrypted={encrypted}"));
                }
                ClientEvent::Room { event: RoomEvent::Joined { .. }, .. } => return Ok(lsim),
                ClientEvent::Room { event: RoomEvent::JoinFailed { condition }, .. } => {
                    return Err(format!("our client could not join the room: {condition}"));
                }
                _ => {}
            }
        }
    }

    async fn next(&mut self, deadline: tokio::time::Instant) -> Result<ClientEvent, String> {
        let ev = tokio::time::timeout_at(deadline, self.client.next_event())
            .await
            .map_err(|_| format!("our client timed out; it saw: [{}]", self.seen.join("; ")))?
            .ok_or("our client ended")?;
        match &ev {
            ClientEvent::Stopped { error } => return Err(format!("our client stopped: {error:?}")),
            ClientEvent::Offline { error, .. } => self.seen.push(format!("offline: {error}")),
            ClientEvent::Room { event: RoomEvent::OccupantJoined(o), .. } => {
                self.seen.push(format!("{} joined", o.nick))
            }
            ClientEvent::Room { event: RoomEvent::OccupantLeft { nick }, .. } => self.seen.push(format!("{nick} left")),
            ClientEvent::Room { event: RoomEvent::Message { nick, message, .. }, .. } => {
                self.seen.push(format!("message from {nick:?}: {:?}", message.body))
            }
            _ => {}
        }
        Ok(ev)
    }

    /// A groupchat `body` from `from` (sendxmpp sends its input verbatim,
    /// with the newline at its end).
    fn is_message(ev: &ClientEvent, from: &str, body: &str) -> bool {
        matches!(ev, ClientEvent::Room { event: RoomEvent::Message { nick: Some(n), message, .. }, .. }
            if n == from && message.body.as_deref().map(str::trim_end) == Some(body))
    }

    /// Waits for the groupchat `body` from `from`.
    async fn receive(&mut self, from: &str, body: &str) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if Lsim::is_message(&self.next(deadline).await?, from, body) {
                return Ok(());
            }
        }
    }

    /// Waits for the groupchat `body` from `from` while `proc` runs: gives up
    /// 2 s after it ended without sending it.
    async fn receive_from(&mut self, from: &str, body: &str, proc: &mut Proc) -> Result<(), String> {
        let mut deadline = tokio::time::Instant::now() + PROCESS_TIMEOUT;
        loop {
            tokio::select! {
                _ = proc.finish(), if proc.out.is_none() => {
                    deadline = deadline.min(tokio::time::Instant::now() + Duration::from_secs(2));
                }
                ev = self.next(deadline) => {
                    if Lsim::is_message(&ev?, from, body) {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn send(&mut self, body: &str) {
        let room = self.room.clone();
        self.client.send_group(&room, Some(body), None).await;
    }
}

// ------------------------------------------------------------------ cells

async fn cell(row: Row, ep: Arc<Endpoint>) -> Outcome {
    let run = async {
        match row {
            Row::Slixmpp => slixmpp(&ep).await,
            Row::Sendxmpp | Row::GoSendxmpp => one_shot(row, &ep).await,
            Row::Profanity => profanity(&ep).await,
        }
    };
    match tokio::time::timeout(CELL_TIMEOUT, run).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Fail(format!("the cell took more than {CELL_TIMEOUT:?}")),
    }
}

/// slixmpp: both directions, through im/tests/interop/slixmpp_client.py.
async fn slixmpp(ep: &Endpoint) -> Outcome {
    let row = Row::Slixmpp;
    let mut lsim = match Lsim::join(ep, row).await {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(e),
    };
    let (user, _) = row.users();
    let (to_lsim, from_lsim) = (token("slixmpp-to-lsim", ep), token("lsim-to-slixmpp", ep));
    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/slixmpp_client.py"))
        .arg(format!("{user}@localhost/interop"))
        .arg(format!("{user}-pw"))
        .args(["127.0.0.1", &ep.port.to_string(), &lsim.room.to_string(), row.name(), LSIM_NICK])
        .args([&to_lsim, &from_lsim]);
    match &ep.cert {
        Some(cert) => cmd.arg("starttls").arg(cert),
        None => cmd.arg("plain"),
    };
    let mut proc = Proc::spawn(cmd, None);
    if let Err(e) = lsim.receive_from(row.name(), &to_lsim, &mut proc).await {
        let out = proc.finish().await;
        return Outcome::Fail(format!("our client did not get slixmpp's groupchat ({e}); slixmpp: {}", out.describe()));
    }
    lsim.send(&from_lsim).await;
    let out = proc.finish().await;
    let outcome = if out.success() && out.output.contains(&format!("received {from_lsim}")) {
        let sasl = out.output.lines().find(|l| l.starts_with("logged in")).unwrap_or("?");
        let tls = if out.output.contains("STARTTLS done") { ", STARTTLS done" } else { "" };
        Outcome::Pass(format!("both directions; {sasl}{tls}"))
    } else {
        Outcome::Fail(format!("our client got slixmpp's groupchat, but slixmpp did not get ours: {}", out.describe()))
    };
    lsim.client.stop().await;
    outcome
}

/// sendxmpp and go-sendxmpp: one groupchat to our client.
async fn one_shot(row: Row, ep: &Endpoint) -> Outcome {
    let mut lsim = match Lsim::join(ep, row).await {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(e),
    };
    let home = tempfile::Builder::new().prefix("lsim-interop-home").tempdir().unwrap();
    let text = token(&format!("{}-to-lsim", row.name()), ep);
    let (got, out) = send_once(row, ep, &mut lsim, home.path(), &text, false).await;
    // What sendxmpp -c sends to join (GC 1.0: no <x xmlns='…/muc'/>).
    let bare_join = format!("sent(<presence to='{}/{}'/>)", lsim.room, row.name());
    let outcome = match got {
        Ok(()) if out.success() => Outcome::Pass("send only; our client got its groupchat".into()),
        Ok(()) => Outcome::Fail(format!("our client got its groupchat, but it exited with {}", out.describe())),
        Err(_) if row == Row::GoSendxmpp && !ep.tls && out.output.contains("refusing to authenticate") => {
            Outcome::NotApplicable(format!(
                "go-sendxmpp refuses to authenticate without TLS (it said: {:?})",
                out.output.lines().find(|l| l.contains("refusing")).unwrap_or_default().trim()
            ))
        }
        Err(e) if row == Row::Sendxmpp && ep.kind == Kind::Prosody && out.output.contains(&bare_join) => {
            // Prosody 0.12 refuses a join without the MUC <x/> ("Attempted
            // join without <x>, possibly desynced"), then the groupchat;
            // sendxmpp exits 0 all the same. The same login with --raw and a
            // join with <x/> shows that the rest works.
            let raw = token("sendxmpp-raw-to-lsim", ep);
            let (raw_got, raw_out) = send_once(row, ep, &mut lsim, home.path(), &raw, true).await;
            match raw_got {
                Ok(()) if raw_out.success() => Outcome::NotApplicable(format!(
                    "`sendxmpp -c` joins with a bare <presence to='{}/{}'/> (no MUC <x/>), which Prosody 0.12 \
                     refuses (\"Attempted join without <x>\"), and exits 0 without reading the error ({e}); \
                     the same login with --raw and a join with <x/> delivered its groupchat",
                    lsim.room,
                    row.name()
                )),
                _ => Outcome::Fail(format!(
                    "our client did not get its groupchat ({e}), not even with --raw; -c: {}; --raw: {}",
                    out.describe(),
                    raw_out.describe()
                )),
            }
        }
        Err(e) => {
            Outcome::Fail(format!("our client did not get its groupchat ({e}); it exited with {}", out.describe()))
        }
    };
    lsim.client.stop().await;
    outcome
}

/// Runs sendxmpp or go-sendxmpp once (with its debug output) to send
/// `text` to the room; `raw`: sendxmpp --raw, with the join and the
/// groupchat as XML on its input.
async fn send_once(
    row: Row,
    ep: &Endpoint,
    lsim: &mut Lsim,
    home: &Path,
    text: &str,
    raw: bool,
) -> (Result<(), String>, ProcOut) {
    let (user, _) = row.users();
    let (room, nick) = (lsim.room.to_string(), row.name());
    let mut input = format!("{text}\n");
    let mut cmd = if row == Row::Sendxmpp {
        // Its -j is also the stream's `to`: the domain, with the port.
        let mut cmd = tokio::process::Command::new("sendxmpp");
        cmd.args(["-d", "-u", user, "-p", &format!("{user}-pw"), "-j", &format!("localhost:{}", ep.port)]);
        if ep.tls {
            cmd.args(["-t", "-n"]);
        }
        if raw {
            cmd.arg("--raw");
            input = format!(
                "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>\
                 <message to='{room}' type='groupchat'><body>{text}</body></message>"
            );
        } else {
            cmd.args(["-c", &room, "-r", nick]);
        }
        cmd
    } else {
        let mut cmd = tokio::process::Command::new("go-sendxmpp");
        cmd.args(["-d", "-u", &format!("{user}@localhost"), "-p", &format!("{user}-pw")]).args([
            "-j",
            &format!("127.0.0.1:{}", ep.port),
            "-n",
            "-a",
            nick,
            "-c",
            &room,
        ]);
        cmd
    };
    cmd.env("HOME", home);
    let mut proc = Proc::spawn(cmd, Some(input));
    let got = lsim.receive_from(nick, text, &mut proc).await;
    proc.finish().await;
    (got, proc.out.take().unwrap())
}

/// profanity: both directions, typed into it under tmux, read off its screen.
async fn profanity(ep: &Endpoint) -> Outcome {
    let row = Row::Profanity;
    let mut lsim = match Lsim::join(ep, row).await {
        Ok(l) => l,
        Err(e) => return Outcome::Fail(e),
    };
    let dir = tempfile::Builder::new().prefix("lsim-interop-prof").tempdir().unwrap();
    let outcome = match drive_profanity(ep, &mut lsim, dir.path()).await {
        Ok(detail) => Outcome::Pass(detail),
        Err(e) => {
            let log = std::fs::read_to_string(dir.path().join("data/profanity/logs/profanity.log")).unwrap_or_default();
            let log: Vec<&str> = log.lines().filter(|l| l.contains("ERR") || l.contains("WRN")).collect();
            Outcome::Fail(format!("{e}\n  profanity's log (errors, warnings):\n    | {}", tail(&log.join("\n"), 8)))
        }
    };
    lsim.client.stop().await;
    outcome
}

async fn drive_profanity(ep: &Endpoint, lsim: &mut Lsim, dir: &Path) -> Result<String, String> {
    let row = Row::Profanity;
    let (user, _) = row.users();
    let (config, data) = (dir.join("config"), dir.join("data"));
    let env = [("HOME", dir), ("XDG_CONFIG_HOME", &config), ("XDG_DATA_HOME", &data)];
    let tmux = Tmux::start(dir, &["profanity", "-l", "DEBUG"], &env).await?;
    tmux.wait("/help", &[], STEP).await?;
    // `tls trust`: STARTTLS required, the self-signed certificate accepted.
    let tls = if ep.tls { "trust" } else { "disable" };
    tmux.type_line(&format!("/connect {user}@localhost server 127.0.0.1 port {} tls {tls}", ep.port)).await?;
    tmux.wait("Enter password", &[], STEP).await?;
    tmux.type_line(&format!("{user}-pw")).await?;
    let failed = ["Login failed", "Connection failed", "disconnected"];
    tmux.wait("logged in successfully", &failed, STEP).await?;
    tmux.type_line(&format!("/join {} nick {}", lsim.room, row.name())).await?;
    tmux.wait("You have joined the room", &["Error joining room"], STEP).await?;
    let to_lsim = token("profanity-to-lsim", ep);
    tmux.type_line(&to_lsim).await?;
    lsim.receive(row.name(), &to_lsim)
        .await
        .map_err(|e| format!("our client did not get profanity's groupchat: {e}"))?;
    let from_lsim = token("lsim-to-profanity", ep);
    lsim.send(&from_lsim).await;
    tmux.wait(&format!("{LSIM_NICK}: {from_lsim}"), &[], STEP)
        .await
        .map_err(|e| format!("our client got profanity's groupchat, but profanity did not show ours: {e}"))?;
    let _ = tmux.type_line("/quit").await;
    Ok(format!("both directions; /connect … tls {tls}; our groupchat shown on its screen"))
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_matrix() {
    let started = Instant::now();
    let rows: Vec<(Row, Option<String>)> = Row::ALL.iter().map(|r| (*r, r.missing())).collect();
    for (row, missing) in &rows {
        if let Some(why) = missing {
            assert!(!common::required(), "{}: {why}, and LSIM_REQUIRE_SERVERS=1 requires it", row.name());
            eprintln!("interop: skipping the {} row: {why}", row.name());
        }
    }

    // Four servers: each kind, plaintext and STARTTLS-required.
    let prosody = [false, true].map(|tls| {
        let name = if tls { "interop-tls" } else { "interop-plain" };
        tokio::task::spawn_blocking(move || common::Prosody::start(name, tls, &USERS))
    });
    let mut embedded_plain = common::Embedded::start("interop-plain", false, &USERS).await;
    let mut embedded_tls = common::Embedded::start("interop-tls", true, &USERS).await;
    embedded_tls.reconfigure(|c| c.require_tls = true).await;
    let [p_plain, p_tls] = prosody;
    let prosody = [p_plain.await.unwrap(), p_tls.await.unwrap()];
    let mut endpoints = Vec::new();
    for e in [&embedded_plain, &embedded_tls] {
        let tls = e.fingerprint.is_some();
        let cert = tls.then(|| e.dir.join("xmpp-cert.pem"));
        endpoints.push(Arc::new(Endpoint {
            kind: Kind::Embedded,
            tls,
            port: e.port,
            cert,
            fingerprint: e.fingerprint,
        }));
    }
    for p in prosody.iter().flatten() {
        let cert = p.tls.then(|| p.dir.join("xmpp-cert.pem"));
        endpoints.push(Arc::new(Endpoint {
            kind: Kind::Prosody,
            tls: p.tls,
            port: p.port,
            cert,
            fingerprint: p.fingerprint,
        }));
    }
    eprintln!("interop: servers up after {:?}", started.elapsed());

    let mut cells = Vec::new();
    let mut tasks = Vec::new();
    for (row, missing) in &rows {
        for kind in [Kind::Embedded, Kind::Prosody] {
            for tls in [false, true] {
                let ep = endpoints.iter().find(|e| e.kind == kind && e.tls == tls).cloned();
                let skip = match (missing, &ep) {
                    (Some(why), _) => Some(why.clone()),
                    (None, None) => Some("prosody not installed".to_string()),
                    (None, Some(_)) => None,
                };
                match (skip, ep) {
                    (Some(why), _) => {
                        cells.push(Cell { row: *row, kind, tls, outcome: Outcome::Skipped(why), took: Duration::ZERO })
                    }
                    (None, Some(ep)) => {
                        let row = *row;
                        tasks.push(tokio::spawn(async move {
                            let t = Instant::now();
                            let outcome = cell(row, ep).await;
                            Cell { row, kind, tls, outcome, took: t.elapsed() }
                        }));
                    }
                    (None, None) => unreachable!(),
                }
            }
        }
    }
    for task in tasks {
        cells.push(task.await.expect("a cell panicked"));
    }
    embedded_plain.stop().await;
    embedded_tls.stop().await;
    drop((embedded_plain, embedded_tls, prosody));

    // The matrix, then each cell's assertion.
    cells.sort_by_key(|c| (Row::ALL.iter().position(|r| *r == c.row), c.kind == Kind::Prosody, c.tls));
    let mut table = String::from("\ninterop matrix: third-party client × server × transport\n");
    table.push_str("(STARTTLS: both servers require TLS before SASL; n.a.: see the cell's reason)\n");
    let _ = writeln!(table, "  {:<12} {:<9} {:<10} {:<10} directions", "client", "server", "plaintext", "STARTTLS");
    for row in Row::ALL {
        for kind in [Kind::Embedded, Kind::Prosody] {
            let of = |tls| cells.iter().find(|c| c.row == row && c.kind == kind && c.tls == tls).unwrap();
            let _ = writeln!(
                table,
                "  {:<12} {:<9} {:<10} {:<10} {}",
                row.name(),
                kind.name(),
                of(false).outcome.short(),
                of(true).outcome.short(),
                row.directions()
            );
        }
    }
    table.push_str("cells:\n");
    for c in &cells {
        let transport = if c.tls { "STARTTLS" } else { "plaintext" };
        let _ = writeln!(
            table,
            "  {} × {} × {transport}: {} ({:.1} s) — {}",
            c.row.name(),
            c.kind.name(),
            c.outcome.short(),
            c.took.as_secs_f64(),
            c.outcome.detail()
        );
    }
    let _ = writeln!(table, "whole test: {:.1} s", started.elapsed().as_secs_f64());
    println!("{table}");
    for c in &cells {
        let transport = if c.tls { "STARTTLS" } else { "plaintext" };
        if let Outcome::Fail(why) = &c.outcome {
            panic!("{} against the {} server over {transport}: {why}", c.row.name(), c.kind.name());
        }
    }
}
