//! The task between the member and the pages: the member's events go into
//! the model and out to every connected page; what a page asks for (chat,
//! private chat, a file, leaving) and our own positions go to the member.
//!
//! Owns the member for the life of the web client, the shared model, and
//! the broadcast of updates. It must not touch HTTP (`routes`) or decide
//! how anything is shown (`model`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use lsim_im::group::member::{Member, MemberEvent};
use lsim_im::group::position::Position;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::files::{self, Display};
use crate::model::Model;

/// What a page asks the member to do.
#[derive(Debug)]
pub enum Action {
    /// Chat to everyone (`to` empty) or to those users only.
    Chat {
        /// The text.
        text: String,
        /// Recipients (user names); empty: the whole group.
        to: Vec<String>,
    },
    /// Stream a saved upload to everyone or to those users only.
    File {
        /// Where the upload was saved.
        path: PathBuf,
        /// Recipients; empty: the whole group.
        to: Vec<String>,
    },
    /// Leave the group.
    Leave,
}

/// What the routes share with the relay.
#[derive(Debug)]
pub struct Shared {
    model: Mutex<Model>,
    updates: broadcast::Sender<Arc<str>>,
    /// Where the relay takes actions from.
    pub actions: mpsc::Sender<Action>,
}

/// Updates a slow page may fall behind by before it is sent a fresh snapshot.
const BACKLOG: usize = 4096;

impl Shared {
    /// The shared state of a member called `nick`, and where actions arrive.
    pub fn new(nick: &str) -> (Arc<Shared>, mpsc::Receiver<Action>) {
        let (actions, rx) = mpsc::channel(64);
        let (updates, _) = broadcast::channel(BACKLOG);
        (Arc::new(Shared { model: Mutex::new(Model::new(nick)), updates, actions }), rx)
    }

    /// The model, locked (a poisoned lock is still the model: updates are
    /// whole values, never half applied).
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A snapshot and the updates after it, with none lost or repeated in between.
    pub fn subscribe(&self) -> (Vec<Value>, broadcast::Receiver<Arc<str>>) {
        let m = self.model();
        (m.snapshot(), self.updates.subscribe())
    }

    /// Applies `change` to the model and sends what it returns to every page.
    pub fn publish(&self, change: impl FnOnce(&mut Model) -> Vec<Value>) {
        let mut m = self.model();
        for u in change(&mut m) {
            // No page connected is fine.
            let _ = self.updates.send(Arc::from(u.to_string()));
        }
    }
}

/// How a received file may be shown: from its first bytes and its name.
pub fn sniff(path: &Path, name: &str) -> Display {
    let mut head = Vec::with_capacity(files::SNIFF);
    let read = std::fs::File::open(path).and_then(|f| f.take(files::SNIFF as u64).read_to_end(&mut head));
    match read {
        Ok(_) => files::recognise(name, &head),
        Err(_) => Display::Download,
    }
}

/// Runs the member until it leaves (asked by a page or by `stop`), passing
/// every event to `on_event` too (the terminal's log), and sharing each of
/// our own positions that `positions` brings (`--position`).
pub async fn run(
    mut member: Member,
    shared: Arc<Shared>,
    mut actions: mpsc::Receiver<Action>,
    mut positions: mpsc::Receiver<Position>,
    mut stop: impl std::future::Future<Output = ()> + Unpin,
    mut on_event: impl FnMut(&MemberEvent),
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            a = actions.recv() => match a {
                Some(Action::Chat { text, to }) if to.is_empty() => member.chat(&text).await,
                Some(Action::Chat { text, to }) => member.chat_to(&text, &to).await,
                Some(Action::File { path, to }) => member.send_file_to(&path, &to).await,
                Some(Action::Leave) | None => break,
            },
            Some(p) = positions.recv() => {
                member.share_position(&p).await;
                shared.publish(|m| m.own_position(&p, now_ms()));
            }
            ev = member.next_event() => {
                let Some(ev) = ev else { return };
                on_event(&ev);
                shared.publish(|m| m.apply(&ev, now_ms(), sniff));
            }
            _ = tick.tick() => {
                let rate = member.sending_rate().await;
                shared.publish(|m| m.rate(rate));
            }
            _ = &mut stop => break,
        }
    }
    for ev in member.leave().await.events {
        on_event(&ev);
        shared.publish(|m| m.apply(&ev, now_ms(), sniff));
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
