//! Enrolling with an invitation: before logging in for the first time, the
//! client presents the invitation's token (XEP-0401's preauth) and
//! registers its user name and chosen password (XEP-0077) on the same
//! encrypted stream; then it logs in as usual.
//!
//! Owns our side of that exchange. It must not touch the connection
//! sequence around it (`connect` calls it between the stream features
//! and SASL) nor what an invitation code holds (`group::invite`).

use tokio::io::AsyncWrite;

use super::session::write_element;
use super::{ClientConfig, ClientError};
use crate::xmpp::element::Element;
use crate::xmpp::hub::NS_STANZAS;
use crate::xmpp::server::register::{NS_PREAUTH, NS_REGISTER, NS_REGISTER_FEATURE};
use crate::xmpp::stream::{NS_CLIENT, StreamEvents};

/// The server's words for a refusal: its `<text/>`, else the condition.
fn refusal(e: &Element) -> String {
    let err = e.get_child("error", NS_CLIENT);
    let text = err.and_then(|x| x.get_child("text", NS_STANZAS)).map(Element::text_content);
    let condition = err.and_then(|x| x.elements().find(|c| c.name != "text")).map(|c| c.name.clone());
    let said = text.filter(|t| !t.trim().is_empty()).or(condition).unwrap_or_else(|| "refused".into());
    crate::text::visible(&said).chars().take(200).collect()
}

/// Sends `iq` and waits for the answer with its id: `Ok` on a result.
async fn ask<W: AsyncWrite + Unpin + ?Sized>(
    events: &mut StreamEvents,
    w: &mut W,
    iq: Element,
) -> Result<(), ClientError> {
    let id = iq.get_attr("id").unwrap_or("").to_string();
    write_element(w, &iq).await?;
    loop {
        let e = super::connect::next_stanza(events, "enrollment").await?;
        if e.is("iq", NS_CLIENT) && e.get_attr("id") == Some(id.as_str()) {
            return match e.get_attr("type") {
                Some("result") => Ok(()),
                _ => Err(ClientError::Enrollment(refusal(&e))),
            };
        }
    }
}

/// Presents `token` and registers `cfg`'s user with `cfg`'s password.
/// `features` are the stream's; `encrypted` whether TLS is on (a password
/// goes in the clear only where PLAIN may).
pub(super) async fn register<W: AsyncWrite + Unpin + ?Sized>(
    cfg: &ClientConfig,
    events: &mut StreamEvents,
    w: &mut W,
    features: &Element,
    encrypted: bool,
    token: &str,
) -> Result<(), ClientError> {
    if !encrypted && !cfg.allow_plain_unencrypted {
        return Err(ClientError::Enrollment("the stream is not encrypted: enrolling needs TLS".into()));
    }
    if features.get_child("register", NS_REGISTER_FEATURE).is_none() {
        return Err(ClientError::Enrollment("this server takes no invitations (no in-band registration)".into()));
    }
    let iq = |id: &str, kind: &str, child: Element| {
        Element::new("iq", NS_CLIENT).attr("type", kind).attr("id", id).child(child)
    };
    ask(events, w, iq("enroll-1", "set", Element::new("preauth", NS_PREAUTH).attr("token", token))).await?;
    let query = Element::new("query", NS_REGISTER)
        .child(Element::new("username", NS_REGISTER).text(cfg.user()))
        .child(Element::new("password", NS_REGISTER).text(cfg.password.as_str()));
    ask(events, w, iq("enroll-2", "set", query)).await
}
