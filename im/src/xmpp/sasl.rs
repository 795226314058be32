//! SASL for XMPP (RFC 6120 §6): SCRAM-SHA-256 (RFC 7677), SCRAM-SHA-1
//! (RFC 5802) and PLAIN (RFC 4616), client and server side, sans-IO.
//!
//! Owns the mechanism state machines, the stored SCRAM credentials a
//! server keeps instead of passwords, and the failure conditions. It must
//! not touch streams or sockets: callers feed decoded `<auth/>`,
//! `<challenge/>`, `<response/>` and `<success/>` bodies in and send what
//! comes out (base64 encoding on the wire is [`encode`]/[`decode`]).
//!
//! Channel binding (`-PLUS`) is not offered; clients send the `n,,` GS2
//! header. Passwords are used as UTF-8 without SASLprep normalisation
//! (ASCII passwords, the common case, are unaffected).

use base64ct::{Base64, Encoding};
use ring::{digest, hmac, pbkdf2};
use zeroize::Zeroizing;

/// A SASL mechanism lsim speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM with SHA-256 (preferred).
    ScramSha256,
    /// SCRAM with SHA-1.
    ScramSha1,
    /// Cleartext user and password; only over TLS unless allowed.
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first.
    pub const ALL: [Mechanism; 3] = [Mechanism::ScramSha256, Mechanism::ScramSha1, Mechanism::Plain];

    /// The IANA name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// The mechanism called `name`, if lsim speaks it.
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hash(self) -> Option<Hash> {
        match self {
            Mechanism::ScramSha256 => Some(Hash::Sha256),
            Mechanism::ScramSha1 => Some(Hash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

/// A SASL failure condition (RFC 6120 §6.5); [`Failure::condition`] is the
/// element name to send in `<failure/>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Wrong user or password (deliberately the same for both).
    #[error("not authorized (wrong user or password)")]
    NotAuthorized,
    /// Too many failed logins for this user from here, or from this
    /// address: refused unchecked for a while.
    #[error("too many failed logins; try again in a minute")]
    TemporaryAuthFailure,
    /// The peer's message is not what the mechanism defines.
    #[error("malformed SASL message: {0}")]
    MalformedRequest(&'static str),
    /// Bad base64.
    #[error("SASL data is not valid base64")]
    IncorrectEncoding,
    /// The mechanism is not offered.
    #[error("mechanism not offered")]
    InvalidMechanism,
    /// PLAIN without TLS, where that is not allowed.
    #[error("this mechanism needs an encrypted connection")]
    EncryptionRequired,
    /// An authorization identity other than the user.
    #[error("cannot act for another identity")]
    InvalidAuthzid,
    /// The server proved nothing (its signature did not verify) or asked
    /// for an absurd iteration count: we stop before sending anything else.
    #[error("the server failed SCRAM's mutual authentication: {0}")]
    ServerNotAuthenticated(&'static str),
    /// The exchange was cut short.
    #[error("aborted")]
    Aborted,
    /// The system random generator failed.
    #[error("no randomness available")]
    Random,
}

impl Failure {
    /// The RFC 6120 §6.5 condition element for this failure.
    pub fn condition(&self) -> &'static str {
        match self {
            Failure::NotAuthorized | Failure::ServerNotAuthenticated(_) | Failure::Random => "not-authorized",
            Failure::MalformedRequest(_) => "malformed-request",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::EncryptionRequired => "encryption-required",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::Aborted => "aborted",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Base64 for SASL payloads on the wire; an empty payload is `=`.
pub fn encode(data: &[u8]) -> String {
    if data.is_empty() { "=".to_string() } else { Base64::encode_string(data) }
}

/// Decodes a SASL payload (`=` or empty is an empty payload; whitespace
/// is ignored).
pub fn decode(text: &str) -> Result<Vec<u8>, Failure> {
    let text: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if text.is_empty() || text == "=" {
        return Ok(Vec::new());
    }
    Base64::decode_vec(&text).map_err(|_| Failure::IncorrectEncoding)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha1 => 20,
            Hash::Sha256 => 32,
        }
    }
    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Hash::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => hmac::HMAC_SHA256,
        }
    }
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac_alg(), key), data).as_ref().to_vec()
    }
    fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Hash::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Hash::Sha256 => &digest::SHA256,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }
    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Zeroizing<Vec<u8>> {
        let alg = match self {
            Hash::Sha1 => pbkdf2::PBKDF2_HMAC_SHA1,
            Hash::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
        };
        let mut out = Zeroizing::new(vec![0u8; self.len()]);
        // ring refuses zero iterations; callers bound the count first.
        let iterations = std::num::NonZeroU32::new(iterations).unwrap_or(std::num::NonZeroU32::MIN);
        pbkdf2::derive(alg, iterations, salt, password.as_bytes(), &mut out);
        out
    }
}

