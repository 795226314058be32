//! `lsim demo`: everything on loopback, no set-up. A server, members, chat,
//! a file to everyone and one for a single member, a leave and a join with
//! their secrecy shown on captured packets, and the original system's tables
//! measured now.
//!
//! Owns the demo's script and what it prints. It must not touch the
//! protocols (`lsim_im` runs them) or the other commands.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use lsim_im::group::audit::{Capture, read_with};
use lsim_im::group::member::{Member, MemberConfig, MemberEvent, Viewer};
use lsim_im::group::server::{GroupServer, GroupServerConfig};
use lsim_im::xmpp::client::{ClientConfig, TlsMode};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::users::UserStore;
use lsim_keymgmt::client::Registration;
use lsim_keymgmt::suite::SuiteId;

use super::wait;

/// `lsim demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Simulated loss at every receiver.
    #[arg(long, default_value_t = 0.10)]
    loss: f64,
    /// The ceiling of the members' adaptive rate in Mbit/s (11: the
    /// original system's 802.11b link, which loopback does not have).
    #[arg(long, default_value_t = 11.0)]
    rate: f64,
    /// Runs for the registration/join/leave timings.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

struct Demo {
    server: GroupServer,
    passwords: Vec<(String, String)>,
    dir: PathBuf,
    loss: f64,
    rate: u64,
}

impl Demo {
    fn xmpp(&self, user: &str) -> Result<ClientConfig> {
        let pw = &self.passwords.iter().find(|(u, _)| u == user).ok_or_else(|| anyhow!("no user {user}"))?.1;
        let mut c = ClientConfig::new(Jid::bare_of(user, "localhost"), pw);
        c.server = Some(self.server.xmpp.local_addr().to_string());
        c.tls = TlsMode::Disabled;
        c.allow_plain_unencrypted = true;
        Ok(c)
    }

