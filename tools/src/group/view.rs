//! How a member event is shown on the terminal: one line (or a few, for
//! multi-line chat) per event, for the chat client and the group mode of
//! `lsim recv`.
//!
//! Owns the wording of those lines and that nothing from the network
//! reaches the terminal raw (every such text made visible first). It must
//! not touch the member or the network, and prints nothing itself.

use lsim_im::group::member::{MemberEvent, Placement, Via};
use lsim_im::text;
use lsim_im::xmpp::room::Occupant;

use super::clock;

/// How a room occupant is named: its user, with its nick when it differs.
pub(super) fn who_is(o: &Occupant) -> String {
    text::named(&o.user(), &o.nick)
}

/// One chat message as lines: the first after its prefix, the rest
/// indented beneath it; every line made visible (no control character
/// from the network reaches the terminal).
fn chat_lines(prefix: &str, body: &str, suffix: &str) -> String {
    let lines = text::lines(body);
    let indent = " ".repeat(prefix.chars().count().min(40));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&indent);
        }
        out.push_str(line);
    }
    format!("{prefix}{out}{suffix}")
}

/// One line (or a few, for multi-line chat) for an event, as the chat
/// client shows it. Everything that came from the network is made visible
/// text first.
pub(super) fn show(ev: &MemberEvent) -> Option<String> {
    let v = text::visible;
    Some(match ev {
        // Quiet (they come every minute): `/who` lists the latest.
        MemberEvent::Position { .. } => return None,
        MemberEvent::Chat { from, sent_ms, text: body, via, private, placement, history, .. } => {
            let mut before = String::new();
            if let Placement::AfterMissing(n) = placement {
                let s = if *n == 1 { "" } else { "s" };
                before = format!("!! {n} earlier message{s} from {} did not arrive in time\n", v(from));
            }
            let mut marks = String::new();
            if *private {
                marks.push_str(" (private)");
            }
            if *placement == Placement::Late {
                marks.push_str(" (late)");
            }
            if *history {
                marks.push_str(" (history)");
            }
            let via = if *via == Via::Xmpp { " (via room)" } else { "" };
            before + &chat_lines(&format!("[{}] <{}>{marks} ", clock(*sent_ms), v(from)), body, via)
        }
        MemberEvent::Unreadable { from, why, .. } => {
            format!("!! a message from {} could not be read: {}", v(from), v(why))
        }
        MemberEvent::KeyChanged { user, was, now } => format!(
            "!! {}'s key changed (was {was}, now {now}): a new device, or someone else holding {}'s password",
            v(user),
            v(user)
        ),
        MemberEvent::Joined { epoch, params, .. } => {
            format!("-- in the group (epoch {epoch}, {} on {})", v(&params.suite), params.group)
        }
        MemberEvent::Epoch(e) => format!("-- new group key (epoch {e})"),
        MemberEvent::PresenceIn(o) => format!("-- {} is here", who_is(o)),
        MemberEvent::PresenceOut(o) => format!("-- {} left", who_is(o)),
        MemberEvent::FileOffered { from, offer } => {
            format!("-- {} is sending {} ({} bytes)", v(from), v(&offer.name), offer.size)
        }
        MemberEvent::FileSending { path, .. } => format!("-- sending {}", path.display()),
        MemberEvent::FileSent { .. } => "-- file sent (answering repairs)".to_string(),
        MemberEvent::FileNotSent { path, why } => format!("!! could not send {}: {}", path.display(), v(why)),
        MemberEvent::FileProgress { got, len, .. } if *got == 0 || got == len => return None,
        MemberEvent::FileProgress { got, len, .. } => format!("-- receiving: {}%", got * 100 / (*len).max(1)),
        MemberEvent::FileSendProgress { sent, len, .. } => format!("-- sending: {}%", sent * 100 / (*len).max(1)),
        MemberEvent::FileReceived { from, name, size, path, .. } => format!(
            "-- received {} from {} ({size} bytes, signed and verified) -> {}",
            v(name),
            v(from),
            v(&path.display().to_string())
        ),
        MemberEvent::FileFailed { why, .. } => format!("!! a file did not arrive: {}", v(why)),
        MemberEvent::FileDelivered { path, to, .. } => {
            format!("-- {} has {} (signed receipt)", v(to), path.display())
        }
        MemberEvent::FileNotForUs { sender } => format!("-- a file for other members went by (node {sender:08x})"),
        MemberEvent::FileShown { path } => format!("-- opened {}", v(&path.display().to_string())),
        MemberEvent::XmppOffline(e) => format!("!! XMPP lost ({}); chat and files go on over multicast", v(e)),
        MemberEvent::XmppOnline => "-- XMPP back".to_string(),
        MemberEvent::MulticastPresence(nicks) => {
            format!("-- heard on multicast: {}", nicks.iter().map(|n| v(n)).collect::<Vec<_>>().join(", "))
        }
        MemberEvent::RoomJoined(_) => return None,
        MemberEvent::Repairer(Some(nick)) => format!("-- {} repairs for our region", v(nick)),
        MemberEvent::Repairer(None) => "-- no repairer in our region: repairs come from the senders".to_string(),
        MemberEvent::Error(e) => format!("!! {}", v(e)),
        MemberEvent::Left { epoch } => format!("-- left the group (the others moved to epoch {epoch})"),
    })
}

