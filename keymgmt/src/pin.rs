//! Trusting a server's TLS certificate by its SHA-256: the pin.
//!
//! Owns certificate fingerprints (computing, printing, parsing) and
//! `PinnedVerifier`, the one rustls verifier that accepts exactly the pinned
//! certificate (or, once, whatever the server shows, to learn its pin), and
//! checks the handshake signatures with that certificate's key so the peer
//! holds the private key. The key server's QUIC registrar and the XMPP
//! client both use it. Names and expiry are not checked: the pin is the
//! identity. It builds no connection and knows no protocol.

use std::sync::Mutex;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// SHA-256 of a DER certificate.
pub fn fingerprint(cert_der: &[u8]) -> [u8; 32] {
    Sha256::digest(cert_der).into()
}

/// Hex form of a fingerprint, as users copy it into configuration.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hex fingerprint (colons allowed).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

#[derive(Debug)]
enum Trust {
    /// Only the certificate with this SHA-256.
    Pinned([u8; 32]),
    /// Any, remembering its fingerprint (trust on first use).
    FirstUse(Mutex<Option<[u8; 32]>>),
}

/// A server certificate verifier by pin (see the module doc).
#[derive(Debug)]
pub struct PinnedVerifier {
    trust: Trust,
    algorithms: WebPkiSupportedAlgorithms,
    /// Whether TLS 1.2 handshake signatures are checked (XMPP servers may
    /// speak 1.2) or refused (the registrar offers 1.3 only).
    tls12: bool,
    /// What a refusal tells the user to check (which setting holds the pin).
    hint: &'static str,
}

/// What a refusal says to check unless the caller names its setting.
const HINT: &str = "check the pin against what the server prints";

impl PinnedVerifier {
    /// Accepts exactly the certificate whose SHA-256 is `pin`.
    pub fn pinned(pin: [u8; 32], provider: &CryptoProvider, tls12: bool) -> PinnedVerifier {
        let algorithms = provider.signature_verification_algorithms;
        PinnedVerifier { trust: Trust::Pinned(pin), algorithms, tls12, hint: HINT }
    }

    /// Names what a refusal tells the user to check, e.g. "check --pin
    /// against what the server prints".
    pub fn hint(self, hint: &'static str) -> PinnedVerifier {
        PinnedVerifier { hint, ..self }
    }

    /// Accepts any certificate and remembers its fingerprint (`seen`): for
    /// learning a pin once, never for trusting a session.
    pub fn first_use(provider: &CryptoProvider, tls12: bool) -> PinnedVerifier {
        let trust = Trust::FirstUse(Mutex::new(None));
        PinnedVerifier { trust, algorithms: provider.signature_verification_algorithms, tls12, hint: HINT }
    }

    /// The fingerprint a first-use verifier saw.
    pub fn seen(&self) -> Option<[u8; 32]> {
        match &self.trust {
            Trust::FirstUse(seen) => seen.lock().ok().and_then(|s| *s),
            Trust::Pinned(_) => None,
        }
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = fingerprint(end_entity);
        match &self.trust {
            Trust::Pinned(pin) if bool::from(seen.ct_eq(pin)) => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(_) => Err(rustls::Error::General(format!(
                "the server's certificate has fingerprint {}, not the pinned fingerprint ({})",
                fingerprint_hex(&seen),
                self.hint
            ))),
            Trust::FirstUse(slot) => {
                if let Ok(mut slot) = slot.lock() {
                    *slot = Some(seen);
                }
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if !self.tls12 {
            return Err(rustls::Error::General("TLS 1.2 is not offered".into()));
        }
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn fingerprints_print_and_parse() {
        let fp = fingerprint(b"x");
        assert_eq!(parse_fingerprint(&fingerprint_hex(&fp)), Some(fp));
        let colons: String = fingerprint_hex(&fp)
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(parse_fingerprint(&colons), Some(fp));
        assert_eq!(parse_fingerprint("ab:cd"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
    }

    #[test]
    fn only_the_pinned_certificate_passes_and_first_use_remembers() {
        let provider = rustls::crypto::ring::default_provider();
        let (a, b) = (CertificateDer::from(vec![1u8, 2, 3]), CertificateDer::from(vec![4u8, 5, 6]));
        let name = ServerName::try_from("lsim").unwrap();
        let check =
            |v: &PinnedVerifier, c: &CertificateDer<'_>| v.verify_server_cert(c, &[], &name, &[], UnixTime::now());
        let pinned = PinnedVerifier::pinned(fingerprint(&a), &provider, false).hint("check --pin");
        assert!(check(&pinned, &a).is_ok());
        let e = check(&pinned, &b).unwrap_err().to_string();
        assert!(e.contains("pinned fingerprint") && e.contains(&fingerprint_hex(&fingerprint(&b))), "{e}");
        assert!(e.contains("(check --pin)"), "the refusal names the setting to fix: {e}");
        assert_eq!(pinned.seen(), None);
        let learner = PinnedVerifier::first_use(&provider, true);
        assert!(check(&learner, &b).is_ok());
        assert_eq!(learner.seen(), Some(fingerprint(&b)));
    }
}
