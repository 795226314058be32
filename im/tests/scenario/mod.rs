//! The client scenario every server must pass: login with each SASL
//! mechanism, MUC join, presence in and out, payload messages both ways,
//! a nick conflict, and reconnect with room re-join after a restart.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use lsim_im::xmpp::client::{Client, ClientConfig, ClientEvent, TlsMode, connect};
use lsim_im::xmpp::jid::Jid;
use lsim_im::xmpp::payload::{MemberStatus, Payload};
use lsim_im::xmpp::room::RoomEvent;
use lsim_im::xmpp::sasl::Mechanism;
use lsim_im::xmpp::tls::Trust;

/// The users every test server has.
pub const USERS: [(&str, &str); 4] =
    [("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw"), ("dave", "dave-pw")];

/// Where the server is and how to trust it.
pub struct Target {
    /// `host:port`
    pub addr: String,
    /// The XMPP domain.
    pub domain: String,
    /// STARTTLS available, and how to trust the certificate.
    pub trust: Option<Trust>,
    /// The MUC host.
    pub muc: String,
}

impl Target {
    pub fn config(&self, user: &str, password: &str) -> ClientConfig {
        let mut cfg = ClientConfig::new(Jid::bare_of(user, &self.domain), password);
        cfg.server = Some(self.addr.clone());
        match &self.trust {
            Some(trust) => {
                cfg.tls = TlsMode::Required;
                cfg.trust = trust.clone();
            }
            None => {
                cfg.tls = TlsMode::Disabled;
                cfg.allow_plain_unencrypted = true;
            }
        }
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.backoff_min = Duration::from_millis(200);
        cfg.backoff_max = Duration::from_secs(1);
        cfg
    }

    pub fn room(&self) -> Jid {
        Jid::parse(&format!("lsim@{}", self.muc)).unwrap()
    }
}

/// Waits (at most 20 s, a bound against hangs) for an event `pred`
/// accepts, returning it; other events are skipped.
pub async fn wait_for(client: &mut Client, what: &str, pred: impl Fn(&ClientEvent) -> bool) -> ClientEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .unwrap_or_else(|| panic!("client ended while waiting for {what}"));
        if let ClientEvent::Stopped { error: Some(e) } = &ev {
            panic!("client stopped while waiting for {what}: {e}");
        }
        if pred(&ev) {
            return ev;
        }
    }
}

fn joined(ev: &ClientEvent) -> bool {
    matches!(ev, ClientEvent::Room { event: RoomEvent::Joined { .. }, .. })
}

/// Logs in with each mechanism and checks what was used.
pub async fn each_mechanism(target: &Target) {
    for mech in Mechanism::ALL {
        let mut cfg = target.config("alice", "alice-pw");
        cfg.mechanisms = vec![mech];
        let session = connect(&cfg).await.unwrap_or_else(|e| panic!("{mech:?}: {e}"));
        assert_eq!(session.mechanism, mech);
        assert_eq!(session.encrypted, target.trust.is_some());
        assert_eq!(session.jid.bare(), Jid::bare_of("alice", &target.domain));
        assert!(session.jid.is_full());
        session.close().await;
        let mut wrong = target.config("alice", "not-the-password");
        wrong.mechanisms = vec![mech];
        let err = connect(&wrong).await.unwrap_err();
        assert!(err.is_fatal(), "{mech:?}: {err}");
        assert!(err.to_string().contains("not-authorized"), "{mech:?}: {err}");
    }
}

