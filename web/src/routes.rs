//! The web client's HTTP surface: the page and its assets, the stream of
//! updates (server-sent events), chat, uploads, leaving, and the files the
//! member holds.
//!
//! Owns the routes and their handlers. Every route sits behind `guard`
//! (token, origin, host, security headers); handlers turn requests into
//! `relay::Action`s and read the model, and must not touch the member or
//! the transport themselves.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::files::{self, Display};
use crate::guard::{self, FILE_CSP, Gate};
use crate::page;
use crate::relay::{Action, Shared, sniff};

/// The largest upload (a file streamed to the group).
pub const MAX_UPLOAD: u64 = 4 << 30;
/// The largest chat request body.
const MAX_CHAT: usize = 64 << 10;

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    /// The token check.
    pub gate: Arc<Gate>,
    /// The model and the relay's inbox.
    pub shared: Arc<Shared>,
    /// Where uploads are saved before they are sent (one directory each).
    pub uploads: PathBuf,
    next_upload: AtomicU64,
}

impl App {
    /// Handlers' state.
    pub fn new(gate: Arc<Gate>, shared: Arc<Shared>, uploads: PathBuf) -> Arc<App> {
        Arc::new(App { gate, shared, uploads, next_upload: AtomicU64::new(1) })
    }
}

/// The router, every route behind the guard.
pub fn router(app: Arc<App>) -> Router {
    let gate = app.gate.clone();
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", page::APP_JS) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", page::APP_CSS) }))
        .route("/events", get(events))
        .route("/api/chat", post(chat).layer(DefaultBodyLimit::max(MAX_CHAT)))
        .route("/api/files", post(upload))
        .route("/api/leave", post(leave))
        .route("/files/{id}", get(file))
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(gate, guard::check))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The page. Opened with the token in the URL, it sets this port's cookie
/// (HttpOnly, SameSite=Strict) and sends the browser to the bare URL, so
/// the token leaves the address bar and the history.
async fn index(State(app): State<Arc<App>>, uri: Uri) -> Response {
    if guard::query_token(&uri).is_some() {
        let cookie =
            format!("{}={}; HttpOnly; SameSite=Strict; Path=/", app.gate.cookie_name(), app.gate.token().as_str());
        let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        return r;
    }
    asset("text/html; charset=utf-8", page::INDEX_HTML)
}

/// The updates: a snapshot, then every change. A page that falls too far
/// behind is cut off; its browser reconnects and starts from a snapshot.
async fn events(State(app): State<Arc<App>>) -> Response {
    let (snapshot, rx) = app.shared.subscribe();
    let first =
        futures_util::stream::iter(snapshot.into_iter().map(|v| Ok::<_, std::convert::Infallible>(v.to_string())));
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(s) => Some((Ok(s.to_string()), rx)),
            Err(_) => None,
        }
    });
    let stream = first.chain(rest).map(|r| r.map(|s| Event::default().data(s)));
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

/// Recipients from a list of user names (`a,b` or a JSON array).
fn recipients(v: Option<&Value>) -> Result<Vec<String>, &'static str> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or("\"to\" must be a list of user names")?;
    let mut to = Vec::new();
    for u in list {
        let u = u.as_str().ok_or("\"to\" must be a list of user names")?;
        if u.is_empty() || u.len() > 64 || u.chars().any(|c| c.is_control() || c == ',' || c == '@' || c == '/') {
            return Err("a recipient is not a user name");
        }
        to.push(u.to_string());
    }
    Ok(to)
}

/// `{"text": "...", "to": ["bob"]}`: chat, to everyone if `to` is absent or empty.
async fn chat(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body must be JSON: {\"text\": ...}").into_response();
    };
    let Some(text) = v.get("text").and_then(Value::as_str).map(str::trim).filter(|t| !t.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "no text").into_response();
    };
    let to = match recipients(v.get("to")) {
        Ok(to) => to,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    match app.shared.actions.send(Action::Chat { text: text.to_string(), to }).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => (StatusCode::GONE, "the member has left").into_response(),
    }
}

