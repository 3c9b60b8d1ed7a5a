//! The whole journey, at home too: a project served here moves along the seven steps
//! (first contact → production) as its adviser reports, like a referral's target does, and
//! may end advised against: the one-stop shop also tells a company what is not worth
//! doing.

use aiguillage_wire::{ProgressState, ProjectId, ReferralId, SectorLevel, Service, Timestamp};

use crate::state::{JourneyState, StateKey, record};
use crate::{Core, Notification};

impl Core {
    /// The adviser moves a project served here to `step`, or ends its journey.
    pub(crate) fn project_progress(
        &mut self,
        now: Timestamp,
        id: &ProjectId,
        step: Service,
        state: ProgressState,
        note: String,
        by: &str,
    ) {
        let Some(p) = self.state.projects.get_mut(id) else {
            return;
        };
        if !p.journey.state.is_open() {
            return;
        }
        p.journey.step = Some(step);
        p.journey.state = match state {
            ProgressState::InProgress => JourneyState::Active,
            ProgressState::Completed => JourneyState::Completed,
            ProgressState::Abandoned => JourneyState::Abandoned,
        };
        let tag = p.journey.state.tag();
        record(&mut p.journey.history, now, tag, format!("{step}: {note}"));
        self.dirty.insert(StateKey::Project(id.clone()));
        self.audit(
            now,
            "project_progress",
            id.as_str(),
            format!("by {by}: {step} {tag}: {note}"),
        );
        self.notify(Notification::ProjectProgress {
            project: id.clone(),
            step,
            state: tag.to_owned(),
        });
    }

    /// The adviser tells the company the project is not worth doing.
    pub(crate) fn advise_against(
        &mut self,
        now: Timestamp,
        id: &ProjectId,
        reason: String,
        by: &str,
    ) {
        let Some(p) = self.state.projects.get_mut(id) else {
            return;
        };
        if !p.journey.state.is_open() {
            return;
        }
        p.journey.state = JourneyState::AdvisedAgainst {
            reason: reason.clone(),
        };
        record(
            &mut p.journey.history,
            now,
            "advised_against",
            reason.clone(),
        );
        let step = p.journey.step.unwrap_or(p.card.stage);
        self.dirty.insert(StateKey::Project(id.clone()));
        self.audit(
            now,
            "project_advised_against",
            id.as_str(),
            format!("by {by}: {reason}"),
        );
        self.notify(Notification::ProjectProgress {
            project: id.clone(),
            step,
            state: "advised_against".into(),
        });
    }

    /// No member took the referral: a project that only left for a better-suited member is
    /// served here after all; one that could not stay (its sector excluded, a service
    /// missing) is unplaced, for its adviser to follow up.
    pub(crate) fn project_left_unplaced(&mut self, now: Timestamp, referral: &ReferralId) {
        let Some((id, p)) = self
            .state
            .projects
            .iter_mut()
            .find(|(_, p)| p.referral.as_ref() == Some(referral))
        else {
            return;
        };
        let servable_here = p.explanation.sector_level_here != SectorLevel::Excluded
            && p.explanation.rule == crate::routing::Rule::BetterSuitedElsewhere;
        let (state, note) = if servable_here {
            (
                JourneyState::Active,
                "no better-suited member took it: it is served here",
            )
        } else {
            (JourneyState::Unplaced, "no member took it")
        };
        p.journey.state = state;
        let tag = p.journey.state.tag();
        record(&mut p.journey.history, now, tag, note);
        let id = id.clone();
        self.dirty.insert(StateKey::Project(id));
    }
}
