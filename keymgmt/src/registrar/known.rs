//! The key servers a client has met, and the certificate each one showed.
//!
//! Owns a small text file of `address fingerprint` lines (like SSH's
//! known_hosts): a fingerprint given in configuration wins; otherwise the
//! first connection learns it (trust on first use) and every later one is
//! held to it. It does not open connections for anything else.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use super::quic::{ChannelError, fingerprint_hex, learn_fingerprint, parse_fingerprint};

/// The pin to use for `addr`: the configured one, else the one recorded in
/// `file`, else learned now and recorded.
pub async fn pin_for(file: &Path, addr: SocketAddr, configured: Option<[u8; 32]>) -> Result<[u8; 32], ChannelError> {
    if let Some(pin) = configured {
        return Ok(pin);
    }
    if let Some(pin) = recorded(file, addr)? {
        return Ok(pin);
    }
    let pin = learn_fingerprint(addr).await?;
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file)?;
    writeln!(f, "{addr} {}", fingerprint_hex(&pin))?;
    f.sync_all()?;
    Ok(pin)
}

/// The fingerprint recorded for `addr`, if any.
pub fn recorded(file: &Path, addr: SocketAddr) -> Result<Option<[u8; 32]>, ChannelError> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let want = addr.to_string();
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(a, _)| *a == want)
        .and_then(|(_, fp)| parse_fingerprint(fp.trim())))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::registrar::msg::{Request, Response};
    use crate::registrar::quic::{Client, Handler, Identity, serve, server_endpoint};

    #[derive(Default)]
    struct Nobody;

    impl Handler for Nobody {
        type Session = ();
        async fn handle(self: &Arc<Self>, _: &mut (), _: SocketAddr, _: Request) -> Response {
            Response::Left { epoch: 7 }
        }
        async fn closed(&self, _: ()) {}
    }

    #[tokio::test]
    async fn first_use_is_learned_then_enforced() {
        let file = std::env::temp_dir().join(format!("lsim-known-{}", std::process::id())).join("known_keyservers");
        let _ = std::fs::remove_file(&file);
        let id = Identity::generate().unwrap();
        let server = server_endpoint(([127, 0, 0, 1], 0).into(), &id).unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(serve(server.clone(), Arc::new(Nobody)));

        let pin = pin_for(&file, addr, None).await.unwrap();
        assert_eq!(pin, id.fingerprint());
        assert_eq!(recorded(&file, addr).unwrap(), Some(pin));
        let c = Client::connect(addr, pin).await.unwrap();
        assert_eq!(c.call(&Request::Join { group: "g".into() }).await.unwrap(), Response::Left { epoch: 7 });
        c.close();
        server.close(0u32.into(), b"");
        server.wait_idle().await;
        drop(server);

        // Another server appears at the same address: the recorded pin refuses it.
        let other = Identity::generate().unwrap();
        let mut impostor = server_endpoint(addr, &other);
        for _ in 0..100 {
            if impostor.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            impostor = server_endpoint(addr, &other);
        }
        let impostor = impostor.unwrap();
        tokio::spawn(serve(impostor.clone(), Arc::new(Nobody)));
        let pin = pin_for(&file, addr, None).await.unwrap();
        assert_eq!(pin, id.fingerprint(), "the first one stays recorded");
        assert!(Client::connect(addr, pin).await.is_err());
        // Configuration wins over the file.
        assert_eq!(pin_for(&file, addr, Some(other.fingerprint())).await.unwrap(), other.fingerprint());
        impostor.close(0u32.into(), b"");
        let _ = std::fs::remove_dir_all(file.parent().unwrap());
    }
}
