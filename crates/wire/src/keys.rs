//! Member keys: the ed25519 public key as carried on the wire, and PKCS#8 PEM for secret
//! keys on disk. One key per member: it signs the member's messages and is its libp2p
//! identity.

use std::fmt;

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::WireError;

/// An ed25519 public key: 32 bytes on the wire (a CBOR byte string), lower-case hex in text.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PublicKey(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl PublicKey {
    pub fn of(key: &SigningKey) -> Self {
        PublicKey(key.verifying_key().to_bytes())
    }

    /// Decompresses the point; fails for bytes that are not a curve point.
    pub fn verifying_key(&self) -> Result<VerifyingKey, WireError> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| WireError::BadKey)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Self, WireError> {
        let bytes = hex::decode(s.trim())
            .map_err(|e| WireError::invalid("public key", format!("not hex: {e}")))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            WireError::invalid("public key", format!("{} bytes, expected 32", b.len()))
        })?;
        let key = PublicKey(arr);
        if key.verifying_key()?.is_weak() {
            return Err(WireError::BadKey);
        }
        Ok(key)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = WireError;
    fn from_str(s: &str) -> Result<Self, WireError> {
        Self::from_hex(s)
    }
}

/// Encodes a secret key as PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`).
pub fn secret_key_to_pem(key: &SigningKey) -> String {
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .expect("an ed25519 key always encodes as PKCS#8")
}

/// Decodes a PKCS#8 PEM ed25519 secret key.
pub fn secret_key_from_pem(pem: &str) -> Result<SigningKey, WireError> {
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| WireError::invalid("secret key", format!("not a PKCS#8 PEM ed25519 key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_and_garbage_is_refused() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let pem = secret_key_to_pem(&key);
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = secret_key_from_pem(&pem).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());
        assert!(
            secret_key_from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn public_key_hex_round_trips_and_checks_length() {
        let key = PublicKey::of(&SigningKey::from_bytes(&[7u8; 32]));
        assert_eq!(PublicKey::from_hex(&key.to_hex()).unwrap(), key);
        assert!(PublicKey::from_hex("abcd").is_err());
        assert!(PublicKey::from_hex("zz").is_err());
    }
}
