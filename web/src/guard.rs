//! Who may talk to the member's web client: every request is checked before
//! any handler runs, and every answer carries the headers that keep group
//! content inert in the browser.
//!
//! Owns the checks (a `Host` naming this server, so a DNS-rebinding page
//! cannot reach it; no cross-origin request; the token, from the URL's `t`,
//! the `x-lsim-token` header or this port's cookie) and the security headers
//! (a strict Content-Security-Policy with no inline script, `nosniff`, no
//! referrer, no caching, no framing by others). It must not touch the member
//! or decide what a page shows.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::token::Token;

/// The page's policy: its own script and style only, nothing inline, no
/// other origin, no plugin, not framed.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// A served file's policy: nothing runs in it; only the page may frame it.
/// (`routes` adds `sandbox` to every file but a PDF, whose viewer needs none.)
pub const FILE_CSP: &str =
    "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; object-src 'self'; frame-ancestors 'self'";

/// What a request must show to get in.
#[derive(Debug)]
pub struct Gate {
    token: Token,
    /// `Host` values naming this server (address:port, localhost:port).
    hosts: Vec<String>,
    cookie: String,
}

impl Gate {
    /// The gate of a server listening on `addr` with `token`.
    pub fn new(token: Token, addr: std::net::SocketAddr) -> Gate {
        let port = addr.port();
        let mut hosts = vec![format!("{addr}"), format!("localhost:{port}")];
        if addr.ip().is_loopback() {
            hosts.push(format!("127.0.0.1:{port}"));
            hosts.push(format!("[::1]:{port}"));
        }
        Gate { token, hosts, cookie: format!("lsim_{port}") }
    }

    /// The cookie that carries the token after the first visit (one per
    /// port: two members on one host keep theirs apart).
    pub fn cookie_name(&self) -> &str {
        &self.cookie
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// Why `headers` and `uri` may not come in, or `None` if they may.
    pub fn refuse(&self, headers: &HeaderMap, uri: &Uri) -> Option<(StatusCode, &'static str)> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        if !self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Some((StatusCode::FORBIDDEN, "this server answers to its own address only"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin.to_str().ok().and_then(|o| o.strip_prefix("http://")).is_some_and(|o| o == host);
            if !same {
                return Some((StatusCode::FORBIDDEN, "cross-origin requests are refused"));
            }
        }
        let site = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok());
        if site.is_some_and(|s| s != "same-origin" && s != "none") {
            return Some((StatusCode::FORBIDDEN, "cross-site requests are refused"));
        }
        if !self.has_token(headers, uri) {
            return Some((StatusCode::UNAUTHORIZED, "a valid token is needed: use the URL lsim printed"));
        }
        None
    }

    fn has_token(&self, headers: &HeaderMap, uri: &Uri) -> bool {
        let from_query = query_token(uri).is_some_and(|t| self.token.matches(&t));
        let from_header =
            headers.get("x-lsim-token").and_then(|v| v.to_str().ok()).is_some_and(|t| self.token.matches(t));
        let from_cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|kv| kv.trim().split_once('='))
            .any(|(k, v)| k == self.cookie && self.token.matches(v));
        from_query || from_header || from_cookie
    }
}

/// The `t` parameter of a URL's query, if any.
pub fn query_token(uri: &Uri) -> Option<String> {
    let q: axum::extract::Query<std::collections::HashMap<String, String>> =
        axum::extract::Query::try_from_uri(uri).ok()?;
    q.0.get("t").cloned()
}

/// The middleware: refuse, or run the handler and add the headers.
pub async fn check(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    let mut resp = match gate.refuse(req.headers(), req.uri()) {
        Some((status, why)) => (status, why).into_response(),
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(PAGE_CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> (Gate, String) {
        let t = Token::generate().unwrap();
        let s = t.as_str().to_string();
        (Gate::new(t, "127.0.0.1:8080".parse().unwrap()), s)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn the_token_opens_from_the_url_the_header_or_this_ports_cookie() {
        let (g, t) = gate();
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(g.refuse(&headers(&[host]), &uri(&format!("/?t={t}"))), None);
        assert_eq!(g.refuse(&headers(&[host, ("x-lsim-token", &t)]), &uri("/events")), None);
        let c = format!("other=1; lsim_8080={t}");
        assert_eq!(g.refuse(&headers(&[host, ("cookie", &c)]), &uri("/app.js")), None);
    }

    #[test]
    fn no_token_a_wrong_one_or_another_ports_cookie_is_401() {
        let (g, t) = gate();
        let host = ("host", "127.0.0.1:8080");
        let no = |h: &HeaderMap, u: &str| g.refuse(h, &uri(u)).map(|r| r.0);
        assert_eq!(no(&headers(&[host]), "/"), Some(StatusCode::UNAUTHORIZED));
        assert_eq!(no(&headers(&[host]), "/?t=00"), Some(StatusCode::UNAUTHORIZED));
        let wrong = format!("{}0", &t[..63]);
        let wrong = if wrong == t { format!("{}1", &t[..63]) } else { wrong };
        assert_eq!(no(&headers(&[host]), &format!("/?t={wrong}")), Some(StatusCode::UNAUTHORIZED));
        let c = format!("lsim_9090={t}");
        assert_eq!(no(&headers(&[host, ("cookie", &c)]), "/"), Some(StatusCode::UNAUTHORIZED));
    }

    #[test]
    fn other_origins_and_other_host_names_are_403_even_with_the_token() {
        let (g, t) = gate();
        let u = uri(&format!("/api/chat?t={t}"));
        let no = |h: &[(&'static str, &str)]| g.refuse(&headers(h), &u).map(|r| r.0);
        let host = ("host", "127.0.0.1:8080");
        assert_eq!(no(&[host, ("origin", "http://evil.example")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(no(&[host, ("origin", "http://127.0.0.1:9999")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(no(&[host, ("origin", "null")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(no(&[host, ("sec-fetch-site", "cross-site")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(no(&[("host", "rebound.example:8080")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(no(&[]), Some(StatusCode::FORBIDDEN));
        assert_eq!(no(&[host, ("origin", "http://127.0.0.1:8080"), ("sec-fetch-site", "same-origin")]), None);
        assert_eq!(no(&[("host", "localhost:8080")]), None);
    }
}
