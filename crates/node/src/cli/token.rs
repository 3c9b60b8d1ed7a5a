//! `aiguillage token`: the named users of a node's admin API and console, each with a role
//! (viewer, adviser, operator), one file under the data folder's `tokens/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::Rng;

use crate::access::{Role, TokenFile, check_name, read_tokens};
use crate::config::NodeConfig;
use crate::files;

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create a user with a new token; prints the token once.
    Add {
        /// The node's data folder (its node.toml names the tokens folder).
        #[arg(long, env = "AIGUILLAGE_DATA_DIR")]
        data_dir: PathBuf,
        /// The user's name, as decisions will be recorded: a-z, 0-9, '-' and '.'.
        #[arg(long)]
        name: String,
        /// viewer (reads), adviser (files projects, decides referrals, records progress) or
        /// operator (everything).
        #[arg(long)]
        role: Role,
    },
    /// The users and their roles.
    List {
        /// The node's data folder.
        #[arg(long, env = "AIGUILLAGE_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Remove a user: its token stops working at once.
    Remove {
        /// The node's data folder.
        #[arg(long, env = "AIGUILLAGE_DATA_DIR")]
        data_dir: PathBuf,
        /// The user's name.
        #[arg(long)]
        name: String,
    },
}

fn tokens_dir(data_dir: &Path) -> Result<PathBuf> {
    let cfg = NodeConfig::load(&data_dir.join("node.toml"))
        .with_context(|| format!("{} holds no node", data_dir.display()))?;
    Ok(cfg.admin.tokens_dir)
}

impl TokenCommand {
    pub fn run(self) -> Result<()> {
        match self {
            TokenCommand::Add {
                data_dir,
                name,
                role,
            } => {
                check_name(&name)?;
                let dir = tokens_dir(&data_dir)?;
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!("{name}.toml"));
                files::refuse_existing(&path)?;
                let mut bytes = [0u8; 24];
                rand::rng().fill_bytes(&mut bytes);
                let file = TokenFile {
                    role,
                    token: hex::encode(bytes),
                };
                let text = toml::to_string(&file).context("encoding the token file")?;
                files::create_secret(&path, text.as_bytes())?;
                println!("{name} ({}) can now sign in with:", role.tag());
                println!("{}", file.token);
                println!("(kept in {}, mode 0600)", path.display());
                Ok(())
            }
            TokenCommand::List { data_dir } => {
                let users = read_tokens(&tokens_dir(&data_dir)?)?;
                println!("{:<24} role", "name");
                println!("{:<24} operator (admin.token)", "admin");
                for (name, f) in users {
                    println!("{name:<24} {}", f.role.tag());
                }
                Ok(())
            }
            TokenCommand::Remove { data_dir, name } => {
                check_name(&name)?;
                let path = tokens_dir(&data_dir)?.join(format!("{name}.toml"));
                if !path.exists() {
                    bail!("no user {name} ({} does not exist)", path.display());
                }
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                println!("{name} removed; its token no longer works");
                Ok(())
            }
        }
    }
}
