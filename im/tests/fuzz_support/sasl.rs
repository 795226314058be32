//! SASL under fuzzing: a user store of one, and a whole SCRAM exchange
//! with one of its four messages mutated.
//!
//! Owns that exchange and its checks. It must not hold properties
//! (`fuzz.rs` does).

use lsim_im::xmpp::sasl::{ClientSasl, Mechanism, ServerSasl, ServerStep, StoredCredentials};

use lsim_testsupport::mutate::{Mutation, mutate};

pub fn creds() -> &'static StoredCredentials {
    static C: std::sync::OnceLock<StoredCredentials> = std::sync::OnceLock::new();
    C.get_or_init(|| StoredCredentials::new("pencil", 1).unwrap())
}

pub fn lookup(user: &str) -> Option<StoredCredentials> {
    (user == "alice").then(|| creds().clone())
}

/// An iteration count the client would spend long on (up to the
/// protocol's 1e6): skipped so the tests stay fast, not because it is wrong.
pub fn costly(server_first: &[u8]) -> bool {
    let s = String::from_utf8_lossy(server_first);
    s.split(',').filter_map(|p| p.strip_prefix("i=")).any(|i| i.parse::<u32>().is_ok_and(|i| i > 5000))
}

/// Runs a SCRAM exchange with message `which` (0: client-first, 1:
/// server-first, 2: client-final, 3: server-final) mutated.
pub fn scram(mech: Mechanism, which: u8, ms: &[Mutation]) {
    let mut client = ClientSasl::new(mech, "alice", "pencil");
    let mut server = ServerSasl::new(mech, true, false).unwrap();
    let maybe = |n: u8, b: Vec<u8>| if n == which { mutate(b, ms) } else { b };
    let Ok(first) = client.initial() else { return };
    let Ok(step) = server.step(&maybe(0, first), &lookup) else { return };
    let ServerStep::Challenge(sf) = step else { return };
    let sf = maybe(1, sf);
    if costly(&sf) {
        return;
    }
    let Ok(cf) = client.challenge(&sf) else { return };
    let Ok(step) = server.step(&maybe(2, cf), &lookup) else { return };
    let ServerStep::Success { user, data } = step else { return };
    assert_eq!(user, "alice");
    let _ = client.success(&maybe(3, data));
    // The exchange is over: anything more is refused.
    assert!(server.step(b"more", &lookup).is_err());
}
