//! Third-party programs run by the tests, bounded: a [`Proc`] reads its
//! output as it runs and is killed (it alone) when it outlives
//! [`PROCESS_TIMEOUT`]; [`ProcOut`] is what it left, for assertions and
//! failure messages.
//!
//! Owns starting, bounding and reading one external program. It must not
//! know which program it runs or what its output means: the test does.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound on one external process.
pub const PROCESS_TIMEOUT: Duration = Duration::from_secs(25);

/// The last `n` lines of `text` that are not blank.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n    | ")
}

pub struct ProcOut {
    /// `None`: killed after [`PROCESS_TIMEOUT`].
    pub status: Option<ExitStatus>,
    /// stdout, then stderr.
    pub output: String,
}

impl ProcOut {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    pub fn describe(&self) -> String {
        let status = match self.status {
            Some(s) => s.to_string(),
            None => format!("killed after {PROCESS_TIMEOUT:?}"),
        };
        format!("{status}; its output:\n    | {}", tail(&self.output, 12))
    }
}

/// An external client, killed (it alone) when it outlives its bound.
pub struct Proc {
    handle: Option<tokio::task::JoinHandle<ProcOut>>,
    pub out: Option<ProcOut>,
}

impl Proc {
    pub fn spawn(mut cmd: tokio::process::Command, stdin: Option<String>) -> Proc {
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let handle = tokio::spawn(async move {
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => return ProcOut { status: None, output: format!("could not start: {e}") },
            };
            if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
                let _ = pipe.write_all(text.as_bytes()).await;
            }
            let buffers = [Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new()))];
            let pipes: [Box<dyn tokio::io::AsyncRead + Unpin + Send>; 2] =
                [Box::new(child.stdout.take().unwrap()), Box::new(child.stderr.take().unwrap())];
            let readers = pipes.into_iter().zip(buffers.clone()).map(|(mut pipe, buf)| {
                tokio::spawn(async move {
                    let mut chunk = [0u8; 4096];
                    while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
                        buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                })
            });
            let readers: Vec<_> = readers.collect();
            let status = match tokio::time::timeout(PROCESS_TIMEOUT, child.wait()).await {
                Ok(status) => status.ok(),
                Err(_) => {
                    let _ = child.kill().await;
                    None
                }
            };
            for r in readers {
                let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
            }
            let [so, se] = buffers.map(|b| String::from_utf8_lossy(&b.lock().unwrap()).into_owned());
            let output = format!("{so}{se}");
            ProcOut { status, output }
        });
        Proc { handle: Some(handle), out: None }
    }

    /// Waits for it to end (bounded by [`PROCESS_TIMEOUT`]).
    pub async fn finish(&mut self) -> &ProcOut {
        if let Some(handle) = self.handle.as_mut() {
            let out = handle.await.unwrap_or_else(|e| ProcOut { status: None, output: format!("task failed: {e}") });
            self.handle = None;
            self.out = Some(out);
        }
        self.out.as_ref().unwrap()
    }
}
