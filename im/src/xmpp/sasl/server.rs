//! The server side of one SASL exchange ([`ServerSasl`]): PLAIN checked
//! against the stored credentials, SCRAM's server-first and server-final,
//! and an unknown user run to the end like a wrong password.
//!
//! Owns the server's state machine and what it refuses. It must not touch
//! streams or sockets, nor count failed logins: the embedded server does.

use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

use super::scram::{Hash, attributes, ct_eq, random_nonce, unescape_name};
use super::{DEFAULT_ITERATIONS, Failure, Mechanism, ScramKeys, StoredCredentials};

/// What the server sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// `<challenge/>` with this data.
    Challenge(Vec<u8>),
    /// `<success/>` with this additional data; the user is authenticated.
    Success {
        /// The authenticated user (local part).
        user: String,
        /// Additional data (SCRAM's server signature).
        data: Vec<u8>,
    },
}

/// The server side of one SASL exchange.
pub struct ServerSasl {
    mechanism: Mechanism,
    state: ServerState,
}

enum ServerState {
    Start,
    /// Sent server-first.
    SentFirst {
        user: String,
        /// `None` for an unknown user: the exchange runs to the end with a
        /// made-up salt, so a stranger cannot tell unknown users from
        /// wrong passwords.
        keys: Option<ScramKeys>,
        nonce: String,
        auth_prefix: String,
        gs2_header: String,
    },
    Done,
}

impl ServerSasl {
    /// An exchange with `mechanism`. `encrypted` says whether the stream
    /// is under TLS; `allow_plain_unencrypted` lifts PLAIN's TLS rule.
    pub fn new(mechanism: Mechanism, encrypted: bool, allow_plain_unencrypted: bool) -> Result<ServerSasl, Failure> {
        if mechanism == Mechanism::Plain && !encrypted && !allow_plain_unencrypted {
            return Err(Failure::EncryptionRequired);
        }
        Ok(ServerSasl { mechanism, state: ServerState::Start })
    }

    /// The next step for the peer's `data` (the initial response, then
    /// each `<response/>`). `lookup` finds a user's credentials.
    pub fn step(
        &mut self,
        data: &[u8],
        lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    ) -> Result<ServerStep, Failure> {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        match (self.mechanism.hash(), state) {
            (None, ServerState::Start) => plain(data, lookup),
            (Some(hash), ServerState::Start) => {
                let nonce = random_nonce()?;
                let (step, state) = server_first(hash, data, lookup, nonce)?;
                self.state = state;
                Ok(step)
            }
            (Some(hash), ServerState::SentFirst { user, keys, nonce, auth_prefix, gs2_header }) => {
                server_final(hash, data, &user, keys.as_ref(), &nonce, &auth_prefix, &gs2_header)
            }
            _ => Err(Failure::MalformedRequest("exchange already finished")),
        }
    }
}

fn plain(data: &[u8], lookup: &dyn Fn(&str) -> Option<StoredCredentials>) -> Result<ServerStep, Failure> {
    let text = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::MalformedRequest("PLAIN needs authzid NUL user NUL password"));
    };
    if user.is_empty() {
        return Err(Failure::MalformedRequest("empty user"));
    }
    if !authzid.is_empty() && authzid.split('@').next() != Some(user) {
        return Err(Failure::InvalidAuthzid);
    }
    match lookup(user) {
        Some(creds) if creds.verify_password(password) => {
            Ok(ServerStep::Success { user: user.to_string(), data: Vec::new() })
        }
        _ => Err(Failure::NotAuthorized),
    }
}