/// `POST /api/files?name=NAME&to=a,b` with the file as the body: saved
/// under a directory of its own, then streamed to the group.
async fn upload(
    State(app): State<Arc<App>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    body: Body,
) -> Response {
    let name = files::upload_name(q.get("name").map_or("", String::as_str));
    let to: Vec<Value> =
        q.get("to").map_or(Vec::new(), |t| t.split(',').filter(|u| !u.is_empty()).map(Value::from).collect());
    let to = match recipients(Some(&Value::Array(to))) {
        Ok(to) => to,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let n = app.next_upload.fetch_add(1, Ordering::Relaxed);
    let dir = app.uploads.join(n.to_string());
    let path = dir.join(&name);
    match save(&dir, &path, body).await {
        Ok(()) => {}
        Err((status, why)) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return (status, why).into_response();
        }
    }
    let id = format!("up-{n}");
    let shown = sniff(&path, &name);
    app.shared.publish(|m| m.upload(&id, &path, &name, &to, shown));
    if app.shared.actions.send(Action::File { path, to }).await.is_err() {
        return (StatusCode::GONE, "the member has left").into_response();
    }
    (StatusCode::ACCEPTED, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({"id": id}).to_string())
        .into_response()
}

async fn save(dir: &std::path::Path, path: &std::path::Path, body: Body) -> Result<(), (StatusCode, String)> {
    let io = |e: std::io::Error| (StatusCode::INTERNAL_SERVER_ERROR, format!("saving the upload: {e}"));
    tokio::fs::create_dir_all(dir).await.map_err(io)?;
    let mut f = tokio::fs::File::create(path).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("the upload broke off: {e}")))?;
        total += chunk.len() as u64;
        if total > MAX_UPLOAD {
            return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("uploads are limited to {MAX_UPLOAD} bytes")));
        }
        f.write_all(&chunk).await.map_err(io)?;
    }
    f.sync_all().await.map_err(io)?;
    Ok(())
}

async fn leave(State(app): State<Arc<App>>) -> Response {
    let _ = app.shared.actions.send(Action::Leave).await;
    StatusCode::NO_CONTENT.into_response()
}

/// A file the member holds, by id only. Images, PDF and text are served as
/// what their bytes are; anything else (SVG and HTML among them) only as a
/// download. Nothing served can run script.
async fn file(
    State(app): State<Arc<App>>,
    UrlPath(id): UrlPath<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let Some((path, display)) = app.shared.model().local_file(&id) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::NOT_FOUND, format!("the file is gone: {e}")).into_response(),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let download = display == Display::Download || q.contains_key("download");
    let csp = if display == Display::Pdf && !download { FILE_CSP.to_string() } else { format!("{FILE_CSP}; sandbox") };
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if download { "application/octet-stream" } else { display.content_type() }),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    let disposition = if download { "attachment" } else { "inline" };
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename*=UTF-8''{}", percent_encode(&name))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// RFC 5987 encoding of a file name: unreserved characters as they are, every other byte as %XX.
fn percent_encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_user_names_only() {
        assert_eq!(recipients(None), Ok(vec![]));
        assert_eq!(recipients(Some(&serde_json::json!(["bob", "carol"]))), Ok(vec!["bob".into(), "carol".into()]));
        assert!(recipients(Some(&serde_json::json!("bob"))).is_err());
        assert!(recipients(Some(&serde_json::json!(["bob@x"]))).is_err());
        assert!(recipients(Some(&serde_json::json!(["a/b"]))).is_err());
        assert!(recipients(Some(&serde_json::json!(["a\nb"]))).is_err());
        assert!(recipients(Some(&serde_json::json!([""]))).is_err());
        assert!(recipients(Some(&serde_json::json!([1]))).is_err());
    }

    #[test]
    fn file_names_in_headers_are_encoded() {
        assert_eq!(percent_encode("map 1.png"), "map%201.png");
        assert_eq!(percent_encode("a\"b\r\n"), "a%22b%0D%0A");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
