//! Our client against ejabberd (Debian's package, started directly with its
//! own config in a private directory): the same scenario as against the
//! embedded server and Prosody.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use common::Ejabberd;
use lsim_im::xmpp::tls::Trust;
use scenario::{Target, USERS};

fn target(e: &Ejabberd, trust: Option<Trust>) -> Target {
    Target { addr: e.addr(), domain: "localhost".into(), trust, muc: "conference.localhost".into() }
}

#[tokio::test]
async fn ejabberd_plaintext() {
    let Some(mut e) = Ejabberd::start("plain", false, &USERS) else { return };
    let t = target(&e, None);
    scenario::each_mechanism(&t).await;
    scenario::room_and_reconnect(&t, &mut || e.restart()).await;
}

#[tokio::test]
async fn ejabberd_starttls() {
    let Some(mut e) = Ejabberd::start("tls", true, &USERS) else { return };
    let t = target(&e, Some(Trust::Pinned(e.fingerprint.unwrap())));
    scenario::each_mechanism(&t).await;
    scenario::room_and_reconnect(&t, &mut || e.restart()).await;
}
