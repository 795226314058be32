//! The embedded server's user store: salted SCRAM credentials only, never
//! a password, in the file `xmpp-users` of the data directory.
//!
//! Owns the file format (one line per user: `NAME <StoredCredentials::to_line()>`,
//! `#` comments and blank lines ignored), user name validation (a JID
//! local part without whitespace, stored lowercase) and crash-safe
//! rewriting (temporary file, fsync, rename, fsync of the directory). It
//! must not touch SASL exchanges or sessions: the server only looks
//! credentials up.
//!
//! Another process (`lsim user add`) may change the file while the server
//! runs; a lookup notices the change (size or modification time) and
//! reloads.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::jid::MAX_PART;
use super::sasl::{DEFAULT_ITERATIONS, StoredCredentials};

/// The file name inside the data directory.
pub const USERS_FILE: &str = "xmpp-users";

/// What went wrong with the user store.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the file is not `NAME CREDENTIALS`.
    #[error("{path} line {line}: not a user name followed by SCRAM credentials")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The name cannot be a JID local part.
    #[error("'{name}' is not a valid user name: {why}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The user exists and replacing was not asked for.
    #[error("user '{0}' already exists")]
    Exists(String),
    /// Deriving credentials failed (no randomness).
    #[error("cannot derive credentials: {0}")]
    Credentials(#[from] super::sasl::Failure),
}

/// Checks that `name` can be a user (a JID local part, RFC 7622, without
/// whitespace) and returns its stored (lowercase) form.
pub fn validate_name(name: &str) -> Result<String, UserError> {
    let bad = |why| Err(UserError::InvalidName { name: name.chars().take(64).collect(), why });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_PART {
        return bad("it is longer than 1023 bytes");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace() || "\"&'/:<>@".contains(c)) {
        return bad("it holds whitespace, a control character or one of \" & ' / : < > @");
    }
    Ok(name.to_ascii_lowercase())
}

struct State {
    users: BTreeMap<String, StoredCredentials>,
    /// Size and modification time of the file as last read or written.
    seen: Option<(u64, SystemTime)>,
}

/// Users and their SCRAM credentials, persisted in `xmpp-users`.
pub struct UserStore {
    path: PathBuf,
    state: Mutex<State>,
}

impl UserStore {
    /// Opens (or starts empty) the store in `data_dir`. The directory is
    /// created when the first user is added.
    pub fn open(data_dir: &Path) -> Result<UserStore, UserError> {
        let path = data_dir.join(USERS_FILE);
        let (users, seen) = read_file(&path)?;
        Ok(UserStore { path, state: Mutex::new(State { users, seen }) })
    }

    /// The file backing the store.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent map (every
        // change is made after the file write succeeded).
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds `name` with credentials derived from `password` (fresh salts,
    /// [`DEFAULT_ITERATIONS`]). An existing user is an error unless
    /// `replace` is set.
    pub fn add(&self, name: &str, password: &str, replace: bool) -> Result<(), UserError> {
        let name = validate_name(name)?;
        let creds = StoredCredentials::new(password, DEFAULT_ITERATIONS)?;
        self.insert(&name, creds, replace)
    }

    /// Adds `name` with already derived credentials.
    pub fn insert(&self, name: &str, creds: StoredCredentials, replace: bool) -> Result<(), UserError> {
        let name = validate_name(name)?;
        let mut state = self.lock();
        self.refresh(&mut state);
        if !replace && state.users.contains_key(&name) {
            return Err(UserError::Exists(name));
        }
        let mut users = state.users.clone();
        users.insert(name, creds);
        state.seen = write_file(&self.path, &users)?;
        state.users = users;
        Ok(())
    }

    /// Removes `name`; whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, UserError> {
        let name = validate_name(name)?;
        let mut state = self.lock();
        self.refresh(&mut state);
        if !state.users.contains_key(&name) {
            return Ok(false);
        }
        let mut users = state.users.clone();
        users.remove(&name);
        state.seen = write_file(&self.path, &users)?;
        state.users = users;
        Ok(true)
    }

