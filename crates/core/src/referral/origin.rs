//! The origin's side of a referral: filing, offering candidates in turn, the hand-over,
//! withdrawal, and the progress the target reports.

use aiguillage_wire::{
    Accept, Decline, DeclineReason, Dossier, HandOver, MemberId, Offer, ProgressState, ProjectCard,
    ProjectId, ReferralId, Timestamp, Withdraw,
};

use crate::ledger::Entry;
use crate::routing::{self, Explanation, Outcome, Standing};
use crate::state::{
    AttemptOutcome, AttemptRecord, FiledProject, Journey, JourneyState, OutReferral, OutState,
    StateKey, record,
};
use crate::timers::Deadline;
use crate::{Core, FilingChoice, Notification};

/// The one line an offer gives about why it went to its target.
pub(crate) fn rationale(attempt: u32, sector: aiguillage_wire::Sector) -> String {
    format!("ranked candidate {attempt} for {sector}")
}

impl Core {
    /// What routing decides for `card` filed with `choice` now: the explanation and the
    /// candidates to offer it to, best first. Filing and its preview both ask here.
    fn route(
        &self,
        now: Timestamp,
        card: &ProjectCard,
        choice: &FilingChoice,
    ) -> (Explanation, Vec<MemberId>) {
        let me_advert = self.own_advert();
        let me_table = crate::directory::SectorTable::of(&me_advert);
        let half_life = self.config.behaviour_half_life_ms;
        let policy = &self.config.routing;
        let dir = &self.state.directory;
        let ledger = &self.state.ledger;
        let mut decision = routing::decide(
            card,
            (&me_advert, &me_table),
            dir.fresh(now).map(|l| (&*l.advert, &l.table)),
            |m| Standing {
                reciprocity: ledger.balance(m, now),
                behaviour: dir.behaviour(m),
                now,
                decline_half_life_ms: half_life,
            },
            policy,
            now,
        );
        let reason = match choice {
            FilingChoice::Stay { reason } => {
                decision.stay_by_choice();
                Some(reason.clone())
            }
            FilingChoice::AdviseAgainst { .. } => {
                decision.advised_against();
                None
            }
            FilingChoice::Route => None,
        };
        let mut explanation = decision.explanation(card, &self.me, policy);
        if let Some(reason) = reason
            && explanation.rule == routing::Rule::ClientChoseToStay
        {
            explanation
                .text
                .push_str(&format!(" Reason given: {reason}."));
            explanation.stay_reason = Some(reason);
        }
        (explanation, decision.candidates())
    }

    /// What filing `card` would decide now, without filing it: nothing changes.
    pub fn preview(
        &self,
        now: Timestamp,
        card: &ProjectCard,
        choice: &FilingChoice,
    ) -> Explanation {
        self.route(now, card, choice).0
    }

