//! This member's advert (built from its profile, capacity and intake, republished before it
//! expires and when either changes) and the adverts of others, held in the directory.

use std::sync::Arc;

use aiguillage_wire::{Advert, Envelope, GpuCapacity, Timestamp};

use crate::directory;
use crate::state::StateKey;
use crate::{Core, Output};

impl Core {
    /// The advert this member publishes now.
    pub fn own_advert(&self) -> Advert {
        let free = self.free_gpus();
        let gpu = GpuCapacity {
            total: Some(self.state.total_gpus),
            free: Some(free),
            accelerator: self.config.accelerator.clone(),
            largest_job_gpus: Some(self.state.total_gpus),
            takes_overflow: self.config.takes_overflow && self.state.total_gpus > 0,
            overflow_from: self.config.overflow_from.clone(),
        };
        let intake = self
            .config
            .referral_intake
            .saturating_sub(self.intake_used());
        self.profile
            .advert(self.state.advert_seq, gpu, Some(intake))
    }

    pub(crate) fn publish_advert(&mut self, now: Timestamp) {
        // Monotonic across restarts without persisting every bump: never below the clock.
        self.state.advert_seq = (self.state.advert_seq + 1).max(now.millis());
        self.last_advert_at = now;
        let advert = self.own_advert();
        if let Some(envelope) = self.seal(now, &advert, self.config.advert_ttl_ms) {
            self.dirty.insert(StateKey::Meta);
            self.signed_advert = Some(envelope.clone());
            self.out.push(Output::Publish(envelope));
        }
    }

    /// An admitted advert (its role and country agree with the roster) enters the
    /// directory unless it holds a newer one.
    pub(crate) fn on_advert(&mut self, now: Timestamp, advert: Advert, envelope: Envelope) {
        let member = advert.member.clone();
        let (advert, envelope) = match &self.verify_cache {
            Some(cache) => cache.share(advert, envelope, now),
            None => (Arc::new(advert), Arc::new(envelope)),
        };
        if self.state.directory.offer(advert, envelope, now) == directory::AdvertOutcome::Stored {
            self.dirty.insert(StateKey::Listing(member));
        }
    }

    /// Every envelope this member holds for the directory, its own latest advert and the
    /// roster included: what a peer that just connected is sent (anti-entropy).
    pub fn directory_envelopes(&self) -> Vec<Envelope> {
        let mut v: Vec<Envelope> = self
            .state
            .directory
            .fresh(Timestamp(0))
            .map(|l| (*l.envelope).clone())
            .collect();
        v.extend(self.signed_advert.clone());
        if let Some((_, roster)) = &self.state.roster {
            v.push((**roster).clone());
        }
        v
    }
}
