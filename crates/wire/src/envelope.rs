//! The signed envelope that carries every message.
//!
//! On the wire an envelope is a CBOR array of eight items:
//! `[version, kind, signer, key, issued_at, expires_at, payload, signature]`. The payload is
//! a byte string holding the exact CBOR bytes that were signed, so a receiver verifies the
//! bytes it received and never re-encodes anything. See docs/PROTOCOL.md.

use ed25519_dalek::{Signature, Signer};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::codec::{self, Limits};
use crate::{
    MAX_PAYLOAD_BYTES, MemberId, MessageKind, PublicKey, SigningKey, Timestamp, WireError,
};

/// Protocol version carried in every envelope and signed with it.
pub const PROTOCOL_VERSION: u8 = 1;

/// Prefix of every signed byte string: no other protocol signs messages starting with it.
pub const SIGNING_DOMAIN: &[u8] = b"aiguillage/signed-message\0";

/// How far a message's `issued_at` may lie in the receiver's future before it is refused.
pub const MAX_CLOCK_SKEW_MS: u64 = 30_000;

/// Largest encoded envelope: the largest payload plus the fixed fields and the signer id.
pub const MAX_ENVELOPE_BYTES: usize = MAX_PAYLOAD_BYTES + 256;

/// A message type that travels in an envelope.
pub trait Message: Serialize + DeserializeOwned {
    const KIND: MessageKind;

    /// Checks that a decoded message makes sense and is consistent with its signer.
    fn validate(&self, signer: &MemberId) -> Result<(), WireError>;

    /// The referral or job the message is about, if it is about one.
    fn subject(&self) -> Option<&str> {
        None
    }
}

/// A decoded envelope whose payload has not been opened yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub kind: MessageKind,
    pub signer: MemberId,
    pub key: PublicKey,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub payload: Vec<u8>,
    pub signature: [u8; 64],
}

#[derive(Serialize)]
struct EnvelopeOut<'a>(
    u8,
    u8,
    &'a str,
    #[serde(with = "serde_bytes")] &'a [u8; 32],
    u64,
    u64,
    #[serde(with = "serde_bytes")] &'a [u8],
    #[serde(with = "serde_bytes")] &'a [u8; 64],
);

#[derive(Deserialize)]
struct EnvelopeIn(
    u64,
    u64,
    String,
    #[serde(with = "serde_bytes")] [u8; 32],
    u64,
    u64,
    #[serde(with = "serde_bytes")] Vec<u8>,
    #[serde(with = "serde_bytes")] [u8; 64],
);

const ENVELOPE_LIMITS: Limits = Limits {
    max_bytes: MAX_ENVELOPE_BYTES,
    max_depth: 1,
    max_items: 8,
    // One byte form per envelope: gossip deduplicates on the hash of these bytes.
    shortest_form: true,
    text_keys: false,
};