    /// The credentials of `name` (case-insensitive), if it is a user.
    pub fn lookup(&self, name: &str) -> Option<StoredCredentials> {
        let name = validate_name(name).ok()?;
        let mut state = self.lock();
        self.refresh(&mut state);
        state.users.get(&name).cloned()
    }

    /// The user names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut state = self.lock();
        self.refresh(&mut state);
        state.users.keys().cloned().collect()
    }

    /// Rereads the file if another process changed it. A file that has
    /// become unreadable or corrupt keeps the users we have.
    fn refresh(&self, state: &mut State) {
        if stat(&self.path) == state.seen {
            return;
        }
        if let Ok((users, seen)) = read_file(&self.path) {
            state.users = users;
            state.seen = seen;
        }
    }
}

fn stat(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

type Loaded = (BTreeMap<String, StoredCredentials>, Option<(u64, SystemTime)>);

fn read_file(path: &Path) -> Result<Loaded, UserError> {
    let seen = stat(path);
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((BTreeMap::new(), None)),
        Err(source) => return Err(UserError::Io { path: path.to_path_buf(), source }),
    };
    let mut users = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let corrupt = || UserError::Corrupt { path: path.to_path_buf(), line: i + 1 };
        let (name, rest) = line.split_once(' ').ok_or_else(corrupt)?;
        let name = validate_name(name).map_err(|_| corrupt())?;
        let creds = StoredCredentials::from_line(rest).ok_or_else(corrupt)?;
        users.insert(name, creds);
    }
    Ok((users, seen))
}

/// Writes all users to a temporary file, syncs it, renames it over the
/// store and syncs the directory, so a crash leaves the old or the new
/// file, never half of one.
fn write_file(
    path: &Path,
    users: &BTreeMap<String, StoredCredentials>,
) -> Result<Option<(u64, SystemTime)>, UserError> {
    let io = |source| UserError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut text = String::from("# lsim XMPP users: name, then salted SCRAM-SHA-1 and SCRAM-SHA-256 keys\n");
    for (name, creds) in users {
        text.push_str(name);
        text.push(' ');
        text.push_str(&creds.to_line());
        text.push('\n');
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Directory fsync makes the rename durable; not every platform
        // allows it, and the data is already safe in either file.
        let _ = d.sync_all();
    }
    Ok(stat(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("lsim-users-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn add_lookup_remove_and_reload() {
        let dir = temp_dir("basic");
        let store = UserStore::open(&dir).unwrap();
        store.add("Alice", "secret pw", false).unwrap();
        assert!(matches!(store.add("alice", "x", false), Err(UserError::Exists(_))));
        let creds = store.lookup("ALICE").unwrap();
        assert!(creds.verify_password("secret pw"));
        let text = std::fs::read_to_string(dir.join(USERS_FILE)).unwrap();
        assert!(!text.contains("secret pw"));
        assert!(text.contains("\nalice sha1 "));

        // Another store (another process) sees the user and its changes.
        let other = UserStore::open(&dir).unwrap();
        assert_eq!(other.lookup("alice"), Some(creds));
        other.add("alice", "new pw", true).unwrap();
        other.add("bob", "b", false).unwrap();
        assert!(store.lookup("alice").unwrap().verify_password("new pw"));
        assert_eq!(store.names(), vec!["alice", "bob"]);
        assert!(store.remove("bob").unwrap());
        assert!(!store.remove("bob").unwrap());
        assert_eq!(UserStore::open(&dir).unwrap().names(), vec!["alice"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_must_be_local_parts() {
        for bad in ["", "a b", "a@b", "a/b", "a:b", "x\ty", "<x>", "q'", &"a".repeat(1024)] {
            assert!(matches!(validate_name(bad), Err(UserError::InvalidName { .. })), "{bad:?}");
        }
        assert_eq!(validate_name("Field-Team_1.x").unwrap(), "field-team_1.x");
    }

    #[test]
    fn corrupt_file_is_reported_with_its_line() {
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(USERS_FILE), "# c\n\nalice garbage\n").unwrap();
        assert!(matches!(UserStore::open(&dir), Err(UserError::Corrupt { line: 3, .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
