//! Every message kind survives seal → bytes → open unchanged, for arbitrary contents.

mod common;

use aiguillage_wire::*;
use common::*;
use proptest::prelude::*;

const ISSUED: Timestamp = Timestamp(1_780_000_000_000);

fn key_for(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(message: &M, signer: &MemberId) {
    let key = key_for(3);
    let expires = ISSUED.saturating_add_ms(60_000);
    let envelope = Envelope::seal(message, signer, &key, ISSUED, expires).unwrap();
    let bytes = envelope.to_bytes();
    let opened = open::<M>(&bytes, ISSUED.saturating_add_ms(1)).unwrap();
    assert_eq!(&opened.message, message);
    assert_eq!(opened.envelope, envelope);
    assert_eq!(opened.envelope.key, PublicKey::of(&key));
    // Re-encoding the decoded envelope gives the same bytes: nothing is lost in transit.
    assert_eq!(opened.envelope.to_bytes(), bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn advert(member in member_id(), advert in member_id().prop_flat_map(advert_for)) {
        let mut advert = advert;
        advert.member = member.clone();
        round_trip(&advert, &member);
    }

    #[test]
    fn roster(members in proptest::collection::vec((member_id(), any::<[u8; 32]>(), country()), 0..20), serial in any::<u64>()) {
        let mut seen = std::collections::BTreeSet::new();
        let members = members
            .into_iter()
            .filter(|(id, _, _)| seen.insert(id.clone()))
            .enumerate()
            .map(|(i, (id, seed, country))| {
                let mut seed = seed;
                seed[0] = i as u8;
                RosterEntry {
                    id,
                    key: PublicKey::of(&SigningKey::from_bytes(&seed)),
                    role: Role::Factory,
                    country,
                    linked_factories: vec![],
                    valid_from: Timestamp(0),
                    valid_until: LATEST_TIME,
                }
            })
            .collect();
        let roster = Roster { federation: "eurohpc".into(), serial, members };
        round_trip(&roster, &MemberId::new(AUTHORITY_ID).unwrap());
    }

    #[test]
    fn offer(origin in member_id(), target in member_id(), n in any::<u64>(), attempt in 1u32.., card in card(), respond_by in timestamp(), rationale in text()) {
        prop_assume!(origin != target);
        let offer = Offer { referral: ReferralId::new(minted(&origin, n)).unwrap(), attempt, target, card, respond_by, rationale };
        round_trip(&offer, &origin);
    }

    #[test]
    fn answers(origin in member_id(), target in member_id(), n in any::<u64>(), attempt in 1u32.., reason in proptest::sample::select(DeclineReason::ALL), detail in text(), seq in any::<u32>(), step in service(), state in proptest::sample::select(ProgressState::ALL)) {
        let referral = ReferralId::new(minted(&origin, n)).unwrap();
        round_trip(&Accept { referral: referral.clone(), attempt }, &target);
        round_trip(&Decline { referral: referral.clone(), attempt, reason, detail: detail.clone() }, &target);
        round_trip(&Withdraw { referral: referral.clone(), attempt, detail: detail.clone() }, &origin);
        round_trip(&Progress { referral: referral.clone(), attempt, seq, step, state, note: detail.clone() }, &target);
        let dossier = Dossier { company: detail.clone(), contact_name: detail.clone(), contact_email: "a@b.eu".into(), summary: detail };
        round_trip(&HandOver { referral, attempt, dossier }, &origin);
    }

    #[test]
    fn overflow(origin in member_id(), host in member_id(), n in any::<u64>(), epoch in 1u64.., req in requirements(), at in timestamp(), state in job_state(), exit in proptest::option::of(any::<i32>()), detail in text(), free in any::<u32>(), cmd in proptest::collection::vec(text(), 1..4)) {
        let job = JobId::new(minted(&origin, n)).unwrap();
        round_trip(&CallForBids { job: job.clone(), requirements: req.clone(), bids_by: at }, &origin);
        round_trip(&Bid { job: job.clone(), earliest_start: at, free_gpus: free, accelerator: req.accelerator.clone() }, &host);
        let spec = JobSpec { job: job.clone(), requirements: req.clone(), command: cmd, env: vec![EnvVar { name: "A".into(), value: detail.clone() }] };
        round_trip(&Reserve { spec, epoch, hold_until: at }, &origin);
        round_trip(&Reserved { job: job.clone(), epoch, granted: free % 2 == 0, detail: detail.clone() }, &host);
        round_trip(&Confirm { job: job.clone(), epoch, lease_ttl_ms: 30_000 }, &origin);
        round_trip(&Release { job: job.clone(), epoch, detail: detail.clone() }, &origin);
        round_trip(&Heartbeat { job: job.clone(), epoch, state }, &host);
        round_trip(&JobStatus { job: job.clone(), epoch, state, exit_code: exit, detail }, &host);
        let final_state = if state.is_final() { state } else { JobState::Succeeded };
        let receipt = UsageReceipt { job: job.clone(), epoch, origin: origin.clone(), host: host.clone(), gpus: req.gpus, started_at: at, finished_at: at.saturating_add_ms(1000), gpu_seconds: u64::from(req.gpus), state: final_state, exit_code: exit };
        round_trip(&receipt, &host);
        round_trip(&ReceiptAck { job, epoch }, &origin);
    }
}
