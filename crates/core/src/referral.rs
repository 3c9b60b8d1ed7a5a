//! The referral lifecycle, one task per target (as in FHIR Task).
//!
//! Origin: `offered(deadline) → accepted | declined(reason) | expired`; on decline or expiry
//! the next candidate is offered; after `max_attempts` or with no candidate left the
//! referral is `exhausted`. After an accept the dossier is handed over (only now, and only
//! inside the consent scope), then progress updates arrive until `completed` or `abandoned`.
//!
//! Target: priority sectors with intake left are accepted at once; excluded sectors,
//! missing services, consent and capacity are declined at once with their reason code;
//! anything else waits for the operator until a deadline, then is declined.
//!
//! Only the target of the current attempt can ever be accepted, so a referral is never
//! accepted by two targets. Every message is idempotent on (referral, attempt).

use serde::{Deserialize, Serialize};

use aiguillage_wire::{
    Accept, Decline, DeclineReason, Dossier, HandOver, MemberId, Offer, ProgressState, ProjectCard,
    ProjectId, ReferralId, SectorLevel, Service, Timestamp, Withdraw,
};

use crate::ledger::Entry;
use crate::routing::{self, Outcome, Standing};
use crate::timers::Deadline;
use crate::{Core, FiledProject, Notification, StateKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutState {
    Offered,
    Accepted,
    HandedOver,
    InProgress,
    Completed,
    Abandoned,
    Exhausted,
    Withdrawn,
}

impl OutState {
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OutState::Completed | OutState::Abandoned | OutState::Exhausted | OutState::Withdrawn
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum AttemptOutcome {
    Accepted,
    Declined {
        reason: DeclineReason,
        detail: String,
    },
    Expired,
    Withdrawn,
}

/// One target tried for a referral.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub target: MemberId,
    pub offered_at: Timestamp,
    pub respond_by: Timestamp,
    pub outcome: Option<AttemptOutcome>,
    pub answered_at: Option<Timestamp>,
}

/// A state change, for the lifecycle history shown to operators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub at: Timestamp,
    pub state: String,
    pub detail: String,
}

/// A referral this member originated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutReferral {
    pub id: ReferralId,
    pub card: ProjectCard,
    pub dossier: Dossier,
    pub candidates: Vec<MemberId>,
    pub attempts: Vec<AttemptRecord>,
    pub state: OutState,
    pub history: Vec<Transition>,
    pub progress: Option<(u32, Service, ProgressState, String)>,
    pub hand_over_acked: bool,
}

impl OutReferral {
    pub fn current(&self) -> Option<&AttemptRecord> {
        self.attempts.last()
    }
    /// The member that accepted, if any did.
    pub fn accepted_by(&self) -> Option<&MemberId> {
        self.attempts
            .iter()
            .find(|a| a.outcome == Some(AttemptOutcome::Accepted))
            .map(|a| &a.target)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum InState {
    AwaitingDecision {
        decide_by: Timestamp,
    },
    Accepted,
    Declined {
        reason: DeclineReason,
        detail: String,
    },
    HandedOver,
    InProgress,
    Completed,
    Abandoned,
    Withdrawn,
}

impl InState {
    /// Whether this member took the referral (accepted it, whatever happened since).
    pub fn was_accepted(&self) -> bool {
        matches!(
            self,
            InState::Accepted
                | InState::HandedOver
                | InState::InProgress
                | InState::Completed
                | InState::Abandoned
        )
    }

    /// Whether the referral occupies one of this member's intake slots.
    pub fn holds_intake(&self) -> bool {
        matches!(
            self,
            InState::Accepted | InState::HandedOver | InState::InProgress
        )
    }
}

/// A referral offered to this member.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InReferral {
    pub id: ReferralId,
    pub origin: MemberId,
    pub attempt: u32,
    pub card: ProjectCard,
    pub received_at: Timestamp,
    pub respond_by: Timestamp,
    pub state: InState,
    pub dossier: Option<Dossier>,
    pub progress_seq: u32,
    pub last_progress: Option<(Service, ProgressState, String)>,
    pub history: Vec<Transition>,
}

fn push(history: &mut Vec<Transition>, at: Timestamp, state: &str, detail: impl Into<String>) {
    history.push(Transition {
        at,
        state: state.to_owned(),
        detail: detail.into(),
    });
}

impl Core {
    // ----- origin side -----

