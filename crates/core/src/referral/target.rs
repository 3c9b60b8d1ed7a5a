//! The target's side of a referral: answering an offer (at once, or after the operator's
//! decision), receiving the dossier, reporting progress, letting go on a withdrawal.

use aiguillage_wire::{
    Accept, Decline, DeclineReason, HandOver, MemberId, Offer, ProgressState, ReferralId,
    SectorLevel, Service, Timestamp, Withdraw,
};

use crate::ledger::Entry;
use crate::state::{InReferral, InState, StateKey, record};
use crate::timers::Deadline;
use crate::{Core, Notification};

impl Core {
    pub(crate) fn on_offer(&mut self, now: Timestamp, from: &MemberId, m: Offer) {
        if m.target != self.me {
            self.refuse_message(
                from,
                aiguillage_wire::MessageKind::Offer,
                "not_the_target",
                format!("{} is addressed to {}", m.referral, m.target),
            );
            return;
        }
        if self
            .retired(&StateKey::Incoming(m.referral.clone()))
            .is_some()
        {
            // A late or replayed offer for a referral that has finished here.
            return;
        }
        if let Some(existing) = self.state.incoming.get(&m.referral) {
            if existing.attempt > m.attempt || existing.origin != *from {
                return;
            }
            if existing.attempt == m.attempt {
                // A duplicate offer gets the same answer.
                self.answer_again(now, &m.referral);
                return;
            }
        }
        self.state
            .ledger
            .record(from, crate::ledger::Entry::ReferralReceived, now);
        self.dirty.insert(StateKey::Ledger);
        let auto = self.auto_answer(now, &m);
        let decide_by = m
            .respond_by
            .min(now.saturating_add_ms(self.config.decision_ttl_ms));
        let mut r = InReferral {
            id: m.referral.clone(),
            origin: from.clone(),
            attempt: m.attempt,
            card: m.card.clone(),
            received_at: now,
            respond_by: m.respond_by,
            state: InState::AwaitingDecision { decide_by },
            dossier: None,
            progress_seq: 0,
            last_progress: None,
            history: Vec::new(),
        };
        record(
            &mut r.history,
            now,
            "offered",
            format!("attempt {} from {from}", m.attempt),
        );
        self.state.incoming.insert(m.referral.clone(), r);
        self.dirty.insert(StateKey::Incoming(m.referral.clone()));
        match auto {
            Some(Ok(())) => self.answer(
                now,
                &m.referral,
                true,
                None,
                "priority sector with intake".into(),
                "automatic",
            ),
            Some(Err(reason)) => self.answer(
                now,
                &m.referral,
                false,
                Some(reason),
                reason.tag().into(),
                "automatic",
            ),
            None => {
                self.state
                    .timers
                    .schedule(decide_by, Deadline::Decision(m.referral.clone()));
                self.notify(Notification::DecisionNeeded {
                    referral: m.referral.clone(),
                    origin: from.clone(),
                    decide_by,
                });
            }
        }
    }

    /// `Some(Ok)` to accept at once, `Some(Err(reason))` to decline at once, `None` to ask
    /// the operator.
    fn auto_answer(&self, now: Timestamp, m: &Offer) -> Option<Result<(), DeclineReason>> {
        if now >= m.respond_by {
            return Some(Err(DeclineReason::OfferExpired));
        }
        let level = self.profile.level(m.card.sector);
        if level == SectorLevel::Excluded {
            return Some(Err(DeclineReason::SectorExcluded));
        }
        if m.card
            .services_needed
            .iter()
            .any(|s| !self.profile.services.contains(s))
        {
            return Some(Err(DeclineReason::ServiceNotOffered));
        }
        if !m.card.consent.allows(&self.me, self.profile.country) {
            return Some(Err(DeclineReason::OutOfConsentScope));
        }
        if self.intake_used() >= self.config.referral_intake {
            return Some(Err(DeclineReason::NoCapacity));
        }
        if level == SectorLevel::Priority {
            return Some(Ok(()));
        }
        None
    }

