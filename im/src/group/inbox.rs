//! Files arriving on the transport: each `File` object from the receiver
//! goes through an [`Incoming`] envelope into a [`Landing`], and only a
//! complete, verified file reaches its final name.
//!
//! Owns the files in progress, keyed by (sender, object). It takes the
//! receiver's events and returns what happened to files; it must not
//! touch sockets, keys, progress display or what is done with a file.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use lsim_transport::ReceiverEvent;
use lsim_transport::wire::ObjectKind;

use ed25519_dalek::VerifyingKey;

use super::envelope::{Incoming, NotForUs, Received};
use super::landing::Landing;
use super::signed::now_ms;
use lsim_keymgmt::client::FileKeyOpener;

/// What happened to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxEvent {
    /// A file began arriving.
    Started {
        /// Sending node.
        sender: u32,
        /// Transport object id.
        object: u32,
        /// Its length on the wire (envelope included).
        len: u64,
    },
    /// More of it arrived.
    Progress {
        /// Sending node.
        sender: u32,
        /// Transport object id.
        object: u32,
        /// Bytes so far.
        got: u64,
        /// Of this many.
        len: u64,
    },
    /// It is complete, verified and under its final name.
    Received {
        /// Sending node.
        sender: u32,
        /// Transport object id.
        object: u32,
        /// The name the sender gave.
        name: String,
        /// Size in bytes.
        size: u64,
        /// Where it landed.
        path: PathBuf,
        /// The member whose signature it carries, verified (group mode).
        from: Option<String>,
        /// It was for some members only (us among them).
        restricted: bool,
    },
    /// It is for other members only (a restricted file whose key was not
    /// wrapped for us): dropped, nothing written.
    NotForUs {
        /// Sending node.
        sender: u32,
        /// Transport object id.
        object: u32,
    },
    /// It will not arrive; nothing was left under a final name.
    Failed {
        /// Sending node.
        sender: u32,
        /// Transport object id.
        object: u32,
        /// Why.
        why: String,
    },
}

struct InFile {
    landing: Landing,
    incoming: Incoming<BufWriter<File>>,
    len: u64,
    got: u64,
}

/// The files in progress in one download directory.
pub struct Inbox {
    dir: PathBuf,
    overwrite: bool,
    /// Group mode: files must be signed by a member this key server certified.
    signers: Option<VerifyingKey>,
    /// Opens restricted files for us (group mode).
    keys: Option<FileKeyOpener>,
    /// Signers whose files are refused (revoked by the key server).
    refuse: Option<Refuse>,
    files: HashMap<(u32, u32), InFile>,
}

/// Says whether a signer's files are refused.
pub type Refuse = Box<dyn Fn(&str) -> bool + Send>;

impl Inbox {
    /// Files land in `dir`; an existing file is replaced only if
    /// `overwrite` (otherwise the new one gets a free name).
    pub fn new(dir: &Path, overwrite: bool) -> Inbox {
        // Partial files of an earlier receiver here that was killed mid-file.
        Landing::sweep_stale(dir);
        Inbox { dir: dir.to_path_buf(), overwrite, signers: None, keys: None, refuse: None, files: HashMap::new() }
    }

    /// Files signed by a user `refuse` names (revoked) are refused like
    /// forged ones: nothing is left under a final name.
    pub fn refusing(mut self, refuse: Refuse) -> Inbox {
        self.refuse = Some(refuse);
        self
    }

    /// Restricted files are opened with the key `open` finds for us among
    /// their wraps; without it, or when it finds none, they are
    /// [`InboxEvent::NotForUs`].
    pub fn with_file_keys(mut self, open: FileKeyOpener) -> Inbox {
        self.keys = Some(open);
        self
    }

    /// Group mode: a file is kept only if a member certified by the key
    /// server whose key is `server` signed it; anything else (unsigned,
    /// forged by another member, a stranger's certificate) is refused and
    /// nothing is left under a final name.
    pub fn signed_by(mut self, server: VerifyingKey) -> Inbox {
        self.signers = Some(server);
        self
    }

    /// The signer's name, if the policy holds.
    fn check(&self, r: &Received) -> Result<Option<String>, String> {
        let Some(server) = &self.signers else { return Ok(None) };
        let sig = r.signature.as_ref().ok_or_else(|| format!("{}: refused: not signed by its sender", r.name))?;
        match sig.verify(server, now_ms()) {
            Ok(user) if self.refuse.as_ref().is_some_and(|r| r(user)) => {
                Err(format!("{}: refused: signed by {user}, whose certificate the key server revoked", r.name))
            }
            Ok(user) => Ok(Some(user.to_string())),
            Err(e) => Err(format!("{}: refused: {e}", r.name)),
        }
    }

    /// Files in progress.
    pub fn in_progress(&self) -> usize {
        self.files.len()
    }