    pub(crate) fn file_project(&mut self, now: Timestamp, mut card: ProjectCard, dossier: Dossier) {
        let n = self.next_id();
        card.project = match ProjectId::new(format!("{}/p{n}", self.me)) {
            Ok(p) => p,
            Err(e) => {
                self.audit(now, "file_failed", "project", e.to_string());
                return;
            }
        };
        let me_advert = self.own_advert();
        let me_table = routing::SectorTable::of(&me_advert);
        let half_life = self.config.behaviour_half_life_ms;
        let policy = self.config.routing.clone();
        let (explanation, candidates) = {
            let dir = &self.state.directory;
            let ledger = &self.state.ledger;
            let decision = routing::decide(
                &card,
                (&me_advert, &me_table),
                dir.fresh(now).map(|l| (&l.advert, &l.table)),
                |m| Standing {
                    reciprocity: ledger.balance(m, now),
                    behaviour: dir.behaviour(m),
                    now,
                    decline_half_life_ms: half_life,
                },
                &policy,
                now,
            );
            (
                decision.explanation(&card, &self.me, &policy),
                decision.candidates(),
            )
        };
        let project = card.project.clone();
        let referral = if explanation.outcome == Outcome::Refer {
            match ReferralId::new(format!("{}/{n}", self.me)) {
                Ok(id) => Some(id),
                Err(e) => {
                    self.audit(now, "file_failed", project.as_str(), e.to_string());
                    None
                }
            }
        } else {
            None
        };
        self.notify(Notification::ProjectFiled {
            project: project.clone(),
            outcome: explanation.outcome,
            referral: referral.clone(),
            explanation: explanation.text.clone(),
        });
        self.audit(
            now,
            "project_filed",
            project.as_str(),
            explanation.text.clone(),
        );
        self.state.projects.insert(
            project.clone(),
            FiledProject {
                card: card.clone(),
                filed_at: now,
                explanation,
                referral: referral.clone(),
            },
        );
        self.dirty.insert(StateKey::Project(project));
        if let Some(id) = referral {
            let mut r = OutReferral {
                id: id.clone(),
                card,
                dossier,
                candidates,
                attempts: Vec::new(),
                state: OutState::Offered,
                history: Vec::new(),
                progress: None,
                hand_over_acked: false,
            };
            push(&mut r.history, now, "filed", "routing chose to refer");
            self.state.outgoing.insert(id.clone(), r);
            self.offer_next(now, &id);
        }
    }

    /// Offers the referral to its next candidate, or marks it exhausted.
    fn offer_next(&mut self, now: Timestamp, id: &ReferralId) {
        let max_attempts = self.config.max_attempts;
        let offer_ttl = self.config.offer_ttl_ms;
        let Some(r) = self.state.outgoing.get(id) else {
            return;
        };
        let tried: Vec<&MemberId> = r.attempts.iter().map(|a| &a.target).collect();
        let next = r
            .candidates
            .iter()
            .find(|c| !tried.contains(c) && self.state.directory.get(c).is_some())
            .cloned();
        let attempt = r.attempts.len() as u32 + 1;
        let target = match next {
            Some(t) if attempt <= max_attempts => t,
            _ => {
                if let Some(r) = self.state.outgoing.get_mut(id) {
                    r.state = OutState::Exhausted;
                    push(
                        &mut r.history,
                        now,
                        "exhausted",
                        format!("{} target(s) tried", r.attempts.len()),
                    );
                }
                self.dirty.insert(StateKey::Outgoing(id.clone()));
                self.notify(Notification::ReferralExhausted {
                    referral: id.clone(),
                });
                self.audit(now, "referral_exhausted", id.as_str(), String::new());
                return;
            }
        };
        let respond_by = now.saturating_add_ms(offer_ttl);
        let offer = {
            let Some(r) = self.state.outgoing.get_mut(id) else {
                return;
            };
            r.state = OutState::Offered;
            r.attempts.push(AttemptRecord {
                attempt,
                target: target.clone(),
                offered_at: now,
                respond_by,
                outcome: None,
                answered_at: None,
            });
            push(
                &mut r.history,
                now,
                "offered",
                format!("attempt {attempt} to {target}"),
            );
            Offer {
                referral: id.clone(),
                attempt,
                target: target.clone(),
                card: r.card.clone(),
                respond_by,
                rationale: format!("ranked candidate {attempt} for {}", r.card.sector),
            }
        };
        self.dirty.insert(StateKey::Outgoing(id.clone()));
        self.state.ledger.record(&target, Entry::ReferralSent, now);
        self.dirty.insert(StateKey::Ledger);
        self.send(now, &target, &offer);
        self.audit(
            now,
            "offer_sent",
            id.as_str(),
            format!("attempt {attempt} to {target}"),
        );
        let at = respond_by.min(now.saturating_add_ms(self.config.resend_ms));
        self.state.timers.schedule(at, Deadline::Offer(id.clone()));
    }

