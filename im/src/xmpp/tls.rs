//! TLS for XMPP streams (STARTTLS, RFC 6120 §5): the embedded server's
//! certificate, generated and persisted on first start, and the three
//! ways a client may trust a server: the system's roots, a given CA file,
//! or a pinned SHA-256 certificate fingerprint.
//!
//! Owns rustls configuration (ring provider, TLS 1.2 and 1.3). It must
//! not touch streams: callers wrap their TCP stream with tokio-rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lsim_keymgmt::pin::PinnedVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

/// The system's CA bundle (Debian's `ca-certificates`); `SSL_CERT_FILE`
/// overrides it.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// What went wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM file holds nothing usable.
    #[error("{0}: no usable certificate or key in it")]
    Pem(PathBuf),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256 of a DER certificate (what users pin), its hex form, and the
/// parser for it: the same as the key server's pins.
pub use lsim_keymgmt::pin::{fingerprint, fingerprint_hex, parse_fingerprint};

/// How long a generated server certificate is valid: ten years.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// The embedded server's certificate and key.
pub struct ServerIdentity {
    /// Certificate chain, DER (one self-signed certificate when generated).
    pub chain: Vec<CertificateDer<'static>>,
    key: Zeroizing<Vec<u8>>,
    key_is_pkcs8: bool,
}

impl ServerIdentity {
    /// Loads `xmpp-cert.pem` and `xmpp-key.pem` from `dir`, or generates a
    /// self-signed certificate for `names` and writes them there (the key
    /// readable by the owner only) on first start.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<ServerIdentity, TlsError> {
        let cert_path = dir.join("xmpp-cert.pem");
        let key_path = dir.join("xmpp-key.pem");
        if !cert_path.exists() || !key_path.exists() {
            return ServerIdentity::create(dir, names, DEFAULT_VALIDITY);
        }
        ServerIdentity::from_files(&cert_path, &key_path)
    }

    /// Generates a self-signed certificate for `names`, valid from now for
    /// `valid_for`, and writes `xmpp-cert.pem` and `xmpp-key.pem` (the key
    /// readable by the owner only) into `dir`, replacing what was there.
    pub fn create(dir: &Path, names: &[String], valid_for: Duration) -> Result<ServerIdentity, TlsError> {
        let cert_path = dir.join("xmpp-cert.pem");
        let key_path = dir.join("xmpp-key.pem");
        let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
        let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(generate)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        // A day of slack for clocks behind ours.
        params.not_before = epoch + now.saturating_sub(Duration::from_secs(86_400));
        params.not_after = epoch + now + valid_for;
        params.distinguished_name.push(rcgen::DnType::CommonName, names.first().cloned().unwrap_or_default());
        let key = rcgen::KeyPair::generate().map_err(generate)?;
        let cert = params.self_signed(&key).map_err(generate)?;
        let file_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::File { path, source }
        };
        std::fs::create_dir_all(dir).map_err(file_err(dir))?;
        let key_pem = Zeroizing::new(pem("PRIVATE KEY", &key.serialize_der()));
        write_private(&key_path, key_pem.as_bytes()).map_err(file_err(&key_path))?;
        std::fs::write(&cert_path, pem("CERTIFICATE", cert.der())).map_err(file_err(&cert_path))?;
        ServerIdentity::from_files(&cert_path, &key_path)
    }

    /// Loads a PEM certificate chain and private key.
    pub fn from_files(cert: &Path, key: &Path) -> Result<ServerIdentity, TlsError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .map_err(|_| TlsError::Pem(cert.to_path_buf()))?
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::Pem(cert.to_path_buf()));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::Pem(key.to_path_buf()))?;
        let key_is_pkcs8 = matches!(key_der, PrivateKeyDer::Pkcs8(_));
        Ok(ServerIdentity { chain, key: Zeroizing::new(key_der.secret_der().to_vec()), key_is_pkcs8 })
    }

    /// The fingerprint of the leaf certificate.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.chain.first().map(|c| fingerprint(c)).unwrap_or_default()
    }

    /// A rustls server configuration for this identity.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let key = if self.key_is_pkcs8 {
            PrivateKeyDer::Pkcs8(self.key.to_vec().into())
        } else {
            PrivateKeyDer::try_from(self.key.to_vec()).map_err(|e| TlsError::Generate(e.to_string()))?
        };
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)?;
        Ok(Arc::new(config))
    }
}

/// RFC 7468 text encoding: base64 in 64-column lines between labels.
fn pem(label: &str, der: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    let b64 = Base64::encode_string(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// How a client decides to trust a server's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The system's CA bundle, with the server name checked.
    SystemRoots,
    /// The CAs in this PEM file, with the server name checked.
    CaFile(PathBuf),
    /// Exactly the certificate with this SHA-256 fingerprint (names and
    /// expiry are not checked: the pin is the identity).
    Pinned([u8; 32]),
}

/// A rustls client configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match trust {
        Trust::SystemRoots => {
            let path = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from).unwrap_or_else(|| SYSTEM_ROOTS.into());
            builder.with_root_certificates(roots(&path)?).with_no_client_auth()
        }
        Trust::CaFile(path) => builder.with_root_certificates(roots(path)?).with_no_client_auth(),
        Trust::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                PinnedVerifier::pinned(*pin, &provider(), true).hint("check --pin against what the server prints"),
            ))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|_| TlsError::Pem(path.to_path_buf()))?;
    for cert in certs.filter_map(Result::ok) {
        // A bundle may hold certificates webpki cannot use; skip those.
        let _ = store.add(cert);
    }
    if store.is_empty() {
        return Err(TlsError::Pem(path.to_path_buf()));
    }
    Ok(store)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn identity_is_created_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("lsim-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let a = ServerIdentity::load_or_create(&dir, &["localhost".into()]).unwrap();
        let b = ServerIdentity::load_or_create(&dir, &["localhost".into()]).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        a.server_config().unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("xmpp-key.pem")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        client_config(&Trust::Pinned(a.fingerprint())).unwrap();
        client_config(&Trust::CaFile(dir.join("xmpp-cert.pem"))).unwrap();
        assert!(client_config(&Trust::CaFile(dir.join("xmpp-key.pem"))).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
