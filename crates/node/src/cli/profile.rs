//! `aiguillage profile`: the member profiles under config/.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Subcommand)]
pub enum ProfileCommand {
    /// Validate every member profile under a folder.
    Check {
        /// The folder (its factories/ and antennas/ are read).
        #[arg(default_value = "config")]
        dir: PathBuf,
    },
}

impl ProfileCommand {
    pub fn run(self) -> Result<()> {
        match self {
            ProfileCommand::Check { dir } => crate::profiles::check(&dir),
        }
    }
}
