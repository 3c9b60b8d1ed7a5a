//! The Aiguillage wire protocol.
//!
//! Every message travels in a signed [`Envelope`]: the exact CBOR bytes of the payload,
//! the signer's member id and public key, a validity window, and an ed25519 signature over
//! a domain-separated byte string that binds the protocol version and message kind. This
//! crate holds the message types, encoding and decoding with limits, and the roster that
//! decides which keys are trusted. It performs no I/O and reads no clock: time is passed in.
//!
//! docs/PROTOCOL.md is the normative description; its test vectors are checked by tests.

mod advert;
pub mod codec;
mod envelope;
mod error;
mod ids;
pub mod keys;
mod kind;
mod overflow;
mod referral;
mod roster;
mod vocab;

pub use advert::{Advert, Dataset, GpuCapacity};
pub use envelope::{
    Envelope, MAX_CLOCK_SKEW_MS, MAX_ENVELOPE_BYTES, Message, PROTOCOL_VERSION, SIGNING_DOMAIN,
    Verified, deliverable, open, signing_input,
};
pub use error::WireError;
pub use ids::{CountryCode, JobId, Language, MemberId, ProjectId, ReferralId, Timestamp};
pub use keys::{PublicKey, SigningKey};
pub use kind::{Channel, MAX_DEPTH, MAX_PAYLOAD_BYTES, MessageKind};
pub use overflow::{
    Bid, CallForBids, Confirm, EnvVar, Heartbeat, JobOutput, JobRequirements, JobSpec, JobStatus,
    OUTPUT_TAIL_BYTES, OutputRequest, ReceiptAck, Release, Reserve, Reserved, UsageReceipt,
};
pub use referral::{
    Accept, ConsentScope, Decline, Dossier, HandOver, Offer, Progress, ProjectCard, Withdraw,
    origin_of,
};
pub use roster::{AUTHORITY_ID, LATEST_TIME, Roster, RosterEntry, TrustError};
pub use vocab::{
    CompanySize, DeclineReason, JobState, ProgressState, Role, Sector, SectorLevel, Service,
};

/// Gossipsub topic for adverts.
pub const TOPIC_ADVERTS: &str = "/aiguillage/1/adverts";
/// Gossipsub topic for roster updates.
pub const TOPIC_ROSTER: &str = "/aiguillage/1/roster";
/// Request-response protocol for referral messages.
pub const PROTOCOL_REFERRAL: &str = "/aiguillage/referral/1";
/// Request-response protocol for overflow messages.
pub const PROTOCOL_OVERFLOW: &str = "/aiguillage/overflow/1";
/// Request-response protocol for pulling a peer's directory on connect (anti-entropy).
pub const PROTOCOL_SYNC: &str = "/aiguillage/sync/1";
/// Kademlia protocol name, kept off the public IPFS DHT.
pub const PROTOCOL_KAD: &str = "/aiguillage/kad/1";
