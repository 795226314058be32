//! Text from the network made fit to show: chat, nicks, user names, file
//! names and reasons come from other members and servers, and a terminal
//! obeys the control characters in them (`ESC [ 2 J` clears the screen, a
//! carriage return lets a line overwrite its own `<sender>` prefix). Every
//! control character is shown as a visible escape instead; so are the
//! Unicode bidirectional overrides, which reorder what a line appears to say.
//!
//! Owns only the rendering of untrusted text. It must not decide what is
//! trusted (signatures do) or drop anything: what was sent stays readable.

/// `s` with every control character (C0, DEL, C1) and bidirectional
/// override written as a visible escape (`\x1b`, `\u{202e}`), so that
/// printing it moves no cursor and changes no terminal state. Line ends
/// are escaped too: the result is one line.
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        push_visible(&mut out, c);
    }
    out
}

/// `s` as lines to show one under another: split at its line ends (`\n`,
/// `\r\n`), each line made [`visible`]. A trailing line end adds no empty line.
pub fn lines(s: &str) -> Vec<String> {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.split('\n').map(|l| visible(l.strip_suffix('\r').unwrap_or(l))).collect()
}

/// How a member is named: its certified user name, with the nick it chose
/// beside it when the two differ (`bob (commander)`).
pub fn named(user: &str, nick: &str) -> String {
    if user == nick || nick.is_empty() { visible(user) } else { format!("{} ({})", visible(user), visible(nick)) }
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

fn push_visible(out: &mut String, c: char) {
    use std::fmt::Write;
    let _ = match c {
        '\n' => write!(out, "\\n"),
        '\r' => write!(out, "\\r"),
        '\t' => write!(out, "\\t"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => write!(out, "\\x{:02x}", c as u32),
        c if ('\u{80}'..='\u{9f}').contains(&c) || is_bidi_control(c) => write!(out, "\\u{{{:x}}}", c as u32),
        c => {
            out.push(c);
            Ok(())
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        assert_eq!(visible("fire\x1b[2Jcleared"), "fire\\x1b[2Jcleared");
        assert_eq!(visible("\x1b]0;owned\x07"), "\\x1b]0;owned\\x07");
        assert_eq!(visible("x\r\x1b[K<alice> hi"), "x\\r\\x1b[K<alice> hi");
        assert_eq!(visible("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(visible("abc\u{202e}gpj.exe"), "abc\\u{202e}gpj.exe");
        assert_eq!(visible("Grüße, 火事 🔥"), "Grüße, 火事 🔥");
    }

    #[test]
    fn multi_line_text_is_split_at_line_ends() {
        assert_eq!(lines("one\r\ntwo\nthree\n"), ["one", "two", "three"]);
        assert_eq!(lines("a\rb"), ["a\\rb"]);
        assert_eq!(lines(""), [""]);
    }

    #[test]
    fn members_are_named_by_user_with_their_nick_when_it_differs() {
        assert_eq!(named("bob", "bob"), "bob");
        assert_eq!(named("bob", "commander"), "bob (commander)");
        assert_eq!(named("bob", "\x1b[2J"), "bob (\\x1b[2J)");
    }

    proptest! {
        #[test]
        fn nothing_shown_holds_a_control_character(s in any::<String>()) {
            for shown in std::iter::once(visible(&s)).chain(lines(&s)) {
                prop_assert!(!shown.chars().any(|c| c.is_control() || is_bidi_control(c)), "{shown:?}");
            }
        }
    }
}
