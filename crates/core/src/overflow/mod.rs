//! GPU overflow: when a job cannot start here, eligible members are asked for bids, the
//! best is reserved and confirmed (two-phase), and the lease lives on the host's heartbeats.
//! A lease that misses its TTL is re-placed under a higher epoch (the fencing token); the
//! old host is told to release and whatever it reports for the old epoch is refused.
//!
//! The member's own jobs run on its executor with epoch 0 when capacity allows.

mod executor;
mod host;
mod origin;
mod output;

/// A receipt stays verifiable for a year: it is the evidence behind both ledgers.
pub(crate) const RECEIPT_TTL_MS: u64 = 365 * 24 * 3_600_000;