    pub(crate) fn answer(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        accept: bool,
        reason: Option<DeclineReason>,
        detail: String,
        by: &str,
    ) {
        let Some(r) = self.state.incoming.get_mut(id) else {
            return;
        };
        let event = if accept {
            "referral_accepted"
        } else {
            "referral_declined"
        };
        let record_detail = match reason {
            Some(reason) => format!("by {by}: {reason}: {detail}"),
            None => format!("by {by}: {detail}"),
        };
        r.state = if accept {
            InState::Accepted
        } else {
            InState::Declined {
                reason: reason.unwrap_or(DeclineReason::OperatorDeclined),
                detail: detail.clone(),
            }
        };
        record(
            &mut r.history,
            now,
            if accept { "accepted" } else { "declined" },
            detail,
        );
        if accept {
            self.advert_stale = true;
            // An acceptance that is lost would leave us holding a referral the origin has
            // given to someone else; repeat it until the origin hands over or withdraws.
            self.state.timers.schedule(
                now.saturating_add_ms(self.config.resend_ms),
                Deadline::Answer(id.clone()),
            );
        }
        self.dirty.insert(StateKey::Incoming(id.clone()));
        self.audit(now, event, id.as_str(), record_detail);
        self.answer_again(now, id);
    }

    /// Sends the answer already given for `id` (or nothing while it awaits a decision).
    fn answer_again(&mut self, now: Timestamp, id: &ReferralId) {
        let Some(r) = self.state.incoming.get(id) else {
            return;
        };
        let origin = r.origin.clone();
        let attempt = r.attempt;
        match &r.state {
            InState::AwaitingDecision { .. } | InState::Withdrawn => {}
            InState::Declined { reason, detail } => {
                let m = Decline {
                    referral: id.clone(),
                    attempt,
                    reason: *reason,
                    detail: detail.clone(),
                };
                self.send(now, &origin, &m);
            }
            InState::Accepted => self.send(
                now,
                &origin,
                &Accept {
                    referral: id.clone(),
                    attempt,
                },
            ),
            // Accepted and already handed over: the progress report doubles as the answer.
            InState::HandedOver | InState::InProgress | InState::Completed | InState::Abandoned => {
                self.send(
                    now,
                    &origin,
                    &Accept {
                        referral: id.clone(),
                        attempt,
                    },
                );
                self.send_progress(now, id);
            }
        }
    }

    pub(crate) fn answer_deadline(&mut self, now: Timestamp, id: &ReferralId) {
        if self
            .state
            .incoming
            .get(id)
            .is_some_and(|r| r.state == InState::Accepted)
        {
            self.answer_again(now, id);
            self.state.timers.schedule(
                now.saturating_add_ms(self.config.resend_ms),
                Deadline::Answer(id.clone()),
            );
        }
    }

    pub(crate) fn decision_deadline(&mut self, now: Timestamp, id: &ReferralId) {
        let due = self.state.incoming.get(id).is_some_and(
            |r| matches!(r.state, InState::AwaitingDecision { decide_by } if now >= decide_by),
        );
        if due {
            self.answer(
                now,
                id,
                false,
                Some(DeclineReason::NoDecision),
                "no operator decision before the deadline".into(),
                "automatic",
            );
        }
    }

    pub(crate) fn operator_decides(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        accept: bool,
        reason: Option<DeclineReason>,
        detail: String,
        by: &str,
    ) {
        let awaiting = self
            .state
            .incoming
            .get(id)
            .is_some_and(|r| matches!(r.state, InState::AwaitingDecision { .. }));
        if !awaiting {
            self.audit(
                now,
                "decision_ignored",
                id.as_str(),
                "the referral does not await a decision".into(),
            );
            return;
        }
        if accept && self.intake_used() >= self.config.referral_intake {
            self.answer(
                now,
                id,
                false,
                Some(DeclineReason::NoCapacity),
                "intake full".into(),
                by,
            );
            return;
        }
        let reason = (!accept).then(|| reason.unwrap_or(DeclineReason::OperatorDeclined));
        self.answer(now, id, accept, reason, detail, by);
    }