    pub(crate) fn file_project(
        &mut self,
        now: Timestamp,
        mut card: ProjectCard,
        dossier: Dossier,
        choice: FilingChoice,
        by: &str,
    ) {
        let n = self.next_id();
        card.project = match ProjectId::new(format!("{}/p{n}", self.me)) {
            Ok(p) => p,
            Err(e) => {
                self.audit(now, "file_failed", "project", e.to_string());
                return;
            }
        };
        let (explanation, candidates) = self.route(now, &card, &choice);
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
            format!("by {by}: {}", explanation.text),
        );
        let mut journey = Journey {
            step: Some(card.stage),
            state: if referral.is_some() {
                JourneyState::Referred
            } else {
                JourneyState::Active
            },
            history: Vec::new(),
        };
        record(
            &mut journey.history,
            now,
            journey.state.tag(),
            format!("filed at {} by {by}", card.stage),
        );
        if let FilingChoice::AdviseAgainst { reason } = &choice {
            journey.state = JourneyState::AdvisedAgainst {
                reason: reason.clone(),
            };
            record(&mut journey.history, now, "advised_against", reason.clone());
            self.audit(
                now,
                "project_advised_against",
                project.as_str(),
                format!("by {by}: {reason}"),
            );
        }
        self.state.projects.insert(
            project.clone(),
            FiledProject {
                card: card.clone(),
                filed_at: now,
                explanation,
                referral: referral.clone(),
                journey,
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
            record(&mut r.history, now, "filed", "routing chose to refer");
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
                    record(
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
                let tried = self.state.outgoing.get(id).map_or(0, |r| r.attempts.len());
                self.audit(
                    now,
                    "referral_exhausted",
                    id.as_str(),
                    format!("{tried} target(s) tried"),
                );
                self.project_left_unplaced(now, id);
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
            record(
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
                rationale: rationale(attempt, r.card.sector),
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
            rationale: rationale(current.attempt, r.card.sector),
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
                AttemptOutcome::Declined { reason, .. } => format!("declined ({reason})"),
                other => other.tag().to_owned(),
            };
            record(
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
            self.refuse_message(
                from,
                aiguillage_wire::MessageKind::Accept,
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
            self.refuse_message(
                from,
                aiguillage_wire::MessageKind::Accept,
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
                self.audit(
                    now,
                    "offer_accepted",
                    m.referral.as_str(),
                    format!("by {from}, attempt {}", m.attempt),
                );
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
                record(
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
            record(
                &mut r.history,
                now,
                "handed_over",
                format!("dossier sent to {}", a.target),
            );
            self.dirty.insert(StateKey::Outgoing(id.clone()));
            self.audit(
                now,
                "hand_over_sent",
                id.as_str(),
                format!("to {}", a.target),
            );
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
            OutState::Withdrawn if r.withdrawn_after_hand_over() => {
                if let Some(a) = r.current() {
                    let (target, attempt) = (a.target.clone(), a.attempt);
                    self.send_withdraw_after_hand_over(now, id, target, attempt);
                }
            }
            _ => {}
        }
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
            self.refuse_message(
                from,
                aiguillage_wire::MessageKind::Decline,
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
        self.audit(
            now,
            "offer_declined",
            m.referral.as_str(),
            format!(
                "by {from}, attempt {}: {}: {}",
                m.attempt, m.reason, m.detail
            ),
        );
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
        record(
            &mut r.history,
            now,
            m.state.tag(),
            format!("{}: {}", m.step, m.note),
        );
        self.dirty.insert(StateKey::Outgoing(m.referral.clone()));
        self.audit(
            now,
            "progress_received",
            m.referral.as_str(),
            format!("from {from}: {} {}: {}", m.step, m.state.tag(), m.note),
        );
        self.notify(Notification::ReferralProgress {
            referral: m.referral,
            step: m.step,
            state: m.state,
        });
    }

    pub(crate) fn operator_withdraws(
        &mut self,
        now: Timestamp,
        id: &ReferralId,
        detail: String,
        by: &str,
    ) {
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
        let mut after_hand_over = false;
        if let Some(r) = self.state.outgoing.get_mut(id) {
            r.state = OutState::Withdrawn;
            record(&mut r.history, now, "withdrawn", detail.clone());
            after_hand_over = r.withdrawn_after_hand_over() && !r.hand_over_acked;
        }
        self.dirty.insert(StateKey::Outgoing(id.clone()));
        self.audit(
            now,
            "referral_withdrawn",
            id.as_str(),
            format!("by {by}: {detail}"),
        );
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

    /// The current target refused the offer for good: the next candidate is tried.
    pub(crate) fn offer_refused(
        &mut self,
        now: Timestamp,
        to: &MemberId,
        offer: &Offer,
        reason: &str,
    ) {
        if self.current_target_is(&offer.referral, offer.attempt, to) != Some(true) {
            return;
        }
        let pending = self
            .state
            .outgoing
            .get(&offer.referral)
            .and_then(|r| r.current())
            .is_some_and(|a| a.outcome.is_none());
        if !pending {
            return;
        }
        self.close_attempt(
            now,
            &offer.referral,
            AttemptOutcome::Refused {
                reason: reason.to_owned(),
            },
        );
        self.offer_next(now, &offer.referral);
    }
}
