//! Aiguillage networking on rust-libp2p.
//!
//! A member's libp2p identity is its federation signing key, so its PeerId follows from
//! the public key in the roster and a connection can be checked against the roster before
//! any message is read.

use aiguillage_wire::{PublicKey, WireError};
pub use libp2p::PeerId;
use libp2p::identity;

/// The libp2p PeerId of a member's ed25519 public key; fails for bytes that are not a
/// curve point.
pub fn peer_id_of(key: &PublicKey) -> Result<PeerId, WireError> {
    let ed = identity::ed25519::PublicKey::try_from_bytes(&key.0).map_err(|_| WireError::BadKey)?;
    Ok(identity::PublicKey::from(ed).to_peer_id())
}

/// The libp2p keypair for a member's secret key.
pub fn keypair_of(secret: &aiguillage_wire::SigningKey) -> identity::Keypair {
    identity::Keypair::ed25519_from_bytes(secret.to_bytes())
        .expect("a 32-byte ed25519 secret is always a valid libp2p key")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_id_of_the_public_key_matches_the_keypair() {
        let secret = aiguillage_wire::SigningKey::from_bytes(&[5u8; 32]);
        let from_keypair = keypair_of(&secret).public().to_peer_id();
        assert_eq!(peer_id_of(&PublicKey::of(&secret)).unwrap(), from_keypair);
        let other = aiguillage_wire::SigningKey::from_bytes(&[6u8; 32]);
        assert_ne!(peer_id_of(&PublicKey::of(&other)).unwrap(), from_keypair);
    }
}
