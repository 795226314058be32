//! lsim's web client: the same member as `lsim chat`, its user interface
//! served to a browser on a local port (`lsim chat --web`).
//!
//! The member runs in one task (`relay`); its events build the page's model
//! (`model`), which every connected page receives as server-sent events;
//! what a page asks for goes back to the member. Every request passes the
//! `guard` (token, host, origin, security headers); files are shown inline
//! only when their bytes are an image, a PDF or text (`files`). The page
//! (`page`) is compiled in: nothing is fetched from anywhere else.
//!
//! This crate owns HTTP and the page. It must not touch the protocols: it
//! only calls `lsim_im::group::member::Member`.

pub mod files;
pub mod guard;
pub mod model;
pub mod page;
pub mod relay;
pub mod routes;
pub mod token;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lsim_im::group::member::{Member, MemberEvent};
use tokio::net::TcpListener;

use crate::guard::Gate;
use crate::relay::Shared;
use crate::routes::App;
use crate::token::Token;

/// Where and how the web client listens.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Allow an address other hosts can reach (off: loopback only).
    pub allow_remote: bool,
    /// Where uploads wait to be sent (created, private to this user).
    pub uploads: PathBuf,
}

/// Why the web client could not run.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback address without the flag that allows it.
    #[error("{0} can be reached from other hosts: the web client listens on loopback unless --web-remote allows it")]
    Remote(SocketAddr),
    /// "Any address" cannot be named in the URL the browser must use.
    #[error("{0}: give the one address to serve on (the URL must name it), not every address")]
    Unspecified(SocketAddr),
    /// The address is taken or not ours.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    /// No randomness for the token.
    #[error("cannot draw the access token: {0}")]
    Token(getrandom::Error),
    /// The uploads directory.
    #[error("cannot create the uploads directory {0}: {1}")]
    Uploads(PathBuf, std::io::Error),
    /// The server failed while running.
    #[error("the web server stopped: {0}")]
    Serve(std::io::Error),
}

/// A bound web client, ready to run a member.
#[derive(Debug)]
pub struct Web {
    listener: TcpListener,
    gate: Arc<Gate>,
    url: String,
    cfg: WebConfig,
}

impl Web {
    /// Checks the address, listens, and draws the token.
    pub async fn bind(cfg: WebConfig) -> Result<Web, WebError> {
        let addr = cfg.listen;
        if addr.ip().is_unspecified() {
            return Err(WebError::Unspecified(addr));
        }
        if !addr.ip().is_loopback() && !cfg.allow_remote {
            return Err(WebError::Remote(addr));
        }
        let listener = TcpListener::bind(addr).await.map_err(|e| WebError::Bind(addr, e))?;
        let bound = listener.local_addr().map_err(|e| WebError::Bind(addr, e))?;
        let token = Token::generate().map_err(WebError::Token)?;
        let url = format!("http://{bound}/?t={}", token.as_str());
        Ok(Web { listener, gate: Arc::new(Gate::new(token, bound)), url, cfg })
    }

    /// The URL to open: it carries the token.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `member` (called `nick`) until it leaves, from a page or
    /// because `stop` completed; every event also goes to `on_event`. The
    /// pages get a moment to show the leave before the server closes.
    pub async fn run(
        self,
        member: Member,
        nick: &str,
        stop: impl Future<Output = ()> + Unpin,
        positions: tokio::sync::mpsc::Receiver<lsim_im::group::position::Position>,
        on_event: impl FnMut(&MemberEvent),
    ) -> Result<(), WebError> {
        make_private_dir(&self.cfg.uploads)?;
        let (shared, actions) = Shared::new(nick);
        let app = App::new(self.gate.clone(), shared.clone(), self.cfg.uploads.clone());
        let router = routes::router(app);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(self.listener, router)
                .with_graceful_shutdown(async move {
                    let _ = done_rx.await;
                })
                .await
        });
        relay::run(member, shared, actions, positions, stop, on_event).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let _ = done_tx.send(());
        // Open event streams never end by themselves: give up on them after a moment.
        let served = tokio::time::timeout(Duration::from_secs(2), server).await;
        let _ = std::fs::remove_dir_all(&self.cfg.uploads);
        match served {
            Ok(Ok(Err(e))) => Err(WebError::Serve(e)),
            _ => Ok(()),
        }
    }
}

fn make_private_dir(dir: &std::path::Path) -> Result<(), WebError> {
    let fail = |e| WebError::Uploads(dir.to_path_buf(), e);
    std::fs::create_dir_all(dir).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(addr: &str, allow_remote: bool) -> WebConfig {
        WebConfig { listen: addr.parse().unwrap(), allow_remote, uploads: std::env::temp_dir().join("lsim-web-test") }
    }

    #[tokio::test]
    async fn loopback_only_unless_allowed_and_never_every_address() {
        let w = Web::bind(cfg("127.0.0.1:0", false)).await.unwrap();
        assert!(w.url().starts_with("http://127.0.0.1:") && w.url().contains("/?t="));
        assert!(matches!(Web::bind(cfg("0.0.0.0:0", true)).await, Err(WebError::Unspecified(_))));
        assert!(matches!(Web::bind(cfg("10.9.9.9:0", false)).await, Err(WebError::Remote(_))));
    }
}