    async fn member(&self, user: &str) -> Result<(Member, u32)> {
        let mut cfg = MemberConfig::new(self.xmpp(user)?, self.server.room.clone(), user);
        cfg.download_dir = self.dir.join("downloads").join(user);
        std::fs::create_dir_all(&cfg.download_dir)?;
        // A harmless viewer: says what it would show.
        cfg.viewer = Viewer::Command(vec![
            "sh".into(),
            "-c".into(),
            format!("echo \"    [{user}'s viewer] showing $(basename \"$0\") ($(wc -c < \"$0\") bytes)\""),
        ]);
        cfg.simulated_loss = self.loss;
        cfg.rate = self.rate;
        let mut m = Member::start(cfg).await.with_context(|| format!("{user} joining"))?;
        match wait(&mut m, |e| matches!(e, MemberEvent::Joined { .. })).await? {
            MemberEvent::Joined { session, .. } => Ok((m, session)),
            _ => bail!("{user} did not join"),
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Runs the demo: server, members, chat, a file to everyone, a leave and
/// a join with their secrecy shown on captured packets, and the tables.
pub async fn demo(a: DemoArgs) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("lsim-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let users = UserStore::open(&dir)?;
    let mut passwords = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "timer"] {
        let mut raw = [0u8; 12];
        lsim_keymgmt::key::random_bytes(&mut raw).map_err(|e| anyhow!("{e}"))?;
        let pw: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        users.add(user, &pw, true)?;
        passwords.push((user.to_string(), pw));
    }
    let pid = std::process::id();
    let group = SocketAddrV4::new(Ipv4Addr::new(239, 192, 77, (pid % 250) as u8 + 1), 20_000 + (pid % 20_000) as u16);
    let mut cfg = GroupServerConfig::new(&dir);
    cfg.xmpp_listen = "127.0.0.1:0".parse()?;
    cfg.keyserver_listen = "127.0.0.1:0".parse()?;
    cfg.allow_plain_unencrypted = true;
    cfg.group = group;
    let server = GroupServer::start(cfg).await?;
    println!("lsim demo: XMPP server, key server and room {} on loopback; group {group}", server.room);
    println!(
        "           every receiver drops {:.0} % of datagrams; senders adapt their rate, up to {} Mbit/s\n",
        a.loss * 100.0,
        a.rate
    );
    let demo = Demo { server, passwords, dir: dir.clone(), loss: a.loss, rate: (a.rate * 125_000.0) as u64 };
    let capture = Capture::loopback(group)?;

    // Table 4.1: registration, join and leave with the key server.
    let (ks, fp) = (demo.server.params.keyserver, demo.server.params.fingerprint);
    let timer_pw = demo.passwords.iter().find(|(u, _)| u == "timer").map(|(_, p)| p.clone()).unwrap_or_default();
    let (mut reg, mut join, mut leave) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.runs.max(1) {
        let t = Instant::now();
        let r = Registration::login(ks, fp, "timer", &timer_pw).await?;
        reg.push(t.elapsed());
        let t = Instant::now();
        r.join("lsim").await?;
        join.push(t.elapsed());
        let t = Instant::now();
        r.leave("lsim").await?;
        leave.push(t.elapsed());
    }

    println!("1. alice, bob and carol log into XMPP, register with the key server and join");
    let mut members = Vec::new();
    let mut session = 0;
    for user in ["alice", "bob", "carol"] {
        let (m, s) = demo.member(user).await?;
        session = s;
        members.push((user, m));
    }
    let (epoch, _) = demo.server.keys.group_state("lsim").await.ok_or_else(|| anyhow!("no group"))?;
    for (_, m) in members.iter_mut().take(2) {
        wait(m, |e| matches!(e, MemberEvent::Epoch(n) if *n == epoch)).await?;
    }
    println!("   all three hold the group key of epoch {epoch}\n");

    println!("2. chat, encrypted, on multicast");
    members[0].1.chat("Fire crossed the ridge road. Crew 2 pull back to the river.").await;
    for (user, m) in members.iter_mut().skip(1) {
        if let MemberEvent::Chat { from, text, .. } = wait(m, |e| matches!(e, MemberEvent::Chat { .. })).await? {
            println!("   {user} sees <{from}> {text}");
        }
    }

    println!("\n3. a map to everyone, opened on arrival");
    let map = dir.join("ridge-map.png");
    std::fs::write(&map, pattern(195 * 1024))?;
    members[0].1.send_file(&map).await;
    for (user, m) in members.iter_mut().skip(1) {
        if let MemberEvent::FileReceived { size, .. } =
            wait(m, |e| matches!(e, MemberEvent::FileReceived { .. })).await?
        {
            println!("   {user} received ridge-map.png ({size} bytes, SHA-256 verified)");
        }
        wait(m, |e| matches!(e, MemberEvent::FileShown { .. })).await?;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!("\n4. a casualty list and a message for bob only: the key server wraps their keys for him alone");
    let list = dir.join("casualties.txt");
    std::fs::write(&list, "crew 2: two smoke inhalation, evacuated to the river landing\n")?;
    members[0].1.send_file_to(&list, &["bob".to_string()]).await;
    let arrived = |e: &MemberEvent| {
        matches!(
            e,
            MemberEvent::FileReceived { .. } | MemberEvent::FileNotForUs { .. } | MemberEvent::FileFailed { .. }
        )
    };
    for (user, m) in members.iter_mut().skip(1) {
        match wait(m, arrived).await? {
            MemberEvent::FileReceived { name, from, .. } => {
                println!("   {user} received {name} from {from}, decrypted and verified")
            }
            MemberEvent::FileNotForUs { .. } => {
                println!("   {user}: a file for other members went by (no name, nothing written)")
            }
            other => bail!("{user}: {other:?}"),
        }
    }
    wait(&mut members[1].1, |e| matches!(e, MemberEvent::FileShown { .. })).await?;
    if let MemberEvent::FileDelivered { to, .. } =
        wait(&mut members[0].1, |e| matches!(e, MemberEvent::FileDelivered { .. })).await?
    {
        println!("   alice has {to}'s signed receipt for it, over multicast");
    }
    members[0].1.chat_to("Read it out at the river landing, not on the open channel.", &["bob".to_string()]).await;
    members[0].1.chat("All crews: regroup at the river.").await;
    let chat = |e: &MemberEvent| matches!(e, MemberEvent::Chat { .. });
    for (user, m) in members.iter_mut().skip(1) {
        if let MemberEvent::Chat { text, private, .. } = wait(m, chat).await? {
            println!("   {user}'s next message{}: {text}", if private { " (private, for bob only)" } else { "" });
        }
    }
    if std::fs::read_dir(demo.dir.join("downloads").join("carol"))?.flatten().any(|e| e.file_name() == "casualties.txt")
    {
        bail!("carol holds the casualty list");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!("\n5. dave joins, then leaves; what is said after cannot be read with any key he had");
    let (dave, _) = demo.member("dave").await?;
    let (dave_epoch, _) = demo.server.keys.group_state("lsim").await.ok_or_else(|| anyhow!("no group"))?;
    for (_, m) in members.iter_mut() {
        wait(m, |e| matches!(e, MemberEvent::Epoch(n) if *n >= dave_epoch)).await?;
    }
    dave.chat("dave here, on the east flank").await;
    wait(&mut members[0].1, |e| matches!(e, MemberEvent::Chat { from, .. } if from == "dave")).await?;
    let departure = dave.leave().await;
    let left =
        departure.events.iter().find_map(|e| if let MemberEvent::Left { epoch } = e { Some(*epoch) } else { None });
    let left = left.ok_or_else(|| anyhow!("dave did not leave"))?;
    for (_, m) in members.iter_mut() {
        wait(m, |e| matches!(e, MemberEvent::Epoch(n) if *n >= left)).await?;
    }
    let mark = capture.mark();
    members[1].1.chat("Dave's radio is gone; do not tell it where we are.").await;
    wait(&mut members[0].1, |e| matches!(e, MemberEvent::Chat { from, .. } if from == "bob")).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = capture.since(mark);
    let dave_reads = read_with(session, SuiteId::Aes256Gcm, &departure.keys_held, &after);
    let current = demo.server.keys.group_key("lsim").await.ok_or_else(|| anyhow!("no group key"))?;
    let control = read_with(session, SuiteId::Aes256Gcm, &[(left, current)], &after);
    println!(
        "   {} datagrams captured after dave left. The current group key reads bob's message: {}.",
        after.len(),
        yes(control.contains(b"Dave's radio")),
    );
    println!(
        "   Every key dave ever held ({}) reads it: {} ({} datagrams are under epochs he never had; {} are not, \
         such as the rekey that shut him out, sealed under the epoch the others still held)",
        departure.keys_held.len(),
        yes(dave_reads.contains(b"Dave's radio")),
        dave_reads.unopenable,
        after.len() as u64 - dave_reads.unopenable,
    );
    if dave_reads.contains(b"Dave's radio") || !control.contains(b"Dave's radio") {
        bail!("secrecy check failed");
    }

    println!("\n6. erin joins; nothing captured before her join opens with her keys");
    let before = capture.before(capture.mark());
    let (erin, _) = demo.member("erin").await?;
    let erin_keys = erin.leave().await.keys_held;
    let erin_reads = read_with(session, SuiteId::Aes256Gcm, &erin_keys, &before);
    let secret = erin_reads.contains(b"Fire crossed") || erin_reads.contains(b"Dave's radio");
    println!(
        "   {} datagrams from before her join; erin's keys open {} of them and read the earlier chat: {}",
        before.len(),
        before.len() as u64 - erin_reads.unopenable,
        yes(secret)
    );
    if secret {
        bail!("secrecy check failed");
    }

    // Table 4.2: file transfer times, alice to bob and carol.
    let mut times = Vec::new();
    for (kb, original_ms) in [(8.5, 35_302.47), (25.0, 105_986.05), (60.0, 305_934.53), (195.0, 1_007_949.38)] {
        let path = dir.join(format!("file-{kb}k.bin"));
        std::fs::write(&path, pattern((kb * 1024.0) as usize))?;
        let t = Instant::now();
        members[0].1.send_file(&path).await;
        for (_, m) in members.iter_mut().skip(1) {
            wait(m, |e| matches!(e, MemberEvent::FileReceived { .. })).await?;
        }
        times.push((kb, original_ms, t.elapsed()));
    }

    println!("\nTable 4.1  registration, join and leave ({} runs, median)", a.runs.max(1));
    println!("           {:<14} {:>12} {:>14}", "", "lsim now", "original LSIM");
    for (what, v, orig) in [("registration", reg, 260.57), ("group join", join, 427.60), ("group leave", leave, 366.38)]
    {
        println!("           {what:<14} {:>9.1} ms {:>11.0} ms", median(v).as_secs_f64() * 1e3, orig);
    }
    println!(
        "\nTable 4.2  file transfer to the group ({:.0} % loss at each receiver, {} Mbit/s)",
        a.loss * 100.0,
        a.rate
    );
    println!("           {:<10} {:>12} {:>14} {:>9}", "file size", "lsim now", "original LSIM", "speed-up");
    for (kb, orig, t) in times {
        let ms = t.as_secs_f64() * 1e3;
        println!(
            "           {:<10} {:>9.1} ms {:>11.0} ms {:>8.0}x",
            format!("{kb} KB"),
            ms,
            orig,
            orig / ms.max(0.001)
        );
    }
    for (_, m) in members {
        m.leave().await;
    }
    demo.server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    std::io::stdout().flush()?;
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Incompressible-looking bytes of a given length.
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}