/// What a server keeps for one user and one hash: never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// The salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramKeys {
    fn derive(hash: Hash, password: &str, salt: Vec<u8>, iterations: u32) -> ScramKeys {
        let salted = hash.salted_password(password, &salt, iterations);
        let client_key = Zeroizing::new(hash.hmac(&salted, b"Client Key"));
        ScramKeys {
            stored_key: hash.digest(&client_key),
            server_key: hash.hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }
}

/// A user's SCRAM credentials for both hashes, as the server stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    /// For SCRAM-SHA-1.
    pub sha1: ScramKeys,
    /// For SCRAM-SHA-256.
    pub sha256: ScramKeys,
}

/// Iterations for new credentials (RFC 7677 asks for at least 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// The most iterations a client computes for a server; more is a denial
/// of service, not security.
pub const MAX_ITERATIONS: u32 = 1_000_000;

impl StoredCredentials {
    /// Derives credentials for `password` with fresh random salts.
    pub fn new(password: &str, iterations: u32) -> Result<StoredCredentials, Failure> {
        let iterations = iterations.clamp(1, MAX_ITERATIONS);
        let mut salt1 = vec![0u8; 16];
        let mut salt256 = vec![0u8; 16];
        getrandom::fill(&mut salt1).map_err(|_| Failure::Random)?;
        getrandom::fill(&mut salt256).map_err(|_| Failure::Random)?;
        Ok(StoredCredentials {
            sha1: ScramKeys::derive(Hash::Sha1, password, salt1, iterations),
            sha256: ScramKeys::derive(Hash::Sha256, password, salt256, iterations),
        })
    }

    /// Checks a cleartext password (PLAIN) against the SHA-256 keys.
    pub fn verify_password(&self, password: &str) -> bool {
        let k = &self.sha256;
        let derived = ScramKeys::derive(Hash::Sha256, password, k.salt.clone(), k.iterations);
        ct_eq(&derived.stored_key, &k.stored_key)
    }

    fn keys(&self, hash: Hash) -> &ScramKeys {
        match hash {
            Hash::Sha1 => &self.sha1,
            Hash::Sha256 => &self.sha256,
        }
    }

    /// One line of text: `sha1 SALT ITER STORED SERVER sha256 SALT ITER
    /// STORED SERVER`, binary fields in base64. For user store files.
    pub fn to_line(&self) -> String {
        let one = |name: &str, k: &ScramKeys| {
            format!(
                "{name} {} {} {} {}",
                Base64::encode_string(&k.salt),
                k.iterations,
                Base64::encode_string(&k.stored_key),
                Base64::encode_string(&k.server_key)
            )
        };
        format!("{} {}", one("sha1", &self.sha1), one("sha256", &self.sha256))
    }

    /// Parses [`StoredCredentials::to_line`]'s output.
    pub fn from_line(line: &str) -> Option<StoredCredentials> {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        let keys = |f: &[&str], hash: Hash| -> Option<ScramKeys> {
            let k = ScramKeys {
                salt: Base64::decode_vec(f[0]).ok()?,
                iterations: f[1].parse().ok().filter(|i| (1..=MAX_ITERATIONS).contains(i))?,
                stored_key: Base64::decode_vec(f[2]).ok()?,
                server_key: Base64::decode_vec(f[3]).ok()?,
            };
            (k.stored_key.len() == hash.len() && k.server_key.len() == hash.len() && !k.salt.is_empty()).then_some(k)
        };
        if f.len() != 10 || f[0] != "sha1" || f[5] != "sha256" {
            return None;
        }
        Some(StoredCredentials { sha1: keys(&f[1..5], Hash::Sha1)?, sha256: keys(&f[6..10], Hash::Sha256)? })
    }
}

/// Constant-time equality (lengths are public).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

fn random_nonce() -> Result<String, Failure> {
    let mut raw = [0u8; 18];
    getrandom::fill(&mut raw).map_err(|_| Failure::Random)?;
    Ok(Base64::encode_string(&raw))
}

/// `=` and `,` escaped in a SCRAM user name (RFC 5802 §5.1).
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=3D") => out.push('='),
            Some("=2C") => out.push(','),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The `k=value` attributes of a SCRAM message, in order.
fn attributes(msg: &str) -> Option<Vec<(char, &str)>> {
    msg.split(',')
        .map(|part| {
            let mut chars = part.chars();
            let key = chars.next()?;
            (key.is_ascii_alphabetic() && chars.next() == Some('=')).then(|| (key, &part[2..]))
        })
        .collect()
}

const GS2_HEADER: &str = "n,,";

// ---------------------------------------------------------------- client

