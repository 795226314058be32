//! Our client against Prosody (Debian's package, started here in a private
//! directory on a loopback port): plaintext and STARTTLS set-ups, the same
//! scenario as against the embedded server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod scenario;

use common::Prosody;
use lsim_im::xmpp::tls::Trust;
use scenario::{Target, USERS};

fn target(p: &Prosody, trust: Option<Trust>) -> Target {
    Target { addr: p.addr(), domain: "localhost".into(), trust, muc: "conference.localhost".into() }
}

#[tokio::test]
async fn prosody_plaintext() {
    let Some(mut p) = Prosody::start("plain", false, &USERS) else { return };
    let t = target(&p, None);
    scenario::each_mechanism(&t).await;
    scenario::room_and_reconnect(&t, &mut || p.restart()).await;
}

#[tokio::test]
async fn prosody_starttls_pinned_and_ca_file() {
    let Some(mut p) = Prosody::start("tls", true, &USERS) else { return };
    let pinned = target(&p, Some(Trust::Pinned(p.fingerprint.unwrap())));
    scenario::each_mechanism(&pinned).await;
    // The certificate as a CA file: the server name is checked too.
    let ca = target(&p, Some(Trust::CaFile(p.dir.join("xmpp-cert.pem"))));
    scenario::each_mechanism(&ca).await;
    // A wrong pin is refused before any credential is sent.
    let wrong = target(&p, Some(Trust::Pinned([0; 32])));
    let err = lsim_im::xmpp::client::connect(&wrong.config("alice", "alice-pw")).await.unwrap_err();
    assert!(err.is_fatal() && err.to_string().contains("pinned"), "{err}");
    scenario::room_and_reconnect(&pinned, &mut || p.restart()).await;
}
