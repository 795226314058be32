//! Files: ours queued on the sender (for the whole group, or for some
//! members under a file key the key server wraps for each), and received
//! files' events turned into member events, the viewer started on arrival.
//!
//! Owns the offer we announce and the progress throttle. It must not read
//! or write files' envelopes (`group::envelope` and `group::inbox` do) nor
//! announce anything in the room (the running member does).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use lsim_keymgmt::cert::Signer;
use lsim_keymgmt::client::Registration;
use lsim_keymgmt::filekey::{FileKey, Wrap};
use lsim_keymgmt::suite::GroupSeal;
use lsim_transport::Sender;
use lsim_transport::net::Handle;
use lsim_transport::source::FileSource;
use lsim_transport::wire::ObjectKind;

use super::error::NotSent;
use super::{MemberEvent, Viewer};
use crate::group::envelope::Outgoing;
use crate::group::inbox::InboxEvent;
use crate::xmpp::payload::FileOffer;

/// A file for the members `to` only: a fresh file key and the key
/// server's wraps of it for each of them. `None` for the whole group.
pub(super) async fn restrict(
    registration: &Registration,
    group: &str,
    to: &[String],
) -> Result<Option<(Vec<Wrap>, FileKey)>, NotSent> {
    if to.is_empty() {
        return Ok(None);
    }
    let key = FileKey::generate().map_err(NotSent::FileKey)?;
    let wraps = registration.wrap_file_key(group, to, &key).await.map_err(NotSent::KeyServer)?;
    Ok(Some((wraps, key)))
}

/// Queues `path` on the sender (for the members whose wraps are in
/// `restricted`, or for everyone); returns its object id and the offer to
/// announce (a restricted file's offer names its recipients, not the file).
pub(super) async fn send_file(
    sender: &Handle<Sender<GroupSeal>>,
    path: &Path,
    node: u32,
    signer: Arc<Signer>,
    restricted: Option<(Vec<Wrap>, FileKey)>,
) -> Result<(u32, FileOffer), NotSent> {
    let read = |why| NotSent::Read { path: path.to_path_buf(), why };
    let file = std::fs::File::open(path).map_err(read)?;
    let source = FileSource::new(file).map_err(read)?;
    let mut name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "file".into());
    let size = lsim_transport::source::ObjectSource::len(&source);
    let outgoing = match &restricted {
        None => Outgoing::signed(&name, source, signer),
        Some((wraps, key)) => {
            let o = Outgoing::restricted(&name, source, signer, wraps, key).map_err(NotSent::Envelope)?;
            name = match wraps.len() {
                1 => "(a file for one member)".to_string(),
                n => format!("(a file for {n} members)"),
            };
            o
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    sender.with(move |s| {
        let _ = tx.send(s.send(ObjectKind::File, Box::new(outgoing)));
    });
    let object = rx.await.map_err(|_| NotSent::SenderStopped)?.map_err(NotSent::Queue)?;
    let offer =
        FileOffer { id: format!("{node:08x}-{object}"), name, size, sha256: None, node, object: u64::from(object) };
    Ok((object, offer))
}

/// Turns a file event into member events, throttling progress to 5 %
/// steps and starting the viewer on arrival.
pub(super) fn on_file_event(
    ev: InboxEvent,
    viewer: &Viewer,
    progress: &mut HashMap<(u32, u32), u64>,
) -> Vec<MemberEvent> {
    match ev {
        InboxEvent::Started { sender, object, len } => {
            progress.insert((sender, object), 0);
            vec![MemberEvent::FileProgress { sender, object, got: 0, len }]
        }
        InboxEvent::Progress { sender, object, got, len } => {
            let step = (got.saturating_mul(20)) / len.max(1);
            match progress.get_mut(&(sender, object)) {
                Some(last) if step > *last => {
                    *last = step;
                    vec![MemberEvent::FileProgress { sender, object, got, len }]
                }
                _ => Vec::new(),
            }
        }
        InboxEvent::Received { sender, object, name, size, path, from, .. } => {
            progress.remove(&(sender, object));
            let from = from.unwrap_or_default();
            let mut out = vec![MemberEvent::FileReceived { sender, object, from, name, size, path: path.clone() }];
            if let Some(cmd) = viewer.command() {
                match launch(&cmd, &path) {
                    Ok(()) => out.push(MemberEvent::FileShown { path }),
                    Err(e) => out.push(MemberEvent::Error(format!("opening {}: {e}", path.display()))),
                }
            }
            out
        }
        InboxEvent::Failed { sender, object, why } => {
            progress.remove(&(sender, object));
            vec![MemberEvent::FileFailed { sender, object, why }]
        }
        InboxEvent::NotForUs { sender, object } => {
            progress.remove(&(sender, object));
            vec![MemberEvent::FileNotForUs { sender }]
        }
    }
}

/// Starts `cmd path` without waiting for it (a task reaps it).
fn launch(cmd: &[String], path: &Path) -> std::io::Result<()> {
    let Some((program, args)) = cmd.split_first() else { return Ok(()) };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    Ok(())
}
