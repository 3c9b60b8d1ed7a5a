use crate::{MessageKind, Timestamp};

/// Why bytes from a peer, or a value built locally, were refused. Each variant names one
/// failure so that a node can count refusals by reason.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WireError {
    #[error("message too large: {size} bytes, limit {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("message truncated: the CBOR item ends past the end of the input")]
    Truncated,
    #[error("{extra} trailing byte(s) after the message")]
    TrailingBytes { extra: usize },
    #[error("nesting deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("a collection holds {len} items, limit {limit}")]
    TooManyItems { len: u64, limit: u64 },
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    #[error("unknown protocol version {0} (this node speaks {v})", v = crate::PROTOCOL_VERSION)]
    UnknownVersion(u64),
    #[error("unknown message kind {0}")]
    UnknownKind(u64),
    #[error("wrong message kind: expected {expected}, found {found}")]
    WrongKind {
        expected: MessageKind,
        found: MessageKind,
    },
    #[error("public key is not a valid ed25519 point")]
    BadKey,
    #[error("signature does not verify")]
    BadSignature,
    #[error("message expired at {expires_at} (now {now})")]
    Expired {
        expires_at: Timestamp,
        now: Timestamp,
    },
    #[error("message not valid before {issued_at} (now {now})")]
    NotYetValid {
        issued_at: Timestamp,
        now: Timestamp,
    },
    #[error("bad lifetime: {0}")]
    BadLifetime(String),
    #[error("signer {signer} does not match the {field} {claimed} in the message")]
    SignerMismatch {
        signer: String,
        field: &'static str,
        claimed: String,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl WireError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        WireError::Invalid {
            field,
            reason: reason.into(),
        }
    }

    /// A short stable label for metrics (`refused_total{reason=...}`).
    pub fn reason_label(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "too_large",
            WireError::Truncated => "truncated",
            WireError::TrailingBytes { .. } => "trailing_bytes",
            WireError::TooDeep { .. } => "too_deep",
            WireError::TooManyItems { .. } => "too_many_items",
            WireError::Malformed(_) => "malformed",
            WireError::UnknownVersion(_) => "unknown_version",
            WireError::UnknownKind(_) => "unknown_kind",
            WireError::WrongKind { .. } => "wrong_kind",
            WireError::BadKey => "bad_key",
            WireError::BadSignature => "bad_signature",
            WireError::Expired { .. } => "expired",
            WireError::NotYetValid { .. } => "not_yet_valid",
            WireError::BadLifetime(_) => "bad_lifetime",
            WireError::SignerMismatch { .. } => "signer_mismatch",
            WireError::Invalid { .. } => "invalid",
        }
    }
}
