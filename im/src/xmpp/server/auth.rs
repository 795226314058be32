//! SASL on a negotiating connection, under the login guard: each step of
//! an exchange, its success or failure, and the guard's word on every user
//! name the client names (`lsim_keymgmt::guard`), so that password
//! guessing over many connections is limited as at the key server.
//!
//! Owns the connection's SASL exchange and its failure count. It must not
//! compute SASL messages itself (`xmpp::sasl` does) nor touch the
//! transport other than by sending its answers.

use std::net::SocketAddr;

use super::negotiation::{Conn, Fail, Segment};
use super::shared::Shared;
use crate::xmpp::element::Element;
use crate::xmpp::sasl::{self, Failure, Mechanism, ServerSasl, ServerStep};
use crate::xmpp::stream::NS_SASL;
use crate::xmpp::users::validate_name;

/// One step of a SASL exchange under the login guard: the user name the
/// client names is noted in `named`, and a name the guard refuses from
/// `peer` gets `temporary-auth-failure` without its password being checked.
fn guarded_step(
    shared: &Shared,
    peer: SocketAddr,
    named: &mut Option<String>,
    exchange: &mut ServerSasl,
    data: &[u8],
) -> Result<ServerStep, Failure> {
    let asked = std::cell::RefCell::new(None);
    let refused = std::cell::Cell::new(false);
    let step = exchange.step(data, &|user: &str| {
        *asked.borrow_mut() = Some(user.to_string());
        if shared.guard.check(user, peer).is_some() {
            refused.set(true);
            return None;
        }
        shared.users.lookup(user)
    });
    if let Some(user) = asked.into_inner() {
        *named = Some(user);
    }
    if refused.get() {
        return Err(Failure::TemporaryAuthFailure);
    }
    step
}

impl Conn {
    pub(super) async fn sasl_step(&mut self, e: &Element) -> Result<Segment, Fail> {
        self.sasl_attempted = true;
        let result = match e.name.as_str() {
            "auth" => self.sasl_auth(e),
            "response" => match self.sasl.as_mut() {
                Some(sasl) => sasl::decode(&e.text_content())
                    .and_then(|data| guarded_step(&self.shared, self.peer, &mut self.sasl_user, sasl, &data)),
                None => Err(Failure::MalformedRequest("response without an exchange")),
            },
            "abort" => Err(Failure::Aborted),
            _ => Err(Failure::MalformedRequest("unknown SASL element")),
        };
        match result {
            Ok(ServerStep::Challenge(data)) => {
                let mut challenge = Element::new("challenge", NS_SASL);
                if !data.is_empty() {
                    challenge = challenge.text(sasl::encode(&data));
                }
                self.send(&challenge).await?;
                Ok(Segment::Continue)
            }
            Ok(ServerStep::Success { user, data }) => {
                self.sasl = None;
                let Ok(user) = validate_name(&user) else {
                    return self.sasl_failure(&Failure::NotAuthorized).await;
                };
                self.shared.guard.succeeded(&user, self.peer);
                let mut success = Element::new("success", NS_SASL);
                if !data.is_empty() {
                    success = success.text(sasl::encode(&data));
                }
                self.send(&success).await?;
                Ok(Segment::Authenticated(user))
            }
            Err(failure) => {
                if let (Failure::NotAuthorized, Some(user)) = (&failure, self.sasl_user.take()) {
                    self.shared.guard.failed(&user, self.peer);
                }
                self.sasl_failure(&failure).await
            }
        }
    }

    /// `<auth/>`: a new exchange. An empty initial response gets an empty
    /// challenge (RFC 6120 §6.4.2), answered by the real first message.
    fn sasl_auth(&mut self, e: &Element) -> Result<ServerStep, Failure> {
        self.sasl = None;
        self.sasl_user = None;
        let config = &self.shared.config;
        if config.require_tls && !self.encrypted {
            return Err(Failure::EncryptionRequired);
        }
        // PLAIN where it is not offered fails in `ServerSasl::new` with
        // encryption-required, which says more than invalid-mechanism.
        let mechanism = e.get_attr("mechanism").and_then(Mechanism::parse).ok_or(Failure::InvalidMechanism)?;
        let mut exchange = ServerSasl::new(mechanism, self.encrypted, config.allow_plain_unencrypted)?;
        let text = e.text_content();
        if text.trim().is_empty() {
            self.sasl = Some(exchange);
            return Ok(ServerStep::Challenge(Vec::new()));
        }
        let data = sasl::decode(&text)?;
        let step = guarded_step(&self.shared, self.peer, &mut self.sasl_user, &mut exchange, &data)?;
        self.sasl = Some(exchange);
        Ok(step)
    }

    async fn sasl_failure(&mut self, failure: &Failure) -> Result<Segment, Fail> {
        self.sasl = None;
        self.failures += 1;
        let element = Element::new("failure", NS_SASL).child(Element::new(failure.condition(), NS_SASL));
        self.send(&element).await?;
        if self.failures >= self.shared.config.max_auth_failures {
            return Err(Fail::Stream("policy-violation"));
        }
        Ok(Segment::Continue)
    }
}