    pub(crate) fn offer_deadline(&mut self, now: Timestamp, id: &ReferralId) {
        let Some(r) = self.state.outgoing.get(id) else {
            return;
        };
        if r.state != OutState::Offered {
            return;
        }
        let Some(current) = r.current().cloned() else {
            return;
        };
        if now >= current.respond_by {
            self.close_attempt(now, id, AttemptOutcome::Expired);
            self.notify(Notification::ReferralDeclined {
                referral: id.clone(),
                target: current.target.clone(),
                reason: DeclineReason::OfferExpired,
            });
            self.offer_next(now, id);
            return;
        }
        // Still owed an answer: send the same offer again (receivers are idempotent).
        let offer = Offer {
            referral: id.clone(),
            attempt: current.attempt,
            target: current.target.clone(),
            card: r.card.clone(),
            respond_by: current.respond_by,
            rationale: format!("ranked candidate {} for {}", current.attempt, r.card.sector),
        };
        self.send(now, &current.target, &offer);
        let at = current
            .respond_by
            .min(now.saturating_add_ms(self.config.resend_ms));
        self.state.timers.schedule(at, Deadline::Offer(id.clone()));
    }

    fn close_attempt(&mut self, now: Timestamp, id: &ReferralId, outcome: AttemptOutcome) {
        if let Some(r) = self.state.outgoing.get_mut(id)
            && let Some(a) = r.attempts.last_mut()
            && a.outcome.is_none()
        {
            let label = match &outcome {
                AttemptOutcome::Accepted => "accepted".to_owned(),
                AttemptOutcome::Declined { reason, .. } => format!("declined ({reason})"),
                AttemptOutcome::Expired => "expired".to_owned(),
                AttemptOutcome::Withdrawn => "withdrawn".to_owned(),
            };
            push(
                &mut r.history,
                now,
                &label,
                format!("attempt {} by {}", a.attempt, a.target),
            );
            a.outcome = Some(outcome);
            a.answered_at = Some(now);
            self.dirty.insert(StateKey::Outgoing(id.clone()));
        }
    }

    /// Is `from` the target of the current, unanswered attempt of `id`?
    fn current_target_is(&self, id: &ReferralId, attempt: u32, from: &MemberId) -> Option<bool> {
        let r = self.state.outgoing.get(id)?;
        let a = r.current()?;
        Some(a.attempt == attempt && &a.target == from)
    }

