//! SASL's unit tests: the RFC test vectors, every mechanism against our
//! server, what either side refuses, and the stored credentials' text form.
//!
//! Owns only tests; it must not touch anything outside them.

#![allow(clippy::unwrap_used)]

use super::*;

/// RFC 5802 §5 and RFC 7677 §3: the exchanges with their fixed nonces.
#[test]
fn rfc_test_vectors() {
    let cases = [
        (
            Mechanism::ScramSha1,
            "fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ),
        (
            Mechanism::ScramSha256,
            "rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ),
    ];
    for (mech, cnonce, server_first, client_final, server_final) in cases {
        let mut c = ClientSasl::new(mech, "user", "pencil");
        let first = c.initial_with_nonce(cnonce.to_string());
        assert_eq!(first, format!("n,,n=user,r={cnonce}").into_bytes());
        assert_eq!(String::from_utf8(c.challenge(server_first.as_bytes()).unwrap()).unwrap(), client_final);
        c.success(server_final.as_bytes()).unwrap();
    }
}

fn store(user: &str, password: &str) -> impl Fn(&str) -> Option<StoredCredentials> {
    let creds = StoredCredentials::new(password, 1024).unwrap();
    let user = user.to_string();
    move |u: &str| (u == user).then(|| creds.clone())
}

fn run(
    mech: Mechanism,
    user: &str,
    password: &str,
    lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
) -> Result<String, Failure> {
    let mut c = ClientSasl::new(mech, user, password);
    let mut s = ServerSasl::new(mech, true, false)?;
    let mut input = c.initial()?;
    loop {
        match s.step(&input, lookup)? {
            ServerStep::Challenge(ch) => input = c.challenge(&ch)?,
            ServerStep::Success { user, data } => {
                c.success(&data)?;
                return Ok(user);
            }
        }
    }
}

#[test]
fn every_mechanism_against_our_server() {
    let lookup = store("alice", "correct horse");
    for mech in Mechanism::ALL {
        assert_eq!(run(mech, "alice", "correct horse", &lookup).unwrap(), "alice", "{mech:?}");
        assert_eq!(run(mech, "alice", "wrong", &lookup), Err(Failure::NotAuthorized), "{mech:?}");
        assert_eq!(run(mech, "mallory", "correct horse", &lookup), Err(Failure::NotAuthorized), "{mech:?}");
    }
}

#[test]
fn plain_needs_tls_unless_allowed() {
    assert_eq!(ServerSasl::new(Mechanism::Plain, false, false).err(), Some(Failure::EncryptionRequired));
    assert!(ServerSasl::new(Mechanism::Plain, false, true).is_ok());
    assert!(ServerSasl::new(Mechanism::ScramSha256, false, false).is_ok());
}

#[test]
fn client_refuses_a_server_that_does_not_know_the_password() {
    // A server that answers with a made-up signature is refused.
    let mut c = ClientSasl::new(Mechanism::ScramSha256, "user", "pencil");
    c.initial_with_nonce("abc".into());
    c.challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096").unwrap();
    assert!(matches!(c.success(b"v=AAAA"), Err(Failure::ServerNotAuthenticated(_))));
    // A server that does not extend our nonce, or asks for absurd work.
    let mut c = ClientSasl::new(Mechanism::ScramSha1, "user", "pencil");
    c.initial_with_nonce("abc".into());
    assert!(matches!(c.challenge(b"r=xyz,s=QSXC,i=4096"), Err(Failure::ServerNotAuthenticated(_))));
    let mut c = ClientSasl::new(Mechanism::ScramSha1, "user", "pencil");
    c.initial_with_nonce("abc".into());
    assert!(matches!(c.challenge(b"r=abcd,s=QSXC,i=4000000000"), Err(Failure::ServerNotAuthenticated(_))));
    // Success without a finished exchange.
    let mut c = ClientSasl::new(Mechanism::ScramSha1, "user", "pencil");
    assert!(c.success(b"").is_err());
}

#[test]
fn malformed_client_messages_are_refused() {
    let lookup = store("alice", "pw");
    let bad: [&[u8]; 8] = [
        b"",
        b"n,,",
        b"x,,n=alice,r=abc",
        b"p=tls-unique,,n=alice,r=abc",
        b"n,,r=abc,n=alice",
        b"n,,n=al=ZZice,r=abc",
        b"n,,m=ext,n=alice,r=abc",
        b"\xff\xfe",
    ];
    for input in bad {
        let mut s = ServerSasl::new(Mechanism::ScramSha256, true, false).unwrap();
        assert!(matches!(s.step(input, &lookup), Err(Failure::MalformedRequest(_))), "{input:?}");
    }
    // A proof that is not base64, a wrong nonce, a wrong channel binding.
    for final_msg in ["c=biws,r=WRONG,p=AAAA", "c=eSws,r={n},p=AAAA", "c=biws,r={n},p=!!"] {
        let mut s = ServerSasl::new(Mechanism::ScramSha256, true, false).unwrap();
        let ServerStep::Challenge(ch) = s.step(b"n,,n=alice,r=abc", &lookup).unwrap() else { panic!() };
        let ch = String::from_utf8(ch).unwrap();
        let nonce = &ch[2..ch.find(',').unwrap()];
        let msg = final_msg.replace("{n}", nonce);
        assert!(s.step(msg.as_bytes(), &lookup).is_err(), "{msg}");
    }
    let mut s = ServerSasl::new(Mechanism::Plain, true, false).unwrap();
    assert_eq!(s.step(b"bob\0alice\0pw", &lookup), Err(Failure::InvalidAuthzid));
    let mut s = ServerSasl::new(Mechanism::Plain, true, false).unwrap();
    assert!(matches!(s.step(b"alice\0pw", &lookup), Err(Failure::MalformedRequest(_))));
}

#[test]
fn names_with_separators_are_escaped() {
    let lookup = store("a,b=c", "pw");
    assert_eq!(run(Mechanism::ScramSha1, "a,b=c", "pw", &lookup).unwrap(), "a,b=c");
}

#[test]
fn stored_credentials_round_trip_as_a_line() {
    let creds = StoredCredentials::new("pw", 2048).unwrap();
    let line = creds.to_line();
    assert!(!line.contains("pw "));
    assert_eq!(StoredCredentials::from_line(&line), Some(creds));
    assert_eq!(StoredCredentials::from_line("sha1 x"), None);
    assert_eq!(StoredCredentials::from_line(&line.replace("2048", "0")), None);
}

#[test]
fn base64_on_the_wire() {
    assert_eq!(encode(b""), "=");
    assert_eq!(decode("=").unwrap(), b"");
    assert_eq!(decode(" bi\nws ").unwrap(), b"n,,");
    assert_eq!(decode("!!"), Err(Failure::IncorrectEncoding));
}
