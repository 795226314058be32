//! The invitation code: everything a new member needs to enroll, in one
//! line of text that also fits a QR code (`lsim user invite` prints it,
//! `lsim chat --invite CODE` uses it).
//!
//! ```text
//! "LSIM1" base32( version=1 | user | domain | server | room      (each: len u8, UTF-8)
//!                 | xmpp_pin [32] | keyserver_pin [32] | token [16]
//!                 | expires_s u64 | check [4] )
//! check = SHA-256(everything before it)[..4]
//! ```
//!
//! Base32 (upper case, no padding) keeps the code in QR's alphanumeric
//! mode and survives being read aloud; the check refuses a code with a
//! character changed, dropped or added before anything is sent. The token
//! is a one-time secret: the server keeps only its hash, and the code is
//! spent once the member has set its password with it.
//!
//! Owns the code's format and its bounds. Pure: it must not touch the
//! server's store of invitations (`admin::invites`) or the network.

use lsim_transport::codec::Reader;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What every code starts with.
pub const PREFIX: &str = "LSIM1";
const VERSION: u8 = 1;
/// Bytes of the one-time secret.
pub const TOKEN_LEN: usize = 16;
const CHECK_LEN: usize = 4;
/// The longest code: four strings of at most 255 bytes and the rest.
const MAX_CODE: usize = PREFIX.len() + (1 + 4 * 256 + 32 + 32 + TOKEN_LEN + 8 + CHECK_LEN).div_ceil(5) * 8;

/// What a new member needs to enroll.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The user name it is for (the JID's local part).
    pub user: String,
    /// The XMPP domain.
    pub domain: String,
    /// The XMPP server's address as members reach it (host:port).
    pub server: String,
    /// The room that is the group.
    pub room: String,
    /// SHA-256 of the XMPP server's certificate.
    pub xmpp_pin: [u8; 32],
    /// SHA-256 of the key server's certificate.
    pub keyserver_pin: [u8; 32],
    /// The one-time secret that lets the member set its password.
    pub token: Zeroizing<[u8; TOKEN_LEN]>,
    /// Unix seconds after which the server refuses it.
    pub expires_s: u64,
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("Invite")
            .field("user", &self.user)
            .field("domain", &self.domain)
            .field("server", &self.server)
            .field("room", &self.room)
            .field("expires_s", &self.expires_s)
            .finish_non_exhaustive()
    }
}

/// Why a code cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// Not an lsim invitation at all.
    #[error("not an lsim invitation code (they start with {PREFIX})")]
    NotACode,
    /// A character changed, missing or added: the check does not match.
    #[error("the invitation code is damaged (a character is wrong, missing or extra): copy it again")]
    Damaged,
    /// A later format.
    #[error("the invitation code is of format {0}; this lsim reads format {VERSION}: update lsim")]
    Version(u8),
    /// A field is out of bounds.
    #[error("the invitation code is malformed: {0}")]
    Malformed(&'static str),
}

impl Invite {
    /// The token as the server sees it on the wire (XEP-0401 preauth): hex.
    pub fn token_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(self.token.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The member's JID (user@domain).
    pub fn jid(&self) -> String {
        format!("{}@{}", self.user, self.domain)
    }

    /// The code, as one line of upper-case letters and digits.
    pub fn encode(&self) -> Result<Zeroizing<String>, InviteError> {
        let mut b = Zeroizing::new(vec![VERSION]);
        for (s, what) in [
            (&self.user, "the user name is longer than 255 bytes"),
            (&self.domain, "the domain is longer than 255 bytes"),
            (&self.server, "the server address is longer than 255 bytes"),
            (&self.room, "the room is longer than 255 bytes"),
        ] {
            let len = u8::try_from(s.len()).map_err(|_| InviteError::Malformed(what))?;
            if s.is_empty() {
                return Err(InviteError::Malformed("an empty field"));
            }
            b.push(len);
            b.extend_from_slice(s.as_bytes());
        }
        b.extend_from_slice(&self.xmpp_pin);
        b.extend_from_slice(&self.keyserver_pin);
        b.extend_from_slice(self.token.as_ref());
        b.extend_from_slice(&self.expires_s.to_be_bytes());
        let check = Sha256::digest(&b[..]);
        b.extend_from_slice(&check[..CHECK_LEN]);
        let mut out = Zeroizing::new(String::from(PREFIX));
        out.push_str(&data_encoding::BASE32_NOPAD.encode(&b));
        Ok(out)
    }

    /// Reads a code: case, spaces, dashes and line breaks are forgiven
    /// (it may have been typed, or wrapped by a mail client).
    pub fn decode(code: &str) -> Result<Invite, InviteError> {
        if code.len() > 2 * MAX_CODE {
            return Err(InviteError::Malformed("too long"));
        }
        let clean: Zeroizing<String> = Zeroizing::new(
            code.chars().filter(|c| !c.is_whitespace() && *c != '-').map(|c| c.to_ascii_uppercase()).collect(),
        );
        let body = clean.strip_prefix(PREFIX).ok_or(InviteError::NotACode)?;
        if body.len() > MAX_CODE {
            return Err(InviteError::Malformed("too long"));
        }
        let raw =
            Zeroizing::new(data_encoding::BASE32_NOPAD.decode(body.as_bytes()).map_err(|_| InviteError::Damaged)?);
        if raw.len() < 1 + CHECK_LEN {
            return Err(InviteError::Damaged);
        }
        let (signed, check) = raw.split_at(raw.len() - CHECK_LEN);
        if Sha256::digest(signed)[..CHECK_LEN] != *check {
            return Err(InviteError::Damaged);
        }
        let short = |_| InviteError::Malformed("a field is cut short");
        let mut r = Reader::new(signed);
        let version = r.u8("version").map_err(short)?;
        if version != VERSION {
            return Err(InviteError::Version(version));
        }
        let mut text = |what: &'static str| -> Result<String, InviteError> {
            let len = r.u8(what).map_err(short)?;
            let bytes = r.take(usize::from(len), what).map_err(short)?;
            let s = std::str::from_utf8(bytes).map_err(|_| InviteError::Malformed("a field is not UTF-8"))?;
            if s.is_empty() || s.chars().any(char::is_control) {
                return Err(InviteError::Malformed("a field is empty or holds control characters"));
            }
            Ok(s.to_string())
        };
        let (user, domain, server, room) = (text("user")?, text("domain")?, text("server")?, text("room")?);
        let xmpp_pin = r.array::<32>("xmpp pin").map_err(short)?;
        let keyserver_pin = r.array::<32>("key server pin").map_err(short)?;
        let token = Zeroizing::new(r.array::<TOKEN_LEN>("token").map_err(short)?);
        let expires_s = r.u64("expiry").map_err(short)?;
        r.finish("invitation").map_err(|_| InviteError::Malformed("bytes after the last field"))?;
        Ok(Invite { user, domain, server, room, xmpp_pin, keyserver_pin, token, expires_s })
    }
}

