//! A deterministic discrete-event simulator of the Aiguillage federation.
//!
//! It drives one real [`aiguillage_core::Core`] per member (never a second copy of the
//! logic) over a simulated network and a virtual clock, from a scenario file: members from
//! `config/` profiles or generated, project and GPU-job workloads, a network model
//! (latency by country pair, loss, duplication, bandwidth), faults (crash and restart from
//! the persisted state, partitions that heal, a member that stops answering, clock skew),
//! and the routing and bidding policy under test.
//!
//! Determinism: one seed drives every random choice through labelled streams
//! ([`rng::Rng`]); events are ordered by (virtual time, sequence number); every map whose
//! order reaches an outcome is a `BTreeMap`; nothing reads the wall clock. The digest hashes
//! every outcome in the order it happened, then the summary: the same scenario and seed
//! give the same digest.
//!
//! Cost model: one thread plays every node, so the simulator pays for all of them. Advert
//! signatures are verified once per process through the core's opt-in
//! [`aiguillage_core::VerifyCache`]; every other message is signed and verified as a node
//! would.

pub mod archive;
pub mod check;
pub mod engine;
pub mod geo;
pub mod members;
pub mod metrics;
pub mod report;
pub mod rng;
pub mod scenario;
pub mod summary;
pub mod svg;
pub mod workload;

pub use engine::Sim;
pub use scenario::{Scenario, ScenarioError};
pub use summary::{RunOutcome, Summary};

/// A simulation that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("setting up the federation: {0}")]
    Setup(String),
}

/// Runs `scenario` with `seed` under the policy named `policy` (a built-in or one of the
/// scenario's), reporting progress as a share of virtual time.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    policy: &str,
    progress: Option<engine::Progress<'_>>,
) -> Result<RunOutcome, SimError> {
    let spec = scenario.policy(policy)?;
    let mut sim = Sim::new(scenario, seed, policy, &spec)?;
    sim.run(progress);
    Ok(summary::summarise(&sim))
}
