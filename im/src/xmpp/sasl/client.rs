//! The client side of one SASL exchange ([`ClientSasl`]): PLAIN's initial
//! response, SCRAM's client-first and client-final, and the check of the
//! server's signature in `<success/>`.
//!
//! Owns the client's state machine. It must not touch streams or sockets:
//! the XMPP client feeds it the decoded bodies and sends what comes out.

use base64ct::{Base64, Encoding};
use zeroize::Zeroizing;

use super::scram::{GS2_HEADER, attributes, ct_eq, escape_name, random_nonce};
use super::{Failure, MAX_ITERATIONS, Mechanism};

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

    pub(super) fn initial_with_nonce(&mut self, nonce: String) -> Vec<u8> {
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