    /// Handles one receiver event; events about other kinds of objects
    /// give `None`.
    pub fn handle(&mut self, e: &ReceiverEvent) -> Option<InboxEvent> {
        match *e {
            ReceiverEvent::ObjectStarted { sender, object, kind: ObjectKind::File, len } => {
                match Landing::create(&self.dir, &format!("{sender:08x}-{object}")) {
                    Ok((landing, f)) => {
                        let out = BufWriter::new(f);
                        let incoming = match &self.keys {
                            Some(open) => Incoming::with_keys(out, open.clone()),
                            None => Incoming::new(out),
                        };
                        self.files.insert((sender, object), InFile { landing, incoming, len, got: 0 });
                        Some(InboxEvent::Started { sender, object, len })
                    }
                    Err(err) => Some(InboxEvent::Failed {
                        sender,
                        object,
                        why: format!("cannot create a file in {}: {err}", self.dir.display()),
                    }),
                }
            }
            ReceiverEvent::ObjectProgress { sender, object, got } => {
                // Symbols held, decoded or not: ahead of the bytes written.
                let f = self.files.get(&(sender, object))?;
                Some(InboxEvent::Progress { sender, object, got: got.max(f.got), len: f.len })
            }
            ReceiverEvent::ObjectData { sender, object, ref data, .. } => {
                let f = self.files.get_mut(&(sender, object))?;
                f.got += data.len() as u64;
                match f.incoming.push(data) {
                    Ok(()) => Some(InboxEvent::Progress { sender, object, got: f.got, len: f.len }),
                    Err(err) => {
                        if let Some(f) = self.files.remove(&(sender, object)) {
                            f.landing.abandon();
                        }
                        if NotForUs::is(&err) {
                            return Some(InboxEvent::NotForUs { sender, object });
                        }
                        Some(InboxEvent::Failed { sender, object, why: err.to_string() })
                    }
                }
            }
            ReceiverEvent::ObjectComplete { sender, object } => {
                let f = self.files.remove(&(sender, object))?;
                let finished =
                    f.incoming.finish().and_then(|(r, w)| Ok((r, w.into_inner().map_err(|e| e.into_error())?)));
                match finished {
                    Ok((r, file)) => match self.check(&r) {
                        Err(why) => {
                            f.landing.abandon();
                            Some(InboxEvent::Failed { sender, object, why })
                        }
                        Ok(from) => match f.landing.commit(file, &r.name, self.overwrite) {
                            Ok(path) => {
                                let (name, size, restricted) = (r.name, r.size, r.restricted);
                                Some(InboxEvent::Received { sender, object, name, size, path, from, restricted })
                            }
                            Err(err) => Some(InboxEvent::Failed { sender, object, why: format!("{}: {err}", r.name) }),
                        },
                    },
                    Err(err) => {
                        f.landing.abandon();
                        Some(InboxEvent::Failed { sender, object, why: err.to_string() })
                    }
                }
            }
            ReceiverEvent::ObjectLost { sender, object } => {
                let f = self.files.remove(&(sender, object))?;
                f.landing.abandon();
                Some(InboxEvent::Failed { sender, object, why: "lost: the sender no longer has it".into() })
            }
            _ => None,
        }
    }

    /// Gives up every file in progress (the sender is gone); nothing is
    /// left under a final name.
    pub fn abandon_all(&mut self) -> Vec<InboxEvent> {
        self.files
            .drain()
            .map(|((sender, object), f)| {
                f.landing.abandon();
                InboxEvent::Failed { sender, object, why: "abandoned: the sender went quiet".into() }
            })
            .collect()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        for (_, f) in self.files.drain() {
            f.landing.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::group::envelope::Outgoing;
    use lsim_transport::source::ObjectSource;

    fn envelope(name: &str, content: &[u8]) -> Vec<u8> {
        let mut out = Outgoing::new(name, content.to_vec());
        let mut bytes = vec![0u8; out.len() as usize];
        out.read_at(0, &mut bytes).unwrap();
        bytes
    }

    #[test]
    fn a_file_lands_only_when_complete_and_a_lost_one_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("lsim-inbox-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut inbox = Inbox::new(&dir, false);
        let bytes = envelope("../../etc/map.png", b"a picture");
        let start =
            ReceiverEvent::ObjectStarted { sender: 1, object: 7, kind: ObjectKind::File, len: bytes.len() as u64 };
        assert!(matches!(inbox.handle(&start), Some(InboxEvent::Started { .. })));
        let (a, b) = bytes.split_at(5);
        inbox.handle(&ReceiverEvent::ObjectData { sender: 1, object: 7, offset: 0, data: a.to_vec() });
        // Nothing under a final name while incomplete.
        let visible = |d: &Path| {
            std::fs::read_dir(d)
                .unwrap()
                .filter(|e| !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'))
                .count()
        };
        assert_eq!(visible(&dir), 0);
        inbox.handle(&ReceiverEvent::ObjectData { sender: 1, object: 7, offset: 5, data: b.to_vec() });
        let done = inbox.handle(&ReceiverEvent::ObjectComplete { sender: 1, object: 7 });
        let Some(InboxEvent::Received { path, size, .. }) = done else { panic!("{done:?}") };
        assert_eq!(size, 9);
        assert_eq!(path, dir.join("map.png"));
        assert_eq!(std::fs::read(&path).unwrap(), b"a picture");

        let start = ReceiverEvent::ObjectStarted { sender: 2, object: 1, kind: ObjectKind::File, len: 100 };
        inbox.handle(&start);
        let partial = envelope("half.txt", &[7; 100])[..20].to_vec();
        assert!(matches!(
            inbox.handle(&ReceiverEvent::ObjectData { sender: 2, object: 1, offset: 0, data: partial }),
            Some(InboxEvent::Progress { got: 20, .. })
        ));
        assert!(matches!(
            inbox.handle(&ReceiverEvent::ObjectLost { sender: 2, object: 1 }),
            Some(InboxEvent::Failed { .. })
        ));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "only the complete file remains");
        assert_eq!(inbox.in_progress(), 0);
        // Chat objects are not files.
        let chat = ReceiverEvent::ObjectStarted { sender: 3, object: 1, kind: ObjectKind::Chat, len: 10 };
        assert_eq!(inbox.handle(&chat), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