    pub(crate) fn on_accept(&mut self, now: Timestamp, from: &MemberId, m: Accept) {
        let Some(r) = self.state.outgoing.get(&m.referral) else {
            self.refuse(
                Some(from.clone()),
                Some(aiguillage_wire::MessageKind::Accept),
                "unknown_referral",
                m.referral.to_string(),
            );
            return;
        };
        let Some(attempt) = r
            .attempts
            .iter()
            .find(|a| a.attempt == m.attempt && &a.target == from)
        else {
            self.refuse(
                Some(from.clone()),
                Some(aiguillage_wire::MessageKind::Accept),
                "not_the_target",
                m.referral.to_string(),
            );
            return;
        };
        let is_current = r.current().map(|a| a.attempt) == Some(m.attempt);
        match (&attempt.outcome, r.state) {
            (None, OutState::Offered) if is_current => {
                let offered_at = attempt.offered_at;
                self.state
                    .directory
                    .record_answer(from, now.millis().saturating_sub(offered_at.millis()));
                self.dirty.insert(StateKey::Directory);
                self.close_attempt(now, &m.referral, AttemptOutcome::Accepted);
                if let Some(r) = self.state.outgoing.get_mut(&m.referral) {
                    r.state = OutState::Accepted;
                }
                self.notify(Notification::ReferralAccepted {
                    referral: m.referral.clone(),
                    target: from.clone(),
                });
                self.hand_over(now, &m.referral);
            }
            // A repeated accept: the target may have missed the hand-over.
            (Some(AttemptOutcome::Accepted), OutState::Accepted | OutState::HandedOver) => {
                self.hand_over(now, &m.referral)
            }
            (Some(AttemptOutcome::Accepted), _) => {}
            // The offer closed (expired, withdrawn, referral finished) before the acceptance
            // arrived: tell the member to let go, so no two members ever hold it.
            _ => self.send_withdraw(
                now,
                from,
                m.referral.clone(),
                m.attempt,
                "the offer was closed before your acceptance arrived",
            ),
        }
    }