/// One line per shared position for `/who`: whose, where, how long ago,
/// and for a relayed unit who relayed it.
pub(super) fn positions_lines(
    positions: &std::collections::BTreeMap<String, (lsim_im::group::position::Position, String, std::time::Instant)>,
) -> Vec<String> {
    positions
        .iter()
        .map(|(who, (p, from, at))| {
            let via = if p.subject.is_some() { format!(" (via {})", text::visible(from)) } else { String::new() };
            let acc = p.accuracy_m.map_or_else(String::new, |a| format!(" ±{a:.0} m"));
            format!(
                "-- position: {} at {:.5}, {:.5}{acc}, {} s ago{via}",
                text::visible(who),
                p.lat,
                p.lon,
                at.elapsed().as_secs()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hostile_text_never_reaches_the_terminal_raw() {
        use lsim_im::group::member::{MemberEvent, Placement, Via};
        let hostile = "\x1b[2J\x1b]0;pwned\x07\rX\x1b[K<alice> trust me\u{9b}1m\u{202e}\x00\x7f";
        let chat = MemberEvent::Chat {
            id: "1".into(),
            from: format!("bob{hostile}"),
            sent_ms: 0,
            text: format!("line one{hostile}\nline two"),
            via: Via::Multicast,
            private: false,
            placement: Placement::AfterMissing(2),
            history: false,
        };
        let occupant = lsim_im::xmpp::room::Occupant {
            nick: format!("commander{hostile}"),
            jid: Some("bob@fire.example/x".into()),
            role: None,
            payload: None,
        };
        let events = [
            chat,
            MemberEvent::PresenceIn(occupant.clone()),
            MemberEvent::Unreadable { from: hostile.into(), via: Via::Xmpp, why: hostile.into() },
            MemberEvent::FileReceived {
                sender: 1,
                object: 0,
                from: hostile.into(),
                name: format!("map{hostile}.png"),
                size: 1,
                path: format!("/tmp/map{hostile}").into(),
            },
            MemberEvent::XmppOffline(hostile.into()),
            MemberEvent::MulticastPresence(vec![hostile.into()]),
        ];
        for ev in &events {
            let shown = super::show(ev).unwrap();
            assert!(!shown.chars().any(|c| c.is_control() && c != '\n'), "{shown:?}");
        }
        // Multi-line chat: continuation lines are indented under the text, and the
        // nick is shown beside the certified user.
        let shown = super::show(&events[0]).unwrap();
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(lines.len(), 3, "{shown}");
        assert!(lines[0].starts_with("!! 2 earlier messages from bob"), "{shown}");
        assert!(lines[2].starts_with("  ") && lines[2].trim_start() == "line two", "{shown}");
        assert!(super::show(&events[1]).unwrap().starts_with("-- bob (commander\\x1b[2J"));
    }
}