    pub(crate) fn on_hand_over(&mut self, now: Timestamp, from: &MemberId, m: HandOver) {
        let Some(r) = self.state.incoming.get_mut(&m.referral) else {
            return;
        };
        if &r.origin != from || r.attempt != m.attempt {
            return;
        }
        match r.state {
            InState::Accepted => {
                r.dossier = Some(m.dossier);
                r.state = InState::HandedOver;
                let origin = r.origin.clone();
                self.state
                    .ledger
                    .record(&origin, Entry::ReferralReceivedAccepted, now);
                self.dirty.insert(StateKey::Ledger);
                let Some(r) = self.state.incoming.get_mut(&m.referral) else {
                    return;
                };
                r.progress_seq += 1;
                r.last_progress = Some((
                    r.card.stage,
                    ProgressState::InProgress,
                    "dossier received".into(),
                ));
                record(&mut r.history, now, "handed_over", "dossier received");
                self.dirty.insert(StateKey::Incoming(m.referral.clone()));
                self.notify(Notification::DossierReceived {
                    referral: m.referral.clone(),
                    origin: from.clone(),
                });
                self.audit(
                    now,
                    "hand_over_received",
                    m.referral.as_str(),
                    format!("from {from}"),
                );
                self.send_progress(now, &m.referral);
            }
            // A re-sent hand-over: acknowledge again with the latest progress.
            InState::HandedOver | InState::InProgress | InState::Completed | InState::Abandoned => {
                self.send_progress(now, &m.referral)
            }
            _ => {}
        }
    }

    fn send_progress(&mut self, now: Timestamp, id: &ReferralId) {
        let Some(r) = self.state.incoming.get(id) else {
            return;
        };
        let Some((step, state, note)) = r.last_progress.clone() else {
            return;
        };
        let m = aiguillage_wire::Progress {
            referral: id.clone(),
            attempt: r.attempt,
            seq: r.progress_seq,
            step,
            state,
            note,
        };
        let origin = r.origin.clone();
        self.send(now, &origin, &m);
    }

    pub(crate) fn on_withdraw(&mut self, now: Timestamp, from: &MemberId, m: Withdraw) {
        let Some(r) = self.state.incoming.get_mut(&m.referral) else {
            return;
        };
        if &r.origin != from || r.attempt != m.attempt {
            return;
        }
        // The answer tells the origin whether the dossier had arrived (its latest progress,
        // seq 1 or more) or not (seq 0), so that both ledgers count the referral alike.
        if r.progress_seq == 0 {
            r.last_progress = Some((
                r.card.stage,
                ProgressState::Abandoned,
                "withdrawn before the hand-over".into(),
            ));
        }
        if matches!(r.state, InState::Withdrawn) {
            self.send_progress(now, &m.referral);
            return;
        }
        let held = r.state.holds_intake();
        r.state = InState::Withdrawn;
        record(&mut r.history, now, "withdrawn", m.detail.clone());
        self.dirty.insert(StateKey::Incoming(m.referral.clone()));
        if held {
            self.advert_stale = true;
        }
        self.send_progress(now, &m.referral);
        self.audit(
            now,
            "withdrawal_received",
            m.referral.as_str(),
            format!("from {from}: {}", m.detail),
        );
        self.notify(Notification::ReferralWithdrawn {
            referral: m.referral,
        });
    }

    pub(crate) fn operator_reports(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        step: Service,
        state: ProgressState,
        note: String,
        by: &str,
    ) {
        let Some(r) = self.state.incoming.get_mut(id) else {
            self.audit(
                now,
                "progress_ignored",
                id.as_str(),
                "no such incoming referral".into(),
            );
            return;
        };
        if !matches!(r.state, InState::HandedOver | InState::InProgress) {
            return;
        }
        r.progress_seq += 1;
        r.last_progress = Some((step, state, note.clone()));
        r.state = match state {
            ProgressState::InProgress => InState::InProgress,
            ProgressState::Completed => InState::Completed,
            ProgressState::Abandoned => InState::Abandoned,
        };
        record(&mut r.history, now, state.tag(), format!("{step}: {note}"));
        self.dirty.insert(StateKey::Incoming(id.clone()));
        if !matches!(state, ProgressState::InProgress) {
            self.advert_stale = true;
        }
        self.audit(
            now,
            "progress_sent",
            id.as_str(),
            format!("by {by}: {step} {}: {note}", state.tag()),
        );
        self.send_progress(now, id);
    }
}