/// The client side of one SASL exchange.
pub struct ClientSasl {
    mechanism: Mechanism,
    user: String,
    password: Zeroizing<String>,
    state: ClientState,
}

enum ClientState {
    Start,
    /// Sent client-first with this nonce and bare message.
    SentFirst {
        nonce: String,
        first_bare: String,
    },
    /// Sent client-final; expecting `v=` with this signature.
    SentFinal {
        server_signature: Vec<u8>,
    },
    Done,
}

impl ClientSasl {
    /// An exchange for `user` (the JID's local part) with `password`.
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> ClientSasl {
        ClientSasl {
            mechanism,
            user: user.to_string(),
            password: Zeroizing::new(password.to_string()),
            state: ClientState::Start,
        }
    }

    /// The mechanism.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The initial response to put in `<auth/>`.
    pub fn initial(&mut self) -> Result<Vec<u8>, Failure> {
        match self.mechanism {
            Mechanism::Plain => {
                self.state = ClientState::Done;
                Ok(format!("\0{}\0{}", self.user, self.password.as_str()).into_bytes())
            }
            Mechanism::ScramSha1 | Mechanism::ScramSha256 => {
                let nonce = random_nonce()?;
                Ok(self.initial_with_nonce(nonce))
            }
        }
    }

    fn initial_with_nonce(&mut self, nonce: String) -> Vec<u8> {
        let first_bare = format!("n={},r={nonce}", escape_name(&self.user));
        let msg = format!("{GS2_HEADER}{first_bare}");
        self.state = ClientState::SentFirst { nonce, first_bare };
        msg.into_bytes()
    }

    /// The response to a `<challenge/>`.
    pub fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let Some(hash) = self.mechanism.hash() else {
            return Err(Failure::MalformedRequest("PLAIN has no challenge"));
        };
        let ClientState::SentFirst { nonce, first_bare } = std::mem::replace(&mut self.state, ClientState::Done) else {
            return Err(Failure::MalformedRequest("unexpected challenge"));
        };
        let server_first = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest("not UTF-8"))?;
        let attrs = attributes(server_first).ok_or(Failure::MalformedRequest("server-first"))?;
        let [('r', full_nonce), ('s', salt), ('i', iterations), ..] = attrs[..] else {
            return Err(Failure::MalformedRequest("server-first needs r, s, i"));
        };
        if !full_nonce.starts_with(&nonce) || full_nonce.len() == nonce.len() {
            return Err(Failure::ServerNotAuthenticated("server nonce does not extend ours"));
        }
        let salt = Base64::decode_vec(salt).map_err(|_| Failure::IncorrectEncoding)?;
        let iterations: u32 = iterations.parse().map_err(|_| Failure::MalformedRequest("iteration count"))?;
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(Failure::ServerNotAuthenticated("iteration count out of range"));
        }
        let salted = hash.salted_password(&self.password, &salt, iterations);
        let without_proof = format!("c={},r={full_nonce}", Base64::encode_string(GS2_HEADER.as_bytes()));
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let client_key = Zeroizing::new(hash.hmac(&salted, b"Client Key"));
        let stored_key = hash.digest(&client_key);
        let signature = hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = Zeroizing::new(hash.hmac(&salted, b"Server Key"));
        self.state = ClientState::SentFinal { server_signature: hash.hmac(&server_key, auth_message.as_bytes()) };
        Ok(format!("{without_proof},p={}", Base64::encode_string(&proof)).into_bytes())
    }

    /// Checks the additional data of `<success/>` (for SCRAM, the server's
    /// signature: a server that cannot produce it does not know our
    /// credentials, so success from it is refused).
    pub fn success(&mut self, data: &[u8]) -> Result<(), Failure> {
        match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::Done if self.mechanism == Mechanism::Plain => Ok(()),
            ClientState::SentFinal { server_signature } => {
                let text = std::str::from_utf8(data).map_err(|_| Failure::MalformedRequest("not UTF-8"))?;
                let attrs = attributes(text).ok_or(Failure::MalformedRequest("server-final"))?;
                match attrs.first() {
                    Some(('v', v)) => {
                        let v = Base64::decode_vec(v).map_err(|_| Failure::IncorrectEncoding)?;
                        if ct_eq(&v, &server_signature) {
                            Ok(())
                        } else {
                            Err(Failure::ServerNotAuthenticated("server signature does not verify"))
                        }
                    }
                    Some(('e', _)) => Err(Failure::NotAuthorized),
                    _ => Err(Failure::ServerNotAuthenticated("no server signature")),
                }
            }
            _ => Err(Failure::ServerNotAuthenticated("success before the exchange finished")),
        }
    }
}

// ---------------------------------------------------------------- server

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

#[cfg(test)]
mod tests {
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
}