fn server_first(
    hash: Hash,
    data: &[u8],
    lookup: &dyn Fn(&str) -> Option<StoredCredentials>,
    server_nonce: String,
) -> Result<(ServerStep, ServerState), Failure> {
    let text = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest("not UTF-8"))?;
    // gs2-header: cbind flag, authzid, then the bare message.
    let mut parts = text.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::MalformedRequest("client-first needs a GS2 header"));
    };
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => return Err(Failure::MalformedRequest("channel binding is not offered")),
        _ => return Err(Failure::MalformedRequest("bad GS2 flag")),
    }
    let attrs = attributes(bare).ok_or(Failure::MalformedRequest("client-first"))?;
    let [('n', name), ('r', client_nonce), ..] = attrs[..] else {
        return Err(Failure::MalformedRequest("client-first needs n and r"));
    };
    if attrs.iter().any(|(k, _)| *k == 'm') {
        return Err(Failure::MalformedRequest("mandatory extension not supported"));
    }
    let user = unescape_name(name).ok_or(Failure::MalformedRequest("bad user name escape"))?;
    if user.is_empty()
        || client_nonce.is_empty()
        || !client_nonce.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(Failure::MalformedRequest("empty user or bad nonce"));
    }
    if let Some(z) = authzid.strip_prefix("a=") {
        if unescape_name(z).and_then(|z| z.split('@').next().map(str::to_string)).as_deref() != Some(&user) {
            return Err(Failure::InvalidAuthzid);
        }
    } else if !authzid.is_empty() {
        return Err(Failure::MalformedRequest("bad authzid"));
    }
    let keys = lookup(&user).map(|c| c.keys(hash).clone());
    let (salt, iterations) = match &keys {
        Some(k) => (k.salt.clone(), k.iterations),
        None => (hash.digest(user.as_bytes())[..16].to_vec(), DEFAULT_ITERATIONS),
    };
    let nonce = format!("{client_nonce}{server_nonce}");
    let first = format!("r={nonce},s={},i={iterations}", Base64::encode_string(&salt));
    let gs2_header = format!("{flag},{authzid},");
    let state = ServerState::SentFirst { user, keys, nonce, auth_prefix: format!("{bare},{first}"), gs2_header };
    Ok((ServerStep::Challenge(first.into_bytes()), state))
}

fn server_final(
    hash: Hash,
    data: &[u8],
    user: &str,
    keys: Option<&ScramKeys>,
    nonce: &str,
    auth_prefix: &str,
    gs2_header: &str,
) -> Result<ServerStep, Failure> {
    let text = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest("not UTF-8"))?;
    let proof_at = text.rfind(",p=").ok_or(Failure::MalformedRequest("client-final needs p"))?;
    let without_proof = &text[..proof_at];
    let proof = Base64::decode_vec(&text[proof_at + 3..]).map_err(|_| Failure::IncorrectEncoding)?;
    let attrs = attributes(without_proof).ok_or(Failure::MalformedRequest("client-final"))?;
    let [('c', binding), ('r', r), ..] = attrs[..] else {
        return Err(Failure::MalformedRequest("client-final needs c and r"));
    };
    if Base64::decode_vec(binding).map_err(|_| Failure::IncorrectEncoding)? != gs2_header.as_bytes() {
        return Err(Failure::MalformedRequest("channel binding data does not match the GS2 header"));
    }
    if r != nonce {
        return Err(Failure::MalformedRequest("nonce does not match"));
    }
    let Some(keys) = keys else {
        return Err(Failure::NotAuthorized);
    };
    if proof.len() != hash.len() {
        return Err(Failure::NotAuthorized);
    }
    let auth_message = format!("{auth_prefix},{without_proof}");
    let signature = hash.hmac(&keys.stored_key, auth_message.as_bytes());
    let client_key: Zeroizing<Vec<u8>> = Zeroizing::new(proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect());
    if !ct_eq(&hash.digest(&client_key), &keys.stored_key) {
        return Err(Failure::NotAuthorized);
    }
    let server_signature = hash.hmac(&keys.server_key, auth_message.as_bytes());
    Ok(ServerStep::Success {
        user: user.to_string(),
        data: format!("v={}", Base64::encode_string(&server_signature)).into_bytes(),
    })
}
