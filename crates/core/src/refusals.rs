//! What this member does when a peer refuses one of its messages (the answer on a request
//! stream named a PROTOCOL.md §3 reason): the refusal goes into the history of the referral
//! or job it was about, and a message refused for a reason that will not change is not
//! sent again. An offer refused so moves on to the next candidate.

use aiguillage_wire::{Envelope, JobId, MemberId, MessageKind, ReferralId, Timestamp};

use crate::Core;
use crate::admission::Body;
use crate::state::{StateKey, record};

/// Whether a receiver would refuse the same message again: every reason but those of a
/// busy receiver, a clock that disagrees, or a roster not yet spread.
pub fn refusal_is_permanent(reason: &str) -> bool {
    !matches!(
        reason,
        "rate_limited"
            | "unavailable"
            | "expired"
            | "not_yet_valid"
            | "not_rostered"
            | "outside_validity"
    )
}

impl Core {
    /// A peer refused `envelope`, which this member sent it.
    pub(crate) fn on_refused(
        &mut self,
        now: Timestamp,
        to: &MemberId,
        envelope: &Envelope,
        reason: &str,
    ) {
        if envelope.signer != self.me {
            return;
        }
        let kind = envelope.kind;
        let Some(body) = crate::admission::own_body(envelope) else {
            return;
        };
        let Some(subject) = body.subject().map(str::to_owned) else {
            return;
        };
        let permanent = refusal_is_permanent(reason);
        let detail = format!(
            "{kind} refused by {to}: {reason}{}",
            if permanent { "" } else { " (will retry)" }
        );
        self.note_failure(now, kind, &subject, "refused", &detail);
        self.audit(now, "message_refused", &subject, detail);
        // A request for output is asked again only when the operator asks: never blocked.
        if !permanent || matches!(kind, MessageKind::OutputRequest | MessageKind::JobOutput) {
            return;
        }
        if let Body::Offer(offer) = &body {
            self.offer_refused(now, to, offer, reason);
            return;
        }
        self.state
            .blocked
            .insert((to.clone(), kind.name().to_owned(), subject));
        self.dirty.insert(StateKey::Meta);
    }

    /// Whether sending `kind` about `subject` to `to` was refused for good.
    pub(crate) fn send_blocked(&self, to: &MemberId, kind: MessageKind, subject: &str) -> bool {
        !self.state.blocked.is_empty()
            && self.state.blocked.contains(&(
                to.clone(),
                kind.name().to_owned(),
                subject.to_owned(),
            ))
    }

    /// Records in the history of the referral or job a message was about that it failed
    /// (`refused` by its receiver, or `failed` to be sealed).
    pub(crate) fn note_failure(
        &mut self,
        now: Timestamp,
        kind: MessageKind,
        subject: &str,
        state: &str,
        detail: &str,
    ) {
        use MessageKind as K;
        let key = match kind {
            K::Offer | K::Withdraw | K::HandOver => {
                ReferralId::new(subject).ok().map(StateKey::Outgoing)
            }
            K::Accept | K::Decline | K::Progress => {
                ReferralId::new(subject).ok().map(StateKey::Incoming)
            }
            K::CallForBids
            | K::Reserve
            | K::Confirm
            | K::Release
            | K::ReceiptAck
            | K::OutputRequest => JobId::new(subject).ok().map(StateKey::Job),
            K::Bid | K::Reserved | K::Heartbeat | K::JobStatus | K::UsageReceipt | K::JobOutput => {
                JobId::new(subject).ok().map(StateKey::Hosted)
            }
            K::Advert | K::Roster => None,
        };
        let Some(key) = key else {
            return;
        };
        let s = &mut self.state;
        let history = match &key {
            StateKey::Outgoing(id) => s.outgoing.get_mut(id).map(|r| &mut r.history),
            StateKey::Incoming(id) => s.incoming.get_mut(id).map(|r| &mut r.history),
            StateKey::Job(id) => s.jobs.get_mut(id).map(|j| &mut j.history),
            StateKey::Hosted(id) => s.hosted.get_mut(id).map(|h| &mut h.history),
            _ => None,
        };
        if let Some(history) = history {
            record(history, now, state, detail);
            self.dirty.insert(key);
        }
    }
}