    /// Sends the dossier to the target that accepted, if the consent scope allows it.
    fn hand_over(&mut self, now: Timestamp, id: &ReferralId) {
        let Some(r) = self.state.outgoing.get(id) else {
            return;
        };
        let Some(a) = r.current().cloned() else {
            return;
        };
        if a.outcome != Some(AttemptOutcome::Accepted) {
            return;
        }
        let country = self.country_of(&a.target);
        let allowed = country.is_some_and(|c| r.card.consent.allows(&a.target, c));
        if !allowed {
            // Never release a dossier outside the consent scope, whatever the target said.
            self.audit(
                now,
                "hand_over_blocked",
                id.as_str(),
                format!("{} is outside the consent scope", a.target),
            );
            self.send_withdraw(
                now,
                &a.target,
                id.clone(),
                a.attempt,
                "outside the client's consent scope",
            );
            if let Some(r) = self.state.outgoing.get_mut(id) {
                r.state = OutState::Withdrawn;
                push(
                    &mut r.history,
                    now,
                    "withdrawn",
                    "target outside the consent scope",
                );
            }
            self.dirty.insert(StateKey::Outgoing(id.clone()));
            return;
        }
        let message = HandOver {
            referral: id.clone(),
            attempt: a.attempt,
            dossier: r.dossier.clone(),
        };
        if let Some(r) = self.state.outgoing.get_mut(id)
            && r.state == OutState::Accepted
        {
            r.state = OutState::HandedOver;
            push(
                &mut r.history,
                now,
                "handed_over",
                format!("dossier sent to {}", a.target),
            );
            self.dirty.insert(StateKey::Outgoing(id.clone()));
        }
        self.send(now, &a.target, &message);
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.resend_ms),
            Deadline::HandOver(id.clone()),
        );
    }

    pub(crate) fn hand_over_deadline(&mut self, now: Timestamp, id: &ReferralId) {
        let Some(r) = self.state.outgoing.get(id) else {
            return;
        };
        if r.hand_over_acked {
            return;
        }
        match r.state {
            OutState::HandedOver => self.hand_over(now, id),
            // Withdrawn after the dossier went out: the target may hold it and have counted
            // it, so the withdrawal is re-sent until the target answers.
            OutState::Withdrawn if self.withdrawn_after_hand_over(r) => {
                if let Some(a) = r.current() {
                    let (target, attempt) = (a.target.clone(), a.attempt);
                    self.send_withdraw_after_hand_over(now, id, target, attempt);
                }
            }
            _ => {}
        }
    }

    /// Whether a withdrawn referral had been handed over to its current target.
    fn withdrawn_after_hand_over(&self, r: &OutReferral) -> bool {
        r.current()
            .is_some_and(|a| a.outcome == Some(AttemptOutcome::Accepted))
            && r.history.iter().any(|t| t.state == "handed_over")
    }

    fn send_withdraw(
        &mut self,
        now: Timestamp,
        target: &MemberId,
        referral: ReferralId,
        attempt: u32,
        detail: impl Into<String>,
    ) {
        let m = Withdraw {
            referral,
            attempt,
            detail: detail.into(),
        };
        self.send(now, target, &m);
    }

    fn send_withdraw_after_hand_over(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        target: MemberId,
        attempt: u32,
    ) {
        let detail = self
            .state
            .outgoing
            .get(id)
            .and_then(|r| r.history.iter().rev().find(|t| t.state == "withdrawn"))
            .map(|t| t.detail.clone())
            .unwrap_or_default();
        self.send_withdraw(now, &target, id.clone(), attempt, detail);
        self.state.timers.schedule(
            now.saturating_add_ms(self.config.resend_ms),
            Deadline::HandOver(id.clone()),
        );
    }

    pub(crate) fn on_decline(&mut self, now: Timestamp, from: &MemberId, m: Decline) {
        // A decision from a member never offered this referral is refused and counted; a
        // late decline from an earlier attempt's target is just late.
        let offered_to_sender = self
            .state
            .outgoing
            .get(&m.referral)
            .is_some_and(|r| r.attempts.iter().any(|a| &a.target == from));
        if !offered_to_sender {
            self.refuse(
                Some(from.clone()),
                Some(aiguillage_wire::MessageKind::Decline),
                "not_the_target",
                m.referral.to_string(),
            );
            return;
        }
        if self.current_target_is(&m.referral, m.attempt, from) != Some(true) {
            return;
        }
        let Some(r) = self.state.outgoing.get(&m.referral) else {
            return;
        };
        if r.state != OutState::Offered {
            return;
        }
        let offered_at = r.current().map(|a| a.offered_at).unwrap_or(now);
        self.state
            .directory
            .record_answer(from, now.millis().saturating_sub(offered_at.millis()));
        self.state
            .directory
            .record_decline(from, now, self.config.behaviour_half_life_ms);
        self.dirty.insert(StateKey::Directory);
        self.close_attempt(
            now,
            &m.referral,
            AttemptOutcome::Declined {
                reason: m.reason,
                detail: m.detail.clone(),
            },
        );
        self.notify(Notification::ReferralDeclined {
            referral: m.referral.clone(),
            target: from.clone(),
            reason: m.reason,
        });
        self.offer_next(now, &m.referral);
    }

    pub(crate) fn on_progress(
        &mut self,
        now: Timestamp,
        from: &MemberId,
        m: aiguillage_wire::Progress,
    ) {
        let Some(r) = self.state.outgoing.get_mut(&m.referral) else {
            return;
        };
        let Some(a) = r.current() else {
            return;
        };
        if a.attempt != m.attempt
            || &a.target != from
            || a.outcome != Some(AttemptOutcome::Accepted)
        {
            return;
        }
        if m.seq == 0 {
            // The answer to a withdrawal that reached the target before the dossier did:
            // nothing was handed over, so nothing is counted, and the re-sends stop.
            if r.state == OutState::Withdrawn && !r.hand_over_acked {
                r.hand_over_acked = true;
                self.dirty.insert(StateKey::Outgoing(m.referral.clone()));
            }
            return;
        }
        if !r.hand_over_acked {
            // Both sides count an accepted referral at the hand-over, so their ledgers agree
            // even when an acceptance raced with the offer's expiry.
            r.hand_over_acked = true;
            self.state
                .ledger
                .record(from, Entry::ReferralSentAccepted, now);
            self.dirty.insert(StateKey::Ledger);
        }
        let Some(r) = self.state.outgoing.get_mut(&m.referral) else {
            return;
        };
        if r.state.is_final() || r.progress.as_ref().is_some_and(|p| p.0 >= m.seq) {
            self.dirty.insert(StateKey::Outgoing(m.referral.clone()));
            return;
        }
        r.progress = Some((m.seq, m.step, m.state, m.note.clone()));
        r.state = match m.state {
            // Progress 1 is the target's acknowledgement of the hand-over.
            ProgressState::InProgress if m.seq <= 1 => OutState::HandedOver,
            ProgressState::InProgress => OutState::InProgress,
            ProgressState::Completed => OutState::Completed,
            ProgressState::Abandoned => OutState::Abandoned,
        };
        push(
            &mut r.history,
            now,
            m.state.tag(),
            format!("{}: {}", m.step, m.note),
        );
        self.dirty.insert(StateKey::Outgoing(m.referral.clone()));
        self.notify(Notification::ReferralProgress {
            referral: m.referral,
            step: m.step,
            state: m.state,
        });
    }

    pub(crate) fn operator_withdraws(&mut self, now: Timestamp, id: &ReferralId, detail: String) {
        let Some(r) = self.state.outgoing.get(id) else {
            self.audit(
                now,
                "withdraw_failed",
                id.as_str(),
                "no such outgoing referral".into(),
            );
            return;
        };
        if r.state.is_final() {
            return;
        }
        let current = r.current().cloned();
        let after_hand_over = self.withdrawn_after_hand_over(r) && !r.hand_over_acked;
        if let Some(r) = self.state.outgoing.get_mut(id) {
            r.state = OutState::Withdrawn;
            push(&mut r.history, now, "withdrawn", detail.clone());
        }
        self.dirty.insert(StateKey::Outgoing(id.clone()));
        let Some(a) = current else {
            return;
        };
        if after_hand_over {
            self.send_withdraw_after_hand_over(now, id, a.target, a.attempt);
            return;
        }
        if a.outcome.is_none() {
            self.close_attempt(now, id, AttemptOutcome::Withdrawn);
        }
        self.send_withdraw(now, &a.target, id.clone(), a.attempt, detail);
    }

    // ----- target side -----

    pub(crate) fn on_offer(&mut self, now: Timestamp, from: &MemberId, m: Offer) {
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
        push(
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
            ),
            Some(Err(reason)) => {
                self.answer(now, &m.referral, false, Some(reason), reason.tag().into())
            }
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
        if m.target != self.me {
            return Some(Err(DeclineReason::NotAddressedToUs));
        }
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

    fn answer(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        accept: bool,
        reason: Option<DeclineReason>,
        detail: String,
    ) {
        let Some(r) = self.state.incoming.get_mut(id) else {
            return;
        };
        r.state = if accept {
            InState::Accepted
        } else {
            InState::Declined {
                reason: reason.unwrap_or(DeclineReason::OperatorDeclined),
                detail: detail.clone(),
            }
        };
        push(
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
            );
        }
    }

    pub(crate) fn operator_decides(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        accept: bool,
        detail: String,
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
            );
            return;
        }
        let reason = (!accept).then_some(DeclineReason::OperatorDeclined);
        self.answer(now, id, accept, reason, detail);
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
                push(&mut r.history, now, "handed_over", "dossier received");
                self.dirty.insert(StateKey::Incoming(m.referral.clone()));
                self.notify(Notification::DossierReceived {
                    referral: m.referral.clone(),
                    origin: from.clone(),
                });
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
        push(&mut r.history, now, "withdrawn", m.detail);
        self.dirty.insert(StateKey::Incoming(m.referral.clone()));
        if held {
            self.advert_stale = true;
        }
        self.send_progress(now, &m.referral);
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
        push(&mut r.history, now, state.tag(), format!("{step}: {note}"));
        self.dirty.insert(StateKey::Incoming(id.clone()));
        if !matches!(state, ProgressState::InProgress) {
            self.advert_stale = true;
        }
        self.send_progress(now, id);
    }
}
