//! Message kinds, their wire codes and their limits.

use std::fmt;

use crate::codec::Limits;

const KIB: usize = 1024;
const MINUTE_MS: u64 = 60_000;
const DAY_MS: u64 = 24 * 60 * MINUTE_MS;

macro_rules! kinds {
    ($($variant:ident = $code:literal, $name:literal, $max_bytes:expr, $max_items:expr, $max_life:expr;)*) => {
        /// The kind of a signed message. The code is the envelope's second field and part of
        /// the signed bytes, so a signature for one kind never verifies as another.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum MessageKind {
            $($variant,)*
        }

        impl MessageKind {
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$variant),*];

            pub const fn code(self) -> u8 {
                match self { $(MessageKind::$variant => $code,)* }
            }

            pub fn from_code(code: u64) -> Option<Self> {
                match code { $($code => Some(MessageKind::$variant),)* _ => None }
            }

            /// Stable snake_case name, used in docs, metrics and the signed domain.
            pub const fn name(self) -> &'static str {
                match self { $(MessageKind::$variant => $name,)* }
            }

            /// Structural limits for this kind's payload.
            pub const fn limits(self) -> Limits {
                match self {
                    $(MessageKind::$variant => Limits {
                        max_bytes: $max_bytes,
                        max_depth: MAX_DEPTH,
                        max_items: $max_items,
                        shortest_form: false,
                        text_keys: true,
                    },)*
                }
            }

            /// Longest allowed span between `issued_at` and `expires_at`, in milliseconds.
            pub const fn max_lifetime_ms(self) -> u64 {
                match self { $(MessageKind::$variant => $max_life,)* }
            }
        }
    };
}

/// Deepest nesting any payload may use; the deepest schema (a roster) needs 4.
pub const MAX_DEPTH: usize = 6;

kinds! {
    Advert       = 1,  "advert",        16 * KIB,  256,  DAY_MS;
    Roster       = 2,  "roster",        512 * KIB, 2048, 400 * DAY_MS;
    Offer        = 10, "offer",         16 * KIB,  64,   30 * DAY_MS;
    Accept       = 11, "accept",        4 * KIB,   16,   30 * DAY_MS;
    Decline      = 12, "decline",       4 * KIB,   16,   30 * DAY_MS;
    Withdraw     = 13, "withdraw",      4 * KIB,   16,   30 * DAY_MS;
    HandOver     = 14, "hand_over",     128 * KIB, 64,   30 * DAY_MS;
    Progress     = 15, "progress",      4 * KIB,   16,   30 * DAY_MS;
    CallForBids  = 20, "call_for_bids", 8 * KIB,   64,   DAY_MS;
    Bid          = 21, "bid",           4 * KIB,   16,   DAY_MS;
    Reserve      = 22, "reserve",       64 * KIB,  256,  DAY_MS;
    Reserved     = 23, "reserved",      4 * KIB,   16,   DAY_MS;
    Confirm      = 24, "confirm",       4 * KIB,   16,   DAY_MS;
    Release      = 25, "release",       4 * KIB,   16,   DAY_MS;
    Heartbeat    = 26, "heartbeat",     4 * KIB,   16,   DAY_MS;
    JobStatus    = 27, "job_status",    8 * KIB,   16,   30 * DAY_MS;
    UsageReceipt = 28, "usage_receipt", 4 * KIB,   16,   400 * DAY_MS;
    ReceiptAck   = 29, "receipt_ack",   4 * KIB,   16,   400 * DAY_MS;
    OutputRequest = 30, "output_request", 4 * KIB, 16,   DAY_MS;
    JobOutput    = 31, "job_output",    400 * KIB, 16,   DAY_MS;
}

/// The largest payload any kind allows.
pub const MAX_PAYLOAD_BYTES: usize = 512 * KIB;

/// Where peer bytes travel: a gossip topic, a request protocol, or a directory sync
/// answer. Each carries only its own kinds (PROTOCOL.md §6); any other kind on it is
/// refused as `wrong_kind`, never acted on and never forwarded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Channel {
    /// The adverts gossip topic.
    Adverts,
    /// The roster gossip topic.
    Roster,
    /// The referral request protocol.
    Referral,
    /// The overflow request protocol.
    Overflow,
    /// A directory sync answer: the adverts and the roster a peer holds.
    Sync,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Adverts,
        Channel::Roster,
        Channel::Referral,
        Channel::Overflow,
        Channel::Sync,
    ];

    /// The channel's name, as in metrics and PROTOCOL.md.
    pub const fn name(self) -> &'static str {
        match self {
            Channel::Adverts => "adverts",
            Channel::Roster => "roster",
            Channel::Referral => "referral",
            Channel::Overflow => "overflow",
            Channel::Sync => "sync",
        }
    }

    /// Whether `kind` may travel on this channel.
    pub fn allows(self, kind: MessageKind) -> bool {
        use MessageKind::*;
        match self {
            Channel::Adverts => kind == Advert,
            Channel::Roster => kind == Roster,
            Channel::Referral => matches!(
                kind,
                Offer | Accept | Decline | Withdraw | HandOver | Progress
            ),
            Channel::Overflow => matches!(
                kind,
                CallForBids
                    | Bid
                    | Reserve
                    | Reserved
                    | Confirm
                    | Release
                    | Heartbeat
                    | JobStatus
                    | UsageReceipt
                    | ReceiptAck
                    | OutputRequest
                    | JobOutput
            ),
            Channel::Sync => matches!(kind, Advert | Roster),
        }
    }
}

impl MessageKind {
    /// The channel a sender puts this kind on (a sync answer also carries adverts and the
    /// roster).
    pub fn channel(self) -> Channel {
        match self {
            MessageKind::Advert => Channel::Adverts,
            MessageKind::Roster => Channel::Roster,
            k if Channel::Referral.allows(k) => Channel::Referral,
            _ => Channel::Overflow,
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for k in MessageKind::ALL {
            assert!(seen.insert(k.code()), "duplicate code {}", k.code());
            assert_eq!(MessageKind::from_code(u64::from(k.code())), Some(*k));
            assert!(k.limits().max_bytes <= MAX_PAYLOAD_BYTES);
        }
        assert_eq!(MessageKind::from_code(3), None);
    }

    #[test]
    fn every_kind_has_one_channel_to_be_sent_on_and_is_allowed_there() {
        for k in MessageKind::ALL {
            let sent_on: Vec<Channel> = [
                Channel::Adverts,
                Channel::Roster,
                Channel::Referral,
                Channel::Overflow,
            ]
            .into_iter()
            .filter(|c| c.allows(*k))
            .collect();
            assert_eq!(sent_on, vec![k.channel()], "{k}");
        }
        assert!(Channel::Sync.allows(MessageKind::Advert));
        assert!(Channel::Sync.allows(MessageKind::Roster));
        assert!(!Channel::Sync.allows(MessageKind::Offer));
        assert!(!Channel::Adverts.allows(MessageKind::Offer));
        assert!(!Channel::Referral.allows(MessageKind::Advert));
    }
}
