//! A private tmux server (its own socket) running one program, for a test
//! that types into a terminal client and reads its screen: start it, type
//! a line, wait (bounded) for the screen to show something. On drop the
//! server is killed, then its process and the program's if they are still
//! alive and still theirs.
//!
//! Owns that tmux server and the program's pane. It must not know what the
//! program is for or what its screen means: the test does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::process::tail;

/// A private tmux server (its own socket) running one program.
pub struct Tmux {
    socket: PathBuf,
    /// The program's name as `/proc/PID/status` shows it (at most 15 bytes).
    program: String,
    /// The tmux server's and the pane's process ids.
    pids: Vec<u32>,
}

impl Tmux {
    fn command(socket: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("timeout");
        cmd.args(["-k", "1", "5", "tmux", "-S"]).arg(socket).env_remove("TMUX").kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Tmux::command(&self.socket).args(args).output().await.map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!("tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts `program` in a 200×50 window, with `env` set.
    pub async fn start(dir: &Path, program: &[&str], env: &[(&str, &Path)]) -> Result<Tmux, String> {
        let socket = dir.join("tmux.sock");
        let mut cmd = Tmux::command(&socket);
        cmd.args(["-f", "/dev/null", "new-session", "-d", "-s", "lsim", "-x", "200", "-y", "50", "--"]).args(program);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().await.map_err(|e| e.to_string())?;
        let name = program.first().and_then(|p| Path::new(p).file_name()).map(|n| n.to_string_lossy().into_owned());
        let program = name.unwrap_or_default().chars().take(15).collect();
        let mut tmux = Tmux { socket, program, pids: Vec::new() };
        if !out.status.success() {
            return Err(format!("tmux new-session: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let pids = tmux.run(&["display-message", "-p", "-t", "lsim", "#{pid} #{pane_pid}"]).await?;
        tmux.pids = pids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        Ok(tmux)
    }

    /// Types `text` and Enter.
    pub async fn type_line(&self, text: &str) -> Result<(), String> {
        self.run(&["send-keys", "-t", "lsim", "-l", text]).await?;
        self.run(&["send-keys", "-t", "lsim", "Enter"]).await.map(|_| ())
    }

    pub async fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-J", "-t", "lsim"]).await.unwrap_or_else(|e| e)
    }

    /// Waits (at most `within`) until the screen shows `want`; fails early
    /// on any of `fail`.
    pub async fn wait(&self, want: &str, fail: &[&str], within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen().await;
            if screen.contains(want) {
                return Ok(screen);
            }
            if let Some(f) = fail.iter().find(|f| screen.contains(**f)) {
                return Err(format!("the screen shows {f:?} instead of {want:?}:\n    | {}", tail(&screen, 12)));
            }
            if Instant::now() > deadline {
                return Err(format!("no {want:?} on the screen after {within:?}:\n    | {}", tail(&screen, 12)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("timeout")
            .args(["-k", "1", "5", "tmux", "-S"])
            .arg(&self.socket)
            .arg("kill-server")
            .env_remove("TMUX")
            .stderr(Stdio::null())
            .status();
        for pid in &self.pids {
            // Only if it is still ours and alive (not a zombie, not reused).
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let alive = !status.contains("State:\tZ");
            if alive && (status.contains("Name:\ttmux") || status.contains(&format!("Name:\t{}", self.program))) {
                let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
        }
    }
}
