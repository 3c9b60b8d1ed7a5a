//! Who may call the admin API, by name and role. The operator's `admin.token` is the name
//! `admin` with every right; each further user has a file `tokens/<name>.toml` in the data
//! folder (mode 0600) with its role and token, written by `aiguillage token add`. Every
//! decision is recorded under the caller's name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The shortest token accepted.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also files projects, decides referrals, records progress and advice.
    Adviser,
    /// Also runs the node: submits and cancels jobs, publishes adverts.
    Operator,
}

impl Role {
    pub fn tag(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Adviser => "adviser",
            Role::Operator => "operator",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.tag())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "adviser" => Ok(Role::Adviser),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role {other:?}: viewer, adviser or operator"
            )),
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// One user's token file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub role: Role,
    pub token: String,
}

/// A user name: what goes into the audit log and the file name.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !ok || name == "admin" {
        bail!(
            "user name {name:?}: 1 to 64 of a-z, 0-9, '-' and '.', and not \"admin\" (the operator's own token)"
        );
    }
    Ok(())
}

/// Reads every `tokens/<name>.toml` under `dir` (none if the folder is missing).
pub fn read_tokens(dir: &Path) -> Result<BTreeMap<String, TokenFile>> {
    let mut out = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".toml"))
        else {
            continue;
        };
        check_name(name).with_context(|| path.display().to_string())?;
        let text = crate::files::read_to_string(&path)?;
        let file: TokenFile = aiguillage_core::file::from_toml(&text, &path.display().to_string())?;
        if file.token.len() < MIN_TOKEN_CHARS {
            bail!(
                "{}: the token must be at least {MIN_TOKEN_CHARS} characters",
                path.display()
            );
        }
        out.insert(name.to_owned(), file);
    }
    Ok(out)
}

/// The tokens the admin API accepts: the operator's and the users'. The users' folder is
/// read again whenever it changed since it was last read, and at least every second, so
/// that a user added, removed or given another role on a running node counts at once, for
/// the API and for the console sessions opened with that token alike.
#[derive(Clone)]
pub struct Access {
    admin: Arc<String>,
    dir: PathBuf,
    users: Arc<Mutex<Users>>,
}

/// The users' tokens, when their folder had last changed when they were read, and when
/// they were read.
type Users = (BTreeMap<String, TokenFile>, Option<SystemTime>, Instant);

/// How long a reading of the users' folder is trusted without looking again.
const RELOAD_AFTER: Duration = Duration::from_secs(1);

fn modified(dir: &Path) -> Option<SystemTime> {
    std::fs::metadata(dir).and_then(|m| m.modified()).ok()
}

/// Equal-time comparison: the token guards a local API, but it costs nothing.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Access {
    pub fn new(admin: String, dir: PathBuf) -> Result<Access> {
        let seen = modified(&dir);
        let users = read_tokens(&dir)?;
        Ok(Access {
            admin: Arc::new(admin),
            dir,
            users: Arc::new(Mutex::new((users, seen, Instant::now()))),
        })
    }

    fn find(users: &BTreeMap<String, TokenFile>, token: &str) -> Option<Caller> {
        users.iter().find_map(|(name, f)| {
            same(&f.token, token).then(|| Caller {
                name: name.clone(),
                role: f.role,
            })
        })
    }

    /// The caller a token belongs to.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        if same(&self.admin, token) {
            return Some(Caller {
                name: "admin".into(),
                role: Role::Operator,
            });
        }
        let mut guard = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let changed = modified(&self.dir);
        if changed != guard.1 || guard.2.elapsed() >= RELOAD_AFTER {
            match read_tokens(&self.dir) {
                Ok(users) => *guard = (users, changed, Instant::now()),
                // Keep no stale grant: a folder that cannot be read lets only the operator in.
                Err(e) => {
                    tracing::warn!("cannot read the users' tokens: {e:#}");
                    guard.0.clear();
                }
            }
        }
        Self::find(&guard.0, token)
    }
}