/// SHA-256 of a token, in hex: all the server keeps of it.
pub fn token_hash(token_hex: &str) -> String {
    Sha256::digest(token_hex.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn invite() -> Invite {
        Invite {
            user: "dave".into(),
            domain: "fire.example".into(),
            server: "10.1.0.1:5222".into(),
            room: "lsim@conference.fire.example".into(),
            xmpp_pin: [7; 32],
            keyserver_pin: [9; 32],
            token: Zeroizing::new([0xab; TOKEN_LEN]),
            expires_s: 1_800_000_000,
        }
    }

    #[test]
    fn a_code_reads_back_as_written_and_stays_in_qr_alphanumerics() {
        let code = invite().encode().unwrap();
        assert!(code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()), "{}", code.as_str());
        assert!(code.len() < 300, "{} characters", code.len());
        assert_eq!(Invite::decode(&code).unwrap(), invite());
        // Typed in lower case, in groups, wrapped: the same invitation.
        let sloppy: String = code
            .to_lowercase()
            .as_bytes()
            .chunks(5)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("-");
        assert_eq!(Invite::decode(&format!("  {sloppy}\n")).unwrap(), invite());
    }

    #[test]
    fn every_single_changed_character_is_refused() {
        let code = invite().encode().unwrap();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        for i in PREFIX.len()..code.len() {
            for c in alphabet.chars().step_by(7) {
                let mut s = code.to_string();
                if s.as_bytes()[i] == c as u8 {
                    continue;
                }
                s.replace_range(i..=i, &c.to_string());
                let got = Invite::decode(&s);
                assert!(matches!(got, Err(InviteError::Damaged)), "position {i} to {c}: {got:?}");
            }
        }
        // A character dropped or added: refused too.
        let dropped = format!("{}{}", &code[..20], &code[21..]);
        assert!(Invite::decode(&dropped).is_err());
        let added = format!("{}A{}", &code[..20], &code[20..]);
        assert!(Invite::decode(&added).is_err());
        assert_eq!(Invite::decode("hello").unwrap_err(), InviteError::NotACode);
    }

    #[test]
    fn the_debug_form_never_shows_the_token() {
        let shown = format!("{:?}", invite());
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("abab"), "{shown}");
    }

    proptest! {
        #[test]
        fn decoding_any_text_never_panics(s in ".{0,600}") {
            let _ = Invite::decode(&s);
        }

        #[test]
        fn decoding_any_well_checked_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            let mut b = body;
            let check = Sha256::digest(&b);
            b.extend_from_slice(&check[..CHECK_LEN]);
            let code = format!("{PREFIX}{}", data_encoding::BASE32_NOPAD.encode(&b));
            let _ = Invite::decode(&code);
        }

        #[test]
        fn any_invite_round_trips(user in "[a-z]{1,30}", domain in "[a-z.]{1,60}", server in "[0-9.:]{1,21}",
                                  pins in any::<([u8; 32], [u8; 32])>(), token in any::<[u8; 16]>(), exp in any::<u64>()) {
            let i = Invite { user, domain: domain.clone(), server, room: format!("lsim@conference.{domain}"),
                             xmpp_pin: pins.0, keyserver_pin: pins.1, token: Zeroizing::new(token), expires_s: exp };
            prop_assert_eq!(Invite::decode(&i.encode().unwrap()).unwrap(), i);
        }
    }
}
