//! Loading member profiles from `config/`.

use std::path::{Path, PathBuf};

use aiguillage_core::profile::{self, Profile};
use anyhow::{Result, bail};

/// The profile files under `dir`: `factories/*.toml` and `antennas/*.toml` when those
/// folders exist, otherwise every `*.toml` directly in `dir`.
pub fn profile_paths(dir: &Path) -> Result<Vec<PathBuf>> {
    let subdirs: Vec<PathBuf> = ["factories", "antennas"]
        .iter()
        .map(|s| dir.join(s))
        .filter(|p| p.is_dir())
        .collect();
    let dirs = if subdirs.is_empty() {
        vec![dir.to_path_buf()]
    } else {
        subdirs
    };
    let mut paths = Vec::new();
    for d in dirs {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| anyhow::anyhow!("reading folder {}: {e}", d.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
    }
    paths.sort();
    Ok(paths)
}

/// Loads and cross-checks every profile under `dir`; the error lists every problem found.
pub fn load_dir(dir: &Path) -> Result<Vec<Profile>> {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for path in profile_paths(dir)? {
        let source = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Err(e) => problems.push(format!("{source}: {e}")),
            Ok(text) => match Profile::from_toml(&text, &source) {
                Ok(p) => loaded.push((source, p)),
                Err(e) => problems.push(e.to_string()),
            },
        }
    }
    problems.extend(profile::cross_check(&loaded));
    if !problems.is_empty() {
        bail!(
            "{} problem(s) in the profiles under {}:\n{}",
            problems.len(),
            dir.display(),
            problems.join("\n")
        );
    }
    if loaded.is_empty() {
        bail!("no profiles (*.toml) under {}", dir.display());
    }
    Ok(loaded.into_iter().map(|(_, p)| p).collect())
}

pub fn load_one(path: &Path) -> Result<Profile> {
    let text = crate::files::read_to_string(path)?;
    Ok(Profile::from_toml(&text, &path.display().to_string())?)
}

pub fn check(dir: &Path) -> Result<()> {
    let profiles = load_dir(dir)?;
    let factories = profiles
        .iter()
        .filter(|p| p.role == aiguillage_wire::Role::Factory)
        .count();
    let partial = profiles
        .iter()
        .filter(|p| p.confidence == aiguillage_core::Confidence::Partial)
        .count();
    let unknown_gpu = profiles
        .iter()
        .filter(|p| p.gpu.accelerators.is_none())
        .count();
    println!(
        "{} profiles valid: {} factories, {} antennas; {} of partial confidence; {} with no public GPU count",
        profiles.len(),
        factories,
        profiles.len() - factories,
        partial,
        unknown_gpu
    );
    Ok(())
}
