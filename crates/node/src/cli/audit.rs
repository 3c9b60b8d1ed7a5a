//! `aiguillage audit`: the member's hash-chained, signed audit log, read from its store
//! with the node stopped.

use std::path::PathBuf;

use aiguillage_wire::PublicKey;
use anyhow::{Context, Result};

use crate::{clock, daemon, files};

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and signatures (with the node stopped).
    Verify {
        /// The node's data folder.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Write the audit log as JSON lines to stdout.
    Export {
        /// The node's data folder.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

impl AuditCommand {
    pub fn run(self) -> Result<()> {
        match self {
            AuditCommand::Verify { data_dir } => {
                let store = daemon::open_store(&data_dir).context("is the node still running?")?;
                let key = files::read_secret_key(&data_dir.join("key.pem"))?;
                let n = store.audit_verify(&PublicKey::of(&key))?;
                println!(
                    "audit log of {} verified: {n} entries, chain intact, every signature valid",
                    data_dir.display()
                );
                Ok(())
            }
            AuditCommand::Export { data_dir } => {
                let store = daemon::open_store(&data_dir).context("is the node still running?")?;
                for r in store.audit_entries()? {
                    println!(
                        "{}",
                        serde_json::json!({
                            "seq": r.seq, "at": clock::format_time(r.at), "event": r.event,
                            "subject": r.subject, "detail": r.detail,
                            "prev": hex::encode(r.prev), "signature": hex::encode(r.signature),
                        })
                    );
                }
                Ok(())
            }
        }
    }
}