/// Room join, presence both ways, payload messages both ways, nick
/// conflict; then `restart` the server and check the client comes back.
pub async fn room_and_reconnect(target: &Target, restart: &mut dyn FnMut()) {
    let room = target.room();
    let mut alice = Client::spawn(target.config("alice", "alice-pw"));
    wait_for(&mut alice, "alice online", |e| matches!(e, ClientEvent::Online { .. })).await;
    alice.join(room.clone(), "alice", 0).await;
    let ev = wait_for(&mut alice, "alice joined", joined).await;
    let ClientEvent::Room { event: RoomEvent::Joined { nick, occupants }, .. } = ev else { unreachable!() };
    assert_eq!(nick, "alice");
    assert!(occupants.iter().any(|o| o.nick == "alice"));

    let mut bob = Client::spawn(target.config("bob", "bob-pw"));
    bob.join(room.clone(), "bob", 0).await;
    let ev = wait_for(&mut bob, "bob joined", joined).await;
    let ClientEvent::Room { event: RoomEvent::Joined { occupants, .. }, .. } = ev else { unreachable!() };
    let nicks: Vec<&str> = occupants.iter().map(|o| o.nick.as_str()).collect();
    assert!(nicks.contains(&"alice") && nicks.contains(&"bob"), "{nicks:?}");
    wait_for(
        &mut alice,
        "alice sees bob",
        |e| matches!(e, ClientEvent::Room { event: RoomEvent::OccupantJoined(o), .. } if o.nick == "bob"),
    )
    .await;

    // A payload-only message from alice, and body + payload from bob.
    let status = Payload::Status(MemberStatus { node: 7, epoch: 3, loss_permille: 50, repairs: None });
    let id = alice.send_group(&room, None, Some(status.to_element())).await;
    let ev = wait_for(&mut bob, "payload from alice", |e| {
        matches!(e, ClientEvent::Room { event: RoomEvent::Message { message, .. }, .. } if message.payload.is_some())
    })
    .await;
    let ClientEvent::Room { event: RoomEvent::Message { nick, message, .. }, .. } = ev else { unreachable!() };
    assert_eq!(nick.as_deref(), Some("alice"));
    assert_eq!(message.id.as_deref(), Some(id.as_str()));
    assert_eq!(Payload::parse(message.payload.as_ref().unwrap()).unwrap(), status);
    assert_eq!(message.body, None);
    let text = "fire line moved north — ünïcödé ✓";
    bob.send_group(&room, Some(text), Some(status.to_element())).await;
    let ev = wait_for(
        &mut alice,
        "message from bob",
        |e| matches!(e, ClientEvent::Room { event: RoomEvent::Message { nick: Some(n), .. }, .. } if n == "bob"),
    )
    .await;
    let ClientEvent::Room { event: RoomEvent::Message { message, .. }, .. } = ev else { unreachable!() };
    assert_eq!(message.body.as_deref(), Some(text));
    assert_eq!(Payload::parse(message.payload.as_ref().unwrap()).unwrap(), status);

    // carol asks for alice's nick and gets another one.
    let mut carol = Client::spawn(target.config("carol", "carol-pw"));
    carol.join(room.clone(), "alice", 0).await;
    let ev = wait_for(&mut carol, "carol joined", joined).await;
    let ClientEvent::Room { event: RoomEvent::Joined { nick, .. }, .. } = ev else { unreachable!() };
    assert_eq!(nick, "alice~2");
    carol.stop().await;
    wait_for(
        &mut alice,
        "carol leaves",
        |e| matches!(e, ClientEvent::Room { event: RoomEvent::OccupantLeft { nick }, .. } if nick == "alice~2"),
    )
    .await;

    // bob leaves: alice sees it.
    bob.leave(room.clone()).await;
    wait_for(
        &mut alice,
        "bob leaves",
        |e| matches!(e, ClientEvent::Room { event: RoomEvent::OccupantLeft { nick }, .. } if nick == "bob"),
    )
    .await;
    bob.join(room.clone(), "bob", 0).await;
    wait_for(&mut bob, "bob back", joined).await;

    // The server restarts: both come back online and into the room, and
    // talk again.
    restart();
    wait_for(&mut alice, "alice offline", |e| matches!(e, ClientEvent::Offline { .. })).await;
    wait_for(&mut alice, "alice rejoined", joined).await;
    wait_for(&mut bob, "bob rejoined", joined).await;
    alice.send_group(&room, Some("after restart"), None).await;
    wait_for(&mut bob, "message after restart", |e| {
        matches!(e, ClientEvent::Room { event: RoomEvent::Message { message, .. }, .. }
            if message.body.as_deref() == Some("after restart"))
    })
    .await;
    alice.stop().await;
    bob.stop().await;
}
