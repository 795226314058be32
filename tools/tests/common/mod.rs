//! What the `lsim` process tests share: the binary, a scratch directory,
//! test data, and a child process that is killed and reaped when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // each test file uses a part

use std::path::PathBuf;
use std::process::{Child, Command, Output};

/// The `lsim` binary built for these tests. Its members keep their
/// signing keys and the keys they saw under the build's scratch directory,
/// not the home directory.
pub fn lsim() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lsim"));
    c.env("XDG_CONFIG_HOME", concat!(env!("CARGO_TARGET_TMPDIR"), "/lsim-config"));
    c
}

/// An empty directory of its own for `file`'s test `name`.
pub fn temp(file: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lsim-{file}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `len` bytes that differ with `seed`.
pub fn data(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8).collect()
}

/// A child process that is killed (SIGKILL) and reaped when dropped, so a
/// failing test leaves nothing running.
pub struct Proc(Option<Child>);

impl Proc {
    pub fn new(child: Child) -> Proc {
        Proc(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().unwrap()
    }

    /// kill -9, reaped.
    pub fn kill(mut self) {
        let mut c = self.0.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    /// Whether it has ended by itself.
    pub fn finished(&mut self) -> bool {
        self.child().try_wait().unwrap().is_some()
    }

    /// Waits for it to end by itself.
    pub fn output(mut self) -> Output {
        self.0.take().unwrap().wait_with_output().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
