//! `aiguillage keys`: a member's ed25519 key, in PKCS#8 PEM on disk.

use std::path::{Path, PathBuf};

use aiguillage_wire::{PublicKey, SigningKey, keys};
use anyhow::Result;
use rand::Rng;

use super::JsonFlag;
use crate::files;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a new key; the file is created with mode 0600 and never overwritten.
    Generate {
        /// Where to write the key (PKCS#8 PEM).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key and the libp2p PeerId of a key file.
    Show {
        /// The key file.
        file: PathBuf,
        #[command(flatten)]
        json: JsonFlag,
    },
}

impl KeysCommand {
    pub fn run(self) -> Result<()> {
        match self {
            KeysCommand::Generate { out } => generate(&out),
            KeysCommand::Show { file, json } => show(&file, json.json),
        }
    }
}

fn generate(out: &Path) -> Result<()> {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let key = SigningKey::from_bytes(&secret);
    files::create_secret(out, keys::secret_key_to_pem(&key).as_bytes())?;
    let public = PublicKey::of(&key);
    println!("wrote {} (mode 0600)", out.display());
    println!("public key: {public}");
    println!("peer id:    {}", aiguillage_net::peer_id_of(&public)?);
    Ok(())
}

fn show(path: &Path, json: bool) -> Result<()> {
    let key = files::read_secret_key(path)?;
    let public = PublicKey::of(&key);
    let peer = aiguillage_net::peer_id_of(&public)?;
    if json {
        println!(
            "{}",
            serde_json::json!({ "public_key": public.to_hex(), "peer_id": peer.to_string() })
        );
    } else {
        println!("public key: {public}");
        println!("peer id:    {peer}");
    }
    Ok(())
}
