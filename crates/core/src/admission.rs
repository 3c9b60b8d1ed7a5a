//! Admission: the one door for peer bytes. A message is checked once, here, in the order of
//! PROTOCOL.md §3, against the channel it came on: framing, the kinds that channel carries,
//! lifetime, time, the signature (verified once), the body, and trust. What passes is an
//! [`Admitted`] message with its body decoded, which [`crate::Input::Received`] acts on
//! without checking it again; what fails is a [`Refused`] with its §3 label.

use std::cell::Cell;

use aiguillage_wire::{
    Accept, Advert, Bid, CallForBids, Channel, Confirm, Decline, Envelope, HandOver, Heartbeat,
    JobOutput, JobStatus, MemberId, Message, MessageKind, Offer, OutputRequest, Progress,
    ReceiptAck, Release, Reserve, Reserved, Roster, Timestamp, TrustError, UsageReceipt, WireError,
    Withdraw,
};

use crate::Core;

macro_rules! bodies {
    ($($variant:ident($ty:ty) $(boxed $boxed:tt)?),* $(,)?) => {
        /// A message's body, decoded and checked against its signer.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Body {
            Advert(Advert),
            Roster(Roster),
            $($variant(bodies!(@ty $ty $(, $boxed)?)),)*
        }

        fn body_of(envelope: &Envelope) -> Result<Body, WireError> {
            match envelope.kind {
                MessageKind::Advert => envelope.decode_payload().map(Body::Advert),
                MessageKind::Roster => envelope.decode_payload().map(Body::Roster),
                $(MessageKind::$variant => envelope
                    .decode_payload::<$ty>()
                    .map(|m| Body::$variant(m.into())),)*
            }
        }

        impl Body {
            /// The referral or job the message is about (none for adverts and rosters).
            pub fn subject(&self) -> Option<&str> {
                match self {
                    Body::Advert(_) | Body::Roster(_) => None,
                    $(Body::$variant(m) => m.subject(),)*
                }
            }
        }
    };
    (@ty $ty:ty) => { $ty };
    (@ty $ty:ty, $boxed:tt) => { Box<$ty> };
}

bodies! {
    Offer(Offer),
    Accept(Accept),
    Decline(Decline),
    Withdraw(Withdraw),
    HandOver(HandOver),
    Progress(Progress),
    CallForBids(CallForBids),
    Bid(Bid),
    Reserve(Reserve) boxed _,
    Reserved(Reserved),
    Confirm(Confirm),
    Release(Release),
    Heartbeat(Heartbeat),
    JobStatus(JobStatus),
    UsageReceipt(UsageReceipt),
    ReceiptAck(ReceiptAck),
    OutputRequest(OutputRequest),
    JobOutput(JobOutput) boxed _,
}

/// Decodes the body of an envelope whose signature need not be checked again (one this
/// member sealed itself).
pub(crate) fn own_body(envelope: &Envelope) -> Option<Body> {
    body_of(envelope).ok()
}

/// A message that passed admission: its envelope (kept for storing and forwarding) and its
/// body.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    pub envelope: Envelope,
    pub body: Body,
}

/// A message refused at admission, with its PROTOCOL.md §3 label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub reason: &'static str,
    /// The kind, once the framing named one.
    pub kind: Option<MessageKind>,
    /// The signer the envelope names, once the framing was read (not yet trusted).
    pub signer: Option<MemberId>,
    pub detail: String,
}

impl Refused {
    fn wire(e: WireError, envelope: Option<&Envelope>) -> Refused {
        Refused {
            reason: e.reason_label(),
            kind: envelope.map(|e| e.kind),
            signer: envelope.map(|e| e.signer.clone()),
            detail: e.to_string(),
        }
    }

    fn trust(e: TrustError, envelope: &Envelope) -> Refused {
        Refused {
            reason: e.reason_label(),
            kind: Some(envelope.kind),
            signer: Some(envelope.signer.clone()),
            detail: e.to_string(),
        }
    }
}

/// Signatures verified by admission, for tests and benchmarks that count them.
#[derive(Debug, Default)]
pub(crate) struct Verifications(Cell<u64>);

impl Verifications {
    fn one(&self) {
        self.0.set(self.0.get() + 1);
    }
}

