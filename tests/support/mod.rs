//! Helpers shared by the workspace integration tests: run the real `aiguillage` binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_aiguillage"))
}

/// The repository root, where `config/` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The outcome of one `aiguillage` run, with stdout and stderr as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "aiguillage failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The command refused with an error exit code (1, or 2 for a usage error), not by
    /// panicking (101).
    pub fn fails(self) -> Run {
        assert!(
            matches!(self.code, Some(1 | 2)),
            "aiguillage should have refused with exit code 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `aiguillage ARGS` in `dir`.
pub fn run_in(dir: &Path, args: &[&str]) -> Run {
    Command::new(bin())
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("starting the aiguillage binary")
        .into()
}

/// A fresh key file in `dir`; returns its public key in hex.
pub fn new_key(dir: &Path, name: &str) -> String {
    run_in(dir, &["keys", "generate", "--out", name]).ok();
    run_in(dir, &["keys", "show", name, "--json"]).ok().json()["public_key"]
        .as_str()
        .unwrap()
        .to_owned()
}
