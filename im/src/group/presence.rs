//! The key server's presence in the room: it publishes the group's
//! parameters in its own room presence (so a member that joins the room
//! learns where to register), and it watches the room, because room
//! presence is group presence: a member whose presence is gone for longer
//! than a grace period is removed from the key group, and the rest are
//! rekeyed.
//!
//! Owns the mapping from room occupants to key-server users (the real JID's
//! local part when the room shows it, the nick otherwise) and the grace
//! timers. It must not decide keys: eviction is the key server's
//! [`KeyServer::evict`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use lsim_keymgmt::server::KeyServer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::xmpp::client::{Client, ClientConfig, ClientEvent};
use crate::xmpp::jid::Jid;
use crate::xmpp::payload::{GroupParams, Payload};
use crate::xmpp::room::RoomEvent;

/// How the key server sits in the room.
#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// The key server's own XMPP login.
    pub xmpp: ClientConfig,
    /// The room that is the group.
    pub room: Jid,
    /// Its nick there.
    pub nick: String,
    /// The key group the room stands for.
    pub group: String,
    /// What it publishes.
    pub params: GroupParams,
    /// How long a member may be out of the room before it is removed.
    pub grace: Duration,
}

/// What the presence task did (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenceEvent {
    /// In the room, parameters published.
    Published,
    /// A member was out of the room past the grace period and was removed;
    /// the group moved to `epoch`.
    Evicted {
        /// The user.
        user: String,
        /// The new epoch.
        epoch: u32,
    },
    /// XMPP is down: no evictions until it is back (absence cannot be told
    /// from our own outage).
    Blind(String),
    /// Who is in the room now, as (nick, user), sorted by nick; sent after
    /// each (re)join and when it changes, and dropped when nobody reads the events.
    Present(Vec<(String, String)>),
    /// Something failed.
    Error(String),
}

impl std::fmt::Display for PresenceEvent {
    /// One sentence for the server's log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PresenceEvent::Published => write!(f, "in the room; the group's parameters are published"),
            PresenceEvent::Evicted { user, epoch } => write!(
                f,
                "{} was out of the room past the grace period: removed from the group, the rest moved to epoch {epoch}",
                crate::text::visible(user)
            ),
            PresenceEvent::Blind(why) => {
                write!(f, "lost the XMPP server ({}): no member is removed until it is back", crate::text::visible(why))
            }
            PresenceEvent::Present(p) if p.is_empty() => write!(f, "no member in the room"),
            PresenceEvent::Present(p) => {
                let names: Vec<String> = p.iter().map(|(nick, user)| crate::text::named(user, nick)).collect();
                write!(f, "in the room: {}", names.join(", "))
            }
            PresenceEvent::Error(e) => write!(f, "{}", crate::text::visible(e)),
        }
    }
}

/// The running presence task.
pub struct KeyServerPresence {
    /// What it does.
    pub events: mpsc::Receiver<PresenceEvent>,
    task: JoinHandle<()>,
}

impl KeyServerPresence {
    /// Joins the room, publishes the parameters and starts watching.
    pub fn start(cfg: PresenceConfig, keys: Arc<KeyServer>) -> KeyServerPresence {
        let (tx, rx) = mpsc::channel(256);
        let task = tokio::spawn(run(cfg, keys, tx));
        KeyServerPresence { events: rx, task }
    }

    /// Stops it (the client leaves the room).
    pub fn stop(self) {
        self.task.abort();
    }
}

async fn run(cfg: PresenceConfig, keys: Arc<KeyServer>, events: mpsc::Sender<PresenceEvent>) {
    let mut client = Client::spawn(cfg.xmpp.clone());
    client.join(cfg.room.clone(), &cfg.nick, 0).await;
    client.set_room_payload(cfg.room.clone(), Some(Payload::Group(cfg.params.clone()).to_element())).await;
    // Occupant nick -> user, for those present.
    let mut present: BTreeMap<String, String> = BTreeMap::new();
    // Users seen in the room since start, and when each went missing.
    let mut known: BTreeSet<String> = BTreeSet::new();
    let mut missing: BTreeMap<String, Instant> = BTreeMap::new();
    let mut seeing = false;
    let mut shown: Vec<(String, String)> = Vec::new();
    loop {
        let now_present: Vec<(String, String)> = present.iter().map(|(n, u)| (n.clone(), u.clone())).collect();
        if now_present != shown {
            shown = now_present.clone();
            // Informational: never wait for a reader (an owner that does not
            // read must not stall evictions).
            let _ = events.try_send(PresenceEvent::Present(now_present));
        }
        let next_due = missing.values().min().map(|t| *t + cfg.grace);
        let timer = async {
            match next_due {
                Some(t) if seeing => tokio::time::sleep_until(t).await,
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            ev = client.next_event() => {
                let Some(ev) = ev else { return };
                match ev {
                    ClientEvent::Room { event: RoomEvent::Joined { occupants, .. }, .. } => {
                        seeing = true;
                        present = occupants
                            .iter()
                            .filter(|o| o.nick != cfg.nick)
                            .map(|o| (o.nick.clone(), o.user()))
                            .collect();
                        let now_in: BTreeSet<String> = present.values().cloned().collect();
                        // Whoever we knew and is not back starts (or keeps) its grace.
                        for user in known.difference(&now_in) {
                            missing.entry(user.clone()).or_insert_with(Instant::now);
                        }
                        for user in &now_in {
                            missing.remove(user);
                        }
                        known.extend(now_in);
                        let _ = events.send(PresenceEvent::Published).await;
                        // Say who is here after every (re)join, changed or not.
                        shown.clear();
                    }
                    ClientEvent::Room { event: RoomEvent::OccupantJoined(o) | RoomEvent::OccupantChanged(o), .. }
                        if o.nick != cfg.nick =>
                    {
                        let user = o.user();
                        missing.remove(&user);
                        known.insert(user.clone());
                        present.insert(o.nick.clone(), user);
                    }
                    ClientEvent::Room { event: RoomEvent::OccupantLeft { nick }, .. } => {
                        if let Some(user) = present.remove(&nick)
                            && !present.values().any(|u| *u == user)
                        {
                            missing.insert(user, Instant::now());
                        }
                    }
                    ClientEvent::Offline { error, .. } => {
                        seeing = false;
                        let _ = events.send(PresenceEvent::Blind(error)).await;
                    }
                    ClientEvent::Room { event: RoomEvent::Left, .. } => seeing = false,
                    // Resumed (XEP-0198): still in the room, and what happened
                    // there meanwhile is being delivered.
                    ClientEvent::Online { resumed: true, .. } => seeing = true,
                    ClientEvent::Stopped { error } => {
                        let _ = events.send(PresenceEvent::Error(error.unwrap_or_else(|| "stopped".into()))).await;
                        return;
                    }
                    _ => {}
                }
            }
            () = timer => {
                let now = Instant::now();
                let due: Vec<String> =
                    missing.iter().filter(|(_, t)| **t + cfg.grace <= now).map(|(u, _)| u.clone()).collect();
                for user in due {
                    missing.remove(&user);
                    known.remove(&user);
                    match keys.evict_absent(&cfg.group, &user).await {
                        Ok(Some(epoch)) => {
                            let _ = events.send(PresenceEvent::Evicted { user, epoch }).await;
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = events.send(PresenceEvent::Error(format!("evicting {user}: {e}"))).await;
                        }
                    }
                }
            }
        }
    }
}