impl Core {
    /// Admits peer bytes that came on `channel`: the framing is read first (size, version,
    /// structure, kind), then [`Core::admit`].
    pub fn admit_bytes(
        &self,
        now: Timestamp,
        channel: Channel,
        bytes: &[u8],
    ) -> Result<Admitted, Refused> {
        let envelope = Envelope::from_bytes(bytes).map_err(|e| Refused::wire(e, None))?;
        self.admit(now, channel, envelope)
    }

    /// Admits an envelope whose framing was read: the rest of PROTOCOL.md §3, in its order.
    pub fn admit(
        &self,
        now: Timestamp,
        channel: Channel,
        envelope: Envelope,
    ) -> Result<Admitted, Refused> {
        let wire = |e: WireError, env: &Envelope| Refused::wire(e, Some(env));
        if envelope.kind == MessageKind::Roster {
            // A roster answers to the pinned authority key, before anything else.
            if envelope.key != self.authority {
                return Err(Refused::trust(
                    TrustError::NotSignedByAuthority {
                        found: envelope.key,
                    },
                    &envelope,
                ));
            }
            if envelope.signer.as_str() != aiguillage_wire::AUTHORITY_ID {
                let e = WireError::SignerMismatch {
                    signer: envelope.signer.to_string(),
                    field: "roster signer",
                    claimed: aiguillage_wire::AUTHORITY_ID.to_owned(),
                };
                return Err(wire(e, &envelope));
            }
        }
        if !channel.allows(envelope.kind) {
            return Err(Refused {
                reason: "wrong_kind",
                kind: Some(envelope.kind),
                signer: Some(envelope.signer.clone()),
                detail: format!("{} does not travel on the {channel} channel", envelope.kind),
            });
        }
        envelope.check_window(now).map_err(|e| wire(e, &envelope))?;
        let cached = envelope.kind == MessageKind::Advert
            && self
                .verify_cache
                .as_ref()
                .is_some_and(|c| c.holds(&envelope));
        if !cached {
            self.verifications.one();
            envelope
                .verify_signature()
                .map_err(|e| wire(e, &envelope))?;
            if let Some(c) = &self.verify_cache {
                c.remember(&envelope, now);
            }
        }
        let body = body_of(&envelope).map_err(|e| wire(e, &envelope))?;
        match &body {
            Body::Roster(_) => {}
            other => {
                let roster = match &self.state.roster {
                    Some((r, _)) => r,
                    None => {
                        return Err(Refused::trust(
                            TrustError::NotRostered(envelope.signer.clone()),
                            &envelope,
                        ));
                    }
                };
                let entry = roster
                    .authorise(&envelope, now)
                    .map_err(|e| Refused::trust(e, &envelope))?;
                if let Body::Advert(a) = other
                    && (entry.role != a.role || entry.country != a.country)
                {
                    return Err(Refused {
                        reason: "roster_mismatch",
                        kind: Some(envelope.kind),
                        signer: Some(envelope.signer.clone()),
                        detail: format!(
                            "advert says {} in {}, the roster says {} in {}",
                            a.role, a.country, entry.role, entry.country
                        ),
                    });
                }
            }
        }
        Ok(Admitted { envelope, body })
    }

    /// Whether an envelope refused for its time window (`expired`, `not_yet_valid`) was
    /// still signed by a rostered member with its rostered key: then its `issued_at` says
    /// something about the two clocks. Verifies the signature; the caller rate-limits.
    pub fn time_witness(&self, envelope: &Envelope) -> bool {
        let Some((roster, _)) = &self.state.roster else {
            return false;
        };
        if roster
            .member(&envelope.signer)
            .is_none_or(|m| m.key != envelope.key)
        {
            return false;
        }
        self.verifications.one();
        envelope.verify_signature().is_ok()
    }

    /// Signatures verified by admission since the core was built.
    pub fn verifications(&self) -> u64 {
        self.verifications.0.get()
    }
}

impl From<Refused> for crate::Refusal {
    fn from(r: Refused) -> crate::Refusal {
        crate::Refusal {
            from: r.signer,
            kind: r.kind.map(|k| k.name().to_owned()),
            reason: r.reason.to_owned(),
            detail: r.detail,
        }
    }
}