/// The exact bytes an envelope's signature covers:
/// `SIGNING_DOMAIN | version u8 | kind u8 | len(signer) u8 | signer | key[32] |
///  issued_at u64 BE | expires_at u64 BE | len(payload) u32 BE | payload`.
pub fn signing_input(
    kind: MessageKind,
    signer: &MemberId,
    key: &PublicKey,
    issued_at: Timestamp,
    expires_at: Timestamp,
    payload: &[u8],
) -> Vec<u8> {
    let signer = signer.as_str().as_bytes();
    let mut out = Vec::with_capacity(SIGNING_DOMAIN.len() + 59 + signer.len() + payload.len());
    out.extend_from_slice(SIGNING_DOMAIN);
    out.push(PROTOCOL_VERSION);
    out.push(kind.code());
    // MemberId::MAX_LEN is 64, so the length always fits in a byte.
    out.push(signer.len() as u8);
    out.extend_from_slice(signer);
    out.extend_from_slice(&key.0);
    out.extend_from_slice(&issued_at.millis().to_be_bytes());
    out.extend_from_slice(&expires_at.millis().to_be_bytes());
    // Payloads are bounded by MAX_PAYLOAD_BYTES, far below u32::MAX.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// Encodes `message`, signs it as `signer` and returns the envelope.
    pub fn seal<M: Message>(
        message: &M,
        signer: &MemberId,
        key: &SigningKey,
        issued_at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Envelope, WireError> {
        // What every receiver will check, checked before signing.
        let payload = deliverable(message, signer)?;
        check_lifetime(M::KIND, issued_at, expires_at)?;
        let public = PublicKey::of(key);
        let input = signing_input(M::KIND, signer, &public, issued_at, expires_at, &payload);
        let signature = key.sign(&input).to_bytes();
        Ok(Envelope {
            kind: M::KIND,
            signer: signer.clone(),
            key: public,
            issued_at,
            expires_at,
            payload,
            signature,
        })
    }

    /// Signs `payload` as a message of `kind` with no check at all: for tests and tools
    /// that build what a receiver must refuse. Honest senders use [`Envelope::seal`].
    pub fn seal_unchecked(
        kind: MessageKind,
        signer: &MemberId,
        key: &SigningKey,
        issued_at: Timestamp,
        expires_at: Timestamp,
        payload: Vec<u8>,
    ) -> Envelope {
        let public = PublicKey::of(key);
        let input = signing_input(kind, signer, &public, issued_at, expires_at, &payload);
        Envelope {
            kind,
            signer: signer.clone(),
            key: public,
            issued_at,
            expires_at,
            payload,
            signature: key.sign(&input).to_bytes(),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::to_vec(&EnvelopeOut(
            PROTOCOL_VERSION,
            self.kind.code(),
            self.signer.as_str(),
            &self.key.0,
            self.issued_at.millis(),
            self.expires_at.millis(),
            &self.payload,
            &self.signature,
        ))
    }

    /// Decodes an envelope's framing without verifying it. Size, structure, version and kind
    /// are checked here; signature and time by [`Envelope::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope, WireError> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(WireError::TooLarge {
                size: bytes.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        // The version is the array's first item; read it before the rest so that a future
        // version with another layout is reported as a version, not as malformed.
        if let Some(version) = codec::peek_first_uint(bytes)
            && version != u64::from(PROTOCOL_VERSION)
        {
            return Err(WireError::UnknownVersion(version));
        }
        let types = codec::array_item_types(bytes, ENVELOPE_LIMITS)?;
        // Exact CBOR types (uint, uint, text, bytes, uint, uint, bytes, bytes): the serde
        // decoder alone would also take a text string where bytes are due, giving one
        // message two byte forms.
        if types != [0, 0, 3, 2, 0, 0, 2, 2] {
            return Err(WireError::Malformed(format!(
                "envelope items have CBOR major types {types:?}, expected [0, 0, 3, 2, 0, 0, 2, 2]"
            )));
        }
        let EnvelopeIn(version, kind, signer, key, issued_at, expires_at, payload, signature) =
            codec::from_slice(bytes, ENVELOPE_LIMITS)?;
        if version != u64::from(PROTOCOL_VERSION) {
            return Err(WireError::UnknownVersion(version));
        }
        let kind = MessageKind::from_code(kind).ok_or(WireError::UnknownKind(kind))?;
        let limit = kind.limits().max_bytes;
        if payload.len() > limit {
            return Err(WireError::TooLarge {
                size: payload.len(),
                limit,
            });
        }
        Ok(Envelope {
            kind,
            signer: MemberId::new(signer)
                .map_err(|e| WireError::Malformed(format!("envelope signer: {e}")))?,
            key: PublicKey(key),
            issued_at: Timestamp(issued_at),
            expires_at: Timestamp(expires_at),
            payload,
            signature,
        })
    }

    /// Checks the signature and that the message is valid at `now`.
    pub fn verify(&self, now: Timestamp) -> Result<(), WireError> {
        self.check_window(now)?;
        self.verify_signature()
    }

    /// The time checks of [`Envelope::verify`] without the signature: the lifetime the kind
    /// allows, and validity at `now` (allowing for clock skew).
    pub fn check_window(&self, now: Timestamp) -> Result<(), WireError> {
        check_lifetime(self.kind, self.issued_at, self.expires_at)?;
        if now.millis().saturating_add(MAX_CLOCK_SKEW_MS) < self.issued_at.millis() {
            return Err(WireError::NotYetValid {
                issued_at: self.issued_at,
                now,
            });
        }
        if now >= self.expires_at {
            return Err(WireError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// Checks the signature alone, for stored messages whose time has passed.
    pub fn verify_signature(&self) -> Result<(), WireError> {
        let key = self.key.verifying_key()?;
        if key.is_weak() {
            return Err(WireError::BadKey);
        }
        let input = signing_input(
            self.kind,
            &self.signer,
            &self.key,
            self.issued_at,
            self.expires_at,
            &self.payload,
        );
        key.verify_strict(&input, &Signature::from_bytes(&self.signature))
            .map_err(|_| WireError::BadSignature)
    }

    /// Decodes the payload as `M` without checking signature or time: for envelopes that
    /// were verified when they arrived and were stored since.
    pub fn decode_payload<M: Message>(&self) -> Result<M, WireError> {
        if self.kind != M::KIND {
            return Err(WireError::WrongKind {
                expected: M::KIND,
                found: self.kind,
            });
        }
        let message: M = codec::from_payload(&self.payload, M::KIND.limits())?;
        message.validate(&self.signer)?;
        Ok(message)
    }

    /// Verifies the envelope at `now` and decodes its payload as `M`.
    pub fn open<M: Message>(self, now: Timestamp) -> Result<Verified<M>, WireError> {
        if self.kind != M::KIND {
            return Err(WireError::WrongKind {
                expected: M::KIND,
                found: self.kind,
            });
        }
        self.verify(now)?;
        let message = self.decode_payload()?;
        Ok(Verified {
            envelope: self,
            message,
        })
    }
}

/// The body of `message` from `signer`, if every receiver would take it: the message's own
/// rules, then its kind's size and structure limits. A sender checks what an operator asks
/// it to send with this before it keeps anything.
pub fn deliverable<M: Message>(message: &M, signer: &MemberId) -> Result<Vec<u8>, WireError> {
    message.validate(signer)?;
    let payload = codec::to_vec(message);
    codec::check_payload(&payload, M::KIND.limits())?;
    Ok(payload)
}

/// Decodes, verifies and opens one message of kind `M` from peer bytes.
pub fn open<M: Message>(bytes: &[u8], now: Timestamp) -> Result<Verified<M>, WireError> {
    Envelope::from_bytes(bytes)?.open(now)
}

fn check_lifetime(
    kind: MessageKind,
    issued_at: Timestamp,
    expires_at: Timestamp,
) -> Result<(), WireError> {
    if expires_at <= issued_at {
        return Err(WireError::BadLifetime(format!(
            "expires_at {expires_at} is not after issued_at {issued_at}"
        )));
    }
    let span = expires_at.millis() - issued_at.millis();
    if span > kind.max_lifetime_ms() {
        return Err(WireError::BadLifetime(format!(
            "{kind} lives {span} ms, limit {} ms",
            kind.max_lifetime_ms()
        )));
    }
    Ok(())
}

/// A message whose envelope verified, with the envelope kept for storing or forwarding.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified<M> {
    pub envelope: Envelope,
    pub message: M,
}

impl<M> Verified<M> {
    pub fn signer(&self) -> &MemberId {
        &self.envelope.signer
    }
}

/// Stored and nested as its wire bytes (a CBOR byte string), so a stored envelope is
/// exactly what was received and still verifies.
impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.to_bytes())
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = serde_bytes::ByteBuf::deserialize(deserializer)?;
        Envelope::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}
