//! The federation logic of Aiguillage, as a deterministic state machine that performs no
//! I/O: `Core::handle(now, input) -> Vec<Output>`. The node (libp2p, sled, executors) and the
//! simulator are both callers, so a simulation result is evidence about the real network.
//!
//! Time comes in as `now`; nothing here reads a clock, spawns a thread or draws randomness.
//! The core signs its own messages (signing is computation, not I/O) and hands them out as
//! [`Output::Send`] and [`Output::Publish`].
//!
//! Persistence: everything the node must keep is in [`State`] (serde), and
//! [`Core::take_dirty`] names what changed since the last call, so a store can write exactly
//! that before it lets the outputs of the same call leave the node.

mod admission;
mod adverts;
mod config;
pub mod devnet;
pub mod directory;
pub mod file;
mod geo;
mod input_check;
pub mod invariants;
mod io;
mod journey;
pub mod kpi;
pub mod ledger;
mod machine;
mod overflow;
pub mod profile;
pub mod project_file;
mod referral;
mod refusals;
mod retention;
pub mod routing;
pub mod state;
pub mod stats;
pub mod timers;
pub mod verify_cache;

pub use admission::{Admitted, Body, Refused};
pub use config::{ConfigError, CoreConfig};
pub use devnet::{DevnetAssumptions, DevnetCapacity};
pub use file::FileError;
pub use input_check::{InputError, check_email};
pub use io::{AuditEvent, ExecutorEvent, FilingChoice, Input, Notification, Output, Refusal};
pub use machine::{Core, CoreError};
pub use profile::{Confidence, Profile};
pub use refusals::refusal_is_permanent;
pub use routing::{Explanation, RoutingPolicy};
pub use state::{
    AttemptOutcome, AttemptRecord, FiledProject, HostPhase, HostedJob, InReferral, InState,
    JobPhase, Journey, JourneyState, OriginJob, OutReferral, OutState, Placement, PlacementOutcome,
    Record, RecordError, Retired, State, StateKey, Transition, decode_record,
};
pub use verify_cache::VerifyCache;
